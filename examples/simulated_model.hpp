// examples/simulated_model.hpp — the simulated LLM backend, in one place for the programs that simulate a
// model server: llmfast-gateway's built-in backend (examples/gateway/) and the demo (examples/demo.cpp).
//
// LatencyModel — the latency model. A call costs: `overhead_ms` (HTTP round trip, tokenization,
// scheduling: latency, not GPU time), then prefill `prefill_ms_per_token` x prompt tokens (compute-bound:
// a batch pays for the sum of its prompts), then one decode step per output token; a step for k
// unfinished sequences of a batch costs (decode_ms_per_token - batch_item_ms) + batch_item_ms x k.
// Defaults: decode 13 ms per token (Llama-3.1-8B-Instruct BF16 on one A100 40GB under vLLM), prefill
// 0.1 ms per token (llama.cpp's pp512 of LLaMA-7B F16 on an RTX 4090, about 11,000 tokens/s), overhead
// 30 ms. `time_scale` > 1 runs the model that many times faster than real time (tests use it).
//
// ContinuousEngine — a simulated continuous-batching engine on llmfast::ContinuousScheduler with the
// same model per iteration: a step over n entries (decode tokens and prefill chunks) with P prefill
// tokens takes iteration_ms(n, P) = (decode_ms_per_token - batch_item_ms) + batch_item_ms x n +
// prefill_ms_per_token x P. So a static batch's first step (prefill of its prompts + one decode step)
// and a continuous step cost the same for the same work. The engine keeps its own timeline (simulated
// ms): a step starts when the previous one ended, or when a request arrives at an idle engine; a
// request joins the first step that starts at or after its `arrival_ms`. With a `sleep_until` pacer
// it runs in real time (one thread of its own: start()); without one it runs on virtual time, driven by
// run_until_idle() on the caller's thread (deterministic). The call overhead is the caller's: add it
// to arrival_ms.
//
// Thread-safety: `LatencyModel` is a value type; `simulated_answer` is pure. ContinuousEngine: submit /
// cancel / stats from any thread; callbacks run on the engine's driving thread (they may call submit).
//
//     examples::LatencyModel model{.time_scale = 10};
//     auto first = model.real(model.first_token_ms(prompt_tokens));  // wait this long, then token 1
//     auto step = model.real(model.step_ms(1));                      // then this long per token
//
//     const examples::RealTimePacer pacer{.time_scale = model.time_scale};
//     examples::ContinuousEngine engine(model, {.max_num_seqs = 16},
//                                       [pacer](double ms) { pacer.sleep_until_ms(ms); });
//     engine.start();
//     engine.submit({.prompt_tokens = 20, .output_tokens = 150, .arrival_ms = pacer.now_ms() + model.overhead_ms},
//                   {.on_token = [](std::size_t i, double at_ms) { /* token i is out */ },
//                    .on_done = [](const examples::SimCompletion& c) { /* exactly once */ }});
//
// Errors: `LatencyModel::validate` throws std::invalid_argument naming the field; the ContinuousEngine
// constructor throws llmfast::Error(InvalidArgument) for bad scheduler options; submit throws
// llmfast::Error(InvalidArgument) for zero prompt or output tokens, Closed after stop().
#pragma once

#include <llmfast/scheduler.hpp>
#include <llmfast/utf8.hpp>
#include <llmfast/detail/unicode.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace examples {

struct LatencyModel {
    double overhead_ms = 30.0;
    double prefill_ms_per_token = 0.1;
    double decode_ms_per_token = 13.0;
    double batch_item_ms = 0.4;
    double time_scale = 1.0;  ///< simulated time runs this many times faster than real time

