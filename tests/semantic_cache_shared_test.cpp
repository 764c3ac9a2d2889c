// Tests of SemanticCache with a shared tier attached (llmfast/semantic_cache.hpp + RedisTier from
// llmfast/redis_tier.hpp) against a real redis-server, started per test on a free loopback port by
// the harness in tests/support/redis_server.hpp and always stopped. Missing redis-server: skipped
// locally, a failure under CI. No timed assertions: what crosses replicas is waited for on a
// condition with a generous deadline (`eventually`).
#include <llmfast/hashing_embedder.hpp>
#include <llmfast/redis_tier.hpp>
#include <llmfast/semantic_cache.hpp>

#include "catch.hpp"
#include "support/redis_server.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <future>
#include <memory>
#include <mutex>
#include <span>
#include <string_view>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

using namespace std::chrono_literals;
using llmfast::MatchKind;
using llmfast_test::eventually;
using llmfast_test::RedisServer;
using llmfast_test::run_self_child;

namespace {

using Cache = llmfast::SemanticCache<llmfast::HashingEmbedder, llmfast::FlatIndex, llmfast::WallClock, llmfast::LruPolicy,
                                     llmfast::RedisTier>;
using ManualCache = llmfast::SemanticCache<llmfast::HashingEmbedder, llmfast::FlatIndex, llmfast::ManualClock,
                                           llmfast::LruPolicy, llmfast::RedisTier>;

// A paraphrase pair that HashingEmbedder puts above the threshold below (checked locally first, in
// "a paraphrase pair hits locally").
constexpr const char* k_prompt = "什么是机器学习?";
constexpr const char* k_paraphrase = "机器学习是什么？";
constexpr const char* k_child_prompt = "什么是深度学习?";
constexpr const char* k_child_paraphrase = "深度学习是什么？";

llmfast::SemanticCacheOptions semantic_options() {
    return {.max_entries = 1000, .ttl = 1h, .semantic_tier = llmfast::SemanticTier::On, .similarity_threshold = 0.6F,
            .shards = 4, .shared_lock_wait = 20s};
}

llmfast::RedisTierOptions tier_options(int port) {
    llmfast::RedisTierOptions o;
    o.port = port;
    o.key_prefix = "cachetest";
    // Sanitizer builds are slow; these are bounds, not expectations.
    o.connect_timeout = 200ms;
    o.command_timeout = 200ms;
    o.reconnect_backoff_min = 5ms;
    o.reconnect_backoff_max = 50ms;
    o.follow_block = 50ms;
    return o;
}

std::shared_ptr<llmfast::RedisTier> make_tier(int port) { return std::make_shared<llmfast::RedisTier>(tier_options(port)); }

std::unique_ptr<Cache> make_cache(int port, llmfast::SemanticCacheOptions options = semantic_options()) {
    auto cache = std::make_unique<Cache>(llmfast::HashingEmbedder{}, options);
    cache->attach_shared(make_tier(port));
    return cache;
}

// A SharedTier with only the required calls (no async, no feed, no lock): the blocking path alone.
struct PlainTier {
    std::shared_ptr<llmfast::RedisTier> redis;
    llmfast::SharedLookup lookup(std::string_view scope, std::string_view key) { return redis->lookup(scope, key); }
    llmfast::SharedStatus insert(const llmfast::SharedEntry& entry) { return redis->insert(entry); }
    llmfast::SharedStatus erase(std::string_view scope, std::string_view key) { return redis->erase(scope, key); }
    llmfast::SharedStatus purge_scope(std::string_view scope) { return redis->purge_scope(scope); }
};
static_assert(llmfast::SharedTier<PlainTier>);

// PlainTier plus lookup_async (RedisTier's worker threads), still without a feed.
struct AsyncTier : PlainTier {
    template <class F>
    void lookup_async(std::string_view scope, std::string_view key, F&& done) {
        redis->lookup_async(scope, key, std::forward<F>(done));
    }
};
static_assert(!llmfast::shared_tier_traits<PlainTier>::has_change_feed);
static_assert(llmfast::shared_tier_traits<llmfast::RedisTier>::has_change_feed);
static_assert(llmfast::shared_tier_traits<llmfast::RedisTier>::has_lock);

// HashingEmbedder that counts its calls (shared by copies): shows whether a replica embedded a prompt.
struct CountingEmbedder {
    llmfast::HashingEmbedder inner{};
    std::shared_ptr<std::atomic<int>> calls = std::make_shared<std::atomic<int>>(0);
    [[nodiscard]] std::size_t dimension() const noexcept { return inner.dimension(); }
    [[nodiscard]] std::string identity() const { return inner.identity(); }
    void embed(std::string_view text, std::span<float> out) const {
        calls->fetch_add(1);
        inner.embed(text, out);
    }
};

// The second process of the two-process test: this binary, re-executed with
// LLMFAST_SHARED_CACHE_CHILD_PORT set, runs its own cache on the same Redis before Catch's main:
// it must see the parent's exact and semantic inserts, then inserts its own.
int child_main(int port) {
    Cache cache(llmfast::HashingEmbedder{}, semantic_options());
    cache.attach_shared(make_tier(port));
    const bool exact = eventually([&] { return cache.lookup("parent exact prompt", "scope-a").response() == "from the parent"; });
    if (!exact) return 3;
    // The semantic hit needs the parent's entry in the local index: the follower brings it.
    const bool semantic = eventually([&] {
        const llmfast::LookupResult r = cache.lookup(k_paraphrase, "scope-a");
        return r.match == MatchKind::Semantic && r.response() == "ML (parent)";
    });
    if (!semantic) return 4;
    cache.insert("child exact prompt", "scope-a", "from the child");
    cache.insert(k_child_prompt, "scope-a", "DL (child)");
    // Write-through is asynchronous: wait until both reached Redis before exiting.
    if (!eventually([&] { return cache.stats().shared_writes >= 2; })) return 5;
    return 0;
}

const int child_process_result = [] {
    const char* port = std::getenv("LLMFAST_SHARED_CACHE_CHILD_PORT");
    if (port == nullptr) return 0;
    int code = 6;
    try {
        code = child_main(std::atoi(port));
    } catch (...) {
        code = 7;
    }
    std::_Exit(code);
}();

}  // namespace

