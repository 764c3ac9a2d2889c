// llmfast/hnsw_index.hpp — `HnswIndex`: approximate nearest-neighbour search over hnswlib, for
// caches with millions of entries per scope. Optional: needs hnswlib (Debian: libhnswlib-dev; link
// the CMake target llmfast::hnsw) and is not part of llmfast/llmfast.hpp.
//
//     #include <llmfast/hnsw_index.hpp>
//     #include <llmfast/semantic_cache.hpp>
//     llmfast::SemanticCache<llmfast::HashingEmbedder, llmfast::HnswIndex> cache(
//         llmfast::HashingEmbedder{}, {.semantic_tier = llmfast::SemanticTier::On},
//         {.m = 16, .ef_construction = 200, .ef_search = 64});
//
// It models `VectorIndex` (llmfast/vector_index.hpp, the only llmfast interface it depends on) with inner-product similarity. Written for
// hnswlib 0.6.2 (Debian 12), which has no filtered search, no slot reuse for deleted elements and
// throws when adding past `max_elements`, so:
//   - the cache keeps one index per scope (a hit never crosses scopes, and nothing is filtered away);
//   - `remove` marks the element deleted and keeps its label on a free list; the next `add` of a new
//     id reuses that label (`addPoint` on an existing label un-deletes and updates it in place), so
//     churn does not grow the index;
//   - when no label is free and the index is full, `add` doubles it with `resizeIndex`;
//   - an even dimension is stored with one extra zero component: hnswlib puts each element's 8-byte
//     label right after its 8M + 4 bytes of links and its vector, so with an even dimension every
//     label is misaligned (undefined behaviour that clang's UBSan reports in hnswlib's addPoint); an
//     odd stored dimension aligns them, and a zero component changes no inner product.
//
// Thread-safety: like FlatIndex, not synchronized: concurrent `search` calls on a const index are
// safe (hnswlib's search only takes its own internal locks); `add`, `remove` and `set_ef_search`
// need exclusive access (`resizeIndex` is not thread-safe) — SemanticCache holds a reader/writer lock
// per scope.
//
// Errors: the constructor throws Error(InvalidArgument) for dimension 0, m < 2, ef_construction or
// ef_search 0; `add`/`search` throw Error(InvalidArgument) for a vector of the wrong size or with a
// NaN or an infinity (the index is then unchanged); hnswlib's
// own failures (out of memory) propagate as std::runtime_error / std::bad_alloc.
#pragma once

#include <llmfast/version.hpp>
#include <llmfast/detail/finite_vector.hpp>
#include <llmfast/error.hpp>
#include <llmfast/vector_index.hpp>

// hnswlib 0.6.2's SSE prefetches read one link past the end of a node's neighbour list (harmless on
// real hardware, a heap-buffer-overflow to AddressSanitizer). Under ASan, build hnswlib without its
// manual vectorization (only if nothing included it before us).
#if defined(__SANITIZE_ADDRESS__)
#define LLMFAST_HNSW_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LLMFAST_HNSW_ASAN 1
#endif
#endif
#if defined(LLMFAST_HNSW_ASAN) && !defined(NO_MANUAL_VECTORIZATION)
#define NO_MANUAL_VECTORIZATION
#endif
#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

LLMFAST_BEGIN_NAMESPACE

struct HnswIndexOptions {
    std::size_t m = 16;                   ///< graph degree (hnswlib's M)
    std::size_t ef_construction = 200;    ///< candidate list size while building
    std::size_t ef_search = 64;           ///< candidate list size while searching (recall vs latency)
    /// Elements allocated up front (vectors + links, ~1.9 KB each at dimension 384); doubled when full.
    /// The cache builds one index per scope: with many small scopes, keep this small.
    std::size_t initial_capacity = 1024;
    std::size_t random_seed = 100;        ///< level generator seed (fixed: builds are reproducible)
};

/// Approximate inner-product search over hnswlib (see the header comment). Thread-safety: concurrent
/// const `search` calls are safe; `add`, `remove` and `set_ef_search` need exclusive access.
class HnswIndex {
public:
    using Options = HnswIndexOptions;

    explicit HnswIndex(std::size_t dimension, const Options& options = {})
        : dimension_(dimension), options_(options) {
        if (dimension == 0) {
            throw Error(ErrorCode::InvalidArgument, fmt::format("HnswIndex::HnswIndex: dimension must be > 0 (got {})", dimension));
        }
        if (options.m < 2) throw Error(ErrorCode::InvalidArgument, fmt::format("HnswIndexOptions::m must be >= 2 (got {})", options.m));
        if (options.ef_construction == 0) {
            throw Error(ErrorCode::InvalidArgument,
                        fmt::format("HnswIndexOptions::ef_construction must be > 0 (got {})", options.ef_construction));
        }
        if (options.ef_search == 0) {
            throw Error(ErrorCode::InvalidArgument, fmt::format("HnswIndexOptions::ef_search must be > 0 (got {})", options.ef_search));
        }
        stored_dimension_ = dimension % 2 == 0 ? dimension + 1 : dimension;
        space_ = std::make_unique<hnswlib::InnerProductSpace>(stored_dimension_);
        capacity_ = std::max<std::size_t>(options.initial_capacity, 16);
        graph_ = std::make_unique<hnswlib::HierarchicalNSW<float>>(space_.get(), capacity_, options.m,
                                                                   options.ef_construction, options.random_seed);
        graph_->setEf(options.ef_search);
    }