    void validate() const {
        if (!(overhead_ms >= 0)) throw std::invalid_argument("LatencyModel::overhead_ms must be >= 0");
        if (!(prefill_ms_per_token >= 0)) throw std::invalid_argument("LatencyModel::prefill_ms_per_token must be >= 0");
        if (!(decode_ms_per_token > 0)) throw std::invalid_argument("LatencyModel::decode_ms_per_token must be > 0");
        if (!(batch_item_ms >= 0) || batch_item_ms > decode_ms_per_token)
            throw std::invalid_argument("LatencyModel::batch_item_ms must be in [0, decode_ms_per_token]");
        if (!(time_scale > 0)) throw std::invalid_argument("LatencyModel::time_scale must be > 0");
    }
    /// One decode step for `active` unfinished sequences (simulated ms).
    [[nodiscard]] double step_ms(std::size_t active) const {
        return (decode_ms_per_token - batch_item_ms) + batch_item_ms * static_cast<double>(active);
    }
    /// One iteration of a continuous-batching engine over `entries` sequences (decode tokens and
    /// prefill chunks) carrying `prefill_tokens` prompt tokens (simulated ms). step_ms(k) plus prefill.
    [[nodiscard]] double iteration_ms(std::size_t entries, std::size_t prefill_tokens) const {
        return step_ms(entries) + prefill_ms_per_token * static_cast<double>(prefill_tokens);
    }
    /// From the call to its first token for a lone request (simulated ms): overhead + prefill + one step.
    [[nodiscard]] double first_token_ms(std::size_t prompt_tokens) const {
        return overhead_ms + prefill_ms_per_token * static_cast<double>(prompt_tokens) + step_ms(1);
    }
    /// The real duration `sim_ms` simulated milliseconds take.
    [[nodiscard]] std::chrono::nanoseconds real(double sim_ms) const {
        return std::chrono::nanoseconds(static_cast<long long>(sim_ms * 1e6 / time_scale));
    }
};

/// True when `text` holds a Han ideograph: the simulated model then answers in Chinese (the gateway
/// asks it of the last user message; a client that checks answers asks it of the prompt it sent).
inline bool asks_in_chinese(std::string_view text) {
    for (std::size_t pos = 0; pos < text.size();) {
        const llmfast::utf8::DecodeResult decoded = llmfast::utf8::decode(text, pos);
        if (decoded.status == llmfast::utf8::DecodeStatus::Valid && llmfast::detail::is_han_ideograph(decoded.code_point)) return true;
        pos += std::max<std::size_t>(1, decoded.length);
    }
    return false;
}

/// The simulated answer as token pieces: filler words (English, or Chinese when `chinese`) of `tokens`
/// pieces, deterministic.
inline std::vector<std::string> simulated_answer(std::size_t tokens, bool chinese = false) {
    static constexpr std::string_view words[] = {"Large", " language", " models", " spend", " most", " of",
                                                 " their", " time", " decoding", " one", " token", " at", " a",
                                                 " time,", " so", " longer", " answers", " take", " longer."};
    // The same sentence for a prompt in Chinese (the gateway picks it), as many pieces as the English one.
    static constexpr std::string_view words_zh[] = {"大", "语言", "模型", "的", "大部分", "时间", "都", "花在",
                                                    "逐个", "解码", "词元", "上，", "所以", "回答", "越", "长，",
                                                    "耗时", "越", "长。"};
    static_assert(std::size(words_zh) == std::size(words));
    std::vector<std::string> pieces;
    pieces.reserve(tokens);
    for (std::size_t i = 0; i < tokens; ++i) {
        if (chinese) {
            pieces.emplace_back(words_zh[i % std::size(words_zh)]);
        } else {
            pieces.emplace_back(words[i % std::size(words)]);
            if (i > 0 && i % std::size(words) == 0) pieces.back().insert(0, 1, ' ');  // the sentence again, after a space
        }
    }
    return pieces;
}


// ------------------------------------------------------------------------------------------------
// ContinuousEngine: the simulated continuous-batching engine (see the file comment)

/// The scheduler's limits for the engine (the names and meanings of llmfast::SchedulerOptions).
struct ContinuousEngineOptions {
    std::size_t max_num_seqs = 16;             ///< sequences running at once
    std::size_t max_num_batched_tokens = 512;  ///< tokens per step: decode tokens + prefill chunks
    std::size_t max_prefill_chunk = 0;         ///< 0: the budget
    std::size_t kv_block_size = 16;
    std::size_t kv_blocks = 0;                 ///< 0: unbounded KV capacity
};

/// One request to the engine.
struct SimRequest {
    std::size_t prompt_tokens = 1;   ///< >= 1
    std::size_t output_tokens = 1;   ///< >= 1: the answer's length (the engine stops the sequence there)
    double arrival_ms = 0;           ///< when it reaches the engine (simulated ms; after the call overhead)
};

/// How a request ended (on_done's argument). Times in simulated ms on the engine's timeline.
struct SimCompletion {
    llmfast::ErrorCode status = llmfast::ErrorCode::Ok;  ///< Ok, Cancelled, or the scheduler's code
    std::size_t generated = 0;                           ///< tokens produced (on_token calls)
    std::size_t preemptions = 0;
    double arrival_ms = 0;
    double admitted_ms = -1;  ///< start of the first step it ran in (-1: never ran)
    double first_token_ms = -1;
    double last_token_ms = -1;
    double done_ms = 0;  ///< when it ended on the engine's timeline
};

