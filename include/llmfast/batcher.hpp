// llmfast/batcher.hpp — DynamicBatcher<Req, Resp>: groups concurrent requests into batches for a backend
// that is cheaper per item in bulk (an LLM server, an embedding model), the way Triton's dynamic batcher,
// TF Serving's BasicBatchScheduler or Ray Serve's @serve.batch do, as a header-only template.
//
// A batch is dispatched as soon as a worker is free and any of these holds: it has `max_batch_size`
// requests; their summed cost (a user cost function, e.g. prompt tokens; 1 per request by default) reached
// `max_batch_cost`; the oldest queued request has waited `max_wait` (0 = "whatever is queued, now"); the
// batcher is closing. A single request costlier than `max_batch_cost` goes alone. Higher priority levels are
// served first, FIFO within a level. Requests whose deadline passes or whose stop token fires while queued
// never reach the handler. `workers` threads (owned by the batcher, started in the constructor) run the
// handler, so at most `workers` batches run at once and a busy backend lets the next batch grow.
//
//     llmfast::DynamicBatcher<std::string, std::string> batcher(
//         [](std::span<std::string> prompts) {            // one response per request, in order
//             std::vector<std::string> out;
//             for (auto& p : prompts) out.push_back(model.generate(p));
//             return out;
//         },
//         {.max_batch_size = 32, .max_wait = std::chrono::milliseconds(5)});
//     std::future<std::string> reply = batcher.submit("hello", {.timeout = std::chrono::seconds(2)});
//     batcher.submit("hi", {.priority = 1}, [](llmfast::BatchResult<std::string>&& r) {   // no shared state
//         if (r.ok()) use(r.value()); else log(r.error());
//     });
//
// Guarantee: every accepted request completes exactly once — its future becomes ready / its callback runs
// once, with a response or an error — including when the handler throws, returns the wrong number of
// responses, and at close(). A rejected submission (an exception thrown by submit, a non-Ok status from
// try_submit) never invokes the callback.
//
// Thread-safety: submit / try_submit / stats / close may be called from any number of threads (but,
// as for any object, no call may still be running when the destructor starts).
// The handler is called from the worker threads: with `workers > 1` it runs concurrently with itself.
// Callbacks run on a worker thread after the handler returns (those of one batch in no particular
// order); keep them short and non-throwing (an exception a callback throws is swallowed and counted in
// `BatcherStats::callback_errors`). A callback may submit and may call close(), but must not destroy
// the batcher. Cancellation is noticed at once when a worker is idle, otherwise when the next batch is
// formed; a request that was dispatched runs to completion. A submit blocked on a full queue
// (`block_when_full_for`) returns at the earliest of: room in the queue, block_when_full_for, the
// request's deadline / timeout, its stop token, close().
//
// Event loops (no thread blocked): use the callback form. With `block_when_full_for == 0` (the
// default) `submit` / `try_submit` never wait (a full queue is QueueFull at once); only the cost
// function runs on the submitting thread. The callback is never invoked on the submitting thread,
// nor on the thread that requests a stop: it always runs on one of the batcher's worker threads,
// after the batch (or when the request is dropped), outside the batcher's lock — post the result to
// your executor from it. To cancel a queued request (the client disconnected), give it a
// `SubmitOptions::stop_token` from a `std::stop_source` of its own and `request_stop()`: the callback
// then runs once with Cancelled (an idle worker completes it at once; a busy one when it forms the
// next batch) and the request never reaches the handler; once dispatched it runs to completion and
// the callback gets its response. The reasons stay distinct for the caller: QueueFull / Closed from
// try_submit (nothing enqueued, no callback), DeadlineExceeded / Cancelled / HandlerFailed in the
// BatchResult. `close()` and the destructor block until drained: not on an event-loop thread.
//
//     std::stop_source client;   // request_stop() when the connection closes
//     auto status = batcher.try_submit(std::move(prompt), {.timeout = 2s, .stop_token = client.get_token()},
//         [&strand, session](llmfast::BatchResult<std::string>&& r) {   // on a worker thread
//             post(strand, [session, r = std::move(r)]() mutable { session->reply(std::move(r)); });
//         });
//     if (status == llmfast::ErrorCode::QueueFull) reply_429();
//
// Time: deadlines, max_wait and the queue-wait figures use the clock `C` (llmfast::SteadyClock by
// default), held as a `ClockRef<C>`; inject one as the first constructor argument, the others keep
// their defaults: `DynamicBatcher<Req, Resp, Handler, ManualClock> b(clock, handler);`. With a clock
// other than steady_clock (llmfast::ManualClock in tests) the idle workers, and a submit blocked on a
// full queue whose request has a deadline, re-read it every 200 µs. `now + timeout` saturates at the
// clock's limits both ways (a huge timeout never expires, a hugely negative one has already passed);
// summed costs never overflow (any cost up to SIZE_MAX).
// Hot path: the callback form allocates nothing per request once the queue has grown (a ring buffer,
// the callback stored inline up to 48 bytes; a stop token that can fire costs one allocation). The future
// form pays for std::promise (an allocation, and in libstdc++ a futex syscall to set the value).
//
// Errors (llmfast::Error codes):
//   constructor                  InvalidArgument (a BatcherOptions field out of range; the message names it)
//   submit (both forms)          throws QueueFull (queue at max_queue, not blocking or block_when_full_for
//                                ran out), Closed (close() was called, also while blocked), InvalidArgument
//                                (priority out of range), DeadlineExceeded / Cancelled (deadline passed /
//                                stop requested, before the call or while it blocked on a full queue);
//                                exceptions of the cost function propagate. Nothing is enqueued then.
//   try_submit                   returns those codes instead of throwing (ErrorCode::Ok on success).
//   the future / BatchResult     DeadlineExceeded (deadline passed while queued), Cancelled (stop token
//                                fired while queued), HandlerFailed (the handler threw — the message carries
//                                its what() — or returned a wrong number of responses).
#pragma once

