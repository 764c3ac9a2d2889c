// examples/gateway/parsing.cpp — command line, config file, API keys and request-body validation of
// llmfast-gateway (see config.hpp). No Beast/Asio here: a fast translation unit a fuzzer can take.
#include "config.hpp"

#include <openssl/sha.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>

namespace gateway {

const char* const help_text = R"(llmfast-gateway — an OpenAI-compatible gateway built from llmfast

Usage: llmfast-gateway [flags]

Endpoints: POST /v1/chat/completions (stream true/false, stream_options.include_usage),
           POST /v1/embeddings, GET /v1/models, GET /health, GET /metrics (Prometheus text).

Flags:
  --host ADDR              address to listen on [127.0.0.1]
  --port N                 port to listen on; 0 picks a free one [8080]. The gateway prints
                           "listening on ADDR:PORT" on stdout when it accepts connections.
  --threads N              event-loop threads (one io_context) [hardware threads]
  --upstream URL           an OpenAI-compatible base URL including /v1 (http:// or https://);
                           repeatable: an ordered failover group for every model the config file
                           does not name. Its API key comes from $LLMFAST_UPSTREAM_API_KEY.
  --upstream-ca FILE       extra CA certificates (PEM) trusted for https:// --upstream URLs
  --upstream-insecure      do not verify --upstream certificates (tests only)
  --config FILE            JSON config file: models -> upstream groups, limits, simulated backend
                           (flags given after --config override it)
  --api-keys-file FILE     API keys, one "tenant:key" per line; also $LLMFAST_API_KEYS
                           ("tenant:key,tenant:key"). None: no authentication. Never on the command line.
  --access-log PATH        one JSON line per request: "-" = stderr, "off", or a file [-]
  --sim-model NAME         model name(s) the built-in simulated backend answers, repeatable [llmfast-sim]
  --sim-time-scale F       the simulated model runs F times faster than real time [1]
  --sim-tokens N           answer length when the request has no max_tokens [16]
  --max-body-bytes N       request bodies over this get 413 [1048576]
  --max-header-bytes N     request headers over this get 431 [16384]
  --request-deadline-ms N  a request's deadline, all upstream attempts included [120000]
  --connect-timeout-ms N   upstream connect timeout [2000]
  --first-byte-timeout-ms N  upstream: time to its first byte (a stalled upstream fails over) [30000]
  --read-timeout-ms N      upstream: longest gap between two chunks [60000]
  --idle-timeout-ms N      keep-alive connection without a request is closed [30000]
  --request-read-timeout-ms N  a client must send its whole request within this [10000]
  --drain-grace-ms N       SIGTERM/SIGINT: stop accepting, give in-flight requests this long [10000]
  --max-attempts N         upstream attempts per request over its group [3]
  --max-running N          admission: requests answered at once [256]
  --max-queue N            admission: requests waiting; a full queue answers 429 + Retry-After [1024]
  --max-queue-tokens N     admission: prompt tokens of the waiting requests [4194304]
  --max-client-buffer-bytes N  a stream's unsent bytes; a slower reader is dropped [1048576]
  --sim-batching MODE      the simulated model's batching: off | static (whole requests through
                           llmfast's DynamicBatcher) | continuous (per step, llmfast's ContinuousScheduler) [continuous]
  --sim-batch              the same as --sim-batching static
  --sim-max-batch N        static: its largest batch; continuous: sequences per step [8]
  --sim-max-wait-ms N      static: how long a batch may wait to fill [5]
  --sim-step-tokens N      continuous: tokens per step, decode tokens + prefill chunks [512]
  --no-cache               turn the response cache off (it is on; only temperature 0 / seeded requests)
  --cache-max-entries N    response cache capacity in entries [10000]
  --cache-max-bytes N      response cache capacity in bytes [268435456]
  --cache-ttl-s N          a cached answer's time to live [3600]
  --cache-semantic         also serve similar prompts (HashingEmbedder: off by default, see docs/cache.md)
  --cache-all              cache non-deterministic requests too
  --embeddings-url URL     the cache's embedder: an OpenAI-compatible base URL (with /v1) serving
                           /embeddings (its key: --embeddings-key-file or $LLMFAST_EMBEDDINGS_API_KEY);
                           default: the built-in HashingEmbedder
  --embeddings-model NAME  the model of --embeddings-url (required with it)
  --embeddings-dimension N its vectors' width (required with it)
  --embeddings-key-file FILE  the API key for --embeddings-url
  --redis URL              share the response cache with every replica on this Redis (llmfast::RedisTier):
                           redis://[[user]:password@]host[:port][/db]; needs the cache (an error with
                           --no-cache). Redis down or slow: the cache works locally, no request fails
  --redis-prefix P         the key prefix of this deployment on that Redis (no braces) [llmfast]
  --redis-timeout-ms N     the bound on each Redis call (connect, every reply) [4]
  --redis-password-file FILE  the Redis password (AUTH), so it is not in the URL (visible in ps);
                           also $LLMFAST_REDIS_PASSWORD. An ACL user goes in the URL: redis://user:@host
  --admin-key-file FILE    the admin key (POST /admin/cache/purge); also $LLMFAST_ADMIN_KEY. None: 403
Request headers: x-llmfast-priority (0..max_priority, higher first), x-llmfast-deadline-ms, x-request-id,
  Cache-Control: no-cache (skip the cache lookup) / no-store (do not store the answer).
  --help                   this text

