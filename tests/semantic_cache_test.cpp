#include <llmfast/semantic_cache.hpp>
#include <llmfast/hashing_embedder.hpp>

#include "catch.hpp"
#include "test_support.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <latch>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <variant>
#include <vector>

using namespace std::chrono_literals;
using llmfast::MatchKind;

namespace {

using Cache = llmfast::SemanticCache<llmfast::HashingEmbedder, llmfast::FlatIndex, llmfast::ManualClock>;

llmfast::SemanticCacheOptions semantic_options() {
    return {.max_entries = 1000, .ttl = 1h, .semantic_tier = llmfast::SemanticTier::On,
            .similarity_threshold = 0.6F, .shards = 4};
}

Cache make_cache(const llmfast::ManualClock& clock, llmfast::SemanticCacheOptions options = semantic_options()) {
    return Cache(clock, llmfast::HashingEmbedder{}, options);
}

std::filesystem::path temp_path(const std::string& name) {
    return std::filesystem::temp_directory_path() / fmt::format("llmfast_cache_test_{}_{}", name, ::getpid());
}

// A user "model": one dimension per keyword, so similarities are predictable in tests.
struct KeywordEmbedder {
    std::size_t dimension() const { return 4; }
    std::string identity() const { return "keyword/1"; }
    void embed(std::string_view text, std::span<float> out) const {
        const char* words[] = {"apple", "banana", "cherry", "date"};
        for (std::size_t i = 0; i < 4; ++i) out[i] = text.find(words[i]) != std::string_view::npos ? 1.0F : 0.0F;
    }
};

}  // namespace

TEST_CASE("exact tier: normalization, misses, scopes", "[cache]") {
    llmfast::ManualClock clock;
    auto cache = make_cache(clock, {.semantic_tier = llmfast::SemanticTier::Off});
    CHECK_FALSE(cache.semantic_enabled());
    CHECK_FALSE(cache.lookup("What is ML?", "m1"));
    CHECK(cache.insert("  What is   ML？ ", "m1", "machine learning"));
    for (const char* variant : {"What is ML?", "what is ml?", "WHAT IS ML?", "\twhat\u3000is ml？\n", "ｗｈａｔ ｉｓ ＭＬ?"}) {
        const auto result = cache.lookup(variant, "m1");
        INFO(variant);
        REQUIRE(result);
        CHECK(result.match == MatchKind::Exact);
        CHECK(result.response() == "machine learning");
        CHECK(result.similarity == 1.0F);
    }
    CHECK_FALSE(cache.lookup("What is ML", "m1"));       // punctuation matters
    CHECK_FALSE(cache.lookup("What is ML?", "m2"));      // other scope
    CHECK_FALSE(cache.lookup("What is ML?", ""));
    // Replacing keeps one entry.
    cache.insert("what is ml?", "m1", "v2");
    CHECK(cache.size() == 1);
    CHECK(cache.lookup("What is ML?", "m1").response() == "v2");
    const auto stats = cache.stats();
    CHECK(stats.exact_hits == 6);
    CHECK(stats.misses == 4);
    CHECK(stats.insertions == 2);
    CHECK(stats.semantic_hits == 0);
    CHECK(stats.hit_rate() == Approx(0.6));
}

TEST_CASE("semantic tier: paraphrase hit, unrelated miss, off by default for HashingEmbedder", "[cache]") {
    llmfast::ManualClock clock;
    auto cache = make_cache(clock);
    CHECK(cache.semantic_enabled());
    cache.insert("什么是机器学习?", "m", "ML is ...");
    clock.advance(5s);
    const auto hit = cache.lookup("机器学习是什么？", "m");
    REQUIRE(hit);
    CHECK(hit.match == MatchKind::Semantic);
    CHECK(hit.similarity >= 0.6F);
    CHECK(hit.similarity < 1.0F);
    CHECK(hit.age == 5s);
    CHECK(hit.response() == "ML is ...");
    CHECK_FALSE(cache.lookup("今天天气怎么样", "m"));
    CHECK_FALSE(cache.lookup("机器学习是什么？", "other-scope"));
    CHECK(cache.stats().semantic_hits == 1);

    // Auto: a lexical HashingEmbedder does not serve semantic hits unless opted in.
    Cache by_default(clock);
    CHECK_FALSE(by_default.semantic_enabled());
    by_default.insert("什么是机器学习?", "m", "ML is ...");
    CHECK_FALSE(by_default.lookup("机器学习是什么？", "m"));
    // Auto with a user-supplied embedder: on.
    llmfast::SemanticCache<KeywordEmbedder> user(KeywordEmbedder{}, {.similarity_threshold = 0.99F});
    CHECK(user.semantic_enabled());
    user.insert("I like apple and banana", "s", "fruit");
    CHECK(user.lookup("banana, apple: which is better?", "s").match == MatchKind::Semantic);
    CHECK_FALSE(user.lookup("cherry", "s"));
}

TEST_CASE("semantic tier finds the nearest entry within the scope, not globally", "[cache]") {
    llmfast::SemanticCache<KeywordEmbedder> cache(KeywordEmbedder{}, {.similarity_threshold = 0.5F});
    // Scope A holds entries identical to the query; scope B holds one merely similar.
    for (int i = 0; i < 20; ++i) cache.insert(fmt::format("apple banana cherry #{}", i), "A", "a");
    cache.insert("apple banana", "B", "b");
    const auto result = cache.lookup("apple banana cherry?", "B");
    REQUIRE(result);
    CHECK(result.match == MatchKind::Semantic);
    CHECK(result.response() == "b");
    CHECK(result.similarity == Approx(2.0 / std::sqrt(6.0)).epsilon(1e-4));
}

TEST_CASE("hit guards veto semantic hits that disagree on what matters", "[cache]") {
    llmfast::ManualClock clock;
    auto options = semantic_options();
    options.similarity_threshold = 0.5F;
    auto cache = make_cache(clock, options);
    cache.insert("How do I book 3 tickets to Paris?", "s", "three");
    cache.insert("Is it safe to eat raw eggs?", "s", "safe");
    cache.insert("第一季比第二季好看吗", "s", "season");
    cache.insert("Does Alice earn more than Bob?", "s", "alice");

    CHECK_FALSE(cache.lookup("How do I book 4 tickets to Paris?", "s"));     // numbers
    CHECK_FALSE(cache.lookup("Is it not safe to eat raw eggs?", "s"));       // negation
    CHECK_FALSE(cache.lookup("How do I book 3 tickets to London?", "s"));   // names
    CHECK_FALSE(cache.lookup("第二季比第一季好看吗", "s"));                 // order of key terms
    CHECK_FALSE(cache.lookup("Does Bob earn more than Alice?", "s"));       // order of names
    CHECK(cache.stats().guard_vetoes >= 5);
    const auto ok = cache.lookup("how do i book 3 tickets to Paris", "s");
    CHECK(ok.match == MatchKind::Semantic);
    CHECK(ok.response() == "three");

    // With the guards off, the lexical embedder serves the wrong answer: that is what they are for.
    options.guards = {.numbers = false, .negation = false, .latin_names = false, .term_order = false};
    auto unguarded = make_cache(clock, options);
    unguarded.insert("How do I book 3 tickets to Paris?", "s", "three");
    CHECK(unguarded.lookup("How do I book 4 tickets to Paris?", "s").match == MatchKind::Semantic);
}

TEST_CASE("TTL with an injected clock, per-entry override, purge", "[cache]") {
    llmfast::ManualClock clock(100h);
    auto cache = make_cache(clock, {.ttl = 10min, .semantic_tier = llmfast::SemanticTier::Off});
    cache.insert("a", "s", "A");
    cache.insert("b", "s", "B", 1h);
    clock.advance(10min - 1ns);
    CHECK(cache.lookup("a", "s").age == 10min - 1ns);
    clock.advance(1ns);
    CHECK_FALSE(cache.lookup("a", "s"));  // expires exactly at created + ttl
    CHECK(cache.stats().expirations == 1);
    CHECK(cache.lookup("b", "s"));
    cache.insert("c", "s", "C", llmfast::SemanticCacheOptions::never);
    clock.advance(2h);
    CHECK(cache.purge_expired() == 1);  // b
    CHECK(cache.size() == 1);
    CHECK(cache.lookup("c", "s"));
    CHECK_THROWS_AS(cache.insert("d", "s", "D", 0s), llmfast::Error);
}

