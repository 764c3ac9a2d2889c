// examples/gateway/simulated_backend.hpp — the built-in simulated model server: the latency model of
// examples/simulated_model.hpp (overhead, prefill per prompt token, a decode step per token) driven by
// Asio timers on the connection's strand (no thread per stream), streamed through llmfast's
// OpenAiChunkEncoder. A client that goes away cancels the pending timer at once.
//
// Batching (BatchingConfig::enabled): the prefill goes through llmfast::DynamicBatcher's callback
// form. The batcher's worker thread (the simulated GPU, not an event-loop thread) sleeps for the
// batch's overhead + summed prefill, and each request's completion callback posts back to its
// connection's strand (cancelling the timer the coroutine waits on), which then streams the decode
// steps at the cost of a step for that batch's size. A client that goes away while its request is
// queued cancels it through its stop token (it never reaches the handler).
//
// Thread-safety: simulate_chat runs on its connection's strand; SimBatcher may be used from any thread.
#pragma once

#include "config.hpp"
#include "sink.hpp"

#include <llmfast/batcher.hpp>
#include <llmfast/sse.hpp>

#include <fmt/format.h>

#include <ctime>
#include <memory>
#include <stop_token>
#include <thread>

namespace gateway {

inline std::string new_completion_id() {
    thread_local std::uint64_t state = static_cast<std::uint64_t>(Clock::now().time_since_epoch().count()) ^
                                       reinterpret_cast<std::uintptr_t>(&state);
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return fmt::format("chatcmpl-{:016x}", state ^ (state >> 29));
}

/// The wake-up of one request waiting for its batch (shared with the batcher's callback).
struct SimWait {
    explicit SimWait(const net::any_io_executor& executor) : timer(executor) {}
    net::steady_timer timer;
    bool done = false;  ///< on the strand: the callback's post ran
    bool ok = false;
    std::size_t batch_size = 1;
    std::stop_source stop;
};

struct SimJob {
    std::uint64_t prompt_tokens = 0;
    std::shared_ptr<SimWait> wait;
};

/// The simulated model's prefill, batched with llmfast::DynamicBatcher (see the file comment).
class SimBatcher {
public:
    using Batcher = llmfast::DynamicBatcher<SimJob, std::size_t>;
    SimBatcher(const Config& config)
        : latency_(config.latency),
          batcher_([this](std::span<SimJob> jobs) { return run_batch(jobs); },
                   llmfast::BatcherOptions{.max_batch_size = config.batching.max_batch_size,
                                           .max_wait = config.batching.max_wait,
                                           .max_queue = std::max<std::size_t>(1, config.admission.max_running + config.admission.max_queue)}) {}

    /// Enqueues the prefill of one request; `wait->timer` is cancelled on its executor when it completes.
    void submit(std::uint64_t prompt_tokens, const std::shared_ptr<SimWait>& wait) {
        Batcher::RequestOptions options;
        options.stop_token = wait->stop.get_token();
        batcher_.submit(SimJob{prompt_tokens, wait}, std::move(options), [wait](Batcher::Result&& result) {
            const bool ok = result.ok();
            const std::size_t size = ok ? result.value() : 1;
            auto executor = wait->timer.get_executor();
            net::post(executor, [wait, ok, size] {
                wait->done = true;
                wait->ok = ok;
                wait->batch_size = size;
                wait->timer.cancel();
            });
        });
    }
    [[nodiscard]] llmfast::BatcherStats stats() const { return batcher_.stats(); }
    void close() { batcher_.close(); }

    /// Prometheus lines: batches and batched requests so far, the largest batch.
    void render(std::string& out) const {
        const auto m = batcher_.stats();
        std::size_t largest = 0;
        for (std::size_t n = 0; n < m.batch_size_histogram.size(); ++n)
            if (m.batch_size_histogram[n] > 0) largest = n;
        out += "# HELP llmfast_sim_batches_total Batches the simulated backend's DynamicBatcher dispatched.\n"
               "# TYPE llmfast_sim_batches_total counter\n";
        out += fmt::format("llmfast_sim_batches_total {}\n", m.batches);
        out += "# HELP llmfast_sim_batched_requests_total Requests dispatched in those batches.\n"
               "# TYPE llmfast_sim_batched_requests_total counter\n";
        out += fmt::format("llmfast_sim_batched_requests_total {}\n", m.dispatched);
        out += "# HELP llmfast_sim_batch_size_max The largest batch so far.\n# TYPE llmfast_sim_batch_size_max gauge\n";
        out += fmt::format("llmfast_sim_batch_size_max {}\n", largest);
    }

private:
    std::vector<std::size_t> run_batch(std::span<SimJob> jobs) {
        double prompt = 0;
        for (const SimJob& job : jobs) prompt += static_cast<double>(job.prompt_tokens);
        // The simulated GPU: this worker thread (the batcher's, never an event-loop thread) is busy.
        std::this_thread::sleep_for(latency_.real(latency_.overhead_ms + latency_.prefill_ms_per_token * prompt));
        return std::vector<std::size_t>(jobs.size(), jobs.size());
    }

