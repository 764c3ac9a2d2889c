// llmfast/semantic_cache.hpp — an in-process LLM response cache: exact tier + semantic tier, scopes,
// TTL, LRU by entries and bytes, single-flight, statistics and crash-safe snapshots.
//
// A lookup first tries the exact tier: xxHash3 of the normalized prompt (whitespace trimmed and
// collapsed, ASCII case-folded, full-width forms mapped to ASCII, so "什么是ML？" == "什么是ml?").
// If the semantic tier is on, it then embeds the prompt (outside every lock) and takes the nearest
// cached prompt *of the same scope* whose cosine similarity reaches `similarity_threshold` and that
// no hit guard vetoes (different numbers, a negation in only one, different Latin names, key terms
// in another order). A scope is whatever must match for an answer to be reusable: model name,
// system prompt, sampling parameters. Hits never cross scopes.
//
//     llmfast::SemanticCache<llmfast::HashingEmbedder> cache(llmfast::HashingEmbedder{},
//         {.max_entries = 100'000, .ttl = std::chrono::hours(1)});
//     auto result = cache.get_or_compute(prompt, "gpt-4o|temp=0", [&] { return call_model(prompt); });
//     // result.match: Exact, Semantic or Computed; result.response(); result.similarity; result.age
//     cache.save("cache.snap");  // later: cache.load("cache.snap")
//
// The semantic tier is OFF by default (`SemanticTier::Auto` turns it on only for an embedder that is
// not the lexical HashingEmbedder): on labelled paraphrase data HashingEmbedder with every guard does
// not reach the 0.95 precision a cache needs (see the README's quality table), and a wrong answer
// served from cache is worse than a miss. Opt in with `.semantic_tier = SemanticTier::On` when your
// prompts are templated enough that lexical similarity is safe, or plug in a sentence-embedding model.
//
// Thread-safety: every member function may be called concurrently. Entries live in `shards`
// independently locked LRU lists (a lookup locks one shard; LRU order and capacities are per shard),
// each scope's vector index has its own reader/writer lock (searches run in parallel), and the
// embedder runs outside all locks. `get_or_compute` runs `fn` once for concurrent misses on the same
// scope + normalized prompt; the others wait for its result or its exception. `load` and `clear`
// are not atomic with respect to concurrent lookups (a lookup during `load` may miss).
//
// Time: `Clock` (default: the system clock) gives wall-clock time; entries store creation and expiry
// as nanoseconds since the clock's epoch, so TTLs survive save/load across a restart. Tests inject
// `ManualClock` by reference.
//
// Errors: the constructor throws Error(InvalidArgument) for invalid options; `insert` and
// `get_or_compute` throw Error(InvalidArgument) for a zero TTL, and propagate what the embedder or
// `fn` throws (waiters of a single flight get the same exception); `save` throws Error(IoError)
// naming the path; `load` throws Error(IoError) naming the path when the file cannot be opened or
// read (missing, a directory, a read error part way through: no std::ios_base::failure or
// std::filesystem::filesystem_error escapes), and `load`/`load_from_string` throw
// Error(CorruptSnapshot) when it is truncated, corrupted, of another version or written with another
// embedder — the cache is then unchanged.
//
// An embedding the semantic tier cannot use (all zeros, or any NaN / infinity) is not an error: that
// lookup skips the semantic tier (the exact tier still answers), that entry is stored for exact hits
// only, and `CacheStats::unusable_embeddings` counts it. Nothing non-finite reaches the index.
#pragma once

#include <llmfast/clock.hpp>
#include <llmfast/detail/cache_text.hpp>
#include <llmfast/detail/file_io.hpp>
#include <llmfast/detail/hit_guards.hpp>
#include <llmfast/detail/xxhash.hpp>
#include <llmfast/embedder.hpp>
#include <llmfast/error.hpp>
#include <llmfast/vector_index.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <future>
#include <iterator>
#include <limits>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/format.h>

#if __has_include(<unistd.h>)
#include <fcntl.h>
#include <unistd.h>
#define LLMFAST_CACHE_HAVE_FSYNC 1
#endif

namespace llmfast {


enum class SemanticTier : std::uint8_t {
    Auto,  ///< on for a user-supplied embedder, off for HashingEmbedder (lexical; below 0.95 precision)
    On,    ///< always on
    Off,   ///< exact tier only; nothing is embedded
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
    HitGuards guards{};                  ///< vetoes for semantic hits
    std::size_t shards = 16;             ///< independently locked LRU partitions (>= 1; capped at max_entries)
};

enum class MatchKind : std::uint8_t {
    Miss,      ///< nothing usable cached
    Exact,     ///< same scope and normalized prompt
    Semantic,  ///< a different prompt of the same scope, similar enough and not vetoed
    Computed,  ///< get_or_compute ran the function (here or in a concurrent call for the same key)
};

constexpr std::string_view to_string(MatchKind kind) noexcept {
    switch (kind) {
        case MatchKind::Miss: return "Miss";
        case MatchKind::Exact: return "Exact";
        case MatchKind::Semantic: return "Semantic";
        case MatchKind::Computed: return "Computed";
    }
    return "Unknown";
}

/// The outcome of `lookup` / `get_or_compute`. The response is shared (no copy on a hit).
struct LookupResult {
    MatchKind match = MatchKind::Miss;
    float similarity = 0;                  ///< 1 for Exact/Computed; the cosine for Semantic
    std::chrono::nanoseconds age{0};       ///< how long ago the entry was inserted
    std::shared_ptr<const std::string> response_ptr;

