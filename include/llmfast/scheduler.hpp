// llmfast/scheduler.hpp — ContinuousScheduler<Seq, Token>: iteration-level ("continuous") batching for
// code that drives a model one step at a time (llama.cpp / ggml, ONNX Runtime, TensorRT, a game's local
// model). New sequences join the running batch at the next step and finished ones leave at once, instead
// of a batch running until its longest answer is done (Orca; vLLM's scheduler with chunked prefill;
// Sarathi-Serve's stall-free batching).
//
// Each step the scheduler builds a batch and calls the user's step function once with it:
//   1. running sequences that decode go first (one token each), in rank order (below);
//   2. running sequences still in prefill get their next prefill chunk;
//   3. waiting sequences are admitted in rank order while a sequence slot (`max_num_seqs`), token budget
//      (`max_num_batched_tokens`, shared by decode tokens and prefill chunks) and the KV blocks for the
//      sequence's whole first chunk remain;
//      a prompt longer than the budget (or `max_prefill_chunk`) is split into chunks over several steps.
//   KV capacity is `kv_blocks` blocks of `kv_block_size` tokens; a sequence holds ceil(tokens in its KV
//   cache / kv_block_size) blocks. When a running sequence needs a block and none is free, the
//   lowest-ranked running sequence below it is preempted (capacity preemption). A waiting sequence that
//   ranks before a running one and has a strictly higher priority may preempt it when it cannot be
//   admitted otherwise (priority preemption). Preemption is by recompute (the KV cache is dropped, the sequence
//   is prefilled again from its prompt plus the tokens it generated) unless the `preempt` hook swaps it
//   out (`Preemption::Swap`: its KV is kept elsewhere, it resumes where it was).
//
// Rank and the no-starvation rule. A sequence's effective priority is priority + age / priority_aging
// (age = time since submit; aging off with max()), so sequences rank by their virtual submission time
//     submitted - priority * priority_aging          (earlier first; ties: submitted, then id)
// which is fixed at submit: two sequences never swap ranks over time (no preemption ping-pong). Hence:
//   - the top-ranked running sequence is never a victim of capacity preemption, so it progresses every
//     step (or ends with BudgetTooSmall when its context alone exceeds the whole KV capacity);
//   - admission is head-of-line in rank order: nothing ranked below a waiting sequence is admitted
//     before it;
//   - a sequence submitted d later with a priority higher by k ranks before an older one only if
//     d < k * priority_aging. So under a steady flood of higher-priority work a waiting sequence is
//     overtaken only by the finite set submitted less than k * priority_aging after it, and runs once
//     those (and the ones ahead of it) finish, provided running sequences finish (max_new_tokens or
//     the step function ends them);
//   - priority preemption needs a strictly higher priority and a better rank, and a sequence loses its
//     place to it at most `max_priority_preemptions` times; after that only capacity can preempt it.
//
//     struct Seq { std::vector<int> prompt; std::vector<int> generated; };   // the user's own state
//     llmfast::ContinuousScheduler<Seq, int> scheduler(
//         [&](std::span<llmfast::ScheduledSequence<Seq, int>> batch) {      // one model iteration
//             model.forward(batch);                  // item.begin / item.count: which context tokens to run
//             for (auto& item : batch)
//                 if (item.samples) { item.token = model.sample(item.seq()); item.finished = item.token == eos; }
//         },
//         {.max_num_seqs = 64, .max_num_batched_tokens = 2048, .kv_block_size = 16, .kv_blocks = 4096});
//     scheduler.start();                             // or call scheduler.run() / step() on your own thread
//     auto handle = scheduler.submit(Seq{prompt}, prompt.size(), {.priority = 1, .max_new_tokens = 256});
//     for (int token : handle.channel().stream()) send(token);   // each token as it is produced
//
// Exactly once: every accepted sequence ends exactly once — its channel is closed (Ok: `close()`; any
// other status: `close(Error(status))`), and the `on_finish` hook runs once with a SequenceResult whose
// status is Ok (finished: the step set `finished`, or max_new_tokens), Cancelled (stop token, the
// receiver cancelled the channel or dropped every copy of the handle, cancel(id), cancel_all()),
// DeadlineExceeded (waiting or running), HandlerFailed (the step function threw for its batch, set
// `error`, or broke its contract), BudgetTooSmall (its context outgrew the whole KV capacity) or Closed
// (the scheduler was destroyed with it still pending and no thread driving it). Cancellation and
// deadlines take effect at the start of the next step; the sequence's blocks are freed there.
// Backpressure: tokens are pushed with try_push; a sequence whose channel is full keeps its place but is
// not scheduled until the consumer drains it (no step ever blocks on a slow reader).
//
// Thread-safety: submit / try_submit / cancel / cancel_all / close / stats may be called from any number
// of threads at any time. step() and run() are driven by one thread at a time (the user's, or the one
// start() owns); a second concurrent driver gets Error(InvalidArgument). The step function and the hooks
// run on the driving thread without the scheduler's lock held (a hook may call submit / cancel, not
// step). The destructor closes intake, lets the owned thread (if any) drain every sequence, joins it, and
// ends whatever is still pending with Closed.
//
// Time: deadlines, aging and step times use the clock `C` (SteadyClock by default; ManualClock in tests,
// where the step function advances it). run()'s idle waits are bounded by `idle_poll` steady time
// whenever a sequence is pending, so deadlines on a ManualClock are still noticed.
//
// Errors (llmfast::Error codes):
//   constructor        InvalidArgument (an option out of range, named in the message)
//   submit             Closed (after close()), QueueFull (max_queue sequences waiting), InvalidArgument
//                      (prompt_tokens == 0, max_new_tokens == 0), BudgetTooSmall (the prompt alone needs
//                      more than kv_blocks blocks), DeadlineExceeded / Cancelled (already past its
//                      deadline / stop requested). Nothing is enqueued then and no hook runs.
//   try_submit         returns those codes instead of throwing.
//   step / run         InvalidArgument when another thread is already driving. Exceptions of the step
//                      function end its batch's sequences (HandlerFailed), they do not propagate;
//                      exceptions of hooks are counted in stats().hook_errors.
#pragma once

#include <llmfast/version.hpp>

#include <llmfast/clock.hpp>
#include <llmfast/error.hpp>
#include <llmfast/stream.hpp>
#include <llmfast/detail/saturating.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

LLMFAST_BEGIN_NAMESPACE

/// Identifies a submitted sequence (unique within one scheduler, increasing from 1).
using SequenceId = std::uint64_t;

