// examples/gateway/simulated_backend.hpp — the built-in simulated model server: the latency model of
// examples/simulated_model.hpp (overhead, prefill per prompt token, a decode step per token) driven by
// Asio timers on the connection's strand (no thread per stream), streamed through llmfast's
// OpenAiChunkEncoder. A client that goes away cancels the pending timer at once.
//
// Thread-safety: stateless apart from the Config it reads; each call runs on its connection's strand.
#pragma once

#include "config.hpp"
#include "sink.hpp"

#include <llmfast/sse.hpp>

#include <fmt/format.h>

#include <ctime>

namespace gateway {

inline std::string new_completion_id() {
    thread_local std::uint64_t state = static_cast<std::uint64_t>(Clock::now().time_since_epoch().count()) ^
                                       reinterpret_cast<std::uintptr_t>(&state);
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return fmt::format("chatcmpl-{:016x}", state ^ (state >> 29));
}

/// Answers `request` on the simulated model; prompt_tokens counted by the caller.
inline net::awaitable<void> simulate_chat(ClientSink& sink, const Config& config, const ChatRequest& request,
                                          std::uint64_t prompt_tokens) {
    RequestRecord& record = sink.record();
    const examples::LatencyModel& model = config.latency;
    const std::uint64_t tokens = request.max_tokens.value_or(config.sim_default_tokens);
    const std::string_view finish_reason = request.max_tokens ? "length" : "stop";
    const std::vector<std::string> pieces = examples::simulated_answer(static_cast<std::size_t>(tokens));
    record.prompt_tokens = prompt_tokens;
    record.completion_tokens = tokens;

    net::steady_timer timer(co_await net::this_coro::executor);
    sink.gone().on_gone = [&timer] { timer.cancel(); };
    struct Unhook {
        ClientGone& gone;
        ~Unhook() { gone.on_gone = nullptr; }
    } unhook{sink.gone()};
    boost::system::error_code ec;
    const auto start = Clock::now();
    auto due = start + std::chrono::duration_cast<Clock::duration>(
                           model.real(model.overhead_ms + model.prefill_ms_per_token * static_cast<double>(prompt_tokens)));
    const auto step = std::chrono::duration_cast<Clock::duration>(model.real(model.step_ms(1)));
    const std::string id = new_completion_id();
    const auto created = static_cast<std::int64_t>(std::time(nullptr));

    if (!request.stream) {
        due += step * static_cast<Clock::duration::rep>(tokens);
        timer.expires_at(due);
        co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
        if (sink.gone().gone) co_return;
        std::string text;
        for (const auto& piece : pieces) text += piece;
        std::string body = "{\"id\":\"" + id + "\",\"object\":\"chat.completion\",\"created\":" + std::to_string(created) + ",\"model\":";
        append_json_string(body, request.model);
        body += ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":";
        append_json_string(body, text);
        body += ",\"refusal\":null},\"logprobs\":null,\"finish_reason\":";
        append_json_string(body, finish_reason);
        body += fmt::format("}}],\"usage\":{{\"prompt_tokens\":{},\"completion_tokens\":{},\"total_tokens\":{}}}}}", prompt_tokens,
                            tokens, prompt_tokens + tokens);
        record.first_content = record.last_content = Clock::now();
        co_await sink.respond(200, "application/json", std::move(body));
        co_return;
    }

    if (!co_await sink.start_stream("text/event-stream")) co_return;
    const llmfast::OpenAiChunkEncoder encoder({.id = id, .model = request.model, .created = created});
    std::string out;
    for (std::size_t i = 0; i < pieces.size(); ++i) {
        due += step;
        timer.expires_at(due);
        co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
        if (sink.gone().gone) co_return;
        out.clear();
        if (i == 0) encoder.append_role(out);
        encoder.append_content(out, pieces[i]);
        if (!co_await sink.write(out)) co_return;
        sink.note_content();
    }
    out.clear();
    encoder.append_finish(out, finish_reason);
    if (request.include_usage)
        encoder.append_usage(out, {.prompt_tokens = prompt_tokens, .completion_tokens = tokens});
    llmfast::OpenAiChunkEncoder::append_done(out);
    if (!co_await sink.write(out)) co_return;
    co_await sink.end_stream();
}

}  // namespace gateway