    [[nodiscard]] std::size_t dimension() const noexcept { return dimension_; }
    /// Live (not removed) vectors.
    [[nodiscard]] std::size_t size() const noexcept { return labels_.size(); }
    /// Elements allocated in the graph (live + reusable slots + spare room).
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }

    /// Adds `vector` under `id`, replacing the vector already stored under that id.
    void add(std::uint64_t id, std::span<const float> vector) {
        check_size(vector.size(), "add");
        detail::require_finite(vector, "HnswIndex", "add");
        if (const auto it = labels_.find(id); it != labels_.end()) {
            graph_->addPoint(stored(vector), it->second);  // existing label: updated in place
            return;
        }
        hnswlib::labeltype label = 0;
        const bool reuse = !free_labels_.empty();
        if (reuse) {
            label = free_labels_.back();
        } else {
            label = static_cast<hnswlib::labeltype>(ids_.size());
            if (ids_.size() >= capacity_) {
                graph_->resizeIndex(capacity_ * 2);
                capacity_ *= 2;
            }
        }
        // Make room in our bookkeeping first (geometric growth, as push_back would), so that after
        // hnswlib accepted the point nothing can fail.
        if (static_cast<double>(labels_.size() + 1) >
            static_cast<double>(labels_.bucket_count()) * static_cast<double>(labels_.max_load_factor())) {
            labels_.reserve(std::max<std::size_t>(16, 2 * labels_.size()));
        }
        if (!reuse && ids_.size() == ids_.capacity()) ids_.reserve(std::max<std::size_t>(16, 2 * ids_.capacity()));
        graph_->addPoint(stored(vector), label);  // a reused (deleted) label is un-deleted and updated
        if (reuse) {
            free_labels_.pop_back();
            ids_[label] = id;
        } else {
            ids_.push_back(id);
        }
        labels_.emplace(id, label);
    }

    /// Removes `id` (marks it deleted; its slot is reused by a later add); false if absent.
    bool remove(std::uint64_t id) {
        const auto it = labels_.find(id);
        if (it == labels_.end()) return false;
        if (free_labels_.size() == free_labels_.capacity()) {
            free_labels_.reserve(std::max<std::size_t>(16, 2 * free_labels_.capacity()));
        }
        graph_->markDelete(it->second);
        free_labels_.push_back(it->second);
        labels_.erase(it);
        return true;
    }

    [[nodiscard]] bool contains(std::uint64_t id) const { return labels_.contains(id); }

    /// Up to `k` approximate nearest ids by inner product, best first.
    [[nodiscard]] std::vector<SearchHit> search(std::span<const float> query, std::size_t k) const {
        check_size(query.size(), "search");
        detail::require_finite(query, "HnswIndex", "search");
        if (k == 0 || labels_.empty()) return {};
        auto queue = graph_->searchKnn(stored(query), std::min(k, labels_.size()));
        std::vector<SearchHit> hits(queue.size());
        // hnswlib's queue pops the farthest first; its inner-product "distance" is 1 - dot.
        for (std::size_t i = hits.size(); i-- > 0;) {
            const auto& [distance, label] = queue.top();
            hits[i] = SearchHit{ids_[label], 1.0F - distance};
            queue.pop();
        }
        return hits;
    }

    /// Changes the search candidate list size (needs exclusive access).
    void set_ef_search(std::size_t ef) {
        if (ef == 0) throw Error(ErrorCode::InvalidArgument, fmt::format("HnswIndex::set_ef_search: ef must be > 0 (got {})", ef));
        graph_->setEf(ef);
        options_.ef_search = ef;
    }

    /// Bytes of the graph (vectors and links for every allocated element) and the id maps.
    [[nodiscard]] std::size_t memory_bytes() const noexcept {
        return capacity_ * (graph_->size_data_per_element_ + sizeof(void*)) + ids_.capacity() * sizeof(std::uint64_t) +
               labels_.size() * 48 + free_labels_.capacity() * sizeof(hnswlib::labeltype);
    }

    /// Bytes one more vector adds (its graph element and map entries).
    [[nodiscard]] std::size_t bytes_per_vector() const noexcept {
        return graph_->size_data_per_element_ + sizeof(void*) + sizeof(std::uint64_t) + 48;
    }

private:
    void check_size(std::size_t size, const char* what) const {
        if (size != dimension_) {
            throw Error(ErrorCode::InvalidArgument,
                        fmt::format("HnswIndex::{}: vector has {} floats, index dimension is {}", what, size, dimension_));
        }
    }

    // `vector` as hnswlib stores it: itself for an odd dimension, else copied into a per-thread buffer
    // with the zero component appended (valid until this thread's next call).
    const float* stored(std::span<const float> vector) const {
        if (stored_dimension_ == dimension_) return vector.data();
        thread_local std::vector<float> buffer;
        buffer.assign(vector.begin(), vector.end());
        buffer.resize(stored_dimension_, 0.0F);
        return buffer.data();
    }

    std::size_t dimension_;
    std::size_t stored_dimension_ = 0;  // dimension_ rounded up to odd (see the header comment)
    Options options_;
    std::size_t capacity_ = 0;
    std::unique_ptr<hnswlib::InnerProductSpace> space_;
    std::unique_ptr<hnswlib::HierarchicalNSW<float>> graph_;
    std::vector<std::uint64_t> ids_;                                  // label -> id (stale for free labels)
    std::unordered_map<std::uint64_t, hnswlib::labeltype> labels_;    // id -> label, live only
    std::vector<hnswlib::labeltype> free_labels_;                     // deleted labels to reuse
};

static_assert(VectorIndex<HnswIndex>);

LLMFAST_END_NAMESPACE
