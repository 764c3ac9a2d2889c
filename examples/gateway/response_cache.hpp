// examples/gateway/response_cache.hpp — the response cache on llmfast-gateway's request path: an
// llmfast::SemanticCache whose value is an answer's chunk list (content pieces, finish reason, usage),
// so a hit is replayed as a stream with the original chunk boundaries, or as one chat.completion.
//
// Key: scope = tenant + model + system prompt + every other top-level request member but messages,
// stream and stream_options (sampling parameters, tools, response_format, ...: minified, sorted);
// prompt = the non-system messages. (The library normalizes the prompt for its exact tier: whitespace
// collapsed, ASCII case-folded — see docs/cache.md.) By default only deterministic requests
// (temperature == 0, or a seed) are cached; n > 1 never is.
//
// The path (server.cpp, Connection::chat): after validation and before prompt fitting, admission and
// the backend, `SemanticCache::begin` gives a hit (replayed at once), a Follower (another request is
// computing this answer: `wait_ready` below waits on the connection's strand without blocking a
// thread, cancelled when the client goes away) or a Leader (this request calls the backend; a
// `ResponseCapture` observes what is sent to the client; `complete` only when the stream ended
// normally — finish reason seen, no error event, client still there — otherwise `abandon`).
//
// Embedder: the built-in HashingEmbedder, or with --embeddings-url an llmfast::OpenAiEmbedder
// (GatewayEmbedder below); then `remote()` is true and server.cpp runs every cache step on its cache
// pool, never on an event-loop thread.
//
// Shared tier (--redis URL, built with hiredis: LLMFAST_GATEWAY_REDIS): an llmfast::RedisTier attached
// to the cache, so replicas on one Redis (and one --redis-prefix) share their answers: a local miss
// asks Redis (one GET, bounded by --redis-timeout-ms), every stored answer is written through, and
// each replica's local semantic index follows the others' inserts on Redis's stream. A Redis call is
// network I/O, so `remote()` is true then too (the same cache-pool path as --embeddings-url). Redis
// down, slow or restarting never fails a request: the tier answers Unavailable within its bound and
// the cache goes on locally (counted; /metrics shows it).
//
// Thread-safety: ResponseCache may be used from any thread (SemanticCache is thread-safe; the scope
// registry has a mutex). ResponseCapture and wait_ready belong to one request on its strand.
#pragma once

#include "config.hpp"
#include "json_util.hpp"
#include "sink.hpp"

#include <llmfast/hashing_embedder.hpp>
#include <llmfast/semantic_cache.hpp>
#if LLMFAST_GATEWAY_HTTP_EMBEDDER
#include <llmfast/curl_transport.hpp>
#include <llmfast/openai_embedder.hpp>
#endif
#if LLMFAST_GATEWAY_REDIS
#include <llmfast/redis_tier.hpp>
#endif
#include <llmfast/sse.hpp>

#include <fmt/format.h>

#include <charconv>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace gateway {

/// One cached answer: what a replay needs (the role is always "assistant").
struct CachedAnswer {
    std::vector<std::string> pieces;  ///< content deltas, in order, as the backend sent them
    std::string finish_reason = "stop";
    std::uint64_t prompt_tokens = 0, completion_tokens = 0;

    /// "LFC1 <pieces> <prompt> <completion> <finish-len>\n<finish>" then "<len>\n<bytes>" per piece.
    [[nodiscard]] std::string encode() const {
        std::string out = fmt::format("LFC1 {} {} {} {}\n", pieces.size(), prompt_tokens, completion_tokens, finish_reason.size());
        out += finish_reason;
        for (const std::string& piece : pieces) {
            fmt::format_to(std::back_inserter(out), "{}\n", piece.size());
            out += piece;
        }
        return out;
    }
    /// False when `text` is not an encode() result.
    static bool decode(std::string_view text, CachedAnswer& out) {
        std::size_t pos = 0;
        const auto number = [&](char end, std::uint64_t& value) {
            const auto [p, ec] = std::from_chars(text.data() + pos, text.data() + text.size(), value);
            if (ec != std::errc{} || p == text.data() + text.size() || *p != end) return false;
            pos = static_cast<std::size_t>(p - text.data()) + 1;
            return true;
        };
        if (!text.starts_with("LFC1 ")) return false;
        pos = 5;
        std::uint64_t count = 0, finish = 0;
        if (!number(' ', count) || !number(' ', out.prompt_tokens) || !number(' ', out.completion_tokens) || !number('\n', finish))
            return false;
        if (finish > text.size() - pos) return false;
        out.finish_reason = std::string(text.substr(pos, finish));
        pos += finish;
        out.pieces.clear();
        for (std::uint64_t i = 0; i < count; ++i) {
            std::uint64_t size = 0;
            if (!number('\n', size) || size > text.size() - pos) return false;
            out.pieces.emplace_back(text.substr(pos, size));
            pos += size;
        }
        return pos == text.size();
    }