TEST_CASE("shared cache: options are validated; NoSharedTier is never attached") {
    const auto code_of = [](llmfast::SemanticCacheOptions o) {
        try {
            llmfast::SemanticCache<llmfast::HashingEmbedder> cache({}, o);
        } catch (const llmfast::Error& e) {
            return e.code();
        }
        return llmfast::ErrorCode::Ok;
    };
    CHECK(code_of({}) == llmfast::ErrorCode::Ok);
    CHECK(code_of({.shared_lock_wait = 0ms}) == llmfast::ErrorCode::Ok);
    CHECK(code_of({.shared_lock_wait = -1ms}) == llmfast::ErrorCode::InvalidArgument);
    CHECK(code_of({.shared_lock_ttl = 0ms}) == llmfast::ErrorCode::InvalidArgument);
    llmfast::SemanticCache<llmfast::HashingEmbedder> plain;
    CHECK_FALSE(plain.shared_attached());
    static_assert(std::is_same_v<decltype(plain)::SharedTierType, llmfast::NoSharedTier>);
    Cache unattached;
    CHECK_FALSE(unattached.shared_attached());
    unattached.insert("a", "s", "b");  // no tier: local only
    CHECK(unattached.lookup("a", "s").response() == "b");
    CHECK(unattached.stats().shared_writes == 0);
}

TEST_CASE("shared cache: the key travels as 32 hex digits and parses back") {
    const llmfast::detail::CacheKey key = llmfast::detail::prompt_cache_key("scope", "prompt");
    const std::string hex = llmfast::detail::cache_key_hex(key);
    CHECK(hex.size() == 32);
    CHECK(hex.find_first_not_of("0123456789abcdef") == std::string::npos);
    llmfast::detail::CacheKey back;
    REQUIRE(llmfast::detail::parse_cache_key_hex(hex, back));
    CHECK(back == key);
    CHECK(llmfast::detail::cache_key_hex({.low = 1, .high = 0xAB}) == "00000000000000ab0000000000000001");
    CHECK_FALSE(llmfast::detail::parse_cache_key_hex(hex.substr(1), back));
    CHECK_FALSE(llmfast::detail::parse_cache_key_hex(std::string(32, 'g'), back));
}

TEST_CASE("shared cache: a paraphrase pair hits locally") {
    llmfast::SemanticCache<llmfast::HashingEmbedder> cache({}, semantic_options());
    cache.insert(k_prompt, "scope-a", "ML");
    cache.insert(k_child_prompt, "scope-a", "DL");
    CHECK(cache.lookup(k_paraphrase, "scope-a").match == MatchKind::Semantic);
    CHECK(cache.lookup(k_paraphrase, "scope-a").response() == "ML");
    CHECK(cache.lookup(k_child_paraphrase, "scope-a").match == MatchKind::Semantic);
    CHECK(cache.lookup(k_child_paraphrase, "scope-a").response() == "DL");
}

TEST_CASE("shared cache: a tier with only the required calls serves exact hits across caches") {
    RedisServer server;
    using PlainCache = llmfast::SemanticCache<llmfast::HashingEmbedder, llmfast::FlatIndex, llmfast::WallClock,
                                              llmfast::LruPolicy, PlainTier>;
    PlainCache a({}, semantic_options());
    PlainCache b({}, semantic_options());
    a.attach_shared(std::make_shared<PlainTier>(PlainTier{make_tier(server.port())}));
    b.attach_shared(std::make_shared<PlainTier>(PlainTier{make_tier(server.port())}));
    CHECK(a.insert("What is ML?", "scope-a", "machine learning"));
    CHECK(a.stats().shared_writes == 1);  // blocking write-through: no insert_async
    const llmfast::LookupResult hit = b.lookup("  what is ML? ", "scope-a");
    REQUIRE(hit);
    CHECK(hit.match == MatchKind::Exact);
    CHECK(hit.response() == "machine learning");
    CHECK(b.stats().shared_hits == 1);
    CHECK(b.stats().exact_hits == 1);  // shared hits are exact hits: hit_rate counts each lookup once
    CHECK(b.size() == 1);               // stored locally: the next lookup needs no round trip
    CHECK(b.lookup("what is ml?", "scope-a"));
    CHECK(b.stats().shared_hits == 1);
    CHECK(b.stats().exact_hits == 2);
    CHECK_FALSE(b.lookup("What is ML?", "scope-b"));
    CHECK(b.stats().shared_misses == 1);
    CHECK(b.stats().misses == 1);
    // The embedding travels with the entry: B's copy from Redis is in its index, so a paraphrase hits.
    a.insert(k_prompt, "scope-a", "ML");
    CHECK_FALSE(b.lookup(k_paraphrase, "scope-a"));  // B does not hold it yet (no feed), Redis has no such key
    CHECK(b.lookup(k_prompt, "scope-a").match == MatchKind::Exact);
    CHECK(b.stats().shared_hits == 2);
    CHECK(b.lookup(k_paraphrase, "scope-a").match == MatchKind::Semantic);
    // erase on B removes it from Redis; A's local copy stays (no feed to carry the tombstone).
    CHECK(b.erase("What is ML?", "scope-a"));
    PlainCache c({}, semantic_options());
    c.attach_shared(std::make_shared<PlainTier>(PlainTier{make_tier(server.port())}));
    CHECK_FALSE(c.lookup("What is ML?", "scope-a"));
}

