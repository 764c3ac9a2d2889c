// llmfast/redis_tier.hpp — `RedisTier`, a shared tier (llmfast/shared_tier.hpp) on Redis: N replicas
// of a gateway share one cache's entries through a Redis they already run, each keeping its local
// exact tier and its local vector index, which follows Redis's change stream (`follow`).
// Optional component `redis` (CMake target llmfast::redis), needs hiredis (0.14 or 1.x); not part of
// the umbrella header or the single header.
//
//     llmfast::RedisTier redis({.host = "127.0.0.1", .port = 6379, .key_prefix = "prod-eu"});
//     redis.insert(entry);                                    // SET PX + XADD, one round trip
//     llmfast::SharedLookup found = redis.lookup(scope, key); // one GET: Ok / NotFound / Unavailable
//     auto feed = redis.follow([&](const llmfast::SharedChange& change) { /* update the local index */ });
//
// Key layout (hash tags, so every key of a scope shares one Redis Cluster slot with its stream):
//   entry  {<prefix>:<bucket>}:e:<scope hash>:<key>   the encoded SharedEntry, native expiry (PX)
//   stream {<prefix>:<bucket>}:s                      inserts and tombstones, MAXLEN ~ stream_max_len
//   lock   {<prefix>:<bucket>}:l:<scope hash>:<key>   SET NX PX, the cross-replica single flight
// <scope hash> is 16 hex digits of xxHash3 of the scope (a scope can be long and may contain the
// braces a hash tag ends at; the value repeats the scope and key, and a lookup checks both, so a hash
// collision is a miss, never a wrong answer); <bucket> = scope hash % stream_buckets.
// One stream per scope bucket, not one global stream and not one per scope: a global stream would
// live in another slot than the entry, so an insert (SET + XADD) would need two slots on a cluster;
// one stream per scope would leave followers an unbounded, changing set of streams to read. With
// buckets, an insert touches one slot, and a follower reads a fixed set of streams in one XREAD.
//
// Time bounds: every call of the request path (lookup, insert, erase, try_lock) waits at most about
// `command_timeout` for a pooled connection and for each socket read or write (plus `connect_timeout`
// when it has to open a connection), and returns Unavailable — never throws — when Redis is down,
// slow or restarting. A blocking insert, erase or purge_scope of a key whose async insert a worker
// is writing waits for it first (one caller's writes of a key stay in order), at most about
// `connect_timeout` + 4 × `command_timeout` more. A timed-out connection is dead in hiredis 0.14 and is dropped; after
// `failures_before_backoff` failures in a row new connections are attempted only after a backoff
// (doubling from `reconnect_backoff_min` to `reconnect_backoff_max`; Unavailable at once meanwhile,
// then one call probes). Everything is counted in `stats()`.
// `purge_scope` enumerates the scope's keys (SCAN): administrative, not for the request path.
//
// Redis Cluster: the key layout is ready for it (no request-path command spans two slots), but
// RedisTier talks to one Redis endpoint and does not follow MOVED/ASK redirections; the follower's
// XREAD names every bucket's stream, which a cluster would split by node.
//
// Security: a shared cache is shared by everyone who can reach that Redis with those credentials; the
// key prefix separates deployments, the scope separates tenants. Use AUTH (`password`, and `user`
// for an ACL user) and a network only the replicas reach; hiredis 0.14 has no TLS.
//
// Thread-safety: every member function may be called concurrently (a pool of connections, one per
// call in flight). A follower (`follow`) runs on its own thread with its own connection and calls its
// callback there; the RedisTier must outlive its followers. `lookup_async` and `insert_async`
// complete on one of the tier's worker threads (or on the calling thread, Unavailable, when the
// queue is full); calls still queued when the tier is destroyed are answered Unavailable.
//
// Errors: the constructor throws Error(InvalidArgument) for invalid options (the message names the
// field) or a malformed `url`; `insert` throws Error(InvalidArgument) for an entry the value codec
// rejects (ttl <= 0, bad chunk boundaries, a non-finite embedding); nothing else throws for Redis's
// sake (std::bad_alloc aside).
#pragma once

#include <llmfast/version.hpp>
#include <llmfast/detail/shared_entry_codec.hpp>
#include <llmfast/detail/xxhash.hpp>
#include <llmfast/error.hpp>
#include <llmfast/shared_tier.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <vector>

#include <cerrno>
#include <csignal>
#include <ctime>
#include <poll.h>
#include <pthread.h>
#include <sys/time.h>

#include <fmt/format.h>
#include <hiredis/hiredis.h>

LLMFAST_BEGIN_NAMESPACE

struct RedisTierOptions {
    std::string host = "127.0.0.1";
    int port = 6379;
    /// "redis://[[user]:password@]host[:port][/db]"; when set it replaces host, port, user, password, db.
    std::string url{};
    std::string user{};    ///< ACL user (AUTH user password); empty: AUTH password (requirepass)
    std::string password{};  ///< empty: no AUTH
    int db = 0;            ///< SELECT db (>= 0)
    /// Every key starts with it (one Redis, several deployments); no braces, not empty.
    std::string key_prefix = "llmfast";
    std::chrono::microseconds connect_timeout = std::chrono::milliseconds(4);  ///< > 0
    std::chrono::microseconds command_timeout = std::chrono::milliseconds(4);  ///< > 0: the wait for each reply, for each socket write, and for a pooled connection
    std::size_t max_connections = 8;                 ///< request-path connections (>= 1)
    std::chrono::milliseconds reconnect_backoff_min{10};   ///< > 0
    std::chrono::milliseconds reconnect_backoff_max{1000}; ///< >= reconnect_backoff_min
    std::size_t failures_before_backoff = 2;         ///< consecutive failed calls that start the backoff (>= 1)
    std::size_t stream_buckets = 16;                 ///< streams (and hash slots) the scopes are spread over, in [1, 1024]
    std::size_t stream_max_len = 100'000;            ///< XADD MAXLEN ~ (>= 1): each record holds an encoded entry
    std::chrono::milliseconds follow_block{100};     ///< a follower's XREAD BLOCK, so `stop` returns within about this (> 0)
    std::size_t follow_batch = 256;                  ///< XREAD COUNT (>= 1, <= stream_max_len)
    std::size_t rebuild_max_entries = 1'000'000;     ///< a follower's rebuild after a gap replays at most this many entries (>= 1)
    std::size_t async_threads = 2;                   ///< worker threads of `lookup_async` / `insert_async` (>= 1; started on first use)
    std::size_t async_queue = 4096;                  ///< queued async calls before they are answered Unavailable (>= 1)
};

/// A snapshot of RedisTier's counters (`stats()`).
struct RedisTierStats {
    std::uint64_t lookups = 0, hits = 0, misses = 0;
    std::uint64_t unavailable = 0;      ///< calls answered Unavailable (down, slow, backoff, pool exhausted)
    std::uint64_t corrupt_values = 0;   ///< values that did not parse or were of another scope/key: misses, never served
    std::uint64_t inserts = 0, erases = 0, purges = 0;
    std::uint64_t connects = 0;             ///< connections opened (request path and followers)
    std::uint64_t connect_failures = 0;     ///< connection attempts that failed
    std::uint64_t dropped_connections = 0;  ///< connections dropped after an I/O error or timeout
    std::uint64_t reconnects = 0;           ///< connections opened after a failure (Redis back)
    std::uint64_t async_rejected = 0;       ///< lookup_async / insert_async calls answered Unavailable because the queue was full
    std::uint64_t locks_acquired = 0, locks_held = 0;
    std::uint64_t stream_records = 0;   ///< change records delivered by followers
    std::uint64_t gaps = 0;             ///< a follower's position was trimmed from the stream
    std::uint64_t rebuilt_entries = 0;  ///< entries replayed after gaps
    std::uint64_t resets = 0;           ///< a follower found the stream younger than its position (Redis lost its data)
    /// The last request-path call that used a connection reached Redis (false before the first one,
    /// and from a failed call until one succeeds again: Redis down, slow, or the tier backing off).
    bool connected = false;
};