/// Scheduler-wide settings, validated by the ContinuousScheduler constructor (InvalidArgument).
struct SchedulerOptions {
    std::size_t max_num_seqs = 256;             ///< >= 1; sequences running (admitted) at once
    std::size_t max_num_batched_tokens = 2048;  ///< >= max_num_seqs; tokens per step (decode + prefill)
    std::size_t max_prefill_chunk = 0;          ///< prefill tokens per sequence per step; 0 = the budget
    std::size_t kv_block_size = 16;             ///< >= 1; tokens per KV block (1 = count tokens)
    std::size_t kv_blocks = std::numeric_limits<std::size_t>::max() / 2;  ///< >= 1; total KV capacity
    std::size_t max_queue = 65536;              ///< >= 1; sequences waiting (submit: QueueFull beyond)
    /// Effective priority rises by 1 per this much age (see the file comment's rank rule); > 0;
    /// max() = no aging (strict priority, FIFO within a priority: low priorities can starve).
    std::chrono::nanoseconds priority_aging = std::chrono::seconds(1);
    /// Times a sequence may lose its place to priority preemption (capacity preemption is not capped).
    std::size_t max_priority_preemptions = 4;
    std::size_t channel_capacity = 4096;  ///< >= 1; tokens buffered per sequence's TokenChannel
    /// run(): while sequences are pending but nothing can be scheduled (full channels, a ManualClock
    /// deadline), re-check this often (steady time); > 0.
    std::chrono::nanoseconds idle_poll = std::chrono::milliseconds(1);
};

/// Per-sequence settings for submit. `C` is the scheduler's clock.
template <Clock C = SteadyClock>
struct SequenceOptions {
    int priority = 0;  ///< higher ranks first (see the file comment's rank rule for aging)
    /// The sequence must finish before this; otherwise it ends with DeadlineExceeded (waiting or running).
    typename C::time_point deadline = C::time_point::max();
    /// Alternative to `deadline`: now + timeout (the earlier of the two applies when both are set).
    std::optional<std::chrono::nanoseconds> timeout{};
    /// Ends the sequence with Cancelled at the next step once it fires.
    std::stop_token stop_token{};
    /// >= 1; the sequence ends (Ok, FinishReason::Length) after this many generated tokens.
    std::size_t max_new_tokens = std::numeric_limits<std::size_t>::max();
};

/// How a preempted sequence gave up its KV cache (the `preempt` hook's answer; Recompute without hook).
enum class Preemption : std::uint8_t {
    Recompute,  ///< the KV cache is dropped: the sequence is prefilled again from begin = 0
    Swap,       ///< the user kept the KV cache elsewhere: the sequence resumes at the same position
};

/// Why a sequence ended with status Ok.
enum class FinishReason : std::uint8_t {
    None,    ///< it did not finish (status is not Ok)
    Stop,    ///< the step function set `finished` (end-of-sequence token, stop string)
    Length,  ///< it generated max_new_tokens tokens
};

/// One entry of the batch the step function receives. The scheduler fills the inputs; the step function
/// sets the outputs for each entry and must not change the inputs.
template <class Seq, class Token>
struct ScheduledSequence {
    // ---- inputs ----
    SequenceId id = 0;
    /// The sequence's context is its prompt followed by the tokens it generated so far (`context` tokens
    /// in all). This step runs context tokens [begin, begin + count) through the model; the first `begin`
    /// tokens are in its KV cache. After a recompute preemption `begin` is 0 again and the generated tokens
    /// are part of the prefill: the step function keeps them in its Seq.
    std::size_t begin = 0;
    std::size_t count = 0;
    std::size_t context = 0;
    std::size_t prompt_tokens = 0;
    std::size_t generated = 0;  ///< tokens generated (and streamed) so far
    bool prefill = false;       ///< a prefill chunk (prompt, or a recompute); false for a decode token
    /// begin + count == context: the model must produce the next token for this entry (set `token`, or
    /// `finished` without a token).
    bool samples = false;

    // ---- outputs ----
    std::optional<Token> token{};  ///< the produced token; only when `samples`
    bool finished = false;         ///< the sequence is done (after `token`, if one is set)
    std::exception_ptr error{};    ///< set to end only this sequence with HandlerFailed

    [[nodiscard]] Seq& seq() const noexcept { return *seq_; }

    Seq* seq_ = nullptr;  // the scheduler's; use seq()
};

/// The step-function concept: one model iteration over the batch (a span the function may write the
/// outputs of). Its return value, if any, is ignored.
template <class F, class Seq, class Token>
concept SchedulerStep = std::invocable<F&, std::span<ScheduledSequence<Seq, Token>>>;

/// What on_finish receives when a sequence ends.
struct SequenceResult {
    SequenceId id = 0;
    ErrorCode status = ErrorCode::Ok;  ///< Ok, Cancelled, DeadlineExceeded, HandlerFailed, BudgetTooSmall, Closed
    FinishReason reason = FinishReason::None;
    std::size_t prompt_tokens = 0;
    std::size_t generated_tokens = 0;  ///< tokens produced (all were pushed to the channel if status is Ok)
    std::size_t preemptions = 0;       ///< times it was preempted (capacity and priority)
    std::exception_ptr error{};        ///< the exception the channel was closed with (null for Ok)
};

/// Optional callbacks; each may be empty. They run on the driving thread without the scheduler's lock.
template <class Seq>
struct SchedulerHooks {
    /// The sequence is being preempted: drop its KV cache (return Recompute) or save it (return Swap).
    std::function<Preemption(Seq&)> preempt{};
    /// A preempted sequence is about to run again (after a Swap: restore its KV cache). A throw ends the
    /// sequence with HandlerFailed.
    std::function<void(Seq&, Preemption)> resume{};
    /// The sequence ended (exactly once per accepted sequence). The Seq is the scheduler's until it returns.
    std::function<void(Seq&, const SequenceResult&)> on_finish{};
    /// Work arrived (a submit or a cancel) — for an event loop that calls step() when told, instead of
    /// run(). Called on the submitting thread, after the lock is released.
    std::function<void()> on_work{};
};

/// What step() did.
struct StepResult {
    std::size_t sequences = 0;  ///< entries in the batch handed to the step function (0: not called)
    std::size_t tokens = 0;     ///< tokens in that batch (decode + prefill)
    std::size_t ended = 0;      ///< sequences that ended during this step
    /// Nothing was scheduled and nothing ended.
    [[nodiscard]] bool idle() const noexcept { return sequences == 0 && ended == 0; }
};