    /// The SSE events of a replay, one string per event: role, each content piece, finish, the usage
    /// chunk (include_usage), [DONE].
    [[nodiscard]] std::vector<std::string> sse_events(const std::string& id, const std::string& model, std::int64_t created,
                                                      bool include_usage) const {
        const llmfast::OpenAiChunkEncoder encoder({.id = id, .model = model, .created = created});
        std::vector<std::string> events;
        events.reserve(pieces.size() + 4);
        std::string event;
        encoder.append_role(event);
        events.push_back(std::move(event));
        for (const std::string& piece : pieces) {
            event.clear();
            encoder.append_content(event, piece);
            events.push_back(std::move(event));
        }
        event.clear();
        encoder.append_finish(event, finish_reason);
        events.push_back(std::move(event));
        if (include_usage) {
            event.clear();
            encoder.append_usage(event, {.prompt_tokens = prompt_tokens, .completion_tokens = completion_tokens});
            events.push_back(std::move(event));
        }
        event.clear();
        llmfast::OpenAiChunkEncoder::append_done(event);
        events.push_back(std::move(event));
        return events;
    }

    /// A chat.completion object with usage.
    [[nodiscard]] std::string completion_json(const std::string& id, const std::string& model, std::int64_t created) const {
        std::string text;
        for (const std::string& piece : pieces) text += piece;
        return chat_completion_json(id, model, created, text, finish_reason, prompt_tokens, completion_tokens);
    }
};