namespace detail {

// Blocks SIGPIPE on this thread while hiredis writes (a write to a connection Redis closed would
// otherwise kill the process: hiredis uses write(), not send(MSG_NOSIGNAL)), then swallows the
// SIGPIPE that write raised, leaving one that was pending before untouched. Process-wide signal
// handling stays the application's.
class RedisSigpipeGuard {
public:
    RedisSigpipeGuard() noexcept {
        sigemptyset(&pipe_);
        sigaddset(&pipe_, SIGPIPE);
        sigset_t pending;
        sigemptyset(&pending);
        sigpending(&pending);
        was_pending_ = sigismember(&pending, SIGPIPE) == 1;
        pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
    }
    ~RedisSigpipeGuard() {
        if (!was_pending_) {
            sigset_t pending;
            sigemptyset(&pending);
            sigpending(&pending);
            if (sigismember(&pending, SIGPIPE) == 1) {
                const timespec zero{0, 0};
                while (sigtimedwait(&pipe_, nullptr, &zero) > 0) {
                }
            }
        }
        pthread_sigmask(SIG_SETMASK, &old_, nullptr);
    }
    RedisSigpipeGuard(const RedisSigpipeGuard&) = delete;
    RedisSigpipeGuard& operator=(const RedisSigpipeGuard&) = delete;

private:
    sigset_t pipe_{}, old_{};
    bool was_pending_ = false;
};

struct RedisReplyDeleter {
    void operator()(redisReply* reply) const noexcept { freeReplyObject(reply); }
};
using RedisReply = std::unique_ptr<redisReply, RedisReplyDeleter>;

struct RedisContextDeleter {
    void operator()(redisContext* context) const noexcept { redisFree(context); }
};

inline timeval redis_timeval(std::chrono::microseconds t) noexcept {
    timeval tv{};
    tv.tv_sec = static_cast<decltype(tv.tv_sec)>(t.count() / 1'000'000);
    tv.tv_usec = static_cast<decltype(tv.tv_usec)>(t.count() % 1'000'000);
    return tv;
}

inline std::string_view redis_str(const redisReply* r) noexcept {
    return (r != nullptr && r->str != nullptr) ? std::string_view(r->str, static_cast<std::size_t>(r->len)) : std::string_view();
}

/// One hiredis connection: commands are appended (buffered, no I/O) and their replies read in order,
/// so a pipeline is N appends + N reads, one round trip. Any I/O error or timeout marks it dead.
class RedisConnection {
public:
    struct Endpoint {
        std::string host{}, user{}, password{};
        int port = 6379;
        int db = 0;
    };

    /// Connects (within `connect_timeout`), authenticates and selects the db; nullptr on failure.
    static std::unique_ptr<RedisConnection> open(const Endpoint& at, std::chrono::microseconds connect_timeout,
                                                 std::chrono::microseconds command_timeout) {
        std::unique_ptr<redisContext, RedisContextDeleter> context(
            redisConnectWithTimeout(at.host.c_str(), at.port, redis_timeval(connect_timeout)));
        if (!context || context->err != 0) return nullptr;
        auto connection = std::unique_ptr<RedisConnection>(new RedisConnection(std::move(context)));
        if (!connection->set_timeout(command_timeout)) return nullptr;  // SO_RCVTIMEO/SNDTIMEO: the writes' bound
        if (!at.password.empty()) {
            if (at.user.empty()) {
                connection->append({"AUTH", at.password});
            } else {
                connection->append({"AUTH", at.user, at.password});
            }
            RedisReply reply = connection->read();
            if (!reply || reply->type == REDIS_REPLY_ERROR) return nullptr;
        }
        if (at.db != 0) {
            const std::string db = fmt::format("{}", at.db);
            connection->append({"SELECT", db});
            RedisReply reply = connection->read();
            if (!reply || reply->type == REDIS_REPLY_ERROR) return nullptr;
        }
        return connection;
    }

    void append(std::span<const std::string_view> args) {
        if (dead_) return;
        argv_.clear();
        lengths_.clear();
        for (const std::string_view a : args) {
            argv_.push_back(a.data());
            lengths_.push_back(a.size());
        }
        if (redisAppendCommandArgv(context_.get(), static_cast<int>(args.size()), argv_.data(), lengths_.data()) != REDIS_OK) {
            dead_ = true;
        }
    }
    void append(std::initializer_list<std::string_view> args) { append(std::span<const std::string_view>(args.begin(), args.size())); }

    /// The next reply (writing what is buffered first), waiting at most the timeout for it; nullptr
    /// when the connection died or timed out. The wait is poll()'s, not the socket timeout's: Linux
    /// rounds SO_RCVTIMEO up to whole scheduler ticks (5 ms became 9 ms here).
    RedisReply read() {
        if (dead_) return nullptr;
        RedisSigpipeGuard guard;
        redisContext* c = context_.get();
        int written = 0;
        while (written == 0) {
            if (redisBufferWrite(c, &written) != REDIS_OK) return die();
        }
        const auto until = std::chrono::steady_clock::now() + timeout_;
        for (;;) {
            void* reply = nullptr;
            if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) return die();
            if (reply != nullptr) return RedisReply(static_cast<redisReply*>(reply));
            const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(until - std::chrono::steady_clock::now());
            if (left <= std::chrono::nanoseconds::zero()) return die();
            pollfd ready{c->fd, POLLIN, 0};
            const timespec wait{static_cast<std::time_t>(left.count() / 1'000'000'000), static_cast<long>(left.count() % 1'000'000'000)};
            const int n = ::ppoll(&ready, 1, &wait, nullptr);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return die();  // timed out (or poll failed)
            if (redisBufferRead(c) != REDIS_OK) return die();
        }
    }

    bool set_timeout(std::chrono::microseconds timeout) {
        timeout_ = timeout;
        if (redisSetTimeout(context_.get(), redis_timeval(timeout)) != REDIS_OK) dead_ = true;
        return !dead_;
    }

    [[nodiscard]] bool dead() const noexcept { return dead_ || context_->err != 0; }

private:
    explicit RedisConnection(std::unique_ptr<redisContext, RedisContextDeleter> context) : context_(std::move(context)) {}

    std::unique_ptr<redisContext, RedisContextDeleter> context_;
    std::vector<const char*> argv_;
    std::vector<std::size_t> lengths_;
    std::chrono::microseconds timeout_{0};
    bool dead_ = false;

    RedisReply die() noexcept {
        dead_ = true;
        return nullptr;
    }
};

/// A stream entry id "ms-seq", compared numerically.
struct RedisStreamId {
    std::uint64_t ms = 0, seq = 0;
    static std::optional<RedisStreamId> parse(std::string_view s) noexcept {
        RedisStreamId id;
        const std::size_t dash = s.find('-');
        const auto number = [](std::string_view digits, std::uint64_t& out) {
            if (digits.empty() || digits.size() > 20) return false;
            out = 0;
            for (const char c : digits) {
                if (c < '0' || c > '9') return false;
                out = out * 10 + static_cast<std::uint64_t>(c - '0');
            }
            return true;
        };
        if (dash == std::string_view::npos) return number(s, id.ms) ? std::optional(id) : std::nullopt;
        if (!number(s.substr(0, dash), id.ms) || !number(s.substr(dash + 1), id.seq)) return std::nullopt;
        return id;
    }
    [[nodiscard]] std::string str() const { return fmt::format("{}-{}", ms, seq); }
    friend auto operator<=>(const RedisStreamId&, const RedisStreamId&) = default;
};