#include <llmfast/version.hpp>

#include <llmfast/batch_handler.hpp>
#include <llmfast/clock.hpp>
#include <llmfast/detail/inplace_function.hpp>
#include <llmfast/detail/percentile.hpp>
#include <llmfast/detail/ring_buffer.hpp>
#include <llmfast/detail/saturating.hpp>
#include <llmfast/error.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/prctl.h>
#endif

#if defined(__GNUC__)
#define LLMFAST_BATCHER_COLD [[gnu::cold, gnu::noinline]]
#else
#define LLMFAST_BATCHER_COLD
#endif

LLMFAST_BEGIN_NAMESPACE

/// The default handler type: any callable `std::vector<Resp>(std::span<Req>)`.
template <class Req, class Resp>
using BatchFunction = std::function<std::vector<Resp>(std::span<Req>)>;

/// Batcher-wide settings. Validated by the DynamicBatcher constructor (InvalidArgument).
struct BatcherOptions {
    std::size_t max_batch_size = 32;                                      ///< >= 1
    std::size_t max_batch_cost = std::numeric_limits<std::size_t>::max();  ///< >= 1; summed request cost
    std::chrono::nanoseconds max_wait = std::chrono::milliseconds(5);     ///< >= 0; 0 = dispatch at once
    std::size_t max_queue = 65536;                                        ///< >= 1; requests waiting
    std::size_t workers = 1;                                              ///< >= 1; batches running at once
    std::size_t priority_levels = 4;                                      ///< 1..64; priorities 0..levels-1
    /// When the queue is full, submit blocks up to this long for room before failing with QueueFull.
    /// 0 (the default): fail at once; nanoseconds::max(): no limit of its own. Measured on
    /// std::chrono::steady_clock whatever the batcher's Clock. The request's own deadline / timeout
    /// (DeadlineExceeded), its stop token (Cancelled) and close() (Closed) end the wait earlier.
    std::chrono::nanoseconds block_when_full_for = std::chrono::nanoseconds::zero();
};

/// Per-request settings (`DynamicBatcher::RequestOptions`). `C` is the batcher's clock.
template <class C = SteadyClock>
struct SubmitOptions {
    static_assert(Clock<C>, "llmfast::SubmitOptions<C>: C must model llmfast::Clock — it needs nested types "
                            "`duration` and `time_point` and a const `now()` returning a time_point");
    /// The request must be dispatched before this; otherwise it completes with DeadlineExceeded.
    typename C::time_point deadline = C::time_point::max();
    /// Alternative to `deadline`: now + timeout (the earlier of the two applies when both are set).
    std::optional<std::chrono::nanoseconds> timeout{};
    /// 0 .. priority_levels-1; higher levels are dispatched first, FIFO within a level.
    int priority = 0;
    /// Cancels the request while it is queued (Cancelled); once dispatched it runs to completion.
    std::stop_token stop_token{};
};

/// What a completion callback receives: the response, or the error code (and exception) of the request.
template <class Resp>
class BatchResult {
public:
    explicit BatchResult(Resp&& response) noexcept(std::is_nothrow_move_constructible_v<Resp>)
        : response_(std::move(response)) {}
    /// An error; `cause` (may be null) is the exception a future would carry.
    BatchResult(ErrorCode code, std::exception_ptr cause) noexcept : code_(code), cause_(std::move(cause)) {}

    [[nodiscard]] bool ok() const noexcept { return code_ == ErrorCode::Ok; }
    [[nodiscard]] ErrorCode error() const noexcept { return code_; }

    /// The response; throws the request's error when !ok().
    [[nodiscard]] Resp& value() & {
        if (!ok()) rethrow();
        return *response_;
    }
    [[nodiscard]] Resp&& value() && {
        if (!ok()) rethrow();
        return std::move(*response_);
    }

