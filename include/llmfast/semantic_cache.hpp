// llmfast/semantic_cache.hpp — an in-process LLM response cache: exact tier + semantic tier, scopes,
// TTL, eviction by entries and bytes (LRU by default, a policy of yours through `EvictionPolicy`),
// single-flight, statistics and crash-safe snapshots.
//
// A lookup first tries the exact tier: xxHash3 of the normalized prompt (whitespace trimmed and
// collapsed, ASCII case-folded, full-width forms mapped to ASCII, so "什么是ML？" == "什么是ml?").
// If the semantic tier is on, it then embeds the prompt (outside every lock), asks the scope's vector
// index for the nearest cached prompts *of the same scope* whose cosine similarity reaches
// `similarity_threshold`, and serves the first that the verifier step accepts: the hit guards
// (llmfast/hit_guards.hpp: different numbers, a negation in only one, different Latin names, key terms
// in another order), and with a `HitVerifier` V (last template parameter, e.g. PairVerifier) its
// probability against the scope's operating point for `max_wrong_hit_rate`, which `report(hit, right)`
// raises when the application's feedback shows more wrong hits than that (docs/verifier.md). A scope is whatever must match for an answer to be reusable: model name, system
// prompt, sampling parameters. Hits never cross scopes.
//
//     #include <llmfast/hashing_embedder.hpp>
//     #include <llmfast/semantic_cache.hpp>
//     llmfast::SemanticCache<llmfast::HashingEmbedder> cache({}, {.max_entries = 100'000, .ttl = std::chrono::hours(1)});
//     auto result = cache.get_or_compute(prompt, "gpt-4o|temp=0", [&] { return call_model(prompt); });
//     // result.match: Exact, Semantic, Computed (this call ran fn) or Coalesced (it waited for another
//     // call's fn); result.response(); result.similarity; result.age
//     cache.save("cache.snap");  // later: cache.load("cache.snap")
//
// Single flight without blocking (event loops): `begin` splits `get_or_compute` into steps that
// never wait for another caller's computation:
//
//     auto flight = cache.begin(prompt, scope);          // looks up, then joins or starts the flight
//     if (auto* hit = std::get_if<llmfast::LookupResult>(&flight)) return replay(hit->response());
//     if (auto* leader = std::get_if<Cache::Leader>(&flight)) {
//         // stream from the model; at the normal end:   leader->complete(full_response);
//         // interrupted / failed (never stored):         leader->abandon();  (or just drop it)
//     }
//     auto& follower = std::get<Cache::Follower>(flight);  // someone else computes this prompt
//     sub = follower.on_ready([&] { post(executor, resume); });   // fires once, outside the locks
//     // resumed: follower.try_result() -> Coalesced (the leader's response), Miss (abandoned:
//     // compute yourself, e.g. begin again), or rethrows the exception the leader failed with.
//     // The client went away: sub.cancel() / follower.cancel() — the flight is unaffected.
//
// `lookup_async(prompt, scope, done)` is the callback form of `lookup` (the seam the shared tier and
// network embedders will complete from their own threads). Readiness callbacks follow
// llmfast/subscription.hpp: at most once, outside every lock, race-free cancellation.
//
// Several replicas (gateway processes) can share entries through a shared tier (llmfast/shared_tier.hpp;
// RedisTier in llmfast/redis_tier.hpp), the fifth template parameter, attached at run time:
//
//     llmfast::SemanticCache<llmfast::HashingEmbedder, llmfast::FlatIndex, llmfast::WallClock,
//                            llmfast::LruPolicy, llmfast::RedisTier> cache;
//     cache.attach_shared(std::make_shared<llmfast::RedisTier>(llmfast::RedisTierOptions{.url = url}));
//
// A local exact miss then asks the tier (a hit is stored locally and served as Exact), inserts write
// through, erase / erase_scope propagate, and the tier's change feed fills the local exact tier and
// vector index with other replicas' entries (their embeddings travel with them), so semantic lookups
// stay local. `lookup_async` / `begin_async` do the tier's part on its worker thread; `get_or_compute`
// computes once across replicas with the tier's lock. The tier's faults (down, slow, a value that is
// not ours) are counted in SemanticCacheStats::shared_*, never thrown; `clear`, `save` and `load`
// stay local. Without a tier (`NoSharedTier`, the default) none of this is compiled.
//
// What it includes is what it needs by concept: `Embedder` (llmfast/embedder.hpp), `VectorIndex`
// (llmfast/vector_index.hpp), `EvictionPolicy` (llmfast/eviction_policy.hpp), `Clock`
// (llmfast/clock.hpp), plus llmfast/flat_index.hpp because `FlatIndex` is the default `Index`, and
// llmfast/hit_guards.hpp because `HitGuards` is part of the options. The embedder has no default:
// include llmfast/hashing_embedder.hpp for the built-in one.
//
// The semantic tier is OFF by default for a lexical embedder (`SemanticTier::Auto` reads
// `embedder_traits<E>::lexical`, which HashingEmbedder declares): on labelled paraphrase data
// HashingEmbedder with every guard does not reach the 0.95 precision a cache needs (see the quality
// table in docs/cache.md), and a wrong answer served from cache is worse than a miss. Opt in with
// `.semantic_tier = SemanticTier::On` when your prompts are templated enough that lexical similarity is
// safe, or plug in a sentence-embedding model.
//
// Thread-safety: every member function may be called concurrently. Entries live in `shards`
// independently locked partitions (a lookup locks one shard; eviction order and capacities are per
// shard), each scope's vector index has its own reader/writer lock (searches run in parallel), and the
// embedder runs outside all locks. `get_or_compute` runs `fn` once for concurrent misses on the same
// scope + normalized prompt; the others wait for its result or its exception (`begin`: the others
// get a Follower and wait without blocking). A Leader or Follower handle is used by one thread at a
// time; the cache must outlive it. `load` and `clear`
// are not atomic with respect to concurrent lookups (a lookup during `load` may miss). A shared tier
// may be attached, replaced or detached at any time; its change feed's callback runs on the tier's
// thread and takes the same locks as any caller; async completions run on the tier's workers.
//
// Time: the clock `C` (default: WallClock) gives wall-clock time, held in a `ClockRef<C>`; entries
// store creation and expiry as nanoseconds since the clock's epoch, so TTLs survive save/load across a
// restart. Tests inject `ManualClock` by reference: `SemanticCache<E, FlatIndex, ManualClock> c(clock)`.
//
// Errors: the constructor throws Error(InvalidArgument) for invalid options (the message names the
// field) and for a HitVerifier calibrated for another embedder or holding other guards than the
// options; `attach_shared` throws Error(HandlerFailed) when the tier's change feed cannot start (nothing
// else of a shared tier's is ever thrown: its faults are counted); `insert`, `get_or_compute` and `Leader::complete` throw Error(InvalidArgument) for a zero
// TTL, and propagate what `fn` throws, and what the embedder throws with `EmbedderFailure::Throw` (waiters of a single flight get the same
// exception; `Follower::try_result` / `wait` rethrow it); `Leader::complete` on an ended flight and
// the Follower calls on a cancelled Follower throw Error(Closed); `save` throws
// Error(IoError) naming the path; `load` throws Error(IoError) naming the path when the file cannot be
// opened or read (missing, a directory, a read error part way through: no std::ios_base::failure or
// std::filesystem::filesystem_error escapes), and `load`/`load_from_string` throw
// Error(CorruptSnapshot) when it is truncated, corrupted, of another version (the message names it)
// or written with another embedder — the cache is then unchanged.
//
// An embedder that throws (a dead embedding server, a timeout) does not fail the call by default
// (`SemanticCacheOptions::embedder_failure = EmbedderFailure::Miss`): a lookup skips the semantic tier
// (a miss unless the exact tier answers), an insert stores the entry for exact hits only — the response
// is still right for that prompt, and losing it would waste the computation — and `load` loads such
// entries exact-only; each is counted in `SemanticCacheStats::embedder_failures`. `EmbedderFailure::Throw`
// propagates the exception instead (nothing stored).
//
// Snapshots keep vectors (`SnapshotVectors::Auto`: unless the embedder is lexical, i.e. cheap to run):
// entries keep a copy of their embedding, `save` writes it (format version 2; version 1 files still
// load), and `load` uses it instead of embedding the prompt again when the embedder has an identity()
// (then matched against the snapshot's); prompts without a saved vector are embedded in batches.
//
// An embedding the semantic tier cannot use (all zeros, or any NaN / infinity) is not an error: that
// lookup skips the semantic tier (the exact tier still answers), that entry is stored for exact hits
// only, and `SemanticCacheStats::unusable_embeddings` counts it. Nothing non-finite reaches the index.
#pragma once

#include <llmfast/version.hpp>
#include <llmfast/clock.hpp>
#include <llmfast/detail/cache_key.hpp>
#include <llmfast/detail/cache_shard.hpp>
#include <llmfast/detail/cache_snapshot.hpp>
#include <llmfast/detail/file_io.hpp>
#include <llmfast/detail/verified_step.hpp>
#include <llmfast/detail/saturating.hpp>
#include <llmfast/detail/scope_registry.hpp>
#include <llmfast/detail/single_flight.hpp>
#include <llmfast/embedder.hpp>
#include <llmfast/error.hpp>
#include <llmfast/eviction_policy.hpp>
#include <llmfast/flat_index.hpp>
#include <llmfast/hit_guards.hpp>
#include <llmfast/shared_tier.hpp>
#include <llmfast/subscription.hpp>
#include <llmfast/vector_index.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <fmt/format.h>

LLMFAST_BEGIN_NAMESPACE

namespace detail {
// The handle type of a shared tier's change feed (what `follow` returns), or a placeholder.
template <class T, bool = shared_tier_traits<T>::has_change_feed>
struct SharedFollowHandle {
    using type = std::monostate;
};
template <class T>
struct SharedFollowHandle<T, true> {
    using type = decltype(std::declval<T&>().follow(std::declval<SharedFollowCallback>()));
};
}  // namespace detail

enum class SemanticTier : std::uint8_t {
    Auto,  ///< on, unless the embedder is lexical (`embedder_traits<E>::lexical`) and the HitVerifier does not recommend it
    On,    ///< always on
    Off,   ///< exact tier only; nothing is embedded
};

/// What a failing embedder (it threw: a dead embedding server, a timeout, a malformed answer) does
/// to the cache's call.
enum class EmbedderFailure : std::uint8_t {
    Miss,   ///< lookups: the semantic tier is skipped (a miss unless the exact tier answers); inserts:
            ///< the entry is stored for exact hits only. Counted in `SemanticCacheStats::embedder_failures`.
    Throw,  ///< the embedder's exception propagates (nothing is stored)
};

/// Whether entries keep their embedding so `save` can write it and `load` need not re-embed.
enum class SnapshotVectors : std::uint8_t {
    Auto,  ///< on unless the embedder is lexical (`embedder_traits<E>::lexical`: cheap to re-embed)
    On,    ///< keep them (costs dimension * 4 bytes per entry, counted in memory_bytes)
    Off,   ///< re-embed on load (snapshots carry no vectors)
};

struct SemanticCacheOptions {
    /// An entry's time to live unless `insert` overrides it; `never` disables expiry.
    static constexpr std::chrono::nanoseconds never = std::chrono::nanoseconds::max();

    std::size_t max_entries = 100'000;                ///< capacity in entries (> 0)
    std::size_t max_bytes = std::size_t{1} << 30;     ///< capacity in bytes of entries, vectors included (> 0)
    std::chrono::nanoseconds ttl = std::chrono::hours(24);  ///< > 0
    SemanticTier semantic_tier = SemanticTier::Auto;
    float similarity_threshold = 0.9F;   ///< cosine in (0, 1]: a semantic hit needs at least this
    std::size_t semantic_candidates = 4; ///< nearest entries examined when the best is vetoed or expired (>= 1)
    HitGuards guards{};                  ///< vetoes for semantic hits (the verifier step)
    double max_wrong_hit_rate = 0.05;    ///< δ in (0, 1): with a HitVerifier, the share of semantic hits allowed to be wrong
    std::size_t shards = 16;             ///< independently locked partitions (>= 1; capped at max_entries)
    EmbedderFailure embedder_failure = EmbedderFailure::Miss;  ///< see EmbedderFailure
    SnapshotVectors snapshot_vectors = SnapshotVectors::Auto;  ///< see SnapshotVectors
    /// With a shared tier that has locks (`shared_tier_traits<S>::has_lock`): how long `get_or_compute`
    /// waits for another replica that computes the same prompt before computing locally (>= 0; 0 =
    /// never wait). Measured on the steady clock, not the cache's clock.
    std::chrono::milliseconds shared_lock_wait{200};
    /// The cross-replica lock's expiry in the shared tier (> 0): a replica that dies while computing
    /// blocks the others for at most this (they compute themselves after `shared_lock_wait` anyway).
    std::chrono::milliseconds shared_lock_ttl{5000};
};