struct SimCallbacks {
    /// Token `index` (0-based) of the answer was produced at `at_ms`; in order, each index once.
    std::function<void(std::size_t index, double at_ms)> on_token{};
    /// The request ended; called exactly once per accepted submit.
    std::function<void(const SimCompletion&)> on_done{};
};

struct ContinuousEngineStats {
    std::uint64_t submitted = 0;
    std::uint64_t completed = 0;  ///< on_done calls
    std::uint64_t steps = 0;
    std::uint64_t step_sequences = 0;  ///< sum over steps of the sequences in the step
    std::size_t max_step_sequences = 0;
    std::size_t max_step_tokens = 0;
    double busy_ms = 0;  ///< simulated GPU time: the sum of the steps' durations
    llmfast::SchedulerStats scheduler{};
    [[nodiscard]] double mean_step_sequences() const noexcept {
        return steps ? static_cast<double>(step_sequences) / static_cast<double>(steps) : 0.0;
    }
};

/// A simulated timeline in real time: `time_scale` simulated ms per real ms since `origin`. The engine's
/// pacer is `sleep_until_ms`; callers stamp arrivals with `now_ms`.
struct RealTimePacer {
    std::chrono::steady_clock::time_point origin = std::chrono::steady_clock::now();
    double time_scale = 1.0;
    [[nodiscard]] double now_ms() const {
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - origin).count() * time_scale;
    }
    void sleep_until_ms(double ms) const {
        std::this_thread::sleep_until(origin + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                   std::chrono::duration<double, std::milli>(ms / time_scale)));
    }
};

class ContinuousEngine {
public:
    using Ticket = std::uint64_t;
    /// Empty: virtual time (no sleeping; drive with run_until_idle()).
    using SleepUntil = std::function<void(double sim_ms)>;

    ContinuousEngine(LatencyModel model, ContinuousEngineOptions options, SleepUntil sleep_until = {})
        : model_(model), sleep_until_(std::move(sleep_until)),
          scheduler_(clock_, [this](Scheduler::Batch batch) { step_batch(batch); }, scheduler_options(options),
                     hooks()) {
        model_.validate();
    }
    ContinuousEngine(const ContinuousEngine&) = delete;
    ContinuousEngine& operator=(const ContinuousEngine&) = delete;
    /// Runs every accepted request to its end, then joins the engine's thread. Without a driving thread,
    /// requests never run end with Closed (the scheduler's own destructor ends those it holds).
    ~ContinuousEngine() {
        stop();
        std::vector<std::shared_ptr<Job>> left;
        {
            std::lock_guard lock(mutex_);
            left.swap(intake_);
        }
        for (const auto& job : left) {
            job->completion.status = llmfast::ErrorCode::Closed;
            finish(*job);
        }
    }

    /// Accepts a request (any thread). Its callbacks run on the driving thread.
    Ticket submit(SimRequest request, SimCallbacks callbacks) {
        if (request.prompt_tokens == 0 || request.output_tokens == 0)
            throw llmfast::Error(llmfast::ErrorCode::InvalidArgument,
                                 "ContinuousEngine::submit: prompt_tokens and output_tokens must be >= 1");
        auto job = std::make_shared<Job>();
        job->request = request;
        job->callbacks = std::move(callbacks);
        job->completion.arrival_ms = request.arrival_ms;
        {
            std::lock_guard lock(mutex_);
            if (stopping_) throw llmfast::Error(llmfast::ErrorCode::Closed, "ContinuousEngine::submit: stopped");
            job->ticket = ++last_ticket_;
            intake_.push_back(job);
            ++submitted_;
        }
        cv_.notify_all();
        return job->ticket;
    }

    /// Ends the request with Cancelled at the next step (unknown or ended tickets are ignored).
    void cancel(Ticket ticket) {
        {
            std::lock_guard lock(mutex_);
            cancels_.insert(ticket);
        }
        cv_.notify_all();
    }

    /// Real-time mode: drives the engine on a thread of its own until stop().
    void start() {
        if (thread_.joinable() || !sleep_until_)
            throw llmfast::Error(llmfast::ErrorCode::InvalidArgument,
                                 "ContinuousEngine::start: already started, or no pacer (virtual time: run_until_idle)");
        thread_ = std::thread([this] { drive(true); });
    }
    /// Virtual time (or real time without start()): steps on this thread until nothing is left, including
    /// what callbacks submit meanwhile.
    void run_until_idle() { drive(false); }