    /// The error as an exception (an llmfast::Error); null when ok().
    [[nodiscard]] std::exception_ptr exception() const {
        if (ok()) return nullptr;
        if (cause_) return cause_;
        return std::make_exception_ptr(Error(code_, default_message(code_)));
    }

    [[noreturn]] void rethrow() const { std::rethrow_exception(exception()); }

private:
    static std::string_view default_message(ErrorCode code) noexcept {
        switch (code) {
            case ErrorCode::DeadlineExceeded: return "the request's deadline passed before it was dispatched";
            case ErrorCode::Cancelled: return "the request was cancelled before it was dispatched";
            case ErrorCode::HandlerFailed: return "the batch handler failed";
            default: return "the request failed";
        }
    }

    std::optional<Resp> response_{};
    ErrorCode code_ = ErrorCode::Ok;
    std::exception_ptr cause_{};
};

/// The future form of try_submit: status Ok and a valid future, or the error and no future.
template <class Resp>
struct TrySubmitResult {
    ErrorCode status = ErrorCode::Ok;
    std::future<Resp> future{};
    explicit operator bool() const noexcept { return status == ErrorCode::Ok; }
};

/// A snapshot of the batcher's counters (`DynamicBatcher::stats()`).
struct BatcherStats {
    std::size_t queue_depth = 0;          ///< requests waiting now (incl. expired/cancelled not yet removed)
    std::size_t batches_running = 0;      ///< batches in the handler now
    std::uint64_t accepted = 0;           ///< requests enqueued
    std::uint64_t batches = 0;            ///< batches dispatched to the handler
    std::uint64_t dispatched = 0;         ///< requests dispatched to the handler
    std::uint64_t succeeded = 0;          ///< requests completed with a response
    std::uint64_t rejected = 0;           ///< submissions refused with QueueFull or Closed
    std::uint64_t expired = 0;            ///< requests refused or dropped with DeadlineExceeded
    std::uint64_t cancelled = 0;          ///< requests refused or dropped with Cancelled
    std::uint64_t failed = 0;             ///< requests completed with HandlerFailed
    std::uint64_t callback_errors = 0;    ///< exceptions thrown by completion callbacks (swallowed)
    /// batch_size_histogram[n] = batches of exactly n requests (n >= 1); the last bucket also counts
    /// bigger batches (the histogram has min(max_batch_size, 1024) + 1 buckets).
    std::vector<std::uint64_t> batch_size_histogram{};
    /// Time from submission to dispatch of the requests dispatched so far (log-bucketed, <= 12.5% high).
    std::chrono::nanoseconds queue_wait_p50{}, queue_wait_p90{}, queue_wait_p99{}, queue_wait_max{};

    [[nodiscard]] double mean_batch_size() const noexcept {
        return batches ? static_cast<double>(dispatched) / static_cast<double>(batches) : 0.0;
    }
};

namespace detail {

/// The exact sum of up to SIZE_MAX values of std::size_t (two words with a carry), so costs near SIZE_MAX
/// never wrap around. Not synchronised: the batcher updates it under its mutex.
class CostSum {
public:
    void add(std::size_t v) noexcept {
        low_ += v;
        if (low_ < v) ++high_;  // carry
    }
    void subtract(std::size_t v) noexcept {  // v was added before
        if (low_ < v) --high_;  // borrow
        low_ -= v;
    }
    [[nodiscard]] bool at_least(std::size_t v) const noexcept { return high_ > 0 || low_ >= v; }

private:
    std::size_t low_ = 0;
    std::size_t high_ = 0;
};

}  // namespace detail

/// Groups requests into batches for `Handler` (see the file comment). Thread-safe; owns `workers` threads.
template <class Req, class Resp, class Handler = BatchFunction<Req, Resp>, class C = SteadyClock>
class DynamicBatcher {
    static_assert(std::is_nothrow_move_constructible_v<Req>,
                  "llmfast::DynamicBatcher<Req, Resp, Handler, C>: Req must be nothrow move-constructible (the "
                  "queue relocates requests; wrap it in std::unique_ptr otherwise)");
    static_assert(std::is_move_constructible_v<Resp> && !std::is_void_v<Resp>,
                  "llmfast::DynamicBatcher<Req, Resp, Handler, C>: Resp must be a move-constructible object type");
    static_assert(BatchHandler<Handler, Req, Resp>,
                  "llmfast::DynamicBatcher<Req, Resp, Handler, C>: Handler must model llmfast::BatchHandler<Handler, "
                  "Req, Resp> — it needs to be callable as `Handler&` with a std::span<Req> and return something "
                  "convertible to std::vector<Resp>");
    static_assert(Clock<C>, "llmfast::DynamicBatcher<Req, Resp, Handler, C>: C must model llmfast::Clock — it needs "
                            "nested types `duration` and `time_point` and a const `now()` returning a time_point");

public:
    using request_type = Req;
    using response_type = Resp;
    using clock_type = C;
    using time_point = typename C::time_point;
    /// The batcher's settings.
    using Options = BatcherOptions;
    /// Per-request settings (deadline, timeout, priority, stop token).
    using RequestOptions = SubmitOptions<C>;
    using Result = BatchResult<Resp>;
    /// The completion callback storage: a move-only callable stored inline up to 48 bytes (no allocation).
    using Callback = detail::InplaceFunction<void(Result&&), 48>;
    /// Cost of one request (e.g. its prompt tokens). Empty: every request costs 1.
    using CostFunction = std::function<std::size_t(const Req&)>;