Config file (every field optional; an unknown or ill-typed field is an error naming it):
  (every field, with examples: docs/gateway.md)
  {"models": {"NAME": {"context_window", "rank_file", "encoding", "max_message_bytes",
                       "compression": {"builtin", "rules", "normalize_whitespace", "remove_repeated_lines"},
                       "upstreams": [{"url": "https://host/v1", "model": "upstream-name",
                                       "api_key_env": "VAR" | "api_key_file": "path",
                                       "ca_file": "ca.pem", "tls_verify": true, "name": "label"}]},
              "NAME2": {"backend": "simulated"}},
   "limits": {"max_body_bytes", "max_header_bytes", "max_json_depth", "max_messages", "max_tokens",
              "idle_timeout_ms", "request_read_timeout_ms", "write_timeout_ms", "request_deadline_ms",
              "connect_timeout_ms", "first_byte_timeout_ms", "read_timeout_ms", "drain_grace_ms",
              "max_attempts", "backoff_ms", "cooldown_failures", "cooldown_ms"},
   "simulated": {"overhead_ms", "prefill_ms_per_token", "decode_ms_per_token", "batch_item_ms",
                 "time_scale", "default_tokens"},
   "embeddings": {"model", "dimension"},
   "admission": {"max_running", "max_queue", "max_queue_tokens", "max_priority"},
   "tenants": {"NAME" | "*": {"requests_per_minute", "tokens_per_minute"}},
   "batching": {"mode": "off" | "static" | "continuous", "enabled" (true = "static"), "max_batch_size",
                "max_wait_ms", "max_num_batched_tokens"},
   "cache": {"enabled", "max_entries", "max_bytes", "ttl_s", "semantic", "similarity_threshold",
             "only_deterministic"}}
)";

std::array<unsigned char, 32> sha256(std::string_view text) {
    std::array<unsigned char, 32> digest{};
    SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest.data());
    return digest;
}

namespace {

BatchingMode parse_batching_mode(std::string_view text, const std::string& where) {
    if (text == "off") return BatchingMode::off;
    if (text == "static") return BatchingMode::static_batches;
    if (text == "continuous") return BatchingMode::continuous;
    throw ConfigError(where + ": must be \"off\", \"static\" or \"continuous\"");
}

constexpr std::uint64_t k_max_ms = 86'400'000;  // a day: every duration in the config is at most this

// Config, key and rank files: regular files of at most 64 MiB (never a device or a pipe that never ends).
std::string read_file(const std::string& path, const std::string& where) {
    constexpr std::size_t k_max_file = 64U << 20;
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) throw ConfigError(where + ": cannot read " + path + " (not a regular file)");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw ConfigError(where + ": cannot read " + path);
    std::string text;
    char buffer[65536];
    while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
        text.append(buffer, static_cast<std::size_t>(in.gcount()));
        if (text.size() > k_max_file) throw ConfigError(where + ": " + path + " is larger than 64 MiB");
    }
    return text;
}

std::string trim(std::string_view text) {
    const auto begin = text.find_first_not_of(" \t\r\n");
    if (begin == std::string_view::npos) return {};
    const auto end = text.find_last_not_of(" \t\r\n");
    return std::string(text.substr(begin, end - begin + 1));
}

std::uint64_t parse_uint(std::string_view text, const std::string& where, std::uint64_t min = 0,
                         std::uint64_t max = UINT64_MAX) {
    std::uint64_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size() || value < min || value > max)
        throw ConfigError(where + ": expected an integer in [" + std::to_string(min) + ", " + std::to_string(max) +
                          "], got '" + std::string(text) + "'");
    return value;
}

double parse_double(std::string_view text, const std::string& where) {
    char* end = nullptr;
    const std::string s(text);
    const double value = std::strtod(s.c_str(), &end);
    if (s.empty() || end != s.c_str() + s.size()) throw ConfigError(where + ": expected a number, got '" + s + "'");
    return value;
}

using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

object need_object(element value, const std::string& where) {
    object obj;
    if (value.get(obj) != simdjson::SUCCESS) throw ConfigError(where + ": must be an object");
    return obj;
}
std::string need_string(element value, const std::string& where) {
    std::string_view text;
    if (value.get(text) != simdjson::SUCCESS) throw ConfigError(where + ": must be a string");
    return std::string(text);
}
std::uint64_t need_uint(element value, const std::string& where, std::uint64_t min = 0) {
    std::uint64_t n = 0;
    if (value.get(n) != simdjson::SUCCESS || n < min)
        throw ConfigError(where + ": must be an integer >= " + std::to_string(min));
    return n;
}
double need_number(element value, const std::string& where) {
    double n = 0;
    if (value.get(n) != simdjson::SUCCESS) throw ConfigError(where + ": must be a number");
    return n;
}
bool need_bool(element value, const std::string& where) {
    bool b = false;
    if (value.get(b) != simdjson::SUCCESS) throw ConfigError(where + ": must be true or false");
    return b;
}

std::uint64_t need_uint_max(element value, const std::string& where, std::uint64_t min, std::uint64_t max) {
    std::uint64_t n = 0;
    if (value.get(n) != simdjson::SUCCESS || n < min || n > max)
        throw ConfigError(where + ": must be an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]");
    return n;
}

void load_limits(object obj, Limits& l, const std::string& where) {
    for (auto [key_view, value] : obj) {
        const std::string key(key_view);
        const std::string at = where + "." + key;
        const auto ms = [&] { return std::chrono::milliseconds(need_uint_max(value, at, 1, k_max_ms)); };
        if (key == "max_body_bytes") l.max_body_bytes = need_uint_max(value, at, 1, 1ULL << 30);
        else if (key == "max_header_bytes") l.max_header_bytes = static_cast<std::uint32_t>(std::min<std::uint64_t>(need_uint(value, at, 256), UINT32_MAX));
        else if (key == "max_json_depth") l.max_json_depth = need_uint_max(value, at, 2, 1024);
        else if (key == "max_messages") l.max_messages = need_uint(value, at, 1);
        else if (key == "max_tokens") l.max_tokens = need_uint(value, at, 1);
        else if (key == "idle_timeout_ms") l.idle_timeout = ms();
        else if (key == "request_read_timeout_ms") l.request_read_timeout = ms();
        else if (key == "write_timeout_ms") l.write_timeout = ms();
        else if (key == "request_deadline_ms") l.request_deadline = ms();
        else if (key == "connect_timeout_ms") l.connect_timeout = ms();
        else if (key == "first_byte_timeout_ms") l.first_byte_timeout = ms();
        else if (key == "read_timeout_ms") l.read_timeout = ms();
        else if (key == "drain_grace_ms") l.drain_grace = ms();
        else if (key == "max_attempts") l.max_attempts = need_uint_max(value, at, 1, 100);
        else if (key == "backoff_ms") l.backoff = std::chrono::milliseconds(need_uint_max(value, at, 0, k_max_ms));
        else if (key == "cooldown_failures") l.cooldown_failures = need_uint(value, at, 1);
        else if (key == "cooldown_ms") l.cooldown = std::chrono::milliseconds(need_uint_max(value, at, 0, k_max_ms));
        else if (key == "max_client_buffer_bytes") l.max_client_buffer_bytes = need_uint_max(value, at, 1024, 1ULL << 32);
        else throw ConfigError(at + ": unknown field");
    }
}

