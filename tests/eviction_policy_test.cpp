#include <llmfast/eviction_policy.hpp>
#include <llmfast/hashing_embedder.hpp>
#include <llmfast/semantic_cache.hpp>

#include "catch.hpp"

#include <chrono>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace {

struct NotAPolicy {
    struct Hook {};
    void on_insert(Hook&) {}
};

// Hooks standing in for cache entries.
template <class Policy>
struct Entries {
    std::vector<typename Policy::Hook> hooks;
    explicit Entries(std::size_t n) : hooks(n) {}
    std::size_t index_of(const typename Policy::Hook* hook) const { return static_cast<std::size_t>(hook - hooks.data()); }
};

}  // namespace

TEST_CASE("EvictionPolicy concept", "[cache]") {
    STATIC_REQUIRE(llmfast::EvictionPolicy<llmfast::LruPolicy>);
    STATIC_REQUIRE(llmfast::EvictionPolicy<llmfast::LfuPolicy>);
    STATIC_REQUIRE_FALSE(llmfast::EvictionPolicy<NotAPolicy>);
    STATIC_REQUIRE_FALSE(llmfast::EvictionPolicy<int>);
}

TEST_CASE("LruPolicy: least recently used first, never the kept entry", "[cache]") {
    llmfast::LruPolicy lru;
    Entries<llmfast::LruPolicy> e(3);
    CHECK(lru.victim(nullptr) == nullptr);
    for (auto& hook : e.hooks) lru.on_insert(hook);
    CHECK(e.index_of(lru.victim(nullptr)) == 0);
    lru.on_access(e.hooks[0]);
    CHECK(e.index_of(lru.victim(nullptr)) == 1);
    CHECK(e.index_of(lru.victim(&e.hooks[1])) == 2);
    lru.on_remove(e.hooks[1]);
    CHECK(e.index_of(lru.victim(nullptr)) == 2);
    lru.on_remove(e.hooks[2]);
    CHECK(lru.victim(&e.hooks[0]) == nullptr);
    lru.on_remove(e.hooks[0]);
    CHECK(lru.victim(nullptr) == nullptr);
}

TEST_CASE("LfuPolicy: least frequently used first, aging, never the kept entry", "[cache]") {
    llmfast::LfuPolicy lfu;
    Entries<llmfast::LfuPolicy> e(4);
    for (auto& hook : e.hooks) lfu.on_insert(hook);
    for (int i = 0; i < 3; ++i) lfu.on_access(e.hooks[0]);
    lfu.on_access(e.hooks[1]);
    lfu.on_access(e.hooks[3]);
    CHECK(e.index_of(lfu.victim(nullptr)) == 2);  // the only one never hit
    CHECK(e.index_of(lfu.victim(&e.hooks[2])) != 0);
    lfu.on_remove(e.hooks[2]);
    CHECK(e.index_of(lfu.victim(nullptr)) != 0);
    // Aging halves every count, so hits long ago stop protecting an entry.
    const std::uint32_t before = e.hooks[0].count;
    for (std::size_t i = 0; i < llmfast::LfuPolicy::aging_factor * 3; ++i) lfu.on_access(e.hooks[1]);
    CHECK(e.hooks[0].count < before);
    CHECK(e.index_of(lfu.victim(nullptr)) != 1);
}

TEST_CASE("LfuPolicy behind SemanticCache keeps the entries that are hit", "[cache]") {
    using Cache = llmfast::SemanticCache<llmfast::HashingEmbedder, llmfast::FlatIndex, llmfast::WallClock, llmfast::LfuPolicy>;
    Cache cache({}, {.max_entries = 8, .semantic_tier = llmfast::SemanticTier::Off, .shards = 1});
    for (int i = 0; i < 4; ++i) cache.insert(fmt::format("hot {}", i), "s", "h");
    for (int round = 0; round < 3; ++round) {
        for (int i = 0; i < 4; ++i) REQUIRE(cache.lookup(fmt::format("hot {}", i), "s"));
    }
    // A scan of one-time prompts: LRU would evict the hot entries; LFU evicts the scan.
    for (int i = 0; i < 40; ++i) cache.insert(fmt::format("cold {}", i), "s", "c");
    CHECK(cache.size() == 8);
    for (int i = 0; i < 4; ++i) CHECK(cache.lookup(fmt::format("hot {}", i), "s"));
    CHECK(cache.stats().evictions == 36);
    // The same through the default policy, for contrast.
    llmfast::SemanticCache<llmfast::HashingEmbedder> lru({}, {.max_entries = 8, .semantic_tier = llmfast::SemanticTier::Off, .shards = 1});
    for (int i = 0; i < 4; ++i) lru.insert(fmt::format("hot {}", i), "s", "h");
    for (int i = 0; i < 4; ++i) REQUIRE(lru.lookup(fmt::format("hot {}", i), "s"));
    for (int i = 0; i < 40; ++i) lru.insert(fmt::format("cold {}", i), "s", "c");
    for (int i = 0; i < 4; ++i) CHECK_FALSE(lru.lookup(fmt::format("hot {}", i), "s"));
}