enum class MatchKind : std::uint8_t {
    Miss,       ///< nothing usable cached
    Exact,      ///< same scope and normalized prompt
    Semantic,   ///< a different prompt of the same scope, similar enough and not vetoed
    Computed,   ///< get_or_compute ran the function in this call; `Leader::complete`'s result
    Coalesced,  ///< a follower: got a concurrent leader's response (same scope and key), from get_or_compute or `begin`
};

constexpr std::string_view to_string(MatchKind kind) noexcept {
    switch (kind) {
        case MatchKind::Miss: return "Miss";
        case MatchKind::Exact: return "Exact";
        case MatchKind::Semantic: return "Semantic";
        case MatchKind::Computed: return "Computed";
        case MatchKind::Coalesced: return "Coalesced";
    }
    return "Unknown";
}

/// The outcome of `lookup` / `get_or_compute`. The response is shared (no copy on a hit).
struct LookupResult {
    MatchKind match = MatchKind::Miss;
    float similarity = 0;                  ///< 1 for Exact/Computed/Coalesced; the cosine for Semantic
    std::chrono::nanoseconds age{0};       ///< how long ago the entry was inserted
    std::shared_ptr<const std::string> response_ptr;
    double verified_probability = 0;  ///< Semantic: the HitVerifier's probability that it is right (1: guards only)
    std::weak_ptr<detail::VerifierScopeState> verifier_scope{};  ///< internal: the scope whose monitor `report` feeds

    [[nodiscard]] bool hit() const noexcept { return response_ptr != nullptr; }
    explicit operator bool() const noexcept { return hit(); }
    /// The cached (or computed) response; an empty string on a miss.
    [[nodiscard]] const std::string& response() const noexcept {
        static const std::string empty;
        return response_ptr ? *response_ptr : empty;
    }
};

/// A snapshot of SemanticCache's counters (`stats()`).
struct SemanticCacheStats {
    std::uint64_t exact_hits = 0;
    std::uint64_t semantic_hits = 0;
    std::uint64_t misses = 0;
    std::uint64_t insertions = 0;
    std::uint64_t evictions = 0;    ///< removed to respect max_entries / max_bytes
    std::uint64_t expirations = 0;  ///< removed because their TTL passed
    std::uint64_t guard_vetoes = 0; ///< semantic candidates rejected by the verifier step (the hit guards)
    std::uint64_t computations = 0; ///< leaders: get_or_compute calls that ran their function, `begin` calls that got a Leader
    std::uint64_t coalesced = 0;    ///< followers (get_or_compute or `begin`) that received a leader's response
    std::uint64_t abandoned = 0;    ///< flights ended by `Leader::abandon` (or a Leader dropped): nothing stored
    /// Embeddings the semantic tier could not use (zero, NaN or infinite): that lookup skipped the
    /// semantic tier, that entry was stored for exact hits only.
    std::uint64_t unusable_embeddings = 0;
    /// Embedder calls that threw, with `EmbedderFailure::Miss`: the lookup skipped the semantic tier,
    /// the entry was stored for exact hits only (on load: loaded for exact hits only).
    std::uint64_t embedder_failures = 0;
    /// Entries whose vector `load` took from the snapshot instead of embedding the prompt again.
    std::uint64_t vectors_loaded = 0;
    // ---- the verifier step (all zero with the guards alone) ----
    std::uint64_t verifier_rejections = 0;  ///< candidates below their scope's operating point (or in an exhausted scope)
    std::uint64_t reported_hits = 0, reported_wrong = 0;  ///< outcomes given to `report`, and how many were wrong
    std::uint64_t threshold_raises = 0;     ///< times a scope's operating point went up on reported wrong hits
    std::size_t exhausted_scopes = 0;       ///< scopes serving no semantic hit: even their surest hits were wrong too often
    // ---- the shared tier (`attach_shared`; all zero without one) ----
    /// Local misses answered by the shared tier (stored locally, served as MatchKind::Exact). Also
    /// counted in `exact_hits`: shared_hits <= exact_hits, and hit_rate() counts each lookup once.
    std::uint64_t shared_hits = 0;
    std::uint64_t shared_misses = 0;       ///< the shared tier answered: not there (or expired by this cache's clock)
    std::uint64_t shared_unavailable = 0;  ///< the shared tier did not answer in its bound (down, slow, restarting): went on local-only
    /// Entries from the shared tier (lookup or change feed) whose prompt does not hash to their key, or
    /// a feed record with a malformed key: never served or stored. A value the tier itself cannot
    /// decode is a NotFound to the cache (a shared miss), counted in the tier's own stats.
    std::uint64_t shared_corrupt = 0;
    std::uint64_t shared_writes = 0;           ///< write-through inserts, erases and scope purges the tier applied
    std::uint64_t shared_write_failures = 0;   ///< write-throughs the tier did not apply (Unavailable, or it threw): never thrown to the caller
    std::uint64_t shared_applied = 0;          ///< change-feed inserts stored locally (other replicas'; ours only when our copy was evicted or erased meanwhile)
    std::uint64_t shared_tombstones_applied = 0;  ///< change-feed erase / purge records applied locally
    std::uint64_t shared_gaps = 0;             ///< the change feed lost its place (trimmed): the tier replays live entries
    std::uint64_t shared_resets = 0;           ///< the change feed found the store emptied (restart without persistence): local entries kept
    std::uint64_t shared_lock_waits = 0;       ///< get_or_compute found another replica computing the prompt and waited for it
    std::uint64_t shared_lock_timeouts = 0;    ///< ... and its entry did not appear within shared_lock_wait: computed locally
    std::size_t entries = 0;
    std::size_t memory_bytes = 0;   ///< accounted bytes of all entries (strings, vectors, bookkeeping)

    [[nodiscard]] double hit_rate() const noexcept {
        const std::uint64_t lookups = exact_hits + semantic_hits + misses;
        return lookups == 0 ? 0.0 : static_cast<double>(exact_hits + semantic_hits) / static_cast<double>(lookups);
    }
};

/// The response cache. `E` embeds prompts for the semantic tier (models `Embedder`); `Index` is the
/// per-scope vector index (`VectorIndex`: FlatIndex, exact; HnswIndex from llmfast/hnsw_index.hpp,
/// approximate, for millions); `C` is the clock (`Clock`, wall clock by default); `Policy` picks a
/// shard's eviction victim (`EvictionPolicy`: LruPolicy by default, or LfuPolicy); `Shared` is the
/// type of a store shared by several replicas (`SharedTier`, llmfast/shared_tier.hpp: RedisTier from
/// llmfast/redis_tier.hpp), attached with `attach_shared`; the default `NoSharedTier` compiles all
/// of that away.
/// Thread-safety: every member function may be called concurrently (see the header comment).
template <class E, class Index = FlatIndex, class C = WallClock, class Policy = LruPolicy, class Shared = NoSharedTier,
          class V = GuardsOnly>
class SemanticCache {
    static_assert(Embedder<E>, "llmfast::SemanticCache<E>: E must model llmfast::Embedder — it needs dimension() "
                               "and a const embed(std::string_view, std::span<float>)");
    static_assert(VectorIndex<Index>,
                  "llmfast::SemanticCache<E, Index>: Index must model llmfast::VectorIndex — it needs "
                  "Index::Options, Index(std::size_t, const Options&), dimension(), size(), add(id, span), "
                  "remove(id) and search(span, k) returning std::vector<SearchHit>");
    static_assert(Clock<C>, "llmfast::SemanticCache<E, Index, C>: C must model llmfast::Clock — it needs nested "
                            "`duration` and `time_point` and a const now()");
    static_assert(EvictionPolicy<Policy>,
                  "llmfast::SemanticCache<E, Index, C, Policy>: Policy must model llmfast::EvictionPolicy — it needs "
                  "a default constructor, a nested default-constructible `Hook`, on_insert(Hook&), noexcept "
                  "on_access(Hook&) and on_remove(Hook&), and victim(const Hook*) returning Hook*");
    static_assert(std::is_same_v<Shared, NoSharedTier> || SharedTier<Shared>,
                  "llmfast::SemanticCache<E, Index, C, Policy, Shared>: Shared must model llmfast::SharedTier (or be "
                  "llmfast::NoSharedTier) — it needs lookup(scope, key) -> SharedLookup, insert(const SharedEntry&), "
                  "erase(scope, key) and purge_scope(scope) -> SharedStatus");
    static_assert(std::same_as<V, GuardsOnly> || HitVerifier<V>,
                  "llmfast::SemanticCache<E, Index, C, Policy, Shared, V>: V must be GuardsOnly or model llmfast::HitVerifier — it needs a "
                  "const probability(std::string_view, std::string_view, float)");

public:
    using Options = SemanticCacheOptions;
    using IndexOptions = typename Index::Options;
    using EmbedderType = E;
    using IndexType = Index;
    using ClockType = C;
    using PolicyType = Policy;
    using SharedTierType = Shared;
    using VerifierType = V;

    /// With a stateless clock (the default WallClock).
    explicit SemanticCache(E embedder = E{}, Options options = {}, IndexOptions index_options = {}, V verifier = V{})
        requires ClockRef<C>::stateless
        : SemanticCache(ClockRef<C>(), std::move(embedder), options, std::move(index_options), std::move(verifier)) {}

    /// With `clock` (which must outlive the cache when it is stateful, e.g. ManualClock).
    explicit SemanticCache(const C& clock, E embedder = E{}, Options options = {}, IndexOptions index_options = {}, V verifier = V{})
        : SemanticCache(ClockRef<C>(clock), std::move(embedder), options, std::move(index_options), std::move(verifier)) {}

    SemanticCache(const SemanticCache&) = delete;
    SemanticCache& operator=(const SemanticCache&) = delete;
    /// Stops following the shared tier's change feed (joins its thread) before anything else goes.
    ~SemanticCache() { detach_shared_locked_out(); }

    /// Attaches a shared tier (before first use or at any time; thread-safe); nullptr detaches. The
    /// cache keeps the shared_ptr, so the tier lives while the cache uses it (also through async calls
    /// in flight). With a change feed (`shared_tier_traits<Shared>::has_change_feed`) the cache follows
    /// it from now on: other replicas' inserts (with their embeddings) enter the local exact tier and
    /// vector index, their erase / purge tombstones apply locally. Replacing or detaching a tier stops
    /// the old feed first (waits for its thread). What is already local stays. Throws
    /// Error(HandlerFailed) when the tier's `follow` throws (e.g. no thread could be started): the
    /// cache is then left without a tier.
    void attach_shared(std::shared_ptr<Shared> tier)
        requires(!std::is_same_v<Shared, NoSharedTier>)
    {
        std::lock_guard attach_lock(shared_.attach_mutex);
        if constexpr (shared_tier_traits<Shared>::has_change_feed) shared_.follow.reset();
        std::shared_ptr<Shared> old;
        {
            std::lock_guard lock(shared_.mutex);
            old = std::exchange(shared_.tier, tier);
        }
        old.reset();  // outside the lock: a tier's destructor may answer its queued async calls
        if constexpr (shared_tier_traits<Shared>::has_change_feed) {
            if (!tier) return;
            try {
                shared_.follow.emplace(tier->follow([this](const SharedChange& change) { apply_shared_change(change); }));
            } catch (const std::exception& e) {
                // Without its feed the tier would serve exact hits but never the semantic ones it
                // promises: leave no tier attached, and say why.
                {
                    std::lock_guard lock(shared_.mutex);
                    shared_.tier.reset();
                }
                throw Error(ErrorCode::HandlerFailed,
                            fmt::format("SemanticCache::attach_shared: the shared tier's change feed did not start ({})", e.what()));
            }
        }
    }