    [[nodiscard]] bool hit() const noexcept { return response_ptr != nullptr; }
    explicit operator bool() const noexcept { return hit(); }
    /// The cached (or computed) response; an empty string on a miss.
    [[nodiscard]] const std::string& response() const noexcept {
        static const std::string empty;
        return response_ptr ? *response_ptr : empty;
    }
};

struct CacheStats {
    std::uint64_t exact_hits = 0;
    std::uint64_t semantic_hits = 0;
    std::uint64_t misses = 0;
    std::uint64_t insertions = 0;
    std::uint64_t evictions = 0;    ///< removed to respect max_entries / max_bytes
    std::uint64_t expirations = 0;  ///< removed because their TTL passed
    std::uint64_t guard_vetoes = 0; ///< semantic candidates rejected by a hit guard
    std::uint64_t computations = 0; ///< get_or_compute calls that ran their function
    /// Embeddings the semantic tier could not use (zero, NaN or infinite): that lookup skipped the
    /// semantic tier, that entry was stored for exact hits only.
    std::uint64_t unusable_embeddings = 0;
    std::size_t entries = 0;
    std::size_t memory_bytes = 0;   ///< accounted bytes of all entries (strings, vectors, bookkeeping)

    [[nodiscard]] double hit_rate() const noexcept {
        const std::uint64_t lookups = exact_hits + semantic_hits + misses;
        return lookups == 0 ? 0.0 : static_cast<double>(exact_hits + semantic_hits) / static_cast<double>(lookups);
    }
};

namespace detail {

/// Snapshot layout (little-endian as written by the host; the magic rejects other byte orders):
///   header: "LLMFSNAP" | u32 version | u32 reserved(0) | u64 payload size | u64 xxh3(payload)
///   payload: str embedder identity | u64 dimension | i64 saved-at (ns) | u64 entry count |
///            entries: str scope | str prompt | str response | i64 created (ns) | i64 expires (ns)
///   str = u32 length + bytes. Entries are written least recently used first across the whole cache
///   (ordered by a cache-wide use counter, not shard by shard), so loading into a cache with another
///   shard count or a smaller capacity evicts the least recently used. Snapshots written before that
///   (same layout, same version, ordered per shard) still load; only their eviction order is per shard.
inline constexpr std::string_view snapshot_magic = "LLMFSNAP";
inline constexpr std::uint32_t snapshot_version = 1;
inline constexpr std::size_t snapshot_header_size = 8 + 4 + 4 + 8 + 8;

class ByteWriter {
public:
    template <class T>
    void pod(T value) {
        static_assert(std::is_trivially_copyable_v<T>);
        char bytes[sizeof(T)];
        std::memcpy(bytes, &value, sizeof(T));
        out_.append(bytes, sizeof(T));
    }
    void str(std::string_view s) {
        pod(static_cast<std::uint32_t>(s.size()));
        out_.append(s);
    }
    std::string& bytes() noexcept { return out_; }

private:
    std::string out_;
};

class ByteReader {
public:
    explicit ByteReader(std::string_view in) : in_(in) {}
    template <class T>
    T pod(const char* what) {
        static_assert(std::is_trivially_copyable_v<T>);
        need(sizeof(T), what);
        T value;
        std::memcpy(&value, in_.data() + pos_, sizeof(T));
        pos_ += sizeof(T);
        return value;
    }
    std::string_view str(const char* what) {
        const auto size = pod<std::uint32_t>(what);
        need(size, what);
        const std::string_view s = in_.substr(pos_, size);
        pos_ += size;
        return s;
    }
    [[nodiscard]] std::size_t remaining() const noexcept { return in_.size() - pos_; }

private:
    void need(std::size_t bytes, const char* what) const {
        if (in_.size() - pos_ < bytes) {
            throw Error(ErrorCode::CorruptSnapshot, fmt::format("snapshot truncated while reading {}", what));
        }
    }
    std::string_view in_;
    std::size_t pos_ = 0;
};

struct CacheKey {
    std::uint64_t low = 0;
    std::uint64_t high = 0;
    friend bool operator==(const CacheKey&, const CacheKey&) = default;
};

struct CacheKeyHash {
    std::size_t operator()(const CacheKey& key) const noexcept { return static_cast<std::size_t>(key.low); }
};

/// 128-bit key of (scope, normalized prompt): the scope's hash seeds the prompt's. At 128 bits a
/// collision is not a practical concern, so entries need not keep the normalized prompt.
inline CacheKey make_cache_key(std::string_view scope, std::string_view normalized_prompt) noexcept {
    // Two independently seeded 64-bit hashes (XXH3_128bits trips g++ 12's -Wmaybe-uninitialized in
    // xxhash's AVX-512 path under -march=native).
    const std::uint64_t scope_hash = xxh3_64(scope, 0x53434F5045ULL);
    return {xxh3_64(normalized_prompt, scope_hash), xxh3_64(normalized_prompt, scope_hash ^ 0x9E3779B97F4A7C15ULL)};
}

}  // namespace detail

/// The response cache. `E` embeds prompts for the semantic tier; `Index` is the per-scope vector
/// index (FlatIndex: exact; HnswIndex from llmfast/hnsw_index.hpp: approximate, for millions);
/// `C` is the clock (wall clock by default).
template <Embedder E, VectorIndex Index = FlatIndex, Clock C = WallClock>
class SemanticCache {
public:
    using Options = SemanticCacheOptions;
    using IndexOptions = typename Index::Options;
    using EmbedderType = E;