    /// Starts `options.workers` threads. Throws InvalidArgument for an option out of range.
    explicit DynamicBatcher(Handler handler, BatcherOptions options = {}, CostFunction cost = {})
        requires ClockRef<C>::stateless
        : DynamicBatcher(ClockRef<C>{}, std::move(handler), options, std::move(cost)) {}

    /// Reads time from `clock` (a stateful one, e.g. ManualClock, must outlive the batcher).
    DynamicBatcher(const C& clock, Handler handler, BatcherOptions options = {}, CostFunction cost = {})
        : DynamicBatcher(ClockRef<C>{clock}, std::move(handler), options, std::move(cost)) {}

    DynamicBatcher(const DynamicBatcher&) = delete;
    DynamicBatcher& operator=(const DynamicBatcher&) = delete;

    /// close(): drains what is queued and joins the workers.
    ~DynamicBatcher() { close(); }

    /// Enqueues `request`; the future carries the response or the request's error.
    /// Throws QueueFull, Closed, InvalidArgument, DeadlineExceeded, Cancelled (see the file comment).
    [[nodiscard]] std::future<Resp> submit(Req request, RequestOptions options = {}) {
        std::promise<Resp> promise;
        std::future<Resp> future = promise.get_future();
        Callback done{PromiseCompletion{std::move(promise)}};
        bool blocked = false;
        if (const ErrorCode status = enqueue(request, options, done, blocked); status != ErrorCode::Ok)
            throw_status(status, blocked, options.priority);
        return future;
    }

    /// Enqueues `request`; `callback(BatchResult<Resp>&&)` runs exactly once on a worker thread. It is not
    /// invoked when this throws (same errors as the future form).
    template <class F>
        requires std::is_invocable_v<std::decay_t<F>&, Result&&>
    void submit(Req request, RequestOptions options, F&& callback) {
        Callback done{std::forward<F>(callback)};
        bool blocked = false;
        if (const ErrorCode status = enqueue(request, options, done, blocked); status != ErrorCode::Ok)
            throw_status(status, blocked, options.priority);
    }

    /// Like submit, but returns the status instead of throwing. `request` is moved from only on Ok (so a
    /// caller can retry it), and the callback is invoked only on Ok.
    template <class F>
        requires std::is_invocable_v<std::decay_t<F>&, Result&&>
    [[nodiscard]] ErrorCode try_submit(Req&& request, RequestOptions options, F&& callback) {
        Callback done{std::forward<F>(callback)};
        bool blocked = false;
        return enqueue(request, options, done, blocked);
    }

    /// Future form of try_submit: `request` is moved from only on Ok.
    [[nodiscard]] TrySubmitResult<Resp> try_submit(Req&& request, RequestOptions options = {}) {
        std::promise<Resp> promise;
        TrySubmitResult<Resp> result{ErrorCode::Ok, promise.get_future()};
        Callback done{PromiseCompletion{std::move(promise)}};
        bool blocked = false;
        result.status = enqueue(request, options, done, blocked);
        if (result.status != ErrorCode::Ok) result.future = {};
        return result;
    }

    /// Stops intake (later submits fail with Closed), dispatches everything queued without waiting for
    /// max_wait, waits for the running batches and joins the workers. Idempotent; concurrent callers all
    /// return once the batcher is drained. Called from a handler or callback (a worker thread) it only
    /// stops intake and returns: the workers finish draining on their own.
    void close() {
        {
            std::lock_guard lock(mutex_);
            closing_ = true;
        }
        work_cv_.notify_all();
        space_cv_.notify_all();
        const auto self = std::this_thread::get_id();
        for (const std::thread& worker : workers_)
            if (worker.get_id() == self) return;
        std::lock_guard join_lock(join_mutex_);
        for (std::thread& worker : workers_)
            if (worker.joinable()) worker.join();
    }

    /// True once close() was called.
    [[nodiscard]] bool closed() const {
        std::lock_guard lock(mutex_);
        return closing_;
    }