TEST_CASE("shared cache: two caches in two processes see each other's exact and semantic inserts") {
    RedisServer server;
    auto cache = make_cache(server.port());
    cache->insert("parent exact prompt", "scope-a", "from the parent");
    cache->insert(k_prompt, "scope-a", "ML (parent)");
    REQUIRE(eventually([&] { return cache->stats().shared_writes >= 2; }));
    const std::optional<int> exit_code = run_self_child("LLMFAST_SHARED_CACHE_CHILD_PORT", std::to_string(server.port()));
    REQUIRE(exit_code.has_value());
    CHECK(*exit_code == 0);  // 3: no exact hit, 4: no semantic hit, 5: writes did not reach Redis
    CHECK(eventually([&] { return cache->lookup("child exact prompt", "scope-a").response() == "from the child"; }));
    CHECK(eventually([&] {
        const llmfast::LookupResult r = cache->lookup(k_child_paraphrase, "scope-a");
        return r.match == MatchKind::Semantic && r.response() == "DL (child)";
    }));
    CHECK(cache->stats().shared_applied >= 2);
    CHECK(cache->stats().shared_corrupt == 0);
}

TEST_CASE("shared cache: a replica attached later catches up from the stream") {
    RedisServer server;
    auto a = make_cache(server.port());
    a->insert(k_prompt, "scope-a", "ML");
    a->insert("first", "scope-a", "1");
    a->insert("second", "scope-b", "2");
    REQUIRE(eventually([&] { return a->stats().shared_writes >= 3; }));
    auto b = make_cache(server.port());
    REQUIRE(eventually([&] { return b->stats().shared_applied >= 3; }));
    CHECK(b->size() == 3);
    const llmfast::LookupResult similar = b->lookup(k_paraphrase, "scope-a");
    CHECK(similar.match == MatchKind::Semantic);
    CHECK(similar.response() == "ML");
    CHECK(b->lookup("first", "scope-a").match == MatchKind::Exact);
    CHECK(b->stats().shared_hits == 0);  // all local: the feed brought them
    // A's own inserts came back on its feed and were skipped (same created time).
    CHECK(a->stats().shared_applied == 0);
}

TEST_CASE("shared cache: TTL runs from the original insert on every replica") {
    RedisServer server;
    llmfast::ManualClock clock(std::chrono::hours(24 * 365 * 50));  // the epoch's range of a wall clock
    ManualCache a(clock, llmfast::HashingEmbedder{}, semantic_options());
    ManualCache b(clock, llmfast::HashingEmbedder{}, semantic_options());
    a.attach_shared(make_tier(server.port()));
    b.attach_shared(make_tier(server.port()));
    a.insert("short lived", "scope-a", "soon gone", 10s);
    a.insert("long lived", "scope-a", "stays", 1h);
    REQUIRE(eventually([&] { return b.stats().shared_applied >= 2; }));
    clock.advance(5s);
    const llmfast::LookupResult young = b.lookup("short lived", "scope-a");
    REQUIRE(young);
    CHECK(young.age == 5s);  // from A's insert, not from B's copy
    clock.advance(6s);
    // Expired locally (created + ttl), and the value still in Redis (real-time PX) is not served either.
    CHECK_FALSE(b.lookup("short lived", "scope-a"));
    CHECK(b.lookup("long lived", "scope-a"));
    // A replica attached now does not take the expired entry from the feed.
    ManualCache c(clock, llmfast::HashingEmbedder{}, semantic_options());
    c.attach_shared(make_tier(server.port()));
    REQUIRE(eventually([&] { return c.stats().shared_applied >= 1; }));
    CHECK(c.lookup("long lived", "scope-a"));
    CHECK_FALSE(c.lookup("short lived", "scope-a"));
}

TEST_CASE("shared cache: Redis killed mid-run: nothing throws, every call answers, inserts flow again after a restart") {
    RedisServer server;
    auto a = make_cache(server.port());
    auto b = make_cache(server.port());
    a->insert("before", "scope-a", "x");
    REQUIRE(eventually([&] { return b->stats().shared_applied >= 1; }));
    server.kill();
    std::size_t answered = 0;
    for (int i = 0; i < 50; ++i) {
        const std::string prompt = "during " + std::to_string(i);
        CHECK_NOTHROW(a->insert(prompt, "scope-a", "y"));
        llmfast::LookupResult r;
        CHECK_NOTHROW(r = b->lookup(prompt, "scope-a"));  // a local miss: the tier is down
        CHECK_FALSE(r);
        CHECK(b->lookup("before", "scope-a"));  // the local copy still answers
        std::promise<llmfast::LookupResult> done;
        auto future = done.get_future();
        CHECK_NOTHROW(b->lookup_async(prompt, "scope-a", [&done](llmfast::LookupResult result) { done.set_value(std::move(result)); }));
        REQUIRE(future.wait_for(20s) == std::future_status::ready);
        CHECK_FALSE(future.get());
        CHECK_NOTHROW(b->get_or_compute("computed " + std::to_string(i), "scope-a", [] { return std::string("z"); }));
        ++answered;
    }
    CHECK(answered == 50);
    CHECK(b->stats().shared_unavailable > 0);
    CHECK(eventually([&] { return a->stats().shared_write_failures >= 50; }));
    CHECK(a->stats().shared_writes == 1);

    server.start();  // empty: no persistence
    CHECK(eventually([&] {
        a->insert("after", "scope-a", "back");
        return b->lookup("after", "scope-a").response() == "back";
    }));
    CHECK(b->lookup("before", "scope-a"));  // kept locally through the restart
    // B's feed noticed that Redis lost its content (the stream it had read is gone) and went on.
    CHECK(eventually([&] { return b->stats().shared_resets >= 1; }));
    CHECK(eventually([&] {
        a->insert("after the reset", "scope-a", "fed");
        return b->stats().shared_applied >= 2;  // "before" and at least one record since the restart
    }));
}

