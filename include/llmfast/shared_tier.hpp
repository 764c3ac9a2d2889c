// llmfast/shared_tier.hpp — the `SharedTier` concept: what the semantic cache needs from a store
// shared by several processes (replicas of a gateway), consulted after the cache's local exact tier
// and written through on insert; the entry and result types such a store exchanges with the cache.
//
// Required of a model `T` (every call bounded in time; none throws for a store that is down):
//   - `lookup(std::string_view scope, std::string_view key)` → `SharedLookup`: Found (with the entry),
//     NotFound, or Unavailable (the store did not answer within its bound: the cache goes on
//     local-only). `key` is the cache's key of the normalized prompt within the scope, an opaque
//     string; the entry found must be of that scope and key (a store checks it, so a hash collision
//     or a foreign value is a NotFound, never served).
//   - `insert(const SharedEntry&)` → `SharedStatus` (Ok or Unavailable): write-through; the store keeps
//     the entry until `created + ttl`.
//   - `erase(scope, key)` and `purge_scope(scope)` → `SharedStatus`: remove from the store, and tell
//     every follower (the change feed below) so each replica drops its local copy.
// Optional, detected through `shared_tier_traits<T>`:
//   - `lookup_async(scope, key, done)`: `done(SharedLookup)` exactly once, possibly on the store's own
//     thread (the cache's `lookup_async` completes from there, so an event loop never blocks on I/O);
//     `insert_async(entry, done)`: `done(SharedStatus)` likewise (an event loop's write-through).
//   - a change feed: `follow(SharedFollowCallback)` → a handle whose destruction (or `stop()`) stops
//     it; the callback gets every `SharedChange` (inserts with their embeddings, erase and purge
//     tombstones, and a `Gap` when the feed lost its place, followed by the live entries and
//     `RebuildDone`), so the replica's local vector index follows the store without re-embedding.
//   - cross-replica single flight: `try_lock(scope, key, ttl)` → `SharedLock` and `unlock(const
//     SharedLock&)`; a replica that finds the lock held waits a bounded time for the entry, then
//     computes locally (a lock is a hint, never a correctness requirement).
//
//     struct MyStore {
//         llmfast::SharedLookup lookup(std::string_view scope, std::string_view key);
//         llmfast::SharedStatus insert(const llmfast::SharedEntry& entry);
//         llmfast::SharedStatus erase(std::string_view scope, std::string_view key);
//         llmfast::SharedStatus purge_scope(std::string_view scope);
//     };
//     static_assert(llmfast::SharedTier<MyStore>);
//
// The model in this library is `RedisTier` (llmfast/redis_tier.hpp, optional component `redis`).
//
// Thread-safety: a concept and plain value types; a model of SharedTier must allow concurrent calls.
//
// Errors: nothing here throws.
#pragma once

#include <llmfast/version.hpp>

#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

LLMFAST_BEGIN_NAMESPACE

/// One cache entry as a shared tier stores it: everything another replica needs to serve it (exact)
/// and to index it (semantic) without re-embedding.
struct SharedEntry {
    std::string scope;     ///< what must match for the answer to be reusable (model, system prompt, ...)
    std::string key;       ///< the cache's key of the normalized prompt within the scope (opaque)
    std::string prompt;    ///< as inserted (the verifier step reads it)
    std::string response;
    std::vector<std::uint32_t> chunk_boundaries;  ///< optional: byte offsets where the stored stream's chunks ended (strictly increasing, <= response size)
    std::vector<float> embedding;  ///< optional: the prompt's embedding (finite), empty when not embedded
    std::string embedder;          ///< the embedder's identity (llmfast/embedder.hpp); a replica with another one ignores the embedding
    std::int64_t created_ns = 0;   ///< wall-clock nanoseconds since the epoch
    std::chrono::nanoseconds ttl{0};  ///< > 0

    friend bool operator==(const SharedEntry&, const SharedEntry&) = default;
};

enum class SharedStatus : std::uint8_t {
    Ok,           ///< found / done
    NotFound,     ///< the store answered: nothing (or nothing of ours) under that key
    Unavailable,  ///< the store did not answer within its bound (down, slow, restarting); counted
};

