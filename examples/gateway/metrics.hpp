// examples/gateway/metrics.hpp — the gateway's counters, gauges and histograms, rendered in the
// Prometheus text format (version 0.0.4) at GET /metrics. Names `llmfast_…`, labelled by model.
// Histograms keep per-bucket counts and render them cumulatively, so buckets are monotonic, the
// `+Inf` bucket is always there and equals `_count`; each series appears once.
//
// Thread-safety: every member function may be called from any thread (atomics for the hot
// observations; a mutex guards the creation of a model's series and the labelled counters).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>

namespace gateway {

class Histogram {
public:
    static constexpr std::array<double, 16> bounds{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                   0.5,   1,      2.5,   5,    10,    30,   60,  120};
    void observe(double seconds) noexcept {
        std::size_t i = 0;
        while (i < bounds.size() && seconds > bounds[i]) ++i;
        counts_[i].fetch_add(1, std::memory_order_relaxed);
        sum_micros_.fetch_add(static_cast<std::uint64_t>(seconds * 1e6 + 0.5), std::memory_order_relaxed);
    }
    void render(std::string& out, std::string_view name, const std::string& labels) const {
        std::uint64_t cumulative = 0;
        char number[64];
        for (std::size_t i = 0; i <= bounds.size(); ++i) {
            cumulative += counts_[i].load(std::memory_order_relaxed);
            out.append(name).append("_bucket{").append(labels).append(",le=\"");
            if (i < bounds.size()) {
                std::snprintf(number, sizeof number, "%g", bounds[i]);
                out.append(number);
            } else {
                out.append("+Inf");
            }
            out.append("\"} ").append(std::to_string(cumulative)).push_back('\n');
        }
        std::snprintf(number, sizeof number, "%.6f", static_cast<double>(sum_micros_.load(std::memory_order_relaxed)) / 1e6);
        out.append(name).append("_sum{").append(labels).append("} ").append(number).push_back('\n');
        out.append(name).append("_count{").append(labels).append("} ").append(std::to_string(cumulative)).push_back('\n');
    }

private:
    std::array<std::atomic<std::uint64_t>, bounds.size() + 1> counts_{};
    std::atomic<std::uint64_t> sum_micros_{0};
};

struct ModelMetrics {
    Histogram ttft, inter_token, e2e, queue;
    std::atomic<std::int64_t> running{0}, waiting{0};
    std::atomic<std::uint64_t> prompt_tokens{0}, generation_tokens{0}, failovers{0};
    // the response cache (response_cache.hpp)
    std::atomic<std::uint64_t> cache_exact{0}, cache_semantic{0}, cache_coalesced{0}, cache_misses{0}, cache_stores{0};
};

class Metrics {
public:
    ModelMetrics& model(const std::string& name) {
        std::lock_guard lock(mutex_);
        auto& slot = models_[name];
        if (!slot) slot = std::make_unique<ModelMetrics>();
        return *slot;
    }
    void count_request(std::string_view route, unsigned status, const std::string& model_name) {
        std::lock_guard lock(mutex_);
        ++requests_[{std::string(route), status, model_name}];
    }
    void count_attempt(const std::string& model_name, const std::string& upstream, std::string_view outcome) {
        std::lock_guard lock(mutex_);
        ++attempts_[{model_name, upstream, std::string(outcome)}];
    }
    void count_rejection(std::string_view reason) {
        std::lock_guard lock(mutex_);
        ++rejections_[std::string(reason)];
    }
    void count_client_disconnect() noexcept { client_disconnects_.fetch_add(1, std::memory_order_relaxed); }
    void count_slow_client() noexcept { slow_clients_.fetch_add(1, std::memory_order_relaxed); }
    void count_drain_cut() noexcept { drain_cuts_.fetch_add(1, std::memory_order_relaxed); }
    void count_prompt_change(std::size_t dropped, std::size_t shortened, std::size_t compressed) noexcept {
        fitted_dropped_.fetch_add(dropped, std::memory_order_relaxed);
        fitted_shortened_.fetch_add(shortened, std::memory_order_relaxed);
        compressed_.fetch_add(compressed, std::memory_order_relaxed);
    }
    /// More series rendered at the end (set once, before serving).
    std::function<void(std::string&)> extra;