TEST_CASE("shared cache: a corrupt or forged value is a counted miss, never served") {
    RedisServer server;
    auto b = make_cache(server.port());
    auto writer = make_tier(server.port());
    const llmfast::detail::CacheKey key = llmfast::detail::prompt_cache_key("scope-a", "victim prompt");
    const std::string hex = llmfast::detail::cache_key_hex(key);
    {
        // Not a value of ours at all: the tier reports NotFound (counting it), the cache a shared miss.
        auto raw = server.raw();
        raw->append({"SET", writer->entry_key("scope-a", hex), "garbage"});
        REQUIRE(raw->read());
    }
    CHECK_FALSE(b->lookup("victim prompt", "scope-a"));
    CHECK(b->stats().shared_misses == 1);
    CHECK(b->stats().shared_hits == 0);
    // Well-formed, of the right scope and key, but its prompt does not hash to that key (a forged or
    // buggy writer): the tier cannot tell, the cache can.
    llmfast::SharedEntry forged;
    forged.scope = "scope-a";
    forged.key = hex;
    forged.prompt = "another prompt";
    forged.response = "wrong answer";
    forged.created_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(llmfast::WallClock{}.now().time_since_epoch()).count();
    forged.ttl = 1h;
    REQUIRE(writer->insert(forged) == llmfast::SharedStatus::Ok);
    // The feed delivers it (counted, skipped); the lookup finds it in Redis (counted, not served).
    REQUIRE(eventually([&] { return b->stats().shared_corrupt >= 1; }));
    const llmfast::LookupResult r = b->lookup("victim prompt", "scope-a");
    CHECK_FALSE(r);
    CHECK(r.response().empty());
    CHECK(b->stats().shared_corrupt >= 2);
    CHECK(b->size() == 0);
    CHECK_FALSE(b->lookup("another prompt", "scope-a"));
}

TEST_CASE("shared cache: erase and erase_scope reach every replica") {
    RedisServer server;
    auto a = make_cache(server.port());
    auto b = make_cache(server.port());
    a->insert("x", "s1", "1");
    a->insert("y", "s1", "2");
    a->insert("z", "s2", "3");
    REQUIRE(eventually([&] { return b->stats().shared_applied >= 3; }));
    REQUIRE(b->size() == 3);
    CHECK(a->erase("x", "s1"));
    REQUIRE(eventually([&] { return b->stats().shared_tombstones_applied >= 1; }));
    CHECK_FALSE(b->lookup("x", "s1"));  // gone locally, and from Redis
    CHECK(b->lookup("y", "s1"));
    CHECK(a->erase_scope("s1") == 1);
    REQUIRE(eventually([&] { return b->stats().shared_tombstones_applied >= 2; }));
    CHECK_FALSE(b->lookup("y", "s1"));
    CHECK(b->lookup("z", "s2"));
    CHECK(b->size() == 1);
    // clear() is local only: Redis still answers for z.
    a->clear();
    auto c = make_cache(server.port(), {.semantic_tier = llmfast::SemanticTier::Off});
    CHECK(eventually([&] { return c->lookup("z", "s2").response() == "3"; }));
}

TEST_CASE("shared cache: save and load of a cache with a tier attached (local entries only)") {
    RedisServer server;
    auto a = make_cache(server.port());
    a->insert(k_prompt, "scope-a", "ML");
    a->insert("exact one", "scope-b", "1");
    const std::string snapshot = a->save_to_string();
    REQUIRE(eventually([&] { return a->stats().shared_writes >= 2; }));
    auto b = make_cache(server.port());
    b->load_from_string(snapshot);
    CHECK(b->size() == 2);
    CHECK(b->lookup("exact one", "scope-b").response() == "1");
    CHECK(b->lookup(k_paraphrase, "scope-a").match == MatchKind::Semantic);
    CHECK(b->stats().shared_writes == 0);  // load writes nothing through
    // And the tier is still in use after the load.
    b->insert("after load", "scope-b", "2");
    CHECK(eventually([&] { return a->lookup("after load", "scope-b").response() == "2"; }));
}