    /// True while a shared tier is attached.
    [[nodiscard]] bool shared_attached() const noexcept {
        if constexpr (has_shared) {
            std::lock_guard lock(shared_.mutex);
            return shared_.tier != nullptr;
        } else {
            return false;
        }
    }

    [[nodiscard]] const Options& options() const noexcept { return options_; }
    [[nodiscard]] const E& embedder() const noexcept { return embedder_; }
    [[nodiscard]] bool semantic_enabled() const noexcept { return semantic_; }

    /// Exact tier, then (if enabled) semantic tier. Never throws for ordinary input; an embedder
    /// failure is a counted miss (`EmbedderFailure::Miss`, the default) or propagates (`Throw`).
    LookupResult lookup(std::string_view prompt, std::string_view scope) {
        return lookup_keyed(detail::prompt_cache_key(scope, prompt), prompt, scope);
    }

    /// Stores `response` for (`scope`, `prompt`), replacing an entry with the same normalized prompt.
    /// `ttl` overrides the cache's TTL. Returns false when the entry alone exceeds a shard's byte
    /// budget (max_bytes / shards) and so was not stored.
    bool insert(std::string_view prompt, std::string_view scope, std::string response,
                std::optional<std::chrono::nanoseconds> ttl = std::nullopt) {
        const std::chrono::nanoseconds entry_ttl = checked_ttl(ttl, "SemanticCache::insert");
        const detail::CacheKey key = detail::prompt_cache_key(scope, prompt);
        Prepared prepared = prepare(key, scope, make_text(prompt, std::move(response)));
        stamp(prepared, entry_ttl);
        return insert_and_share(std::move(prepared), false);
    }

    class Leader;
    class Follower;
    /// What `begin` returns: the cached entry (a hit), or this caller's role in the single flight.
    using Flight = std::variant<LookupResult, Leader, Follower>;

    /// The non-blocking first step of a single flight (see "Single flight without blocking" in the
    /// file comment). Looks the prompt up (exact tier, then semantic; as `lookup`, counted the same),
    /// then, under the shard's lock:
    /// - `LookupResult` (Exact / Semantic): a hit, nothing to compute;
    /// - `Leader`: no flight was running for (scope, normalized prompt); this caller computes and ends
    ///   it with `complete`, `fail` or `abandon` (destroying the Leader abandons);
    /// - `Follower`: another caller leads; wait with `on_ready` + `try_result` (or `wait`).
    /// Never blocks on another caller's computation. Throws what the embedder throws.
    [[nodiscard]] Flight begin(std::string_view prompt, std::string_view scope) {
        return begin_keyed(detail::prompt_cache_key(scope, prompt), prompt, scope);
    }

    /// The callback form of `begin`, for event loops with a shared tier: `done(Flight)` is called
    /// exactly once with what `begin` would return (counted the same). The exact tier answers on this
    /// thread; on a local miss with an attached tier that has `lookup_async` (RedisTier), the tier's
    /// lookup, the semantic tier and the flight's join-or-start run on the tier's worker thread, so
    /// this thread never waits for the network — `done` may run on either thread (post it to your
    /// executor). Without such a tier: `done(begin(prompt, scope))` here. `prompt` and `scope` need
    /// only live until this returns; the cache must outlive the call; `done` must not throw and may
    /// be move-only. With `EmbedderFailure::Throw` and no tier, the embedder's exception propagates
    /// (then `done` is not called); on the worker an embedder failure is a miss.
    template <class F>
        requires std::invocable<std::decay_t<F>&, Flight&&> && std::constructible_from<std::decay_t<F>, F>
    void begin_async(std::string_view prompt, std::string_view scope, F&& done) {
        if constexpr (shared_tier_traits<Shared>::has_lookup_async) {
            if (std::shared_ptr<Shared> tier = shared_tier()) {
                begin_async_shared(*tier, prompt, scope, std::forward<F>(done));
                return;
            }
        }
        std::decay_t<F> callback(std::forward<F>(done));
        std::invoke(callback, begin(prompt, scope));
    }

    /// The cached response, or `fn()`'s result (stored, then returned). Concurrent calls that miss on
    /// the same scope + normalized prompt run `fn` once (that call's match is Computed); the others
    /// wait and get its result (match Coalesced) or its exception. `fn` must return something
    /// convertible to std::string. Blocking: built on `begin`; a leader that abandons (a `begin`
    /// caller whose stream was interrupted) sends its waiters back to `begin`, one of which computes.
    template <class Fn>
        requires std::invocable<Fn&> && std::convertible_to<std::invoke_result_t<Fn&>, std::string>
    LookupResult get_or_compute(std::string_view prompt, std::string_view scope, Fn&& fn,
                                std::optional<std::chrono::nanoseconds> ttl = std::nullopt) {
        const std::chrono::nanoseconds entry_ttl = checked_ttl(ttl, "SemanticCache::get_or_compute");
        const detail::CacheKey key = detail::prompt_cache_key(scope, prompt);
        for (;;) {
            Flight flight = begin_keyed(key, prompt, scope);
            if (LookupResult* cached = std::get_if<LookupResult>(&flight)) return std::move(*cached);
            if (Leader* leader = std::get_if<Leader>(&flight)) {
                if constexpr (shared_tier_traits<Shared>::has_lock) {
                    if (std::optional<LookupResult> other = cross_replica_flight(*leader, key, scope)) return std::move(*other);
                }
                std::string response;
                try {
                    response = std::string(std::invoke(fn));
                } catch (...) {
                    leader->fail(std::current_exception());
                    throw;
                }
                return leader->complete(std::move(response), entry_ttl);
            }
            LookupResult waited = std::get<Follower>(flight).wait();  // rethrows the leader's exception
            if (waited) return waited;                                // Coalesced
            // The leader abandoned: begin again (someone becomes the next leader).
        }
    }

    /// The async form of `lookup`: `done(LookupResult)` is called exactly once with what `lookup`
    /// would return (counted the same). With an in-process embedder every tier does bounded CPU work,
    /// so `done` runs on this thread before `lookup_async` returns. With an embedder that has
    /// `embed_async` (a network embedder: llmfast/openai_embedder.hpp) the exact tier still answers
    /// on this thread, and when the semantic tier must embed the prompt, `done` runs later on the
    /// embedder's thread — so callers must accept both (an event loop posts the result to its
    /// executor), and the cache must outlive the call. `prompt` and `scope` need only live until
    /// `lookup_async` returns. `done` must not throw. An embedder failure reported through
    /// `embed_async` is always a counted miss (`embedder_failures`: there is no caller left to throw
    /// to); with a synchronous embedder and `EmbedderFailure::Throw` its exception propagates from
    /// this call, and `done` is then not called. With a shared tier that has `lookup_async`
    /// (RedisTier), a local exact miss goes to the tier's worker, which stores a shared hit locally or
    /// runs the semantic tier there, then calls `done` (a move-only `done` is fine); a tier without
    /// it is asked with its blocking `lookup` on this thread (bounded by the tier).
    template <class F>
        requires std::invocable<std::decay_t<F>&, LookupResult> && std::constructible_from<std::decay_t<F>, F>
    void lookup_async(std::string_view prompt, std::string_view scope, F&& done) {
        if constexpr (shared_tier_traits<Shared>::has_lookup_async) {
            if (std::shared_ptr<Shared> tier = shared_tier()) {
                lookup_async_shared(*tier, prompt, scope, std::forward<F>(done));
                return;
            }
        }
        std::decay_t<F> callback(std::forward<F>(done));
        if constexpr (embedder_traits<E>::has_embed_async) {
            const detail::CacheKey key = detail::prompt_cache_key(scope, prompt);
            LookupResult first = lookup_exact(key, now_ns());
            if (!first) first = lookup_shared(key, scope);
            std::shared_ptr<Scope> target = (first || !semantic_) ? nullptr : semantic_scope(scope);
            if (first || !target) {
                if (!first) stats_.misses.fetch_add(1, std::memory_order_relaxed);
                std::invoke(callback, std::move(first));
                return;
            }
            embedder_.embed_async(prompt, [this, target = std::move(target), text = std::string(prompt),
                                           callback = std::move(callback)](std::vector<float>&& vector, std::exception_ptr error) mutable {
                std::invoke(callback, search_embedded(text, target, vector, error));
            });
        } else {
            LookupResult result = lookup(prompt, scope);
            std::invoke(callback, std::move(result));
        }
    }

    /// Feedback on a Semantic hit the HitVerifier served: the application learned whether its answer
    /// was right. Feeds the hit's scope's monitor, which raises the scope's operating point when wrong
    /// hits exceed max_wrong_hit_rate. False (ignored) for other results (misses, Exact hits, hits of
    /// another cache, hits of a scope erased since) or without a HitVerifier.
    bool report(const LookupResult& hit, bool right) { return verifier_.report(hit.verifier_scope, hit.verified_probability, right); }

    /// Removes the entry for (`scope`, normalized `prompt`); false if there was none. With a shared
    /// tier attached, also erases it there (a tombstone every replica applies; bounded, a failure is
    /// counted, never thrown) and returns true when either held it.
    bool erase(std::string_view prompt, std::string_view scope) {
        const detail::CacheKey key = detail::prompt_cache_key(scope, prompt);
        bool erased = erase_local(key);
        if constexpr (has_shared) {
            if (std::shared_ptr<Shared> tier = shared_tier()) {
                const SharedStatus status = shared_call([&] { return tier->erase(scope, detail::cache_key_hex(key)); });
                count_write(status != SharedStatus::Unavailable);
                erased = erased || status == SharedStatus::Ok;
                // A shared lookup whose GET ran before the tier's erase may have stored the entry
                // since the first removal: remove it again (later ones see the bump and do not store).
                count_erasure();
                erased = erase_local(key) || erased;
            }
        }
        return erased;
    }

    /// Removes every entry of `scope`; returns how many (locally). Entries inserted into the scope while
    /// this runs may survive (they are then in a fresh scope). With a shared tier attached, also purges
    /// the scope there (every replica applies the tombstone; administrative: the tier may need several
    /// round trips; a failure is counted, never thrown).
    std::size_t erase_scope(std::string_view scope) {
        const std::size_t removed = erase_scope_local(scope);
        if constexpr (has_shared) {
            if (std::shared_ptr<Shared> tier = shared_tier()) {
                count_write(shared_call([&] { return tier->purge_scope(scope); }) != SharedStatus::Unavailable);
                count_erasure();  // shared lookups asked before the purge do not store what they found
            }
        }
        return removed;
    }

    /// Removes every entry — locally only: a shared tier keeps its entries (use `erase_scope` to
    /// remove a scope everywhere).
    void clear() {
        scopes_.detach_all();
        verifier_.forget_all();
        remove_entries_if([](const Entry&) { return true; });
    }

    /// Removes every expired entry now (lookups also drop expired entries they meet); returns how many.
    std::size_t purge_expired() {
        const std::int64_t now = now_ns();
        const std::size_t removed = remove_entries_if([&](const Entry& entry) { return expired(entry, now); });
        stats_.expirations.fetch_add(removed, std::memory_order_relaxed);
        return removed;
    }

    [[nodiscard]] std::size_t size() const noexcept { return entry_count_.load(std::memory_order_relaxed); }

    [[nodiscard]] SemanticCacheStats stats() const noexcept {
        SemanticCacheStats s;
        s.exact_hits = stats_.exact_hits.load(std::memory_order_relaxed);
        s.semantic_hits = stats_.semantic_hits.load(std::memory_order_relaxed);
        s.misses = stats_.misses.load(std::memory_order_relaxed);
        s.insertions = stats_.insertions.load(std::memory_order_relaxed);
        s.evictions = stats_.evictions.load(std::memory_order_relaxed);
        s.expirations = stats_.expirations.load(std::memory_order_relaxed);
        s.guard_vetoes = stats_.guard_vetoes.load(std::memory_order_relaxed);
        s.computations = stats_.computations.load(std::memory_order_relaxed);
        s.coalesced = stats_.coalesced.load(std::memory_order_relaxed);
        s.abandoned = stats_.abandoned.load(std::memory_order_relaxed);
        s.unusable_embeddings = stats_.unusable_embeddings.load(std::memory_order_relaxed);
        s.embedder_failures = stats_.embedder_failures.load(std::memory_order_relaxed);
        s.vectors_loaded = stats_.vectors_loaded.load(std::memory_order_relaxed);
        if constexpr (has_shared) {
            const SharedCounters& c = *shared_.counters;
            const auto get = [](const std::atomic<std::uint64_t>& n) { return n.load(std::memory_order_relaxed); };
            s.shared_hits = get(c.hits);
            s.shared_misses = get(c.misses);
            s.shared_unavailable = get(c.unavailable);
            s.shared_corrupt = get(c.corrupt);
            s.shared_writes = get(c.writes);
            s.shared_write_failures = get(c.write_failures);
            s.shared_applied = get(c.applied);
            s.shared_tombstones_applied = get(c.tombstones_applied);
            s.shared_gaps = get(c.gaps);
            s.shared_resets = get(c.resets);
            s.shared_lock_waits = get(c.lock_waits);
            s.shared_lock_timeouts = get(c.lock_timeouts);
        }
        s.entries = entry_count_.load(std::memory_order_relaxed);
        s.memory_bytes = memory_bytes_.load(std::memory_order_relaxed);
        verifier_.fill_stats(s);
        return s;
    }