TEST_CASE("semantic hits respect TTL too", "[cache]") {
    llmfast::ManualClock clock;
    auto options = semantic_options();
    options.ttl = 1min;
    auto cache = make_cache(clock, options);
    cache.insert("什么是机器学习?", "m", "ML");
    CHECK(cache.lookup("机器学习是什么?", "m").match == MatchKind::Semantic);
    clock.advance(1min);
    CHECK_FALSE(cache.lookup("机器学习是什么?", "m"));
    CHECK(cache.size() == 0);
}

TEST_CASE("LRU eviction by entries and by bytes", "[cache]") {
    llmfast::ManualClock clock;
    auto cache = make_cache(clock, {.max_entries = 3, .semantic_tier = llmfast::SemanticTier::Off, .shards = 1});
    cache.insert("a", "s", "A");
    cache.insert("b", "s", "B");
    cache.insert("c", "s", "C");
    CHECK(cache.lookup("a", "s"));  // a is now the most recent; b the least
    cache.insert("d", "s", "D");
    CHECK(cache.size() == 3);
    CHECK_FALSE(cache.lookup("b", "s"));
    CHECK(cache.lookup("a", "s"));
    CHECK(cache.lookup("c", "s"));
    CHECK(cache.lookup("d", "s"));
    CHECK(cache.stats().evictions == 1);

    // Bytes: each entry with a 1000-byte response costs more than 1000 bytes; room for about three.
    auto by_bytes = make_cache(clock, {.max_bytes = 4000, .semantic_tier = llmfast::SemanticTier::Off, .shards = 1});
    for (int i = 0; i < 10; ++i) by_bytes.insert(fmt::format("p{}", i), "s", std::string(1000, 'x'));
    CHECK(by_bytes.size() >= 2);
    CHECK(by_bytes.size() <= 3);
    CHECK(by_bytes.stats().memory_bytes <= 4000);
    CHECK(by_bytes.lookup("p9", "s"));
    CHECK_FALSE(by_bytes.lookup("p0", "s"));
    // An entry bigger than the whole budget is refused, and nothing is evicted for it.
    const std::size_t before = by_bytes.size();
    CHECK_FALSE(by_bytes.insert("huge", "s", std::string(5000, 'y')));
    CHECK(by_bytes.size() == before);
}

TEST_CASE("evicted entries leave the vector index", "[cache]") {
    llmfast::ManualClock clock;
    auto options = semantic_options();
    options.max_entries = 2;
    options.shards = 1;
    auto cache = make_cache(clock, options);
    cache.insert("什么是机器学习?", "m", "ML");
    cache.insert("hello world", "m", "hi");
    cache.insert("good morning", "m", "gm");  // evicts the ML entry
    CHECK_FALSE(cache.lookup("机器学习是什么?", "m"));
    CHECK(cache.lookup("hello world!", "m").match == MatchKind::Semantic);
}

TEST_CASE("erase, erase_scope, clear", "[cache]") {
    llmfast::ManualClock clock;
    auto cache = make_cache(clock);
    cache.insert("什么是机器学习?", "a", "1");
    cache.insert("hello", "a", "2");
    cache.insert("什么是机器学习?", "b", "3");
    CHECK_FALSE(cache.erase("hello", "b"));
    CHECK(cache.erase("HELLO", "a"));
    CHECK_FALSE(cache.lookup("hello", "a"));
    CHECK(cache.size() == 2);
    CHECK(cache.erase_scope("a") == 1);
    CHECK(cache.erase_scope("a") == 0);
    CHECK_FALSE(cache.lookup("机器学习是什么?", "a"));
    CHECK(cache.lookup("机器学习是什么?", "b").response() == "3");
    // A scope can be used again after erase_scope.
    cache.insert("hello", "a", "again");
    CHECK(cache.lookup("hello", "a").response() == "again");
    cache.clear();
    CHECK(cache.size() == 0);
    CHECK(cache.stats().memory_bytes == 0);
    CHECK_FALSE(cache.lookup("hello", "a"));
    CHECK_FALSE(cache.lookup("什么是机器学习?", "b"));
}

TEST_CASE("get_or_compute: single flight under many threads", "[cache]") {
    constexpr int threads = 16;
    llmfast::ManualClock clock;
    auto cache = make_cache(clock);
    std::atomic<int> calls{0};
    std::latch start(threads);
    std::vector<llmfast::LookupResult> results(threads);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            start.arrive_and_wait();
            // Varying spelling: the same normalized key.
            results[static_cast<std::size_t>(t)] = cache.get_or_compute(t % 2 ? "Same Question?" : " same question? ", "s", [&] {
                calls.fetch_add(1);
                // Every thread's lookup has missed before the answer exists, so every one of them
                // must end up waiting on this flight.
                while (cache.stats().misses < threads) std::this_thread::yield();
                return std::string("answer");
            });
        });
    }
    for (auto& thread : pool) thread.join();
    CHECK(calls.load() == 1);
    std::size_t computed = 0, coalesced = 0;
    for (const auto& result : results) {
        CHECK(result.response() == "answer");
        CHECK((result.match == MatchKind::Computed || result.match == MatchKind::Coalesced));
        computed += result.match == MatchKind::Computed ? 1 : 0;
        coalesced += result.match == MatchKind::Coalesced ? 1 : 0;
    }
    CHECK(computed == 1);  // the call that ran fn
    CHECK(coalesced == threads - 1);
    CHECK(cache.stats().computations == 1);
    CHECK(cache.stats().coalesced == threads - 1);
    CHECK(cache.lookup("same question?", "s").match == MatchKind::Exact);
    // Later calls hit the cache without computing.
    CHECK(cache.get_or_compute("same question?", "s", [] { return std::string("other"); }).match == MatchKind::Exact);
}

TEST_CASE("get_or_compute: every waiter gets the exception, nothing is cached", "[cache]") {
    constexpr int threads = 8;
    llmfast::ManualClock clock;
    auto cache = make_cache(clock, {.semantic_tier = llmfast::SemanticTier::Off});
    std::atomic<int> calls{0};
    std::atomic<int> failures{0};
    std::latch start(threads);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&] {
            start.arrive_and_wait();
            try {
                cache.get_or_compute("q", "s", [&]() -> std::string {
                    calls.fetch_add(1);
                    while (cache.stats().misses < threads) std::this_thread::yield();
                    throw std::runtime_error("backend down");
                });
            } catch (const std::runtime_error& e) {
                if (std::string_view(e.what()) == "backend down") failures.fetch_add(1);
            }
        });
    }
    for (auto& thread : pool) thread.join();
    CHECK(calls.load() == 1);
    CHECK(failures.load() == threads);
    CHECK(cache.size() == 0);
    CHECK(cache.get_or_compute("q", "s", [] { return std::string("ok"); }).response() == "ok");
}

TEST_CASE("concurrent inserts, lookups and erasures (TSan)", "[cache]") {
    llmfast::ManualClock clock;
    auto options = semantic_options();
    options.max_entries = 64;
    auto cache = make_cache(clock, options);
    std::vector<std::thread> pool;
    std::atomic<int> wrong{0};
    for (int t = 0; t < 4; ++t) {
        pool.emplace_back([&, t] {
            for (int i = 0; i < 300; ++i) {
                const std::string prompt = fmt::format("question number {} about topic {}", i % 50, t % 2);
                const std::string scope = fmt::format("scope{}", t % 2);
                if (i % 3 == 0) {
                    cache.insert(prompt, scope, prompt);
                } else if (i % 17 == 0) {
                    cache.erase(prompt, scope);
                } else if (i % 101 == 0) {
                    cache.erase_scope(scope);
                } else {
                    const auto result = cache.lookup(prompt, scope);
                    // An exact hit must return its own prompt's answer (responses echo prompts).
                    if (result.match == MatchKind::Exact && result.response() != prompt) wrong.fetch_add(1);
                }
            }
        });
    }
    for (auto& thread : pool) thread.join();
    CHECK(wrong.load() == 0);
    CHECK(cache.size() <= 64);
    const auto stats = cache.stats();
    CHECK(stats.entries == cache.size());
}