    std::string render() const {
        std::lock_guard lock(mutex_);
        std::string out;
        out.reserve(8192);
        const auto header = [&](std::string_view name, std::string_view type, std::string_view help) {
            out.append("# HELP ").append(name).append(" ").append(help).append("\n# TYPE ").append(name).append(" ").append(type).push_back('\n');
        };
        const auto histograms = [&](std::string_view name, std::string_view help, Histogram ModelMetrics::*member) {
            header(name, "histogram", help);
            for (const auto& [model_name, m] : models_) ((*m).*member).render(out, name, label("model", model_name));
        };
        histograms("llmfast_time_to_first_token_seconds", "Time from the request to its first content chunk.", &ModelMetrics::ttft);
        histograms("llmfast_inter_token_latency_seconds", "Time between two content chunks of a stream.", &ModelMetrics::inter_token);
        histograms("llmfast_e2e_request_latency_seconds", "Time from the request to its last byte.", &ModelMetrics::e2e);
        histograms("llmfast_queue_time_seconds", "Time a request waited before its backend call began.", &ModelMetrics::queue);
        const auto per_model = [&](std::string_view name, std::string_view type, std::string_view help, auto get) {
            header(name, type, help);
            for (const auto& [model_name, m] : models_)
                out.append(name).append("{").append(label("model", model_name)).append("} ").append(std::to_string(get(*m))).push_back('\n');
        };
        per_model("llmfast_requests_running", "gauge", "Requests being answered.", [](const ModelMetrics& m) { return m.running.load(); });
        per_model("llmfast_requests_waiting", "gauge", "Requests queued for admission.", [](const ModelMetrics& m) { return m.waiting.load(); });
        per_model("llmfast_prompt_tokens_total", "counter", "Prompt tokens of answered requests.", [](const ModelMetrics& m) { return m.prompt_tokens.load(); });
        per_model("llmfast_generation_tokens_total", "counter", "Generated tokens.", [](const ModelMetrics& m) { return m.generation_tokens.load(); });
        per_model("llmfast_upstream_failovers_total", "counter", "Requests moved on to the next upstream.", [](const ModelMetrics& m) { return m.failovers.load(); });
        header("llmfast_cache_hits_total", "counter", "Chat requests answered from the response cache, by kind (exact, semantic, coalesced).");
        for (const auto& [model_name, m] : models_) {
            const std::pair<std::string_view, const std::atomic<std::uint64_t>*> kinds[] = {
                {"exact", &m->cache_exact}, {"semantic", &m->cache_semantic}, {"coalesced", &m->cache_coalesced}};
            for (const auto& [kind, value] : kinds)
                out.append("llmfast_cache_hits_total{").append(label("kind", kind)).append(",").append(label("model", model_name)).append("} ")
                    .append(std::to_string(value->load())).push_back('\n');
        }
        per_model("llmfast_cache_misses_total", "counter", "Chat requests the response cache did not answer (looked up, or not cacheable).",
                  [](const ModelMetrics& m) { return m.cache_misses.load(); });
        per_model("llmfast_cache_stores_total", "counter", "Answers stored in the response cache.", [](const ModelMetrics& m) { return m.cache_stores.load(); });
        header("llmfast_requests_total", "counter", "Requests by route and HTTP status.");
        for (const auto& [key, n] : requests_) {
            const auto& [route, status, model_name] = key;
            out.append("llmfast_requests_total{").append(label("model", model_name)).append(",").append(label("route", route))
                .append(",status=\"").append(std::to_string(status)).append("\"} ").append(std::to_string(n)).push_back('\n');
        }
        header("llmfast_upstream_attempts_total", "counter", "Upstream attempts by outcome.");
        for (const auto& [key, n] : attempts_) {
            const auto& [model_name, upstream, outcome] = key;
            out.append("llmfast_upstream_attempts_total{").append(label("model", model_name)).append(",").append(label("upstream", upstream))
                .append(",").append(label("outcome", outcome)).append("} ").append(std::to_string(n)).push_back('\n');
        }
        header("llmfast_rejections_total", "counter", "Requests rejected before a backend call, by reason.");
        for (const auto& [reason, n] : rejections_)
            out.append("llmfast_rejections_total{").append(label("reason", reason)).append("} ").append(std::to_string(n)).push_back('\n');
        header("llmfast_client_disconnects_total", "counter", "Clients that went away before their answer was complete.");
        out.append("llmfast_client_disconnects_total ").append(std::to_string(client_disconnects_.load())).push_back('\n');
        const auto plain = [&](std::string_view name, std::string_view help, const std::atomic<std::uint64_t>& value) {
            header(name, "counter", help);
            out.append(name).append(" ").append(std::to_string(value.load())).push_back('\n');
        };
        plain("llmfast_slow_clients_dropped_total", "Streaming clients dropped because their unsent bytes exceeded the buffer bound.", slow_clients_);
        plain("llmfast_drain_cut_streams_total", "Streams ended with an error event when the drain grace period ran out.", drain_cuts_);
        plain("llmfast_prompt_messages_dropped_total", "Chat messages dropped to fit a model's context window.", fitted_dropped_);
        plain("llmfast_prompt_messages_shortened_total", "Chat messages shortened to fit a model's context window or the byte cap.", fitted_shortened_);
        plain("llmfast_prompt_messages_compressed_total", "Chat messages changed by a model's compression rules.", compressed_);
        if (extra) extra(out);
        return out;
    }

private:
    static std::string label(std::string_view name, std::string_view value) {
        std::string out(name);
        out += "=\"";
        for (const char c : value) {
            if (c == '\\' || c == '"') { out.push_back('\\'); out.push_back(c); }
            else if (c == '\n') out += "\\n";
            else out.push_back(c);
        }
        out.push_back('"');
        return out;
    }

    mutable std::mutex mutex_;
    std::map<std::string, std::unique_ptr<ModelMetrics>> models_;
    std::map<std::tuple<std::string, unsigned, std::string>, std::uint64_t> requests_;
    std::map<std::tuple<std::string, std::string, std::string>, std::uint64_t> attempts_;
    std::map<std::string, std::uint64_t> rejections_;
    std::atomic<std::uint64_t> client_disconnects_{0}, slow_clients_{0}, drain_cuts_{0};
    std::atomic<std::uint64_t> fitted_dropped_{0}, fitted_shortened_{0}, compressed_{0};
};

}  // namespace gateway
