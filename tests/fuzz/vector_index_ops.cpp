// Fuzz target: FlatIndex (float32 and int8) and HnswIndex under random add / remove / search sequences,
// each checked after every operation against a brute-force reference (a map id -> vector, scores in
// double):
//   - size(), contains() and remove()'s result always match the reference;
//   - FlatIndex float32: search returns min(k, size) hits, best first, each with its true score
//     (within float rounding), and they are the reference top-k (ties aside: nothing left out scores
//     higher than the last hit returned);
//   - FlatIndex int8: the same, with each score within the quantization bound
//       |score - dot| <= (|q|_1 max|v| + |v|_1 max|q|) / 254 + dim max|q| max|v| / 254^2   (+ rounding)
//     and the ranking correct up to twice that bound;
//   - HnswIndex (approximate): at most min(k, size) distinct hits, all live ids (a removed id is never
//     returned), best first, each with its true score;
//   - a vector with a NaN or an infinity is an Error(InvalidArgument) for add and search, and changes
//     nothing; no other exception escapes.
// Input: byte 0 = dimension (1..12); then operations, one opcode byte each (op = byte % 6, k and the
// id from the next bytes), vectors as dimension bytes (signed byte / 16, so sums stay exact enough).
#include <llmfast/flat_index.hpp>
#ifdef LLMFAST_FUZZ_HNSW
#include <llmfast/hnsw_index.hpp>
#endif

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <set>
#include <span>
#include <vector>

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

struct Input {
    const std::uint8_t* data;
    std::size_t size;
    std::size_t pos = 0;
    bool done() const { return pos >= size; }
    std::uint8_t byte() { return pos < size ? data[pos++] : 0; }
};

double dot(std::span<const float> a, std::span<const float> b) {
    double sum = 0;
    for (std::size_t i = 0; i < a.size(); ++i) sum += static_cast<double>(a[i]) * static_cast<double>(b[i]);
    return sum;
}

double int8_bound(std::span<const float> q, std::span<const float> v) {
    double q1 = 0, v1 = 0, qmax = 0, vmax = 0;
    for (const float x : q) {
        q1 += std::fabs(x);
        qmax = std::max(qmax, static_cast<double>(std::fabs(x)));
    }
    for (const float x : v) {
        v1 += std::fabs(x);
        vmax = std::max(vmax, static_cast<double>(std::fabs(x)));
    }
    return (q1 * vmax + v1 * qmax) / 254.0 + static_cast<double>(q.size()) * qmax * vmax / (254.0 * 254.0) + 1e-4;
}

template <class F>
bool invalid_argument(F&& f) {
    try {
        f();
    } catch (const llmfast::Error& e) {
        return e.code() == llmfast::ErrorCode::InvalidArgument;
    }
    return false;
}

using Reference = std::map<std::uint64_t, std::vector<float>>;

// Checks one search result. `exact`: FlatIndex (complete top-k); otherwise approximate (a subset).
void check_hits(const std::vector<llmfast::SearchHit>& hits, const Reference& ref, std::span<const float> query,
                std::size_t k, bool exact, bool int8) {
    const std::size_t expected_size = std::min(k, ref.size());
    if (exact) {
        check(hits.size() == expected_size);
    } else {
        check(hits.size() <= expected_size);
    }
    std::set<std::uint64_t> seen;
    double last_true = 0;   // true score of the last (lowest-scored) hit
    double last_bound = 0;
    for (std::size_t i = 0; i < hits.size(); ++i) {
        const auto it = ref.find(hits[i].id);
        check(it != ref.end());                    // live ids only: removed ids never come back
        check(seen.insert(hits[i].id).second);     // no duplicates
        check(std::isfinite(hits[i].score));
        const double truth = dot(query, it->second);
        const double tolerance = int8 ? int8_bound(query, it->second) : 1e-4;
        check(std::fabs(static_cast<double>(hits[i].score) - truth) <= tolerance);
        if (i > 0) check(hits[i - 1].score >= hits[i].score);  // best first (by the index's own scores)
        last_true = truth;
        last_bound = tolerance;
    }
    if (!exact || hits.size() < expected_size || hits.empty()) return;
    // Nothing left out scores above the last hit returned (ties and quantization aside): the index
    // scored it no higher than the last hit, so its true score is at most last + both errors.
    for (const auto& [id, vector] : ref) {
        if (seen.contains(id)) continue;
        const double tolerance = int8 ? last_bound + int8_bound(query, vector) : 2e-4;
        check(dot(query, vector) <= last_true + tolerance);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    Input in{data, size};
    const std::size_t dim = 1 + in.byte() % 12;
    llmfast::FlatIndex f32(dim);
    llmfast::FlatIndex i8(dim, {.storage = llmfast::FlatIndex::Storage::Int8});
#ifdef LLMFAST_FUZZ_HNSW
    llmfast::HnswIndex hnsw(dim, {.m = 4, .ef_construction = 16, .ef_search = 16, .initial_capacity = 4});
#endif
    Reference ref;
    std::vector<float> vector(dim);
    const auto read_vector = [&] {
        for (float& x : vector) x = static_cast<float>(static_cast<std::int8_t>(in.byte())) / 16.0F;
    };
    int ops = 0;
    while (!in.done() && ops++ < 400) {
        const std::uint8_t op = in.byte() % 6;
        const std::uint64_t id = in.byte() % 24;
        switch (op) {
            case 0:
            case 1: {  // add (or replace)
                read_vector();
                f32.add(id, vector);
                i8.add(id, vector);
#ifdef LLMFAST_FUZZ_HNSW
                hnsw.add(id, vector);
#endif
                ref[id] = vector;
                break;
            }
            case 2: {  // remove
                const bool present = ref.erase(id) == 1;
                check(f32.remove(id) == present);
                check(i8.remove(id) == present);
#ifdef LLMFAST_FUZZ_HNSW
                check(hnsw.remove(id) == present);
#endif
                break;
            }
            case 3: {  // search
                const std::size_t k = id % 8;
                read_vector();
                check_hits(f32.search(vector, k), ref, vector, k, true, false);
                check_hits(i8.search(vector, k), ref, vector, k, true, true);
#ifdef LLMFAST_FUZZ_HNSW
                check_hits(hnsw.search(vector, k), ref, vector, k, false, false);
#endif
                break;
            }
            default: {  // non-finite input: add and search are InvalidArgument, nothing changes
                read_vector();
                const std::uint8_t which = in.byte();
                const float bad[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                                     -std::numeric_limits<float>::infinity()};
                vector[which % dim] = bad[(which / 16) % 3];
                const std::size_t k = 1 + id % 3;
                check(invalid_argument([&] { f32.add(id, vector); }));
                check(invalid_argument([&] { i8.add(id, vector); }));
                check(invalid_argument([&] { (void)f32.search(vector, k); }));
                check(invalid_argument([&] { (void)i8.search(vector, k); }));
#ifdef LLMFAST_FUZZ_HNSW
                check(invalid_argument([&] { hnsw.add(id, vector); }));
                check(invalid_argument([&] { (void)hnsw.search(vector, k); }));
#endif
                break;
            }
        }
        check(f32.size() == ref.size() && i8.size() == ref.size());
        check(f32.contains(id) == ref.contains(id) && i8.contains(id) == ref.contains(id));
#ifdef LLMFAST_FUZZ_HNSW
        check(hnsw.size() == ref.size() && hnsw.contains(id) == ref.contains(id));
#endif
    }
    return 0;
}