/// Observes what a leader sends its client (a stream's bytes, or a whole response) and builds the
/// CachedAnswer. Anything it cannot replay faithfully (tool calls, logprobs, several choices, an
/// error event, a non-200 answer, unparseable data) makes it `uncacheable`.
class ResponseCapture {
public:
    void observe_response(unsigned status, std::string_view body) {
        if (status != 200) return fail();
        auto& parser = thread_parser(std::max<std::size_t>(body.size() + 64, 1 << 16), 64);
        simdjson::dom::element doc;
        if (parser.parse(body.data(), body.size()).get(doc) != simdjson::SUCCESS) return fail();
        simdjson::dom::array choices;
        if (doc["choices"].get(choices) != simdjson::SUCCESS || choices.size() != 1) return fail();
        const simdjson::dom::element choice = choices.at(0);
        if (!choice["logprobs"].is_null() && choice["logprobs"].error() == simdjson::SUCCESS) return fail();
        simdjson::dom::object message;
        if (choice["message"].get(message) != simdjson::SUCCESS) return fail();
        for (auto [key, value] : message) {
            if (key == "role" || key == "content") continue;
            if (!value.is_null()) return fail();  // tool_calls, a refusal, audio, ...
        }
        std::string_view content, finish;
        if (message["content"].get(content) != simdjson::SUCCESS) return fail();
        if (choice["finish_reason"].get(finish) != simdjson::SUCCESS || finish.empty()) return fail();
        answer_.pieces.assign(1, std::string(content));
        answer_.finish_reason = std::string(finish);
        finished_ = true;
    }
    void observe_stream(std::string_view bytes) {
        if (failed_) return;
        sse_.feed(bytes, [this](const llmfast::SseEventView& event) { observe_event(event); });
    }
    /// True when the answer is complete and replayable (the caller also checks the client is there).
    [[nodiscard]] bool complete() const { return finished_ && !failed_; }
    /// True once a stream's `data: [DONE]` went by (nothing more will be added to the answer).
    [[nodiscard]] bool done() const { return done_; }
    [[nodiscard]] CachedAnswer& answer() { return answer_; }

private:
    void fail() { failed_ = true; }
    void observe_event(const llmfast::SseEventView& event) {
        if (failed_) return;
        if (event.status != llmfast::ErrorCode::Ok) return fail();
        if (event.data.empty()) return;
        if (event.data == "[DONE]") {
            done_ = true;
            return;
        }
        auto& parser = thread_parser(std::max<std::size_t>(event.data.size() + 64, 1 << 16), 64);
        simdjson::dom::element doc;
        if (parser.parse(event.data.data(), event.data.size()).get(doc) != simdjson::SUCCESS) return fail();
        if (doc["error"].error() == simdjson::SUCCESS) return fail();
        simdjson::dom::array choices;
        if (doc["choices"].get(choices) != simdjson::SUCCESS) return fail();
        for (simdjson::dom::element choice : choices) {
            std::uint64_t index = 0;
            if (choice["index"].get(index) == simdjson::SUCCESS && index != 0) return fail();
            if (!choice["logprobs"].is_null() && choice["logprobs"].error() == simdjson::SUCCESS) return fail();
            simdjson::dom::object delta;
            if (choice["delta"].get(delta) == simdjson::SUCCESS) {
                for (auto [key, value] : delta) {
                    if (key == "role") continue;
                    if (key == "content") {
                        std::string_view text;
                        if (value.get(text) == simdjson::SUCCESS) {
                            if (!text.empty()) answer_.pieces.emplace_back(text);
                        } else if (!value.is_null()) {
                            return fail();
                        }
                        continue;
                    }
                    if (!value.is_null()) return fail();  // tool_calls, refusal, reasoning_content, ...
                }
            }
            std::string_view finish;
            if (choice["finish_reason"].get(finish) == simdjson::SUCCESS && !finish.empty()) {
                answer_.finish_reason = std::string(finish);
                finished_ = true;
            }
        }
    }

    llmfast::SseParser sse_{{.max_event_size = 1 << 20}};
    CachedAnswer answer_;
    bool finished_ = false, failed_ = false, done_ = false;
};

/// The cache's embedder: the built-in HashingEmbedder, or (--embeddings-url) an
/// llmfast::OpenAiEmbedder over an OpenAI-compatible /embeddings server. One type for the cache, so
/// the request path has one SemanticCache type; `remote()` says whether a call may block on the
/// network (the server then runs cache calls on its worker pool). Thread-safety: as its embedders.
class GatewayEmbedder {
public:
    explicit GatewayEmbedder(const Config& config) : hashing_(llmfast::HashingEmbedderOptions{.dimension = config.embedding_dimension}) {
        if (config.cache.embeddings_url.empty()) return;
#if LLMFAST_GATEWAY_HTTP_EMBEDDER
        http_ = std::make_shared<const Http>(llmfast::OpenAiEmbedderOptions{
            .base_url = config.cache.embeddings_url, .model = config.cache.embeddings_model,
            .dimension = config.cache.embeddings_dimension, .api_key = config.cache.embeddings_api_key,
            // A lookup never waits long for an embedding: a slow server is a miss, not a slow answer.
            .timeout = std::chrono::seconds(2), .attempt_timeout = std::chrono::seconds(2), .max_retries = 1});
#else
        throw ConfigError("--embeddings-url: this llmfast-gateway was built without libcurl (llmfast::http)");
#endif
    }
    [[nodiscard]] bool remote() const noexcept {
#if LLMFAST_GATEWAY_HTTP_EMBEDDER
        return http_ != nullptr;
#else
        return false;
#endif
    }
    [[nodiscard]] std::size_t dimension() const noexcept {
#if LLMFAST_GATEWAY_HTTP_EMBEDDER
        if (http_) return http_->dimension();
#endif
        return hashing_.dimension();
    }
    [[nodiscard]] std::string identity() const {
#if LLMFAST_GATEWAY_HTTP_EMBEDDER
        if (http_) return http_->identity();
#endif
        return hashing_.identity();
    }
    void embed(std::string_view text, std::span<float> out) const {
#if LLMFAST_GATEWAY_HTTP_EMBEDDER
        if (http_) return http_->embed(text, out);
#endif
        hashing_.embed(text, out);
    }
    void embed_batch(std::span<const std::string_view> texts, std::span<float> out) const {
#if LLMFAST_GATEWAY_HTTP_EMBEDDER
        if (http_) return http_->embed_batch(texts, out);
#endif
        hashing_.embed_batch(texts, out);
    }

private:
    llmfast::HashingEmbedder hashing_;
#if LLMFAST_GATEWAY_HTTP_EMBEDDER
    using Http = llmfast::OpenAiEmbedder<llmfast::CurlTransport>;
    std::shared_ptr<const Http> http_;
#endif
};

