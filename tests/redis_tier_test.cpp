// Tests of llmfast/redis_tier.hpp against a real redis-server, started by each test on a free
// loopback port (no persistence, a temporary directory) and always stopped (the server also dies
// with this process: PR_SET_PDEATHSIG). Missing redis-server: skipped locally, a failure under CI.
// No timed assertions: calls against a dead or stopped Redis must return and say Unavailable; how
// long they took is printed, not judged.
#include <llmfast/redis_tier.hpp>

#include "catch.hpp"
#include "support/redis_server.hpp"

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using llmfast_test::eventually;
using llmfast_test::RedisServer;
using llmfast_test::run_self_child;

namespace {

llmfast::RedisTierOptions options_for(const RedisServer& server) {
    llmfast::RedisTierOptions o;
    o.port = server.port();
    o.key_prefix = "test";
    // Sanitizer builds are slow; these are bounds, not expectations.
    o.connect_timeout = 200ms;
    o.command_timeout = 200ms;
    o.reconnect_backoff_min = 5ms;
    o.reconnect_backoff_max = 50ms;
    o.follow_block = 50ms;
    return o;
}

llmfast::SharedEntry make_entry(std::string scope, std::string key, std::string response,
                                std::chrono::nanoseconds ttl = std::chrono::hours(1)) {
    llmfast::SharedEntry e;
    e.scope = std::move(scope);
    e.key = std::move(key);
    e.prompt = "prompt of " + e.key;
    e.response = std::move(response);
    e.embedding = {0.6F, 0.8F, 0.0F};
    e.embedder = "test-embedder dim=3";
    e.created_ns = 1'700'000'000'000'000'000;
    e.ttl = ttl;
    return e;
}

// What a follower delivered, in order.
struct Recorder {
    std::mutex mutex;
    std::vector<llmfast::SharedChange> changes;
    void operator()(const llmfast::SharedChange& change) {
        std::lock_guard lock(mutex);
        changes.push_back(change);
    }
    std::size_t count(llmfast::SharedChange::Kind kind) {
        std::lock_guard lock(mutex);
        std::size_t n = 0;
        for (const auto& c : changes) n += c.kind == kind ? 1 : 0;
        return n;
    }
    std::set<std::string> inserted_keys() {
        std::lock_guard lock(mutex);
        std::set<std::string> keys;
        for (const auto& c : changes) {
            if (c.kind == llmfast::SharedChange::Kind::Insert) keys.insert(c.entry.key);
        }
        return keys;
    }
};

// The second process of the two-process test: this binary, re-executed with LLMFAST_REDIS_CHILD_PORT
// set, looks up the parent's entry and inserts its own, before Catch's main runs.
const int child_process_result = [] {
    const char* port = std::getenv("LLMFAST_REDIS_CHILD_PORT");
    if (port == nullptr) return 0;
    llmfast::RedisTierOptions o;
    o.port = std::atoi(port);
    o.key_prefix = "test";
    o.connect_timeout = 1s;
    o.command_timeout = 1s;
    llmfast::RedisTier tier(o);
    const llmfast::SharedLookup parent = tier.lookup("scope-a", "from-parent");
    if (!parent.found() || parent.entry.response != "written by the parent") std::_Exit(3);
    if (tier.insert(make_entry("scope-a", "from-child", "written by the child")) != llmfast::SharedStatus::Ok) std::_Exit(4);
    std::_Exit(0);
}();

}  // namespace