/// A snapshot of the scheduler's counters (stats()); the gauges are as of the end of the last step.
struct SchedulerStats {
    std::size_t running = 0;    ///< admitted sequences (holding a slot), incl. stalled
    std::size_t waiting = 0;    ///< submitted and not admitted (incl. preempted, and submits not yet seen)
    std::size_t preempted = 0;  ///< of `waiting`, those preempted at least once
    std::size_t stalled = 0;    ///< sequences held back because their channel is full
    std::size_t kv_blocks_used = 0;
    std::size_t kv_blocks_total = 0;
    std::uint64_t submitted = 0;  ///< accepted by submit
    std::uint64_t rejected = 0;   ///< refused by submit (any code)
    std::uint64_t finished = 0;   ///< ended Ok
    std::uint64_t cancelled = 0;
    std::uint64_t expired = 0;         ///< ended DeadlineExceeded
    std::uint64_t failed = 0;          ///< ended HandlerFailed
    std::uint64_t too_large = 0;       ///< ended BudgetTooSmall
    std::uint64_t closed = 0;          ///< ended Closed
    std::uint64_t preemptions = 0;     ///< all preemptions
    std::uint64_t swaps = 0;           ///< of those, by Swap
    std::uint64_t priority_preemptions = 0;
    std::uint64_t steps = 0;           ///< step function calls
    std::uint64_t prefill_tokens = 0;  ///< tokens scheduled as prefill (incl. recompute)
    std::uint64_t decode_tokens = 0;
    std::uint64_t hook_errors = 0;
    std::size_t last_step_tokens = 0;
    std::size_t last_step_sequences = 0;
    std::size_t max_step_tokens = 0;
    std::chrono::nanoseconds last_step_time{0};  ///< the step function's duration by clock C
    std::chrono::nanoseconds max_step_time{0};
    std::chrono::nanoseconds total_step_time{0};

    [[nodiscard]] double kv_use() const noexcept {
        return kv_blocks_total ? static_cast<double>(kv_blocks_used) / static_cast<double>(kv_blocks_total) : 0.0;
    }
    [[nodiscard]] double mean_step_tokens() const noexcept {
        return steps ? static_cast<double>(prefill_tokens + decode_tokens) / static_cast<double>(steps) : 0.0;
    }
};

/// What submit returns: the sequence's id and its token channel (shared with the scheduler). Dropping
/// every copy of the handle while the sequence runs cancels it (the receiver went away).
template <class Token>
class SequenceHandle {
public:
    SequenceHandle() = default;
    SequenceHandle(SequenceId id, std::shared_ptr<TokenChannel<Token>> channel) noexcept
        : id_(id), channel_(std::move(channel)) {}

    [[nodiscard]] SequenceId id() const noexcept { return id_; }
    [[nodiscard]] bool valid() const noexcept { return channel_ != nullptr; }
    /// The tokens, in order; closed at the end (Ok) or closed with the sequence's Error.
    [[nodiscard]] TokenChannel<Token>& channel() const noexcept { return *channel_; }
    [[nodiscard]] const std::shared_ptr<TokenChannel<Token>>& shared_channel() const noexcept { return channel_; }
    /// The consumer is gone: the sequence ends with Cancelled at the next step.
    void cancel() const noexcept {
        if (channel_) channel_->cancel();
    }

private:
    SequenceId id_ = 0;
    std::shared_ptr<TokenChannel<Token>> channel_;
};

/// try_submit's result: status Ok and a valid handle, or the error and no handle.
template <class Token>
struct TrySubmitSequence {
    ErrorCode status = ErrorCode::Ok;
    SequenceHandle<Token> handle{};
    explicit operator bool() const noexcept { return status == ErrorCode::Ok; }
};

template <class Seq, class Token>
using SchedulerStepFunction = std::function<void(std::span<ScheduledSequence<Seq, Token>>)>;

/// Iteration-level batching over a user step function (see the file comment). Thread-safe for
/// submission, cancellation and stats; driven by one thread at a time.
template <class Seq, class Token = std::int32_t, class Step = SchedulerStepFunction<Seq, Token>, class C = SteadyClock>
class ContinuousScheduler {
    static_assert(Clock<C>, "llmfast::ContinuousScheduler<Seq, Token, Step, C>: C must model llmfast::Clock — it "
                            "needs now(), time_point and duration");
    static_assert(SchedulerStep<Step, Seq, Token>,
                  "llmfast::ContinuousScheduler<Seq, Token, Step>: Step must model llmfast::SchedulerStep — it needs "
                  "to be callable with std::span<llmfast::ScheduledSequence<Seq, Token>>");
    static_assert(std::is_move_constructible_v<Seq>, "llmfast::ContinuousScheduler<Seq>: Seq must be move-constructible");
    static_assert(std::movable<Token>, "llmfast::ContinuousScheduler<Seq, Token>: Token must be movable");

public:
    using Options = SchedulerOptions;
    using RequestOptions = SequenceOptions<C>;
    using Hooks = SchedulerHooks<Seq>;
    using Handle = SequenceHandle<Token>;
    using Batch = std::span<ScheduledSequence<Seq, Token>>;
    using clock_type = C;
    using time_point = typename C::time_point;

    explicit ContinuousScheduler(Step step, Options options = {}, Hooks hooks = {})
        requires ClockRef<C>::stateless
        : ContinuousScheduler(ClockRef<C>{}, std::move(step), options, std::move(hooks)) {}
    /// `clock` must outlive the scheduler.
    ContinuousScheduler(const C& clock, Step step, Options options = {}, Hooks hooks = {})
        : ContinuousScheduler(ClockRef<C>{clock}, std::move(step), options, std::move(hooks)) {}

    ContinuousScheduler(const ContinuousScheduler&) = delete;
    ContinuousScheduler& operator=(const ContinuousScheduler&) = delete;

    /// Closes intake; the owned thread (start()) drains every sequence and is joined; whatever is left
    /// (nobody drove the scheduler) ends with Closed.
    ~ContinuousScheduler() {
        close();
        if (thread_.joinable()) thread_.join();
        end_all_pending();
    }

    // ---- submission (any thread) ----

    /// Enqueues a sequence whose prompt is `prompt_tokens` tokens long. Throws (nothing enqueued):
    /// Closed, QueueFull, InvalidArgument, BudgetTooSmall, DeadlineExceeded, Cancelled.
    [[nodiscard]] Handle submit(Seq seq, std::size_t prompt_tokens, RequestOptions options = {}) {
        TrySubmitSequence<Token> result = try_submit(std::move(seq), prompt_tokens, std::move(options));
        if (!result) throw Error(result.status, submit_message(result.status, prompt_tokens, options));
        return std::move(result.handle);
    }