    /// Stops intake, lets the engine finish every accepted request and joins its thread. Idempotent.
    void stop() {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        cv_.notify_all();
        if (thread_.joinable()) thread_.join();
    }

    [[nodiscard]] ContinuousEngineStats stats() const {
        std::lock_guard lock(mutex_);
        ContinuousEngineStats s = stats_;
        s.submitted = submitted_;
        s.scheduler = scheduler_.stats();
        return s;
    }
    /// The end of the last step on the engine's timeline (simulated ms).
    [[nodiscard]] double now_ms() const {
        std::lock_guard lock(mutex_);
        return now_ms_;
    }
    [[nodiscard]] const LatencyModel& model() const noexcept { return model_; }

private:
    struct Job {
        Ticket ticket = 0;
        SimRequest request;
        SimCallbacks callbacks;
        SimCompletion completion;
        llmfast::SequenceId sequence = 0;
    };
    struct Seq {
        std::shared_ptr<Job> job;
    };
    using Scheduler = llmfast::ContinuousScheduler<Seq, int, llmfast::SchedulerStepFunction<Seq, int>, llmfast::ManualClock>;

    static llmfast::SchedulerOptions scheduler_options(const ContinuousEngineOptions& o) {
        llmfast::SchedulerOptions s;
        s.max_num_seqs = o.max_num_seqs;
        s.max_num_batched_tokens = o.max_num_batched_tokens;
        s.max_prefill_chunk = o.max_prefill_chunk;
        s.kv_block_size = o.kv_block_size;
        if (o.kv_blocks > 0) s.kv_blocks = o.kv_blocks;
        s.priority_aging = std::chrono::nanoseconds::max();  // one priority: FIFO by arrival
        s.channel_capacity = 1 << 16;                         // drained after every step anyway
        return s;
    }

    llmfast::SchedulerHooks<Seq> hooks() {
        llmfast::SchedulerHooks<Seq> h;
        h.on_finish = [this](Seq& seq, const llmfast::SequenceResult& result) {
            Job& job = *seq.job;
            job.completion.status = result.status;
            job.completion.preemptions = result.preemptions;
            job.completion.done_ms = step_end_ms_;
            handles_.erase(job.sequence);
            finish(job);
        };
        return h;
    }

    static llmfast::ManualClock::time_point at(double ms) {
        return llmfast::ManualClock::time_point(std::chrono::duration_cast<llmfast::ManualClock::duration>(
            std::chrono::duration<double, std::milli>(ms)));
    }

    void finish(Job& job) {
        {
            std::lock_guard lock(mutex_);
            ++stats_.completed;
        }
        if (job.callbacks.on_done) job.callbacks.on_done(job.completion);
    }

    // One model iteration over the batch (the scheduler's step function, on the driving thread).
    void step_batch(Scheduler::Batch batch) {
        std::size_t prefill = 0, tokens = 0;
        for (const auto& item : batch) {
            prefill += item.prefill ? item.count : 0;
            tokens += item.count;
            Job& job = *item.seq().job;
            if (job.completion.admitted_ms < 0) job.completion.admitted_ms = step_start_ms_;
        }
        const double duration = model_.iteration_ms(batch.size(), prefill);
        step_end_ms_ = step_start_ms_ + duration;
        if (sleep_until_) sleep_until_(step_end_ms_);  // the tokens exist once the step is over
        clock_.set(at(step_end_ms_));
        {
            std::lock_guard lock(mutex_);
            ++stats_.steps;
            stats_.step_sequences += batch.size();
            stats_.max_step_sequences = std::max(stats_.max_step_sequences, batch.size());
            stats_.max_step_tokens = std::max(stats_.max_step_tokens, tokens);
            stats_.busy_ms += duration;
            now_ms_ = step_end_ms_;
        }
        for (auto& item : batch) {
            if (!item.samples) continue;
            Job& job = *item.seq().job;
            item.token = 0;
            if (job.completion.first_token_ms < 0) job.completion.first_token_ms = step_end_ms_;
            job.completion.last_token_ms = step_end_ms_;
            job.completion.generated = item.generated + 1;
            if (job.callbacks.on_token) job.callbacks.on_token(item.generated, step_end_ms_);
            item.finished = item.generated + 1 >= job.request.output_tokens;
        }
    }