    explicit SemanticCache(E embedder = E{}, Options options = {}, IndexOptions index_options = {})
        requires std::default_initializable<C>
        : SemanticCache(std::move(embedder), options, index_options, nullptr) {}

    /// Uses `clock` (which must outlive the cache) instead of a default-constructed one.
    SemanticCache(E embedder, Options options, IndexOptions index_options, const C& clock)
        : SemanticCache(std::move(embedder), options, index_options, &clock) {}

    SemanticCache(const SemanticCache&) = delete;
    SemanticCache& operator=(const SemanticCache&) = delete;

    [[nodiscard]] const Options& options() const noexcept { return options_; }
    [[nodiscard]] const E& embedder() const noexcept { return embedder_; }
    [[nodiscard]] bool semantic_enabled() const noexcept { return semantic_; }

    /// Exact tier, then (if enabled) semantic tier. Never throws for ordinary input; what the
    /// embedder throws propagates.
    LookupResult lookup(std::string_view prompt, std::string_view scope) {
        thread_local std::string normalized;
        detail::normalize_prompt(prompt, normalized);
        const detail::CacheKey key = detail::make_cache_key(scope, normalized);
        const std::int64_t now = now_ns();
        if (LookupResult exact = lookup_exact(key, now); exact) return exact;
        if (semantic_) {
            if (LookupResult similar = lookup_semantic(prompt, scope); similar) return similar;
        }
        stats_.misses.fetch_add(1, std::memory_order_relaxed);
        return {};
    }

    /// Stores `response` for (`scope`, `prompt`), replacing an entry with the same normalized prompt.
    /// `ttl` overrides the cache's TTL. Returns false when the entry alone exceeds a shard's byte
    /// budget (max_bytes / shards) and so was not stored.
    bool insert(std::string_view prompt, std::string_view scope, std::string response,
                std::optional<std::chrono::nanoseconds> ttl = std::nullopt) {
        const std::chrono::nanoseconds entry_ttl = ttl.value_or(options_.ttl);
        if (entry_ttl <= std::chrono::nanoseconds::zero()) throw Error(ErrorCode::InvalidArgument, "insert: ttl must be > 0");
        Prepared prepared = prepare(prompt, scope, std::make_shared<const std::string>(std::move(response)));
        const std::int64_t now = now_ns();
        prepared.created = now;
        prepared.expires = expiry(now, entry_ttl);
        return insert_prepared(std::move(prepared), true);
    }

    /// The cached response, or `fn()`'s result (stored, then returned). Concurrent calls that miss on
    /// the same scope + normalized prompt run `fn` once; the others wait and get its result or its
    /// exception. `fn` must return something convertible to std::string.
    template <class Fn>
        requires std::invocable<Fn&> && std::convertible_to<std::invoke_result_t<Fn&>, std::string>
    LookupResult get_or_compute(std::string_view prompt, std::string_view scope, Fn&& fn,
                                std::optional<std::chrono::nanoseconds> ttl = std::nullopt) {
        const std::chrono::nanoseconds entry_ttl = ttl.value_or(options_.ttl);
        if (entry_ttl <= std::chrono::nanoseconds::zero()) {
            throw Error(ErrorCode::InvalidArgument, "get_or_compute: ttl must be > 0");
        }
        if (LookupResult cached = lookup(prompt, scope); cached) return cached;

        const std::string normalized = detail::normalize_prompt(prompt);
        const detail::CacheKey key = detail::make_cache_key(scope, normalized);
        Shard& shard = shard_for(key);
        std::shared_ptr<Flight> flight;
        {
            std::unique_lock lock(shard.mutex);
            if (const auto it = shard.flights.find(key); it != shard.flights.end()) {
                std::shared_future<std::shared_ptr<const std::string>> future = it->second->future;
                lock.unlock();
                return LookupResult{MatchKind::Computed, 1.0F, std::chrono::nanoseconds::zero(), future.get()};
            }
            // Another caller may have finished its flight between our lookup and taking the lock.
            if (LookupResult exact = lookup_exact_locked(shard, key, now_ns()); exact) return exact;
            flight = std::make_shared<Flight>();
            shard.flights.emplace(key, flight);
        }
        const auto finish_flight = [&] {
            std::lock_guard lock(shard.mutex);
            shard.flights.erase(key);
        };
        std::shared_ptr<const std::string> response;
        try {
            stats_.computations.fetch_add(1, std::memory_order_relaxed);
            response = std::make_shared<const std::string>(std::invoke(fn));
            Prepared prepared = prepare(prompt, scope, response);
            const std::int64_t now = now_ns();
            prepared.created = now;
            prepared.expires = expiry(now, entry_ttl);
            insert_prepared(std::move(prepared), true);
        } catch (...) {
            finish_flight();
            flight->promise.set_exception(std::current_exception());
            throw;
        }
        // Inserted before the flight ends, so a caller arriving now finds the entry.
        finish_flight();
        flight->promise.set_value(response);
        return LookupResult{MatchKind::Computed, 1.0F, std::chrono::nanoseconds::zero(), std::move(response)};
    }

    /// Removes the entry for (`scope`, normalized `prompt`); false if there was none.
    bool erase(std::string_view prompt, std::string_view scope) {
        const std::string normalized = detail::normalize_prompt(prompt);
        const detail::CacheKey key = detail::make_cache_key(scope, normalized);
        Shard& shard = shard_for(key);
        std::lock_guard lock(shard.mutex);
        const auto it = shard.by_key.find(key);
        if (it == shard.by_key.end()) return false;
        remove_locked(shard, it->second);
        return true;
    }