/// The gateway's cache: the SemanticCache plus which scopes belong to which model (for purges).
class ResponseCache {
public:
#if LLMFAST_GATEWAY_REDIS
    using Shared = llmfast::RedisTier;
    using Cache = llmfast::SemanticCache<GatewayEmbedder, llmfast::FlatIndex, llmfast::WallClock, llmfast::LruPolicy, Shared>;
#else
    using Cache = llmfast::SemanticCache<GatewayEmbedder>;
#endif

    explicit ResponseCache(const Config& config)
        : config_(config.cache),
          cache_(GatewayEmbedder(config),
                 llmfast::SemanticCacheOptions{.max_entries = config.cache.max_entries,
                                               .max_bytes = config.cache.max_bytes,
                                               .ttl = std::chrono::duration_cast<std::chrono::nanoseconds>(config.cache.ttl),
                                               .semantic_tier = config.cache.semantic ? llmfast::SemanticTier::On : llmfast::SemanticTier::Off,
                                               .similarity_threshold = config.cache.similarity_threshold,
                                               .shards = std::min<std::size_t>(16, config.cache.max_entries),
                                               // a dead embedding server is a miss, never a failed request
                                               .embedder_failure = llmfast::EmbedderFailure::Miss,
                                               .snapshot_vectors = config.cache.embeddings_url.empty() ? llmfast::SnapshotVectors::Off
                                                                                                         : llmfast::SnapshotVectors::On}) {
        if (!config.cache.redis_url.empty()) attach_redis(config.cache);
    }

    /// True when a cache call may wait on the network (a remote embedder, or the shared tier): cache
    /// calls must not run on an event-loop thread.
    [[nodiscard]] bool remote() const noexcept { return cache_.embedder().remote() || shared_attached(); }
    /// The single flight across replicas, for a leader of this replica's flight (the library's
    /// `begin` leaders do not take the shared tier's lock — only the blocking `get_or_compute` does —
    /// so the gateway takes it here and waits without blocking a thread, server.cpp `wait_replica`):
    /// Acquired (this replica computes; `unlock_across_replicas` when the request ends), Held
    /// (another replica computes: poll the cache for its entry for up to `replica_wait()`, then
    /// compute), Unavailable (no shared tier, or Redis did not answer: compute). A Redis call: only
    /// on the cache pool (where every cache step runs with --redis).
    [[nodiscard]] llmfast::SharedLock lock_across_replicas(const std::string& scope, std::string_view prompt) {
#if LLMFAST_GATEWAY_REDIS
        // Redis just failed (this request's lookup most likely found it so): do not spend a second
        // timeout on the lock — a Redis outage adds one bound to a miss, not two. With a remote
        // embedder no lock either: each poll of the wait is a lookup, which would embed the prompt
        // over the network every time.
        if (shared_ && shared_->stats().connected && !cache_.embedder().remote()) {
            // The lock's key: any string every replica derives alike from the prompt (the scope is
            // part of the tier's lock key already).
            std::string key;
            for (const unsigned char byte : sha256(prompt)) fmt::format_to(std::back_inserter(key), "{:02x}", byte);
            return shared_->try_lock(scope, key, cache_.options().shared_lock_ttl);
        }
#endif
        (void)scope;
        (void)prompt;
        return {};
    }
    void unlock_across_replicas(const llmfast::SharedLock& lock) {
#if LLMFAST_GATEWAY_REDIS
        if (shared_ && lock.acquired()) shared_->unlock(lock);
#else
        (void)lock;
#endif
    }
    /// How long a request waits for another replica's answer: the lock's expiry (a replica that died
    /// while computing holds the others up for at most this).
    [[nodiscard]] std::chrono::milliseconds replica_wait() const noexcept { return cache_.options().shared_lock_ttl; }

