// benchmarks/hnsw_bench.cpp — HnswIndex at large N: search latency and recall@1 against exact search.
//
//   hnsw_bench [--quick] [--rounds N] [--n ENTRIES] [--prompts-only]
//
// Two data sets, dimension 384:
//  - realistic: HashingEmbedder vectors of generated prompts (Chinese/English question templates with
//    topics, numbers and ticket ids, see cache_workload.hpp); queries are fresh generated prompts;
//  - random unit vectors, the hardest case for a graph index (no cluster structure).
// Recall@1 = share of queries whose HnswIndex top-1 is FlatIndex's (exact) top-1 (or ties with it). Latency is the
// median per-query CPU time of the measuring thread. Build time is reported as context.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // g++ 12 bug 105593 in xxhash's AVX-512 path
#endif
#include <llmfast/hnsw_index.hpp>
#include <llmfast/flat_index.hpp>
#include <llmfast/hashing_embedder.hpp>
#include <llmfast/semantic_cache.hpp>

#include "bench_common.hpp"
#include "cache_workload.hpp"

#include <cstdlib>
#include <string>
#include <vector>

namespace {

using llmfast::bench::thread_cpu_seconds;

struct QuerySet {
    std::string name;
    std::vector<float> vectors;
};

void run(const char* name, const std::vector<float>& data, const std::vector<QuerySet>& query_sets, std::size_t dim,
         const llmfast::bench::Options& options) {
    llmfast::bench::Table table(fmt::format("HnswIndex (M=16), dimension 384, {}: {} entries", name, data.size() / dim));
    const std::size_t n = data.size() / dim;
    llmfast::FlatIndex flat(dim, {.initial_capacity = n});
    llmfast::HnswIndex hnsw(dim, {.m = 16, .ef_construction = options.quick ? std::size_t{64} : std::size_t{100}, .ef_search = 64,
                                  .initial_capacity = n});
    const double build_start = llmfast::bench::now_seconds();
    for (std::size_t i = 0; i < n; ++i) {
        const std::span<const float> v(data.data() + i * dim, dim);
        hnsw.add(i, v);
        flat.add(i, v);
    }
    const double build_seconds = llmfast::bench::now_seconds() - build_start;
    table.add_absolute(fmt::format("{} {}k: build (wall)", name, n / 1000), build_seconds, "s");
    for (const QuerySet& set : query_sets) {
        const std::vector<float>& queries = set.vectors;
        const std::size_t q = queries.size() / dim;
        const std::string label = fmt::format("{} {}k, {}", name, n / 1000, set.name);
        std::vector<llmfast::SearchHit> truth(q);
        for (std::size_t i = 0; i < q; ++i) truth[i] = flat.search(std::span<const float>(queries.data() + i * dim, dim), 1)[0];
        for (const std::size_t ef : {16, 32, 64, 128, 256, 512, 1024}) {
            hnsw.set_ef_search(ef);
            std::vector<double> samples;
            std::size_t agree = 0;
            std::size_t close = 0;  // found an entry within 0.01 cosine of the best: the same cache decision nearly always
            for (int round = 0; round < options.rounds; ++round) {
                const double start = thread_cpu_seconds();
                for (std::size_t i = 0; i < q; ++i) {
                    const auto hits = hnsw.search(std::span<const float>(queries.data() + i * dim, dim), 1);
                    // A tie (generated prompts can embed identically) counts as found.
                    if (round == 0 && !hits.empty() && (hits[0].id == truth[i].id || hits[0].score >= truth[i].score - 1e-5F)) ++agree;
                    if (round == 0 && !hits.empty() && hits[0].score >= truth[i].score - 0.01F) ++close;
                }
                samples.push_back((thread_cpu_seconds() - start) * 1e6 / static_cast<double>(q));
            }
            table.add_absolute(fmt::format("{} ef={}: latency", label, ef), llmfast::bench::median(samples), "us");
            table.add_absolute(fmt::format("{} ef={}: recall@1", label, ef),
                               static_cast<double>(agree) / static_cast<double>(q), "");
            table.add_absolute(fmt::format("{} ef={}: within 0.01 of best", label, ef),
                               static_cast<double>(close) / static_cast<double>(q), "");
        }
        // The exact scan on the same data, for scale.
        std::vector<double> flat_samples;
        for (int round = 0; round < std::min(options.rounds, 3); ++round) {
            const double start = thread_cpu_seconds();
            for (std::size_t i = 0; i < std::min<std::size_t>(q, 20); ++i) {
                llmfast::bench::keep(flat.search(std::span<const float>(queries.data() + i * dim, dim), 1));
            }
            flat_samples.push_back((thread_cpu_seconds() - start) * 1e6 / static_cast<double>(std::min<std::size_t>(q, 20)));
        }
        table.add_absolute(fmt::format("{}: FlatIndex exact latency", label), llmfast::bench::median(flat_samples), "us");
    }
    table.print();  // per data set, so a long run shows progress
}

}  // namespace

int main(int argc, char** argv) {
    auto options = llmfast::bench::parse_options(argc, argv, "[--n ENTRIES] [--prompts-only]");
    std::size_t n = options.quick ? 2000 : 100000;
    bool prompts_only = false;  // --prompts-only: skip the random-vector set (for a long 1M run)
    for (std::size_t i = 0; i < options.positional.size(); ++i) {
        if (options.positional[i] == "--n" && i + 1 < options.positional.size()) {
            n = static_cast<std::size_t>(std::atoll(options.positional[i + 1].c_str()));
        }
        if (options.positional[i] == "--prompts-only") prompts_only = true;
    }
    const std::size_t dim = 384;
    const std::size_t queries_n = options.quick ? 50 : 300;
    {
        const llmfast::HashingEmbedder embedder;
        llmfast::bench::PromptGenerator gen(42);
        std::vector<float> data(n * dim), queries(queries_n * dim);
        for (std::size_t i = 0; i < n; ++i) embedder.embed(gen.next(), std::span<float>(data.data() + i * dim, dim));
        for (std::size_t i = 0; i < queries_n; ++i) embedder.embed(gen.next(), std::span<float>(queries.data() + i * dim, dim));
        run("prompts", data, {{"new generated prompts", std::move(queries)}}, dim, options);
    }
    if (!prompts_only) {
        const std::vector<float> data = llmfast::bench::random_unit_vectors(n, dim, 1);
        std::vector<float> near = llmfast::bench::random_unit_vectors(queries_n, dim, 3);
        for (std::size_t i = 0; i < queries_n; ++i) {  // 0.8 * a stored vector + 0.6 * noise: cosine ~0.8
            for (std::size_t j = 0; j < dim; ++j) near[i * dim + j] = 0.8F * data[(i * 331 % n) * dim + j] + 0.6F * near[i * dim + j];
        }
        run("random", data,
            {{"queries near a stored vector", std::move(near)},
             {"random queries (no near neighbour)", llmfast::bench::random_unit_vectors(queries_n, dim, 2)}},
            dim, options);
    }
    return 0;
}