UpstreamConfig load_upstream(element value, const std::string& where) {
    UpstreamConfig up;
    bool has_url = false;
    for (auto [key_view, field] : need_object(value, where)) {
        const std::string key(key_view);
        const std::string at = where + "." + key;
        if (key == "url") {
            up.url = parse_url(need_string(field, at), at);
            has_url = true;
        } else if (key == "name") up.name = need_string(field, at);
        else if (key == "model") up.model = need_string(field, at);
        else if (key == "api_key_env") {
            const std::string var = need_string(field, at);
            const char* key_value = std::getenv(var.c_str());
            if (key_value == nullptr || *key_value == '\0') throw ConfigError(at + ": environment variable " + var + " is not set");
            up.api_key = key_value;
        } else if (key == "api_key_file") up.api_key = trim(read_file(need_string(field, at), at));
        else if (key == "ca_file") up.ca_file = need_string(field, at);
        else if (key == "tls_verify") up.tls_verify = need_bool(field, at);
        else if (key == "api_key") throw ConfigError(at + ": secrets do not go in the config file; use api_key_env or api_key_file");
        else throw ConfigError(at + ": unknown field");
    }
    if (!has_url) throw ConfigError(where + ".url: missing");
    if (up.name.empty()) up.name = (up.url.tls ? "https://" : "http://") + up.url.host + ":" + up.url.port + up.url.base_path;
    return up;
}

}  // namespace

Url parse_url(const std::string& text, const std::string& where) {
    Url url;
    std::string_view rest = text;
    if (rest.starts_with("http://")) rest.remove_prefix(7);
    else if (rest.starts_with("https://")) { rest.remove_prefix(8); url.tls = true; }
    else throw ConfigError(where + ": '" + text + "' must start with http:// or https://");
    const auto slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    url.base_path = slash == std::string_view::npos ? "" : std::string(rest.substr(slash));
    while (!url.base_path.empty() && url.base_path.back() == '/') url.base_path.pop_back();
    if (authority.empty()) throw ConfigError(where + ": '" + text + "' has no host");
    if (authority.front() == '[') {  // [v6]:port
        const auto close = authority.find(']');
        if (close == std::string_view::npos) throw ConfigError(where + ": bad IPv6 host in '" + text + "'");
        url.host = std::string(authority.substr(1, close - 1));
        authority.remove_prefix(close + 1);
        if (authority.starts_with(":")) url.port = std::string(authority.substr(1));
    } else {
        const auto colon = authority.rfind(':');
        url.host = std::string(authority.substr(0, colon));
        if (colon != std::string_view::npos) url.port = std::string(authority.substr(colon + 1));
    }
    if (url.port.empty()) url.port = url.tls ? "443" : "80";
    (void)parse_uint(url.port, where + " (port)", 1, 65535);
    if (url.host.empty()) throw ConfigError(where + ": '" + text + "' has no host");
    return url;
}

void add_api_keys(std::string_view text, const std::string& where, Config& config) {
    std::size_t line_no = 0;
    while (!text.empty()) {
        const auto end = text.find_first_of(",\n");
        const std::string line = trim(text.substr(0, end));
        text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
        ++line_no;
        if (line.empty() || line.front() == '#') continue;
        const auto colon = line.find(':');
        if (colon == std::string::npos || colon == 0 || colon + 1 == line.size())
            throw ConfigError(where + ": entry " + std::to_string(line_no) + " must be tenant:key");
        config.api_keys.push_back({line.substr(0, colon), sha256(std::string_view(line).substr(colon + 1))});
    }
}

void load_config_file(const std::string& path, Config& config) {
    load_config_text(read_file(path, "--config"), path, config);
}

namespace {

void load_compression(element value, PromptConfig& prompt, const std::string& where) {
    prompt.compress = true;
    for (auto [key_view, field] : need_object(value, where)) {
        const std::string key(key_view);
        const std::string at = where + "." + key;
        if (key == "builtin") {
            simdjson::dom::array list;
            if (field.get(list) != simdjson::SUCCESS) throw ConfigError(at + ": must be an array of \"english\" / \"chinese\"");
            std::size_t i = 0;
            for (element item : list) {
                const std::string item_at = at + "[" + std::to_string(i++) + "]";
                const std::string name = need_string(item, item_at);
                if (name == "english") prompt.builtin_english = true;
                else if (name == "chinese") prompt.builtin_chinese = true;
                else throw ConfigError(item_at + ": must be \"english\" or \"chinese\"");
            }
        } else if (key == "rules") {
            simdjson::dom::array list;
            if (field.get(list) != simdjson::SUCCESS) throw ConfigError(at + ": must be an array");
            std::size_t i = 0;
            for (element item : list) {
                const std::string item_at = at + "[" + std::to_string(i++) + "]";
                RuleConfig rule;
                bool has_pattern = false, has_replacement = false;
                for (auto [rule_key_view, rule_field] : need_object(item, item_at)) {
                    const std::string rule_key(rule_key_view);
                    const std::string rule_at = item_at + "." + rule_key;
                    if (rule_key == "pattern") { rule.pattern = need_string(rule_field, rule_at); has_pattern = true; }
                    else if (rule_key == "replacement") { rule.replacement = need_string(rule_field, rule_at); has_replacement = true; }
                    else if (rule_key == "ignore_case") rule.ignore_case = need_bool(rule_field, rule_at);
                    else if (rule_key == "whole_word") rule.whole_word = need_bool(rule_field, rule_at);
                    else throw ConfigError(rule_at + ": unknown field");
                }
                if (!has_pattern || rule.pattern.empty()) throw ConfigError(item_at + ".pattern: required, a non-empty string");
                if (!has_replacement) throw ConfigError(item_at + ".replacement: required");
                if (prompt.rules.size() >= 10000) throw ConfigError(at + ": more than 10000 rules");
                prompt.rules.push_back(std::move(rule));
            }
        } else if (key == "normalize_whitespace") prompt.normalize_whitespace = need_bool(field, at);
        else if (key == "remove_repeated_lines") prompt.remove_repeated_lines = need_bool(field, at);
        else throw ConfigError(at + ": unknown field");
    }
}

}  // namespace