    /// As submit, but returns the status instead of throwing.
    [[nodiscard]] TrySubmitSequence<Token> try_submit(Seq seq, std::size_t prompt_tokens, RequestOptions options = {}) {
        const time_point now = clock_.now();
        time_point deadline = options.deadline;
        if (options.timeout) deadline = std::min(deadline, detail::deadline_after(now, *options.timeout));
        ErrorCode status = ErrorCode::Ok;
        if (prompt_tokens == 0 || options.max_new_tokens == 0) {
            status = ErrorCode::InvalidArgument;
        } else if (blocks_for(prompt_tokens) > options_.kv_blocks) {
            status = ErrorCode::BudgetTooSmall;
        } else if (options.stop_token.stop_requested()) {
            status = ErrorCode::Cancelled;
        } else if (deadline <= now) {
            status = ErrorCode::DeadlineExceeded;
        }
        std::unique_ptr<Entry> entry;
        if (status == ErrorCode::Ok) {
            entry = std::make_unique<Entry>();
            entry->seq.emplace(std::move(seq));
            entry->channel = std::make_shared<TokenChannel<Token>>(TokenChannelOptions{.capacity = options_.channel_capacity});
            entry->stop = std::move(options.stop_token);
            entry->submitted = now;
            entry->deadline = deadline;
            entry->priority = options.priority;
            entry->rank_key = rank_key_for(now, options.priority);
            entry->prompt_tokens = prompt_tokens;
            entry->context = prompt_tokens;
            entry->max_new_tokens = options.max_new_tokens;
        }
        Handle handle;
        bool wake = false;
        {
            std::lock_guard lock(mutex_);
            if (status == ErrorCode::Ok) {
                if (closed_) {
                    status = ErrorCode::Closed;
                } else if (published_.waiting + incoming_.size() >= options_.max_queue) {
                    status = ErrorCode::QueueFull;
                }
            }
            if (status != ErrorCode::Ok) {
                ++published_.rejected;
                return {status, {}};
            }
            entry->id = ++last_id_;
            handle = Handle(entry->id, entry->channel);
            incoming_.push_back(std::move(entry));
            ++published_.submitted;
            ++pending_;
            wake = idle_waiting_;
        }
        notify_work(wake);
        return {ErrorCode::Ok, std::move(handle)};
    }

    /// Ends the sequence with Cancelled at the next step (an unknown or ended id is ignored).
    void cancel(SequenceId id) {
        bool wake = false;
        {
            std::lock_guard lock(mutex_);
            cancels_.push_back(id);
            wake = idle_waiting_;
        }
        notify_work(wake);
    }

    /// Ends every sequence submitted so far with Cancelled at the next step.
    void cancel_all() {
        bool wake = false;
        {
            std::lock_guard lock(mutex_);
            cancel_all_up_to_ = last_id_;
            wake = idle_waiting_;
        }
        notify_work(wake);
    }

    /// Stops intake (later submits fail with Closed). Pending sequences still run to their end; run()
    /// returns once they have. Idempotent.
    void close() {
        bool wake = false;
        {
            std::lock_guard lock(mutex_);
            closed_ = true;
            wake = idle_waiting_;
        }
        notify_work(wake);
    }

    [[nodiscard]] bool closed() const {
        std::lock_guard lock(mutex_);
        return closed_;
    }

    /// Sequences accepted and not yet ended.
    [[nodiscard]] std::size_t pending() const {
        std::lock_guard lock(mutex_);
        return pending_;
    }

    [[nodiscard]] SchedulerStats stats() const {
        std::lock_guard lock(mutex_);
        SchedulerStats s = published_;
        s.waiting += incoming_.size();
        return s;
    }

    [[nodiscard]] const Options& options() const noexcept { return options_; }

    // ---- driving (one thread at a time) ----

    /// One scheduling iteration: ends cancelled / expired sequences, delivers held-back tokens, builds the
    /// batch (decodes first, then prefill chunks, then admissions), calls the step function once if the
    /// batch is not empty and applies its outputs. Never blocks except in the step function and hooks.
    StepResult step() {
        DriverGuard guard(this);
        return step_impl();
    }

    /// Calls step() until `stop` fires, or until close() was called and every sequence has ended. Waits
    /// (without spinning) while there is nothing to do.
    void run(std::stop_token stop = {}) {
        DriverGuard guard(this);
        while (!stop.stop_requested()) {
            const StepResult result = step_impl();
            if (!result.idle()) continue;
            std::unique_lock lock(mutex_);
            if (closed_ && pending_ == 0) return;
            if (!incoming_.empty() || !cancels_.empty() || cancel_all_up_to_ > cancel_all_seen_) continue;
            idle_waiting_ = true;
            const auto woken = [this] {
                return !incoming_.empty() || !cancels_.empty() || cancel_all_up_to_ > cancel_all_seen_ ||
                       (closed_ && pending_ == 0);
            };
            if (pending_ > 0) {
                work_cv_.wait_for(lock, stop, options_.idle_poll, woken);
            } else {
                work_cv_.wait(lock, stop, woken);
            }
            idle_waiting_ = false;
        }
    }

    /// Runs run() on a thread the scheduler owns (joined by the destructor after draining). Throws
    /// InvalidArgument if already started.
    void start() {
        if (thread_.joinable()) throw Error(ErrorCode::InvalidArgument, "ContinuousScheduler::start: already started");
        thread_ = std::jthread([this](std::stop_token stop) { run(stop); });
    }

private:
    enum class State : std::uint8_t { Waiting, Running, Draining, Done };

    struct Entry {
        SequenceId id = 0;
        std::optional<Seq> seq;
        std::shared_ptr<TokenChannel<Token>> channel;
        std::stop_token stop;
        time_point submitted{};
        time_point deadline{};
        int priority = 0;
        std::size_t prompt_tokens = 0;
        std::size_t max_new_tokens = 0;
        std::size_t context = 0;    // prompt + generated
        std::size_t generated = 0;  // tokens produced
        std::size_t computed = 0;   // context tokens in the KV cache
        std::size_t blocks = 0;     // KV blocks held
        std::size_t preemptions = 0;
        std::size_t priority_preemptions = 0;
        std::optional<Token> held;  // a produced token the full channel did not take yet
        FinishReason drain_reason = FinishReason::None;
        State state = State::Waiting;
        bool cancel_requested = false;
        bool needs_resume = false;
        std::optional<Preemption> resume_mode;
        std::int64_t rank_key = 0;  // fixed at submit: see rank_key_for
        // per step
        bool preempted_now = false;
        std::size_t sched_begin = 0;
        std::size_t sched_count = 0;  // 0: not scheduled this step
        bool sched_prefill = false;
    };