TEST_CASE("redis tier: options are validated, the URL is parsed") {
    const auto code_of = [](llmfast::RedisTierOptions o) {
        try {
            llmfast::RedisTier tier(std::move(o));
        } catch (const llmfast::Error& e) {
            return e.code();
        }
        return llmfast::ErrorCode::Ok;
    };
    CHECK(code_of({}) == llmfast::ErrorCode::Ok);
    CHECK(code_of({.port = 0}) == llmfast::ErrorCode::InvalidArgument);
    CHECK(code_of({.key_prefix = ""}) == llmfast::ErrorCode::InvalidArgument);
    CHECK(code_of({.key_prefix = "a{b"}) == llmfast::ErrorCode::InvalidArgument);
    CHECK(code_of({.command_timeout = 0ms}) == llmfast::ErrorCode::InvalidArgument);
    CHECK(code_of({.max_connections = 0}) == llmfast::ErrorCode::InvalidArgument);
    CHECK(code_of({.stream_buckets = 0}) == llmfast::ErrorCode::InvalidArgument);
    CHECK(code_of({.url = "http://x"}) == llmfast::ErrorCode::InvalidArgument);
    CHECK(code_of({.url = "redis://host:99999"}) == llmfast::ErrorCode::InvalidArgument);
    const auto at = llmfast::detail::redis_parse_url("redis://alice:s3cret@cache.internal:6380/2");
    CHECK(at.user == "alice");
    CHECK(at.password == "s3cret");
    CHECK(at.host == "cache.internal");
    CHECK(at.port == 6380);
    CHECK(at.db == 2);
    const auto v6 = llmfast::detail::redis_parse_url("redis://:pw@[::1]:7000");
    CHECK(v6.host == "::1");
    CHECK(v6.port == 7000);
    CHECK(v6.user.empty());
    CHECK(v6.password == "pw");
    CHECK(llmfast::detail::redis_parse_url("redis://localhost").port == 6379);
}

TEST_CASE("redis tier: keys of a scope share a hash tag with their bucket's stream") {
    llmfast::RedisTier tier({.key_prefix = "prod"});
    const std::string entry = tier.entry_key("gpt-4o|T=0", "abc");
    const std::string lock = tier.lock_key("gpt-4o|T=0", "abc");
    const std::string stream = tier.stream_key(tier.bucket_of("gpt-4o|T=0"));
    const auto tag = [](const std::string& key) { return key.substr(0, key.find('}') + 1); };
    CHECK(tag(entry) == tag(stream));
    CHECK(tag(lock) == tag(stream));
    CHECK(entry.rfind("{prod:", 0) == 0);
    CHECK(entry.size() > tag(entry).size());
}

TEST_CASE("redis tier: two tiers see each other's inserts; scope and key must match") {
    RedisServer server;
    llmfast::RedisTier a(options_for(server));
    llmfast::RedisTier b(options_for(server));
    const llmfast::SharedEntry entry = make_entry("scope-a", "k1", "answer one");
    REQUIRE(a.insert(entry) == llmfast::SharedStatus::Ok);
    const llmfast::SharedLookup found = b.lookup("scope-a", "k1");
    REQUIRE(found.found());
    CHECK(found.entry == entry);
    CHECK(b.lookup("scope-b", "k1").status == llmfast::SharedStatus::NotFound);
    CHECK(b.lookup("scope-a", "k2").status == llmfast::SharedStatus::NotFound);
    CHECK(b.erase("scope-a", "k1") == llmfast::SharedStatus::Ok);
    CHECK(a.lookup("scope-a", "k1").status == llmfast::SharedStatus::NotFound);
    CHECK(b.erase("scope-a", "k1") == llmfast::SharedStatus::NotFound);
    const llmfast::RedisTierStats stats = b.stats();
    CHECK(stats.hits == 1);
    CHECK(stats.misses == 2);
    CHECK(stats.unavailable == 0);
    CHECK(a.stats().inserts == 1);
}

TEST_CASE("redis tier: two processes see each other's inserts") {
    RedisServer server;
    llmfast::RedisTier tier(options_for(server));
    REQUIRE(tier.insert(make_entry("scope-a", "from-parent", "written by the parent")) == llmfast::SharedStatus::Ok);
    const std::optional<int> exit_code = run_self_child("LLMFAST_REDIS_CHILD_PORT", std::to_string(server.port()));
    REQUIRE(exit_code.has_value());
    CHECK(*exit_code == 0);
    const llmfast::SharedLookup found = tier.lookup("scope-a", "from-child");
    REQUIRE(found.found());
    CHECK(found.entry.response == "written by the child");
}