void load_config_text(std::string_view text, const std::string& path, Config& config) {
    simdjson::dom::parser parser;
    element root;
    if (const auto error = parser.parse(text.data(), text.size()).get(root); error != simdjson::SUCCESS)
        throw ConfigError(path + ": not valid JSON (" + simdjson::error_message(error) + ")");
    for (auto [key_view, value] : need_object(root, path)) {
        const std::string key(key_view);
        if (key == "models") {
            for (auto [name_view, model_value] : need_object(value, "models")) {
                ModelConfig model{std::string(name_view), {}};
                const std::string where = "models." + model.name;
                if (model.name.empty()) throw ConfigError("models: a model name must not be empty");
                PromptConfig prompt;
                bool simulated = false;
                for (auto [field_view, field] : need_object(model_value, where)) {
                    const std::string field_key(field_view);
                    const std::string at = where + "." + field_key;
                    if (field_key == "upstreams") {
                        simdjson::dom::array list;
                        if (field.get(list) != simdjson::SUCCESS) throw ConfigError(at + ": must be an array");
                        std::size_t i = 0;
                        for (element item : list) model.upstreams.push_back(load_upstream(item, at + "[" + std::to_string(i++) + "]"));
                        if (model.upstreams.empty()) throw ConfigError(at + ": must not be empty");
                    } else if (field_key == "backend") {
                        if (need_string(field, at) != "simulated") throw ConfigError(at + ": the only backend is \"simulated\"");
                        simulated = true;
                    } else if (field_key == "context_window") {
                        prompt.context_window = need_uint_max(field, at, 16, 1ULL << 30);
                    } else if (field_key == "rank_file") {
                        prompt.rank_file = need_string(field, at);
                        if (prompt.rank_file.empty()) throw ConfigError(at + ": must not be empty");
                    } else if (field_key == "encoding") {
                        prompt.encoding = need_string(field, at);
                        if (prompt.encoding != "cl100k_base" && prompt.encoding != "o200k_base")
                            throw ConfigError(at + ": must be \"cl100k_base\" or \"o200k_base\"");
                    } else if (field_key == "max_message_bytes") {
                        prompt.max_message_bytes = need_uint_max(field, at, 64, 1ULL << 30);
                    } else if (field_key == "compression") {
                        load_compression(field, prompt, at);
                    } else throw ConfigError(at + ": unknown field");
                }
                if (simulated == !model.upstreams.empty())
                    throw ConfigError(where + ": give either \"upstreams\" or \"backend\": \"simulated\"");
                config.prompt[model.name] = std::move(prompt);
                if (simulated) {
                    if (std::find(config.sim_models.begin(), config.sim_models.end(), model.name) == config.sim_models.end())
                        config.sim_models.push_back(model.name);
                } else {
                    config.models.push_back(std::move(model));
                }
            }
        } else if (key == "limits") {
            load_limits(need_object(value, "limits"), config.limits, "limits");
        } else if (key == "simulated") {
            for (auto [field_view, field] : need_object(value, "simulated")) {
                const std::string field_key(field_view);
                const std::string at = "simulated." + field_key;
                if (field_key == "overhead_ms") config.latency.overhead_ms = need_number(field, at);
                else if (field_key == "prefill_ms_per_token") config.latency.prefill_ms_per_token = need_number(field, at);
                else if (field_key == "decode_ms_per_token") config.latency.decode_ms_per_token = need_number(field, at);
                else if (field_key == "batch_item_ms") config.latency.batch_item_ms = need_number(field, at);
                else if (field_key == "time_scale") config.latency.time_scale = need_number(field, at);
                else if (field_key == "default_tokens") config.sim_default_tokens = need_uint(field, at, 1);
                else throw ConfigError(at + ": unknown field");
            }
            try {
                config.latency.validate();
            } catch (const std::invalid_argument& e) {
                throw ConfigError(std::string("simulated: ") + e.what());
            }
        } else if (key == "admission") {
            for (auto [field_view, field] : need_object(value, "admission")) {
                const std::string field_key(field_view);
                const std::string at = "admission." + field_key;
                AdmissionConfig& a = config.admission;
                if (field_key == "max_running") a.max_running = need_uint_max(field, at, 1, 1U << 20);
                else if (field_key == "max_queue") a.max_queue = need_uint_max(field, at, 0, 1U << 24);
                else if (field_key == "max_queue_tokens") a.max_queue_tokens = need_uint_max(field, at, 1, 1ULL << 40);
                else if (field_key == "max_priority") a.max_priority = static_cast<int>(need_uint_max(field, at, 0, 63));
                else throw ConfigError(at + ": unknown field");
            }
        } else if (key == "tenants") {
            for (auto [name_view, tenant_value] : need_object(value, "tenants")) {
                const std::string where = "tenants." + std::string(name_view);
                TenantLimits limits;
                for (auto [field_view, field] : need_object(tenant_value, where)) {
                    const std::string field_key(field_view);
                    const std::string at = where + "." + field_key;
                    if (field_key == "requests_per_minute") limits.requests_per_minute = need_uint_max(field, at, 0, 1ULL << 32);
                    else if (field_key == "tokens_per_minute") limits.tokens_per_minute = need_uint_max(field, at, 0, 1ULL << 40);
                    else throw ConfigError(at + ": unknown field");
                }
                config.tenants[std::string(name_view)] = limits;
            }
        } else if (key == "batching") {
            std::optional<bool> enabled;
            std::optional<BatchingMode> mode;
            for (auto [field_view, field] : need_object(value, "batching")) {
                const std::string field_key(field_view);
                const std::string at = "batching." + field_key;
                BatchingConfig& b = config.batching;
                if (field_key == "enabled") enabled = need_bool(field, at);
                else if (field_key == "mode") mode = parse_batching_mode(need_string(field, at), at);
                else if (field_key == "max_batch_size") b.max_batch_size = need_uint_max(field, at, 1, 1024);
                else if (field_key == "max_wait_ms") b.max_wait = std::chrono::milliseconds(need_uint_max(field, at, 0, 60000));
                else if (field_key == "max_num_batched_tokens") b.max_num_batched_tokens = need_uint_max(field, at, 1, 1U << 20);
                else throw ConfigError(at + ": unknown field");
            }
            // "enabled" is the older spelling of "static"; both given must agree.
            if (mode && enabled && (*mode != BatchingMode::off) != *enabled)
                throw ConfigError("batching.enabled: contradicts batching.mode");
            if (mode) config.batching.mode = *mode;
            else if (enabled) config.batching.mode = *enabled ? BatchingMode::static_batches : BatchingMode::off;
            config.batching.enabled = config.batching.mode != BatchingMode::off;
        } else if (key == "cache") {
            for (auto [field_view, field] : need_object(value, "cache")) {
                const std::string field_key(field_view);
                const std::string at = "cache." + field_key;
                CacheConfig& c = config.cache;
                if (field_key == "enabled") c.enabled = need_bool(field, at);
                else if (field_key == "max_entries") c.max_entries = need_uint_max(field, at, 1, 1ULL << 32);
                else if (field_key == "max_bytes") c.max_bytes = need_uint_max(field, at, 1024, 1ULL << 40);
                else if (field_key == "ttl_s") c.ttl = std::chrono::seconds(need_uint_max(field, at, 1, 365ULL * 86400));
                else if (field_key == "semantic") c.semantic = need_bool(field, at);
                else if (field_key == "only_deterministic") c.only_deterministic = need_bool(field, at);
                else if (field_key == "similarity_threshold") {
                    double x = 0;
                    if (field.get(x) != simdjson::SUCCESS || !(x > 0 && x <= 1)) throw ConfigError(at + ": must be a number in (0, 1]");
                    c.similarity_threshold = static_cast<float>(x);
                } else throw ConfigError(at + ": unknown field");
            }
        } else if (key == "embeddings") {
            for (auto [field_view, field] : need_object(value, "embeddings")) {
                const std::string field_key(field_view);
                const std::string at = "embeddings." + field_key;
                if (field_key == "model") config.embedding_model = need_string(field, at);
                else if (field_key == "dimension") config.embedding_dimension = need_uint(field, at, 1);
                else throw ConfigError(at + ": unknown field");
            }
        } else {
            throw ConfigError(key + ": unknown field");
        }
    }
}

