#include <llmfast/hnsw_index.hpp>
#include <llmfast/flat_index.hpp>
#include <llmfast/hashing_embedder.hpp>
#include <llmfast/semantic_cache.hpp>

#include "catch.hpp"
#include "test_support.hpp"

#include <cmath>
#include <limits>
#include <random>
#include <thread>
#include <vector>

// hnswlib's addPoint takes its global lock and per-element locks in an order ThreadSanitizer flags as
// a potential inversion even in one thread. HnswIndex never runs two adds at once (the cache holds
// the scope's exclusive lock), so the pattern cannot deadlock; lock-order checking is off in this
// program only (semantic_cache_test checks the cache's own lock order). Data races are still reported.
extern "C" const char* __tsan_default_options() { return "detect_deadlocks=0"; }

namespace {

using llmfast::testing::random_unit;

}  // namespace

TEST_CASE("HnswIndex models VectorIndex", "[cache]") {
    STATIC_REQUIRE(llmfast::VectorIndex<llmfast::HnswIndex>);
}

TEST_CASE("HnswIndex: recall against FlatIndex, growth past the initial capacity", "[cache]") {
    const std::size_t dim = 32;
    llmfast::HnswIndex hnsw(dim, {.initial_capacity = 64});
    llmfast::FlatIndex flat(dim);
    std::mt19937_64 rng(7);
    for (std::uint64_t id = 0; id < 2000; ++id) {
        const auto v = random_unit(rng, dim);
        hnsw.add(id + 1000, v);
        flat.add(id + 1000, v);
    }
    CHECK(hnsw.size() == 2000);
    CHECK(hnsw.capacity() >= 2000);
    int agree = 0;
    for (int q = 0; q < 200; ++q) {
        const auto query = random_unit(rng, dim);
        const auto got = hnsw.search(query, 5);
        REQUIRE(got.size() == 5);
        for (std::size_t i = 1; i < got.size(); ++i) CHECK(got[i - 1].score >= got[i].score);
        if (got[0].id == flat.search(query, 1).at(0).id) ++agree;
    }
    CHECK(agree >= 190);  // recall@1 >= 0.95 on random vectors at this size
}

TEST_CASE("HnswIndex: remove, label reuse, update in place", "[cache]") {
    const std::size_t dim = 16;
    llmfast::HnswIndex index(dim, {.initial_capacity = 16});
    std::mt19937_64 rng(3);
    std::vector<std::vector<float>> vectors;
    for (std::uint64_t id = 0; id < 16; ++id) {
        vectors.push_back(random_unit(rng, dim));
        index.add(id, vectors.back());
    }
    CHECK(index.capacity() == 16);
    CHECK(index.search(vectors[5], 1).at(0).id == 5);
    CHECK(index.search(vectors[5], 1).at(0).score == Approx(1.0).margin(1e-5));
    CHECK(index.remove(5));
    CHECK_FALSE(index.remove(5));
    CHECK_FALSE(index.contains(5));
    for (const auto& hit : index.search(vectors[5], 15)) CHECK(hit.id != 5);
    // A new id reuses the freed slot: no growth.
    vectors.push_back(random_unit(rng, dim));
    index.add(100, vectors.back());
    CHECK(index.capacity() == 16);
    CHECK(index.size() == 16);
    CHECK(index.search(vectors.back(), 1).at(0).id == 100);
    // Churn: remove and add many times; capacity stays put.
    for (std::uint64_t round = 0; round < 200; ++round) {
        CHECK(index.remove(round == 0 ? 100 : 1000 + round - 1));
        index.add(1000 + round, random_unit(rng, dim));
    }
    CHECK(index.capacity() == 16);
    CHECK(index.size() == 16);
    // Update in place.
    index.add(0, vectors[7]);
    const auto hits = index.search(vectors[7], 2);
    CHECK(((hits[0].id == 0 || hits[0].id == 7) && (hits[1].id == 0 || hits[1].id == 7)));
    // Removing everything leaves an empty index that searches to nothing.
    llmfast::HnswIndex small(dim);
    small.add(1, vectors[0]);
    small.remove(1);
    CHECK(small.search(vectors[0], 3).empty());
    CHECK_THROWS_AS(small.add(2, std::vector<float>(3)), llmfast::Error);
    CHECK_THROWS_AS(llmfast::HnswIndex(0), llmfast::Error);
    CHECK_THROWS_AS(llmfast::HnswIndex(4, {.m = 1}), llmfast::Error);
}

TEST_CASE("HnswIndex behind SemanticCache, concurrent lookups", "[cache]") {
    llmfast::SemanticCache<llmfast::HashingEmbedder, llmfast::HnswIndex> cache(
        llmfast::HashingEmbedder{},
        {.max_entries = 100, .semantic_tier = llmfast::SemanticTier::On, .similarity_threshold = 0.6F, .shards = 4},
        {.initial_capacity = 16});
    cache.insert("什么是机器学习?", "m", "ML");
    for (int i = 0; i < 150; ++i) cache.insert(fmt::format("filler prompt number {}", i), "m", "x");  // evicts and reuses
    cache.insert("什么是深度学习?", "m", "DL");
    CHECK(cache.lookup("深度学习是什么?", "m").response() == "DL");
    std::vector<std::thread> threads;
    std::atomic<int> hits{0};
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 100; ++i) {
                if (cache.lookup("深度学习是什么?", "m")) hits.fetch_add(1);
                if (t == 0 && i < 20) cache.insert(fmt::format("more filler {}", i), "m", "y");  // < 25 per shard: DL stays
            }
        });
    }
    for (auto& thread : threads) thread.join();
    CHECK(hits.load() == 400);
    CHECK(cache.size() <= 100);
}

// Issue 11 #10: non-finite input is an InvalidArgument for HnswIndex as for FlatIndex (hnswlib would
// store the NaN and return NaN scores).
TEST_CASE("HnswIndex rejects non-finite vectors in add and search, and stays unchanged", "[cache]") {
    llmfast::HnswIndex index(3, {.initial_capacity = 16});
    index.add(1, std::vector<float>{1, 0, 0});
    index.add(2, std::vector<float>{0, 1, 0});
    for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity()}) {
        const std::vector<float> vector{0.5F, bad, 0};
        CHECK(llmfast::testing::error_code_of([&] { index.add(3, vector); }) == llmfast::ErrorCode::InvalidArgument);
        CHECK(llmfast::testing::error_code_of([&] { index.add(1, vector); }) == llmfast::ErrorCode::InvalidArgument);
        CHECK(llmfast::testing::error_code_of([&] { (void)index.search(vector, 1); }) == llmfast::ErrorCode::InvalidArgument);
        CHECK(llmfast::testing::error_code_of([&] { (void)index.search(vector, 2); }) == llmfast::ErrorCode::InvalidArgument);
    }
    CHECK(index.size() == 2);
    CHECK_FALSE(index.contains(3));
    const auto hits = index.search(std::vector<float>{1, 0, 0}, 2);
    REQUIRE(hits.size() == 2);
    CHECK(hits[0].id == 1);
    CHECK(hits[0].score == Approx(1.0).margin(1e-5));
}