    /// The snapshot as bytes (see `save`).
    [[nodiscard]] std::string save_to_string() const {
        std::string out;
        detail::StringSnapshotSink sink{out};
        write_snapshot(sink);
        return out;
    }

    /// Writes a snapshot to `path` atomically: streamed into a temporary file beside it (flushed to
    /// disk), then renamed over `path`, so a crash leaves either the old snapshot or the new one,
    /// never half of one. The snapshot is never held whole in memory. Throws Error(IoError) naming
    /// the path when the file cannot be created, written or renamed.
    void save(const std::filesystem::path& path) const {
        detail::AtomicFileWriter file(path, "SemanticCache::save");
        write_snapshot(file);
        file.commit();
    }

    /// Replaces the cache's content with the snapshot's (expired entries are dropped; if it holds more
    /// than the capacity, the least recently used are evicted — the snapshot is in one recency order
    /// for the whole cache, so this holds whatever shard count either cache has; as everywhere in the
    /// cache, capacity is per shard, so each shard keeps its own most recently used). Validates
    /// everything first: on any error the cache is unchanged. When the semantic tier is on, uses the
    /// snapshot's vectors (embedder with an identity()) and embeds the other prompts in batches
    /// (outside locks; `SemanticCacheStats::vectors_loaded` counts the former).
    void load_from_string(std::string_view bytes) {
        std::vector<Prepared> prepared = prepare_snapshot(bytes);
        clear();
        for (Prepared& entry : prepared) insert_prepared(std::move(entry), false);
    }

    /// `load_from_string` of the file at `path`. A path that cannot be opened or read (missing, a
    /// directory, a read error part way through) throws Error(IoError) naming the path, and the cache
    /// is unchanged.
    void load(const std::filesystem::path& path) {
        load_from_string(detail::read_whole_file(path, "SemanticCache::load"));
    }

private:
    using Scope = detail::CacheScope<Index>;
    using Verifier = detail::verifier_step_t<V>;

    /// An entry's prompt (as inserted: re-embedded on load, and what the verifier saw) and response,
    /// in one shared block; lookups hand out the response through an aliasing pointer.
    struct EntryText {
        std::string prompt;
        std::string response;
    };

    struct Entry {
        std::uint64_t id = 0;
        detail::CacheKey key;
        std::shared_ptr<Scope> scope;
        std::shared_ptr<const EntryText> text;
        typename Verifier::EntryData verify;
        std::int64_t created = 0;
        std::int64_t expires = 0;
        std::size_t bytes = 0;
        std::uint64_t last_use = 0;  // next_use_ when inserted or last hit (taken under the shard lock)
        bool indexed = false;        // its vector is in scope->index under id
        std::shared_ptr<const std::vector<float>> vector;  // kept for snapshots (keep_vectors_), else null
    };

    using Store = detail::CacheShard<Entry, Policy>;
    using Node = typename Store::Node;
    using Flights = detail::SingleFlight<std::shared_ptr<const std::string>>;

    // One partition: storage and eviction (Store) and in-flight computations, under one mutex.
    // Lock order: shard mutex, then the scope registry's, then a scope's; never the reverse.
    struct alignas(64) Shard {
        std::mutex mutex;
        Store store;
        Flights flights;
    };

    // Everything an insertion needs that can be computed (and can fail) outside the locks.
    struct Prepared {
        detail::CacheKey key;
        std::string_view scope;  // valid while the caller's argument (or the snapshot's bytes) is
        std::shared_ptr<const EntryText> text;
        typename Verifier::EntryData verify;
        std::vector<float> vector;  // empty when the semantic tier is off or the embedding is unusable
        std::int64_t created = 0;
        std::int64_t expires = 0;
    };

    struct Counters {
        std::atomic<std::uint64_t> exact_hits{0}, semantic_hits{0}, misses{0}, insertions{0}, evictions{0},
            expirations{0}, guard_vetoes{0}, computations{0}, coalesced{0}, abandoned{0}, unusable_embeddings{0},
            embedder_failures{0}, vectors_loaded{0};
    };

    static bool semantic_for(SemanticTier tier, const Verifier& verifier) noexcept {
        switch (tier) {
            case SemanticTier::On: return true;
            case SemanticTier::Off: return false;
            case SemanticTier::Auto: return !embedder_traits<E>::lexical || verifier.recommends_semantic_tier();
        }
        return false;
    }

    static bool keep_vectors_for(SnapshotVectors mode) noexcept {
        switch (mode) {
            case SnapshotVectors::On: return true;
            case SnapshotVectors::Off: return false;
            case SnapshotVectors::Auto: return !embedder_traits<E>::lexical;
        }
        return false;
    }

    static const Options& validated(const Options& options) {
        if (options.max_entries == 0) {
            throw Error(ErrorCode::InvalidArgument, fmt::format("SemanticCacheOptions::max_entries must be > 0 (got {})", options.max_entries));
        }
        if (options.max_bytes == 0) {
            throw Error(ErrorCode::InvalidArgument, fmt::format("SemanticCacheOptions::max_bytes must be > 0 (got {})", options.max_bytes));
        }
        if (options.ttl <= std::chrono::nanoseconds::zero()) {
            throw Error(ErrorCode::InvalidArgument,
                        fmt::format("SemanticCacheOptions::ttl must be > 0, Options::never for no expiry (got {} ns)",
                                    options.ttl.count()));
        }
        if (!(options.similarity_threshold > 0.0F && options.similarity_threshold <= 1.0F)) {
            throw Error(ErrorCode::InvalidArgument, fmt::format("SemanticCacheOptions::similarity_threshold must be in (0, 1] (got {})",
                                                                options.similarity_threshold));
        }
        if (options.semantic_candidates == 0) {
            throw Error(ErrorCode::InvalidArgument,
                        fmt::format("SemanticCacheOptions::semantic_candidates must be >= 1 (got {})", options.semantic_candidates));
        }
        if (options.shards == 0) {
            throw Error(ErrorCode::InvalidArgument, fmt::format("SemanticCacheOptions::shards must be >= 1 (got {})", options.shards));
        }
        if (options.shared_lock_wait < std::chrono::milliseconds::zero()) {
            throw Error(ErrorCode::InvalidArgument,
                        fmt::format("SemanticCacheOptions::shared_lock_wait must be >= 0 (got {} ms)", options.shared_lock_wait.count()));
        }
        if (options.shared_lock_ttl <= std::chrono::milliseconds::zero()) {
            throw Error(ErrorCode::InvalidArgument,
                        fmt::format("SemanticCacheOptions::shared_lock_ttl must be > 0 (got {} ms)", options.shared_lock_ttl.count()));
        }
        return options;
    }

    static std::size_t checked_dimension(const E& embedder) {
        const auto dimension = static_cast<std::size_t>(embedder.dimension());
        if (dimension == 0) throw Error(ErrorCode::InvalidArgument, "SemanticCache::SemanticCache: the embedder's dimension is 0");
        return dimension;
    }

    SemanticCache(ClockRef<C> clock, E embedder, const Options& options, IndexOptions index_options, V verifier)
        : embedder_(std::move(embedder)), options_(validated(options)), clock_(clock),
          dimension_(checked_dimension(embedder_)), identity_(embedder_identity(embedder_)),
          verifier_(std::move(verifier), options_.guards, options_.max_wrong_hit_rate, identity_),
          semantic_(semantic_for(options_.semantic_tier, verifier_)), keep_vectors_(semantic_ && keep_vectors_for(options_.snapshot_vectors)),
          shard_count_(std::min(options_.shards, options_.max_entries)),
          shards_(std::make_unique<Shard[]>(shard_count_)), scopes_(semantic_, dimension_, std::move(index_options)) {
        for (std::size_t i = 0; i < shard_count_; ++i) {
            // Split the capacities so the shards sum to exactly the configured totals.
            shards_[i].store.set_budget(
                options_.max_entries / shard_count_ + (i < options_.max_entries % shard_count_ ? 1 : 0),
                std::max<std::size_t>(1, options_.max_bytes / shard_count_ + (i < options_.max_bytes % shard_count_ ? 1 : 0)));
        }
    }

    std::chrono::nanoseconds checked_ttl(std::optional<std::chrono::nanoseconds> ttl, std::string_view where) const {
        const std::chrono::nanoseconds entry_ttl = ttl.value_or(options_.ttl);
        if (entry_ttl <= std::chrono::nanoseconds::zero()) {
            throw Error(ErrorCode::InvalidArgument, fmt::format("{}: ttl must be > 0 (got {} ns)", where, entry_ttl.count()));
        }
        return entry_ttl;
    }