    /// A consistent snapshot of the counters; cheap enough to poll (copies a few KB under the lock).
    [[nodiscard]] BatcherStats stats() const {
        BatcherStats m;
        std::lock_guard lock(mutex_);
        m.queue_depth = depth_;
        m.batches_running = running_;
        m.accepted = accepted_;
        m.batches = batches_;
        m.dispatched = dispatched_;
        m.succeeded = succeeded_;
        m.rejected = rejected_;
        m.expired = expired_;
        m.cancelled = cancelled_;
        m.failed = failed_;
        m.callback_errors = callback_errors_;
        m.batch_size_histogram = batch_sizes_;
        m.queue_wait_p50 = std::chrono::nanoseconds(static_cast<std::int64_t>(waits_.percentile(50)));
        m.queue_wait_p90 = std::chrono::nanoseconds(static_cast<std::int64_t>(waits_.percentile(90)));
        m.queue_wait_p99 = std::chrono::nanoseconds(static_cast<std::int64_t>(waits_.percentile(99)));
        m.queue_wait_max = std::chrono::nanoseconds(static_cast<std::int64_t>(waits_.max()));
        return m;
    }

    [[nodiscard]] const BatcherOptions& options() const noexcept { return options_; }

private:
    // Wakes a worker when a queued request's stop token fires, so it is completed with Cancelled promptly.
    struct CancelNotifier {
        DynamicBatcher* self;
        void operator()() const noexcept { self->on_cancel(); }
    };
    using StopCallback = std::stop_callback<CancelNotifier>;

    struct Entry {
        Req request;
        std::size_t cost;
        time_point enqueued;
        time_point deadline;
        std::stop_token stop;
        std::unique_ptr<StopCallback> on_stop;  // only when the token can fire; destroyed outside mutex_
        Callback done;
    };

    struct PromiseCompletion {
        std::promise<Resp> promise;
        void operator()(Result&& result) {
            if (result.ok())
                promise.set_value(std::move(result).value());
            else
                promise.set_exception(result.exception());
        }
    };

    // What one worker moves out of the queue under the lock and completes outside it.
    struct Work {
        std::vector<Req> requests;
        std::vector<Callback> completions;
        std::vector<std::pair<Callback, ErrorCode>> dropped;
        std::vector<std::unique_ptr<StopCallback>> stop_callbacks;
    };

    DynamicBatcher(ClockRef<C> clock, Handler handler, BatcherOptions options, CostFunction cost)
        : handler_(std::move(handler)), options_(validate(options)), cost_(std::move(cost)), clock_(clock) {
        levels_.resize(options_.priority_levels);
        batch_sizes_.assign(std::min<std::size_t>(options_.max_batch_size, 1024) + 1, 0);
        workers_.reserve(options_.workers);
        try {
            for (std::size_t i = 0; i < options_.workers; ++i) workers_.emplace_back([this] { worker_loop(); });
        } catch (...) {
            close();
            throw;
        }
    }

    static BatcherOptions validate(const BatcherOptions& o) {
        const auto fail = [](std::string message) { throw Error(ErrorCode::InvalidArgument, std::move(message)); };
        if (o.max_batch_size == 0) fail(fmt::format("BatcherOptions::max_batch_size must be >= 1 (got {})", o.max_batch_size));
        if (o.max_batch_cost == 0) fail(fmt::format("BatcherOptions::max_batch_cost must be >= 1 (got {})", o.max_batch_cost));
        if (o.max_wait < std::chrono::nanoseconds::zero())
            fail(fmt::format("BatcherOptions::max_wait must be >= 0 (got {} ns)", o.max_wait.count()));
        if (o.max_queue == 0) fail(fmt::format("BatcherOptions::max_queue must be >= 1 (got {})", o.max_queue));
        if (o.workers == 0) fail(fmt::format("BatcherOptions::workers must be >= 1 (got {})", o.workers));
        if (o.priority_levels == 0 || o.priority_levels > 64)
            fail(fmt::format("BatcherOptions::priority_levels must be in 1..64 (got {})", o.priority_levels));
        if (o.block_when_full_for < std::chrono::nanoseconds::zero())
            fail(fmt::format("BatcherOptions::block_when_full_for must be >= 0 (got {} ns)", o.block_when_full_for.count()));
        return o;
    }

    // `blocked`: the submit waited for room in a full queue, so the bound that ended it fired meanwhile.
    // Out of the submit hot path: formatting an error must not change how submit / enqueue inline.
    [[noreturn]] LLMFAST_BATCHER_COLD static void fail_submit(ErrorCode status, std::string_view what) {
        throw Error(status, fmt::format("DynamicBatcher::submit: {}", what));
    }
    [[noreturn]] LLMFAST_BATCHER_COLD void throw_status(ErrorCode status, bool blocked, int priority) const {
        switch (status) {
            case ErrorCode::QueueFull:
                fail_submit(status, blocked ? "the batcher queue stayed full for block_when_full_for" : "the batcher queue is full");
            case ErrorCode::Closed:
                fail_submit(status, blocked ? "the batcher was closed while submit waited for room in the queue" : "the batcher is closed");
            case ErrorCode::InvalidArgument:
                throw Error(status, fmt::format("DynamicBatcher::submit: SubmitOptions::priority must be in 0..{} (got {})",
                                                levels_.size() - 1, priority));
            case ErrorCode::DeadlineExceeded:
                fail_submit(status, blocked ? "the request's deadline passed while submit waited for room in the queue"
                             : "the request's deadline already passed");
            case ErrorCode::Cancelled:
                fail_submit(status, blocked ? "the request's stop token was triggered while submit waited for room in the queue"
                             : "the request's stop token was already triggered");
            default: fail_submit(status, "submit failed");
        }
    }