    [[nodiscard]] bool shared_attached() const noexcept {
#if LLMFAST_GATEWAY_REDIS
        return shared_ != nullptr;
#else
        return false;
#endif
    }

    [[nodiscard]] bool enabled() const noexcept { return config_.enabled; }
    /// Whether `request` may be cached at all (enabled, deterministic unless configured otherwise, n == 1).
    [[nodiscard]] bool applies(const ChatRequest& request) const noexcept {
        return config_.enabled && request.cacheable && (request.deterministic || !config_.only_deterministic);
    }
    static std::string scope_of(std::string_view tenant, const ChatRequest& request) {
        std::string scope = "t=";
        scope += tenant;
        scope += "\x1fm=";
        scope += request.model;
        scope += "\x1fs=";
        scope += request.cache_system;
        scope += "\x1fp=";
        scope += request.cache_params;
        return scope;
    }
    Cache& cache() noexcept { return cache_; }

    /// Stores an answer (the leader's complete, or an insert when the lookup was skipped) and
    /// remembers its scope under its tenant and model.
    void note_scope(const std::string& tenant, const std::string& model, const std::string& scope) {
        std::lock_guard lock(mutex_);
        scopes_[model].emplace(tenant, scope);
    }

    /// Removes the entries of `model` (and `tenant`, when given), or everything when `model` is
    /// empty and `tenant` is empty. Returns how many entries went (here). With the shared tier each
    /// purged scope is purged on Redis too (a tombstone every replica applies); "everything" then
    /// purges every scope this replica stored or served, and clears the rest locally. Blocking (the
    /// shared tier's purge scans Redis): server.cpp calls it on the cache pool when remote().
    std::size_t purge(const std::string& model, const std::string& tenant) {
        if (model.empty() && tenant.empty()) {
            const std::size_t before = cache_.stats().entries;
            if (shared_attached()) {
                std::vector<std::string> all;
                {
                    std::lock_guard lock(mutex_);
                    for (const auto& [model_name, set] : scopes_)
                        for (const auto& tenant_scope : set) all.push_back(tenant_scope.second);
                }
                for (const std::string& scope : all) cache_.erase_scope(scope);
            }
            cache_.clear();
            std::lock_guard lock(mutex_);
            scopes_.clear();
            return before;
        }
        std::vector<std::string> victims;
        {
            std::lock_guard lock(mutex_);
            for (auto model_it = scopes_.begin(); model_it != scopes_.end();) {
                if (!model.empty() && model_it->first != model) {
                    ++model_it;
                    continue;
                }
                auto& set = model_it->second;
                for (auto it = set.begin(); it != set.end();) {
                    if (tenant.empty() || it->first == tenant) {
                        victims.push_back(it->second);
                        it = set.erase(it);
                    } else {
                        ++it;
                    }
                }
                model_it = set.empty() ? scopes_.erase(model_it) : std::next(model_it);
            }
        }
        std::size_t removed = 0;
        for (const std::string& scope : victims) removed += cache_.erase_scope(scope);
        return removed;
    }

