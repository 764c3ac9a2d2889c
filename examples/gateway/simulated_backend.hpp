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
// Continuous batching (BatchingConfig::mode == continuous): one examples::ContinuousEngine for the
// gateway (llmfast::ContinuousScheduler under the same latency model, per step: fixed + per-token
// prefill + per-sequence decode), driven in real time on a thread of its own (the simulated GPU). Each
// request is submitted as a sequence arriving after the call overhead; it joins the running batch at
// the next step and leaves it as soon as its answer is complete, so a short answer never waits for a
// long one. The engine's on_token / on_done post to the connection's strand (never blocking the event
// loop), which streams what has been produced. A client that goes away, or a coroutine that ends early,
// cancels its sequence (ContinuousEngine::cancel): it leaves the batch at the next step. close() cancels
// every sequence still live and stops the engine.
//
// Thread-safety: simulate_chat runs on its connection's strand; SimBatcher may be used from any thread.
#pragma once

#include "config.hpp"
#include "json_util.hpp"
#include "sink.hpp"

#include <llmfast/batcher.hpp>
#include <llmfast/detail/unicode.hpp>
#include <llmfast/sse.hpp>
#include <llmfast/utf8.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <ctime>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <thread>
#include <unordered_set>
#include <vector>

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

/// True when the last user message holds a Han ideograph: the simulated model then answers in
/// Chinese, so a client (the playground) can show how CJK text streams, is cached and renders.
inline bool asks_in_chinese(const ChatRequest& request) {
    for (auto message = request.messages.rbegin(); message != request.messages.rend(); ++message)
        if (message->role == "user") return examples::asks_in_chinese(message->text);
    return false;
}

/// One request's progress on the continuous engine, shared with the engine's callbacks. Written only
/// on the connection's strand (the callbacks post there), which the timer's cancel wakes.
struct SimStream {
    explicit SimStream(const net::any_io_executor& executor) : timer(executor) {}
    net::steady_timer timer;
    std::uint64_t ticket = 0;   ///< 0: not submitted
    std::size_t ready = 0;      ///< tokens produced so far
    bool done = false;          ///< on_done's post ran
    llmfast::ErrorCode status = llmfast::ErrorCode::Ok;
};

/// The simulated model's batching: static (llmfast::DynamicBatcher) or continuous
/// (examples::ContinuousEngine); see the file comment.
class SimBatcher {
public:
    using Batcher = llmfast::DynamicBatcher<SimJob, std::size_t>;
    SimBatcher(const Config& config) : latency_(config.latency), pacer_{.time_scale = config.latency.time_scale} {
        if (config.batching.mode == BatchingMode::continuous) {
            engine_ = std::make_unique<examples::ContinuousEngine>(
                config.latency,
                examples::ContinuousEngineOptions{.max_num_seqs = config.batching.max_batch_size,
                                                  .max_num_batched_tokens = config.batching.max_num_batched_tokens},
                [pacer = pacer_](double ms) { pacer.sleep_until_ms(ms); });
            engine_->start();
        } else {
            batcher_.emplace([this](std::span<SimJob> jobs) { return run_batch(jobs); },
                             llmfast::BatcherOptions{.max_batch_size = config.batching.max_batch_size,
                                                     .max_wait = config.batching.max_wait,
                                                     .max_queue = std::max<std::size_t>(1, config.admission.max_running + config.admission.max_queue)});
        }
    }
    SimBatcher(const SimBatcher&) = delete;
    SimBatcher& operator=(const SimBatcher&) = delete;
    ~SimBatcher() {
        close();
        engine_.reset();  // before the members its last callbacks use
    }

    [[nodiscard]] bool continuous() const noexcept { return engine_ != nullptr; }