    // Moves `request` and `done` into the queue on Ok; leaves both untouched otherwise. Sets `blocked`
    // when it waited for room in a full queue.
    ErrorCode enqueue(Req& request, const RequestOptions& options, Callback& done, bool& blocked) {
        if (options.priority < 0 || static_cast<std::size_t>(options.priority) >= levels_.size())
            return ErrorCode::InvalidArgument;
        time_point now = clock_.now();
        time_point deadline = options.deadline;
        if (options.timeout) deadline = std::min(deadline, detail::deadline_after(now, *options.timeout));
        const std::size_t cost = cost_ ? cost_(request) : std::size_t{1};

        // Registered before taking mutex_ (the callback takes it) and, on failure, destroyed after
        // releasing it: a stop_callback's destructor waits for a running callback.
        std::unique_ptr<StopCallback> on_stop;
        if (options.stop_token.stop_possible() && !options.stop_token.stop_requested())
            on_stop = std::make_unique<StopCallback>(options.stop_token, CancelNotifier{this});

        bool notify = false;
        {
            std::unique_lock lock(mutex_);
            auto expired_or_cancelled = [&] {
                if (deadline <= now) {
                    ++expired_;
                    return ErrorCode::DeadlineExceeded;
                }
                if (options.stop_token.stop_requested()) {
                    ++cancelled_;
                    return ErrorCode::Cancelled;
                }
                return ErrorCode::Ok;
            };
            if (const ErrorCode status = expired_or_cancelled(); status != ErrorCode::Ok) return status;
            if (closing_) {
                ++rejected_;
                return ErrorCode::Closed;
            }
            if (depth_ >= options_.max_queue && options_.block_when_full_for > std::chrono::nanoseconds::zero()) {
                // Ends at the earliest of: room, close(), the stop token (on_stop wakes space_cv_), the
                // request's deadline, block_when_full_for.
                blocked = true;
                using steady = std::chrono::steady_clock;
                const steady::time_point until = detail::deadline_after(steady::now(), options_.block_when_full_for);
                ++blocked_producers_;
                for (;;) {
                    now = clock_.now();  // queue wait and max_wait count from the actual enqueue
                    if (closing_ || depth_ < options_.max_queue || deadline <= now || options.stop_token.stop_requested())
                        break;
                    const steady::time_point real_now = steady::now();
                    if (real_now >= until) break;
                    if constexpr (steady_time) {
                        space_cv_.wait_until(lock, std::min(until, deadline));
                    } else if (deadline == time_point::max()) {
                        space_cv_.wait_until(lock, until);
                    } else {  // the deadline is on a clock the condition variable cannot wait on: poll it
                        space_cv_.wait_until(lock, std::min(until, detail::saturating_add(real_now, poll_interval)));
                    }
                }
                --blocked_producers_;
                if (closing_) {
                    ++rejected_;
                    return ErrorCode::Closed;
                }
                if (const ErrorCode status = expired_or_cancelled(); status != ErrorCode::Ok) return status;
            }
            if (depth_ >= options_.max_queue) {
                ++rejected_;
                return ErrorCode::QueueFull;
            }
            const bool was_empty = depth_ == 0;
            levels_[static_cast<std::size_t>(options.priority)].push_back(
                Entry{std::move(request), cost, now, deadline, options.stop_token, std::move(on_stop), std::move(done)});
            ++depth_;
            ++accepted_;
            total_cost_.add(cost);
            bool earlier_deadline = false;
            if (deadline < earliest_deadline_) {
                earliest_deadline_ = deadline;
                earlier_deadline = true;
            }
            // Wake an idle worker only when its decision changes: it slept with nothing queued, the batch
            // just became ready, or it must now wake for an earlier deadline. One notify per batch.
            if (idle_workers_ > 0 && !wake_pending_ &&
                (was_empty || earlier_deadline || batch_ready_by_size_or_cost())) {
                wake_pending_ = true;
                notify = true;
            }
        }
        if (notify) work_cv_.notify_one();
        return ErrorCode::Ok;
    }

    void on_cancel() {
        bool producers = false;
        {
            std::lock_guard lock(mutex_);
            cancel_pending_ = true;
            producers = blocked_producers_ > 0;
        }
        work_cv_.notify_one();
        if (producers) space_cv_.notify_all();  // the token may be a blocked submit's: end its wait
    }

    bool batch_ready_by_size_or_cost() const noexcept {
        return options_.max_wait == std::chrono::nanoseconds::zero() || depth_ >= options_.max_batch_size ||
               total_cost_.at_least(options_.max_batch_cost);
    }