namespace {

// --redis and its companions, after every flag was read. The URL itself is checked by the tier when
// the server starts (one URL parser: llmfast::RedisTier's); here: what the flags say together.
void apply_redis_flags(CacheConfig& cache, std::string password) {
    if (cache.redis_url.empty()) {
        if (!password.empty()) throw ConfigError("--redis-password-file / $LLMFAST_REDIS_PASSWORD: needs --redis URL");
        return;
    }
    // Without the cache there is nothing to share: an error, not a silently ignored flag.
    if (!cache.enabled) throw ConfigError("--redis: the response cache is off (--no-cache or cache.enabled: false); the shared tier needs it");
    if (cache.redis_prefix.empty() || cache.redis_prefix.find_first_of("{}") != std::string::npos)
        throw ConfigError("--redis-prefix: must be non-empty and without braces (they delimit Redis Cluster hash tags)");
    constexpr std::string_view scheme = "redis://";
    if (!cache.redis_url.starts_with(scheme))
        throw ConfigError("--redis: the URL must start with redis:// (hiredis 0.14 has no TLS for rediss://)");
    const std::string rest = cache.redis_url.substr(scheme.size());
    const std::size_t at = rest.rfind('@');
    const std::string credentials = at == std::string::npos ? std::string() : rest.substr(0, at);
    const std::size_t colon = credentials.find(':');
    // redis://secret@host and redis://user:secret@host carry a password; redis://user:@host only a user
    const bool url_has_password = at != std::string::npos && (colon == std::string::npos || colon + 1 < credentials.size());
    if (password.empty()) {
        if (url_has_password)
            std::fputs("llmfast-gateway: warning: --redis carries a password, visible in ps; use --redis-password-file\n", stderr);
        return;
    }
    if (url_has_password) throw ConfigError("--redis-password-file: the --redis URL has a password already; give it once");
    if (password.find_first_of("\r\n") != std::string::npos) throw ConfigError("--redis-password-file: the password must be one line");
    const std::string user = at == std::string::npos ? std::string() : credentials.substr(0, colon);
    cache.redis_url = std::string(scheme) + user + ":" + password + "@" + (at == std::string::npos ? rest : rest.substr(at + 1));
    cache.redis_password = std::move(password);  // for masking it in error messages
}

}  // namespace