/// Escapes Redis glob characters (SCAN MATCH) in a literal.
inline std::string redis_glob_escape(std::string_view literal) {
    std::string out;
    for (const char c : literal) {
        if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out.push_back('\\');
        out.push_back(c);
    }
    return out;
}

inline RedisConnection::Endpoint redis_parse_url(std::string_view url) {
    constexpr std::string_view scheme = "redis://";
    const auto bad = [&](std::string_view why) {
        return Error(ErrorCode::InvalidArgument, fmt::format("RedisTierOptions::url: {} ('{}')", why, url));
    };
    if (url.substr(0, scheme.size()) != scheme) throw bad("must start with redis:// (hiredis 0.14 has no TLS for rediss://)");
    std::string_view rest = url.substr(scheme.size());
    RedisConnection::Endpoint at;
    if (const std::size_t at_sign = rest.rfind('@'); at_sign != std::string_view::npos) {
        const std::string_view credentials = rest.substr(0, at_sign);
        rest = rest.substr(at_sign + 1);
        const std::size_t colon = credentials.find(':');
        if (colon == std::string_view::npos) {
            at.password = std::string(credentials);
        } else {
            at.user = std::string(credentials.substr(0, colon));
            at.password = std::string(credentials.substr(colon + 1));
        }
    }
    std::string_view host_port = rest;
    if (const std::size_t slash = rest.find('/'); slash != std::string_view::npos) {
        host_port = rest.substr(0, slash);
        const std::string_view db = rest.substr(slash + 1);
        if (!db.empty()) {
            const auto id = RedisStreamId::parse(db);
            if (!id || db.find('-') != std::string_view::npos || id->ms > 1'000'000) throw bad("the database must be a number");
            at.db = static_cast<int>(id->ms);
        }
    }
    // host, host:port, [v6], [v6]:port
    std::size_t colon = std::string_view::npos;
    if (!host_port.empty() && host_port.front() == '[') {
        const std::size_t close = host_port.find(']');
        if (close == std::string_view::npos) throw bad("unterminated [ in the host");
        if (close + 1 < host_port.size()) {
            if (host_port[close + 1] != ':') throw bad("junk after the host");
            colon = close + 1;
        }
    } else {
        colon = host_port.rfind(':');
    }
    if (colon != std::string_view::npos) {
        const std::string_view port = host_port.substr(colon + 1);
        const auto number = RedisStreamId::parse(port);
        if (!number || port.find('-') != std::string_view::npos || number->ms == 0 || number->ms > 65535) throw bad("the port must be in [1, 65535]");
        at.port = static_cast<int>(number->ms);
        host_port = host_port.substr(0, colon);
    }
    if (host_port.size() >= 2 && host_port.front() == '[' && host_port.back() == ']') host_port = host_port.substr(1, host_port.size() - 2);
    if (host_port.empty()) throw bad("no host");
    at.host = std::string(host_port);
    return at;
}

}  // namespace detail

class RedisTier;

/// A running change feed of a RedisTier (from `RedisTier::follow`): its own thread and connection,
/// delivering every stream record to the callback. Move-only; `stop()` or destruction stops it
/// (returns within about `follow_block` + `command_timeout`). The RedisTier must outlive it.
class RedisFollower {
public:
    RedisFollower() = default;
    RedisFollower(RedisFollower&&) noexcept = default;
    RedisFollower& operator=(RedisFollower&& other) noexcept {
        if (this != &other) {
            stop();
            state_ = std::move(other.state_);
            thread_ = std::move(other.thread_);
        }
        return *this;
    }
    RedisFollower(const RedisFollower&) = delete;
    RedisFollower& operator=(const RedisFollower&) = delete;
    ~RedisFollower() { stop(); }

    [[nodiscard]] bool running() const noexcept { return thread_.joinable(); }

    /// True once the feed has read every stream up to its end at least once since it started (or
    /// since its last reconnect, Reset or rebuild): the local index then holds what Redis held.
    [[nodiscard]] bool caught_up() const noexcept { return state_ && state_->caught_up.load(std::memory_order_acquire); }

    /// Stops the thread and waits for it. Idempotent.
    void stop() noexcept {
        if (!state_) return;
        {
            std::lock_guard lock(state_->mutex);
            state_->stopping = true;
        }
        state_->wake.notify_all();
        if (thread_.joinable()) thread_.join();
        state_.reset();
    }

private:
    friend class RedisTier;
    struct State {
        mutable std::mutex mutex;
        std::condition_variable wake;
        bool stopping = false;
        std::atomic<bool> caught_up{false};
    };
    std::shared_ptr<State> state_;
    std::thread thread_;
};

/// The shared tier on Redis (see the header comment). Models SharedTier with every optional part.
/// Thread-safety: every member function may be called concurrently.
class RedisTier {
public:
    using Options = RedisTierOptions;

    explicit RedisTier(Options options = {}) : options_(validated(std::move(options))), endpoint_(endpoint_of(options_)) {}
    RedisTier(const RedisTier&) = delete;
    RedisTier& operator=(const RedisTier&) = delete;
    ~RedisTier() { stop_async(); }

    [[nodiscard]] const Options& options() const noexcept { return options_; }

    // ---- keys ----
    [[nodiscard]] std::uint64_t scope_hash(std::string_view scope) const noexcept { return detail::xxh3_64(scope, 0x5245444953ULL); }
    [[nodiscard]] std::size_t bucket_of(std::string_view scope) const noexcept {
        return static_cast<std::size_t>(scope_hash(scope) % options_.stream_buckets);
    }
    [[nodiscard]] std::string stream_key(std::size_t bucket) const { return fmt::format("{{{}:{}}}:s", options_.key_prefix, bucket); }
    [[nodiscard]] std::string entry_key(std::string_view scope, std::string_view key) const {
        return fmt::format("{{{}:{}}}:e:{:016x}:{}", options_.key_prefix, bucket_of(scope), scope_hash(scope), key);
    }
    [[nodiscard]] std::string lock_key(std::string_view scope, std::string_view key) const {
        return fmt::format("{{{}:{}}}:l:{:016x}:{}", options_.key_prefix, bucket_of(scope), scope_hash(scope), key);
    }

    // ---- SharedTier ----

    /// One GET. Ok with the entry; NotFound (also for a value that is not ours: counted in
    /// corrupt_values); Unavailable within the time bound when Redis does not answer.
    SharedLookup lookup(std::string_view scope, std::string_view key) {
        counters_.lookups.fetch_add(1, std::memory_order_relaxed);
        SharedLookup result;
        const std::string name = entry_key(scope, key);
        detail::RedisReply reply = run({"GET", name});
        if (!reply) {
            result.status = SharedStatus::Unavailable;
            return result;
        }
        if (reply->type == REDIS_REPLY_NIL) {
            counters_.misses.fetch_add(1, std::memory_order_relaxed);
            result.status = SharedStatus::NotFound;
            return result;
        }
        if (reply->type == REDIS_REPLY_ERROR && detail::redis_str(reply.get()).substr(0, 9) != "WRONGTYPE") {
            // LOADING (a restart reading its AOF), NOAUTH, NOPERM, OOM...: Redis did not answer the question.
            result.status = unavailable();
            return result;
        }
        detail::SharedDecodeResult decoded;
        if (reply->type == REDIS_REPLY_STRING) decoded = detail::decode_shared_entry(detail::redis_str(reply.get()));
        if (!decoded.ok() || decoded.entry.scope != scope || decoded.entry.key != key) {
            // WRONGTYPE (a foreign key of another type), another version, damage, a hash collision.
            counters_.corrupt_values.fetch_add(1, std::memory_order_relaxed);
            counters_.misses.fetch_add(1, std::memory_order_relaxed);
            result.status = SharedStatus::NotFound;
            return result;
        }
        counters_.hits.fetch_add(1, std::memory_order_relaxed);
        result.status = SharedStatus::Ok;
        result.entry = std::move(decoded.entry);
        return result;
    }