    /// Removes every entry of `scope`; returns how many. Entries inserted into the scope while this
    /// runs may survive (they are then in a fresh scope).
    std::size_t erase_scope(std::string_view scope) {
        std::shared_ptr<Scope> victim;
        {
            std::unique_lock lock(scopes_mutex_);
            const auto it = scopes_.find(std::string(scope));
            if (it == scopes_.end()) return 0;
            victim = it->second;
            victim->erased.store(true, std::memory_order_release);
            scopes_.erase(it);
        }
        return remove_entries_if([&](const auto& entry) { return entry.scope == victim; });
    }

    /// Removes every entry.
    void clear() {
        {
            std::unique_lock lock(scopes_mutex_);
            for (auto& [name, scope] : scopes_) scope->erased.store(true, std::memory_order_release);
            scopes_.clear();
        }
        for (std::size_t i = 0; i < shard_count_; ++i) {
            Shard& shard = shards_[i];
            std::lock_guard lock(shard.mutex);
            while (!shard.lru.empty()) remove_locked(shard, std::prev(shard.lru.end()));
        }
    }

    /// Removes every expired entry now (lookups also drop expired entries they meet); returns how many.
    std::size_t purge_expired() {
        const std::int64_t now = now_ns();
        const std::size_t removed = remove_entries_if([&](const auto& entry) { return entry.expires <= now; });
        stats_.expirations.fetch_add(removed, std::memory_order_relaxed);
        return removed;
    }

    [[nodiscard]] std::size_t size() const noexcept { return entry_count_.load(std::memory_order_relaxed); }

    [[nodiscard]] CacheStats stats() const noexcept {
        CacheStats s;
        s.exact_hits = stats_.exact_hits.load(std::memory_order_relaxed);
        s.semantic_hits = stats_.semantic_hits.load(std::memory_order_relaxed);
        s.misses = stats_.misses.load(std::memory_order_relaxed);
        s.insertions = stats_.insertions.load(std::memory_order_relaxed);
        s.evictions = stats_.evictions.load(std::memory_order_relaxed);
        s.expirations = stats_.expirations.load(std::memory_order_relaxed);
        s.guard_vetoes = stats_.guard_vetoes.load(std::memory_order_relaxed);
        s.computations = stats_.computations.load(std::memory_order_relaxed);
        s.unusable_embeddings = unusable_embeddings_.load(std::memory_order_relaxed);
        s.entries = entry_count_.load(std::memory_order_relaxed);
        s.memory_bytes = memory_bytes_.load(std::memory_order_relaxed);
        return s;
    }

    /// The snapshot as bytes (see `save`).
    [[nodiscard]] std::string save_to_string() const {
        detail::ByteWriter payload;
        payload.str(identity_);
        payload.pod(static_cast<std::uint64_t>(dimension_));
        payload.pod(now_ns());
        std::vector<SavedEntry> entries;
        for (std::size_t i = 0; i < shard_count_; ++i) {
            Shard& shard = shards_[i];
            std::lock_guard lock(shard.mutex);
            for (auto it = shard.lru.rbegin(); it != shard.lru.rend(); ++it) {  // least recent first
                entries.push_back(SavedEntry{it->last_use, it->scope, it->prompt, it->response, it->created, it->expires});
            }
        }
        // One recency order for the whole cache (stamps are unique: a plain sort is stable enough).
        std::sort(entries.begin(), entries.end(),
                  [](const SavedEntry& a, const SavedEntry& b) { return a.last_use < b.last_use; });
        payload.pod(static_cast<std::uint64_t>(entries.size()));
        for (const SavedEntry& entry : entries) {
            payload.str(entry.scope->name);
            payload.str(entry.prompt);
            payload.str(*entry.response);
            payload.pod(entry.created);
            payload.pod(entry.expires);
        }
        detail::ByteWriter out;
        out.bytes().append(detail::snapshot_magic);
        out.pod(detail::snapshot_version);
        out.pod(std::uint32_t{0});
        out.pod(static_cast<std::uint64_t>(payload.bytes().size()));
        out.pod(detail::xxh3_64(payload.bytes(), 0));
        out.bytes().append(payload.bytes());
        return std::move(out.bytes());
    }

    /// Writes a snapshot to `path` atomically: into a temporary file beside it (flushed to disk), then
    /// renamed over `path`, so a crash leaves either the old snapshot or the new one, never half of one.
    /// Throws Error(IoError) naming the path when the file cannot be created, written or renamed.
    void save(const std::filesystem::path& path) const {
        const std::string bytes = save_to_string();
        std::filesystem::path temp = path;
        temp += fmt::format(".tmp.{:x}", temp_suffix());
        const std::string temp_name = detail::path_for_message(temp);
        {
            errno = 0;
            std::FILE* file = std::fopen(temp_name.c_str(), "wb");
            if (file == nullptr) {
                const int error = errno;
                throw Error(ErrorCode::IoError, fmt::format("save: cannot create {}: {}", temp_name,
                                                            std::generic_category().message(error != 0 ? error : EIO)));
            }
            bool ok = std::fwrite(bytes.data(), 1, bytes.size(), file) == bytes.size() && std::fflush(file) == 0;
#ifdef LLMFAST_CACHE_HAVE_FSYNC
            ok = ok && ::fsync(::fileno(file)) == 0;
#endif
            ok = std::fclose(file) == 0 && ok;
            if (!ok) {
                std::error_code ignored;
                std::filesystem::remove(temp, ignored);
                throw Error(ErrorCode::IoError, fmt::format("save: writing {} failed", temp_name));
            }
        }
        std::error_code error;
        std::filesystem::rename(temp, path, error);
        if (error) {
            std::error_code ignored;
            std::filesystem::remove(temp, ignored);
            throw Error(ErrorCode::IoError,
                        fmt::format("save: renaming to {} failed: {}", detail::path_for_message(path), error.message()));
        }
    }