    /// Continuous: submits one request (`output_tokens` tokens) arriving after the call overhead; its
    /// tokens and its end are posted to `stream->timer`'s executor. Returns the ticket; throws
    /// llmfast::Error (Closed after close()).
    std::uint64_t submit_continuous(std::uint64_t prompt_tokens, std::uint64_t output_tokens,
                                    const std::shared_ptr<SimStream>& stream) {
        examples::SimCallbacks callbacks;
        callbacks.on_token = [stream](std::size_t, double) {
            net::post(stream->timer.get_executor(), [stream] {
                ++stream->ready;
                stream->timer.cancel();
            });
        };
        callbacks.on_done = [this, stream](const examples::SimCompletion& completion) {
            const llmfast::ErrorCode status = completion.status;
            {
                std::lock_guard lock(mutex_);
                live_.erase(stream->ticket);  // submit_continuous set it under this lock
                ++(status == llmfast::ErrorCode::Ok ? ended_ok_ : status == llmfast::ErrorCode::Cancelled ? ended_cancelled_ : ended_other_);
            }
            net::post(stream->timer.get_executor(), [stream, status] {
                stream->done = true;
                stream->status = status;
                stream->timer.cancel();
            });
        };
        const examples::SimRequest request{.prompt_tokens = static_cast<std::size_t>(std::max<std::uint64_t>(1, prompt_tokens)),
                                           .output_tokens = static_cast<std::size_t>(output_tokens),
                                           .arrival_ms = pacer_.now_ms() + latency_.overhead_ms};
        std::lock_guard lock(mutex_);  // before on_done can look for the ticket
        if (closed_) throw llmfast::Error(llmfast::ErrorCode::Closed, "the simulated engine is stopped");
        const std::uint64_t ticket = engine_->submit(request, std::move(callbacks));
        stream->ticket = ticket;
        live_.insert(ticket);
        return ticket;
    }
    /// Continuous: the sequence leaves the batch at the next step (ended tickets are ignored).
    void cancel(std::uint64_t ticket) {
        if (engine_ && ticket != 0) engine_->cancel(ticket);
    }