constexpr std::string_view to_string(SharedStatus status) noexcept {
    switch (status) {
        case SharedStatus::Ok: return "Ok";
        case SharedStatus::NotFound: return "NotFound";
        case SharedStatus::Unavailable: return "Unavailable";
    }
    return "Unknown";
}

/// The result of `SharedTier::lookup`: `entry` is meaningful when `status == Ok`.
struct SharedLookup {
    SharedStatus status = SharedStatus::NotFound;
    SharedEntry entry;
    [[nodiscard]] bool found() const noexcept { return status == SharedStatus::Ok; }
};

/// One record of a shared tier's change feed.
struct SharedChange {
    enum class Kind : std::uint8_t {
        Insert,       ///< `entry` was inserted (also for each live entry replayed after a Gap)
        Erase,        ///< (`scope`, `key`) was erased
        PurgeScope,   ///< every entry of `scope` was removed
        Gap,          ///< the feed lost its place (trimmed past it): live entries follow as Insert, then RebuildDone
        RebuildDone,  ///< the replay after a Gap ended (`complete` false when it hit its bound)
        Reset,        ///< the store lost its content (restarted empty): keep local entries, go on
    };
    Kind kind = Kind::Insert;
    SharedEntry entry;      ///< Insert
    std::string scope;      ///< Erase, PurgeScope
    std::string key;        ///< Erase
    bool complete = true;   ///< RebuildDone
};

/// What a change feed calls, on the feed's own thread. Must not throw.
using SharedFollowCallback = std::function<void(const SharedChange&)>;

/// A cross-replica lock on (scope, key) from `try_lock`.
struct SharedLock {
    enum class State : std::uint8_t {
        Acquired,     ///< this caller computes; `unlock` when the entry is inserted (or on failure)
        Held,         ///< another replica computes: wait a bounded time for the entry, then compute locally
        Unavailable,  ///< the store did not answer: compute locally
    };
    State state = State::Unavailable;
    std::string scope, key, token;  ///< what `unlock` needs (Acquired)
    [[nodiscard]] bool acquired() const noexcept { return state == State::Acquired; }
};

/// A store the semantic cache can share entries through; see the header comment for what is
/// required and what is optional.
template <class T>
concept SharedTier = requires(T& tier, std::string_view scope, std::string_view key, const SharedEntry& entry) {
    { tier.lookup(scope, key) } -> std::same_as<SharedLookup>;
    { tier.insert(entry) } -> std::same_as<SharedStatus>;
    { tier.erase(scope, key) } -> std::same_as<SharedStatus>;
    { tier.purge_scope(scope) } -> std::same_as<SharedStatus>;
};

/// The "no shared tier" marker: SemanticCache's default `Shared` parameter. It is never attached,
/// and the cache removes all of its shared-tier code for it (`if constexpr`), so a cache without a
/// shared tier pays nothing for the option. Not a model of SharedTier.
struct NoSharedTier {};

/// What a shared tier optionally provides, detected from its members. Specialize it for a type you
/// cannot change.
template <class T>
struct shared_tier_traits {
    /// `lookup_async(scope, key, done)` with `done` a `void(SharedLookup)` callable.
    static constexpr bool has_lookup_async = requires(T& tier, std::string_view scope, std::string_view key,
                                                      std::function<void(SharedLookup)> done) {
        tier.lookup_async(scope, key, std::move(done));
    };
    /// `insert_async(entry, done)` with `done` a `void(SharedStatus)` callable.
    static constexpr bool has_insert_async = requires(T& tier, const SharedEntry& entry, std::function<void(SharedStatus)> done) {
        tier.insert_async(entry, std::move(done));
    };
    /// `follow(SharedFollowCallback)` returning a handle that stops the feed when destroyed.
    static constexpr bool has_change_feed = requires(T& tier, SharedFollowCallback callback) {
        tier.follow(std::move(callback));
    };
    /// `try_lock(scope, key, ttl)` → SharedLock and `unlock(const SharedLock&)`.
    static constexpr bool has_lock = requires(T& tier, std::string_view scope, std::string_view key,
                                              std::chrono::milliseconds ttl, const SharedLock& lock) {
        { tier.try_lock(scope, key, ttl) } -> std::same_as<SharedLock>;
        tier.unlock(lock);
    };
};

LLMFAST_END_NAMESPACE