    struct DriverGuard {
        explicit DriverGuard(ContinuousScheduler* owner) : scheduler(owner) {
            if (scheduler->driving_.exchange(true, std::memory_order_acq_rel)) {
                throw Error(ErrorCode::InvalidArgument,
                            "ContinuousScheduler::step: another thread is already driving the scheduler");
            }
        }
        DriverGuard(const DriverGuard&) = delete;
        DriverGuard& operator=(const DriverGuard&) = delete;
        ~DriverGuard() { scheduler->driving_.store(false, std::memory_order_release); }
        ContinuousScheduler* scheduler;
    };

    ContinuousScheduler(ClockRef<C> clock, Step step, Options options, Hooks hooks)
        : clock_(clock), step_(std::move(step)), options_(options), hooks_(std::move(hooks)) {
        validate(options_);
        free_blocks_ = options_.kv_blocks;
        published_.kv_blocks_total = options_.kv_blocks;
    }

    static void validate(const Options& o) {
        const auto fail = [](const char* field, const char* rule, auto value) {
            throw Error(ErrorCode::InvalidArgument, fmt::format("SchedulerOptions::{} must be {} (got {})", field, rule, value));
        };
        if (o.max_num_seqs == 0) fail("max_num_seqs", ">= 1", o.max_num_seqs);
        if (o.max_num_batched_tokens < o.max_num_seqs) {
            throw Error(ErrorCode::InvalidArgument,
                        fmt::format("SchedulerOptions::max_num_batched_tokens must be >= max_num_seqs ({}) (got {})",
                                    o.max_num_seqs, o.max_num_batched_tokens));
        }
        if (o.kv_block_size == 0) fail("kv_block_size", ">= 1", o.kv_block_size);
        if (o.kv_blocks == 0) fail("kv_blocks", ">= 1", o.kv_blocks);
        if (o.max_queue == 0) fail("max_queue", ">= 1", o.max_queue);
        if (o.channel_capacity == 0) fail("channel_capacity", ">= 1", o.channel_capacity);
        if (o.priority_aging <= std::chrono::nanoseconds::zero()) fail("priority_aging", "> 0 ns", o.priority_aging.count());
        if (o.idle_poll <= std::chrono::nanoseconds::zero()) fail("idle_poll", "> 0 ns", o.idle_poll.count());
    }

    std::string submit_message(ErrorCode status, std::size_t prompt_tokens, const RequestOptions& options) const {
        switch (status) {
            case ErrorCode::InvalidArgument:
                return prompt_tokens == 0 ? std::string("ContinuousScheduler::submit: prompt_tokens must be >= 1 (got 0)")
                                          : fmt::format("ContinuousScheduler::submit: max_new_tokens must be >= 1 (got {})",
                                                        options.max_new_tokens);
            case ErrorCode::BudgetTooSmall:
                return fmt::format("ContinuousScheduler::submit: a prompt of {} tokens needs {} KV blocks, kv_blocks is {}",
                                   prompt_tokens, blocks_for(prompt_tokens), options_.kv_blocks);
            case ErrorCode::Closed: return "ContinuousScheduler::submit: the scheduler is closed";
            case ErrorCode::QueueFull:
                return fmt::format("ContinuousScheduler::submit: {} sequences are waiting (max_queue)", options_.max_queue);
            case ErrorCode::Cancelled: return "ContinuousScheduler::submit: the stop token was already requested";
            case ErrorCode::DeadlineExceeded: return "ContinuousScheduler::submit: the deadline has already passed";
            default: return fmt::format("ContinuousScheduler::submit: {}", to_string(status));
        }
    }

    /// After a change under the lock: wakes an idle run() (`wake`: it was waiting) and calls on_work.
    void notify_work(bool wake) {
        if (wake) work_cv_.notify_all();
        if (hooks_.on_work) {
            try {
                hooks_.on_work();
            } catch (...) {
                std::lock_guard lock(mutex_);
                ++hook_errors_pending_;
            }
        }
    }

    // ---- capacity arithmetic ----
    [[nodiscard]] std::size_t blocks_for(std::size_t tokens) const noexcept {
        return tokens / options_.kv_block_size + (tokens % options_.kv_block_size != 0 ? 1 : 0);
    }
    [[nodiscard]] std::size_t tokens_in(std::size_t blocks) const noexcept {
        if (blocks > std::numeric_limits<std::size_t>::max() / options_.kv_block_size) return std::numeric_limits<std::size_t>::max();
        return blocks * options_.kv_block_size;
    }
    /// Tokens beyond `e.computed` that fit in its blocks plus the free ones.
    [[nodiscard]] std::size_t room(const Entry& e) const noexcept {
        const std::size_t cap = tokens_in(e.blocks + free_blocks_);
        return cap > e.computed ? cap - e.computed : 0;
    }
    void take_blocks(Entry& e, std::size_t upto_tokens) noexcept {
        const std::size_t need = blocks_for(upto_tokens);
        if (need > e.blocks) {
            free_blocks_ -= need - e.blocks;
            e.blocks = need;
        }
    }
    void release_blocks(Entry& e) noexcept {
        free_blocks_ += e.blocks;
        e.blocks = 0;
    }

    // ---- ranking ----
    [[nodiscard]] static bool ranks_before(const Entry* a, const Entry* b) noexcept {
        if (a->rank_key != b->rank_key) return a->rank_key < b->rank_key;
        if (a->submitted != b->submitted) return a->submitted < b->submitted;
        return a->id < b->id;
    }
    /// The virtual submission time `submitted - priority * priority_aging` in ns (saturated), smaller
    /// first; without aging, `-priority`. Fixed for the sequence's life, so ranks never change over time.
    [[nodiscard]] std::int64_t rank_key_for(time_point submitted, int priority) const noexcept {
        if (options_.priority_aging == std::chrono::nanoseconds::max()) return -static_cast<std::int64_t>(priority);
        constexpr std::int64_t max = std::numeric_limits<std::int64_t>::max();
        constexpr std::int64_t min = std::numeric_limits<std::int64_t>::min();
        const std::int64_t at = std::chrono::duration_cast<std::chrono::nanoseconds>(submitted.time_since_epoch()).count();
        const std::int64_t aging = options_.priority_aging.count();
        const std::int64_t p = priority;
        const std::int64_t magnitude = p < 0 ? -p : p;  // p is an int: no overflow
        const std::int64_t product = magnitude != 0 && aging > max / magnitude ? max : magnitude * aging;
        const std::int64_t shift = p < 0 ? -product : product;  // p * aging, saturated
        if (shift > 0 && at < min + shift) return min;
        if (shift < 0 && at > max + shift) return max;
        return at - shift;
    }