    [[nodiscard]] std::int64_t now_ns() const {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_.now().time_since_epoch()).count();
    }

    // now + ttl, clamped to the representable range (detail/saturating.hpp).
    static std::int64_t expiry(std::int64_t now, std::chrono::nanoseconds ttl) noexcept {
        return detail::saturating_add(std::chrono::nanoseconds(now), ttl).count();
    }

    void stamp(Prepared& prepared, std::chrono::nanoseconds ttl) const {
        const std::int64_t now = now_ns();
        prepared.created = now;
        prepared.expires = expiry(now, ttl);
    }

    static std::shared_ptr<const EntryText> make_text(std::string_view prompt, std::string response) {
        return std::make_shared<const EntryText>(EntryText{std::string(prompt), std::move(response)});
    }
    static std::shared_ptr<const std::string> response_of(const std::shared_ptr<const EntryText>& text) noexcept {
        return std::shared_ptr<const std::string>(text, &text->response);
    }

    Shard& shard_for(const detail::CacheKey& key) const noexcept { return shards_[key.high % shard_count_]; }

    static bool expired(const Entry& entry, std::int64_t now) noexcept { return entry.expires <= now; }

    static LookupResult hit(MatchKind kind, float similarity, const Entry& entry, std::int64_t now) {
        return LookupResult{kind, similarity, std::chrono::nanoseconds(std::max<std::int64_t>(0, now - entry.created)),
                            response_of(entry.text)};
    }

    // The lookup path, one step per tier; `key` was computed once by the public call.
    LookupResult lookup_keyed(const detail::CacheKey& key, std::string_view prompt, std::string_view scope) {
        if (LookupResult exact = lookup_exact(key, now_ns()); exact) return exact;
        if (LookupResult shared = lookup_shared(key, scope); shared) return shared;
        if (semantic_) {
            if (LookupResult similar = lookup_semantic(prompt, scope); similar) return similar;
        }
        stats_.misses.fetch_add(1, std::memory_order_relaxed);
        return {};
    }

    Flight begin_keyed(const detail::CacheKey& key, std::string_view prompt, std::string_view scope) {
        if (LookupResult cached = lookup_keyed(key, prompt, scope); cached) return Flight(std::in_place_type<LookupResult>, std::move(cached));
        return flight_after_miss(key, prompt, scope);
    }

    // begin's second half, after every tier missed (and counted the miss): join or start the flight.
    Flight flight_after_miss(const detail::CacheKey& key, std::string_view prompt, std::string_view scope) {
        Shard& shard = shard_for(key);
        std::shared_ptr<typename Flights::Flight> flight;
        {
            std::lock_guard lock(shard.mutex);
            if (std::shared_ptr<typename Flights::Flight> pending = shard.flights.join(key))
                return Flight(std::in_place_type<Follower>, Follower(&stats_, std::move(pending)));
            // Another caller may have finished its flight between our lookup and taking the lock.
            if (LookupResult exact = lookup_exact_locked(shard, key, now_ns()); exact) {
                // That lookup is this exact hit, not also the miss its tiers counted: hit_rate()
                // counts each lookup once.
                stats_.misses.fetch_sub(1, std::memory_order_relaxed);
                return Flight(std::in_place_type<LookupResult>, std::move(exact));
            }
            flight = shard.flights.start(key);
        }
        stats_.computations.fetch_add(1, std::memory_order_relaxed);
        return Flight(std::in_place_type<Leader>, Leader(this, key, prompt, scope, std::move(flight)));
    }

    LookupResult lookup_exact(const detail::CacheKey& key, std::int64_t now) {
        Shard& shard = shard_for(key);
        std::lock_guard lock(shard.mutex);
        return lookup_exact_locked(shard, key, now);
    }

    LookupResult lookup_exact_locked(Shard& shard, const detail::CacheKey& key, std::int64_t now) {
        Node* node = shard.store.find(key);
        if (node == nullptr) return {};
        // The 128-bit key covers scope and prompt, so no string comparison (and no pointer chase
        // into the scope) is needed on this hot path.
        Entry& entry = node->value;
        if (expired(entry, now)) {
            remove_locked(shard, *node);
            stats_.expirations.fetch_add(1, std::memory_order_relaxed);
            return {};
        }
        use_locked(shard, *node);
        stats_.exact_hits.fetch_add(1, std::memory_order_relaxed);
        return hit(MatchKind::Exact, 1.0F, entry, now);
    }

    // ---- the shared tier (attach_shared) ----
    // Between the exact and the semantic tier: a local miss asks the shared tier for the same key; a
    // hit is stored locally (no write-through: it is there already) and served as Exact.

    static constexpr bool has_shared = !std::is_same_v<Shared, NoSharedTier>;

    // Counters the tier's async callbacks update: shared, so a write-through still in flight when
    // the cache is destroyed counts into memory that is still alive.
    struct SharedCounters {
        std::atomic<std::uint64_t> hits{0}, misses{0}, unavailable{0}, corrupt{0}, writes{0}, write_failures{0}, applied{0},
            tombstones_applied{0}, gaps{0}, resets{0}, lock_waits{0}, lock_timeouts{0};
    };
    using FollowHandle = typename detail::SharedFollowHandle<Shared>::type;
    struct SharedState {
        mutable std::mutex mutex;  // guards `tier`; callers take a copy of the shared_ptr and call outside it
        std::shared_ptr<Shared> tier;
        std::mutex attach_mutex;  // serializes attach_shared and the destructor; guards `follow`
        std::optional<FollowHandle> follow;
        std::shared_ptr<SharedCounters> counters = std::make_shared<SharedCounters>();
        // Bumped by every erase / purge (local or from the feed) before its local removal. A shared
        // lookup reads it before asking the tier and stores what it found only if it is unchanged
        // (checked under the shard lock), so an entry erased meanwhile is not stored again.
        std::atomic<std::uint64_t> erasures{0};
    };
    struct NoSharedState {};

    [[nodiscard]] std::shared_ptr<Shared> shared_tier() const {
        if constexpr (has_shared) {
            std::lock_guard lock(shared_.mutex);
            return shared_.tier;
        } else {
            return nullptr;
        }
    }

    // The destructor's attach_shared(nullptr), while every member is still alive: stop the feed (its
    // callback uses this cache), then let go of the tier — if this was its last owner, its destructor
    // answers the async calls still queued, whose callbacks use this cache too.
    void detach_shared_locked_out() noexcept {
        if constexpr (has_shared) {
            std::lock_guard attach_lock(shared_.attach_mutex);
            if constexpr (shared_tier_traits<Shared>::has_change_feed) shared_.follow.reset();
            std::shared_ptr<Shared> last;
            {
                std::lock_guard lock(shared_.mutex);
                last = std::move(shared_.tier);
            }
            last.reset();
        }
    }

    // Whether this thread's last shared lookup found the tier unavailable: get_or_compute then skips
    // the lock (a second wait for a tier that is down would double the time a miss costs).
    static bool& shared_down_here() noexcept {
        thread_local bool down = false;
        return down;
    }

    SharedCounters& shared_counters() const noexcept { return *shared_.counters; }
    std::uint64_t erasures_now() const noexcept {
        if constexpr (has_shared) {
            return shared_.erasures.load(std::memory_order_acquire);
        } else {
            return 0;
        }
    }
    void count_erasure() noexcept {
        if constexpr (has_shared) shared_.erasures.fetch_add(1, std::memory_order_acq_rel);
    }
    static void bump(std::atomic<std::uint64_t>& counter) noexcept { counter.fetch_add(1, std::memory_order_relaxed); }

    // A shared tier's call whose failure must never become the caller's: anything it throws
    // (std::bad_alloc, a misbehaving model) is Unavailable.
    template <class F>
    static auto shared_call(F&& call) noexcept -> decltype(call()) {
        try {
            return call();
        } catch (...) {
            using R = decltype(call());
            if constexpr (std::is_same_v<R, SharedStatus>) {
                return SharedStatus::Unavailable;
            } else {
                R r{};
                r.status = SharedStatus::Unavailable;
                return r;
            }
        }
    }

    void count_write(bool applied) const noexcept {
        if constexpr (has_shared) bump(applied ? shared_counters().writes : shared_counters().write_failures);
    }

    // What other replicas need of a prepared insertion: the prompt, the response, the normalized
    // vector (so they do not embed again), the embedder's identity (they use the vector only when it
    // is theirs), created and the TTL (their local expiry is created + ttl, as here).
    SharedEntry shared_entry_of(const Prepared& prepared) const {
        SharedEntry entry;
        entry.scope = std::string(prepared.scope);
        entry.key = detail::cache_key_hex(prepared.key);
        entry.prompt = prepared.text->prompt;
        entry.response = prepared.text->response;
        entry.embedding = prepared.vector;
        entry.embedder = identity_;
        entry.created_ns = prepared.created;
        entry.ttl = std::chrono::nanoseconds(std::max<std::int64_t>(1, prepared.expires - prepared.created));
        return entry;
    }

    // Stores locally, then writes through to the shared tier when one is attached: `insert_async`
    // when the tier has it and `sync` is false (the caller may be an event loop), else `insert`.
    bool insert_and_share(Prepared prepared, bool sync) {
        if constexpr (has_shared) {
            if (std::shared_ptr<Shared> tier = shared_tier()) {
                SharedEntry entry = shared_entry_of(prepared);
                const bool stored = insert_prepared(std::move(prepared), true);
                write_through(*tier, std::move(entry), sync);
                return stored;
            }
        }
        (void)sync;
        return insert_prepared(std::move(prepared), true);
    }

    void write_through(Shared& tier, SharedEntry entry, bool sync) noexcept {
        if constexpr (has_shared) {
            if constexpr (shared_tier_traits<Shared>::has_insert_async) {
                if (!sync) {
                    try {
                        tier.insert_async(entry, [counters = shared_.counters](SharedStatus status) {
                            bump(status == SharedStatus::Ok ? counters->writes : counters->write_failures);
                        });
                    } catch (...) {
                        bump(shared_counters().write_failures);
                    }
                    return;
                }
            }
            count_write(shared_call([&] { return tier.insert(entry); }) == SharedStatus::Ok);
        } else {
            (void)tier;
            (void)entry;
            (void)sync;
        }
    }

    LookupResult lookup_shared(const detail::CacheKey& key, std::string_view scope) {
        if constexpr (has_shared) {
            std::shared_ptr<Shared> tier = shared_tier();
            if (!tier) return {};
            const std::string hex = detail::cache_key_hex(key);
            const std::uint64_t erasures = erasures_now();
            SharedLookup found = shared_call([&] { return tier->lookup(scope, hex); });
            shared_down_here() = found.status == SharedStatus::Unavailable;
            return accept_shared(key, scope, found, true, erasures);
        } else {
            (void)key;
            (void)scope;
            return {};
        }
    }

    // The shared tier's answer for `key`: on Ok (an entry of this scope whose prompt hashes to the
    // key, alive by this cache's clock) stored locally and returned as an Exact hit (counted when
    // `count_hit`); otherwise a counted miss / unavailable / corrupt and an empty result. `erasures`
    // is erasures_now() from before the tier was asked: after an erase since, it is served (it was
    // read before the erase) but not stored.
    LookupResult accept_shared(const detail::CacheKey& key, std::string_view scope, const SharedLookup& found, bool count_hit,
                               std::uint64_t erasures) {
        SharedCounters& counters = shared_counters();
        if (found.status == SharedStatus::Unavailable) {
            bump(counters.unavailable);
            return {};
        }
        if (found.status != SharedStatus::Ok) {
            bump(counters.misses);
            return {};
        }
        const SharedEntry& entry = found.entry;
        if (entry.scope != scope || detail::prompt_cache_key(entry.scope, entry.prompt) != key) {
            bump(counters.corrupt);  // a store that returned another key's entry: never served
            return {};
        }
        const std::int64_t now = now_ns();
        Prepared prepared = prepared_from_shared(key, entry);
        if (prepared.expires <= now || entry.ttl <= std::chrono::nanoseconds::zero()) {
            bump(counters.misses);  // expired by our clock (clocks of replicas differ a little)
            return {};
        }
        const std::int64_t created = prepared.created;
        std::shared_ptr<const std::string> response = response_of(prepared.text);
        insert_prepared(std::move(prepared), false, FromShared{erasures});
        if (count_hit) {
            bump(counters.hits);
            stats_.exact_hits.fetch_add(1, std::memory_order_relaxed);
        }
        return LookupResult{MatchKind::Exact, 1.0F, std::chrono::nanoseconds(std::max<std::int64_t>(0, now - created)), std::move(response)};
    }

    // A shared entry as a local insertion: expiry = created + ttl (the TTL runs from the original
    // insert on whichever replica); the entry's embedding is used when it is this embedder's (same
    // named identity and dimension), else the prompt is embedded here.
    Prepared prepared_from_shared(const detail::CacheKey& key, const SharedEntry& entry) {
        Prepared prepared;
        prepared.key = key;
        prepared.scope = entry.scope;
        prepared.text = make_text(entry.prompt, entry.response);
        prepared.created = entry.created_ns;
        prepared.expires = expiry(entry.created_ns, entry.ttl);
        if (semantic_) {
            prepared.verify = verifier_.entry_data(prepared.text->prompt);
            if (embedder_traits<E>::has_identity && entry.embedder == identity_ && entry.embedding.size() == dimension_) {
                prepared.vector = entry.embedding;
                if (!normalize_loaded(prepared.vector)) prepared.vector.clear();
            } else {
                prepared.vector.resize(dimension_);
                if (!embed_normalized(prepared.text->prompt, prepared.vector)) prepared.vector.clear();
            }
        }
        return prepared;
    }

    bool erase_local(const detail::CacheKey& key) {
        count_erasure();  // before the shard lock: a shared lookup storing after it sees the bump
        Shard& shard = shard_for(key);
        std::lock_guard lock(shard.mutex);
        Node* node = shard.store.find(key);
        if (node == nullptr) return false;
        remove_locked(shard, *node);
        return true;
    }

    std::size_t erase_scope_local(std::string_view scope) {
        count_erasure();
        verifier_.forget(scope);  // the scope's feedback goes with its entries
        const std::shared_ptr<Scope> victim = scopes_.detach(scope);
        if (!victim) return 0;
        return remove_entries_if([&](const Entry& entry) { return entry.scope == victim; });
    }

    // The change feed's callback, on the feed's thread. Never throws (a failure skips that record).
    void apply_shared_change(const SharedChange& change) noexcept {
        if constexpr (has_shared) {
            SharedCounters& counters = shared_counters();
            try {
                switch (change.kind) {
                    case SharedChange::Kind::Insert: apply_shared_insert(change.entry); break;
                    case SharedChange::Kind::Erase: {
                        detail::CacheKey key;
                        if (!detail::parse_cache_key_hex(change.key, key)) {
                            bump(counters.corrupt);
                            break;
                        }
                        erase_local(key);
                        bump(counters.tombstones_applied);
                        break;
                    }
                    case SharedChange::Kind::PurgeScope:
                        erase_scope_local(change.scope);
                        bump(counters.tombstones_applied);
                        break;
                    case SharedChange::Kind::Gap: bump(counters.gaps); break;
                    case SharedChange::Kind::Reset: bump(counters.resets); break;
                    case SharedChange::Kind::RebuildDone: break;
                }
            } catch (...) {
                // std::bad_alloc or a throwing embedder (EmbedderFailure::Throw): that record is skipped.
            }
        } else {
            (void)change;
        }
    }

    // Another replica's insert (or a replay after a gap). Verified (its prompt must hash to its key:
    // a forged or damaged record is counted and skipped); skipped when we already hold that key at
    // least as new (our own inserts come back on the feed; a newer local one wins): checked first
    // (no embedding for nothing), and again under the shard lock when it is stored.
    void apply_shared_insert(const SharedEntry& entry) {
        const detail::CacheKey key = detail::prompt_cache_key(entry.scope, entry.prompt);
        if (entry.ttl <= std::chrono::nanoseconds::zero() || detail::cache_key_hex(key) != entry.key) {
            bump(shared_counters().corrupt);
            return;
        }
        if (expiry(entry.created_ns, entry.ttl) <= now_ns()) return;  // expired while in the feed
        {
            Shard& shard = shard_for(key);
            std::lock_guard lock(shard.mutex);
            if (Node* node = shard.store.find(key); node != nullptr && node->value.created >= entry.created_ns) return;
        }
        // No erasure check: the feed's records come in order with its tombstones (an erase of this key
        // is a later record), and an unrelated erase must not lose a record that does not come again.
        if (insert_prepared(prepared_from_shared(key, entry), false, FromShared{})) bump(shared_counters().applied);
    }

    // lookup_async with a tier that has lookup_async: the exact tier here; on a miss the tier's
    // lookup runs on its worker, whose callback stores a hit locally or runs the semantic tier there
    // (with embed_async, on the embedder's thread), then calls `done` once.
    template <class F>
    void lookup_async_shared(Shared& tier, std::string_view prompt, std::string_view scope, F&& done) {
        // Shared, because the tier may copy its callback (std::function) and `done` may be move-only.
        auto callback = std::make_shared<std::decay_t<F>>(std::forward<F>(done));
        const detail::CacheKey key = detail::prompt_cache_key(scope, prompt);
        if (LookupResult exact = lookup_exact(key, now_ns()); exact) {
            std::invoke(*callback, std::move(exact));
            return;
        }
        const std::uint64_t erasures = erasures_now();
        auto step = [this, key, text = std::string(prompt), scope_name = std::string(scope), callback, erasures](SharedLookup found) mutable {
            LookupResult result;
            try {
                result = accept_shared(key, scope_name, found, true, erasures);
            } catch (...) {
                result = {};
            }
            if (result || !semantic_) {
                if (!result) stats_.misses.fetch_add(1, std::memory_order_relaxed);
                std::invoke(*callback, std::move(result));
                return;
            }
            semantic_async(std::move(text), scope_name, [callback](LookupResult r) mutable { std::invoke(*callback, std::move(r)); });
        };
        try {
            tier.lookup_async(scope, detail::cache_key_hex(key), std::move(step));
        } catch (...) {
            // The tier could not take the call (std::bad_alloc): go on local-only, here.
            bump(shared_counters().unavailable);
            semantic_async(std::string(prompt), scope, [callback](LookupResult r) mutable { std::invoke(*callback, std::move(r)); });
        }
    }

    // begin_async with a tier that has lookup_async: lookup_async_shared's steps, then (all missed)
    // the flight's join-or-start, on whichever thread the last step completed.
    template <class F>
    void begin_async_shared(Shared& tier, std::string_view prompt, std::string_view scope, F&& done) {
        auto callback = std::make_shared<std::decay_t<F>>(std::forward<F>(done));
        const detail::CacheKey key = detail::prompt_cache_key(scope, prompt);
        lookup_async_shared(tier, prompt, scope,
                            [this, key, text = std::string(prompt), scope_name = std::string(scope), callback](LookupResult found) mutable {
                                if (found) {
                                    std::invoke(*callback, Flight(std::in_place_type<LookupResult>, std::move(found)));
                                    return;
                                }
                                std::optional<Flight> flight;
                                try {
                                    flight.emplace(flight_after_miss(key, text, scope_name));
                                } catch (...) {
                                    // std::bad_alloc: nothing joined or started; the caller computes without a flight
                                    flight.emplace(std::in_place_type<LookupResult>);
                                }
                                std::invoke(*callback, std::move(*flight));
                            });
    }

    // The semantic tier's answer from an asynchronous embedding (`error` set when the embedder failed):
    // the search's result, or a miss, counted (with the embedder failure, if any). Never throws: a
    // failed search is a miss, so the caller's `done` runs exactly once.
    LookupResult search_embedded(std::string_view text, const std::shared_ptr<Scope>& target, std::vector<float>& vector,
                                 const std::exception_ptr& error) noexcept {
        LookupResult result;
        try {
            if (error) {
                stats_.embedder_failures.fetch_add(1, std::memory_order_relaxed);
            } else if (vector.size() == dimension_ && normalize_usable(vector)) {
                result = search_semantic(text, target, vector);
            } else if (vector.size() != dimension_) {
                stats_.embedder_failures.fetch_add(1, std::memory_order_relaxed);
            }
        } catch (...) {
            result = {};
        }
        if (!result) stats_.misses.fetch_add(1, std::memory_order_relaxed);
        return result;
    }

    // The semantic tier for an async lookup whose exact and shared tiers missed; `done` once, counted
    // (a miss counts in `misses`). Never throws: a failure is a miss.
    template <class F>
    void semantic_async(std::string prompt, std::string_view scope, F done) noexcept {
        LookupResult result;
        try {
            std::shared_ptr<Scope> target = semantic_ ? semantic_scope(scope) : nullptr;
            if constexpr (embedder_traits<E>::has_embed_async) {
                if (target) {
                    auto shared_done = std::make_shared<F>(std::move(done));
                    embedder_.embed_async(prompt, [this, target, text = prompt, shared_done](std::vector<float>&& vector,
                                                                                             std::exception_ptr error) mutable {
                        std::invoke(*shared_done, search_embedded(text, target, vector, error));
                    });
                    return;
                }
            } else {
                if (target) result = lookup_semantic(prompt, scope);
            }
        } catch (...) {
            result = {};  // no caller left to throw to (EmbedderFailure::Throw included)
        }
        if (!result) stats_.misses.fetch_add(1, std::memory_order_relaxed);
        std::invoke(done, std::move(result));
    }

    // get_or_compute's cross-replica single flight, for this call's local Leader. Acquired: the
    // leader keeps the lock (its complete writes through synchronously, then unlocks). Held: waits up
    // to shared_lock_wait for the other replica's entry; found: stored locally, the local flight
    // completed with it, returned as Coalesced. Otherwise (Unavailable, timed out): nullopt, the
    // caller computes.
    std::optional<LookupResult> cross_replica_flight(Leader& leader, const detail::CacheKey& key, std::string_view scope) {
        std::shared_ptr<Shared> tier = shared_tier();
        if (!tier || std::exchange(shared_down_here(), false)) return std::nullopt;
        SharedCounters& counters = shared_counters();
        const std::string hex = detail::cache_key_hex(key);
        SharedLock lock;
        try {
            lock = tier->try_lock(scope, hex, options_.shared_lock_ttl);
        } catch (...) {
            lock.state = SharedLock::State::Unavailable;
        }
        if (lock.state == SharedLock::State::Acquired) {
            leader.lock_.lock = std::move(lock);
            leader.lock_.tier = std::move(tier);
            return std::nullopt;
        }
        if (lock.state == SharedLock::State::Unavailable) {
            bump(counters.unavailable);
            return std::nullopt;
        }
        bump(counters.lock_waits);
        const std::uint64_t erasures = erasures_now();
        const SharedLookup found = wait_for_shared_entry(*tier, scope, hex);
        if (found.status == SharedStatus::Unavailable) {
            bump(counters.unavailable);
            return std::nullopt;
        }
        LookupResult result;
        if (found.found()) {
            try {
                result = accept_shared(key, scope, found, false, erasures);
            } catch (...) {
                result = {};
            }
        }
        if (!result) {
            bump(counters.lock_timeouts);
            return std::nullopt;
        }
        // This call did not run its function after all: it received another replica's response.
        stats_.computations.fetch_sub(1, std::memory_order_relaxed);
        stats_.coalesced.fetch_add(1, std::memory_order_relaxed);
        leader.release()->complete(result.response_ptr);
        result.match = MatchKind::Coalesced;
        return result;
    }

    // Polls the tier for (scope, key) until it is there, the tier is unavailable or shared_lock_wait
    // passed (steady clock): the tier's own `wait_for_entry` when it has one.
    SharedLookup wait_for_shared_entry(Shared& tier, std::string_view scope, const std::string& hex) {
        const std::chrono::milliseconds max_wait = options_.shared_lock_wait;
        if constexpr (requires { tier.wait_for_entry(scope, std::string_view(hex), max_wait); }) {
            return shared_call([&] { return tier.wait_for_entry(scope, std::string_view(hex), max_wait); });
        } else {
            constexpr auto poll = std::chrono::milliseconds(2);
            const auto until = std::chrono::steady_clock::now() + max_wait;
            for (;;) {
                SharedLookup found = shared_call([&] { return tier.lookup(scope, hex); });
                if (found.status != SharedStatus::NotFound || std::chrono::steady_clock::now() + poll > until) return found;
                std::this_thread::sleep_for(poll);
            }
        }
    }

    // Embeds into `out` and L2-normalizes it, so the index's inner product is the cosine whatever the
    // embedder returns. False (and counted in `unusable_embeddings`) for a zero or non-finite vector:
    // it must never match anything, and the indexes reject non-finite input. The scaling is done in
    // double: a float 1/norm overflows to inf for a vector of subnormals, which made NaNs.
    bool embed_normalized(std::string_view prompt, std::span<float> out) {
        if (!embed_or_count(prompt, out)) return false;
        return normalize_usable(out);
    }

    // The embedder's call under the failure policy: false (counted) when it threw and the policy is Miss.
    bool embed_or_count(std::string_view prompt, std::span<float> out) {
        if (options_.embedder_failure == EmbedderFailure::Throw) {
            embedder_.embed(prompt, out);
            return true;
        }
        try {
            embedder_.embed(prompt, out);
            return true;
        } catch (...) {
            stats_.embedder_failures.fetch_add(1, std::memory_order_relaxed);
            return false;
        }
    }

    // A vector from a snapshot: `save` wrote it normalized, so it is used bit for bit (a save of the
    // loaded cache writes the same bytes); one whose norm is off by more than rounding is normalized.
    bool normalize_loaded(std::span<float> out) {
        double norm = 0;
        for (const float x : out) norm += static_cast<double>(x) * static_cast<double>(x);
        if (norm > 0 && std::isfinite(norm) && std::fabs(norm - 1.0) <= 1e-5) return true;
        return normalize_usable(out);
    }

    // L2-normalizes `out` in place; false (counted) when it is zero or not finite.
    bool normalize_usable(std::span<float> out) {
        double norm = 0;
        for (const float x : out) norm += static_cast<double>(x) * static_cast<double>(x);
        bool usable = norm > 0 && std::isfinite(norm);
        if (usable) {
            const double inv = 1.0 / std::sqrt(norm);
            for (float& x : out) {
                x = static_cast<float>(static_cast<double>(x) * inv);
                usable = usable && std::isfinite(x);
            }
        }
        if (!usable) stats_.unusable_embeddings.fetch_add(1, std::memory_order_relaxed);
        return usable;
    }

    // Semantic tier: the scope's index proposes candidates (best first), the verifier step decides.
    LookupResult lookup_semantic(std::string_view prompt, std::string_view scope_name) {
        const std::shared_ptr<Scope> scope = semantic_scope(scope_name);
        if (!scope) return {};
        thread_local std::vector<float> query_vector;
        query_vector.resize(dimension_);
        if (!embed_normalized(prompt, query_vector)) return {};
        return search_semantic(prompt, scope, query_vector);
    }

    // The scope to search, or null when it has nothing indexed (no embedding needed then).
    std::shared_ptr<Scope> semantic_scope(std::string_view scope_name) {
        std::shared_ptr<Scope> scope = scopes_.find(scope_name);
        if (!scope) return nullptr;
        std::shared_lock lock(scope->mutex);
        if (!scope->index || scope->index->size() == 0) return nullptr;
        return scope;
    }

    // The semantic tier's second half: `query_vector` is the prompt's normalized embedding.
    LookupResult search_semantic(std::string_view prompt, const std::shared_ptr<Scope>& scope, std::span<const float> query_vector) {
        std::vector<SearchHit> candidates;
        {
            std::shared_lock lock(scope->mutex);
            if (!scope->index || scope->index->size() == 0) return {};
            candidates = scope->index->search(query_vector, options_.semantic_candidates);
        }
        typename Verifier::Query query = Verifier::query(prompt);
        const auto verifier_scope = verifier_.scope_state(scope->name);  // the scope's operating point
        for (const SearchHit& candidate : candidates) {
            if (!(candidate.score >= options_.similarity_threshold)) break;  // best first
            verifier_.prepare(query);                                         // outside the lock
            Shard& shard = shards_[candidate.id % shard_count_];
            const std::int64_t now = now_ns();
            std::lock_guard lock(shard.mutex);
            Node* node = shard.store.find_id(candidate.id);
            if (node == nullptr) continue;  // evicted since the search
            Entry& entry = node->value;
            if (entry.scope != scope) continue;
            if (expired(entry, now)) {
                remove_locked(shard, *node);
                stats_.expirations.fetch_add(1, std::memory_order_relaxed);
                continue;
            }
            const detail::StepVerdict verdict = verifier_.accept(query, entry.verify, candidate.score, verifier_scope.get());
            if (!verdict) {
                if (verdict.guard_veto()) stats_.guard_vetoes.fetch_add(1, std::memory_order_relaxed);  // else counted by the step
                continue;
            }
            use_locked(shard, *node);
            stats_.semantic_hits.fetch_add(1, std::memory_order_relaxed);
            LookupResult result = hit(MatchKind::Semantic, std::min(candidate.score, 1.0F), entry, now);
            result.verified_probability = verdict.probability;
            result.verifier_scope = verifier_scope;
            return result;
        }
        return {};
    }

    // A hit: the policy hears of it, and the entry gets the next cache-wide use stamp (the snapshot's order).
    void use_locked(Shard& shard, Node& node) noexcept {
        shard.store.touch(node);
        node.value.last_use = next_use_.fetch_add(1, std::memory_order_relaxed);
    }

    Prepared prepare(const detail::CacheKey& key, std::string_view scope, std::shared_ptr<const EntryText> text) {
        Prepared prepared;
        prepared.key = key;
        prepared.scope = scope;
        prepared.text = std::move(text);
        if (semantic_) {
            prepared.verify = verifier_.entry_data(prepared.text->prompt);
            prepared.vector.resize(dimension_);
            if (!embed_normalized(prepared.text->prompt, prepared.vector)) prepared.vector.clear();  // stored, never matched
        }
        return prepared;
    }

    // Accounted bytes: the shard's bookkeeping (map nodes, policy), the shared text block (its control
    // block and both strings' heap), the verifier's data and the index's cost of the vector.
    std::size_t entry_bytes(const Entry& entry) const noexcept {
        // make_shared's block: the object, two reference counts and the control block's vtable pointer.
        constexpr std::size_t text_block = sizeof(EntryText) + 2 * sizeof(int) + sizeof(void*);
        std::size_t bytes = Store::node_overhead_bytes + text_block + entry.text->prompt.capacity() +
                            entry.text->response.capacity() + Verifier::entry_bytes(entry.verify);
        if (entry.indexed) bytes += vector_index_traits<Index>::bytes_per_vector(*entry.scope->index);
        // The copy kept for snapshots: the floats and make_shared's block.
        if (entry.indexed && keep_vectors_) bytes += dimension_ * sizeof(float) + sizeof(std::vector<float>) + 2 * sizeof(int) + sizeof(void*);
        return bytes;
    }

    // How an insertion treats what is there: a caller's replaces it; an entry from the shared tier
    // (a lookup's or the feed's) is stored only if the key's local entry, if any, is older, and (a
    // lookup's) no erase began since `erasures`, an erasures_now() value from before the tier was
    // asked (checked under the shard lock, which the erase's local removal also takes).
    struct FromShared {
        std::optional<std::uint64_t> erasures;
    };

    bool insert_prepared(Prepared prepared, bool count_insertion, std::optional<FromShared> from_shared = std::nullopt) {
        Shard& shard = shard_for(prepared.key);
        for (;;) {
            std::shared_ptr<Scope> scope = scopes_.find_or_create(prepared.scope);
            std::lock_guard lock(shard.mutex);
            if (from_shared && from_shared->erasures && erasures_now() != *from_shared->erasures) return false;
            // erase_scope/clear mark a scope erased before removing its entries shard by shard; checking
            // under the shard lock means either we see the mark or they will see (and remove) our entry.
            if (scope->erased.load(std::memory_order_acquire)) continue;
            if (Node* old = shard.store.find(prepared.key)) {
                if (from_shared && old->value.created >= prepared.created) return false;  // a newer local one wins
                remove_locked(shard, *old);
            }

            Entry entry;
            entry.id = next_id_.fetch_add(1, std::memory_order_relaxed) * shard_count_ +
                       static_cast<std::uint64_t>(&shard - shards_.get());
            entry.key = prepared.key;
            entry.scope = std::move(scope);
            entry.text = std::move(prepared.text);
            entry.verify = std::move(prepared.verify);
            entry.created = prepared.created;
            entry.expires = prepared.expires;
            entry.indexed = !prepared.vector.empty() && entry.scope->index.has_value();
            entry.bytes = entry_bytes(entry);
            if (entry.bytes > shard.store.max_bytes()) return false;
            if (entry.indexed && keep_vectors_)
                entry.vector = std::make_shared<const std::vector<float>>(std::move(prepared.vector));
            const std::span<const float> vector = entry.vector ? std::span<const float>(*entry.vector) : std::span<const float>(prepared.vector);
            entry.last_use = next_use_.fetch_add(1, std::memory_order_relaxed);
            Node& node = shard.store.emplace(std::move(entry));  // on an exception: unchanged
            Entry& stored = node.value;
            if (stored.indexed) {
                try {
                    std::unique_lock index_lock(stored.scope->mutex);
                    stored.scope->index->add(stored.id, vector);
                } catch (...) {
                    shard.store.erase(node);
                    throw;
                }
            }
            entry_count_.fetch_add(1, std::memory_order_relaxed);
            memory_bytes_.fetch_add(stored.bytes, std::memory_order_relaxed);
            if (count_insertion) stats_.insertions.fetch_add(1, std::memory_order_relaxed);
            // Evict the policy's victims (never the new entry: it fits the budget on its own).
            while (shard.store.over_budget()) {
                Node* victim = shard.store.victim(&node);
                if (victim == nullptr) break;
                remove_locked(shard, *victim);
                stats_.evictions.fetch_add(1, std::memory_order_relaxed);
            }
            return true;
        }
    }

    // Takes the entry's vector out of its scope's index (requires shard.mutex held).
    void unindex_locked(Entry& entry) noexcept {
        if (!entry.indexed) return;
        std::unique_lock index_lock(entry.scope->mutex);
        // FlatIndex/HnswIndex removal does not allocate; a throwing user index would leave a stale
        // vector whose id no longer resolves, which lookups skip.
        try {
            entry.scope->index->remove(entry.id);
        } catch (...) {
        }
        entry.indexed = false;
    }

    void forget_locked(const Entry& entry) noexcept {
        entry_count_.fetch_sub(1, std::memory_order_relaxed);
        memory_bytes_.fetch_sub(entry.bytes, std::memory_order_relaxed);
    }

    // Requires shard.mutex held. Removes the entry from every structure, its vector from its scope.
    void remove_locked(Shard& shard, Node& node) noexcept {
        unindex_locked(node.value);
        forget_locked(node.value);
        shard.store.erase(node);
    }

    // Removes, shard by shard (one shard lock at a time), every entry for which `pred` holds.
    template <class Pred>
    std::size_t remove_entries_if(Pred pred) {
        std::size_t removed = 0;
        for (std::size_t i = 0; i < shard_count_; ++i) {
            Shard& shard = shards_[i];
            std::lock_guard lock(shard.mutex);
            removed += shard.store.erase_if(pred, [&](Entry& entry) noexcept {
                unindex_locked(entry);
                forget_locked(entry);
            });
        }
        return removed;
    }

    // Streams the snapshot into `sink`: references to the entries are taken shard by shard (the
    // texts are shared, not copied), put in one recency order for the whole cache, then written.
    template <class Sink>
    void write_snapshot(Sink& sink) const {
        struct Saved {
            std::uint64_t last_use;
            std::shared_ptr<Scope> scope;
            std::shared_ptr<const EntryText> text;
            std::int64_t created;
            std::int64_t expires;
            std::shared_ptr<const std::vector<float>> vector;
        };
        std::vector<Saved> entries;
        for (std::size_t i = 0; i < shard_count_; ++i) {
            Shard& shard = shards_[i];
            std::lock_guard lock(shard.mutex);
            entries.reserve(entries.size() + shard.store.size());
            shard.store.for_each([&](const Entry& e) {
                entries.push_back(Saved{e.last_use, e.scope, e.text, e.created, e.expires, e.vector});
            });
        }
        // Least recently used first (stamps are unique).
        std::sort(entries.begin(), entries.end(), [](const Saved& a, const Saved& b) { return a.last_use < b.last_use; });
        detail::SnapshotWriter<Sink> writer(sink, identity_, static_cast<std::uint64_t>(dimension_), now_ns(), entries.size());
        for (const Saved& e : entries) {
            const std::string_view vector_bytes =
                e.vector ? std::string_view(reinterpret_cast<const char*>(e.vector->data()), e.vector->size() * sizeof(float))
                         : std::string_view();
            writer.add(detail::SnapshotEntry{e.scope->name, e.text->prompt, e.text->response, e.created, e.expires, vector_bytes});
        }
        writer.finish();
    }

    std::vector<Prepared> prepare_snapshot(std::string_view bytes) {
        const detail::SnapshotContents contents = detail::parse_snapshot(bytes);
        if (contents.identity != identity_ || contents.dimension != dimension_) {
            throw Error(ErrorCode::CorruptSnapshot,
                        fmt::format("snapshot was written with embedder '{}' (dimension {}), this cache uses '{}' (dimension {})",
                                    contents.identity, contents.dimension, identity_, dimension_));
        }
        // Valid. Now the work that may allocate or embed, still without touching the cache. A saved
        // vector is used as is when the embedder names itself (identity()): the identity check above
        // then proves it is this model's. An anonymous identity (the dimension alone) cannot tell two
        // models apart, so those prompts are embedded again, as are entries saved without a vector
        // (version 1, exact-only entries); those go to the embedder in batches (embed_batch).
        constexpr bool trust_vectors = embedder_traits<E>::has_identity;
        const std::int64_t now = now_ns();
        std::vector<Prepared> prepared;
        std::vector<std::size_t> to_embed;
        prepared.reserve(contents.entries.size());
        for (const detail::SnapshotEntry& e : contents.entries) {
            if (e.expires <= now) continue;  // TTL passed while the snapshot sat on disk
            Prepared p;
            p.key = detail::prompt_cache_key(e.scope, e.prompt);
            p.scope = e.scope;
            p.text = make_text(e.prompt, std::string(e.response));
            p.created = e.created;
            p.expires = e.expires;
            if (semantic_) {
                p.verify = verifier_.entry_data(p.text->prompt);
                if (trust_vectors && e.vector_bytes.size() == dimension_ * sizeof(float)) {
                    p.vector.resize(dimension_);
                    std::memcpy(p.vector.data(), e.vector_bytes.data(), e.vector_bytes.size());
                    if (normalize_loaded(p.vector)) {
                        stats_.vectors_loaded.fetch_add(1, std::memory_order_relaxed);
                    } else {
                        p.vector.clear();
                    }
                } else {
                    to_embed.push_back(prepared.size());
                }
            }
            prepared.push_back(std::move(p));
        }
        embed_prepared(prepared, to_embed);
        return prepared;
    }

    // Embeds prepared[i] for i in `which`, in batches through embed_batch (one request per batch for a
    // network embedder), under the failure policy: from the first failed batch on, entries stay exact-only.
    void embed_prepared(std::vector<Prepared>& prepared, const std::vector<std::size_t>& which) {
        constexpr std::size_t batch = 256;
        std::vector<std::string_view> texts;
        std::vector<float> rows;
        for (std::size_t first = 0; first < which.size(); first += batch) {
            const std::size_t n = std::min(batch, which.size() - first);
            texts.clear();
            for (std::size_t k = 0; k < n; ++k) texts.push_back(prepared[which[first + k]].text->prompt);
            rows.assign(n * dimension_, 0.0F);
            bool ok = true;
            if (options_.embedder_failure == EmbedderFailure::Throw) {
                llmfast::embed_batch(embedder_, texts, rows);
            } else {
                try {
                    llmfast::embed_batch(embedder_, texts, rows);
                } catch (...) {
                    ok = false;
                }
            }
            if (!ok) {
                // The embedder is failing (a dead server): the rest load exact-only at once rather
                // than each batch waiting out its own deadline.
                stats_.embedder_failures.fetch_add(which.size() - first, std::memory_order_relaxed);
                return;
            }
            for (std::size_t k = 0; k < n; ++k) {
                std::vector<float>& vector = prepared[which[first + k]].vector;
                vector.assign(rows.begin() + static_cast<std::ptrdiff_t>(k * dimension_),
                              rows.begin() + static_cast<std::ptrdiff_t>((k + 1) * dimension_));
                if (!normalize_usable(vector)) vector.clear();
            }
        }
    }

    E embedder_;
    Options options_;
    [[no_unique_address]] ClockRef<C> clock_;
    std::size_t dimension_ = 0;
    std::string identity_;
    Verifier verifier_;  // before semantic_: SemanticTier::Auto asks it
    bool semantic_ = false;
    bool keep_vectors_ = false;
    std::size_t shard_count_ = 0;
    std::unique_ptr<Shard[]> shards_;
    detail::ScopeRegistry<Index> scopes_;
    std::atomic<std::uint64_t> next_id_{0};
    std::atomic<std::uint64_t> next_use_{0};  // use stamps: one recency order across all shards
    std::atomic<std::size_t> entry_count_{0};
    std::atomic<std::size_t> memory_bytes_{0};
    Counters stats_;
    [[no_unique_address]] std::conditional_t<has_shared, SharedState, NoSharedState> shared_;

    // The cross-replica lock a get_or_compute Leader holds (Acquired), released when its flight ends.
    struct LeaderLock {
        SharedLock lock;
        std::shared_ptr<Shared> tier;
    };
    using LeaderLockSlot = std::conditional_t<shared_tier_traits<Shared>::has_lock, LeaderLock, NoSharedState>;