    /// Replaces the cache's content with the snapshot's (expired entries are dropped; if it holds more
    /// than the capacity, the least recently used are evicted — the snapshot is in one recency order
    /// for the whole cache, so this holds whatever shard count either cache has; as everywhere in the
    /// cache, capacity is per shard, so each shard keeps its own most recently used). Validates
    /// everything first: on any error the cache is unchanged. Re-embeds the prompts (outside locks)
    /// when the semantic tier is on.
    void load_from_string(std::string_view bytes) {
        std::vector<Prepared> prepared = parse_snapshot(bytes);
        clear();
        for (Prepared& entry : prepared) insert_prepared(std::move(entry), false);
    }

    /// `load_from_string` of the file at `path`. A path that cannot be opened or read (missing, a
    /// directory, a read error part way through) throws Error(IoError) naming the path, and the cache
    /// is unchanged.
    void load(const std::filesystem::path& path) { load_from_string(detail::read_whole_file(path, "load")); }

private:
    struct Scope {
        explicit Scope(std::string scope_name, std::optional<Index> scope_index)
            : name(std::move(scope_name)), index(std::move(scope_index)) {}
        std::string name;
        std::shared_mutex mutex;      // guards `index`
        std::optional<Index> index;   // present when the semantic tier is on
        std::atomic<bool> erased{false};
    };

    struct Entry {
        std::uint64_t id = 0;
        detail::CacheKey key;
        std::shared_ptr<Scope> scope;
        std::string prompt;  // as inserted: re-embedded on load, and what the guards saw
        std::shared_ptr<const std::string> response;
        GuardSignature signature;
        std::int64_t created = 0;
        std::int64_t expires = 0;
        std::size_t bytes = 0;
        std::uint64_t last_use = 0;  // next_use_ when inserted or last hit (taken under the shard lock)
        bool indexed = false;
    };

    using EntryList = std::list<Entry>;
    using EntryIter = typename EntryList::iterator;

    struct Flight {
        Flight() : future(promise.get_future().share()) {}
        std::promise<std::shared_ptr<const std::string>> promise;
        std::shared_future<std::shared_ptr<const std::string>> future;
    };


    // One LRU partition. Invariant: `by_key` and `by_id` index exactly the entries of `lru`; an
    // entry with `indexed` has its vector in `scope->index` under `id`. Lock order: shard mutex,
    // then scopes_mutex_, then a scope's mutex; never the reverse.
    struct alignas(64) Shard {
        std::mutex mutex;
        EntryList lru;  // front = most recently used
        std::unordered_map<detail::CacheKey, EntryIter, detail::CacheKeyHash> by_key;
        std::unordered_map<std::uint64_t, EntryIter> by_id;
        std::unordered_map<detail::CacheKey, std::shared_ptr<Flight>, detail::CacheKeyHash> flights;
        std::size_t bytes = 0;
        std::size_t max_entries = 0;
        std::size_t max_bytes = 0;
    };

    // Everything an insertion needs that can be computed (and can fail) outside the locks.
    struct Prepared {
        detail::CacheKey key;
        std::string scope;
        std::string prompt;
        std::shared_ptr<const std::string> response;
        GuardSignature signature;
        std::vector<float> vector;  // empty when the semantic tier is off
        std::int64_t created = 0;
        std::int64_t expires = 0;
    };

    struct SavedEntry {
        std::uint64_t last_use;
        std::shared_ptr<Scope> scope;
        std::string prompt;
        std::shared_ptr<const std::string> response;
        std::int64_t created;
        std::int64_t expires;
    };

    struct Counters {
        std::atomic<std::uint64_t> exact_hits{0}, semantic_hits{0}, misses{0}, insertions{0}, evictions{0},
            expirations{0}, guard_vetoes{0}, computations{0};
    };

    SemanticCache(E embedder, Options options, IndexOptions index_options, const C* clock)
        : embedder_(std::move(embedder)), options_(options), index_options_(index_options),
          clock_(clock != nullptr ? clock : &own_clock()) {
        if (options_.max_entries == 0) throw Error(ErrorCode::InvalidArgument, "SemanticCache: max_entries must be > 0");
        if (options_.max_bytes == 0) throw Error(ErrorCode::InvalidArgument, "SemanticCache: max_bytes must be > 0");
        if (options_.ttl <= std::chrono::nanoseconds::zero()) {
            throw Error(ErrorCode::InvalidArgument, "SemanticCache: ttl must be > 0 (use Options::never for no expiry)");
        }
        if (!(options_.similarity_threshold > 0.0F && options_.similarity_threshold <= 1.0F)) {
            throw Error(ErrorCode::InvalidArgument, "SemanticCache: similarity_threshold must be in (0, 1]");
        }
        if (options_.semantic_candidates == 0) {
            throw Error(ErrorCode::InvalidArgument, "SemanticCache: semantic_candidates must be >= 1");
        }
        if (options_.shards == 0) throw Error(ErrorCode::InvalidArgument, "SemanticCache: shards must be >= 1");
        dimension_ = static_cast<std::size_t>(embedder_.dimension());
        if (dimension_ == 0) throw Error(ErrorCode::InvalidArgument, "SemanticCache: the embedder's dimension is 0");
        identity_ = embedder_identity(embedder_);
        switch (options_.semantic_tier) {
            case SemanticTier::On: semantic_ = true; break;
            case SemanticTier::Off: semantic_ = false; break;
            case SemanticTier::Auto: semantic_ = !std::is_same_v<E, HashingEmbedder>; break;
        }
        shard_count_ = std::min(options_.shards, options_.max_entries);
        shards_ = std::make_unique<Shard[]>(shard_count_);
        for (std::size_t i = 0; i < shard_count_; ++i) {
            // Split the capacities so the shards sum to exactly the configured totals.
            shards_[i].max_entries = options_.max_entries / shard_count_ + (i < options_.max_entries % shard_count_ ? 1 : 0);
            shards_[i].max_bytes = std::max<std::size_t>(
                1, options_.max_bytes / shard_count_ + (i < options_.max_bytes % shard_count_ ? 1 : 0));
        }
    }