TEST_CASE("shared cache: get_or_compute on two caches computes once for concurrent identical misses") {
    RedisServer server;
    auto tier_a = make_tier(server.port());
    auto tier_b = make_tier(server.port());
    Cache a({}, semantic_options());
    Cache b({}, semantic_options());
    a.attach_shared(tier_a);
    b.attach_shared(tier_b);
    std::atomic<int> calls{0};
    // The computing replica holds on until the other one has found the lock held, so both are
    // concurrent misses whatever the scheduling (bounded: it gives up after 20 s).
    const auto fn = [&] {
        calls.fetch_add(1);
        eventually([&] { return tier_a->stats().locks_held + tier_b->stats().locks_held >= 1; });
        return std::string("computed once");
    };
    llmfast::LookupResult ra, rb;
    std::thread ta([&] { ra = a.get_or_compute("expensive prompt", "scope-a", fn); });
    std::thread tb([&] { rb = b.get_or_compute("expensive prompt", "scope-a", fn); });
    ta.join();
    tb.join();
    CHECK(calls.load() == 1);
    CHECK(ra.response() == "computed once");
    CHECK(rb.response() == "computed once");
    const bool a_computed = ra.match == MatchKind::Computed;
    const llmfast::LookupResult& waiter = a_computed ? rb : ra;
    CHECK((a_computed ? ra : rb).match == MatchKind::Computed);
    CHECK(waiter.match == MatchKind::Coalesced);
    const llmfast::SemanticCacheStats waited = (a_computed ? b : a).stats();
    CHECK(waited.shared_lock_waits == 1);
    CHECK(waited.shared_lock_timeouts == 0);
    CHECK(waited.computations == 0);
    CHECK(waited.coalesced == 1);
    // The lock was released: a later miss on another prompt takes it again.
    CHECK(a.get_or_compute("another prompt", "scope-a", [] { return std::string("x"); }).match == MatchKind::Computed);
}

TEST_CASE("shared cache: lookup_async goes to the tier's worker on a local miss, then the semantic tier there") {
    RedisServer server;
    auto a = make_cache(server.port());
    // B's tier has lookup_async but no change feed: every local miss goes to Redis asynchronously.
    using AsyncCache = llmfast::SemanticCache<llmfast::HashingEmbedder, llmfast::FlatIndex, llmfast::WallClock,
                                              llmfast::LruPolicy, AsyncTier>;
    static_assert(llmfast::shared_tier_traits<AsyncTier>::has_lookup_async);
    static_assert(!llmfast::shared_tier_traits<AsyncTier>::has_change_feed);
    AsyncCache b({}, semantic_options());
    b.attach_shared(std::make_shared<AsyncTier>(AsyncTier{make_tier(server.port())}));
    a->insert("async exact", "scope-a", "E");
    a->insert(k_prompt, "scope-a", "ML");
    REQUIRE(eventually([&] { return a->stats().shared_writes >= 2; }));
    const auto ask = [&](const char* prompt) {
        std::promise<llmfast::LookupResult> done;
        auto future = done.get_future();
        b.lookup_async(prompt, "scope-a", [&done](llmfast::LookupResult r) { done.set_value(std::move(r)); });
        REQUIRE(future.wait_for(20s) == std::future_status::ready);
        return future.get();
    };
    const llmfast::LookupResult exact = ask("async exact");
    CHECK(exact.match == MatchKind::Exact);
    CHECK(exact.response() == "E");
    CHECK(b.stats().shared_hits == 1);
    CHECK_FALSE(ask(k_paraphrase));  // not local yet, and Redis has no such key
    CHECK(ask(k_prompt).match == MatchKind::Exact);
    const llmfast::LookupResult similar = ask(k_paraphrase);  // Redis misses; the semantic tier runs on the worker
    CHECK(similar.match == MatchKind::Semantic);
    CHECK(similar.response() == "ML");
    CHECK_FALSE(ask("nothing like it"));
    const llmfast::SemanticCacheStats stats = b.stats();
    CHECK(stats.shared_hits == 2);
    CHECK(stats.semantic_hits == 1);
    CHECK(stats.misses == 2);
    CHECK(stats.shared_misses == 3);
    // A move-only callback works (the tier copies its std::function; the cache shares the callback).
    std::promise<bool> moved;
    auto moved_future = moved.get_future();
    auto owned = std::make_unique<int>(7);
    b.lookup_async("not cached", "scope-a", [p = std::move(moved), owned = std::move(owned)](llmfast::LookupResult r) mutable {
        p.set_value(!r.hit() && *owned == 7);
    });
    REQUIRE(moved_future.wait_for(20s) == std::future_status::ready);
    CHECK(moved_future.get());
}

TEST_CASE("shared cache: begin_async finds, leads or follows from the tier's worker") {
    RedisServer server;
    auto a = make_cache(server.port());
    using AsyncCache = llmfast::SemanticCache<llmfast::HashingEmbedder, llmfast::FlatIndex, llmfast::WallClock,
                                              llmfast::LruPolicy, AsyncTier>;
    AsyncCache b({}, semantic_options());
    b.attach_shared(std::make_shared<AsyncTier>(AsyncTier{make_tier(server.port())}));
    a->insert("in redis", "scope-a", "R");
    REQUIRE(eventually([&] { return a->stats().shared_writes >= 1; }));
    const auto begin = [&](const char* prompt) {
        std::promise<AsyncCache::Flight> done;
        auto future = done.get_future();
        b.begin_async(prompt, "scope-a", [&done](AsyncCache::Flight&& flight) { done.set_value(std::move(flight)); });
        REQUIRE(future.wait_for(20s) == std::future_status::ready);
        return future.get();
    };
    AsyncCache::Flight found = begin("in redis");
    REQUIRE(std::holds_alternative<llmfast::LookupResult>(found));
    CHECK(std::get<llmfast::LookupResult>(found).response() == "R");
    CHECK(b.stats().shared_hits == 1);

    AsyncCache::Flight first = begin("new prompt");
    REQUIRE(std::holds_alternative<AsyncCache::Leader>(first));
    AsyncCache::Flight second = begin("new prompt");
    REQUIRE(std::holds_alternative<AsyncCache::Follower>(second));
    const llmfast::LookupResult computed = std::get<AsyncCache::Leader>(first).complete("N");
    CHECK(computed.match == MatchKind::Computed);
    const llmfast::LookupResult coalesced = std::get<AsyncCache::Follower>(second).wait();
    CHECK(coalesced.match == MatchKind::Coalesced);
    CHECK(coalesced.response() == "N");
    // The leader's complete wrote through (insert_async from the event loop's point of view).
    CHECK(eventually([&] { return a->lookup("new prompt", "scope-a").response() == "N"; }));
    // Without a tier: begin's answer, on this thread.
    llmfast::SemanticCache<llmfast::HashingEmbedder> plain({}, semantic_options());
    bool called = false;
    plain.begin_async("x", "s", [&](llmfast::SemanticCache<llmfast::HashingEmbedder>::Flight&& flight) {
        called = std::holds_alternative<llmfast::SemanticCache<llmfast::HashingEmbedder>::Leader>(flight);
    });
    CHECK(called);
}