    examples::LatencyModel latency_;
    Batcher batcher_;
};

/// Answers `request` on the simulated model; prompt_tokens counted by the caller. With `batcher`
/// the prefill is batched (see the file comment).
inline net::awaitable<void> simulate_chat(ClientSink& sink, const Config& config, const ChatRequest& request,
                                          std::uint64_t prompt_tokens, SimBatcher* batcher = nullptr) {
    RequestRecord& record = sink.record();
    const examples::LatencyModel& model = config.latency;
    const std::uint64_t tokens = request.max_tokens.value_or(config.sim_default_tokens);
    const std::string_view finish_reason = request.max_tokens ? "length" : "stop";
    const std::vector<std::string> pieces = examples::simulated_answer(static_cast<std::size_t>(tokens));
    record.prompt_tokens = prompt_tokens;
    record.completion_tokens = tokens;

    // Objects with destructors at the top level, named values built before co_await (the rule
    // written above UpstreamClient::Impl::exchange, upstream.cpp: g++ 12).
    net::steady_timer timer(co_await net::this_coro::executor);
    std::shared_ptr<SimWait> wait;
    std::string refused, reply, text;
    sink.gone().on_gone = [&timer] { timer.cancel(); };
    struct Unhook {
        ClientGone& gone;
        ~Unhook() { gone.on_gone = nullptr; }
    } unhook{sink.gone()};
    boost::system::error_code ec;
    const auto start = Clock::now();
    auto due = start + std::chrono::duration_cast<Clock::duration>(
                           model.real(model.overhead_ms + model.prefill_ms_per_token * static_cast<double>(prompt_tokens)));
    std::size_t batch_size = 1;
    if (batcher != nullptr) {
        wait = std::make_shared<SimWait>(co_await net::this_coro::executor);
        wait->timer.expires_at(Clock::time_point::max());
        sink.gone().on_gone = [wait] {
            wait->stop.request_stop();
            wait->timer.cancel();
        };
        try {
            batcher->submit(prompt_tokens, wait);
        } catch (const llmfast::Error& e) {
            refused = e.what();
        }
        if (!refused.empty()) {
            sink.gone().on_gone = nullptr;
            reply = error_json(ApiError{503, "the simulated backend is overloaded: " + refused, "server_error", "", "overloaded"});
            co_await sink.respond(503, "application/json", std::move(reply));
            co_return;
        }
        while (!wait->done && !sink.gone().gone)
            co_await wait->timer.async_wait(net::redirect_error(net::use_awaitable, ec));
        if (sink.gone().gone || !wait->ok) {
            sink.gone().on_gone = nullptr;
            if (!sink.gone().gone) {
                reply = error_json(ApiError{503, "the simulated backend failed the request", "server_error", "", "backend_failed"});
                co_await sink.respond(503, "application/json", std::move(reply));
            }
            co_return;
        }
        sink.gone().on_gone = [&timer] { timer.cancel(); };
        batch_size = wait->batch_size;
        due = Clock::now();
    }
    const auto step = std::chrono::duration_cast<Clock::duration>(model.real(model.step_ms(batch_size)));
    const std::string id = new_completion_id();
    const auto created = static_cast<std::int64_t>(std::time(nullptr));

    if (!request.stream) {
        due += step * static_cast<Clock::duration::rep>(tokens);
        timer.expires_at(due);
        co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
        if (sink.gone().gone) co_return;
        for (const auto& piece : pieces) text += piece;
        reply = "{\"id\":\"" + id + "\",\"object\":\"chat.completion\",\"created\":" + std::to_string(created) + ",\"model\":";
        append_json_string(reply, request.model);
        reply += ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":";
        append_json_string(reply, text);
        reply += ",\"refusal\":null},\"logprobs\":null,\"finish_reason\":";
        append_json_string(reply, finish_reason);
        reply += fmt::format("}}],\"usage\":{{\"prompt_tokens\":{},\"completion_tokens\":{},\"total_tokens\":{}}}}}", prompt_tokens,
                            tokens, prompt_tokens + tokens);
        record.first_content = record.last_content = Clock::now();
        co_await sink.respond(200, "application/json", std::move(reply));
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