TEST_CASE("redis tier: TTL expiry is Redis's, seen by every tier") {
    RedisServer server;
    llmfast::RedisTier a(options_for(server));
    llmfast::RedisTier b(options_for(server));
    REQUIRE(a.insert(make_entry("s", "short", "soon gone", 300ms)) == llmfast::SharedStatus::Ok);
    REQUIRE(a.insert(make_entry("s", "long", "stays", std::chrono::hours(1))) == llmfast::SharedStatus::Ok);
    CHECK(eventually([&] { return b.lookup("s", "short").status == llmfast::SharedStatus::NotFound; }));
    CHECK(b.lookup("s", "long").found());
    auto raw = server.raw();
    const llmfast::RedisTier& t = a;
    raw->append({"PTTL", t.entry_key("s", "long")});
    auto pttl = raw->read();
    REQUIRE(pttl);
    CHECK(pttl->integer > 0);
}

TEST_CASE("redis tier: a late follower catches up from the stream, then follows inserts and tombstones") {
    RedisServer server;
    llmfast::RedisTier writer(options_for(server));
    for (int i = 0; i < 20; ++i) {
        REQUIRE(writer.insert(make_entry(i % 2 == 0 ? "even" : "odd", "k" + std::to_string(i), "r" + std::to_string(i))) ==
                llmfast::SharedStatus::Ok);
    }
    llmfast::RedisTier reader(options_for(server));
    Recorder recorder;
    llmfast::RedisFollower follower = reader.follow(std::ref(recorder));
    CHECK(eventually([&] { return recorder.inserted_keys().size() == 20; }));
    CHECK(eventually([&] { return follower.caught_up(); }));
    {
        std::lock_guard lock(recorder.mutex);
        for (const auto& change : recorder.changes) {
            if (change.kind != llmfast::SharedChange::Kind::Insert) continue;
            CHECK(change.entry.embedding == std::vector<float>{0.6F, 0.8F, 0.0F});  // embeddings travel with the entry
        }
    }
    REQUIRE(writer.insert(make_entry("odd", "late", "after the catch-up")) == llmfast::SharedStatus::Ok);
    CHECK(eventually([&] { return recorder.inserted_keys().count("late") == 1; }));
    REQUIRE(writer.erase("odd", "late") == llmfast::SharedStatus::Ok);
    CHECK(eventually([&] { return recorder.count(llmfast::SharedChange::Kind::Erase) == 1; }));
    REQUIRE(writer.purge_scope("even") == llmfast::SharedStatus::Ok);
    CHECK(eventually([&] { return recorder.count(llmfast::SharedChange::Kind::PurgeScope) == 1; }));
    CHECK(writer.lookup("even", "k0").status == llmfast::SharedStatus::NotFound);  // the purge removed it from Redis
    CHECK(writer.lookup("odd", "k1").found());                                      // another scope is untouched
    follower.stop();
    CHECK_FALSE(follower.running());
    CHECK(recorder.count(llmfast::SharedChange::Kind::Gap) == 0);
    CHECK(reader.stats().stream_records >= 23);
}

TEST_CASE("redis tier: a follower whose position was trimmed detects the gap and rebuilds from the entries") {
    RedisServer server;
    llmfast::RedisTierOptions o = options_for(server);
    o.stream_buckets = 1;
    o.stream_max_len = 10;  // MAXLEN ~ trims whole stream nodes (100 records by default)
    o.follow_batch = 10;
    llmfast::RedisTier writer(o);
    for (int i = 0; i < 500; ++i) REQUIRE(writer.insert(make_entry("s", "k" + std::to_string(i), "r")) == llmfast::SharedStatus::Ok);
    llmfast::RedisTier reader(o);
    Recorder recorder;
    llmfast::RedisFollower follower = reader.follow(std::ref(recorder));
    CHECK(eventually([&] { return recorder.count(llmfast::SharedChange::Kind::RebuildDone) == 1; }));
    CHECK(eventually([&] { return follower.caught_up(); }));
    CHECK(recorder.count(llmfast::SharedChange::Kind::Gap) == 1);
    CHECK(recorder.inserted_keys().size() == 500);  // every live entry, though the stream kept ~100
    CHECK(reader.stats().gaps == 1);
    CHECK(reader.stats().rebuilt_entries == 500);
    {
        std::lock_guard lock(recorder.mutex);
        for (const auto& change : recorder.changes) {
            if (change.kind == llmfast::SharedChange::Kind::RebuildDone) CHECK(change.complete);
        }
    }
    // The rebuild is bounded: past rebuild_max_entries it stops and says it is incomplete.
    llmfast::RedisTierOptions bounded_options = o;
    bounded_options.rebuild_max_entries = 100;
    llmfast::RedisTier bounded(bounded_options);
    Recorder partial;
    llmfast::RedisFollower bounded_follower = bounded.follow(std::ref(partial));
    CHECK(eventually([&] { return partial.count(llmfast::SharedChange::Kind::RebuildDone) == 1; }));
    CHECK(bounded.stats().rebuilt_entries == 100);
    std::lock_guard lock(partial.mutex);
    for (const auto& change : partial.changes) {
        if (change.kind == llmfast::SharedChange::Kind::RebuildDone) CHECK_FALSE(change.complete);
    }
}