    time_point oldest_enqueued() const noexcept {
        time_point oldest = time_point::max();
        for (const auto& level : levels_)
            if (!level.empty()) oldest = std::min(oldest, level.front().enqueued);
        return oldest;
    }

    void pop_front(detail::RingBuffer<Entry>& level, Entry& entry, Work& work) {
        if (entry.on_stop) work.stop_callbacks.push_back(std::move(entry.on_stop));
        --depth_;
        total_cost_.subtract(entry.cost);
        level.pop_front();
    }

    // Removes every expired or cancelled request (completed by the caller outside the lock) and
    // recomputes earliest_deadline_.
    void sweep(time_point now, Work& work) {
        time_point earliest = time_point::max();
        for (auto& level : levels_) {
            // Rotate once through the ring: keep entries go to the back, in their order.
            for (std::size_t n = level.size(); n > 0; --n) {
                Entry& e = level.front();
                const bool expired = e.deadline <= now;
                if (expired || e.stop.stop_requested()) {
                    drop(e, expired ? ErrorCode::DeadlineExceeded : ErrorCode::Cancelled, work);
                    level.pop_front();
                } else {
                    earliest = std::min(earliest, e.deadline);
                    Entry kept = std::move(e);
                    level.pop_front();
                    level.push_back(std::move(kept));
                }
            }
        }
        earliest_deadline_ = earliest;
        cancel_pending_ = false;
    }

    void drop(Entry& e, ErrorCode code, Work& work) {
        (code == ErrorCode::DeadlineExceeded ? expired_ : cancelled_) += 1;
        if (e.on_stop) work.stop_callbacks.push_back(std::move(e.on_stop));
        work.dropped.emplace_back(std::move(e.done), code);
        --depth_;
        total_cost_.subtract(e.cost);
    }

    // Pops the next batch: priority order, FIFO within a level, up to max_batch_size requests and
    // max_batch_cost (a first request costlier than that goes alone).
    void form_batch(time_point now, Work& work) {
        std::size_t cost = 0;
        for (auto level = levels_.rbegin(); level != levels_.rend(); ++level) {
            while (!level->empty() && work.requests.size() < options_.max_batch_size) {
                Entry& e = level->front();
                if (e.deadline <= now || e.stop.stop_requested()) {
                    drop(e, e.deadline <= now ? ErrorCode::DeadlineExceeded : ErrorCode::Cancelled, work);
                    level->pop_front();
                    continue;
                }
                // cost <= max_batch_cost here, and only a first request may exceed what is left: no overflow.
                if (!work.requests.empty() && e.cost > options_.max_batch_cost - cost) return;
                cost += e.cost;
                waits_.record(std::chrono::duration_cast<std::chrono::nanoseconds>(now - e.enqueued).count());
                work.requests.push_back(std::move(e.request));
                work.completions.push_back(std::move(e.done));
                pop_front(*level, e, work);
                if (cost >= options_.max_batch_cost) return;
            }
            if (work.requests.size() >= options_.max_batch_size) return;
        }
    }

    static constexpr bool steady_time = std::is_same_v<time_point, std::chrono::steady_clock::time_point>;
    // With a clock other than steady_clock (a ManualClock in tests) a timed wait cannot be expressed in
    // real time, so the worker re-checks the clock this often.
    static constexpr std::chrono::microseconds poll_interval{200};

    void wait_until(std::unique_lock<std::mutex>& lock, time_point target) {
        ++idle_workers_;
        if (target == time_point::max()) {
            work_cv_.wait(lock);
        } else if constexpr (steady_time) {
            work_cv_.wait_until(lock, target);
        } else {
            work_cv_.wait_for(lock, poll_interval);
        }
        --idle_workers_;
        wake_pending_ = false;
    }

    void worker_loop() {
#if defined(PR_SET_TIMERSLACK)
        // The default 50 µs timer slack would make every max_wait flush ~50 µs late; these threads
        // are ours, and they sleep mostly on the condition variable, so 1 ns costs nothing.
        (void)::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
#endif
        Work work;
        // Formation pushes into these under the lock: reserve so it does not allocate there.
        const std::size_t expected = std::min<std::size_t>(options_.max_batch_size, 1024);
        work.requests.reserve(expected);
        work.completions.reserve(expected);
        work.dropped.reserve(16);
        work.stop_callbacks.reserve(expected);
        std::unique_lock lock(mutex_);
        for (;;) {
            const time_point now = clock_.now();
            if (cancel_pending_ || now >= earliest_deadline_) sweep(now, work);
            if (!work.dropped.empty()) {
                const bool room_freed = blocked_producers_ > 0;
                lock.unlock();
                if (room_freed) space_cv_.notify_all();
                finish(work);
                lock.lock();
                continue;
            }
            if (depth_ == 0) {
                if (closing_) break;
                wait_until(lock, time_point::max());
                continue;
            }
            if (!closing_ && !batch_ready_by_size_or_cost()) {
                const time_point due = detail::saturating_add(oldest_enqueued(), options_.max_wait);
                if (now < due) {
                    wait_until(lock, std::min(due, earliest_deadline_));
                    continue;
                }
            }
            form_batch(now, work);
            const bool dispatching = !work.requests.empty();
            if (dispatching) {
                ++batches_;
                ++running_;
                dispatched_ += work.requests.size();
                ++batch_sizes_[std::min(work.requests.size(), batch_sizes_.size() - 1)];
            }
            // Chain: another idle worker may take the next batch while this one runs.
            const bool wake_other = depth_ > 0 && idle_workers_ > 0 && !wake_pending_;
            if (wake_other) wake_pending_ = true;
            const bool room = blocked_producers_ > 0;
            lock.unlock();
            if (wake_other) work_cv_.notify_one();
            if (room) space_cv_.notify_all();
            if (dispatching) run(work);
            finish(work);
            lock.lock();
        }
    }