TEST_CASE("snapshot round trip keeps entries, scopes, TTLs and LRU order", "[cache]") {
    llmfast::ManualClock clock(1000h);
    auto options = semantic_options();
    options.shards = 1;
    options.max_entries = 3;
    options.ttl = 10h;
    auto cache = make_cache(clock, options);
    cache.insert("什么是机器学习?", "a", "ML");
    cache.insert("hello", "b", "hi", 2h);
    cache.insert("bye", "b", "ciao");
    CHECK(cache.lookup("什么是机器学习?", "a"));  // LRU now: bye, hello least recent... order: ML, bye, hello
    const auto path = temp_path("roundtrip");
    cache.save(path);
    CHECK(std::filesystem::exists(path));

    clock.advance(1h);
    auto loaded = make_cache(clock, options);
    loaded.insert("stale", "z", "will be replaced");
    loaded.load(path);
    CHECK(loaded.size() == 3);
    CHECK_FALSE(loaded.lookup("stale", "z"));
    CHECK(loaded.lookup("机器学习是什么?", "a").match == MatchKind::Semantic);
    const auto hello = loaded.lookup("hello", "b");
    CHECK(hello.response() == "hi");
    CHECK(hello.age == 1h);
    // LRU order survived: "bye" is now least recent (hello and ML were just used).
    loaded.insert("new", "b", "n");
    CHECK_FALSE(loaded.lookup("bye", "b"));
    // TTL survived: hello had 2h and 1h has passed.
    clock.advance(1h);
    CHECK_FALSE(loaded.lookup("hello", "b"));
    // Loading after everything expired gives an empty cache.
    clock.advance(100h);
    loaded.load(path);
    CHECK(loaded.size() == 0);
    std::filesystem::remove(path);
    CHECK_THROWS_AS(loaded.load(temp_path("does-not-exist")), llmfast::Error);
}

TEST_CASE("every corruption of a snapshot is rejected and leaves the cache unchanged", "[cache]") {
    llmfast::ManualClock clock;
    auto source = make_cache(clock);
    source.insert("什么是机器学习?", "a", "ML");
    source.insert("hello", "b", "hi");
    const std::string good = source.save_to_string();

    auto target = make_cache(clock);
    target.insert("sentinel", "s", "still here");
    const auto check_unchanged = [&] {
        REQUIRE(target.size() == 1);
        REQUIRE(target.lookup("sentinel", "s").response() == "still here");
    };
    const auto expect_corrupt = [&](std::string_view bytes) {
        try {
            target.load_from_string(bytes);
            FAIL("corrupt snapshot accepted");
        } catch (const llmfast::Error& e) {
            CHECK(e.code() == llmfast::ErrorCode::CorruptSnapshot);
        }
    };
    for (std::size_t length = 0; length < good.size(); ++length) expect_corrupt(std::string_view(good).substr(0, length));
    check_unchanged();
    for (std::size_t i = 0; i < good.size(); ++i) {
        std::string bad = good;
        bad[i] = static_cast<char>(bad[i] ^ 0x5A);
        expect_corrupt(bad);
    }
    check_unchanged();
    expect_corrupt(good + "x");

    // Wrong version (the checksum covers only the payload, so this reaches the version check).
    std::string wrong_version = good;
    wrong_version[8] = 99;
    try {
        target.load_from_string(wrong_version);
        FAIL("wrong version accepted");
    } catch (const llmfast::Error& e) {
        CHECK(std::string_view(e.what()).find("version") != std::string_view::npos);
    }
    // Another embedder (same dimension, other seed): rejected by identity.
    Cache other(clock, llmfast::HashingEmbedder({.seed = 1}), semantic_options());
    try {
        other.load_from_string(good);
        FAIL("snapshot of another embedder accepted");
    } catch (const llmfast::Error& e) {
        CHECK(e.code() == llmfast::ErrorCode::CorruptSnapshot);
        CHECK(std::string_view(e.what()).find("embedder") != std::string_view::npos);
    }
    check_unchanged();
    target.load_from_string(good);
    CHECK(target.size() == 2);
}

TEST_CASE("save writes atomically through a temporary file", "[cache]") {
    llmfast::ManualClock clock;
    auto cache = make_cache(clock, {.semantic_tier = llmfast::SemanticTier::Off});
    cache.insert("q", "s", "a");
    const auto dir = temp_path("dir");
    std::filesystem::create_directories(dir);
    const auto path = dir / "cache.snap";
    {
        std::ofstream old(path);
        old << "old content";
    }
    cache.save(path);
    std::size_t files = 0;
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir)) ++files;
    CHECK(files == 1);  // no temporary left behind
    auto loaded = make_cache(clock, {.semantic_tier = llmfast::SemanticTier::Off});
    loaded.load(path);
    CHECK(loaded.lookup("q", "s").response() == "a");
    CHECK_THROWS_AS(cache.save(dir / "no-such-dir" / "x.snap"), llmfast::Error);
    std::filesystem::remove_all(dir);
}

TEST_CASE("options are validated at construction", "[cache]") {
    llmfast::ManualClock clock;
    const auto expect_invalid = [&](llmfast::SemanticCacheOptions options) {
        try {
            Cache cache(clock, llmfast::HashingEmbedder{}, options);
            FAIL("invalid options accepted");
        } catch (const llmfast::Error& e) {
            CHECK(e.code() == llmfast::ErrorCode::InvalidArgument);
        }
    };
    expect_invalid({.max_entries = 0});
    expect_invalid({.max_bytes = 0});
    expect_invalid({.ttl = 0s});
    expect_invalid({.similarity_threshold = 0.0F});
    expect_invalid({.similarity_threshold = 1.5F});
    expect_invalid({.semantic_candidates = 0});
    expect_invalid({.shards = 0});
    // More shards than entries is fine (capped).
    Cache small(clock, llmfast::HashingEmbedder{}, {.max_entries = 2, .shards = 64});
    small.insert("a", "s", "1");
    small.insert("b", "s", "2");
    small.insert("c", "s", "3");
    CHECK(small.size() <= 2);
}

TEST_CASE("Int8 index storage works behind the cache", "[cache]") {
    llmfast::ManualClock clock;
    llmfast::SemanticCache<llmfast::HashingEmbedder, llmfast::FlatIndex, llmfast::ManualClock> cache(
        clock, llmfast::HashingEmbedder{}, semantic_options(), {.storage = llmfast::FlatIndex::Storage::Int8});
    cache.insert("什么是机器学习?", "m", "ML");
    CHECK(cache.lookup("机器学习是什么?", "m").match == MatchKind::Semantic);
}