TEST_CASE("redis tier: a corrupt or foreign value is a counted miss, never served") {
    RedisServer server;
    llmfast::RedisTier tier(options_for(server));
    auto raw = server.raw();
    raw->append({"SET", tier.entry_key("s", "garbage"), "not an llmfast value"});
    raw->append({"RPUSH", tier.entry_key("s", "a-list"), "x"});  // GET answers WRONGTYPE
    std::string damaged = llmfast::detail::encode_shared_entry(make_entry("s", "damaged", "r"));
    damaged[damaged.size() / 2] = static_cast<char>(damaged[damaged.size() / 2] ^ 1);
    raw->append({"SET", tier.entry_key("s", "damaged"), damaged});
    // A valid value of another key copied under this key's name.
    raw->append({"SET", tier.entry_key("s", "copied"), llmfast::detail::encode_shared_entry(make_entry("s", "elsewhere", "r"))});
    for (int i = 0; i < 4; ++i) REQUIRE(raw->read());
    for (const char* key : {"garbage", "a-list", "damaged", "copied"}) {
        INFO(key);
        CHECK(tier.lookup("s", key).status == llmfast::SharedStatus::NotFound);
    }
    CHECK(tier.stats().corrupt_values == 4);
    CHECK(tier.stats().hits == 0);
    // A foreign record on the stream is skipped (counted) by a follower; ours still arrive.
    raw->append({"XADD", tier.stream_key(tier.bucket_of("s")), "*", "foo", "bar"});
    REQUIRE(raw->read());
    REQUIRE(tier.insert(make_entry("s", "good", "r")) == llmfast::SharedStatus::Ok);
    Recorder recorder;
    llmfast::RedisFollower follower = tier.follow(std::ref(recorder));
    CHECK(eventually([&] { return recorder.inserted_keys().count("good") == 1; }));
    CHECK(tier.stats().corrupt_values == 5);
}

TEST_CASE("redis tier: AUTH with a password or an ACL user; refused commands are Unavailable, not misses") {
    // "default" needs the password; "alice" may touch only the keys of the prefix "team" (and the
    // commands a tier sends).
    RedisServer server({"--requirepass", "s3cret", "--user", "alice", "on", ">wonderland", "~{team:*", "+@all"});
    llmfast::RedisTierOptions o = options_for(server);
    {
        llmfast::RedisTier no_auth(o);
        CHECK(no_auth.lookup("s", "k").status == llmfast::SharedStatus::Unavailable);  // NOAUTH
        CHECK(no_auth.stats().corrupt_values == 0);
    }
    o.password = "s3cret";
    llmfast::RedisTier with_password(o);
    REQUIRE(with_password.insert(make_entry("s", "k", "r")) == llmfast::SharedStatus::Ok);
    CHECK(with_password.lookup("s", "k").found());

    llmfast::RedisTierOptions acl = options_for(server);
    acl.url = fmt::format("redis://alice:wonderland@127.0.0.1:{}", server.port());
    acl.key_prefix = "team";
    llmfast::RedisTier alice(acl);
    REQUIRE(alice.insert(make_entry("s", "k", "alice's")) == llmfast::SharedStatus::Ok);
    CHECK(alice.lookup("s", "k").entry.response == "alice's");
    acl.key_prefix = "test";  // the other deployment's keys: NOPERM
    llmfast::RedisTier intruder(acl);
    CHECK(intruder.lookup("s", "k").status == llmfast::SharedStatus::Unavailable);
    CHECK(intruder.insert(make_entry("s", "k", "poisoned")) == llmfast::SharedStatus::Unavailable);
    CHECK(with_password.lookup("s", "k").entry.response == "r");
}