Config parse_command_line(int argc, char** argv) {
    Config config;
    std::string upstream_ca;
    bool upstream_insecure = false;
    std::vector<std::string> upstream_urls;
    bool sim_models_given = false;
    std::string admin_key;
    std::string redis_password;
    const auto trim_key = [](std::string_view text, const std::string& where) {
        while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
        while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
        if (text.empty() || text.find_first_of(" \t\r\n") != std::string_view::npos)
            throw ConfigError(where + ": the admin key must be one non-empty word");
        return std::string(text);
    };
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        const auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw ConfigError(flag + ": missing value");
            return argv[++i];
        };
        const auto ms = [&] { return std::chrono::milliseconds(parse_uint(value(), flag, 1, k_max_ms)); };
        if (flag == "--help" || flag == "-h") {
            std::fputs(help_text, stdout);
            std::exit(0);
        } else if (flag == "--host") config.host = value();
        else if (flag == "--port") config.port = static_cast<std::uint16_t>(parse_uint(value(), flag, 0, 65535));
        else if (flag == "--threads") config.threads = static_cast<unsigned>(parse_uint(value(), flag, 1, 1024));
        else if (flag == "--upstream") upstream_urls.push_back(value());
        else if (flag == "--upstream-ca") upstream_ca = value();
        else if (flag == "--upstream-insecure") upstream_insecure = true;
        else if (flag == "--config") load_config_file(value(), config);
        else if (flag == "--api-keys-file") add_api_keys(read_file(value(), flag), flag, config);
        else if (flag == "--api-key" || flag == "--api-keys")
            throw ConfigError(flag + ": keys never go on the command line (visible in ps); use --api-keys-file or $LLMFAST_API_KEYS");
        else if (flag == "--access-log") config.access_log = value();
        else if (flag == "--sim-model") {
            if (!sim_models_given) config.sim_models.clear();
            sim_models_given = true;
            config.sim_models.push_back(value());
        } else if (flag == "--sim-time-scale") {
            config.latency.time_scale = parse_double(value(), flag);
            if (!(config.latency.time_scale > 0)) throw ConfigError(flag + ": must be > 0");
        } else if (flag == "--sim-tokens") config.sim_default_tokens = parse_uint(value(), flag, 1, 1 << 20);
        else if (flag == "--max-body-bytes") config.limits.max_body_bytes = parse_uint(value(), flag, 1);
        else if (flag == "--max-header-bytes") config.limits.max_header_bytes = static_cast<std::uint32_t>(parse_uint(value(), flag, 256, UINT32_MAX));
        else if (flag == "--request-deadline-ms") config.limits.request_deadline = ms();
        else if (flag == "--connect-timeout-ms") config.limits.connect_timeout = ms();
        else if (flag == "--first-byte-timeout-ms") config.limits.first_byte_timeout = ms();
        else if (flag == "--read-timeout-ms") config.limits.read_timeout = ms();
        else if (flag == "--idle-timeout-ms") config.limits.idle_timeout = ms();
        else if (flag == "--request-read-timeout-ms") config.limits.request_read_timeout = ms();
        else if (flag == "--drain-grace-ms") config.limits.drain_grace = ms();
        else if (flag == "--max-attempts") config.limits.max_attempts = parse_uint(value(), flag, 1, 100);
        else if (flag == "--max-client-buffer-bytes") config.limits.max_client_buffer_bytes = parse_uint(value(), flag, 1024);
        else if (flag == "--max-running") config.admission.max_running = parse_uint(value(), flag, 1, 1U << 20);
        else if (flag == "--max-queue") config.admission.max_queue = parse_uint(value(), flag, 0, 1U << 24);
        else if (flag == "--max-queue-tokens") config.admission.max_queue_tokens = parse_uint(value(), flag, 1, 1ULL << 40);
        else if (flag == "--sim-batch") config.batching.mode = BatchingMode::static_batches;
        else if (flag == "--sim-batching") config.batching.mode = parse_batching_mode(value(), flag);
        else if (flag == "--sim-step-tokens") config.batching.max_num_batched_tokens = parse_uint(value(), flag, 1, 1U << 20);
        else if (flag == "--no-cache") config.cache.enabled = false;
        else if (flag == "--cache-max-entries") config.cache.max_entries = parse_uint(value(), flag, 1, 1ULL << 32);
        else if (flag == "--cache-max-bytes") config.cache.max_bytes = parse_uint(value(), flag, 1024, 1ULL << 40);
        else if (flag == "--cache-ttl-s") config.cache.ttl = std::chrono::seconds(parse_uint(value(), flag, 1, 365ULL * 86400));
        else if (flag == "--cache-semantic") config.cache.semantic = true;
        else if (flag == "--cache-all") config.cache.only_deterministic = false;
        else if (flag == "--embeddings-url") config.cache.embeddings_url = value();
        else if (flag == "--embeddings-model") config.cache.embeddings_model = value();
        else if (flag == "--embeddings-dimension") config.cache.embeddings_dimension = parse_uint(value(), flag, 1, 1U << 16);
        else if (flag == "--embeddings-key-file") config.cache.embeddings_api_key = trim(read_file(value(), flag));
        else if (flag == "--embeddings-key")
            throw ConfigError(flag + ": keys never go on the command line (visible in ps); use --embeddings-key-file or $LLMFAST_EMBEDDINGS_API_KEY");
        else if (flag == "--redis") config.cache.redis_url = value();
        else if (flag == "--redis-prefix") config.cache.redis_prefix = value();
        else if (flag == "--redis-timeout-ms") config.cache.redis_timeout = std::chrono::milliseconds(parse_uint(value(), flag, 1, 10000));
        else if (flag == "--redis-password-file") redis_password = trim(read_file(value(), flag));
        else if (flag == "--admin-key-file") admin_key = trim_key(read_file(value(), flag), flag);
        else if (flag == "--admin-key") throw ConfigError(flag + ": keys never go on the command line (visible in ps); use --admin-key-file or $LLMFAST_ADMIN_KEY");
        else if (flag == "--sim-max-batch") config.batching.max_batch_size = parse_uint(value(), flag, 1, 1024);
        else if (flag == "--sim-max-wait-ms") config.batching.max_wait = std::chrono::milliseconds(parse_uint(value(), flag, 0, 60000));
        else throw ConfigError(flag + ": unknown flag (see --help)");
    }
    const char* upstream_key = std::getenv("LLMFAST_UPSTREAM_API_KEY");
    for (const std::string& text : upstream_urls) {
        UpstreamConfig up;
        up.url = parse_url(text, "--upstream");
        up.name = text;
        up.ca_file = upstream_ca;
        up.tls_verify = !upstream_insecure;
        if (upstream_key != nullptr) up.api_key = upstream_key;
        config.default_upstreams.push_back(std::move(up));
    }
    if (const char* keys = std::getenv("LLMFAST_API_KEYS"); keys != nullptr && *keys != '\0')
        add_api_keys(keys, "LLMFAST_API_KEYS", config);
    if (admin_key.empty())
        if (const char* key = std::getenv("LLMFAST_ADMIN_KEY"); key != nullptr && *key != '\0') admin_key = trim_key(key, "LLMFAST_ADMIN_KEY");
    if (!admin_key.empty()) config.admin_key_sha256 = sha256(admin_key);
    if (!config.cache.embeddings_url.empty()) {
        (void)parse_url(config.cache.embeddings_url, "--embeddings-url");  // a clear error now, not at the first request
        if (config.cache.embeddings_model.empty()) throw ConfigError("--embeddings-url needs --embeddings-model");
        if (config.cache.embeddings_dimension == 0) throw ConfigError("--embeddings-url needs --embeddings-dimension");
        if (config.cache.embeddings_api_key.empty())
            if (const char* key = std::getenv("LLMFAST_EMBEDDINGS_API_KEY"); key != nullptr && *key != '\0')
                config.cache.embeddings_api_key = trim(key);
    }
    if (redis_password.empty())
        if (const char* password = std::getenv("LLMFAST_REDIS_PASSWORD"); password != nullptr && *password != '\0') redis_password = trim(password);
    apply_redis_flags(config.cache, std::move(redis_password));
    if (config.threads == 0) config.threads = std::max(1U, std::thread::hardware_concurrency());
    config.batching.enabled = config.batching.mode != BatchingMode::off;
    return config;
}