TEST_CASE("fuzz seed: a small valid snapshot for tests/fuzz/cache_snapshot", "[cache]") {
    // Must match the cache the fuzz target builds (dimension 16, clock at 1000h).
    llmfast::ManualClock clock(1000h);
    const auto make = [&] {
        return Cache(clock, llmfast::HashingEmbedder({.dimension = 16}),
                     {.max_entries = 64, .ttl = 24h, .semantic_tier = llmfast::SemanticTier::On,
                      .similarity_threshold = 0.5F, .shards = 2});
    };
    auto cache = make();
    cache.insert("什么是机器学习?", "model-a", "ML is ...");
    cache.insert("How do I book 3 tickets?", "model-b", "Like this.");
    cache.insert("never expires", "model-b", "forever", llmfast::SemanticCacheOptions::never);
    const std::string bytes = cache.save_to_string();
    const std::filesystem::path seed = std::filesystem::path(LLMFAST_SOURCE_DIR) / "tests/fuzz/corpus/cache_snapshot/valid.snap";
    if (std::getenv("LLMFAST_WRITE_FUZZ_SEED") != nullptr) {
        std::ofstream out(seed, std::ios::binary);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
    std::ifstream in(seed, std::ios::binary);
    REQUIRE(in);
    const std::string committed((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto loaded = make();
    loaded.load_from_string(committed);  // the committed seed is still a valid snapshot
    CHECK(loaded.size() == 3);
    CHECK(loaded.lookup("机器学习是什么?", "model-a").response() == "ML is ...");
}

// Issue 11 #4: `load` of a directory threw std::ios_base::failure (basic_filebuf::underflow), and so
// would a read error after a successful open; only a missing file was tested before.
TEST_CASE("load and save fail with IoError naming the path, and the cache is unchanged", "[cache]") {
    llmfast::ManualClock clock;
    auto cache = make_cache(clock, {.semantic_tier = llmfast::SemanticTier::Off});
    cache.insert("q", "s", "a");
    const std::string before = cache.save_to_string();
    const auto outcome = [](auto&& f, const std::filesystem::path& path) -> std::string {
        try {
            f();
        } catch (const llmfast::Error& error) {
            if (error.code() != llmfast::ErrorCode::IoError) return std::string("wrong code: ") + error.what();
            if (std::string_view(error.what()).find(path.string()) == std::string_view::npos) {
                return std::string("path missing from: ") + error.what();
            }
            return "IoError";
        } catch (const std::exception& other) {
            return std::string("not an llmfast::Error: ") + other.what();
        }
        return "succeeded";
    };
    const auto dir = temp_path("io-errors");
    std::filesystem::create_directories(dir);
    std::vector<std::filesystem::path> unreadable = {dir, dir / "missing.snap"};
    if (std::filesystem::exists("/proc/self/mem")) unreadable.emplace_back("/proc/self/mem");  // EIO on read, not on open
    for (const auto& path : unreadable) {
        INFO(path.string());
        CHECK(outcome([&] { cache.load(path); }, path) == "IoError");
        CHECK(cache.save_to_string() == before);
    }
    // save onto a directory (rename fails) and into a missing directory (create fails).
    CHECK(outcome([&] { cache.save(dir); }, dir) == "IoError");
    const auto nowhere = dir / "no-such-dir" / "x.snap";
    CHECK(outcome([&] { cache.save(nowhere); }, nowhere.parent_path()) == "IoError");
    std::size_t files = 0;
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir)) ++files;
    CHECK(files == 0);  // no temporary left behind by the failed save
    std::filesystem::remove_all(dir);
    CHECK(cache.lookup("q", "s").response() == "a");
}

// Issue 11 #6: the snapshot was written shard by shard (each shard least recent first), so a cache
// with another shard count replayed shard 0's newest entries before shard 15's oldest and evicted
// recent entries while keeping old ones.
TEST_CASE("load into a cache with another shard count keeps the most recently used", "[cache]") {
    llmfast::ManualClock clock(1000h);
    auto source = make_cache(clock, {.max_entries = 1000, .semantic_tier = llmfast::SemanticTier::Off, .shards = 16});
    for (int i = 0; i < 64; ++i) source.insert(fmt::format("prompt {}", i), "s", fmt::format("r{}", i));
    for (int i = 0; i < 8; ++i) REQUIRE(source.lookup(fmt::format("prompt {}", i), "s"));  // now the most recent
    const std::string bytes = source.save_to_string();

    // One shard of 16: exactly the 16 most recently used survive (0..7 touched last, then 56..63).
    auto small = make_cache(clock, {.max_entries = 16, .semantic_tier = llmfast::SemanticTier::Off, .shards = 1});
    small.load_from_string(bytes);
    CHECK(small.size() == 16);
    std::vector<int> kept;
    for (int i = 0; i < 64; ++i) {
        if (small.lookup(fmt::format("prompt {}", i), "s")) kept.push_back(i);
    }
    std::vector<int> expected = {0, 1, 2, 3, 4, 5, 6, 7};
    for (int i = 56; i < 64; ++i) expected.push_back(i);
    CHECK(kept == expected);

    // Into more shards than written: every entry fits, the recency order is the same one.
    auto wide = make_cache(clock, {.max_entries = 1000, .semantic_tier = llmfast::SemanticTier::Off, .shards = 7});
    wide.load_from_string(bytes);
    CHECK(wide.size() == 64);
    auto again = make_cache(clock, {.max_entries = 16, .semantic_tier = llmfast::SemanticTier::Off, .shards = 1});
    again.load_from_string(wide.save_to_string());
    kept.clear();
    for (int i = 0; i < 64; ++i) {
        if (again.lookup(fmt::format("prompt {}", i), "s")) kept.push_back(i);
    }
    CHECK(kept == expected);
}

namespace {

// Embeds like KeywordEmbedder, but "nan" gives NaNs, "inf" an infinity and "tiny" subnormal floats
// (so no "banana" in these tests).
struct HostileEmbedder {
    std::size_t dimension() const { return 4; }
    std::string identity() const { return "hostile/1"; }
    void embed(std::string_view text, std::span<float> out) const {
        KeywordEmbedder{}.embed(text, out);
        if (text.find("nan") != std::string_view::npos) out[1] = std::numeric_limits<float>::quiet_NaN();
        if (text.find("inf") != std::string_view::npos) out[2] = std::numeric_limits<float>::infinity();
        if (text.find("tiny") != std::string_view::npos) {
            for (float& x : out) x *= 1e-40F;  // subnormal: 1/norm overflows a float
        }
    }
};

}  // namespace

// Issue 11 #10 (cache side): a subnormal embedding was normalized with a float 1/norm that overflows
// to inf, so its vector became inf/NaN and went into the index: the entry could never be found
// semantically (and an Int8 index converted NaN to int8, undefined behaviour).
TEST_CASE("subnormal embeddings are normalized exactly, for both index storages", "[cache]") {
    for (const auto storage : {llmfast::FlatIndex::Storage::Float32, llmfast::FlatIndex::Storage::Int8}) {
        llmfast::ManualClock clock;
        llmfast::SemanticCache<HostileEmbedder, llmfast::FlatIndex, llmfast::ManualClock> cache(
            clock, HostileEmbedder{}, semantic_options(), {.storage = storage});
        cache.insert("tiny apple cherry", "m", "fruit");
        const auto hit = cache.lookup("cherry apple tiny!", "m");
        CHECK(hit.match == MatchKind::Semantic);
        CHECK(hit.response() == "fruit");
    }
}

TEST_CASE("non-finite embeddings: exact tier only, counted, the index stays clean", "[cache]") {
    for (const auto storage : {llmfast::FlatIndex::Storage::Float32, llmfast::FlatIndex::Storage::Int8}) {
        llmfast::ManualClock clock;
        llmfast::SemanticCache<HostileEmbedder, llmfast::FlatIndex, llmfast::ManualClock> cache(
            clock, HostileEmbedder{}, semantic_options(), {.storage = storage});
        CHECK(cache.insert("apple cherry", "m", "good"));
        CHECK(cache.insert("nan apple cherry", "m", "nan entry"));  // stored, exact only
        CHECK(cache.insert("inf apple cherry", "m", "inf entry"));
        CHECK(cache.stats().unusable_embeddings == 2);
        CHECK(cache.lookup("nan apple cherry", "m").match == MatchKind::Exact);
        CHECK(cache.lookup("inf apple cherry", "m").match == MatchKind::Exact);
        // A non-finite query skips the semantic tier (a miss, not an error, not a made-up hit) ...
        CHECK_FALSE(cache.lookup("cherry apple nan", "m"));
        CHECK(cache.stats().unusable_embeddings == 3);
        // ... and the finite entries still match semantically.
        const auto hit = cache.lookup("cherry apple", "m");
        CHECK(hit.match == MatchKind::Semantic);
        CHECK(hit.response() == "good");
        // get_or_compute with a non-finite embedding computes, stores and then hits exactly.
        int calls = 0;
        CHECK(cache.get_or_compute("nan date", "m", [&] { ++calls; return std::string("d"); }).match == MatchKind::Computed);
        CHECK(cache.get_or_compute("nan date", "m", [&] { ++calls; return std::string("d"); }).match == MatchKind::Exact);
        CHECK(calls == 1);
        // Snapshots re-embed: the same holds after a round trip.
        llmfast::SemanticCache<HostileEmbedder, llmfast::FlatIndex, llmfast::ManualClock> loaded(
            clock, HostileEmbedder{}, semantic_options(), {.storage = storage});
        loaded.load_from_string(cache.save_to_string());
        CHECK(loaded.size() == cache.size());
        CHECK(loaded.lookup("inf apple cherry", "m").response() == "inf entry");
        CHECK(loaded.lookup("cherry apple", "m").response() == "good");
    }
}

// ---- the async seam: begin / Leader / Follower, lookup_async ----

namespace {

using Leader = Cache::Leader;
using Follower = Cache::Follower;

Cache exact_cache(const llmfast::ManualClock& clock) { return make_cache(clock, {.semantic_tier = llmfast::SemanticTier::Off}); }

}  // namespace

TEST_CASE("begin: Leader on a miss, Follower while it runs, a hit after complete", "[cache][async]") {
    llmfast::ManualClock clock;
    auto cache = exact_cache(clock);
    Cache::Flight first = cache.begin("What is ML?", "m");
    REQUIRE(std::holds_alternative<Leader>(first));
    Leader& leader = std::get<Leader>(first);
    CHECK(leader.active());

    Cache::Flight second = cache.begin(" what is ml? ", "m");  // same normalized key
    REQUIRE(std::holds_alternative<Follower>(second));
    Follower& follower = std::get<Follower>(second);
    CHECK_FALSE(follower.ready());
    CHECK_FALSE(follower.try_result().has_value());  // never blocks
    int fired = 0;
    llmfast::Subscription sub = follower.on_ready([&] {
        ++fired;
        // Outside every lock: the callback may use the cache and the follower.
        CHECK(cache.lookup("what is ml?", "m").match == MatchKind::Exact);
        CHECK(follower.ready());
    });
    CHECK(fired == 0);
    CHECK(sub.pending());

    CHECK(std::holds_alternative<Follower>(cache.begin("What is ML?", "other") ) == false);  // other scope: own flight

    const llmfast::LookupResult computed = leader.complete("machine learning");
    CHECK(computed.match == MatchKind::Computed);
    CHECK(computed.response() == "machine learning");
    CHECK_FALSE(leader.active());
    CHECK(fired == 1);
    const std::optional<llmfast::LookupResult> got = follower.try_result();
    REQUIRE(got.has_value());
    CHECK(got->match == MatchKind::Coalesced);
    CHECK(got->response() == "machine learning");
    CHECK(follower.try_result()->match == MatchKind::Coalesced);  // again: counted once

    // A registration after the end fires at once.
    int late = 0;
    llmfast::Subscription after = follower.on_ready([&] { ++late; });
    CHECK(late == 1);
    CHECK_FALSE(after.pending());

    Cache::Flight third = cache.begin("WHAT IS ML?", "m");
    REQUIRE(std::holds_alternative<llmfast::LookupResult>(third));
    CHECK(std::get<llmfast::LookupResult>(third).match == MatchKind::Exact);

    const auto stats = cache.stats();
    CHECK(stats.coalesced == 1);
    CHECK(stats.computations == 2);  // "m" and "other"
    CHECK(stats.insertions == 1);
    CHECK(stats.abandoned == 1);     // the "other" leader, dropped at once above
    CHECK_THROWS_AS(leader.complete("again"), llmfast::Error);
}

TEST_CASE("abandon: nothing stored, followers told to compute themselves, the next begin leads", "[cache][async]") {
    llmfast::ManualClock clock;
    auto cache = exact_cache(clock);
    Cache::Flight lead = cache.begin("q", "s");
    Cache::Flight follow = cache.begin("q", "s");
    REQUIRE(std::holds_alternative<Leader>(lead));
    REQUIRE(std::holds_alternative<Follower>(follow));
    int fired = 0;
    llmfast::Subscription sub = std::get<Follower>(follow).on_ready([&] { ++fired; });

    SECTION("abandon()") { std::get<Leader>(lead).abandon(); }
    SECTION("the Leader dropped without complete or abandon") { lead = llmfast::LookupResult{}; }
    SECTION("the Leader moved, then the target dropped") {
        { Leader moved = std::move(std::get<Leader>(lead)); CHECK_FALSE(std::get<Leader>(lead).active()); }
    }

    CHECK(fired == 1);
    const std::optional<llmfast::LookupResult> result = std::get<Follower>(follow).try_result();
    REQUIRE(result.has_value());
    CHECK(result->match == MatchKind::Miss);
    CHECK_FALSE(result->hit());
    CHECK(cache.size() == 0);
    CHECK(cache.stats().abandoned == 1);
    CHECK(cache.stats().coalesced == 0);
    Cache::Flight again = cache.begin("q", "s");
    CHECK(std::holds_alternative<Leader>(again));
}

TEST_CASE("fail: followers get the leader's exception; a bad ttl keeps the flight open", "[cache][async]") {
    llmfast::ManualClock clock;
    auto cache = exact_cache(clock);
    Cache::Flight lead = cache.begin("q", "s");
    Cache::Flight follow = cache.begin("q", "s");
    Leader& leader = std::get<Leader>(lead);
    Follower& follower = std::get<Follower>(follow);

    CHECK(llmfast::testing::error_code_of([&] { (void)leader.complete("x", std::chrono::nanoseconds::zero()); }) ==
          llmfast::ErrorCode::InvalidArgument);
    CHECK(leader.active());
    CHECK_FALSE(follower.ready());

    leader.fail(std::make_exception_ptr(std::runtime_error("backend down")));
    CHECK_FALSE(leader.active());
    CHECK(follower.ready());
    CHECK_THROWS_WITH((void)follower.try_result(), "backend down");
    CHECK_THROWS_WITH(follower.wait(), "backend down");
    CHECK(cache.size() == 0);
    CHECK(std::holds_alternative<Leader>(cache.begin("q", "s")));
}

TEST_CASE("a follower cancels its wait without affecting the flight", "[cache][async]") {
    llmfast::ManualClock clock;
    auto cache = exact_cache(clock);
    Cache::Flight lead = cache.begin("q", "s");
    Cache::Flight gone = cache.begin("q", "s");
    Cache::Flight stays = cache.begin("q", "s");
    int gone_calls = 0, subscription_calls = 0, stays_calls = 0;
    Follower& leaving = std::get<Follower>(gone);
    llmfast::Subscription a = leaving.on_ready([&] { ++gone_calls; });
    llmfast::Subscription b = std::get<Follower>(stays).on_ready([&] { ++subscription_calls; });
    llmfast::Subscription c = std::get<Follower>(stays).on_ready([&] { ++stays_calls; });
    leaving.cancel();  // cancels its registrations
    CHECK_FALSE(a.pending());
    CHECK_FALSE(leaving.active());
    CHECK(llmfast::testing::error_code_of([&] { (void)leaving.try_result(); }) == llmfast::ErrorCode::Closed);
    CHECK(b.cancel());  // one subscription cancelled on its own
    std::get<Leader>(lead).complete("answer");
    CHECK(gone_calls == 0);
    CHECK(subscription_calls == 0);
    CHECK(stays_calls == 1);
    CHECK(std::get<Follower>(stays).try_result()->response() == "answer");
    CHECK(cache.lookup("q", "s").response() == "answer");
    CHECK(cache.stats().coalesced == 1);

    SECTION("a follower destroyed inside its own callback") {
        Cache::Flight lead2 = cache.begin("q2", "s");
        auto holder = std::make_unique<Cache::Flight>(cache.begin("q2", "s"));
        int calls = 0;
        llmfast::Subscription self = std::get<Follower>(*holder).on_ready([&] {
            ++calls;
            holder.reset();  // cancels from inside: must not deadlock
        });
        std::get<Leader>(lead2).complete("a2");
        CHECK(calls == 1);
        CHECK(holder == nullptr);
    }
}

TEST_CASE("get_or_compute waiting on an abandoning begin() leader computes itself", "[cache][async]") {
    llmfast::ManualClock clock;
    auto cache = exact_cache(clock);
    Cache::Flight lead = cache.begin("q", "s");
    std::atomic<int> calls{0};
    llmfast::LookupResult result;
    std::thread waiter([&] { result = cache.get_or_compute("q", "s", [&] { calls.fetch_add(1); return std::string("mine"); }); });
    while (cache.stats().misses < 2) std::this_thread::yield();  // the waiter looked up and is joining
    std::this_thread::sleep_for(5ms);
    std::get<Leader>(lead).abandon();
    waiter.join();
    CHECK(calls.load() == 1);
    CHECK(result.match == MatchKind::Computed);
    CHECK(result.response() == "mine");
    CHECK(cache.lookup("q", "s").response() == "mine");
}

TEST_CASE("lookup_async: done runs exactly once with what lookup returns", "[cache][async]") {
    llmfast::ManualClock clock;
    auto cache = make_cache(clock);
    cache.insert("什么是机器学习?", "m", "ML is ...");
    std::vector<llmfast::LookupResult> results;
    auto done = [&](llmfast::LookupResult r) { results.push_back(std::move(r)); };
    cache.lookup_async("什么是机器学习?", "m", done);
    cache.lookup_async("机器学习是什么？", "m", done);
    cache.lookup_async("今天天气怎么样", "m", done);
    REQUIRE(results.size() == 3);
    CHECK(results[0].match == MatchKind::Exact);
    CHECK(results[1].match == MatchKind::Semantic);
    CHECK(results[2].match == MatchKind::Miss);
    // A move-only callback (e.g. an executor's completion handler).
    auto owned = std::make_unique<int>(5);
    int seen = 0;
    cache.lookup_async("什么是机器学习?", "m", [owned = std::move(owned), &seen](llmfast::LookupResult r) { seen = r ? *owned : -1; });
    CHECK(seen == 5);
    CHECK(cache.stats().exact_hits == 2);
    CHECK(cache.stats().misses == 1);
}

TEST_CASE("stress (TSan): many threads race begin / complete / abandon / fail / cancel", "[cache][async][stress]") {
    llmfast::ManualClock clock;
    auto cache = make_cache(clock, {.max_entries = 10'000, .semantic_tier = llmfast::SemanticTier::Off, .shards = 2});
    constexpr int threads = 8;
    constexpr int rounds = 400;
    constexpr int keys = 3;
    std::atomic<int> wrong{0};
    std::atomic<int> double_fired{0};
    std::atomic<int> hung{0};
    std::latch start(threads);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            start.arrive_and_wait();
            std::uint32_t rng = 2654435761U * static_cast<std::uint32_t>(t + 1);
            const auto next = [&] { rng ^= rng << 13; rng ^= rng >> 17; rng ^= rng << 5; return rng; };
            for (int i = 0; i < rounds; ++i) {
                const int key = static_cast<int>(next() % keys);
                // Each round uses fresh prompts so flights keep forming (entries would hit otherwise).
                const std::string prompt = fmt::format("question {} round {}", key, i);
                const std::string answer = "answer to " + prompt;
                Cache::Flight flight = cache.begin(prompt, "s");
                if (auto* hit = std::get_if<llmfast::LookupResult>(&flight)) {
                    if (hit->response() != answer) wrong.fetch_add(1);
                    continue;
                }
                if (auto* leader = std::get_if<Leader>(&flight)) {
                    std::this_thread::yield();  // let followers join
                    switch (next() % 4) {
                        case 0: leader->abandon(); break;
                        case 1: leader->fail(std::make_exception_ptr(std::runtime_error("down"))); break;
                        case 2: break;  // dropped: abandons
                        default:
                            if (leader->complete(answer).response() != answer) wrong.fetch_add(1);
                    }
                    continue;
                }
                Follower& follower = std::get<Follower>(flight);
                auto fired = std::make_shared<std::atomic<int>>(0);
                llmfast::Subscription sub = follower.on_ready([fired] {
                    if (fired->fetch_add(1) != 0) std::abort();
                });
                const std::uint32_t mode = next() % 3;
                if (mode == 0) {  // the client went away
                    if (next() % 2) sub.cancel(); else follower.cancel();
                    continue;
                }
                // Wait without blocking on the flight: spin on the readiness flag (an event loop would
                // resume on the callback), bounded.
                const auto until = std::chrono::steady_clock::now() + 20s;
                while (fired->load() == 0 && std::chrono::steady_clock::now() < until) std::this_thread::yield();
                if (fired->load() == 0) {
                    hung.fetch_add(1);
                    continue;
                }
                if (fired->load() != 1) double_fired.fetch_add(1);
                try {
                    const std::optional<llmfast::LookupResult> result = follower.try_result();
                    if (!result) wrong.fetch_add(1);  // fired, so it ended
                    else if (result->match == MatchKind::Coalesced && result->response() != answer) wrong.fetch_add(1);
                    else if (result->match != MatchKind::Coalesced && result->match != MatchKind::Miss) wrong.fetch_add(1);
                } catch (const std::runtime_error&) {
                    // the leader failed
                }
            }
        });
    }
    for (auto& thread : pool) thread.join();
    CHECK(wrong.load() == 0);
    CHECK(double_fired.load() == 0);
    CHECK(hung.load() == 0);
    const auto stats = cache.stats();
    CHECK(stats.entries == stats.insertions);  // only completed flights stored
    INFO("computations " << stats.computations << ", coalesced " << stats.coalesced << ", abandoned " << stats.abandoned);
    CHECK(stats.computations >= stats.insertions + stats.abandoned);
}