    // ---- ending ----
    void end(Entry& e, ErrorCode status, FinishReason reason, std::exception_ptr error, std::string_view message = {}) {
        if (e.state == State::Done) return;
        if (status != ErrorCode::Ok && !error) {
            error = std::make_exception_ptr(Error(status, message.empty() ? default_message(status) : message));
        }
        release_blocks(e);
        e.state = State::Done;
        e.held.reset();
        if (status == ErrorCode::Ok) {
            e.channel->close();
        } else {
            e.channel->close(error);
        }
        switch (status) {
            case ErrorCode::Ok: ++counters_.finished; break;
            case ErrorCode::Cancelled: ++counters_.cancelled; break;
            case ErrorCode::DeadlineExceeded: ++counters_.expired; break;
            case ErrorCode::HandlerFailed: ++counters_.failed; break;
            case ErrorCode::BudgetTooSmall: ++counters_.too_large; break;
            default: ++counters_.closed; break;
        }
        ++ended_this_step_;
        if (hooks_.on_finish) {
            const SequenceResult result{e.id, status, reason, e.prompt_tokens, e.generated, e.preemptions, error};
            try {
                hooks_.on_finish(*e.seq, result);
            } catch (...) {
                ++counters_.hook_errors;
            }
        }
        ended_ids_.push_back(e.id);
    }

    static std::string_view default_message(ErrorCode status) noexcept {
        switch (status) {
            case ErrorCode::Cancelled: return "ContinuousScheduler: the sequence was cancelled";
            case ErrorCode::DeadlineExceeded: return "ContinuousScheduler: the sequence's deadline passed";
            case ErrorCode::HandlerFailed: return "ContinuousScheduler: the step function failed for this sequence";
            case ErrorCode::BudgetTooSmall: return "ContinuousScheduler: the sequence's context outgrew the whole KV capacity";
            case ErrorCode::Closed: return "ContinuousScheduler: the scheduler was destroyed before the sequence ended";
            default: return "ContinuousScheduler: the sequence ended";
        }
    }

    /// Tries to push the held token. Returns false if the sequence ended (receiver cancelled).
    bool deliver_held(Entry& e) {
        if (!e.held) return true;
        const StreamStatus status = e.channel->try_push(std::move(*e.held));
        if (status == StreamStatus::Ok) {
            e.held.reset();
            return true;
        }
        if (status == StreamStatus::Timeout) return true;  // still full: stays held
        end(e, ErrorCode::Cancelled, FinishReason::None, nullptr);
        return false;
    }

    // ---- preemption ----
    void unschedule(Entry& e, std::size_t& budget) noexcept {
        budget += e.sched_count;
        e.sched_count = 0;
    }

    void preempt(Entry& e, std::size_t& budget, bool by_priority) {
        unschedule(e, budget);
        release_blocks(e);
        Preemption mode = Preemption::Recompute;
        if (hooks_.preempt) {
            try {
                mode = hooks_.preempt(*e.seq);
            } catch (...) {
                ++counters_.hook_errors;
                mode = Preemption::Recompute;
            }
        }
        if (mode == Preemption::Recompute) {
            e.computed = 0;
        } else {
            ++counters_.swaps;
        }
        e.needs_resume = true;
        e.resume_mode = mode;
        ++e.preemptions;
        ++counters_.preemptions;
        if (by_priority) {
            ++e.priority_preemptions;
            ++counters_.priority_preemptions;
        }
        e.state = State::Waiting;
        e.preempted_now = true;
        --running_count_;
        waiting_.push_back(&e);
    }

    /// The lowest-ranked running entry ranked below `r` (running_ is sorted for this step; entries
    /// admitted this step sit at its end and rank lowest), or null.
    Entry* capacity_victim(const Entry& r) {
        for (auto it = running_.rbegin(); it != running_.rend(); ++it) {
            Entry* v = *it;
            if (v == &r) return nullptr;
            if (v->state == State::Running) return v;
        }
        return nullptr;
    }

    /// The running entry the waiting `w` may preempt by priority: the lowest-ranked one that ranks below
    /// `w`, has a strictly lower priority and is under its cap. Only the part of running_ sorted at the start of
    /// the step is searched (sequences admitted during it ranked above `w`).
    Entry* priority_victim(const Entry& w) {
        for (std::size_t i = sorted_running_; i-- > 0;) {
            Entry* v = running_[i];
            if (v->state != State::Running) continue;
            if (!ranks_before(&w, v)) return nullptr;  // sorted: everything further up ranks before w too
            if (v->priority < w.priority && v->priority_preemptions < options_.max_priority_preemptions) return v;
        }
        return nullptr;
    }

    [[nodiscard]] bool sequence_cannot_fit(const Entry& e) const noexcept {
        return tokens_in(options_.kv_blocks) < e.computed + 1;
    }

    void schedule(Entry& e, std::size_t count, bool prefill, std::size_t& budget) {
        take_blocks(e, e.computed + count);
        e.sched_begin = e.computed;
        e.sched_count = count;
        e.sched_prefill = prefill;
        budget -= count;
        order_.push_back(&e);
    }

    [[nodiscard]] bool cancelled(const Entry& e) const noexcept {
        return e.cancel_requested || e.id <= cancel_all_seen_ || e.stop.stop_requested() || e.channel->stop_requested() ||
               e.channel.use_count() <= 1;
    }

    /// Ends cancelled / expired entries, delivers held tokens, completes drained ones. Returns whether
    /// the entry is still live.
    bool check_live(Entry& e, time_point now) {
        if (e.state == State::Done) return false;
        if (cancelled(e)) {
            end(e, ErrorCode::Cancelled, FinishReason::None, nullptr);
            return false;
        }
        if (e.deadline <= now) {
            end(e, ErrorCode::DeadlineExceeded, FinishReason::None, nullptr);
            return false;
        }
        if (!deliver_held(e)) return false;
        if (e.state == State::Draining && !e.held) {
            end(e, ErrorCode::Ok, e.drain_reason, nullptr);
            return false;
        }
        return true;
    }