TEST_CASE("redis tier: cross-replica lock") {
    RedisServer server;
    llmfast::RedisTier a(options_for(server));
    llmfast::RedisTier b(options_for(server));
    const llmfast::SharedLock first = a.try_lock("s", "k", 10s);
    REQUIRE(first.state == llmfast::SharedLock::State::Acquired);
    CHECK(b.try_lock("s", "k", 10s).state == llmfast::SharedLock::State::Held);
    // The holder inserts, then unlocks; the waiter's bounded wait finds the entry.
    REQUIRE(a.insert(make_entry("s", "k", "computed once")) == llmfast::SharedStatus::Ok);
    CHECK(b.wait_for_entry("s", "k", 5s).entry.response == "computed once");
    a.unlock(first);
    CHECK(a.try_lock("s", "k", 10s).state == llmfast::SharedLock::State::Acquired);
    const llmfast::SharedLock stale{llmfast::SharedLock::State::Acquired, "s", "k", "someone else's token"};
    a.unlock(stale);  // does not release another holder's lock
    CHECK(b.try_lock("s", "k", 10s).state == llmfast::SharedLock::State::Held);
    CHECK(a.stats().locks_acquired == 2);
    CHECK(b.stats().locks_held == 2);
}

TEST_CASE("redis tier: lookup_async completes on a worker thread") {
    RedisServer server;
    llmfast::RedisTier tier(options_for(server));
    REQUIRE(tier.insert(make_entry("s", "k", "async answer")) == llmfast::SharedStatus::Ok);
    std::atomic<int> calls{0};
    std::mutex mutex;
    std::string response;
    std::thread::id thread;
    tier.lookup_async("s", "k", [&](llmfast::SharedLookup found) {
        std::lock_guard lock(mutex);
        response = found.entry.response;
        thread = std::this_thread::get_id();
        calls.fetch_add(1);
    });
    CHECK(eventually([&] { return calls.load() == 1; }));
    {
        std::lock_guard lock(mutex);
        CHECK(response == "async answer");
        CHECK(thread != std::this_thread::get_id());
    }
    // The write-through form.
    std::atomic<int> stored{0};
    tier.insert_async(make_entry("s", "written async", "r"), [&](llmfast::SharedStatus status) {
        if (status == llmfast::SharedStatus::Ok) stored.fetch_add(1);
    });
    CHECK(eventually([&] { return stored.load() == 1; }));
    CHECK(tier.lookup("s", "written async").found());
    // An entry the codec rejects throws here, before anything is queued.
    llmfast::SharedEntry bad = make_entry("s", "bad", "r");
    bad.ttl = std::chrono::nanoseconds(0);
    CHECK_THROWS_AS(tier.insert_async(bad, [](llmfast::SharedStatus) {}), llmfast::Error);
}