    /// Static: enqueues the prefill of one request; `wait->timer` is cancelled on its executor when it completes.
    void submit(std::uint64_t prompt_tokens, const std::shared_ptr<SimWait>& wait) {
        Batcher::RequestOptions options;
        options.stop_token = wait->stop.get_token();
        batcher_->submit(SimJob{prompt_tokens, wait}, std::move(options), [wait](Batcher::Result&& result) {
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
    /// Static: the batcher's stats.
    [[nodiscard]] llmfast::BatcherStats stats() const { return batcher_ ? batcher_->stats() : llmfast::BatcherStats{}; }
    /// Continuous: the engine's stats.
    [[nodiscard]] examples::ContinuousEngineStats engine_stats() const {
        return engine_ ? engine_->stats() : examples::ContinuousEngineStats{};
    }
    /// Static: the batcher drains. Continuous: every live sequence is cancelled, then the engine stops
    /// (its last callbacks post to the connections' executors). Idempotent.
    void close() {
        if (batcher_) batcher_->close();
        if (!engine_) return;
        std::vector<std::uint64_t> live;
        {
            std::lock_guard lock(mutex_);
            closed_ = true;
            live.assign(live_.begin(), live_.end());
        }
        for (const std::uint64_t ticket : live) engine_->cancel(ticket);
        engine_->stop();
    }

    /// Prometheus lines. Static: batches and batched requests so far, the largest batch. Continuous: the
    /// engine's running and waiting sequences, steps, sequences per step, requests by how they ended.
    void render(std::string& out) const {
        if (engine_) {
            render_engine(out);
            return;
        }
        const auto m = batcher_->stats();
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
    void render_engine(std::string& out) const {
        const examples::ContinuousEngineStats e = engine_->stats();
        std::uint64_t ok = 0, cancelled = 0, other = 0;
        {
            std::lock_guard lock(mutex_);
            ok = ended_ok_;
            cancelled = ended_cancelled_;
            other = ended_other_;
        }
        const std::uint64_t in_flight = e.submitted > e.completed ? e.submitted - e.completed : 0;
        const std::uint64_t running = std::min<std::uint64_t>(e.scheduler.running, in_flight);
        out += "# HELP llmfast_sim_engine_running Sequences in the simulated continuous engine's running batch.\n"
               "# TYPE llmfast_sim_engine_running gauge\n";
        out += fmt::format("llmfast_sim_engine_running {}\n", running);
        out += "# HELP llmfast_sim_engine_waiting Sequences submitted to the engine and not yet running.\n"
               "# TYPE llmfast_sim_engine_waiting gauge\n";
        out += fmt::format("llmfast_sim_engine_waiting {}\n", in_flight - running);
        out += "# HELP llmfast_sim_engine_steps_total Steps (model iterations) the engine ran.\n"
               "# TYPE llmfast_sim_engine_steps_total counter\n";
        out += fmt::format("llmfast_sim_engine_steps_total {}\n", e.steps);
        out += "# HELP llmfast_sim_engine_step_sequences_total Sequences summed over the steps (divide by steps: batch size).\n"
               "# TYPE llmfast_sim_engine_step_sequences_total counter\n";
        out += fmt::format("llmfast_sim_engine_step_sequences_total {}\n", e.step_sequences);
        out += "# HELP llmfast_sim_engine_step_sequences_max The most sequences in one step.\n"
               "# TYPE llmfast_sim_engine_step_sequences_max gauge\n";
        out += fmt::format("llmfast_sim_engine_step_sequences_max {}\n", e.max_step_sequences);
        out += "# HELP llmfast_sim_engine_submitted_total Requests submitted to the engine.\n"
               "# TYPE llmfast_sim_engine_submitted_total counter\n";
        out += fmt::format("llmfast_sim_engine_submitted_total {}\n", e.submitted);
        out += "# HELP llmfast_sim_engine_requests_total Requests the engine ended, by how they ended.\n"
               "# TYPE llmfast_sim_engine_requests_total counter\n";
        out += fmt::format("llmfast_sim_engine_requests_total{{status=\"ok\"}} {}\n", ok);
        out += fmt::format("llmfast_sim_engine_requests_total{{status=\"cancelled\"}} {}\n", cancelled);
        out += fmt::format("llmfast_sim_engine_requests_total{{status=\"other\"}} {}\n", other);
        out += "# HELP llmfast_sim_engine_busy_seconds_total Simulated GPU time the steps took (simulated seconds).\n"
               "# TYPE llmfast_sim_engine_busy_seconds_total counter\n";
        out += fmt::format("llmfast_sim_engine_busy_seconds_total {:.6f}\n", e.busy_ms / 1000.0);
    }

    std::vector<std::size_t> run_batch(std::span<SimJob> jobs) {
        double prompt = 0;
        for (const SimJob& job : jobs) prompt += static_cast<double>(job.prompt_tokens);
        // The simulated GPU: this worker thread (the batcher's, never an event-loop thread) is busy.
        std::this_thread::sleep_for(latency_.real(latency_.overhead_ms + latency_.prefill_ms_per_token * prompt));
        return std::vector<std::size_t>(jobs.size(), jobs.size());
    }

    examples::LatencyModel latency_;
    examples::RealTimePacer pacer_;
    std::optional<Batcher> batcher_;                      // static
    std::unique_ptr<examples::ContinuousEngine> engine_;  // continuous
    mutable std::mutex mutex_;                            // continuous: what follows
    std::unordered_set<std::uint64_t> live_;              // submitted, not ended
    bool closed_ = false;
    std::uint64_t ended_ok_ = 0, ended_cancelled_ = 0, ended_other_ = 0;
};

/// What the simulated model answers to `request` (its length, finish reason and content pieces), as
/// both modes send it; the token counts are noted on the request's record.
struct SimAnswer {
    std::uint64_t prompt_tokens = 0, tokens = 0;
    std::string_view finish_reason;
    std::vector<std::string> pieces;
};

inline SimAnswer simulated_answer_for(RequestRecord& record, const Config& config, const ChatRequest& request,
                                      std::uint64_t prompt_tokens) {
    SimAnswer answer;
    answer.prompt_tokens = prompt_tokens;
    answer.tokens = request.max_tokens.value_or(config.sim_default_tokens);
    answer.finish_reason = request.max_tokens ? "length" : "stop";
    answer.pieces = examples::simulated_answer(static_cast<std::size_t>(answer.tokens), asks_in_chinese(request));
    record.prompt_tokens = prompt_tokens;
    record.completion_tokens = answer.tokens;
    return answer;
}

/// A simulated stream's end: the finish chunk, the usage chunk when asked for, [DONE].
inline net::awaitable<void> finish_simulated_stream(ClientSink& sink, const llmfast::OpenAiChunkEncoder& encoder,
                                                    const ChatRequest& request, const SimAnswer& answer) {
    std::string out;
    encoder.append_finish(out, answer.finish_reason);
    if (request.include_usage)
        encoder.append_usage(out, {.prompt_tokens = answer.prompt_tokens, .completion_tokens = answer.tokens});
    llmfast::OpenAiChunkEncoder::append_done(out);
    if (!co_await sink.write(out)) co_return;
    co_await sink.end_stream();
}

/// The continuous engine's answer to `request` (simulate_chat's continuous mode; see the file comment).
inline net::awaitable<void> simulate_chat_continuous(ClientSink& sink, const Config& config, const ChatRequest& request,
                                                     std::uint64_t prompt_tokens, SimBatcher& engine) {
    RequestRecord& record = sink.record();
    const SimAnswer answer = simulated_answer_for(record, config, request, prompt_tokens);
    const std::uint64_t tokens = answer.tokens;
    const std::string_view finish_reason = answer.finish_reason;
    const std::vector<std::string>& pieces = answer.pieces;

    // Objects with destructors at the top level, named values built before co_await (the rule
    // written above UpstreamClient::Impl::exchange, upstream.cpp: g++ 12).
    const std::shared_ptr<SimStream> state = std::make_shared<SimStream>(co_await net::this_coro::executor);
    state->timer.expires_at(Clock::time_point::max());
    std::string refused, reply, text, out;
    const std::string id = new_completion_id();
    const auto created = static_cast<std::int64_t>(std::time(nullptr));
    boost::system::error_code ec;
    // However the coroutine ends, a sequence still running leaves the engine's batch at the next step.
    struct CancelUnfinished {
        SimBatcher& engine;
        const std::shared_ptr<SimStream>& state;
        ~CancelUnfinished() {
            if (!state->done) engine.cancel(state->ticket);
        }
    } cancel_unfinished{engine, state};
    sink.gone().on_gone = [&engine, state] {
        engine.cancel(state->ticket);  // at once, from the connection's strand
        state->timer.cancel();
    };
    struct Unhook {
        ClientGone& gone;
        ~Unhook() { gone.on_gone = nullptr; }
    } unhook{sink.gone()};
    try {
        engine.submit_continuous(prompt_tokens, tokens, state);
    } catch (const llmfast::Error& e) {
        refused = e.what();
    }
    if (!refused.empty()) {
        reply = error_json(ApiError{503, "the simulated backend is overloaded: " + refused, "server_error", "", "overloaded"});
        co_await sink.respond(503, "application/json", std::move(reply));
        co_return;
    }

    if (!request.stream) {
        while (!state->done && !sink.gone().gone)
            co_await state->timer.async_wait(net::redirect_error(net::use_awaitable, ec));
        if (sink.gone().gone) co_return;
        if (state->status != llmfast::ErrorCode::Ok || state->ready < pieces.size()) {
            reply = error_json(ApiError{503, "the simulated backend failed the request", "server_error", "", "backend_failed"});
            co_await sink.respond(503, "application/json", std::move(reply));
            co_return;
        }
        for (const auto& piece : pieces) text += piece;
        reply = chat_completion_json(id, request.model, created, text, finish_reason, prompt_tokens, tokens);
        record.first_content = record.last_content = Clock::now();
        co_await sink.respond(200, "application/json", std::move(reply));
        co_return;
    }

    if (!co_await sink.start_stream("text/event-stream")) co_return;
    const llmfast::OpenAiChunkEncoder encoder({.id = id, .model = request.model, .created = created});
    std::size_t sent = 0;
    while (sent < pieces.size()) {
        while (state->ready <= sent && !state->done && !sink.gone().gone)
            co_await state->timer.async_wait(net::redirect_error(net::use_awaitable, ec));
        if (sink.gone().gone) co_return;
        if (state->ready <= sent) {  // the engine ended the sequence early (it was stopped)
            reply = error_event(ApiError{503, "the simulated backend ended the stream", "server_error", "", "backend_failed"});
            if (co_await sink.write(reply)) co_await sink.end_stream();
            co_return;
        }
        // Every token produced since the last write goes out in one chunk.
        out.clear();
        const std::size_t ready = std::min(state->ready, pieces.size());
        for (; sent < ready; ++sent) {
            if (sent == 0) encoder.append_role(out);
            encoder.append_content(out, pieces[sent]);
        }
        if (!co_await sink.write(out)) co_return;
        sink.note_content();
    }
    co_await finish_simulated_stream(sink, encoder, request, answer);
}

/// Answers `request` on the simulated model; prompt_tokens counted by the caller. With `batcher`
/// the model is batched, statically or continuously (see the file comment).
inline net::awaitable<void> simulate_chat(ClientSink& sink, const Config& config, const ChatRequest& request,
                                          std::uint64_t prompt_tokens, SimBatcher* batcher = nullptr) {
    if (batcher != nullptr && batcher->continuous()) {
        co_await simulate_chat_continuous(sink, config, request, prompt_tokens, *batcher);
        co_return;
    }
    RequestRecord& record = sink.record();
    const examples::LatencyModel& model = config.latency;
    const SimAnswer answer = simulated_answer_for(record, config, request, prompt_tokens);
    const std::uint64_t tokens = answer.tokens;
    const std::string_view finish_reason = answer.finish_reason;
    const std::vector<std::string>& pieces = answer.pieces;

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
        reply = chat_completion_json(id, request.model, created, text, finish_reason, prompt_tokens, tokens);
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
    co_await finish_simulated_stream(sink, encoder, request, answer);
}

}  // namespace gateway