    void drain_incoming() {
        std::vector<SequenceId> cancels;
        {
            std::lock_guard lock(mutex_);
            for (auto& entry : incoming_) {
                Entry* e = entry.get();
                entries_.emplace(e->id, std::move(entry));
                waiting_.push_back(e);
            }
            incoming_.clear();
            cancels.swap(cancels_);
            cancel_all_seen_ = cancel_all_up_to_;
            counters_.hook_errors += hook_errors_pending_;
            hook_errors_pending_ = 0;
        }
        for (SequenceId id : cancels) {
            if (auto it = entries_.find(id); it != entries_.end()) it->second->cancel_requested = true;
        }
    }

    StepResult step_impl() {
        ended_this_step_ = 0;
        ended_ids_.clear();
        drain_incoming();
        const time_point now = clock_.now();

        // 1. Cancellation, deadlines, held-back tokens.
        for (Entry* e : running_) check_live(*e, now);
        for (Entry* e : waiting_) check_live(*e, now);
        for (Entry* e : draining_) check_live(*e, now);
        std::erase_if(running_, [](const Entry* e) { return e->state != State::Running; });
        running_count_ = running_.size();
        std::erase_if(waiting_, [](const Entry* e) { return e->state != State::Waiting; });
        std::erase_if(draining_, [](const Entry* e) { return e->state != State::Draining; });

        // 2. Rank.
        for (Entry* e : running_) {
            e->sched_count = 0;
            e->preempted_now = false;
        }
        for (Entry* e : waiting_) {
            e->sched_count = 0;
            e->preempted_now = false;
        }
        std::sort(running_.begin(), running_.end(), ranks_before);
        std::sort(waiting_.begin(), waiting_.end(), ranks_before);
        sorted_running_ = running_.size();

        order_.clear();
        std::size_t budget = options_.max_num_batched_tokens;

        // 3a. Decodes first, in rank order.
        for (std::size_t i = 0; i < running_.size() && budget > 0; ++i) {
            Entry& r = *running_[i];
            if (r.state != State::Running || r.held || !is_decode(r)) continue;
            if (blocks_for(r.computed + 1) > r.blocks) {
                while (free_blocks_ == 0) {
                    Entry* v = capacity_victim(r);
                    if (!v) break;
                    preempt(*v, budget, false);
                }
                if (free_blocks_ == 0) {
                    if (sequence_cannot_fit(r)) end(r, ErrorCode::BudgetTooSmall, FinishReason::None, nullptr);
                    continue;  // waits for the higher-ranked sequences holding the capacity
                }
            }
            schedule(r, 1, false, budget);
        }
        // 3b. Prefill chunks of running sequences, in rank order.
        for (std::size_t i = 0; i < running_.size() && budget > 0; ++i) {
            Entry& r = *running_[i];
            if (r.state != State::Running || r.held || r.sched_count > 0 || is_decode(r)) continue;
            std::size_t chunk = chunk_for(r, budget);
            while (std::min(chunk, room(r)) == 0) {
                Entry* v = capacity_victim(r);
                if (!v) break;
                preempt(*v, budget, false);
                chunk = chunk_for(r, budget);
            }
            chunk = std::min(chunk, room(r));
            if (chunk == 0) {
                if (sequence_cannot_fit(r)) end(r, ErrorCode::BudgetTooSmall, FinishReason::None, nullptr);
                continue;
            }
            schedule(r, chunk, true, budget);
        }
        // 3c. Admissions in rank order (head of line), with priority preemption.
        for (std::size_t i = 0; i < waiting_.size() && budget > 0; ++i) {
            Entry& w = *waiting_[i];
            if (w.state != State::Waiting || w.preempted_now) continue;
            if (w.held) continue;  // a preempted sequence whose reader is behind
            if (sequence_cannot_fit(w)) {  // swapped out at the very end of the KV capacity
                end(w, ErrorCode::BudgetTooSmall, FinishReason::None, nullptr);
                continue;
            }
            // `w` needs a slot and the blocks for its whole chunk (as vLLM: a prompt is not admitted with
            // a chunk cut to the free capacity, which would only be preempted again). The chunk is capped
            // at the KV capacity, so a context bigger than all of it still gets in (and ends BudgetTooSmall).
            const auto admission_chunk = [&] {
                return std::min(chunk_for(w, budget), tokens_in(options_.kv_blocks) - w.computed);
            };
            const auto admissible = [&] {
                return running_count_ < options_.max_num_seqs && budget > 0 &&
                       blocks_for(w.computed + admission_chunk()) <= w.blocks + free_blocks_;
            };
            bool fits = admissible();
            while (!fits) {
                Entry* v = priority_victim(w);
                if (!v) break;
                preempt(*v, budget, true);
                fits = admissible();
            }
            if (!fits) break;
            if (w.needs_resume) {
                w.needs_resume = false;
                if (hooks_.resume) {
                    try {
                        hooks_.resume(*w.seq, *w.resume_mode);
                    } catch (...) {
                        end(w, ErrorCode::HandlerFailed, FinishReason::None, std::current_exception());
                        continue;
                    }
                }
            }
            const std::size_t chunk = admission_chunk();
            w.state = State::Running;
            ++running_count_;
            running_.push_back(&w);
            schedule(w, chunk, !is_decode(w), budget);
        }
        std::erase_if(waiting_, [](const Entry* e) { return e->state != State::Waiting; });

        // 4. The step.
        batch_.clear();
        std::size_t batch_tokens = 0;
        for (Entry* e : order_) {
            if (e->state != State::Running || e->sched_count == 0) continue;
            ScheduledSequence<Seq, Token>& item = batch_.emplace_back();
            item.id = e->id;
            item.begin = e->sched_begin;
            item.count = e->sched_count;
            item.context = e->context;
            item.prompt_tokens = e->prompt_tokens;
            item.generated = e->generated;
            item.prefill = e->sched_prefill;
            item.samples = e->sched_begin + e->sched_count == e->context;
            item.seq_ = &*e->seq;
            batch_tokens += e->sched_count;
            if (e->sched_prefill) {
                counters_.prefill_tokens += e->sched_count;
            } else {
                counters_.decode_tokens += e->sched_count;
            }
        }
        std::size_t entries_index = 0;
        if (!batch_.empty()) {
            const time_point started = clock_.now();
            std::exception_ptr failure;
            try {
                std::invoke(step_, Batch(batch_.data(), batch_.size()));
            } catch (...) {
                failure = std::current_exception();
            }
            const auto took = std::chrono::duration_cast<std::chrono::nanoseconds>(clock_.now() - started);
            ++counters_.steps;
            counters_.last_step_time = took;
            counters_.max_step_time = std::max(counters_.max_step_time, took);
            counters_.total_step_time += took;
            counters_.last_step_tokens = batch_tokens;
            counters_.last_step_sequences = batch_.size();
            counters_.max_step_tokens = std::max(counters_.max_step_tokens, batch_tokens);
            if (failure) {
                const std::exception_ptr error = wrap_step_error(failure);
                for (Entry* e : order_) {
                    if (e->state == State::Running && e->sched_count > 0) end(*e, ErrorCode::HandlerFailed, FinishReason::None, error);
                }
            } else {
                for (Entry* e : order_) {
                    if (e->state != State::Running || e->sched_count == 0) continue;
                    apply(*e, batch_[entries_index++]);
                }
            }
        }
        const std::size_t scheduled_tokens = batch_tokens;
        const std::size_t scheduled = batch_.size();
        batch_.clear();

        // 5. Tidy and publish.
        std::erase_if(running_, [](const Entry* e) { return e->state != State::Running; });
        running_count_ = running_.size();
        for (SequenceId id : ended_ids_) entries_.erase(id);
        publish();
        return {scheduled, scheduled_tokens, ended_this_step_};
    }