    /// SET key value PX ttl + XADD stream MAXLEN ~ cap, pipelined: one round trip. Ok when both were
    /// applied; Unavailable otherwise. Throws Error(InvalidArgument) for an entry the codec rejects.
    SharedStatus insert(const SharedEntry& entry) {
        std::string value = detail::encode_shared_entry(entry);
        const std::string name = entry_key(entry.scope, entry.key);
        after_async_writes([&](std::string_view queued) { return queued == name; });
        return insert_value(entry.scope, entry.key, entry.ttl, value);
    }

    /// DEL + an erase tombstone on the stream (every follower drops its copy), one round trip. Ok when
    /// the key existed, NotFound when not, Unavailable.
    SharedStatus erase(std::string_view scope, std::string_view key) {
        const std::string name = entry_key(scope, key);
        const std::string stream = stream_key(bucket_of(scope));
        const std::string cap = fmt::format("{}", options_.stream_max_len);
        after_async_writes([&](std::string_view queued) { return queued == name; });
        Lease lease = acquire();
        if (!lease) return unavailable();
        lease->append({"DEL", name});
        lease->append({"XADD", stream, "MAXLEN", "~", cap, "*", "t", "e", "s", scope, "k", key});
        detail::RedisReply del = lease->read();
        detail::RedisReply add = lease->read();
        const bool ok = del && add && del->type == REDIS_REPLY_INTEGER && add->type != REDIS_REPLY_ERROR;
        const bool existed = ok && del->integer > 0;
        release(std::move(lease));
        if (!ok) return unavailable();
        counters_.erases.fetch_add(1, std::memory_order_relaxed);
        return existed ? SharedStatus::Ok : SharedStatus::NotFound;
    }