TEST_CASE("redis tier: Redis killed, stopped or restarted: calls return Unavailable, then reconnect; the follower resumes") {
    RedisServer server;
    llmfast::RedisTierOptions o = options_for(server);
    o.command_timeout = 50ms;
    o.connect_timeout = 50ms;
    llmfast::RedisTier tier(o);
    Recorder recorder;
    llmfast::RedisTier follower_tier(o);
    llmfast::RedisFollower follower = follower_tier.follow(std::ref(recorder));
    REQUIRE(tier.insert(make_entry("s", "before", "r")) == llmfast::SharedStatus::Ok);
    REQUIRE(eventually([&] { return recorder.inserted_keys().count("before") == 1; }));

    const auto timed = [](auto call) {
        const auto start = std::chrono::steady_clock::now();
        auto status = call();
        const auto took = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
        return std::pair(status, took);
    };

    // Slow: the server stopped (SIGSTOP) — the socket timeout fires, the connection is dropped.
    server.pause();
    const auto [slow, slow_took] = timed([&] { return tier.lookup("s", "before").status; });
    CHECK(slow == llmfast::SharedStatus::Unavailable);
    std::printf("lookup against a stopped Redis: Unavailable after %lld us\n", static_cast<long long>(slow_took.count()));
    server.resume();
    CHECK(eventually([&] { return tier.lookup("s", "before").found(); }));

    // Gone: killed.
    server.kill();
    for (int i = 0; i < 20; ++i) {
        const auto [looked, took] = timed([&] { return tier.lookup("s", "before").status; });
        CHECK(looked == llmfast::SharedStatus::Unavailable);
        const auto [inserted, insert_took] = timed([&] { return tier.insert(make_entry("s", "during", "r")); });
        CHECK(inserted == llmfast::SharedStatus::Unavailable);
        if (i == 0) {
            std::printf("against a killed Redis: lookup Unavailable after %lld us, insert after %lld us\n",
                        static_cast<long long>(took.count()), static_cast<long long>(insert_took.count()));
        }
    }
    CHECK(tier.stats().unavailable >= 41);
    CHECK(tier.stats().dropped_connections >= 1);

    // Back, empty (no persistence): the tier reconnects, the follower resets and follows new inserts.
    server.start();
    CHECK(eventually([&] { return tier.insert(make_entry("s", "after", "r")) == llmfast::SharedStatus::Ok; }));
    CHECK(tier.lookup("s", "before").status == llmfast::SharedStatus::NotFound);  // Redis lost it
    CHECK(tier.stats().reconnects >= 1);
    CHECK(eventually([&] { return recorder.inserted_keys().count("after") == 1; }));
    CHECK(recorder.count(llmfast::SharedChange::Kind::Reset) >= 1);
    CHECK(follower_tier.stats().reconnects >= 1);
}

TEST_CASE("redis tier: concurrent callers share a small pool; every inserted key is found") {
    RedisServer server;
    llmfast::RedisTierOptions o = options_for(server);
    o.max_connections = 2;  // four threads: callers wait for a pooled connection
    o.command_timeout = 2s;
    llmfast::RedisTier tier(o);
    Recorder recorder;
    llmfast::RedisTier follower_tier(options_for(server));
    llmfast::RedisFollower follower = follower_tier.follow(std::ref(recorder));
    std::atomic<int> not_found{0}, ok{0}, unavailable{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 100; ++i) {
                const std::string key = std::to_string(t) + "-" + std::to_string(i);
                if (tier.insert(make_entry("c", key, key)) != llmfast::SharedStatus::Ok) {
                    unavailable.fetch_add(1);
                    continue;
                }
                const llmfast::SharedLookup found = tier.lookup("c", key);
                if (found.status == llmfast::SharedStatus::NotFound) not_found.fetch_add(1);
                if (found.found() && found.entry.response == key) ok.fetch_add(1);
                if (found.status == llmfast::SharedStatus::Unavailable) unavailable.fetch_add(1);
            }
        });
    }
    for (std::thread& thread : threads) thread.join();
    CHECK(not_found.load() == 0);
    CHECK(ok.load() + unavailable.load() == 400);
    CHECK(ok.load() > 0);
    CHECK(eventually([&] { return recorder.inserted_keys().size() == static_cast<std::size_t>(ok.load()); }));
    CHECK(tier.stats().connects <= 2);
}

TEST_CASE("redis tier: lookup_async calls each complete exactly once, also when the tier is destroyed with calls queued") {
    RedisServer server;
    llmfast::RedisTierOptions o = options_for(server);
    o.async_threads = 1;
    o.async_queue = 8;
    o.command_timeout = 100ms;
    std::atomic<int> calls{0}, unavailable{0};
    {
        llmfast::RedisTier tier(o);
        REQUIRE(tier.insert(make_entry("s", "k", "r")) == llmfast::SharedStatus::Ok);
        server.pause();  // the worker's first call waits for its timeout; the rest queue up
        for (int i = 0; i < 20; ++i) {
            tier.lookup_async("s", "k", [&](llmfast::SharedLookup found) {
                if (found.status == llmfast::SharedStatus::Unavailable) unavailable.fetch_add(1);
                calls.fetch_add(1);
            });
        }
        CHECK(tier.stats().async_rejected >= 11);  // at most 8 queued + 1 running
    }  // destroyed: queued calls are answered Unavailable
    server.resume();
    CHECK(calls.load() == 20);
    CHECK(unavailable.load() == 20);
}