TEST_CASE("shared cache: attach, replace and detach while other threads use the cache") {
    RedisServer server;
    Cache cache({}, semantic_options());
    std::atomic<bool> stop{false};
    std::vector<std::thread> users;
    for (int t = 0; t < 3; ++t) {
        users.emplace_back([&, t] {
            for (int i = 0; !stop.load(); ++i) {
                const std::string prompt = "p" + std::to_string(t) + "-" + std::to_string(i % 20);
                cache.insert(prompt, "s", "r");
                (void)cache.lookup(prompt + "?", "s");
                (void)cache.get_or_compute(prompt + "!", "s", [] { return std::string("c"); });
            }
        });
    }
    for (int round = 0; round < 5; ++round) {
        cache.attach_shared(make_tier(server.port()));
        CHECK(cache.shared_attached());
        std::this_thread::sleep_for(20ms);
        cache.attach_shared(nullptr);
        CHECK_FALSE(cache.shared_attached());
    }
    cache.attach_shared(make_tier(server.port()));
    stop = true;
    for (std::thread& u : users) u.join();
    CHECK(cache.stats().shared_writes + cache.stats().shared_write_failures > 0);
}

TEST_CASE("shared cache: destroying the cache that last owns the tier answers every async call once") {
    RedisServer server;
    std::atomic<int> answered{0};
    {
        Cache cache({}, semantic_options());
        cache.attach_shared(make_tier(server.port()));  // the cache is the tier's only owner
        cache.insert(k_prompt, "s", "ML");
        for (int i = 0; i < 200; ++i) {
            cache.lookup_async("prompt " + std::to_string(i), "s", [&answered](llmfast::LookupResult) { answered.fetch_add(1); });
        }
        cache.lookup_async(k_paraphrase, "s", [&answered](llmfast::LookupResult r) { answered.fetch_add(r.hit() ? 1 : 1000); });
    }
    // The tier's destructor ran inside the cache's: queued calls were answered (Unavailable, then the
    // local semantic tier) while the cache's members were still alive.
    CHECK(answered.load() == 201);
}

TEST_CASE("shared cache: embeddings travel with the entries; another embedder embeds locally") {
    RedisServer server;
    using CountingCache = llmfast::SemanticCache<CountingEmbedder, llmfast::FlatIndex, llmfast::WallClock, llmfast::LruPolicy,
                                                 llmfast::RedisTier>;
    CountingEmbedder same_a, same_b;
    CountingEmbedder other{llmfast::HashingEmbedder({.seed = 7}), std::make_shared<std::atomic<int>>(0)};
    REQUIRE(other.identity() != same_a.identity());
    CountingCache a(same_a, semantic_options());
    CountingCache b(same_b, semantic_options());
    CountingCache c(other, semantic_options());
    a.attach_shared(make_tier(server.port()));
    b.attach_shared(make_tier(server.port()));
    c.attach_shared(make_tier(server.port()));
    a.insert(k_prompt, "scope-a", "ML");
    a.insert("something else entirely", "scope-a", "other");
    REQUIRE(eventually([&] { return b.stats().shared_applied >= 2 && c.stats().shared_applied >= 2; }));
    CHECK(same_a.calls->load() == 2);  // A embedded its own two inserts
    CHECK(same_b.calls->load() == 0);  // B indexed A's vectors as they came
    CHECK(other.calls->load() == 2);   // C's embedder is another model: it embedded both prompts itself
    const llmfast::LookupResult similar = b.lookup(k_paraphrase, "scope-a");
    CHECK(similar.match == MatchKind::Semantic);
    CHECK(same_b.calls->load() == 1);  // the query only
    CHECK(c.lookup(k_paraphrase, "scope-a").hit());
}

TEST_CASE("shared cache: a replica whose stream position was trimmed counts the gap and rebuilds") {
    RedisServer server;
    llmfast::RedisTierOptions o = tier_options(server.port());
    o.stream_buckets = 1;
    o.stream_max_len = 10;  // MAXLEN ~ trims whole stream nodes (100 records by default)
    o.follow_batch = 10;
    auto a = std::make_unique<Cache>(llmfast::HashingEmbedder{}, semantic_options());
    a->attach_shared(std::make_shared<llmfast::RedisTier>(o));
    a->insert(k_prompt, "scope-a", "ML");
    for (int i = 0; i < 499; ++i) a->insert("filler " + std::to_string(i), "scope-a", "f");
    REQUIRE(eventually([&] { return a->stats().shared_writes >= 500; }));
    Cache b({}, semantic_options());
    b.attach_shared(std::make_shared<llmfast::RedisTier>(o));
    REQUIRE(eventually([&] { return b.size() == 500; }));
    CHECK(b.stats().shared_gaps == 1);
    CHECK(b.stats().shared_applied == 500);
    CHECK(b.lookup(k_paraphrase, "scope-a").match == MatchKind::Semantic);  // the rebuild carried the vectors
}

