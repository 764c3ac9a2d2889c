// Fuzz target: SemanticCache::load_from_string on arbitrary bytes. Every input must either load or
// throw Error(CorruptSnapshot); a rejected input must leave the cache exactly as it was.
// Seeds: tests/fuzz/corpus/cache_snapshot/valid.snap, written by tests/semantic_cache_test.cpp
// (`LLMFAST_WRITE_FUZZ_SEED=1 semantic_cache_test "fuzz seed*"`), which otherwise checks it still loads.
#include <llmfast/semantic_cache.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace {

// The seed snapshot's embedder: small, so the fuzzer spends its time in the parser.
using Cache = llmfast::SemanticCache<llmfast::HashingEmbedder, llmfast::FlatIndex, llmfast::ManualClock>;

llmfast::ManualClock& clock_instance() {
    static llmfast::ManualClock clock(std::chrono::hours(1000));
    return clock;
}

Cache make_cache() {
    return Cache(llmfast::HashingEmbedder({.dimension = 16}),
                 {.max_entries = 64, .ttl = std::chrono::hours(24), .semantic_tier = llmfast::SemanticTier::On,
                  .similarity_threshold = 0.5F, .shards = 2},
                 {}, clock_instance());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    Cache cache = make_cache();
    cache.insert("sentinel prompt", "scope", "sentinel response");
    const std::string before = cache.save_to_string();
    try {
        cache.load_from_string(std::string_view(reinterpret_cast<const char*>(data), size));
    } catch (const llmfast::Error& e) {
        if (e.code() != llmfast::ErrorCode::CorruptSnapshot) std::abort();
        // Rejected: the cache must be unchanged.
        if (cache.size() != 1 || cache.save_to_string() != before) std::abort();  // the clock does not move
        if (cache.lookup("sentinel prompt", "scope").response() != "sentinel response") std::abort();
        return 0;
    }
    // Accepted: the cache must be usable and re-serialize to something it accepts again.
    const std::string again = cache.save_to_string();
    Cache other = make_cache();
    other.load_from_string(again);
    if (other.size() != cache.size()) std::abort();
    return 0;
}