    /// Prometheus lines: entries and bytes.
    void render(std::string& out) const {
        const auto stats = cache_.stats();
        out += "# HELP llmfast_cache_entries Answers in the response cache.\n# TYPE llmfast_cache_entries gauge\n";
        out += fmt::format("llmfast_cache_entries {}\n", stats.entries);
        out += "# HELP llmfast_cache_bytes Accounted bytes of the response cache.\n# TYPE llmfast_cache_bytes gauge\n";
        out += fmt::format("llmfast_cache_bytes {}\n", stats.memory_bytes);
        out += "# HELP llmfast_cache_embedder_failures_total Embedder calls that failed (counted as cache misses).\n"
               "# TYPE llmfast_cache_embedder_failures_total counter\n";
        out += fmt::format("llmfast_cache_embedder_failures_total {}\n", stats.embedder_failures);
#if LLMFAST_GATEWAY_REDIS
        if (shared_) render_shared(out, stats, shared_->stats());
#endif
    }

private:
#if LLMFAST_GATEWAY_REDIS
    void attach_redis(const CacheConfig& c) {
        try {
            shared_ = std::make_shared<Shared>(llmfast::RedisTierOptions{
                .url = c.redis_url, .key_prefix = c.redis_prefix,
                .connect_timeout = std::chrono::duration_cast<std::chrono::microseconds>(c.redis_timeout),
                .command_timeout = std::chrono::duration_cast<std::chrono::microseconds>(c.redis_timeout)});
        } catch (const llmfast::Error& e) {
            // The tier's message repeats the URL: never print a password that came from a file.
            std::string what = e.what();
            if (!c.redis_password.empty())
                for (std::size_t at = what.find(c.redis_password); at != std::string::npos; at = what.find(c.redis_password, at))
                    what.replace(at, c.redis_password.size(), "***");
            throw ConfigError("--redis: " + what);
        }
        // One bounded call now: says at start-up whether Redis answers (the gateway starts either way
        // and goes on locally until Redis is reachable; a down Redis is never a failed request).
        const llmfast::SharedLookup probe = shared_->lookup("llmfast-gateway:probe", "0");
        if (probe.status == llmfast::SharedStatus::Unavailable)
            std::fputs("llmfast-gateway: warning: --redis: Redis does not answer now; the cache works locally until it does\n", stderr);
        cache_.attach_shared(shared_);
    }

    // Prometheus lines of the shared tier: the cache's view (SemanticCacheStats::shared_*) and the
    // tier's own (RedisTierStats): llmfast_cache_shared_* and llmfast_redis_*.
    static void render_shared(std::string& out, const llmfast::SemanticCacheStats& c, const llmfast::RedisTierStats& r) {
        const auto line = [&out](std::string_view name, std::string_view type, std::string_view help, auto value) {
            out += fmt::format("# HELP {0} {1}\n# TYPE {0} {2}\n{0} {3}\n", name, help, type, value);
        };
        line("llmfast_cache_shared_hits_total", "counter", "Local cache misses answered by the shared tier (also counted as exact hits).", c.shared_hits);
        line("llmfast_cache_shared_misses_total", "counter", "Local cache misses the shared tier did not have either.", c.shared_misses);
        line("llmfast_cache_shared_unavailable_total", "counter",
             "Shared-tier lookups that got no answer within the bound (Redis down, slow, restarting): the cache went on locally.", c.shared_unavailable);
        line("llmfast_cache_shared_corrupt_total", "counter", "Shared-tier entries rejected (prompt does not hash to its key, or not this embedder): misses, never served.", c.shared_corrupt);
        line("llmfast_cache_shared_writes_total", "counter", "Write-throughs (inserts, erases, scope purges) the shared tier applied.", c.shared_writes);
        line("llmfast_cache_shared_write_failures_total", "counter", "Write-throughs the shared tier did not apply (never a failed request).", c.shared_write_failures);
        line("llmfast_cache_shared_applied_total", "counter", "Other replicas' inserts stored locally from the change feed.", c.shared_applied);
        line("llmfast_cache_shared_tombstones_applied_total", "counter", "Other replicas' erases and purges applied from the change feed.", c.shared_tombstones_applied);
        line("llmfast_cache_shared_gaps_total", "counter", "The change feed lost its place (trimmed stream): live entries were replayed.", c.shared_gaps);
        line("llmfast_cache_shared_resets_total", "counter", "The change feed found Redis emptied (a restart without persistence): local entries kept.", c.shared_resets);
        line("llmfast_redis_connected", "gauge", "1 when the last Redis call of the request path reached Redis, 0 while it fails or backs off.", r.connected ? 1 : 0);
        line("llmfast_redis_unavailable_total", "counter", "Redis calls answered Unavailable (down, slow, backing off, pool exhausted).", r.unavailable);
        line("llmfast_redis_corrupt_values_total", "counter", "Redis values that did not decode or were of another scope/key: misses, never served.", r.corrupt_values);
        line("llmfast_redis_connects_total", "counter", "Connections opened to Redis (request pool and change feed).", r.connects);
        line("llmfast_redis_connect_failures_total", "counter", "Connection attempts to Redis that failed.", r.connect_failures);
        line("llmfast_redis_dropped_connections_total", "counter", "Connections dropped after an I/O error or a timeout.", r.dropped_connections);
        line("llmfast_redis_reconnects_total", "counter", "Connections opened after a failure (Redis back).", r.reconnects);
        line("llmfast_redis_async_rejected_total", "counter", "Asynchronous Redis calls answered Unavailable because the tier's queue was full.", r.async_rejected);
        line("llmfast_redis_locks_acquired_total", "counter", "Cross-replica locks taken: this replica computed the answer.", r.locks_acquired);
        line("llmfast_redis_locks_held_total", "counter", "Cross-replica locks found held: another replica was computing the answer.", r.locks_held);
        line("llmfast_redis_stream_records_total", "counter", "Change-stream records the change feed delivered.", r.stream_records);
        line("llmfast_redis_gaps_total", "counter", "The change feed's position was trimmed from a stream (a gap; entries rebuilt).", r.gaps);
        line("llmfast_redis_resets_total", "counter", "The change feed found a stream younger than its position (Redis lost its data).", r.resets);
    }