    /// A purge tombstone on the stream (every follower drops the scope), then UNLINK of the scope's
    /// keys, enumerated with SCAN in the scope's slot. Several round trips: administrative, not for
    /// the request path. Ok, or Unavailable when Redis failed part way (the tombstone may be out).
    SharedStatus purge_scope(std::string_view scope) {
        const std::size_t bucket = bucket_of(scope);
        const std::string stream = stream_key(bucket);
        const std::string cap = fmt::format("{}", options_.stream_max_len);
        const std::string prefix = entry_key(scope, "");
        const std::string pattern = fmt::format("{}*", detail::redis_glob_escape(prefix));
        after_async_writes([&](std::string_view queued) { return queued.substr(0, prefix.size()) == prefix; });
        Lease lease = acquire();
        if (!lease) return unavailable();
        lease->append({"XADD", stream, "MAXLEN", "~", cap, "*", "t", "p", "s", scope});
        detail::RedisReply add = lease->read();
        bool ok = add && add->type != REDIS_REPLY_ERROR;
        std::string cursor = "0";
        while (ok) {
            lease->append({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"});
            detail::RedisReply page = lease->read();
            if (!page || page->type != REDIS_REPLY_ARRAY || page->elements != 2 || page->element[1]->type != REDIS_REPLY_ARRAY) {
                ok = false;
                break;
            }
            cursor = std::string(detail::redis_str(page->element[0]));
            const redisReply* keys = page->element[1];
            if (keys->elements > 0) {
                std::vector<std::string_view> args{"UNLINK"};
                for (std::size_t i = 0; i < keys->elements; ++i) args.push_back(detail::redis_str(keys->element[i]));
                lease->append(std::span<const std::string_view>(args));
                detail::RedisReply unlinked = lease->read();
                if (!unlinked || unlinked->type == REDIS_REPLY_ERROR) ok = false;
            }
            if (cursor == "0") break;
        }
        release(std::move(lease));
        if (!ok) return unavailable();
        counters_.purges.fetch_add(1, std::memory_order_relaxed);
        return SharedStatus::Ok;
    }

    /// `lookup` on one of the tier's worker threads; `done(SharedLookup)` runs there exactly once (on
    /// this thread, Unavailable, when `async_queue` calls are already waiting; and Unavailable for
    /// calls still queued when the tier is destroyed). `done` must not throw.
    template <class F>
        requires std::invocable<std::decay_t<F>&, SharedLookup> && std::constructible_from<std::decay_t<F>, F>
    void lookup_async(std::string_view scope, std::string_view key, F&& done) {
        auto task = [this, scope_copy = std::string(scope), key_copy = std::string(key),
                     callback = std::decay_t<F>(std::forward<F>(done))](AsyncRun run) mutable {
            if (run != AsyncRun::Run) {
                unavailable();
                SharedLookup result;
                result.status = SharedStatus::Unavailable;
                std::invoke(callback, std::move(result));
            } else {
                std::invoke(callback, lookup(scope_copy, key_copy));
            }
        };
        enqueue({}, std::move(task));
    }

    /// `insert` on one of the tier's worker threads (the write-through of a caller that must not
    /// block, e.g. an event loop); `done(SharedStatus)` runs there exactly once, or on this thread
    /// (Unavailable) when the queue is full. The entry is encoded here first, so an entry the codec
    /// rejects throws Error(InvalidArgument) from this call (and `done` is not called). `done` must
    /// not throw. Writes of one key reach Redis in the order they were made: the workers run one
    /// write of a key at a time, in queue order, and a later blocking `insert`, `erase` or
    /// `purge_scope` of the key waits (bounded) for the one running and supersedes the queued ones
    /// (their `done` gets Ok, on that write's thread, without I/O: the later write replaces their
    /// effect), so an erase right after an insert is never undone by it.
    template <class F>
        requires std::invocable<std::decay_t<F>&, SharedStatus> && std::constructible_from<std::decay_t<F>, F>
    void insert_async(const SharedEntry& entry, F&& done) {
        std::string name = entry_key(entry.scope, entry.key);
        auto task = [this, value = detail::encode_shared_entry(entry), scope_copy = entry.scope, key_copy = entry.key, ttl = entry.ttl,
                     callback = std::decay_t<F>(std::forward<F>(done))](AsyncRun run) mutable {
            switch (run) {
                case AsyncRun::Run: std::invoke(callback, insert_value(scope_copy, key_copy, ttl, value)); break;
                case AsyncRun::Stopping: std::invoke(callback, unavailable()); break;
                case AsyncRun::Superseded: std::invoke(callback, SharedStatus::Ok); break;
            }
        };
        enqueue(std::move(name), std::move(task));
    }

    /// SET lock token NX PX ttl: Acquired (this replica computes; `unlock` after inserting), Held
    /// (another replica computes: `wait_for_entry`, then compute locally), or Unavailable.
    SharedLock try_lock(std::string_view scope, std::string_view key, std::chrono::milliseconds ttl) {
        SharedLock lock;
        lock.scope = std::string(scope);
        lock.key = std::string(key);
        lock.token = fmt::format("{:016x}{:016x}", random64(), random64());
        const std::string name = lock_key(scope, key);
        const std::string px = fmt::format("{}", std::max<std::int64_t>(1, ttl.count()));
        detail::RedisReply reply = run({"SET", name, lock.token, "NX", "PX", px});
        if (!reply || reply->type == REDIS_REPLY_ERROR) {
            if (reply) counters_.unavailable.fetch_add(1, std::memory_order_relaxed);
            lock.state = SharedLock::State::Unavailable;
        } else if (reply->type == REDIS_REPLY_NIL) {
            counters_.locks_held.fetch_add(1, std::memory_order_relaxed);
            lock.state = SharedLock::State::Held;
        } else {
            counters_.locks_acquired.fetch_add(1, std::memory_order_relaxed);
            lock.state = SharedLock::State::Acquired;
        }
        return lock;
    }

    /// Releases an Acquired lock if it is still this caller's (compare and delete, atomically in
    /// Redis); anything else is a no-op. An expired lock was simply taken over.
    void unlock(const SharedLock& lock) {
        if (!lock.acquired()) return;
        static constexpr std::string_view script =
            "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
        const std::string name = lock_key(lock.scope, lock.key);
        (void)run({"EVAL", script, "1", name, lock.token});
    }

    /// For a Held lock: polls `lookup` every `poll` until the entry appears, Redis is unavailable or
    /// `max_wait` passed (the bounded wait of the cross-replica single flight). Blocks this thread:
    /// not for an event loop.
    SharedLookup wait_for_entry(std::string_view scope, std::string_view key, std::chrono::milliseconds max_wait,
                                std::chrono::milliseconds poll = std::chrono::milliseconds(2)) {
        const auto until = std::chrono::steady_clock::now() + max_wait;
        for (;;) {
            SharedLookup found = lookup(scope, key);
            if (found.status != SharedStatus::NotFound || std::chrono::steady_clock::now() + poll > until) return found;
            std::this_thread::sleep_for(poll);
        }
    }

    /// Starts a change feed: reads every scope bucket's stream from its start (the catch-up), then
    /// block-reads; calls `callback` on the feed's thread for each record (see SharedChange). When
    /// its position was trimmed away it reports Gap, replays the live entries of that bucket (SCAN,
    /// at most `rebuild_max_entries`) as Insert, then RebuildDone; when Redis lost its data it
    /// reports Reset and starts over. Redis down: it reconnects with backoff and resumes.
    [[nodiscard]] RedisFollower follow(SharedFollowCallback callback) {
        RedisFollower follower;
        follower.state_ = std::make_shared<RedisFollower::State>();
        follower.thread_ = std::thread([this, state = follower.state_, cb = std::move(callback)] { follow_loop(*state, cb); });
        return follower;
    }

    [[nodiscard]] RedisTierStats stats() const noexcept {
        RedisTierStats s;
        const auto get = [](const std::atomic<std::uint64_t>& c) { return c.load(std::memory_order_relaxed); };
        s.lookups = get(counters_.lookups);
        s.hits = get(counters_.hits);
        s.misses = get(counters_.misses);
        s.unavailable = get(counters_.unavailable);
        s.corrupt_values = get(counters_.corrupt_values);
        s.inserts = get(counters_.inserts);
        s.erases = get(counters_.erases);
        s.purges = get(counters_.purges);
        s.connects = get(counters_.connects);
        s.connect_failures = get(counters_.connect_failures);
        s.dropped_connections = get(counters_.dropped_connections);
        s.reconnects = get(counters_.reconnects);
        s.async_rejected = get(counters_.async_rejected);
        s.locks_acquired = get(counters_.locks_acquired);
        s.locks_held = get(counters_.locks_held);
        s.stream_records = get(counters_.stream_records);
        s.gaps = get(counters_.gaps);
        s.rebuilt_entries = get(counters_.rebuilt_entries);
        s.resets = get(counters_.resets);
        s.connected = counters_.connected.load(std::memory_order_relaxed);
        return s;
    }

private:
    using Connection = detail::RedisConnection;
    using Lease = std::unique_ptr<Connection>;

    struct Counters {
        std::atomic<std::uint64_t> lookups{0}, hits{0}, misses{0}, unavailable{0}, corrupt_values{0}, inserts{0}, erases{0},
            purges{0}, connects{0}, connect_failures{0}, dropped_connections{0}, reconnects{0}, async_rejected{0},
            locks_acquired{0}, locks_held{0}, stream_records{0}, gaps{0}, rebuilt_entries{0}, resets{0};
        std::atomic<bool> connected{false};
    };

    // How a queued call is answered: run on a worker; Stopping, the tier is being destroyed (answer
    // Unavailable without I/O); Superseded, a later blocking write of the same key replaces it
    // (an insert answers Ok without I/O).
    enum class AsyncRun : std::uint8_t { Run, Stopping, Superseded };
    // One queued call; `name` is the entry key an insert writes (empty for a lookup).
    struct AsyncTask {
        std::string name;
        std::function<void(AsyncRun)> run;
    };

    static Options validated(Options o) {
        const auto invalid = [](std::string_view field, auto value, std::string_view rule) {
            return Error(ErrorCode::InvalidArgument, fmt::format("RedisTierOptions::{} must be {} (got {})", field, rule, value));
        };
        if (o.port < 1 || o.port > 65535) throw invalid("port", o.port, "in [1, 65535]");
        if (o.db < 0) throw invalid("db", o.db, ">= 0");
        if (o.key_prefix.empty() || o.key_prefix.find_first_of("{}") != std::string::npos) {
            throw invalid("key_prefix", o.key_prefix, "non-empty and without braces (they delimit Redis Cluster hash tags)");
        }
        if (o.connect_timeout <= std::chrono::microseconds::zero()) throw invalid("connect_timeout", o.connect_timeout.count(), "> 0 (us)");
        if (o.command_timeout <= std::chrono::microseconds::zero()) throw invalid("command_timeout", o.command_timeout.count(), "> 0 (us)");
        if (o.max_connections == 0) throw invalid("max_connections", o.max_connections, ">= 1");
        if (o.reconnect_backoff_min <= std::chrono::milliseconds::zero()) {
            throw invalid("reconnect_backoff_min", o.reconnect_backoff_min.count(), "> 0 (ms)");
        }
        if (o.reconnect_backoff_max < o.reconnect_backoff_min) {
            throw invalid("reconnect_backoff_max", o.reconnect_backoff_max.count(), ">= reconnect_backoff_min (ms)");
        }
        if (o.failures_before_backoff == 0) throw invalid("failures_before_backoff", o.failures_before_backoff, ">= 1");
        if (o.stream_buckets == 0 || o.stream_buckets > 1024) throw invalid("stream_buckets", o.stream_buckets, "in [1, 1024]");
        if (o.stream_max_len == 0) throw invalid("stream_max_len", o.stream_max_len, ">= 1");
        if (o.follow_block <= std::chrono::milliseconds::zero()) throw invalid("follow_block", o.follow_block.count(), "> 0 (ms)");
        if (o.follow_batch == 0 || o.follow_batch > o.stream_max_len) throw invalid("follow_batch", o.follow_batch, "in [1, stream_max_len]");
        if (o.rebuild_max_entries == 0) throw invalid("rebuild_max_entries", o.rebuild_max_entries, ">= 1");
        if (o.async_threads == 0) throw invalid("async_threads", o.async_threads, ">= 1");
        if (o.async_queue == 0) throw invalid("async_queue", o.async_queue, ">= 1");
        return o;
    }

    static Connection::Endpoint endpoint_of(const Options& o) {
        if (!o.url.empty()) return detail::redis_parse_url(o.url);
        Connection::Endpoint at;
        at.host = o.host;
        at.port = o.port;
        at.user = o.user;
        at.password = o.password;
        at.db = o.db;
        return at;
    }

    // Queues `run` for a worker (`name`: the entry an insert writes); a full queue (or a tier being
    // destroyed) answers it here, stopping.
    template <class Run>
    void enqueue(std::string name, Run&& run) {
        {
            std::unique_lock lock(async_.mutex);
            if (!async_.stopping && async_.tasks.size() < options_.async_queue) {
                if (async_.threads.empty()) start_async_locked();
                async_.tasks.push_back(AsyncTask{std::move(name), std::function<void(AsyncRun)>(std::forward<Run>(run))});
                lock.unlock();
                async_.wake.notify_all();  // a worker may skip this task (its key is being written): wake every one
                return;
            }
        }
        counters_.async_rejected.fetch_add(1, std::memory_order_relaxed);
        run(AsyncRun::Stopping);
    }

    // Before a blocking write of the entries `matches` selects (by entry key): their async inserts
    // still queued are superseded (answered Ok: this later write replaces their effect), and one a
    // worker is running is waited for, at most about one command's bound (connect + the pool's wait
    // + a write and two replies), so one caller's writes of a key reach Redis in the order made.
    template <class Match>
    void after_async_writes(Match matches) {
        std::vector<AsyncTask> superseded;
        {
            std::unique_lock lock(async_.mutex);
            if (async_.running.empty() && async_.tasks.empty()) return;
            for (auto it = async_.tasks.begin(); it != async_.tasks.end();) {
                if (!it->name.empty() && matches(std::string_view(it->name))) {
                    superseded.push_back(std::move(*it));
                    it = async_.tasks.erase(it);
                } else {
                    ++it;
                }
            }
            const auto bound = options_.connect_timeout + 4 * options_.command_timeout;
            async_.wake.wait_for(lock, bound, [&] {
                return std::none_of(async_.running.begin(), async_.running.end(), [&](const std::string& n) { return matches(std::string_view(n)); });
            });
        }
        for (AsyncTask& task : superseded) task.run(AsyncRun::Superseded);
    }

    SharedStatus insert_value(std::string_view scope, std::string_view key, std::chrono::nanoseconds ttl, const std::string& value) {
        const std::string name = entry_key(scope, key);
        const std::string stream = stream_key(bucket_of(scope));
        const std::string cap = fmt::format("{}", options_.stream_max_len);
        // Redis rejects an expiry past its range; a TTL of more than ~100 years means "never".
        const auto ttl_ms = std::chrono::ceil<std::chrono::milliseconds>(ttl).count();
        const std::string px = fmt::format("{}", std::max<std::int64_t>(1, ttl_ms));
        constexpr std::int64_t century_ms = std::int64_t{100} * 365 * 24 * 3600 * 1000;
        Lease lease = acquire();
        if (!lease) return unavailable();
        if (ttl_ms < century_ms) {
            lease->append({"SET", name, value, "PX", px});
        } else {
            lease->append({"SET", name, value});
        }
        lease->append({"XADD", stream, "MAXLEN", "~", cap, "*", "t", "i", "v", value});
        detail::RedisReply set = lease->read();
        detail::RedisReply add = lease->read();
        const bool ok = set && add && set->type != REDIS_REPLY_ERROR && add->type != REDIS_REPLY_ERROR;
        release(std::move(lease));
        if (!ok) return unavailable();
        counters_.inserts.fetch_add(1, std::memory_order_relaxed);
        return SharedStatus::Ok;
    }

    SharedStatus unavailable() noexcept {
        counters_.unavailable.fetch_add(1, std::memory_order_relaxed);
        return SharedStatus::Unavailable;
    }

    static std::uint64_t random64() {
        thread_local std::mt19937_64 engine(std::random_device{}() ^
                                            static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
        return engine();
    }

    // ---- the connection pool ----

    // Opens a connection (counted); after a failure, counts the first success as a reconnect.
    std::unique_ptr<Connection> open_connection(std::chrono::microseconds command_timeout) {
        std::unique_ptr<Connection> connection = Connection::open(endpoint_, options_.connect_timeout, command_timeout);
        if (!connection) {
            counters_.connect_failures.fetch_add(1, std::memory_order_relaxed);
            return nullptr;
        }
        counters_.connects.fetch_add(1, std::memory_order_relaxed);
        return connection;
    }

    // A connection for one call: an idle one, a new one (while fewer than max_connections are open
    // and no backoff is running), or one released within command_timeout; nullptr otherwise.
    Lease acquire() {
        std::unique_lock lock(pool_.mutex);
        const auto until = std::chrono::steady_clock::now() + options_.command_timeout;
        for (;;) {
            if (!pool_.idle.empty()) {
                Lease lease = std::move(pool_.idle.back());
                pool_.idle.pop_back();
                return lease;
            }
            const auto now = std::chrono::steady_clock::now();
            if (now < pool_.retry_at) return nullptr;  // backing off after a failure
            if (pool_.open < options_.max_connections) {
                // After a backoff, one call probes; the others keep answering Unavailable until it succeeded.
                const bool probe = pool_.consecutive_failures >= options_.failures_before_backoff;
                if (probe && pool_.probing) return nullptr;
                pool_.probing = probe;
                ++pool_.open;
                lock.unlock();
                Lease lease = open_connection(options_.command_timeout);
                lock.lock();
                if (probe && !lease) pool_.probing = false;
                if (probe && lease) pool_.probe = lease.get();
                if (!lease) {
                    --pool_.open;
                    failed_locked();
                    pool_.wake.notify_all();
                    return nullptr;
                }
                if (pool_.failed) {
                    pool_.failed = false;
                    counters_.reconnects.fetch_add(1, std::memory_order_relaxed);
                }
                // The backoff resets only when a command succeeds (release): a stopped Redis accepts
                // connections (the kernel does) and never answers.
                return lease;
            }
            if (pool_.wake.wait_until(lock, until) == std::cv_status::timeout) return nullptr;
        }
    }

    // Returns a connection to the pool; a dead one is dropped, and with it every idle connection
    // (Redis went away or stalled: they are most likely dead too).
    void release(Lease lease) {
        std::vector<Lease> dropped;
        {
            std::lock_guard lock(pool_.mutex);
            if (lease.get() == pool_.probe) {
                pool_.probe = nullptr;
                pool_.probing = false;
            }
            if (!lease->dead()) {
                pool_.idle.push_back(std::move(lease));
                counters_.connected.store(true, std::memory_order_relaxed);
                pool_.consecutive_failures = 0;
                pool_.backoff = std::chrono::milliseconds::zero();
            } else {
                dropped.push_back(std::move(lease));
                for (Lease& idle : pool_.idle) dropped.push_back(std::move(idle));
                pool_.idle.clear();
                pool_.open -= dropped.size();
                failed_locked();
            }
        }
        pool_.wake.notify_one();
        counters_.dropped_connections.fetch_add(dropped.size(), std::memory_order_relaxed);
        // `dropped` closes its sockets here, outside the lock.
    }

    // A failed connect or a dead connection. One failure alone (a reply slower than the bound once)
    // only costs that connection; `failures_before_backoff` in a row (Redis down or stopped: each
    // further attempt would cost its caller up to a timeout) start the backoff, during which calls
    // answer Unavailable without I/O; after it, one call probes again.
    void failed_locked() {
        pool_.failed = true;
        counters_.connected.store(false, std::memory_order_relaxed);
        if (++pool_.consecutive_failures < options_.failures_before_backoff) return;
        pool_.backoff = pool_.backoff == std::chrono::milliseconds::zero()
                            ? options_.reconnect_backoff_min
                            : std::min(options_.reconnect_backoff_max, pool_.backoff * 2);
        pool_.retry_at = std::chrono::steady_clock::now() + pool_.backoff;
    }

    // One command, one round trip; nullptr (counted Unavailable) when no connection or it died.
    detail::RedisReply run(std::initializer_list<std::string_view> args) {
        Lease lease = acquire();
        if (!lease) {
            unavailable();
            return nullptr;
        }
        lease->append(args);
        detail::RedisReply reply = lease->read();
        release(std::move(lease));
        if (!reply) unavailable();
        return reply;
    }

    // ---- lookup_async's workers ----

    void start_async_locked() {
        for (std::size_t i = 0; i < options_.async_threads; ++i) async_.threads.emplace_back([this] { async_loop(); });
    }

    // The first queued task a worker may run: a lookup, or an insert of a key no worker is writing
    // (one write of a key at a time, in queue order); every task once stopping (no I/O then).
    typename std::deque<AsyncTask>::iterator runnable_locked() {
        if (async_.stopping) return async_.tasks.begin();
        return std::find_if(async_.tasks.begin(), async_.tasks.end(),
                            [&](const AsyncTask& t) { return t.name.empty() || !async_.running.contains(t.name); });
    }

    void async_loop() {
        for (;;) {
            AsyncTask task;
            bool stopping = false;
            {
                std::unique_lock lock(async_.mutex);
                async_.wake.wait(lock, [&] { return async_.stopping || runnable_locked() != async_.tasks.end(); });
                if (async_.tasks.empty()) return;  // stopping, nothing left
                const auto it = runnable_locked();
                task = std::move(*it);
                async_.tasks.erase(it);
                stopping = async_.stopping;
                if (!stopping && !task.name.empty()) async_.running.insert(task.name);
            }
            task.run(stopping ? AsyncRun::Stopping : AsyncRun::Run);
            if (!stopping && !task.name.empty()) {
                {
                    std::lock_guard lock(async_.mutex);
                    async_.running.erase(task.name);
                }
                async_.wake.notify_all();  // workers skipping this key, and a blocking write waiting for it
            }
        }
    }

    void stop_async() noexcept {
        std::vector<std::thread> threads;
        {
            std::lock_guard lock(async_.mutex);
            async_.stopping = true;
            threads.swap(async_.threads);
        }
        async_.wake.notify_all();
        for (std::thread& t : threads) t.join();
    }

    // ---- the follower ----

    struct BucketPosition {
        detail::RedisStreamId last;      // the last record delivered
        std::uint64_t delivered = 0;     // records delivered since the stream's start (the follower starts at 0-0)
        bool check = true;               // look for a gap or a reset before the next read
    };

    struct StreamInfo {
        bool exists = false;
        std::uint64_t length = 0;
        std::optional<std::uint64_t> entries_added;  // Redis >= 7
        detail::RedisStreamId last_generated, first;
        bool has_first = false;
    };

    static StreamInfo parse_stream_info(const redisReply* reply) {
        StreamInfo info;
        if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY) return info;  // no such key: an empty stream
        info.exists = true;
        for (std::size_t i = 0; i + 1 < reply->elements; i += 2) {
            const std::string_view field = detail::redis_str(reply->element[i]);
            const redisReply* value = reply->element[i + 1];
            if (field == "length" && value->type == REDIS_REPLY_INTEGER) {
                info.length = static_cast<std::uint64_t>(value->integer);
            } else if (field == "entries-added" && value->type == REDIS_REPLY_INTEGER) {
                info.entries_added = static_cast<std::uint64_t>(value->integer);
            } else if (field == "last-generated-id") {
                info.last_generated = detail::RedisStreamId::parse(detail::redis_str(value)).value_or(detail::RedisStreamId{});
            } else if (field == "first-entry" && value->type == REDIS_REPLY_ARRAY && value->elements >= 1) {
                if (auto id = detail::RedisStreamId::parse(detail::redis_str(value->element[0]))) {
                    info.first = *id;
                    info.has_first = true;
                }
            }
        }
        return info;
    }

    static void deliver(const SharedFollowCallback& callback, const SharedChange& change) noexcept {
        try {
            callback(change);
        } catch (...) {
            // The callback must not throw; a feed that dies on one would silently stop following.
        }
    }

    // One stream record (field/value array) → a change; false when it is not one of ours.
    bool decode_record(const redisReply* fields, SharedChange& change) {
        std::string_view type, value, scope, key;
        if (fields == nullptr || fields->type != REDIS_REPLY_ARRAY) return false;
        for (std::size_t i = 0; i + 1 < fields->elements; i += 2) {
            const std::string_view name = detail::redis_str(fields->element[i]);
            const std::string_view v = detail::redis_str(fields->element[i + 1]);
            if (name == "t") type = v;
            else if (name == "v") value = v;
            else if (name == "s") scope = v;
            else if (name == "k") key = v;
        }
        if (type == "i") {
            detail::SharedDecodeResult decoded = detail::decode_shared_entry(value);
            if (!decoded.ok()) return false;
            change.kind = SharedChange::Kind::Insert;
            change.entry = std::move(decoded.entry);
            return true;
        }
        if (type == "e") {
            change.kind = SharedChange::Kind::Erase;
            change.scope = std::string(scope);
            change.key = std::string(key);
            return true;
        }
        if (type == "p") {
            change.kind = SharedChange::Kind::PurgeScope;
            change.scope = std::string(scope);
            return true;
        }
        return false;
    }

    // Replays the live entries of `bucket` (SCAN + pipelined GETs) as Insert; false on I/O failure.
    bool rebuild(Connection& connection, std::size_t bucket, const RedisFollower::State& state,
                 const SharedFollowCallback& callback, bool& complete) {
        const std::string pattern = fmt::format("{}*", detail::redis_glob_escape(fmt::format("{{{}:{}}}:e:", options_.key_prefix, bucket)));
        std::string cursor = "0";
        std::size_t replayed = 0;
        complete = true;
        do {
            if (replayed >= options_.rebuild_max_entries || stop_requested(state)) {
                complete = false;
                break;
            }
            connection.append({"SCAN", cursor, "MATCH", pattern, "COUNT", "500"});
            detail::RedisReply page = connection.read();
            if (!page) return false;
            if (page->type != REDIS_REPLY_ARRAY || page->elements != 2 || page->element[1]->type != REDIS_REPLY_ARRAY) return false;
            cursor = std::string(detail::redis_str(page->element[0]));
            const redisReply* keys = page->element[1];
            for (std::size_t i = 0; i < keys->elements; ++i) connection.append({"GET", detail::redis_str(keys->element[i])});
            for (std::size_t i = 0; i < keys->elements; ++i) {
                detail::RedisReply value = connection.read();
                if (!value) return false;
                if (value->type != REDIS_REPLY_STRING) continue;  // expired since the SCAN
                if (replayed >= options_.rebuild_max_entries) {
                    complete = false;  // past the bound (the replies are read all the same)
                    continue;
                }
                detail::SharedDecodeResult decoded = detail::decode_shared_entry(detail::redis_str(value.get()));
                if (!decoded.ok()) {
                    counters_.corrupt_values.fetch_add(1, std::memory_order_relaxed);
                    continue;
                }
                SharedChange change;
                change.kind = SharedChange::Kind::Insert;
                change.entry = std::move(decoded.entry);
                deliver(callback, change);
                ++replayed;
                counters_.rebuilt_entries.fetch_add(1, std::memory_order_relaxed);
            }
        } while (cursor != "0");
        return true;
    }

    static bool stop_requested(const RedisFollower::State& state) {
        std::lock_guard lock(state.mutex);
        return state.stopping;
    }

    // Waits `d` or until stopped; true when stopped.
    static bool sleep_or_stop(RedisFollower::State& state, std::chrono::milliseconds d) {
        std::unique_lock lock(state.mutex);
        return state.wake.wait_for(lock, d, [&] { return state.stopping; });
    }

    // Checks the flagged buckets for a reset (the stream is younger than the position) or a gap (more
    // records were trimmed than were delivered) and handles them; false on I/O failure.
    bool check_positions(Connection& connection, std::vector<BucketPosition>& positions, RedisFollower::State& state,
                         const SharedFollowCallback& callback) {
        std::vector<std::size_t> flagged;
        std::vector<std::string> names;
        for (std::size_t b = 0; b < positions.size(); ++b) {
            if (positions[b].check) {
                flagged.push_back(b);
                names.push_back(stream_key(b));
            }
        }
        // Per flagged stream: its info, and whether the last record delivered is still in it.
        std::vector<std::string> lasts;
        for (const std::size_t b : flagged) lasts.push_back(positions[b].last.str());
        for (std::size_t i = 0; i < flagged.size(); ++i) {
            connection.append({"XINFO", "STREAM", names[i]});
            connection.append({"XRANGE", names[i], lasts[i], lasts[i]});
        }
        std::vector<StreamInfo> infos;
        std::vector<bool> last_present;
        for (std::size_t i = 0; i < flagged.size(); ++i) {
            detail::RedisReply reply = connection.read();
            detail::RedisReply range = connection.read();
            if (!reply || !range) return false;
            infos.push_back(parse_stream_info(reply->type == REDIS_REPLY_ARRAY ? reply.get() : nullptr));
            last_present.push_back(range->type == REDIS_REPLY_ARRAY && range->elements > 0);
        }
        for (std::size_t i = 0; i < flagged.size(); ++i) {
            BucketPosition& at = positions[flagged[i]];
            const StreamInfo& info = infos[i];
            const std::uint64_t added = info.entries_added.value_or(info.length);
            const std::uint64_t trimmed = added > info.length ? added - info.length : 0;
            // The stream restarted (Redis lost its data): it is younger than our position, has fewer
            // records than we read, or lost our last record without having trimmed that many.
            const bool restarted = at.delivered > 0 && (info.last_generated < at.last || added < at.delivered ||
                                                        (!last_present[i] && info.entries_added && trimmed < at.delivered));
            if (restarted) {
                // Local entries stay; reading starts over.
                counters_.resets.fetch_add(1, std::memory_order_relaxed);
                SharedChange change;
                change.kind = SharedChange::Kind::Reset;
                deliver(callback, change);
                at = BucketPosition{};
            }
            const bool trimmed_unread = info.entries_added ? (trimmed > at.delivered)
                                                           : (info.has_first && at.delivered > 0 && at.last < info.first);
            if (info.exists && trimmed_unread) {
                counters_.gaps.fetch_add(1, std::memory_order_relaxed);
                SharedChange gap;
                gap.kind = SharedChange::Kind::Gap;
                deliver(callback, gap);
                bool complete = true;
                if (!rebuild(connection, flagged[i], state, callback, complete)) return false;
                SharedChange done;
                done.kind = SharedChange::Kind::RebuildDone;
                done.complete = complete;
                deliver(callback, done);
                // Records after the position read by XINFO are read from the stream (a replayed entry
                // may come twice: inserts are idempotent).
                at.last = info.last_generated;
                at.delivered = added;
            }
            at.check = false;
        }
        return true;
    }

    void follow_loop(RedisFollower::State& state, const SharedFollowCallback& callback) {
        std::vector<BucketPosition> positions(options_.stream_buckets);
        std::unique_ptr<Connection> connection;
        std::chrono::milliseconds backoff{0};
        bool failed = false;
        const std::string count = fmt::format("{}", options_.follow_batch);
        const std::string block = fmt::format("{}", options_.follow_block.count());
        // The socket timeout covers the BLOCK time plus a command's.
        const std::chrono::microseconds read_timeout = options_.follow_block + options_.command_timeout + std::chrono::milliseconds(50);
        while (!stop_requested(state)) {
            if (!connection || connection->dead()) {
                if (connection) {
                    counters_.dropped_connections.fetch_add(1, std::memory_order_relaxed);
                    connection.reset();
                    failed = true;
                }
                if (backoff > std::chrono::milliseconds::zero() && sleep_or_stop(state, backoff)) break;
                connection = open_connection(read_timeout);
                if (!connection) {
                    failed = true;
                    backoff = backoff == std::chrono::milliseconds::zero() ? options_.reconnect_backoff_min
                                                                           : std::min(options_.reconnect_backoff_max, backoff * 2);
                    continue;
                }
                if (failed) counters_.reconnects.fetch_add(1, std::memory_order_relaxed);
                failed = false;
                backoff = std::chrono::milliseconds::zero();
                state.caught_up.store(false, std::memory_order_release);
                for (BucketPosition& at : positions) at.check = true;
            }
            if (std::any_of(positions.begin(), positions.end(), [](const BucketPosition& p) { return p.check; })) {
                if (!check_positions(*connection, positions, state, callback)) {
                    // Dead: reconnect. Alive (an error reply, e.g. LOADING): retry after a pause.
                    if (!connection->dead() && sleep_or_stop(state, options_.reconnect_backoff_min)) break;
                    continue;
                }
            }
            std::vector<std::string> args_storage;
            args_storage.reserve(2 * positions.size());
            for (std::size_t b = 0; b < positions.size(); ++b) args_storage.push_back(stream_key(b));
            for (const BucketPosition& at : positions) args_storage.push_back(at.last.str());
            std::vector<std::string_view> args{"XREAD", "COUNT", count, "BLOCK", block, "STREAMS"};
            for (const std::string& a : args_storage) args.push_back(a);
            connection->append(std::span<const std::string_view>(args));
            detail::RedisReply reply = connection->read();
            if (!reply) continue;  // dead: reconnect
            if (reply->type == REDIS_REPLY_NIL) {  // nothing new within BLOCK: every stream read to its end
                state.caught_up.store(true, std::memory_order_release);
                continue;
            }
            if (reply->type != REDIS_REPLY_ARRAY) {
                // An error reply (e.g. a foreign key of another type under a stream's name): retry later.
                if (sleep_or_stop(state, options_.reconnect_backoff_min)) break;
                continue;
            }
            bool full = false;
            for (std::size_t s = 0; s < reply->elements; ++s) {
                const redisReply* stream = reply->element[s];
                if (stream->type != REDIS_REPLY_ARRAY || stream->elements != 2 || stream->element[1]->type != REDIS_REPLY_ARRAY) continue;
                const std::string_view name = detail::redis_str(stream->element[0]);
                std::size_t bucket = positions.size();
                for (std::size_t b = 0; b < positions.size(); ++b) {
                    if (args_storage[b] == name) bucket = b;
                }
                if (bucket == positions.size()) continue;
                BucketPosition& at = positions[bucket];
                const redisReply* records = stream->element[1];
                for (std::size_t r = 0; r < records->elements; ++r) {
                    const redisReply* record = records->element[r];
                    if (record->type != REDIS_REPLY_ARRAY || record->elements != 2) continue;
                    if (auto id = detail::RedisStreamId::parse(detail::redis_str(record->element[0]))) at.last = *id;
                    ++at.delivered;
                    SharedChange change;
                    if (!decode_record(record->element[1], change)) {
                        counters_.corrupt_values.fetch_add(1, std::memory_order_relaxed);
                        continue;
                    }
                    counters_.stream_records.fetch_add(1, std::memory_order_relaxed);
                    deliver(callback, change);
                }
                // A full batch: the follower may lag behind the trimming; check before reading on.
                if (records->elements >= options_.follow_batch) {
                    at.check = true;
                    full = true;
                }
            }
            if (!full) state.caught_up.store(true, std::memory_order_release);
        }
    }

    Options options_;
    Connection::Endpoint endpoint_;
    Counters counters_;

    struct Pool {
        std::mutex mutex;
        std::condition_variable wake;
        std::vector<Lease> idle;
        std::size_t open = 0;
        bool failed = false;
        std::size_t consecutive_failures = 0;
        bool probing = false;                 // a call is probing Redis after a backoff
        const Connection* probe = nullptr;    // its connection (compared, never dereferenced)
        std::chrono::milliseconds backoff{0};
        std::chrono::steady_clock::time_point retry_at{};
    } pool_;

    struct Async {
        std::mutex mutex;
        std::condition_variable wake;
        std::deque<AsyncTask> tasks;
        std::unordered_set<std::string> running;  // entry keys a worker is writing now
        std::vector<std::thread> threads;
        bool stopping = false;
    } async_;
};

static_assert(SharedTier<RedisTier>);
static_assert(shared_tier_traits<RedisTier>::has_lookup_async);
static_assert(shared_tier_traits<RedisTier>::has_insert_async);
static_assert(shared_tier_traits<RedisTier>::has_change_feed);
static_assert(shared_tier_traits<RedisTier>::has_lock);

LLMFAST_END_NAMESPACE