namespace {

// A non-lexical embedder that can be switched to fail (a dead embedding server) and counts its calls.
struct FlakyEmbedder {
    struct Control {
        std::atomic<bool> fail{false};
        std::atomic<int> calls{0};
    };
    std::shared_ptr<Control> control = std::make_shared<Control>();
    llmfast::HashingEmbedder inner{{.dimension = 32}};
    std::size_t dimension() const { return 32; }
    std::string identity() const { return "flaky/1 dim=32"; }
    void embed(std::string_view text, std::span<float> out) const {
        control->calls.fetch_add(1);
        if (control->fail.load()) throw llmfast::Error(llmfast::ErrorCode::IoError, "embedding server down");
        inner.embed(text, out);
    }
};
using FlakyCache = llmfast::SemanticCache<FlakyEmbedder, llmfast::FlatIndex, llmfast::ManualClock>;

}  // namespace

TEST_CASE("an embedder failure is a counted miss on lookup, an exact-only entry on insert", "[cache]") {
    llmfast::ManualClock clock;
    FlakyEmbedder embedder;
    FlakyCache cache(clock, embedder, {.similarity_threshold = 0.5F});
    REQUIRE(cache.semantic_enabled());
    cache.insert("What is machine learning?", "s", "ML");
    embedder.control->fail = true;
    // Lookup: the semantic tier is skipped, the call does not fail.
    CHECK(!cache.lookup("What is machine learning exactly?", "s"));
    CHECK(cache.stats().embedder_failures == 1);
    CHECK(cache.stats().misses == 1);
    // The exact tier still answers without the embedder.
    CHECK(cache.lookup("what is machine learning?", "s").match == MatchKind::Exact);
    // Insert: stored for exact hits only.
    CHECK(cache.insert("Define deep learning", "s", "DL"));
    CHECK(cache.stats().embedder_failures == 2);
    embedder.control->fail = false;
    CHECK(cache.lookup("define deep learning", "s").match == MatchKind::Exact);
    CHECK(!cache.lookup("Define deep learning please", "s"));  // not in the index
    CHECK(cache.lookup("What is machine learning exactly?", "s").match == MatchKind::Semantic);
}