    static void invoke(Callback& done, Result&& result, std::uint64_t& errors) noexcept {
        try {
            done(std::move(result));
        } catch (...) {
            ++errors;
        }
    }

    // Runs the handler on work.requests and completes work.completions (outside the lock).
    void run(Work& work) {
        const std::size_t n = work.requests.size();
        std::exception_ptr failure;
        std::vector<Resp> responses;
        try {
            responses = handler_(std::span<Req>(work.requests));
            if (responses.size() != n)
                failure = std::make_exception_ptr(Error(
                    ErrorCode::HandlerFailed,
                    fmt::format("DynamicBatcher: the batch handler returned {} responses for {} requests", responses.size(), n)));
        } catch (const std::exception& e) {
            failure = std::make_exception_ptr(
                Error(ErrorCode::HandlerFailed, fmt::format("DynamicBatcher: the batch handler threw: {}", e.what())));
        } catch (...) {
            failure = std::make_exception_ptr(
                Error(ErrorCode::HandlerFailed, "DynamicBatcher: the batch handler threw a non-std exception"));
        }
        {
            // Counted before completing, so a caller that saw its result also sees it in stats().
            std::lock_guard lock(mutex_);
            (failure ? failed_ : succeeded_) += n;
            --running_;
        }
        std::uint64_t callback_errors = 0;
        // Last to first: a caller blocked on the batch's first future (callers usually wait in submission
        // order) is woken once, when the whole batch is done, instead of once per request — completing a
        // std::promise costs a syscall, and the ping-pong would cost a context switch per request.
        for (std::size_t i = n; i-- > 0;) {
            if (failure)
                invoke(work.completions[i], Result(ErrorCode::HandlerFailed, failure), callback_errors);
            else
                invoke(work.completions[i], Result(std::move(responses[i])), callback_errors);
        }
        if (callback_errors) {
            std::lock_guard lock(mutex_);
            callback_errors_ += callback_errors;
        }
    }

    // Completes dropped requests and releases what was moved out of the queue (outside the lock).
    void finish(Work& work) {
        std::uint64_t callback_errors = 0;
        for (auto& [done, code] : work.dropped) invoke(done, Result(code, nullptr), callback_errors);
        work.requests.clear();
        work.completions.clear();
        work.dropped.clear();
        work.stop_callbacks.clear();
        if (callback_errors) {
            std::lock_guard lock(mutex_);
            callback_errors_ += callback_errors;
        }
    }

    Handler handler_;
    const BatcherOptions options_;
    CostFunction cost_;
    ClockRef<C> clock_;

    mutable std::mutex mutex_;
    std::condition_variable work_cv_;   // workers: work arrived, batch ready, cancel, close
    std::condition_variable space_cv_;  // blocked producers: room in the queue, close
    // --- guarded by mutex_ ---
    std::vector<detail::RingBuffer<Entry>> levels_;  // index = priority
    std::size_t depth_ = 0;
    detail::CostSum total_cost_;  // summed cost of the queued requests (exact, no overflow)
    time_point earliest_deadline_ = time_point::max();  // <= every queued deadline (may be stale-early)
    std::size_t idle_workers_ = 0;
    std::size_t blocked_producers_ = 0;
    std::size_t running_ = 0;
    bool wake_pending_ = false;  // a worker was notified and has not woken yet: don't notify again
    bool cancel_pending_ = false;
    bool closing_ = false;
    std::uint64_t accepted_ = 0, batches_ = 0, dispatched_ = 0, succeeded_ = 0, rejected_ = 0, expired_ = 0,
                  cancelled_ = 0, failed_ = 0, callback_errors_ = 0;
    std::vector<std::uint64_t> batch_sizes_;
    detail::LogHistogram waits_;
    // --- end guarded ---
    std::mutex join_mutex_;
    std::vector<std::thread> workers_;
};

LLMFAST_END_NAMESPACE

#undef LLMFAST_BATCHER_COLD
