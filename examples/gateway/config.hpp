// examples/gateway/config.hpp — llmfast-gateway's settings: command-line flags, the JSON config file
// (models -> ordered upstream groups, limits, the simulated backend), API keys; and the parsed forms
// of the requests it validates. Parsing lives in parsing.cpp (no Beast/Asio there, so a fuzzer can
// take it alone).
//
// Secrets never come from the command line (visible in `ps`): API keys from `--api-keys-file` or the
// LLMFAST_API_KEYS environment variable, an upstream's key from `api_key_env` / `api_key_file`.
//
// Errors: `parse_command_line` and `load_config_file` throw ConfigError whose message names the flag
// or the field (`models.gpt-4o.upstreams[1].url: ...`); parse_chat_request / parse_embeddings_request
// return an ApiError naming the request field.
// Thread-safety: the structs are values; the functions are pure apart from reading files/env.
#pragma once

#include "errors.hpp"
#include "../simulated_model.hpp"

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace gateway {

struct ConfigError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// scheme://host[:port]/base-path, e.g. http://127.0.0.1:8000/v1.
struct Url {
    bool tls = false;
    std::string host;
    std::string port;  ///< "80"/"443" when absent
    std::string base_path;  ///< without a trailing slash, e.g. "/v1"
};
Url parse_url(const std::string& text, const std::string& where);

struct UpstreamConfig {
    std::string name;            ///< for logs and metrics (default: the URL)
    Url url;
    std::string api_key;         ///< loaded from api_key_env / api_key_file ("" = none)
    std::string model;           ///< the upstream's model name ("" = the client's)
    std::string ca_file;         ///< extra CA certificate(s) for https (PEM)
    bool tls_verify = true;
};

struct ModelConfig {
    std::string name;
    std::vector<UpstreamConfig> upstreams;  ///< empty: the built-in simulated backend
};

struct Limits {
    std::size_t max_body_bytes = 1 << 20;
    std::uint32_t max_header_bytes = 16 * 1024;
    std::size_t max_json_depth = 64;
    std::size_t max_messages = 1024;
    std::uint64_t max_tokens = 32768;
    std::chrono::milliseconds idle_timeout{30000};          ///< keep-alive connection with no request
    std::chrono::milliseconds request_read_timeout{10000};  ///< whole request (header + body): slow clients
    std::chrono::milliseconds write_timeout{30000};         ///< one write to a client that does not read
    std::chrono::milliseconds request_deadline{120000};     ///< default deadline of a request
    std::chrono::milliseconds connect_timeout{2000};        ///< to an upstream
    std::chrono::milliseconds first_byte_timeout{30000};    ///< upstream: until its response header/first chunk
    std::chrono::milliseconds read_timeout{60000};          ///< upstream: between two chunks
    std::chrono::milliseconds drain_grace{10000};           ///< SIGTERM: in-flight requests get this long
    std::size_t max_attempts = 3;                           ///< per request, over the group
    std::chrono::milliseconds backoff{50};                  ///< before the 2nd attempt, doubled after
    std::size_t cooldown_failures = 3;                      ///< consecutive failures that cool an upstream
    std::chrono::milliseconds cooldown{10000};
    std::size_t max_client_buffer_bytes = 1 << 20;          ///< a stream's unsent bytes; over it the client is dropped
};

/// One compression rule of a model (llmfast::CompressionRule).
struct RuleConfig {
    std::string pattern, replacement;
    bool ignore_case = false, whole_word = false;
};

/// What happens to a model's prompt on a miss, before admission and the backend.
struct PromptConfig {
    std::uint64_t context_window = 0;  ///< tokens; 0 = no fitting
    std::string rank_file;             ///< tiktoken rank file: exact counts with llmfast::BpeTokenizer ("" = estimator)
    std::string encoding = "cl100k_base";  ///< cl100k_base | o200k_base (with rank_file)
    std::size_t max_message_bytes = 256 * 1024;  ///< the truncator's byte cap per message (untrusted input)
    bool compress = false;             ///< run llmfast::PromptCompressor over each text message
    bool builtin_english = false, builtin_chinese = false;
    bool normalize_whitespace = true;
    bool remove_repeated_lines = false;
    std::vector<RuleConfig> rules;
};

/// Admission control (one controller for the gateway).
struct AdmissionConfig {
    std::size_t max_running = 256;            ///< requests answered at once
    std::size_t max_queue = 1024;             ///< requests waiting for a slot
    std::uint64_t max_queue_tokens = 1U << 22; ///< prompt tokens of the waiting requests
    int max_priority = 9;                     ///< x-llmfast-priority in [0, max_priority]; higher first
};

/// Per-tenant rate limits (0 = none). "*" in the config file applies to every tenant not named.
struct TenantLimits {
    std::uint64_t requests_per_minute = 0;
    std::uint64_t tokens_per_minute = 0;
};

/// How the simulated backend batches (simulated_backend.hpp): `off` (every request on its own timers),
/// `static_batches` (prefill batched whole-request through llmfast::DynamicBatcher), `continuous`
/// (iteration-level: one examples::ContinuousEngine on llmfast::ContinuousScheduler).
enum class BatchingMode { off, static_batches, continuous };

/// The simulated backend's batching. `enabled` is `mode != off` (the parser keeps the two in step).
struct BatchingConfig {
    bool enabled = true;
    BatchingMode mode = BatchingMode::continuous;
    std::size_t max_batch_size = 8;            ///< static: the largest batch; continuous: max_num_seqs
    std::chrono::milliseconds max_wait{5};     ///< static only: how long a batch may wait to fill
    std::size_t max_num_batched_tokens = 512;  ///< continuous only: tokens per step (decode + prefill chunks)
};

/// The response cache on the request path (response_cache.hpp): an llmfast::SemanticCache keyed by
/// scope (tenant + model + system prompt + sampling parameters + tools) and the conversation.
struct CacheConfig {
    bool enabled = true;
    std::size_t max_entries = 10'000;
    std::size_t max_bytes = std::size_t{256} << 20;
    std::chrono::seconds ttl{3600};
    bool semantic = false;               ///< the semantic tier (HashingEmbedder: off by default, see docs/cache.md)
    float similarity_threshold = 0.95F;  ///< with `semantic`
    bool only_deterministic = true;      ///< cache only temperature == 0 or seeded requests
    /// The cache's embedder: "" = the built-in HashingEmbedder; else an OpenAI-compatible base URL
    /// (with /v1) whose /embeddings embeds the prompts (llmfast::OpenAiEmbedder, batched, bounded; the
    /// gateway runs its calls on a worker pool, never on an event-loop thread).
    std::string embeddings_url;
    std::string embeddings_model;        ///< with embeddings_url (required)
    std::size_t embeddings_dimension = 0;  ///< with embeddings_url (required, > 0)
    std::string embeddings_api_key;      ///< from --embeddings-key-file or $LLMFAST_EMBEDDINGS_API_KEY ("" = none)
    /// The shared tier (llmfast::RedisTier): "" = none; else redis://[[user]:password@]host[:port][/db].
    /// Replicas on the same Redis and prefix share their answers; cache steps then run on the cache
    /// pool (a Redis round trip never waits on an event-loop thread).
    std::string redis_url;
    std::string redis_prefix = "llmfast";   ///< every key starts with it (one Redis, several deployments)
    std::chrono::milliseconds redis_timeout{4};  ///< the tier's bound on each Redis call (connect, reply)
    /// From --redis-password-file or $LLMFAST_REDIS_PASSWORD: already spliced into redis_url by the
    /// parser; kept to mask it in error messages ("" = none, or the URL's own).
    std::string redis_password;
};

struct ApiKey {
    std::string tenant;
    std::array<unsigned char, 32> sha256{};
};

struct Config {
    std::string host = "127.0.0.1";
    std::uint16_t port = 8080;
    unsigned threads = 0;  ///< 0 = hardware threads
    std::vector<ModelConfig> models;  ///< from the config file
    std::vector<UpstreamConfig> default_upstreams;  ///< --upstream: every model not in `models`
    std::vector<std::string> sim_models{"llmfast-sim"};
    examples::LatencyModel latency{};
    std::uint64_t sim_default_tokens = 16;
    std::size_t embedding_dimension = 384;
    std::string embedding_model = "llmfast-hashing";
    std::vector<ApiKey> api_keys;  ///< empty: no authentication
    std::string access_log = "-";  ///< "-" stderr, "off", or a file
    Limits limits{};
    std::map<std::string, PromptConfig> prompt;  ///< by model name (any backend)
    AdmissionConfig admission{};
    std::map<std::string, TenantLimits> tenants;  ///< by tenant; "*" = every other tenant
    BatchingConfig batching{};
    CacheConfig cache{};
    std::optional<std::array<unsigned char, 32>> admin_key_sha256;  ///< --admin-key-file / $LLMFAST_ADMIN_KEY; none: admin routes 403
};

/// Parses argv; prints --help and exits 0 itself. Throws ConfigError.
Config parse_command_line(int argc, char** argv);
/// Applies a JSON config file over `config`. Throws ConfigError naming the field.
void load_config_file(const std::string& path, Config& config);
/// Applies the JSON text of a config file (`where` names it in errors). Throws ConfigError naming the
/// field (and only ConfigError); on success every value satisfies the documented limits.
void load_config_text(std::string_view text, const std::string& where, Config& config);
/// Parses API keys ("tenant:key" per line or comma-separated); throws ConfigError.
void add_api_keys(std::string_view text, const std::string& where, Config& config);
std::array<unsigned char, 32> sha256(std::string_view text);

// ---- requests -----------------------------------------------------------------------------------

struct ChatMessage {
    std::string role;
    std::string text;  ///< the text parts, joined (for token counts and the simulated backend)
    bool plain = true;  ///< content was a string or text parts only (so `text` can replace it)
};

struct ChatRequest {
    std::string model;
    bool stream = false;
    bool include_usage = false;
    std::optional<std::uint64_t> max_tokens;
    std::vector<ChatMessage> messages;
    std::string unsupported_by_sim;  ///< a field the simulated backend cannot honour ("" = none)
    std::size_t model_value_begin = 0, model_value_end = 0;  ///< byte range of "model"'s value in the body
    // The response cache's view (response_cache.hpp):
    bool deterministic = false;  ///< temperature == 0, or a seed
    bool cacheable = true;       ///< false for n > 1 (one cached choice only)
    std::string cache_params;    ///< every top-level member but model/messages/stream/stream_options, minified, sorted
    std::string cache_system;    ///< the system / developer messages, minified
    std::string cache_prompt;    ///< the other messages ("role: text" lines, or minified JSON)
};

struct EmbeddingsRequest {
    std::string model;
    std::vector<std::string> inputs;
    bool base64 = false;
};

std::variant<ChatRequest, ApiError> parse_chat_request(std::string_view body, const Limits& limits);
std::variant<EmbeddingsRequest, ApiError> parse_embeddings_request(std::string_view body, const Limits& limits);

extern const char* const help_text;

}  // namespace gateway

namespace gateway {
/// The byte range [first, second) of the top-level member `key`'s value in the JSON object `body`
/// (already validated), or {0, 0} when absent.
std::pair<std::size_t, std::size_t> find_top_level_value(std::string_view body, std::string_view key);
}  // namespace gateway