TEST_CASE("EmbedderFailure::Throw propagates the embedder's error and stores nothing", "[cache]") {
    llmfast::ManualClock clock;
    FlakyEmbedder embedder;
    FlakyCache cache(clock, embedder, {.similarity_threshold = 0.5F, .embedder_failure = llmfast::EmbedderFailure::Throw});
    cache.insert("What is machine learning?", "s", "ML");
    embedder.control->fail = true;
    CHECK(llmfast::testing::error_code_of([&] { (void)cache.lookup("What is machine learning exactly?", "s"); }) ==
          llmfast::ErrorCode::IoError);
    CHECK(llmfast::testing::error_code_of([&] { cache.insert("Define deep learning", "s", "DL"); }) == llmfast::ErrorCode::IoError);
    CHECK(cache.size() == 1);
    CHECK(cache.stats().embedder_failures == 0);
}

TEST_CASE("load uses the snapshot's vectors instead of embedding again (same identity)", "[cache]") {
    llmfast::ManualClock clock;
    FlakyEmbedder embedder;
    FlakyCache cache(clock, embedder, {.similarity_threshold = 0.5F});
    cache.insert("What is machine learning?", "s", "ML");
    cache.insert("How do I reset my password?", "s", "Settings");
    const std::string bytes = cache.save_to_string();
    FlakyEmbedder other;
    FlakyCache loaded(clock, other, {.similarity_threshold = 0.5F});
    loaded.load_from_string(bytes);
    CHECK(other.control->calls == 0);  // nothing re-embedded
    CHECK(loaded.stats().vectors_loaded == 2);
    CHECK(loaded.lookup("What is machine learning exactly?", "s").match == MatchKind::Semantic);
    // Round trip: the loaded cache writes the same vectors.
    CHECK(loaded.save_to_string().size() == bytes.size());
    // SnapshotVectors::Off: no vectors saved, load embeds every prompt (in one batch).
    FlakyCache plain(clock, embedder, {.similarity_threshold = 0.5F, .snapshot_vectors = llmfast::SnapshotVectors::Off});
    plain.insert("What is machine learning?", "s", "ML");
    FlakyEmbedder third;
    FlakyCache from_plain(clock, third, {.similarity_threshold = 0.5F});
    from_plain.load_from_string(plain.save_to_string());
    CHECK(third.control->calls == 1);
    CHECK(from_plain.stats().vectors_loaded == 0);
    CHECK(from_plain.lookup("What is machine learning exactly?", "s").match == MatchKind::Semantic);
    // A failing embedder at load: entries load exact-only, counted.
    FlakyEmbedder dead;
    dead.control->fail = true;
    FlakyCache from_dead(clock, dead, {.similarity_threshold = 0.5F});
    from_dead.load_from_string(plain.save_to_string());
    CHECK(from_dead.size() == 1);
    CHECK(from_dead.stats().embedder_failures == 1);
    CHECK(from_dead.lookup("what is machine learning?", "s").match == MatchKind::Exact);
}

