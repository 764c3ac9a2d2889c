// examples/gateway/upstream.hpp — the client of OpenAI-compatible upstreams (llama.cpp server, vLLM,
// Ollama, OpenAI; http:// and https:// through OpenSSL), with failover over a model's ordered group.
//
// Pass-through: the request body goes out unchanged but for "model" (when the upstream names the
// model differently); upstream chunks are forwarded byte for byte as they arrive, observed with
// llmfast's SseParser (content, finish, usage) and never re-encoded. Failover happens before the
// first content chunk only (refused, timed out, 5xx/429, an error or EOF after 200 before content),
// within the request deadline, for at most Limits::max_attempts attempts, with doubling backoff; an
// upstream that failed Limits::cooldown_failures times in a row is skipped for Limits::cooldown
// (unless every upstream of the group is cooling down). After content went out, an upstream failure
// ends the stream with an OpenAI error event (never a silent truncation). A client that goes away
// closes the upstream connection at once.
//
// Thread-safety: one UpstreamClient serves every connection; its cooldown state is atomic; the
// per-request work runs on the calling coroutine's executor (the client connection's strand).
#pragma once

#include "config.hpp"
#include "sink.hpp"

#include <functional>
#include <memory>

namespace gateway {

class UpstreamClient {
public:
    UpstreamClient(const Config& config, Metrics& metrics);
    ~UpstreamClient();
    UpstreamClient(const UpstreamClient&) = delete;
    UpstreamClient& operator=(const UpstreamClient&) = delete;

    /// The group serving `model`, or nullptr (the simulated backend or 404).
    [[nodiscard]] const std::vector<UpstreamConfig>* group_for(const std::string& model) const;

    /// Answers one chat completion through `group` (writes the response or the error to `sink`).
    /// `count_tokens` counts generated text with the model's tokenizer when the upstream sends no usage.
    net::awaitable<void> chat(ClientSink& sink, const std::vector<UpstreamConfig>& group, const ChatRequest& request,
                              const std::string& body, Clock::time_point deadline,
                              std::function<std::size_t(std::string_view)> count_tokens);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace gateway