    std::shared_ptr<Shared> shared_;  // also attached to cache_ (which keeps it alive while it uses it)
#else
    [[noreturn]] static void attach_redis(const CacheConfig&) {
        throw ConfigError("--redis: this llmfast-gateway was built without hiredis (the llmfast::redis component: libhiredis-dev)");
    }
#endif
    CacheConfig config_;
    Cache cache_;
    std::mutex mutex_;
    std::map<std::string, std::set<std::pair<std::string, std::string>>> scopes_;  // model -> (tenant, scope)
};

/// The state one wait_ready shares with the readiness callback (which may run on another thread).
struct ReadyWait {
    explicit ReadyWait(const net::any_io_executor& executor) : timer(executor) {}
    net::steady_timer timer;
    bool fired = false;  ///< on the strand: the callback's post ran
};

/// Waits on the calling coroutine's executor (the connection's strand) until `follower`'s flight
/// ended, without blocking a thread: the library's readiness callback (Follower::on_ready, which may
/// run on the leader's thread) posts back to the strand and wakes a timer. A client that goes away
/// (ClientGone) ends the wait at once and cancels the follower (the flight is unaffected).
/// True: try_result() has the outcome; false: the client is gone.
inline net::awaitable<bool> wait_ready(ResponseCache::Cache::Follower& follower, ClientGone& gone) {
    // Objects with destructors at the top level, no temporaries inside co_await (g++ 12: upstream.cpp).
    std::shared_ptr<ReadyWait> wait = std::make_shared<ReadyWait>(co_await net::this_coro::executor);
    wait->timer.expires_at(Clock::time_point::max());
    auto notify = [wait]() noexcept {
        net::any_io_executor executor = wait->timer.get_executor();
        net::post(executor, [wait] {
            wait->fired = true;
            wait->timer.cancel();
        });
    };
    llmfast::Subscription subscription = follower.on_ready(std::move(notify));
    gone.on_gone = [wait] { wait->timer.cancel(); };
    struct Unhook {
        ClientGone& gone;
        ~Unhook() { gone.on_gone = nullptr; }
    } unhook{gone};
    boost::system::error_code ec;
    while (!wait->fired && !gone.gone) co_await wait->timer.async_wait(net::redirect_error(net::use_awaitable, ec));
    if (gone.gone) {
        subscription.cancel();
        follower.cancel();
        co_return false;
    }
    co_return true;
}

}  // namespace gateway