TEST_CASE("a v2 snapshot's vector with a non-finite value is rejected", "[cache]") {
    llmfast::ManualClock clock;
    FlakyEmbedder embedder;
    FlakyCache cache(clock, embedder, {.similarity_threshold = 0.5F});
    cache.insert("What is machine learning?", "s", "ML");
    std::string bytes = cache.save_to_string();
    // The last 4 bytes are the last float of the only entry's vector: make it NaN, fix the checksum.
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(bytes.data() + bytes.size() - sizeof(float), &nan, sizeof(float));
    const std::uint64_t checksum = llmfast::detail::xxh3_64(std::string_view(bytes).substr(llmfast::detail::snapshot_header_size), 0);
    std::memcpy(bytes.data() + llmfast::detail::snapshot_size_offset + 8, &checksum, sizeof checksum);
    FlakyCache target(clock, embedder, {.similarity_threshold = 0.5F});
    CHECK(llmfast::testing::error_code_of([&] { target.load_from_string(bytes); }) == llmfast::ErrorCode::CorruptSnapshot);
}

TEST_CASE("load with a failing embedder stops calling it after the first failed batch", "[cache]") {
    llmfast::ManualClock clock;
    FlakyEmbedder embedder;
    FlakyCache plain(clock, embedder, {.similarity_threshold = 0.5F, .snapshot_vectors = llmfast::SnapshotVectors::Off});
    for (int i = 0; i < 300; ++i) plain.insert("question number " + std::to_string(i), "s", "answer");
    FlakyEmbedder dead;
    dead.control->fail = true;
    FlakyCache loaded(clock, dead, {.similarity_threshold = 0.5F});
    loaded.load_from_string(plain.save_to_string());
    CHECK(dead.control->calls == 1);  // the first text of the first batch failed: nothing more was tried
    CHECK(loaded.stats().embedder_failures == 300);
    CHECK(loaded.size() == 300);
    CHECK(loaded.lookup("question number 299", "s").match == MatchKind::Exact);
}

// ---- the verifier step with a HitVerifier (SemanticCache's last template parameter) ----

namespace {

// Gives every candidate the probability it is told to (shared, so the test can change it).
struct TunableVerifier {
    std::shared_ptr<std::atomic<double>> p = std::make_shared<std::atomic<double>>(0.99);
    double probability(std::string_view, std::string_view, float) const { return p->load(); }
};

struct AutoVoter {
    bool yes = true;
    double probability(std::string_view, std::string_view, float) const { return 1.0; }
    bool recommends_semantic_tier(double) const { return yes; }
    std::string calibration_identity() const { return llmfast::HashingEmbedder{}.identity(); }
};

using VerifiedCache = llmfast::SemanticCache<llmfast::HashingEmbedder, llmfast::FlatIndex, llmfast::ManualClock, llmfast::LruPolicy, llmfast::NoSharedTier, TunableVerifier>;

}  // namespace

TEST_CASE("verifier step: the guards alone (default) give probability 1 and take no reports", "[cache]") {
    llmfast::ManualClock clock;
    Cache cache = make_cache(clock);
    cache.insert("how do I reset my password", "s", "answer");
    const auto hit = cache.lookup("how can I reset my password", "s");
    REQUIRE(hit.match == MatchKind::Semantic);
    CHECK(hit.verified_probability == 1.0);
    CHECK_FALSE(cache.report(hit, false));
    CHECK(cache.stats().reported_hits == 0);
}

TEST_CASE("verifier step: a HitVerifier's probability against the scope's operating point, raised by reports", "[cache]") {
    llmfast::ManualClock clock;
    TunableVerifier verifier;
    auto options = semantic_options();
    options.max_wrong_hit_rate = 0.05;  // no threshold_for: the operating point is 1 - δ = 0.95
    VerifiedCache cache(clock, llmfast::HashingEmbedder{}, options, {}, verifier);
    cache.insert("how do I reset my password", "a", "answer a");
    cache.insert("how do I reset my password", "b", "answer b");
    auto hit = cache.lookup("how can I reset my password", "a");
    REQUIRE(hit.match == MatchKind::Semantic);
    CHECK(hit.verified_probability == Approx(0.99));
    verifier.p->store(0.9);  // below 0.95: rejected, counted
    CHECK_FALSE(cache.lookup("how can I reset my password", "a"));
    CHECK(cache.stats().verifier_rejections == 1);
    CHECK(cache.stats().guard_vetoes == 0);
    // The application learns scope a's hits at 0.99 are wrong one time in three: a's point goes up.
    for (int i = 0; i < 100; ++i) CHECK(cache.report(hit, i % 3 != 0));
    verifier.p->store(0.99);
    CHECK_FALSE(cache.lookup("how can I reset my password", "a"));
    CHECK(cache.lookup("how can I reset my password", "b").match == MatchKind::Semantic);  // scope b unaffected
    const auto stats = cache.stats();
    CHECK(stats.reported_hits == 100);
    CHECK(stats.reported_wrong == 34);
    CHECK(stats.threshold_raises >= 1);
    // Exact hits involve no verifier: nothing to report.
    CHECK_FALSE(cache.report(cache.lookup("how do I reset my password", "a"), false));
    // erase_scope starts the scope's operating point again from the shipped one.
    cache.erase_scope("a");
    cache.insert("how do I reset my password", "a", "answer a");
    CHECK(cache.lookup("how can I reset my password", "a").match == MatchKind::Semantic);
    CHECK_FALSE(cache.report(hit, false));  // a result from before the erase reaches nothing
}