// ---- requests -----------------------------------------------------------------------------------

namespace {

ApiError parse_error(simdjson::error_code error, const Limits& limits) {
    if (error == simdjson::DEPTH_ERROR)
        return ApiError::invalid("", "request body nests deeper than " + std::to_string(limits.max_json_depth) + " levels", "json_too_deep");
    return ApiError::invalid("", std::string("request body is not valid JSON: ") + simdjson::error_message(error), "invalid_json");
}

// Parses a request body that must be one JSON object into `obj` (valid until this thread's next parse:
// the parser is the thread's own), or says why not.
std::optional<ApiError> parse_body_object(std::string_view body, const Limits& limits, object& obj) {
    auto& parser = thread_parser(std::max<std::size_t>(limits.max_body_bytes, 4096), limits.max_json_depth);
    element root;
    if (const auto error = parser.parse(body.data(), body.size()).get(root); error != simdjson::SUCCESS)
        return parse_error(error, limits);
    if (root.get(obj) != simdjson::SUCCESS) return ApiError::invalid("", "request body must be a JSON object", "invalid_type");
    return std::nullopt;
}

// Fields of chat.completions the simulated backend cannot honour (an upstream gets them unchanged).
constexpr std::string_view sim_unsupported[] = {"tools", "tool_choice", "functions", "function_call", "logprobs",
                                                "top_logprobs", "response_format", "audio", "modalities", "prediction"};

}  // namespace

std::variant<ChatRequest, ApiError> parse_chat_request(std::string_view body, const Limits& limits) {
    object obj;
    if (std::optional<ApiError> error = parse_body_object(body, limits, obj)) return *std::move(error);
    ChatRequest request;
    bool has_model = false, has_messages = false;
    std::vector<std::string> params;  // the cache scope's parameters (sorted below)
    for (auto [key, value] : obj) {
        if (key != "model" && key != "messages" && key != "stream" && key != "stream_options") {
            std::string param(key);
            param.push_back('=');
            param += simdjson::minify(value);
            params.push_back(std::move(param));
        }
        if (key == "model") {
            std::string_view model;
            if (has_model) return ApiError::invalid("model", "'model' appears more than once", "duplicate_field");
            if (value.get(model) != simdjson::SUCCESS || model.empty())
                return ApiError::invalid("model", "'model' must be a non-empty string", "invalid_type");
            request.model = std::string(model);
            has_model = true;
        } else if (key == "stream") {
            if (!value.is_null() && value.get(request.stream) != simdjson::SUCCESS)
                return ApiError::invalid("stream", "'stream' must be a boolean", "invalid_type");
        } else if (key == "stream_options") {
            if (value.is_null()) continue;
            object options;
            if (value.get(options) != simdjson::SUCCESS)
                return ApiError::invalid("stream_options", "'stream_options' must be an object", "invalid_type");
            for (auto [option, option_value] : options) {
                if (option == "include_usage") {
                    if (option_value.get(request.include_usage) != simdjson::SUCCESS)
                        return ApiError::invalid("stream_options.include_usage", "'stream_options.include_usage' must be a boolean", "invalid_type");
                }
            }
        } else if (key == "max_tokens" || key == "max_completion_tokens") {
            if (value.is_null()) continue;
            std::uint64_t n = 0;
            if (value.get(n) != simdjson::SUCCESS || n == 0)
                return ApiError::invalid(std::string(key), "'" + std::string(key) + "' must be an integer >= 1", "invalid_type");
            if (n > limits.max_tokens)
                return ApiError::invalid(std::string(key), "'" + std::string(key) + "' is " + std::to_string(n) + ", the limit is " + std::to_string(limits.max_tokens), "too_large");
            request.max_tokens = n;
        } else if (key == "temperature" || key == "top_p") {
            if (value.is_null()) continue;
            double x = 0;
            const double max = key == "temperature" ? 2.0 : 1.0;
            if (value.get(x) != simdjson::SUCCESS || x < 0 || x > max)
                return ApiError::invalid(std::string(key), "'" + std::string(key) + "' must be a number in [0, " + (key == "temperature" ? "2" : "1") + "]", "invalid_value");
            if (key == "temperature" && x == 0) request.deterministic = true;
        } else if (key == "seed") {
            if (value.is_null()) continue;
            std::int64_t seed = 0;
            if (value.get(seed) != simdjson::SUCCESS) return ApiError::invalid("seed", "'seed' must be an integer", "invalid_type");
            request.deterministic = true;
        } else if (key == "n") {
            std::uint64_t n = 0;
            if (value.get(n) != simdjson::SUCCESS || n == 0) return ApiError::invalid("n", "'n' must be an integer >= 1", "invalid_type");
            if (n != 1) request.cacheable = false;
            if (n != 1 && request.unsupported_by_sim.empty()) request.unsupported_by_sim = "n";
        } else if (key == "messages") {
            if (has_messages) return ApiError::invalid("messages", "'messages' appears more than once", "duplicate_field");
            simdjson::dom::array messages;
            if (value.get(messages) != simdjson::SUCCESS)
                return ApiError::invalid("messages", "'messages' must be an array", "invalid_type");
            if (messages.size() == 0) return ApiError::invalid("messages", "'messages' must not be empty", "invalid_value");
            if (messages.size() > limits.max_messages)
                return ApiError::invalid("messages", "'messages' has " + std::to_string(messages.size()) + " entries, the limit is " + std::to_string(limits.max_messages), "too_large");
            std::size_t i = 0;
            for (element message : messages) {
                const std::string at = "messages[" + std::to_string(i++) + "]";
                object m;
                if (message.get(m) != simdjson::SUCCESS) return ApiError::invalid(at, "'" + at + "' must be an object", "invalid_type");
                ChatMessage out;
                std::string_view role;
                if (m["role"].get(role) != simdjson::SUCCESS)
                    return ApiError::invalid(at + ".role", "'" + at + ".role' must be a string", "invalid_type");
                if (role != "system" && role != "user" && role != "assistant" && role != "tool" && role != "developer" && role != "function")
                    return ApiError::invalid(at + ".role", "'" + at + ".role' must be one of system, developer, user, assistant, tool", "invalid_value");
                out.role = std::string(role);
                element content;
                const auto content_error = m["content"].get(content);
                if (content_error == simdjson::NO_SUCH_FIELD || (content_error == simdjson::SUCCESS && content.is_null())) {
                    if (role != "assistant") return ApiError::invalid(at + ".content", "'" + at + ".content' is required", "missing_field");
                } else if (std::string_view text; content.get(text) == simdjson::SUCCESS) {
                    out.text = std::string(text);
                } else if (simdjson::dom::array parts; content.get(parts) == simdjson::SUCCESS) {
                    std::size_t j = 0;
                    for (element part : parts) {
                        const std::string part_at = at + ".content[" + std::to_string(j++) + "]";
                        std::string_view type;
                        if (part["type"].get(type) != simdjson::SUCCESS)
                            return ApiError::invalid(part_at + ".type", "'" + part_at + ".type' must be a string", "invalid_type");
                        if (type == "text") {
                            std::string_view part_text;
                            if (part["text"].get(part_text) != simdjson::SUCCESS)
                                return ApiError::invalid(part_at + ".text", "'" + part_at + ".text' must be a string", "invalid_type");
                            out.text += part_text;
                        } else {
                            out.plain = false;
                            if (request.unsupported_by_sim.empty()) request.unsupported_by_sim = part_at + ".type=" + std::string(type);
                        }
                    }
                } else {
                    return ApiError::invalid(at + ".content", "'" + at + ".content' must be a string or an array of parts", "invalid_type");
                }
                if (role == "system" || role == "developer") {
                    request.cache_system += simdjson::minify(message);
                    request.cache_system.push_back('\n');
                } else if (out.plain && m.size() == 2) {
                    request.cache_prompt += out.role;
                    request.cache_prompt += ": ";
                    request.cache_prompt += out.text;
                    request.cache_prompt.push_back('\n');
                } else {
                    request.cache_prompt += simdjson::minify(message);
                    request.cache_prompt.push_back('\n');
                }
                request.messages.push_back(std::move(out));
            }
            has_messages = true;
        } else {
            for (const std::string_view name : sim_unsupported)
                if (key == name && request.unsupported_by_sim.empty() && !value.is_null()) request.unsupported_by_sim = std::string(key);
        }
    }
    if (!has_model) return ApiError::invalid("model", "'model' is required", "missing_field");
    if (!has_messages) return ApiError::invalid("messages", "'messages' is required", "missing_field");
    std::sort(params.begin(), params.end());
    for (const std::string& param : params) {
        request.cache_params += param;
        request.cache_params.push_back('\x1f');
    }
    return request;
}