public:
    // ---- the single flight's handles (declared above, defined here: they hold private types) ----

    /// The caller that computes the response of a single flight (from `begin`). Move-only. It ends
    /// the flight exactly once: `complete` (stored, followers get it), `fail` (followers get the
    /// exception) or `abandon` (never stored; followers are told to compute themselves); destroying
    /// an active Leader abandons. The cache must outlive it. One thread at a time.
    class Leader {
    public:
        Leader() noexcept = default;
        Leader(Leader&& other) noexcept
            : cache_(std::exchange(other.cache_, nullptr)), key_(other.key_), prompt_(std::move(other.prompt_)),
              scope_(std::move(other.scope_)), flight_(std::move(other.flight_)), lock_(std::exchange(other.lock_, {})) {}
        Leader& operator=(Leader&& other) noexcept {
            if (this != &other) {
                abandon();
                cache_ = std::exchange(other.cache_, nullptr);
                key_ = other.key_;
                prompt_ = std::move(other.prompt_);
                scope_ = std::move(other.scope_);
                flight_ = std::move(other.flight_);
                lock_ = std::exchange(other.lock_, {});
            }
            return *this;
        }
        Leader(const Leader&) = delete;
        Leader& operator=(const Leader&) = delete;
        ~Leader() { abandon(); }

        /// True until the flight was ended through this handle.
        [[nodiscard]] bool active() const noexcept { return flight_ != nullptr; }
        explicit operator bool() const noexcept { return active(); }

        /// Stores `response` (with `ttl`, default the cache's), then ends the flight: later callers
        /// find the entry, followers get the response (match Coalesced; also when it was too big to
        /// store). Returns it as match Computed. Throws Error(Closed) when the flight already ended,
        /// Error(InvalidArgument) for a ttl <= 0 (the flight stays open: complete or abandon it); if
        /// the embedder throws while storing, the flight fails with that exception (followers get it)
        /// and it propagates.
        LookupResult complete(std::string response, std::optional<std::chrono::nanoseconds> ttl = std::nullopt) {
            if (!flight_) throw Error(ErrorCode::Closed, "SemanticCache::Leader::complete: the flight already ended");
            const std::chrono::nanoseconds entry_ttl = cache_->checked_ttl(ttl, "SemanticCache::Leader::complete");
            std::shared_ptr<const std::string> stored;
            try {
                std::shared_ptr<const EntryText> text = make_text(prompt_, std::move(response));
                stored = response_of(text);
                Prepared prepared = cache_->prepare(key_, scope_, std::move(text));
                cache_->stamp(prepared, entry_ttl);
                // Holding the cross-replica lock: write through before unlocking, so a replica that
                // takes the lock next finds the entry.
                cache_->insert_and_share(std::move(prepared), holds_shared_lock());
            } catch (...) {
                fail(std::current_exception());
                throw;
            }
            // Inserted before the flight leaves the table, so a caller arriving now finds the entry.
            const std::shared_ptr<typename Flights::Flight> flight = release();
            flight->complete(stored);
            return LookupResult{MatchKind::Computed, 1.0F, std::chrono::nanoseconds::zero(), std::move(stored)};
        }

        /// Ends the flight with `error` (nothing stored): followers' `try_result` / `wait` rethrow it.
        /// No-op when the flight already ended.
        void fail(std::exception_ptr error) noexcept {
            if (!flight_) return;
            release()->fail(std::move(error));
        }

        /// Ends the flight without a result (the stream failed or was interrupted: never stored):
        /// followers get a Miss from `try_result` — "compute it yourself" — and usually `begin` again.
        /// Counted in `SemanticCacheStats::abandoned`. No-op when the flight already ended.
        void abandon() noexcept {
            if (!flight_) return;
            SemanticCache* owner = cache_;
            release()->abandon();
            owner->stats_.abandoned.fetch_add(1, std::memory_order_relaxed);
        }

    private:
        friend class SemanticCache;
        Leader(SemanticCache* owner, const detail::CacheKey& key, std::string_view prompt, std::string_view scope,
               std::shared_ptr<typename Flights::Flight> flight)
            : cache_(owner), key_(key), prompt_(prompt), scope_(scope), flight_(std::move(flight)) {}

        [[nodiscard]] bool holds_shared_lock() const noexcept {
            if constexpr (shared_tier_traits<Shared>::has_lock) {
                return lock_.tier != nullptr;
            } else {
                return false;
            }
        }

        // Takes the flight out of the shard's table (later callers no longer join it) and out of this
        // handle; releases the cross-replica lock if it holds one.
        std::shared_ptr<typename Flights::Flight> release() noexcept {
            if constexpr (shared_tier_traits<Shared>::has_lock) {
                if (lock_.tier) {
                    try {
                        lock_.tier->unlock(lock_.lock);
                    } catch (...) {
                        // the lock expires on its own (shared_lock_ttl)
                    }
                    lock_ = {};
                }
            }
            std::shared_ptr<typename Flights::Flight> flight = std::move(flight_);
            Shard& shard = cache_->shard_for(key_);
            {
                std::lock_guard lock(shard.mutex);
                shard.flights.finish(key_, flight.get());
            }
            cache_ = nullptr;
            return flight;
        }

        SemanticCache* cache_ = nullptr;
        detail::CacheKey key_{};
        std::string prompt_;
        std::string scope_;
        std::shared_ptr<typename Flights::Flight> flight_;
        [[no_unique_address]] LeaderLockSlot lock_{};
    };

    /// A caller that waits for another caller's computation (from `begin`), without blocking when it
    /// wants: `on_ready(cb)` (fires once when the flight ended) + `try_result()`. Dropping it or
    /// `cancel()` stops waiting and never affects the flight. Move-only; the cache must outlive it.
    /// One thread at a time (its `on_ready` callbacks fire on the leader's thread).
    class Follower {
    public:
        Follower() noexcept = default;
        Follower(Follower&&) noexcept = default;
        Follower& operator=(Follower&& other) noexcept {
            if (this != &other) {
                cancel();
                flight_ = std::move(other.flight_);
                stats_ = other.stats_;
                registered_ = std::move(other.registered_);
                counted_ = other.counted_;
            }
            return *this;
        }
        Follower(const Follower&) = delete;
        Follower& operator=(const Follower&) = delete;
        ~Follower() { cancel(); }

        /// True until `cancel()` (or a move from it).
        [[nodiscard]] bool active() const noexcept { return flight_ != nullptr; }
        explicit operator bool() const noexcept { return active(); }

        /// True when the flight ended (`try_result` then returns a value).
        [[nodiscard]] bool ready() const { return flight_ && flight_->state() != detail::FlightEnd::Pending; }

        /// Calls `ready()` once, when the flight ended (completed, failed or abandoned): on the
        /// leader's thread, after the cache's and the flight's locks were released, or on this thread
        /// before `on_ready` returns if it already ended (the Subscription is then empty). The
        /// contract of llmfast/subscription.hpp: cancel the Subscription (or this Follower, which
        /// cancels every registration made through it) race-free. `ready` must not throw. Throws
        /// Error(Closed) on an inactive Follower, std::bad_alloc.
        template <class F>
            requires std::invocable<std::decay_t<F>&> && std::constructible_from<std::decay_t<F>, F>
        [[nodiscard]] Subscription on_ready(F&& ready) {
            if (!flight_) throw Error(ErrorCode::Closed, "SemanticCache::Follower::on_ready: the follower was cancelled");
            std::shared_ptr<detail::ReadyNode> node = detail::ReadyList::make(detail::ReadyCallback(std::forward<F>(ready)));
            std::erase_if(registered_, [](const std::shared_ptr<detail::ReadyNode>& n) { return !n->armed_now(); });
            registered_.push_back(node);
            return flight_->on_end(std::move(node));
        }

        /// Never blocks. nullopt while the leader computes; then: match Coalesced with the leader's
        /// response (completed); match Miss, no response (abandoned: compute it yourself, e.g. `begin`
        /// again); or rethrows the leader's exception (failed). Throws Error(Closed) when inactive.
        [[nodiscard]] std::optional<LookupResult> try_result() {
            if (!flight_) throw Error(ErrorCode::Closed, "SemanticCache::Follower::try_result: the follower was cancelled");
            const detail::FlightEnd end = flight_->state();
            if (end == detail::FlightEnd::Pending) return std::nullopt;
            return result_of(end);
        }

        /// Blocks until the flight ended, then returns as `try_result` (for plain threads).
        LookupResult wait() {
            if (!flight_) throw Error(ErrorCode::Closed, "SemanticCache::Follower::wait: the follower was cancelled");
            return result_of(flight_->wait());
        }

        /// Stops waiting: cancels the registrations made through `on_ready` (race-free, as
        /// Subscription::cancel) and lets go of the flight. The leader and other followers are
        /// unaffected. Idempotent.
        void cancel() noexcept {
            for (const std::shared_ptr<detail::ReadyNode>& node : registered_) node->cancel();
            registered_.clear();
            flight_.reset();
        }

    private:
        friend class SemanticCache;
        Follower(Counters* stats, std::shared_ptr<typename Flights::Flight> flight) noexcept
            : flight_(std::move(flight)), stats_(stats) {}

        LookupResult result_of(detail::FlightEnd end) {
            switch (end) {
                case detail::FlightEnd::Completed:
                    if (!counted_) {
                        counted_ = true;
                        stats_->coalesced.fetch_add(1, std::memory_order_relaxed);
                    }
                    return LookupResult{MatchKind::Coalesced, 1.0F, std::chrono::nanoseconds::zero(), flight_->value()};
                case detail::FlightEnd::Failed: std::rethrow_exception(flight_->error());
                default: return {};
            }
        }

        std::shared_ptr<typename Flights::Flight> flight_;
        Counters* stats_ = nullptr;
        std::vector<std::shared_ptr<detail::ReadyNode>> registered_;
        bool counted_ = false;
    };
};

LLMFAST_END_NAMESPACE