TEST_CASE("verifier step: options, Auto and calibration", "[cache]") {
    llmfast::ManualClock clock;
    auto bad = semantic_options();
    bad.max_wrong_hit_rate = 0.0;
    CHECK_THROWS_AS(make_cache(clock, bad), llmfast::Error);  // validated with the guards alone too
    CHECK_THROWS_AS(VerifiedCache(clock, llmfast::HashingEmbedder{}, bad), llmfast::Error);
    // Auto with the lexical HashingEmbedder: on exactly when the verifier recommends it.
    using Voted = llmfast::SemanticCache<llmfast::HashingEmbedder, llmfast::FlatIndex, llmfast::ManualClock, llmfast::LruPolicy, llmfast::NoSharedTier, AutoVoter>;
    llmfast::SemanticCacheOptions automatic;  // semantic_tier = Auto
    CHECK(Voted(clock, llmfast::HashingEmbedder{}, automatic, {}, AutoVoter{true}).semantic_enabled());
    CHECK_FALSE(Voted(clock, llmfast::HashingEmbedder{}, automatic, {}, AutoVoter{false}).semantic_enabled());
    CHECK_FALSE(make_cache(clock, automatic).semantic_enabled());
    // Calibrated for HashingEmbedder with its default seed: another seed is another embedder.
    CHECK_THROWS_AS(Voted(clock, llmfast::HashingEmbedder({.seed = 5}), automatic, {}, AutoVoter{true}), llmfast::Error);
}

TEST_CASE("verifier step: concurrent lookups, reports and erase_scope", "[cache]") {
    llmfast::ManualClock clock;
    TunableVerifier verifier;
    VerifiedCache cache(clock, llmfast::HashingEmbedder{}, semantic_options(), {}, verifier);
    std::atomic<int> served{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 300; ++i) {
                const std::string scope = "s" + std::to_string((t + i) % 3);
                cache.insert("how do I reset my password", scope, "answer");
                const auto hit = cache.lookup("how can I reset my password", scope);
                if (hit.match == MatchKind::Semantic) {
                    served.fetch_add(1);
                    cache.report(hit, i % 2 == 0);
                }
                if (t == 0 && i % 100 == 99) cache.erase_scope(scope);
                (void)cache.stats();
            }
        });
    }
    for (std::thread& thread : threads) thread.join();
    CHECK(served.load() > 0);
    // A report after its scope was erased reaches nothing (and is not counted).
    CHECK(cache.stats().reported_hits <= static_cast<std::uint64_t>(served.load()));
    CHECK(cache.stats().reported_hits > 0);
}

// ---- review: counters, and report() on results it did not serve ----

namespace {

// Holds the first embedding of "race prompt" until released: the window between a lookup's tiers
// and the flight's join-or-start. That vector is orthogonal to every other, so it finds no candidate.
struct GateEmbedder {
    struct Gate {
        std::mutex mutex;
        std::condition_variable changed;
        bool armed = true, entered = false, released = false;
    };
    std::shared_ptr<Gate> gate = std::make_shared<Gate>();
    std::size_t dimension() const { return 2; }
    void embed(std::string_view text, std::span<float> out) const {
        out[0] = 0.0F;
        out[1] = 1.0F;
        if (text != "race prompt") return;
        std::unique_lock lock(gate->mutex);
        if (!gate->armed) return;
        gate->armed = false;
        gate->entered = true;
        gate->changed.notify_all();
        gate->changed.wait_for(lock, 20s, [&] { return gate->released; });
        out[0] = 1.0F;
        out[1] = 0.0F;
    }
};

}  // namespace

TEST_CASE("stats: a begin that finds the entry inserted after its tiers missed counts one lookup, an exact hit", "[cache]") {
    llmfast::ManualClock clock;
    GateEmbedder embedder;
    llmfast::SemanticCache<GateEmbedder, llmfast::FlatIndex, llmfast::ManualClock> cache(clock, embedder, semantic_options());
    cache.insert("seed", "s", "x");  // the scope has an index, so the lookup embeds its prompt
    std::optional<llmfast::SemanticCache<GateEmbedder, llmfast::FlatIndex, llmfast::ManualClock>::Flight> flight;
    std::thread looker([&] { flight.emplace(cache.begin("race prompt", "s")); });
    bool entered = false;
    {
        std::unique_lock lock(embedder.gate->mutex);
        entered = embedder.gate->changed.wait_for(lock, 20s, [&] { return embedder.gate->entered; });
    }
    if (entered) cache.insert("race prompt", "s", "R");  // lands between the lookup's miss and its flight
    {
        std::lock_guard lock(embedder.gate->mutex);
        embedder.gate->released = true;
    }
    embedder.gate->changed.notify_all();
    looker.join();
    REQUIRE(entered);
    REQUIRE(flight);
    const auto* found = std::get_if<llmfast::LookupResult>(&*flight);
    REQUIRE(found != nullptr);
    CHECK(found->match == MatchKind::Exact);
    CHECK(found->response() == "R");
    const llmfast::SemanticCacheStats stats = cache.stats();
    CHECK(stats.exact_hits + stats.semantic_hits + stats.misses == 1);  // one lookup, counted once
    CHECK(stats.exact_hits == 1);
    CHECK(stats.misses == 0);
    CHECK(stats.hit_rate() == 1.0);
}

TEST_CASE("verifier step: report() with another cache's result is ignored by both caches", "[cache]") {
    llmfast::ManualClock clock;
    TunableVerifier verifier;
    VerifiedCache a(clock, llmfast::HashingEmbedder{}, semantic_options(), {}, verifier);
    VerifiedCache b(clock, llmfast::HashingEmbedder{}, semantic_options(), {}, verifier);
    a.insert("how do I reset my password", "s", "answer a");
    b.insert("how do I reset my password", "s", "answer b");
    const auto from_b = b.lookup("how can I reset my password", "s");
    REQUIRE(from_b.match == MatchKind::Semantic);
    for (int i = 0; i < 100; ++i) CHECK_FALSE(a.report(from_b, false));  // not a hit `a` served
    CHECK(a.stats().reported_hits == 0);
    CHECK(b.stats().reported_hits == 0);  // nor fed to b behind its back
    CHECK(b.stats().threshold_raises == 0);
    CHECK(b.lookup("how can I reset my password", "s").match == MatchKind::Semantic);
    CHECK(b.report(from_b, true));  // its own cache takes it
    CHECK(b.stats().reported_hits == 1);
}

TEST_CASE("verifier step: a snapshot loads into a verified cache, whose loaded entries are verified", "[cache]") {
    llmfast::ManualClock clock;
    TunableVerifier verifier;
    VerifiedCache a(clock, llmfast::HashingEmbedder{}, semantic_options(), {}, verifier);
    a.insert("how do I reset my password", "s", "answer");
    const std::string snapshot = a.save_to_string();
    VerifiedCache b(clock, llmfast::HashingEmbedder{}, semantic_options(), {}, verifier);
    b.insert("how do I reset my password", "t", "other scope");
    const auto before = b.lookup("how can I reset my password", "t");
    REQUIRE(before.match == MatchKind::Semantic);
    b.load_from_string(snapshot);
    CHECK(b.size() == 1);
    const auto hit = b.lookup("how can I reset my password", "s");
    REQUIRE(hit.match == MatchKind::Semantic);
    CHECK(hit.response() == "answer");
    CHECK(hit.verified_probability == Approx(0.99));
    CHECK(b.report(hit, true));
    CHECK_FALSE(b.report(before, false));  // its scope left with the load
    verifier.p->store(0.5);
    CHECK_FALSE(b.lookup("how can I reset my password", "s"));
    CHECK(b.stats().verifier_rejections == 1);
    // A snapshot of the guards-only cache loads into the verified one too (same embedder).
    llmfast::ManualClock other;
    Cache plain = make_cache(other);
    plain.insert("how do I reset my password", "g", "guards");
    VerifiedCache c(clock, llmfast::HashingEmbedder{}, semantic_options(), {}, verifier);
    c.load_from_string(plain.save_to_string());
    verifier.p->store(0.99);
    CHECK(c.lookup("how can I reset my password", "g").verified_probability == Approx(0.99));
}