    const C& own_clock() {
        if constexpr (std::default_initializable<C>) {
            owned_clock_.emplace();
            return *owned_clock_;
        } else {
            throw Error(ErrorCode::InvalidArgument, "SemanticCache: this clock type must be passed in");
        }
    }

    // A name for save's temporary file that concurrent saves to the same path do not share; never
    // throws (std::random_device may, when the system has no entropy source).
    std::uint64_t temp_suffix() const noexcept {
        std::uint64_t suffix = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
                               static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(this));
        try {
            suffix ^= static_cast<std::uint64_t>(std::random_device{}()) << 32U;
        } catch (...) {
        }
        return suffix;
    }

    [[nodiscard]] std::int64_t now_ns() const {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_->now().time_since_epoch()).count();
    }

    static std::int64_t expiry(std::int64_t now, std::chrono::nanoseconds ttl) noexcept {
        constexpr std::int64_t max = std::numeric_limits<std::int64_t>::max();
        const std::int64_t t = ttl.count();
        return t >= max - now ? max : now + t;
    }

    Shard& shard_for(const detail::CacheKey& key) const noexcept { return shards_[key.high % shard_count_]; }

    static bool expired(const Entry& entry, std::int64_t now) noexcept { return entry.expires <= now; }

    LookupResult lookup_exact(const detail::CacheKey& key, std::int64_t now) {
        Shard& shard = shard_for(key);
        std::lock_guard lock(shard.mutex);
        return lookup_exact_locked(shard, key, now);
    }

    LookupResult lookup_exact_locked(Shard& shard, const detail::CacheKey& key, std::int64_t now) {
        const auto it = shard.by_key.find(key);
        if (it == shard.by_key.end()) return {};
        // The 128-bit key covers scope and prompt, so no string comparison (and no pointer chase
        // into the scope) is needed on this hot path.
        const EntryIter entry = it->second;
        if (expired(*entry, now)) {
            remove_locked(shard, entry);
            stats_.expirations.fetch_add(1, std::memory_order_relaxed);
            return {};
        }
        if (entry != shard.lru.begin()) shard.lru.splice(shard.lru.begin(), shard.lru, entry);
        entry->last_use = next_use_.fetch_add(1, std::memory_order_relaxed);
        stats_.exact_hits.fetch_add(1, std::memory_order_relaxed);
        return LookupResult{MatchKind::Exact, 1.0F, std::chrono::nanoseconds(std::max<std::int64_t>(0, now - entry->created)),
                            entry->response};
    }

    std::shared_ptr<Scope> find_scope(std::string_view name) const {
        std::shared_lock lock(scopes_mutex_);
        const auto it = scopes_.find(std::string(name));
        return it == scopes_.end() ? nullptr : it->second;
    }

    std::shared_ptr<Scope> find_or_create_scope(const std::string& name) {
        if (auto scope = find_scope(name)) return scope;
        std::unique_lock lock(scopes_mutex_);
        auto& slot = scopes_[name];
        if (!slot) {
            slot = std::make_shared<Scope>(name, semantic_ ? std::optional<Index>(std::in_place, dimension_, index_options_)
                                                           : std::optional<Index>());
        }
        return slot;
    }

    // Embeds into `out` and L2-normalizes it, so the index's inner product is the cosine whatever the
    // embedder returns. False (and counted in `unusable_embeddings`) for a zero or non-finite vector:
    // it must never match anything, and the indexes reject non-finite input. The scaling is done in
    // double: a float 1/norm overflows to inf for a vector of subnormals, which made NaNs.
    bool embed_normalized(std::string_view prompt, std::span<float> out) const {
        embedder_.embed(prompt, out);
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
        if (!usable) unusable_embeddings_.fetch_add(1, std::memory_order_relaxed);
        return usable;
    }

    LookupResult lookup_semantic(std::string_view prompt, std::string_view scope_name) {
        const std::shared_ptr<Scope> scope = find_scope(scope_name);
        if (!scope) return {};
        thread_local std::vector<float> query;
        query.resize(dimension_);
        if (!embed_normalized(prompt, query)) return {};
        std::vector<SearchHit> candidates;
        {
            std::shared_lock lock(scope->mutex);
            if (!scope->index || scope->index->size() == 0) return {};
            candidates = scope->index->search(std::span<const float>(query), options_.semantic_candidates);
        }
        std::optional<GuardSignature> signature;
        for (const SearchHit& candidate : candidates) {
            if (!(candidate.score >= options_.similarity_threshold)) break;  // best first
            if (!signature) signature = make_guard_signature(prompt);
            Shard& shard = shards_[candidate.id % shard_count_];
            const std::int64_t now = now_ns();
            std::lock_guard lock(shard.mutex);
            const auto it = shard.by_id.find(candidate.id);
            if (it == shard.by_id.end()) continue;  // evicted since the search
            const EntryIter entry = it->second;
            if (entry->scope != scope) continue;
            if (expired(*entry, now)) {
                remove_locked(shard, entry);
                stats_.expirations.fetch_add(1, std::memory_order_relaxed);
                continue;
            }
            if (check_hit_guards(*signature, entry->signature, options_.guards) != GuardVeto::None) {
                stats_.guard_vetoes.fetch_add(1, std::memory_order_relaxed);
                continue;
            }
            shard.lru.splice(shard.lru.begin(), shard.lru, entry);
            entry->last_use = next_use_.fetch_add(1, std::memory_order_relaxed);
            stats_.semantic_hits.fetch_add(1, std::memory_order_relaxed);
            return LookupResult{MatchKind::Semantic, std::min(candidate.score, 1.0F),
                                std::chrono::nanoseconds(std::max<std::int64_t>(0, now - entry->created)), entry->response};
        }
        return {};
    }

    Prepared prepare(std::string_view prompt, std::string_view scope, std::shared_ptr<const std::string> response) const {
        Prepared prepared;
        const std::string normalized = detail::normalize_prompt(prompt);
        prepared.key = detail::make_cache_key(scope, normalized);
        prepared.scope = std::string(scope);
        prepared.prompt = std::string(prompt);
        prepared.response = std::move(response);
        if (semantic_) {
            prepared.signature = make_guard_signature(prompt);
            prepared.vector.resize(dimension_);
            if (!embed_normalized(prompt, prepared.vector)) prepared.vector.clear();  // stored, never matched
        }
        return prepared;
    }

    std::size_t entry_bytes(const Entry& entry) const noexcept {
        // Bookkeeping: the list node, two map nodes and their buckets, the shared response's control block.
        constexpr std::size_t overhead = sizeof(Entry) + 2 * sizeof(void*) + 2 * 48 + 2 * sizeof(void*) + 32;
        std::size_t bytes = overhead + entry.prompt.capacity() + entry.response->capacity() + entry.signature.memory_bytes();
        if (entry.indexed) {
            if constexpr (requires(const Index& index) { index.bytes_per_vector(); }) {
                bytes += entry.scope->index->bytes_per_vector();
            } else {
                bytes += dimension_ * sizeof(float) + 32;
            }
        }
        return bytes;
    }

    bool insert_prepared(Prepared prepared, bool count_insertion) {
        Shard& shard = shard_for(prepared.key);
        for (;;) {
            std::shared_ptr<Scope> scope = find_or_create_scope(prepared.scope);
            std::lock_guard lock(shard.mutex);
            // erase_scope/clear mark a scope erased before removing its entries shard by shard; checking
            // under the shard lock means either we see the mark or they will see (and remove) our entry.
            if (scope->erased.load(std::memory_order_acquire)) continue;
            if (const auto it = shard.by_key.find(prepared.key); it != shard.by_key.end()) remove_locked(shard, it->second);

            shard.lru.emplace_front();
            const EntryIter entry = shard.lru.begin();
            try {
                entry->id = next_id_.fetch_add(1, std::memory_order_relaxed) * shard_count_ +
                            static_cast<std::uint64_t>(&shard - shards_.get());
                entry->key = prepared.key;
                entry->scope = scope;
                entry->prompt = std::move(prepared.prompt);
                entry->response = std::move(prepared.response);
                entry->signature = std::move(prepared.signature);
                entry->created = prepared.created;
                entry->expires = prepared.expires;
                entry->last_use = next_use_.fetch_add(1, std::memory_order_relaxed);
                entry->indexed = !prepared.vector.empty() && scope->index.has_value();
                entry->bytes = entry_bytes(*entry);
                if (entry->bytes > shard.max_bytes) {
                    shard.lru.pop_front();
                    return false;
                }
                shard.by_key.emplace(entry->key, entry);
                try {
                    shard.by_id.emplace(entry->id, entry);
                    if (entry->indexed) {
                        std::unique_lock index_lock(scope->mutex);
                        scope->index->add(entry->id, std::span<const float>(prepared.vector));
                    }
                } catch (...) {
                    shard.by_key.erase(entry->key);
                    shard.by_id.erase(entry->id);
                    throw;
                }
            } catch (...) {
                shard.lru.erase(entry);
                throw;
            }
            shard.bytes += entry->bytes;
            entry_count_.fetch_add(1, std::memory_order_relaxed);
            memory_bytes_.fetch_add(entry->bytes, std::memory_order_relaxed);
            if (count_insertion) stats_.insertions.fetch_add(1, std::memory_order_relaxed);
            // Evict least recently used entries (never the new one: it fits the budget on its own).
            while (shard.lru.size() > shard.max_entries || shard.bytes > shard.max_bytes) {
                remove_locked(shard, std::prev(shard.lru.end()));
                stats_.evictions.fetch_add(1, std::memory_order_relaxed);
            }
            return true;
        }
    }

    // Requires shard.mutex held. Removes the entry from every structure, its vector from its scope.
    void remove_locked(Shard& shard, EntryIter entry) noexcept {
        if (entry->indexed) {
            std::unique_lock index_lock(entry->scope->mutex);
            // FlatIndex/HnswIndex removal does not allocate; a throwing user index would leave a stale
            // vector whose id no longer resolves, which lookups skip.
            try {
                entry->scope->index->remove(entry->id);
            } catch (...) {
            }
        }
        shard.by_key.erase(entry->key);
        shard.by_id.erase(entry->id);
        shard.bytes -= entry->bytes;
        entry_count_.fetch_sub(1, std::memory_order_relaxed);
        memory_bytes_.fetch_sub(entry->bytes, std::memory_order_relaxed);
        shard.lru.erase(entry);
    }

    // Removes, shard by shard (one shard lock at a time), every entry for which `pred` holds.
    template <class Pred>
    std::size_t remove_entries_if(Pred pred) {
        std::size_t removed = 0;
        for (std::size_t i = 0; i < shard_count_; ++i) {
            Shard& shard = shards_[i];
            std::lock_guard lock(shard.mutex);
            for (auto it = shard.lru.begin(); it != shard.lru.end();) {
                const auto next = std::next(it);
                if (pred(*it)) {
                    remove_locked(shard, it);
                    ++removed;
                }
                it = next;
            }
        }
        return removed;
    }

    std::vector<Prepared> parse_snapshot(std::string_view bytes) const {
        using detail::ByteReader;
        if (bytes.size() < detail::snapshot_header_size) {
            throw Error(ErrorCode::CorruptSnapshot, fmt::format("snapshot too short ({} bytes)", bytes.size()));
        }
        if (bytes.substr(0, detail::snapshot_magic.size()) != detail::snapshot_magic) {
            throw Error(ErrorCode::CorruptSnapshot, "not an llmfast cache snapshot (bad magic)");
        }
        ByteReader header(bytes.substr(detail::snapshot_magic.size(), detail::snapshot_header_size - detail::snapshot_magic.size()));
        const auto version = header.pod<std::uint32_t>("version");
        const auto reserved = header.pod<std::uint32_t>("flags");
        const auto payload_size = header.pod<std::uint64_t>("payload size");
        const auto checksum = header.pod<std::uint64_t>("checksum");
        if (version != detail::snapshot_version) {
            throw Error(ErrorCode::CorruptSnapshot,
                        fmt::format("snapshot version {} is not supported (this build reads version {})", version,
                                    detail::snapshot_version));
        }
        if (reserved != 0) throw Error(ErrorCode::CorruptSnapshot, "snapshot has unknown flags");
        const std::string_view payload = bytes.substr(detail::snapshot_header_size);
        if (payload_size != payload.size()) {
            throw Error(ErrorCode::CorruptSnapshot, fmt::format("snapshot payload is {} bytes, header says {} (truncated?)",
                                                                payload.size(), payload_size));
        }
        if (detail::xxh3_64(payload, 0) != checksum) throw Error(ErrorCode::CorruptSnapshot, "snapshot checksum mismatch");

        ByteReader in(payload);
        const std::string_view identity = in.str("embedder identity");
        const auto dimension = in.pod<std::uint64_t>("dimension");
        if (identity != identity_ || dimension != dimension_) {
            throw Error(ErrorCode::CorruptSnapshot,
                        fmt::format("snapshot was written with embedder '{}' (dimension {}), this cache uses '{}' (dimension {})",
                                    identity, dimension, identity_, dimension_));
        }
        (void)in.pod<std::int64_t>("saved-at time");
        const auto count = in.pod<std::uint64_t>("entry count");
        constexpr std::size_t min_entry_bytes = 3 * 4 + 2 * 8;
        if (count > in.remaining() / min_entry_bytes) {
            throw Error(ErrorCode::CorruptSnapshot, fmt::format("snapshot claims {} entries, too many for its size", count));
        }
        struct Raw {
            std::string_view scope, prompt, response;
            std::int64_t created, expires;
        };
        std::vector<Raw> raw;
        raw.reserve(static_cast<std::size_t>(count));
        for (std::uint64_t i = 0; i < count; ++i) {
            Raw r{};
            r.scope = in.str("entry scope");
            r.prompt = in.str("entry prompt");
            r.response = in.str("entry response");
            r.created = in.pod<std::int64_t>("entry creation time");
            r.expires = in.pod<std::int64_t>("entry expiry time");
            if (r.expires <= r.created) throw Error(ErrorCode::CorruptSnapshot, "snapshot entry expires before it was created");
            raw.push_back(r);
        }
        if (in.remaining() != 0) throw Error(ErrorCode::CorruptSnapshot, "snapshot has trailing bytes");

        // Valid. Now the work that may allocate or embed, still without touching the cache.
        const std::int64_t now = now_ns();
        std::vector<Prepared> prepared;
        prepared.reserve(raw.size());
        for (const Raw& r : raw) {
            if (r.expires <= now) continue;  // TTL passed while the snapshot sat on disk
            Prepared p = prepare(r.prompt, r.scope, std::make_shared<const std::string>(r.response));
            p.created = r.created;
            p.expires = r.expires;
            prepared.push_back(std::move(p));
        }
        return prepared;
    }

    E embedder_;
    Options options_;
    IndexOptions index_options_;
    std::optional<C> owned_clock_;
    const C* clock_;
    std::size_t dimension_ = 0;
    std::string identity_;
    bool semantic_ = false;
    std::size_t shard_count_ = 0;
    std::unique_ptr<Shard[]> shards_;
    mutable std::shared_mutex scopes_mutex_;
    std::unordered_map<std::string, std::shared_ptr<Scope>> scopes_;
    std::atomic<std::uint64_t> next_id_{0};
    std::atomic<std::uint64_t> next_use_{0};  // recency stamps: one order across all shards
    mutable std::atomic<std::uint64_t> unusable_embeddings_{0};
    std::atomic<std::size_t> entry_count_{0};
    std::atomic<std::size_t> memory_bytes_{0};
    Counters stats_;
};

}  // namespace llmfast