TEST_CASE("shared cache: lookups, inserts and the feed at once on two replicas") {
    RedisServer server;
    auto a = make_cache(server.port());
    auto b = make_cache(server.port());
    std::atomic<bool> stop{false};
    std::atomic<int> served_wrong{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t) {
        Cache& cache = t == 0 ? *a : *b;
        threads.emplace_back([&cache] {
            for (int i = 0; i < 300; ++i) cache.insert("prompt " + std::to_string(i % 50), "s", "answer " + std::to_string(i % 50));
        });
        threads.emplace_back([&cache, &stop, &served_wrong] {
            while (!stop.load()) {
                for (int i = 0; i < 50; ++i) {
                    const llmfast::LookupResult r = cache.lookup("prompt " + std::to_string(i), "s");
                    if (r.match == MatchKind::Exact && r.response() != "answer " + std::to_string(i)) served_wrong.fetch_add(1);
                }
                (void)cache.erase("prompt 7", "s");
            }
        });
    }
    threads[0].join();
    threads[2].join();
    stop = true;
    threads[1].join();
    threads[3].join();
    CHECK(served_wrong.load() == 0);
    CHECK(a->stats().shared_corrupt == 0);
    CHECK(b->stats().shared_corrupt == 0);
}

// ---- review: the order of one caller's writes (insert is written through asynchronously) ----

namespace {
// What Redis itself holds for (scope, prompt), read through a tier of its own (no feed, no cache).
llmfast::SharedLookup in_redis(llmfast::RedisTier& tier, std::string_view scope, std::string_view prompt) {
    return tier.lookup(scope, llmfast::detail::cache_key_hex(llmfast::detail::prompt_cache_key(scope, prompt)));
}
}  // namespace

TEST_CASE("shared cache: an erase right after an insert on the same thread is not undone by the queued write-through") {
    RedisServer server;
    auto a = make_cache(server.port(), {.semantic_tier = llmfast::SemanticTier::Off});
    constexpr int n = 200;
    for (int i = 0; i < n; ++i) {
        const std::string prompt = "erased prompt " + std::to_string(i);
        a->insert(prompt, "s", "stale");
        a->erase(prompt, "s");  // returns only after the tier applied (or failed) the erase
    }
    // Every write of `a` has been answered: n async inserts and n erases.
    REQUIRE(eventually([&] { return a->stats().shared_writes + a->stats().shared_write_failures >= 2 * n; }));
    llmfast::RedisTier reader(tier_options(server.port()));
    int resurrected = 0;
    for (int i = 0; i < n; ++i) {
        if (in_redis(reader, "s", "erased prompt " + std::to_string(i)).found()) ++resurrected;
    }
    CHECK(resurrected == 0);
    // And a replica that follows the stream from its start ends up without them either.
    auto c = make_cache(server.port(), {.semantic_tier = llmfast::SemanticTier::Off});
    // Its feed delivers the n tombstones (one stream: scope "s" is in one bucket), after whatever
    // insert records reached the stream.
    REQUIRE(eventually([&] { return c->stats().shared_tombstones_applied >= n; }));
    int served = 0;
    for (int i = 0; i < n; ++i) {
        if (c->lookup("erased prompt " + std::to_string(i), "s").hit()) ++served;
    }
    CHECK(served == 0);
}

TEST_CASE("shared cache: the later of two inserts of one prompt is what Redis keeps") {
    RedisServer server;
    auto a = make_cache(server.port(), {.semantic_tier = llmfast::SemanticTier::Off});
    constexpr int n = 200;
    for (int i = 0; i < n; ++i) {
        const std::string prompt = "rewritten prompt " + std::to_string(i);
        a->insert(prompt, "s", "old");
        a->insert(prompt, "s", "new");
    }
    REQUIRE(eventually([&] { return a->stats().shared_writes + a->stats().shared_write_failures >= 2 * n; }));
    REQUIRE(a->stats().shared_write_failures == 0);
    llmfast::RedisTier reader(tier_options(server.port()));
    int stale = 0;
    for (int i = 0; i < n; ++i) {
        const llmfast::SharedLookup found = in_redis(reader, "s", "rewritten prompt " + std::to_string(i));
        if (!found.found() || found.entry.response != "new") ++stale;
    }
    CHECK(stale == 0);
}

// ---- review: the verifier step with a shared tier ----

namespace {
// Gives every candidate the probability it is told to.
struct FixedVerifier {
    std::shared_ptr<std::atomic<double>> p = std::make_shared<std::atomic<double>>(0.99);
    double probability(std::string_view, std::string_view, float) const { return p->load(); }
};
using VerifiedSharedCache = llmfast::SemanticCache<llmfast::HashingEmbedder, llmfast::FlatIndex, llmfast::WallClock,
                                                   llmfast::LruPolicy, llmfast::RedisTier, FixedVerifier>;
}  // namespace