    // Moves the requests that have arrived by `step_start_ms_` into the scheduler (in arrival order) and
    // applies cancellations. Returns false when there is nothing to do and nothing will come.
    bool admit(std::unique_lock<std::mutex>& lock, bool wait) {
        for (;;) {
            // Cancellations: a request still in the intake ends here; a running one at the next step.
            std::vector<std::shared_ptr<Job>> cancelled;
            if (!cancels_.empty()) {
                std::erase_if(intake_, [&](const std::shared_ptr<Job>& job) {
                    if (!cancels_.contains(job->ticket)) return false;
                    cancels_.erase(job->ticket);
                    cancelled.push_back(job);
                    return true;
                });
                for (const Ticket t : cancels_) {
                    const auto it = tickets_.find(t);
                    if (it != tickets_.end()) scheduler_.cancel(it->second);
                }
                cancels_.clear();
            }
            if (!cancelled.empty()) {
                lock.unlock();
                for (const auto& job : cancelled) {
                    job->completion.status = llmfast::ErrorCode::Cancelled;
                    job->completion.done_ms = step_start_ms_;
                    finish(*job);
                }
                lock.lock();
                continue;
            }
            const bool busy = scheduler_.pending() > 0;
            if (!intake_.empty()) {
                // By arrival, then submission order (tickets increase as requests are submitted). std::sort
                // with the tie-break rather than stable_sort: libstdc++'s stable_sort trips clang's
                // deprecation warning on get_temporary_buffer.
                std::sort(intake_.begin(), intake_.end(), [](const auto& a, const auto& b) {
                    if (a->request.arrival_ms != b->request.arrival_ms) return a->request.arrival_ms < b->request.arrival_ms;
                    return a->ticket < b->ticket;
                });
                // An idle GPU starts a step when the first request arrives.
                if (!busy) step_start_ms_ = std::max(step_start_ms_, intake_.front()->request.arrival_ms);
                clock_.set(at(step_start_ms_));
                std::size_t taken = 0;
                while (taken < intake_.size() && intake_[taken]->request.arrival_ms <= step_start_ms_) {
                    const std::shared_ptr<Job>& job = intake_[taken];
                    auto handle = scheduler_.submit(Seq{job}, job->request.prompt_tokens,
                                                    {.max_new_tokens = job->request.output_tokens});
                    job->sequence = handle.id();
                    tickets_[job->ticket] = handle.id();
                    handles_.emplace(handle.id(), std::move(handle));
                    ++taken;
                }
                intake_.erase(intake_.begin(), intake_.begin() + static_cast<std::ptrdiff_t>(taken));
                return true;
            }
            if (busy) return true;
            if (stopping_ || !wait) return false;
            cv_.wait(lock, [&] { return stopping_ || !intake_.empty() || !cancels_.empty(); });
        }
    }

    void drive(bool wait) {
        for (;;) {
            {
                std::unique_lock lock(mutex_);
                if (!admit(lock, wait)) return;
            }
            clock_.set(at(step_start_ms_));
            const llmfast::StepResult result = scheduler_.step();
            if (result.sequences > 0) step_start_ms_ = step_end_ms_;
            for (auto& [id, handle] : handles_)  // the tokens went out through on_token already
                while (handle.channel().try_pop()) {
                }
            {
                std::lock_guard lock(mutex_);
                for (auto it = tickets_.begin(); it != tickets_.end();)
                    it = handles_.contains(it->second) ? std::next(it) : tickets_.erase(it);
            }
            if (result.idle() && scheduler_.pending() > 0) std::this_thread::yield();
        }
    }

    LatencyModel model_;
    SleepUntil sleep_until_;
    llmfast::ManualClock clock_;  // the scheduler's clock: the engine's timeline
    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::vector<std::shared_ptr<Job>> intake_;
    std::unordered_set<Ticket> cancels_;
    std::unordered_map<Ticket, llmfast::SequenceId> tickets_;  // admitted, not ended
    Ticket last_ticket_ = 0;
    std::uint64_t submitted_ = 0;
    bool stopping_ = false;
    ContinuousEngineStats stats_{};
    double now_ms_ = 0;
    // Driving thread only:
    double step_start_ms_ = 0;
    double step_end_ms_ = 0;
    std::unordered_map<llmfast::SequenceId, Scheduler::Handle> handles_;
    Scheduler scheduler_;
    std::thread thread_;
};

}  // namespace examples