    [[nodiscard]] static bool is_decode(const Entry& e) noexcept { return e.generated > 0 && e.context - e.computed == 1; }

    [[nodiscard]] std::size_t chunk_for(const Entry& e, std::size_t budget) const noexcept {
        std::size_t chunk = std::min(e.context - e.computed, budget);
        if (options_.max_prefill_chunk > 0 && !is_decode(e)) chunk = std::min(chunk, options_.max_prefill_chunk);
        return chunk;
    }

    static std::exception_ptr wrap_step_error(std::exception_ptr failure) {
        try {
            std::rethrow_exception(failure);
        } catch (const Error& e) {
            if (e.code() == ErrorCode::HandlerFailed) return failure;
            return std::make_exception_ptr(Error(ErrorCode::HandlerFailed, fmt::format("ContinuousScheduler::step: the step function threw: {}", e.what())));
        } catch (const std::exception& e) {
            return std::make_exception_ptr(Error(ErrorCode::HandlerFailed, fmt::format("ContinuousScheduler::step: the step function threw: {}", e.what())));
        } catch (...) {
            return std::make_exception_ptr(Error(ErrorCode::HandlerFailed, "ContinuousScheduler::step: the step function threw a non-std exception"));
        }
    }

    void apply(Entry& e, ScheduledSequence<Seq, Token>& item) {
        e.computed = e.sched_begin + e.sched_count;
        if (item.error) {
            end(e, ErrorCode::HandlerFailed, FinishReason::None, wrap_step_error(item.error));
            return;
        }
        if (item.token) {
            if (!item.samples) {
                end(e, ErrorCode::HandlerFailed, FinishReason::None, nullptr,
                    fmt::format("ContinuousScheduler::step: the step function set a token for sequence {} on a prefill chunk "
                                "that does not sample (begin {} + count {} < context {})",
                                e.id, item.begin, item.count, item.context));
                return;
            }
            ++e.generated;
            ++e.context;
            e.held.emplace(std::move(*item.token));
            if (!deliver_held(e)) return;
            FinishReason reason = FinishReason::None;
            if (item.finished) {
                reason = FinishReason::Stop;
            } else if (e.generated >= e.max_new_tokens) {
                reason = FinishReason::Length;
            }
            if (reason != FinishReason::None) finish(e, reason);
            return;
        }
        if (item.finished) {
            finish(e, FinishReason::Stop);
            return;
        }
        if (item.samples) {
            end(e, ErrorCode::HandlerFailed, FinishReason::None, nullptr,
                fmt::format("ContinuousScheduler::step: the step function produced no token for sequence {}, which had to "
                            "sample (set token, or finished)",
                            e.id));
        }
    }

    void finish(Entry& e, FinishReason reason) {
        if (!e.held) {
            end(e, ErrorCode::Ok, reason, nullptr);
            return;
        }
        // The channel is full: the model is done with it, the reader is not.
        release_blocks(e);
        e.state = State::Draining;
        e.drain_reason = reason;
        draining_.push_back(&e);
    }

    void publish() {
        SchedulerStats s = counters_;
        s.running = running_count_;
        s.waiting = waiting_.size();
        s.preempted = static_cast<std::size_t>(std::count_if(waiting_.begin(), waiting_.end(), [](const Entry* e) { return e->preemptions > 0; }));
        s.stalled = draining_.size() + static_cast<std::size_t>(std::count_if(running_.begin(), running_.end(), [](const Entry* e) { return e->held.has_value(); }));
        s.kv_blocks_total = options_.kv_blocks;
        s.kv_blocks_used = options_.kv_blocks - free_blocks_;
        std::lock_guard lock(mutex_);
        s.submitted = published_.submitted;
        s.rejected = published_.rejected;
        s.hook_errors += hook_errors_pending_;
        published_ = s;
        pending_ -= ended_this_step_;
    }

    void end_all_pending() {
        ended_this_step_ = 0;
        drain_incoming();
        for (auto& [id, entry] : entries_) {
            (void)id;
            end(*entry, ErrorCode::Closed, FinishReason::None, nullptr);
        }
        running_.clear();
        waiting_.clear();
        draining_.clear();
        running_count_ = 0;
        entries_.clear();
        publish();
    }

    ClockRef<C> clock_;
    Step step_;
    Options options_;
    Hooks hooks_;

    // Shared with submitters (mutex_).
    mutable std::mutex mutex_;
    std::condition_variable_any work_cv_;
    std::vector<std::unique_ptr<Entry>> incoming_;
    std::vector<SequenceId> cancels_;
    SequenceId last_id_ = 0;
    SequenceId cancel_all_up_to_ = 0;
    std::size_t pending_ = 0;
    std::uint64_t hook_errors_pending_ = 0;
    bool closed_ = false;
    bool idle_waiting_ = false;
    SchedulerStats published_;

    // The driver's (no lock).
    std::atomic<bool> driving_{false};
    SequenceId cancel_all_seen_ = 0;  // written by the driver under mutex_, read by it without
    std::unordered_map<SequenceId, std::unique_ptr<Entry>> entries_;
    std::vector<Entry*> running_;
    std::vector<Entry*> waiting_;
    std::vector<Entry*> draining_;
    std::vector<Entry*> order_;
    std::vector<ScheduledSequence<Seq, Token>> batch_;
    std::vector<SequenceId> ended_ids_;
    std::size_t running_count_ = 0;
    std::size_t sorted_running_ = 0;
    std::size_t free_blocks_ = 0;
    std::size_t ended_this_step_ = 0;
    SchedulerStats counters_;

    std::jthread thread_;  // last: joined first
};

LLMFAST_END_NAMESPACE