TEST_CASE("shared cache with a verifier: a shared hit is Exact (not verified), a semantic hit on a followed entry is") {
    RedisServer server;
    FixedVerifier verifier;
    VerifiedSharedCache a({}, semantic_options(), {}, verifier);
    VerifiedSharedCache b({}, semantic_options(), {}, verifier);
    a.attach_shared(make_tier(server.port()));
    b.attach_shared(make_tier(server.port()));
    a.insert(k_prompt, "s", "ML");
    a.insert("only exact", "s", "E");
    REQUIRE(eventually([&] { return b.stats().shared_applied >= 2; }));
    // A followed entry is verified like a local one: served at the verifier's probability...
    const llmfast::LookupResult semantic = b.lookup(k_paraphrase, "s");
    REQUIRE(semantic.match == MatchKind::Semantic);
    CHECK(semantic.response() == "ML");
    CHECK(semantic.verified_probability == Approx(0.99));
    CHECK(b.report(semantic, true));
    CHECK(b.stats().reported_hits == 1);
    // ... and rejected below the operating point (1 - δ = 0.95).
    verifier.p->store(0.5);
    CHECK_FALSE(b.lookup(k_paraphrase, "s"));
    CHECK(b.stats().verifier_rejections >= 1);
    // An entry of the shared tier served to a replica without a semantic tier (found in Redis, or
    // already applied from its feed) is Exact: nothing verified, nothing to report; and a's report
    // of b's hit is ignored.
    VerifiedSharedCache c({}, {.semantic_tier = llmfast::SemanticTier::Off}, {}, verifier);
    c.attach_shared(make_tier(server.port()));
    const llmfast::LookupResult exact = c.lookup("only exact", "s");
    REQUIRE(exact.response() == "E");
    CHECK(exact.match == MatchKind::Exact);
    CHECK(exact.verified_probability == 0.0);
    CHECK_FALSE(c.report(exact, false));
    CHECK_FALSE(a.report(semantic, false));
    CHECK(a.stats().reported_hits + c.stats().reported_hits == 0);
    CHECK(b.stats().reported_hits == 1);
}

// ---- review: an erase racing a shared lookup's local store ----

namespace {
// Holds its first embedding of "victim" after `arm()` until `release()`: the window between a shared
// lookup's GET and the local store of what it found (this embedder is not the writer's, so the
// entry's vector is not used and the prompt is embedded here).
struct GateEmbedder {
    struct Gate {
        std::mutex mutex;
        std::condition_variable changed;
        bool armed = false, entered = false, released = false;
    };
    std::shared_ptr<Gate> gate = std::make_shared<Gate>();
    std::size_t dimension() const { return 2; }
    void embed(std::string_view text, std::span<float> out) const {
        out[0] = 1.0F;
        out[1] = 0.0F;
        if (text != "victim") return;
        std::unique_lock lock(gate->mutex);
        if (!gate->armed) return;
        gate->armed = false;
        gate->entered = true;
        gate->changed.notify_all();
        gate->changed.wait_for(lock, 20s, [&] { return gate->released; });
    }
    void arm() const {
        std::lock_guard lock(gate->mutex);
        gate->armed = true;
    }
    bool wait_entered() const {
        std::unique_lock lock(gate->mutex);
        return gate->changed.wait_for(lock, 20s, [&] { return gate->entered; });
    }
    void release() const {
        {
            std::lock_guard lock(gate->mutex);
            gate->released = true;
        }
        gate->changed.notify_all();
    }
};
}  // namespace

TEST_CASE("shared cache: an erase while a shared lookup stores what it found does not leave the entry behind") {
    RedisServer server;
    auto a = make_cache(server.port());
    GateEmbedder gate;
    llmfast::SemanticCache<GateEmbedder, llmfast::FlatIndex, llmfast::WallClock, llmfast::LruPolicy, llmfast::RedisTier> b(gate, semantic_options());
    b.attach_shared(make_tier(server.port()));
    a->insert("victim", "s", "V");
    REQUIRE(eventually([&] { return a->stats().shared_writes >= 1 && b.stats().shared_applied >= 1; }));
    b.clear();  // local only: b's next lookup asks Redis
    gate.arm();
    llmfast::LookupResult during;
    std::thread looker([&] { during = b.lookup("victim", "s"); });  // GET found it; stores it (held in the embedder)
    const bool entered = gate.wait_entered();
    if (entered) {
        CHECK(a->erase("victim", "s"));
        // b's feed applied the tombstone while its lookup still held what the GET returned.
        CHECK(eventually([&] { return b.stats().shared_tombstones_applied >= 1; }));
    }
    gate.release();
    looker.join();
    REQUIRE(entered);
    CHECK((!during || during.response() == "V"));  // read before the erase: may be served once
    CHECK_FALSE(b.lookup("victim", "s"));           // but the erase happened: not kept
    CHECK(b.size() == 0);
}

TEST_CASE("shared cache: a shared lookup does not replace a newer local insert of the same prompt with what it read") {
    RedisServer server;
    auto a = make_cache(server.port());
    GateEmbedder gate;
    llmfast::SemanticCache<GateEmbedder, llmfast::FlatIndex, llmfast::WallClock, llmfast::LruPolicy, llmfast::RedisTier> b(gate, semantic_options());
    b.attach_shared(make_tier(server.port()));
    a->insert("victim", "s", "old");
    REQUIRE(eventually([&] { return a->stats().shared_writes >= 1 && b.stats().shared_applied >= 1; }));
    b.clear();  // local only: b's next lookup asks Redis
    gate.arm();
    llmfast::LookupResult during;
    std::thread looker([&] { during = b.lookup("victim", "s"); });  // GET found "old"; held before storing it
    const bool entered = gate.wait_entered();
    if (entered) {
        b.insert("victim", "s", "new");  // newer, stored locally and written through
        CHECK(eventually([&] { return b.stats().shared_writes >= 1; }));
    }
    gate.release();
    looker.join();
    REQUIRE(entered);
    CHECK(b.lookup("victim", "s").response() == "new");
    CHECK(eventually([&] { return a->lookup("victim", "s").response() == "new"; }));  // a follows it too
}