std::variant<EmbeddingsRequest, ApiError> parse_embeddings_request(std::string_view body, const Limits& limits) {
    object obj;
    if (std::optional<ApiError> error = parse_body_object(body, limits, obj)) return *std::move(error);
    EmbeddingsRequest request;
    bool has_input = false;
    for (auto [key, value] : obj) {
        if (key == "model") {
            std::string_view model;
            if (value.get(model) != simdjson::SUCCESS || model.empty())
                return ApiError::invalid("model", "'model' must be a non-empty string", "invalid_type");
            request.model = std::string(model);
        } else if (key == "input") {
            has_input = true;
            if (std::string_view text; value.get(text) == simdjson::SUCCESS) {
                request.inputs.emplace_back(text);
            } else if (simdjson::dom::array list; value.get(list) == simdjson::SUCCESS) {
                if (list.size() == 0) return ApiError::invalid("input", "'input' must not be empty", "invalid_value");
                if (list.size() > 2048) return ApiError::invalid("input", "'input' has more than 2048 entries", "too_large");
                std::size_t i = 0;
                for (element item : list) {
                    std::string_view item_text;
                    if (item.get(item_text) != simdjson::SUCCESS)
                        return ApiError::invalid("input[" + std::to_string(i) + "]", "'input[" + std::to_string(i) + "]' must be a string (token arrays are not supported)", "invalid_type");
                    request.inputs.emplace_back(item_text);
                    ++i;
                }
            } else {
                return ApiError::invalid("input", "'input' must be a string or an array of strings", "invalid_type");
            }
        } else if (key == "encoding_format") {
            std::string_view format;
            if (value.get(format) != simdjson::SUCCESS || (format != "float" && format != "base64"))
                return ApiError::invalid("encoding_format", "'encoding_format' must be \"float\" or \"base64\"", "invalid_value");
            request.base64 = format == "base64";
        } else if (key == "dimensions") {
            return ApiError::invalid("dimensions", "'dimensions' is not supported by this embedder", "unsupported_parameter");
        }
    }
    if (request.model.empty()) return ApiError::invalid("model", "'model' is required", "missing_field");
    if (!has_input) return ApiError::invalid("input", "'input' is required", "missing_field");
    return request;
}

}  // namespace gateway

namespace gateway {
std::pair<std::size_t, std::size_t> find_top_level_value(std::string_view body, std::string_view key) {
    simdjson::padded_string padded(body);
    simdjson::ondemand::parser parser;
    simdjson::ondemand::document doc;
    if (parser.iterate(padded).get(doc) != simdjson::SUCCESS) return {0, 0};
    simdjson::ondemand::object obj;
    if (doc.get_object().get(obj) != simdjson::SUCCESS) return {0, 0};
    for (auto field : obj) {
        std::string_view name;
        if (field.unescaped_key().get(name) != simdjson::SUCCESS) return {0, 0};
        if (name != key) continue;
        std::string_view raw;
        if (field.value().raw_json_token().get(raw) != simdjson::SUCCESS) return {0, 0};
        while (!raw.empty() && (raw.back() == ' ' || raw.back() == '\n' || raw.back() == '\r' || raw.back() == '\t')) raw.remove_suffix(1);
        const auto begin = static_cast<std::size_t>(raw.data() - padded.data());
        return {begin, begin + raw.size()};
    }
    return {0, 0};
}
}  // namespace gateway
