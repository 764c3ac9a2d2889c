// llmfast/stream.hpp — moving tokens from a model thread to a connection: a bounded channel with
// backpressure and cancellation, deadline/idle-timeout adaptors, UTF-8-safe chunking and a per-stream
// timing recorder.
//
//     llmfast::TokenChannel<std::string> channel({.capacity = 256});
//     std::jthread model([&] {                                   // the producer (the model)
//         for (std::string token : generate(prompt)) {
//             if (channel.push(std::move(token)) != llmfast::StreamStatus::Ok) return;  // consumer gone
//         }
//         channel.close();                                       // or channel.close(std::current_exception())
//     });
//     // (or: auto model = llmfast::spawn_producer(channel, [&](std::stop_token s) { return generate(prompt, s); });)
//     // The consumer (the connection): an overall deadline and an inter-token idle timeout.
//     llmfast::TimedReceiver receiver(channel, {.total = 30s, .idle = 2s});
//     llmfast::StreamRecorder recorder;
//     for (auto&& event : receiver.events()) {
//         if (event.status != llmfast::StreamStatus::Ok) { send_end(event.status); break; }
//         recorder.record_token();
//         send(*event.value);
//     }
//     // Or whole code points only, with exceptions for timeouts:
//     for (std::string_view text : llmfast::utf8_chunks(receiver.values())) send(text);
//
// Cancellation: the channel owns a `std::stop_source`. `cancel()` (the consumer went away, a timeout
// fired, a `TimedReceiver` or a `stream()` generator was dropped before the end) requests stop:
// the producer sees `stop_token().stop_requested()`, a blocked or later `push` returns `Cancelled`,
// queued items are discarded. A producer that waits on something else can register a
// `std::stop_callback` on `stop_token()`.
//
// Event loops (no thread blocked): `try_pop()` / `try_push()` never wait, and `on_ready(cb)` /
// `on_space(cb)` call `cb` once when trying again is worth it (llmfast/subscription.hpp has the
// contract: at most once, outside the channel's lock, on the producer's / consumer's thread or at
// once on the caller's; the returned `Subscription` cancels race-free):
//
//     void pump() {                                   // runs on the executor, never blocks
//         for (;;) {
//             llmfast::Received<std::string> got = channel.try_pop();
//             if (got.status == llmfast::StreamStatus::Timeout) {   // empty for now
//                 ready = channel.on_ready([this] { post(executor, [this] { pump(); }); });
//                 return;
//             }
//             if (got.is_end()) return finish(got.status);
//             send(*got.value);
//         }
//     }
//
// Thread-safety: `TokenChannel` is fully thread-safe (any number of producers and consumers, though
// one of each is the intended use). `TimedReceiver`, `StreamRecorder` and the generators are owned by
// one consumer thread.
//
// Clocks: `TimedReceiver` and `StreamRecorder` read time from a clock type `C` (default `SteadyClock`)
// held as a `ClockRef<C>`; inject one as the first constructor argument, e.g. in a test
// `llmfast::TimedReceiver receiver(manual_clock, channel, {.idle = 2s});`.
//
// Errors: `TokenChannelOptions` and `StreamTimeouts` with zero or negative values throw
// `Error(InvalidArgument)` from the constructor that validates them. Hot-path calls return a
// `StreamStatus`, never throw (except what moving a T throws); `on_ready` / `on_space` throw only
// std::bad_alloc (nothing registered then). The generator views throw: `stream()`
// and `TimedReceiver::values()` rethrow the producer's `close(error)` exception and throw
// `Error(Cancelled)`, `Error(DeadlineExceeded)` or `Error(IdleTimeout)` for the other ends.
#pragma once

#include <llmfast/version.hpp>

#include <llmfast/clock.hpp>
#include <llmfast/detail/percentile.hpp>
#include <llmfast/detail/ring_buffer.hpp>
#include <llmfast/detail/saturating.hpp>
#include <llmfast/error.hpp>
#include <llmfast/streaming_generator.hpp>
#include <llmfast/subscription.hpp>
#include <llmfast/utf8.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <ranges>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

LLMFAST_BEGIN_NAMESPACE

/// The outcome of a channel or receiver operation. Only `Ok` carries an item (or accepted one).
enum class StreamStatus : std::uint8_t {
    Ok,                ///< push: accepted. pop: `value` holds the next item.
    Closed,            ///< the producer closed the channel and every item was delivered: the normal end
    Failed,            ///< the producer closed with an error (`Received::error`), after the queued items
    Cancelled,         ///< `cancel()`ed: the consumer went away (or a timeout fired); nothing more flows
    Timeout,           ///< a bounded wait (`*_for`, `*_until`, `try_*`) ran out; the channel is still open
    DeadlineExceeded,  ///< `TimedReceiver`: the overall deadline passed; the producer was told to stop
    IdleTimeout,       ///< `TimedReceiver`: no item within the idle timeout; the producer was told to stop
};

constexpr std::string_view to_string(StreamStatus status) noexcept {
    switch (status) {
        case StreamStatus::Ok: return "Ok";
        case StreamStatus::Closed: return "Closed";
        case StreamStatus::Failed: return "Failed";
        case StreamStatus::Cancelled: return "Cancelled";
        case StreamStatus::Timeout: return "Timeout";
        case StreamStatus::DeadlineExceeded: return "DeadlineExceeded";
        case StreamStatus::IdleTimeout: return "IdleTimeout";
    }
    return "Unknown";
}

/// The `ErrorCode` a status maps to when it is turned into an exception (`Failed` -> HandlerFailed).
constexpr ErrorCode to_error_code(StreamStatus status) noexcept {
    switch (status) {
        case StreamStatus::Ok: return ErrorCode::Ok;
        case StreamStatus::Closed: return ErrorCode::Closed;
        case StreamStatus::Failed: return ErrorCode::HandlerFailed;
        case StreamStatus::Cancelled: return ErrorCode::Cancelled;
        case StreamStatus::Timeout: return ErrorCode::DeadlineExceeded;
        case StreamStatus::DeadlineExceeded: return ErrorCode::DeadlineExceeded;
        case StreamStatus::IdleTimeout: return ErrorCode::IdleTimeout;
    }
    return ErrorCode::InvalidArgument;
}

/// What a pop returns: a status, the item when `status == Ok`, the producer's error when `Failed`.
template <class T>
struct Received {
    StreamStatus status = StreamStatus::Closed;
    std::optional<T> value;
    std::exception_ptr error;  ///< set only for `Failed`

    explicit operator bool() const noexcept { return status == StreamStatus::Ok; }
    /// True for every status after which nothing more will arrive.
    [[nodiscard]] bool is_end() const noexcept { return status != StreamStatus::Ok && status != StreamStatus::Timeout; }
};

struct TokenChannelOptions {
    std::size_t capacity = 1024;  ///< items buffered before `push` blocks (backpressure); > 0
};

/// A snapshot of a channel's counters (`TokenChannel::stats()`).
struct TokenChannelStats {
    std::uint64_t pushed = 0;     ///< items accepted by a push
    std::uint64_t popped = 0;     ///< items handed to the consumer
    std::uint64_t discarded = 0;  ///< items still queued when `cancel()` ran (destroyed, never delivered)
    std::size_t queued = 0;       ///< items queued now
};

/// A bounded, blocking, cancellable FIFO from a producer thread (the model) to a consumer (the
/// connection). Mutex + two condition variables; a side only notifies the other when it waits, and a
/// blocked producer is woken only once half the capacity is free again, so a fast pair exchanges
/// items in batches without a futex call per item.
///
/// Non-blocking use: `try_pop` / `try_push` plus `on_ready` / `on_space` (see the file comment).
///
/// Thread-safety: fully thread-safe. Not clocked: its timed waits are on std::chrono::steady_clock
/// (a condition variable can wait on nothing else); `TimedReceiver` adds an injectable clock on top.
template <class T>
class TokenChannel {
    static_assert(std::movable<T>, "llmfast::TokenChannel<T>: T must be movable (std::movable<T>): items are moved "
                                   "into the channel and out to the consumer");

public:
    using clock = std::chrono::steady_clock;
    using Options = TokenChannelOptions;

    /// Throws Error(InvalidArgument) when `options.capacity` is 0.
    explicit TokenChannel(TokenChannelOptions options = {}) : capacity_(options.capacity), ring_(options.capacity) {
        if (options.capacity == 0)
            throw Error(ErrorCode::InvalidArgument,
                        fmt::format("TokenChannelOptions::capacity must be >= 1 (got {})", options.capacity));
        ring_.reserve(std::min(capacity_, initial_ring));
        producer_wake_free_ = std::max<std::size_t>(1, capacity_ / 2);
    }
    TokenChannel(const TokenChannel&) = delete;
    TokenChannel& operator=(const TokenChannel&) = delete;
    ~TokenChannel() = default;

    // ---- producer side ----

    /// Enqueues `value`, blocking while the channel is full (backpressure). Returns Ok, or Closed /
    /// Cancelled without enqueuing; `value` is moved from only on Ok.
    StreamStatus push(T&& value) { return push_impl(value, nullptr); }
    StreamStatus push(const T& value)
        requires std::copy_constructible<T>
    {
        T copy(value);
        return push_impl(copy, nullptr);
    }
    /// As `push`, but gives up at `deadline` with `Timeout`. `push_for`: a zero, negative or
    /// `min()` timeout does not wait (as `try_push`); `max()` waits without a limit in practice.
    StreamStatus push_until(T&& value, clock::time_point deadline) { return push_impl(value, &deadline); }
    template <class Rep, class Period>
    StreamStatus push_for(T&& value, std::chrono::duration<Rep, Period> timeout) {
        return push_until(std::move(value), detail::deadline_after(clock::now(), timeout));
    }
    /// Never blocks: `Timeout` when full.
    StreamStatus try_push(T&& value) {
        const clock::time_point past{};
        return push_impl(value, &past);
    }

    /// Ends the stream normally: the consumer receives the queued items, then `Closed`. Idempotent;
    /// later pushes return `Closed`.
    void close() noexcept { close_impl(nullptr); }
    /// Ends the stream with an error: the consumer receives the queued items, then `Failed` with it.
    void close(std::exception_ptr error) noexcept { close_impl(std::move(error)); }

    /// Fires when the consumer cancelled (disconnect, timeout). The producer polls it or registers a
    /// `std::stop_callback`.
    [[nodiscard]] std::stop_token stop_token() const noexcept { return stop_.get_token(); }
    [[nodiscard]] bool stop_requested() const noexcept { return stop_.stop_requested(); }

    // ---- consumer side ----

    /// Waits for the next item. Returns Ok with the item, or Closed, Failed, Cancelled.
    Received<T> pop() { return pop_impl(nullptr); }
    /// As `pop`, but returns `Timeout` at `deadline` (the channel stays usable). `pop_for`: a zero,
    /// negative or `min()` timeout does not wait (as `try_pop`); `max()` waits without a limit in
    /// practice (the deadline saturates at time_point::max(), never overflows).
    Received<T> pop_until(clock::time_point deadline) { return pop_impl(&deadline); }
    template <class Rep, class Period>
    Received<T> pop_for(std::chrono::duration<Rep, Period> timeout) {
        return pop_until(detail::deadline_after(clock::now(), timeout));
    }
    /// Never blocks: `Timeout` when nothing is queued.
    Received<T> try_pop() {
        const clock::time_point past{};
        return pop_impl(&past);
    }

    // ---- readiness (for event loops; the contract is llmfast/subscription.hpp's) ----

    /// Calls `ready()` once, when `try_pop()` would return something other than `Timeout`: an item is
    /// queued, or the channel was closed (Closed / Failed after the queued items) or cancelled. If
    /// that already holds, `ready()` runs on this thread before `on_ready` returns (and the returned
    /// Subscription is empty); otherwise it runs later on the thread whose `push`, `close` or
    /// `cancel` made it true, after the channel's lock was released. A wake-up, not a reservation:
    /// with several consumers `try_pop()` may still return Timeout; register again then. Every armed
    /// registration fires on the next event (any number may be armed). Destroying the Subscription /
    /// `cancel()` deregisters race-free (it waits for a callback running on another thread).
    /// `ready` must not throw. Throws only std::bad_alloc (nothing is registered then).
    template <class F>
        requires std::invocable<std::decay_t<F>&> && std::constructible_from<std::decay_t<F>, F>
    [[nodiscard]] Subscription on_ready(F&& ready) {
        return subscribe(readers_, std::forward<F>(ready), [this] { return cancelled_ || closed_ || ring_.size() > 0; });
    }

    /// The producer's side, symmetric: calls `ready()` once, when `try_push()` would return something
    /// other than `Timeout`: there is room, or the channel was closed or cancelled (a push then
    /// returns Closed / Cancelled). Immediately (on this thread, before returning) if that already
    /// holds. Otherwise it fires from the consumer's pop once half the capacity is free again (as a
    /// blocked `push` is woken; at least one slot), or from `close` / `cancel`. Same contract as
    /// `on_ready`.
    template <class F>
        requires std::invocable<std::decay_t<F>&> && std::constructible_from<std::decay_t<F>, F>
    [[nodiscard]] Subscription on_space(F&& ready) {
        return subscribe(writers_, std::forward<F>(ready), [this] { return cancelled_ || closed_ || ring_.size() < capacity_; });
    }

    /// Waits for at least one item (or the end, or `deadline`), then moves up to `max_items` queued
    /// items to the back of `out` under one lock. Returns Ok when it appended any; else the status.
    StreamStatus pop_batch(std::vector<T>& out, std::size_t max_items,
                           clock::time_point deadline = clock::time_point::max()) {
        detail::ReadyList::Nodes wake;
        {
            std::unique_lock lock(mutex_);
            const StreamStatus status = wait_for_item(lock, deadline == clock::time_point::max() ? nullptr : &deadline);
            if (status != StreamStatus::Ok) return status;
            const std::size_t take = std::min(max_items == 0 ? std::size_t{1} : max_items, ring_.size());
            for (std::size_t i = 0; i < take; ++i) out.push_back(ring_.take_front());
            popped_ += take;
            wake = after_take(lock);
        }
        detail::ReadyList::fire_all(wake);
        return StreamStatus::Ok;
    }

    /// The consumer is gone: requests stop (the producer's `stop_token`), discards queued items and
    /// wakes every waiter; pushes and pops return `Cancelled` from now on. Idempotent.
    void cancel() noexcept {
        // Stop first, outside the lock (stop callbacks run here and may touch the channel), so that
        // whoever sees `Cancelled` also sees `stop_requested()`.
        stop_.request_stop();
        detail::ReadyList::Nodes readers, writers;
        {
            std::lock_guard lock(mutex_);
            if (cancelled_) return;
            cancelled_ = true;
            discarded_ += ring_.size();
            ring_.clear();  // destroy, don't move: nothing here may throw
            not_empty_.notify_all();
            not_full_.notify_all();
            readers = readers_.take();
            writers = writers_.take();
        }
        detail::ReadyList::fire_all(readers);
        detail::ReadyList::fire_all(writers);
    }

    /// Calls `cancel()` when `token` fires — e.g. the HTTP server's token for the client connection,
    /// so that a disconnect stops generation. The link holds while the returned callback lives
    /// (destroy it before the channel); a token that already fired cancels at once.
    struct CancelOnStop {
        TokenChannel* channel;
        void operator()() const noexcept { channel->cancel(); }
    };
    [[nodiscard]] std::stop_callback<CancelOnStop> cancel_on(std::stop_token token) {
        return std::stop_callback<CancelOnStop>(std::move(token), CancelOnStop{this});
    }

    /// The items as a generator: ends at `Closed`, rethrows the producer's error at `Failed`, throws
    /// `Error(Cancelled)` if cancelled. Dropping the generator before the end cancels the channel
    /// (the consumer went away). The channel must outlive the generator.
    StreamingGenerator<T> stream() {
        CancelUnlessDone guard{this};
        std::vector<T> batch;
        batch.reserve(stream_batch);
        for (;;) {
            batch.clear();
            const StreamStatus status = pop_batch(batch, stream_batch);
            if (status == StreamStatus::Ok) {
                for (T& item : batch) co_yield std::move(item);
                continue;
            }
            guard.done = true;
            if (status == StreamStatus::Closed) co_return;
            throw_end(status);
        }
    }

    // ---- state ----
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
    [[nodiscard]] std::size_t size() const {
        std::lock_guard lock(mutex_);
        return ring_.size();
    }
    /// True once `close()` was called (items may still be queued).
    [[nodiscard]] bool closed() const {
        std::lock_guard lock(mutex_);
        return closed_;
    }
    [[nodiscard]] bool cancelled() const {
        std::lock_guard lock(mutex_);
        return cancelled_;
    }
    /// The counters (a consistent snapshot, taken under the lock).
    [[nodiscard]] TokenChannelStats stats() const {
        std::lock_guard lock(mutex_);
        return TokenChannelStats{pushed_, popped_, discarded_, ring_.size()};
    }

private:
    static constexpr std::size_t stream_batch = 64;
    static constexpr std::size_t initial_ring = 16;
    // Before sleeping on a condition variable a side yields this many times: the other side usually
    // refills (or drains) within microseconds, and a futex sleep + wake costs more than that. At real
    // model speeds (~100 tokens/s) it is a few microseconds of CPU per token.
    static constexpr int spin_before_block = 16;

    struct CancelUnlessDone {
        explicit CancelUnlessDone(TokenChannel* owner) noexcept : channel(owner) {}
        TokenChannel* channel;
        bool done = false;
        CancelUnlessDone(const CancelUnlessDone&) = delete;
        CancelUnlessDone& operator=(const CancelUnlessDone&) = delete;
        ~CancelUnlessDone() {
            if (!done) channel->cancel();
        }
    };

    void throw_end(StreamStatus status) {
        if (status == StreamStatus::Failed) {
            std::exception_ptr error;
            {
                std::lock_guard lock(mutex_);
                error = error_;
            }
            if (error) std::rethrow_exception(error);
        }
        throw Error(to_error_code(status), fmt::format("TokenChannel::stream: {}", status == StreamStatus::Cancelled
                                                                                    ? "the stream was cancelled"
                                                                                    : "the stream ended"));
    }

    // The one wait both sides use (lock held): until `ready()` holds or `deadline` (if any) passes.
    // It yields `spin_before_block` times first, then sleeps on `cv`, counted in `waiters` so that the
    // other side notifies only when someone sleeps. Returns false on timeout (ready() still false).
    template <class Ready>
    bool wait_until_ready(std::unique_lock<std::mutex>& lock, std::condition_variable& cv, std::size_t& waiters,
                          const clock::time_point* deadline, Ready ready) {
        int spins = spin_before_block;
        while (!ready()) {
            if (deadline && clock::now() >= *deadline) return false;
            if (spins-- > 0) {
                lock.unlock();
                std::this_thread::yield();
                lock.lock();
                continue;
            }
            ++waiters;
            if (deadline) {
                cv.wait_until(lock, *deadline);
            } else {
                cv.wait(lock);
            }
            --waiters;
        }
        return true;
    }

    // Registers `ready` on `list` unless `now_ready()` holds (lock held), in which case it is called
    // here after unlocking. The node is allocated before locking.
    template <class F, class Ready>
    Subscription subscribe(detail::ReadyList& list, F&& ready, Ready now_ready) {
        std::shared_ptr<detail::ReadyNode> node = detail::ReadyList::make(detail::ReadyCallback(std::forward<F>(ready)));
        {
            std::lock_guard lock(mutex_);
            if (!now_ready()) return list.add(std::move(node));
        }
        node->fire();
        return {};
    }

    StreamStatus push_impl(T& value, const clock::time_point* deadline) {
        detail::ReadyList::Nodes wake;
        {
            std::unique_lock lock(mutex_);
            const bool ready = wait_until_ready(lock, not_full_, producers_waiting_, deadline,
                                                [this] { return cancelled_ || closed_ || ring_.size() < capacity_; });
            if (!ready) return StreamStatus::Timeout;
            if (cancelled_) return StreamStatus::Cancelled;
            if (closed_) return StreamStatus::Closed;
            ring_.push_back(std::move(value));  // size() < capacity_ here: grows at most up to capacity_
            ++pushed_;
            if (consumers_waiting_ > 0) not_empty_.notify_one();
            if (!readers_.empty()) wake = readers_.take();
        }
        detail::ReadyList::fire_all(wake);
        return StreamStatus::Ok;
    }

    void close_impl(std::exception_ptr error) noexcept {
        detail::ReadyList::Nodes readers, writers;
        {
            std::lock_guard lock(mutex_);
            if (closed_) return;
            closed_ = true;
            error_ = std::move(error);
            not_empty_.notify_all();
            not_full_.notify_all();
            readers = readers_.take();
            writers = writers_.take();
        }
        detail::ReadyList::fire_all(readers);
        detail::ReadyList::fire_all(writers);
    }

    // Invariant (lock held): returns Ok iff ring_.size() > 0 and the channel is not cancelled.
    StreamStatus wait_for_item(std::unique_lock<std::mutex>& lock, const clock::time_point* deadline) {
        const bool ready = wait_until_ready(lock, not_empty_, consumers_waiting_, deadline,
                                            [this] { return cancelled_ || closed_ || ring_.size() > 0; });
        if (!ready) return StreamStatus::Timeout;
        if (cancelled_) return StreamStatus::Cancelled;
        if (ring_.size() > 0) return StreamStatus::Ok;
        return error_ ? StreamStatus::Failed : StreamStatus::Closed;
    }

    Received<T> pop_impl(const clock::time_point* deadline) {
        Received<T> result;
        detail::ReadyList::Nodes wake;
        {
            std::unique_lock lock(mutex_);
            result.status = wait_for_item(lock, deadline);
            if (result.status == StreamStatus::Ok) {
                result.value.emplace(ring_.take_front());
                ++popped_;
                wake = after_take(lock);
            } else if (result.status == StreamStatus::Failed) {
                result.error = error_;
            }
        }
        detail::ReadyList::fire_all(wake);
        return result;
    }

    // Returns the producers' readiness registrations to fire once the lock is released.
    [[nodiscard]] detail::ReadyList::Nodes after_take(std::unique_lock<std::mutex>&) noexcept {
        // Hysteresis: wake a blocked (or registered) producer once half the ring is free, not for every slot.
        const bool wake = capacity_ - ring_.size() >= producer_wake_free_;
        if (wake && producers_waiting_ > 0) not_full_.notify_all();
        if (wake && !writers_.empty()) return writers_.take();
        return {};
    }

    const std::size_t capacity_;
    std::size_t producer_wake_free_ = 1;
    mutable std::mutex mutex_;
    std::condition_variable not_empty_;
    std::condition_variable not_full_;
    // The queued items. The ring starts small and doubles up to capacity_ only when a backlog
    // builds, so thousands of idle streams cost little memory.
    detail::RingBuffer<T> ring_;
    std::size_t producers_waiting_ = 0;
    std::size_t consumers_waiting_ = 0;
    detail::ReadyList readers_;  // on_ready registrations (fired by push, close, cancel)
    detail::ReadyList writers_;  // on_space registrations (fired by pops, close, cancel)
    std::uint64_t pushed_ = 0, popped_ = 0, discarded_ = 0;
    bool closed_ = false;
    bool cancelled_ = false;
    std::exception_ptr error_;
    std::stop_source stop_;
};

/// Runs the producer side on a new `std::jthread`: `produce(stop_token)` returns a range of items
/// (typically a `StreamingGenerator<T>` — the model loop written with `co_yield`); each item is pushed
/// into `channel`, which is closed at the end or closed with the exception `produce` or the range threw.
/// The token is the channel's: it fires when the consumer cancels (disconnect, timeout), and the loop
/// also stops at the next push. Destroying the returned jthread before the end cancels the channel,
/// then joins. The channel must outlive the thread.
///
///     auto model = llmfast::spawn_producer(channel, [&](std::stop_token stop) { return generate(prompt, stop); });
template <class T, class Produce>
    requires std::invocable<Produce&, std::stop_token> &&
             std::ranges::input_range<std::invoke_result_t<Produce&, std::stop_token>> &&
             std::constructible_from<T, std::ranges::range_reference_t<std::invoke_result_t<Produce&, std::stop_token>>>
[[nodiscard]] std::jthread spawn_producer(TokenChannel<T>& channel, Produce produce) {
    return std::jthread([&channel, produce = std::move(produce)](std::stop_token thread_stop) mutable {
        const std::stop_callback on_thread_stop(thread_stop, [&channel]() noexcept { channel.cancel(); });
        try {
            auto&& items = std::invoke(produce, channel.stop_token());
            for (auto&& item : items) {
                if (channel.push(T(std::forward<decltype(item)>(item))) != StreamStatus::Ok) return;
            }
            channel.close();
        } catch (...) {
            channel.close(std::current_exception());
        }
    });
}

/// Limits for a `TimedReceiver`. Every value must be > 0; `max()` means no limit.
struct StreamTimeouts {
    std::chrono::nanoseconds total = std::chrono::nanoseconds::max();       ///< overall deadline, from construction
    std::chrono::nanoseconds first_item = std::chrono::nanoseconds::max();  ///< wait for the first item (TTFT); expiry reports IdleTimeout
    std::chrono::nanoseconds idle = std::chrono::nanoseconds::max();        ///< gap between two items; expiry reports IdleTimeout
};

/// The consumer's side of a channel with an overall deadline and idle timeouts — what the chapter's
/// `stream_with_timeout` meant, done right: on expiry the consumer receives a distinct
/// `DeadlineExceeded` / `IdleTimeout` status (not an in-band marker), the channel is cancelled so the
/// producer is told to stop, and no wait lasts past the deadline.
///
/// Time is read from the injected clock `C`; the blocking wait lasts at most the remaining time by
/// that clock (as steady_clock time). An item that arrives when the clock is already past a limit is
/// not delivered: the limit is reported instead. Dropping the receiver before the end cancels.
/// Owned by one consumer thread.
template <class T, class C = SteadyClock>
class TimedReceiver {
    static_assert(Clock<C>, "llmfast::TimedReceiver<T, C>: C must model llmfast::Clock — it needs nested types "
                            "`duration` and `time_point` and a const `now()` returning a time_point");

public:
    using time_point = typename C::time_point;

    /// Starts the clock of `timeouts.total` now. Throws Error(InvalidArgument) for a limit <= 0.
    explicit TimedReceiver(TokenChannel<T>& channel, StreamTimeouts timeouts = {})
        requires ClockRef<C>::stateless
        : TimedReceiver(ClockRef<C>{}, channel, timeouts) {}
    /// Reads time from `clock` (a stateful one, e.g. ManualClock, must outlive the receiver).
    TimedReceiver(const C& clock, TokenChannel<T>& channel, StreamTimeouts timeouts = {})
        : TimedReceiver(ClockRef<C>{clock}, channel, timeouts) {}
    TimedReceiver(const TimedReceiver&) = delete;
    TimedReceiver& operator=(const TimedReceiver&) = delete;
    ~TimedReceiver() {
        if (!end_) channel_->cancel();  // the consumer left early: stop the producer
    }

    /// The next item (Ok) or the end: Closed, Failed, Cancelled, DeadlineExceeded, IdleTimeout. After
    /// the end, returns the same status again.
    Received<T> next() {
        for (;;) {
            if (end_) return Received<T>{*end_, std::nullopt, error_};
            const time_point now = clock_.now();
            time_point limit = deadline_;
            StreamStatus kind = StreamStatus::DeadlineExceeded;
            const time_point gap_limit = detail::saturating_add(last_, received_any_ ? timeouts_.idle : timeouts_.first_item);
            if (gap_limit < limit) {
                limit = gap_limit;
                kind = StreamStatus::IdleTimeout;
            }
            if (now >= limit) return expire(kind);

            // Wait at most the remaining time (clamped so a "no limit" never overflows steady_clock).
            // `limit - now` is computed only when it is below max_single_wait: it cannot overflow
            // even for a clock whose time_points are negative.
            const std::chrono::nanoseconds remaining =
                detail::saturating_add(now, max_single_wait) <= limit
                    ? max_single_wait
                    : std::chrono::duration_cast<std::chrono::nanoseconds>(limit - now);
            Received<T> got = channel_->pop_for(remaining);
            switch (got.status) {
                case StreamStatus::Ok: {
                    const time_point arrived = clock_.now();
                    if (arrived > limit) return expire(kind);
                    last_ = arrived;
                    received_any_ = true;
                    return got;
                }
                case StreamStatus::Timeout: continue;  // re-read the clock: expired, or a clamped wait
                default:
                    end_ = got.status;
                    error_ = got.error;
                    return got;
            }
        }
    }

    /// Every item as an Ok event, then exactly one end event (Closed included).
    StreamingGenerator<Received<T>> events() {
        for (;;) {
            Received<T> event = next();
            const bool last = event.is_end();
            co_yield std::move(event);
            if (last) co_return;
        }
    }

    /// The items; ends at Closed; rethrows the producer's error; throws Error(DeadlineExceeded),
    /// Error(IdleTimeout) or Error(Cancelled) for those ends.
    StreamingGenerator<T> values() {
        for (;;) {
            Received<T> event = next();
            if (event.status == StreamStatus::Ok) {
                co_yield std::move(*event.value);
                continue;
            }
            if (event.status == StreamStatus::Closed) co_return;
            if (event.status == StreamStatus::Failed && event.error) std::rethrow_exception(event.error);
            throw Error(to_error_code(event.status), fmt_end(event.status));
        }
    }

    [[nodiscard]] time_point deadline() const noexcept { return deadline_; }
    /// The end status once reached (nullopt while the stream runs).
    [[nodiscard]] std::optional<StreamStatus> end_status() const noexcept { return end_; }

private:
    static constexpr std::chrono::nanoseconds max_single_wait = std::chrono::hours(24);

    TimedReceiver(ClockRef<C> clock, TokenChannel<T>& channel, StreamTimeouts timeouts)
        : channel_(&channel), timeouts_(timeouts), clock_(clock) {
        const auto check = [](std::chrono::nanoseconds limit, std::string_view field) {
            if (limit <= std::chrono::nanoseconds::zero())
                throw Error(ErrorCode::InvalidArgument,
                            fmt::format("StreamTimeouts::{} must be > 0 (got {} ns)", field, limit.count()));
        };
        check(timeouts.total, "total");
        check(timeouts.first_item, "first_item");
        check(timeouts.idle, "idle");
        last_ = clock_.now();
        deadline_ = detail::deadline_after(last_, timeouts.total);
    }

    std::string fmt_end(StreamStatus status) const {
        const auto ms = [](std::chrono::nanoseconds d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
        switch (status) {
            case StreamStatus::DeadlineExceeded: return fmt::format("the stream's deadline of {} ms passed", ms(timeouts_.total));
            case StreamStatus::IdleTimeout:
                return received_any_ ? fmt::format("no token within the idle timeout of {} ms", ms(timeouts_.idle))
                                     : fmt::format("no first token within {} ms", ms(timeouts_.first_item));
            case StreamStatus::Cancelled: return "the stream was cancelled";
            default: return fmt::format("the stream ended: {}", to_string(status));
        }
    }

    Received<T> expire(StreamStatus kind) {
        end_ = kind;
        channel_->cancel();  // the producer's stop_token fires; a blocked push returns Cancelled
        return Received<T>{kind, std::nullopt, nullptr};
    }

    TokenChannel<T>* channel_;
    StreamTimeouts timeouts_;
    ClockRef<C> clock_;
    time_point deadline_{};
    time_point last_{};  // construction time, then the arrival of the latest item
    bool received_any_ = false;
    std::optional<StreamStatus> end_;
    std::exception_ptr error_;
};

template <class T>
TimedReceiver(TokenChannel<T>&) -> TimedReceiver<T, SteadyClock>;
template <class T>
TimedReceiver(TokenChannel<T>&, StreamTimeouts) -> TimedReceiver<T, SteadyClock>;
template <class C, class T>
    requires Clock<C>
TimedReceiver(const C&, TokenChannel<T>&) -> TimedReceiver<T, C>;
template <class C, class T>
    requires Clock<C>
TimedReceiver(const C&, TokenChannel<T>&, StreamTimeouts) -> TimedReceiver<T, C>;

namespace detail {
template <class View>
StreamingGenerator<std::string_view> utf8_chunks_impl(View tokens) {
    utf8::Assembler assembler;
    for (auto&& token : tokens) {
        const std::string_view chunk = assembler.push(std::string_view(token));
        if (!chunk.empty()) co_yield std::string_view(chunk);
    }
    const std::string_view tail = assembler.finish();
    if (!tail.empty()) co_yield std::string_view(tail);
}
}  // namespace detail

/// Re-chunks byte-level tokens into text of whole code points: a character split across tokens is
/// held until its last byte arrives; ill-formed bytes become U+FFFD; an incomplete tail at the end is
/// flushed as U+FFFD. Empty chunks are skipped. Each view is valid until the generator resumes.
/// An lvalue range is referenced (keep it alive); an rvalue (e.g. a generator) is moved in.
template <std::ranges::viewable_range R>
    requires std::ranges::input_range<R> && std::convertible_to<std::ranges::range_reference_t<R>, std::string_view>
StreamingGenerator<std::string_view> utf8_chunks(R&& tokens) {
    return detail::utf8_chunks_impl(std::views::all(std::forward<R>(tokens)));
}

/// A summary of one stream's timing.
struct StreamStats {
    std::size_t tokens = 0;
    std::optional<std::chrono::nanoseconds> time_to_first_token;  ///< nullopt: no token arrived
    std::chrono::nanoseconds total{0};                             ///< start to finish (or to now)
    double tokens_per_second = 0;         ///< tokens / total
    double decode_tokens_per_second = 0;  ///< (tokens - 1) / (last arrival - first arrival)
    std::chrono::nanoseconds inter_token_p50{0};
    std::chrono::nanoseconds inter_token_p90{0};
    std::chrono::nanoseconds inter_token_p99{0};
    std::chrono::nanoseconds inter_token_max{0};
};

/// Records one stream's timing: time to first token, inter-token latencies (exact nearest-rank
/// percentiles), tokens per second and totals, read from an injectable clock; `stats()` summarises.
/// Thread-safety: owned by one thread; not thread-safe (not even its const calls, which sort lazily).
///
///     llmfast::StreamRecorder recorder;   // starts now (the request was sent)
///     for (auto text : stream) { recorder.record_token(); send(text); }
///     recorder.finish();
///     StreamStats s = recorder.stats();   // s.time_to_first_token, s.inter_token_p99, ...
template <class C = SteadyClock>
class StreamRecorder {
    static_assert(Clock<C>, "llmfast::StreamRecorder<C>: C must model llmfast::Clock — it needs nested types "
                            "`duration` and `time_point` and a const `now()` returning a time_point");

public:
    using time_point = typename C::time_point;

    StreamRecorder()
        requires ClockRef<C>::stateless
    {
        start();
    }
    /// Reads time from `clock` (a stateful one, e.g. ManualClock, must outlive the recorder).
    explicit StreamRecorder(const C& clock) : clock_(clock) { start(); }

    /// (Re)starts the measurement now, forgetting everything recorded.
    void start() {
        start_ = clock_.now();
        has_first_ = false;
        first_ = start_;
        last_ = start_;
        has_finish_ = false;
        finish_ = start_;
        tokens_ = 0;
        gaps_.clear();
        sorted_.clear();
    }

    /// `count` tokens arrived now (one arrival; its gap to the previous arrival is one sample).
    void record_token(std::size_t count = 1) {
        const time_point now = clock_.now();
        if (has_first_) {
            gaps_.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(now - last_));
        } else {
            has_first_ = true;
            first_ = now;
        }
        last_ = now;
        tokens_ += count;
    }

    /// The stream ended now (later calls keep the first end).
    void finish() {
        if (!has_finish_) {
            has_finish_ = true;
            finish_ = clock_.now();
        }
    }

    [[nodiscard]] std::size_t token_count() const noexcept { return tokens_; }
    [[nodiscard]] std::optional<std::chrono::nanoseconds> time_to_first_token() const {
        if (!has_first_) return std::nullopt;
        return std::chrono::duration_cast<std::chrono::nanoseconds>(first_ - start_);
    }
    /// Start to finish, or to now while the stream runs.
    [[nodiscard]] std::chrono::nanoseconds elapsed() const {
        return std::chrono::duration_cast<std::chrono::nanoseconds>((has_finish_ ? finish_ : clock_.now()) - start_);
    }
    /// Nearest-rank percentile (0..100) of the gaps between arrivals; zero with fewer than 2 arrivals.
    /// Exact: the gaps are sorted once, lazily (each new gap is merged in at the next query).
    [[nodiscard]] std::chrono::nanoseconds inter_token_percentile(double percent) const {
        return detail::nearest_rank(sorted_gaps(), percent);
    }
    [[nodiscard]] const std::vector<std::chrono::nanoseconds>& inter_token_gaps() const noexcept { return gaps_; }

    [[nodiscard]] StreamStats stats() const {
        StreamStats s;
        s.tokens = tokens_;
        s.time_to_first_token = time_to_first_token();
        s.total = elapsed();
        if (s.total.count() > 0) s.tokens_per_second = static_cast<double>(tokens_) / seconds(s.total);
        if (has_first_ && last_ > first_ && tokens_ > 1) {
            s.decode_tokens_per_second = static_cast<double>(tokens_ - 1) /
                                         seconds(std::chrono::duration_cast<std::chrono::nanoseconds>(last_ - first_));
        }
        if (!gaps_.empty()) {
            const std::span<const std::chrono::nanoseconds> sorted = sorted_gaps();
            s.inter_token_p50 = detail::nearest_rank(sorted, 50);
            s.inter_token_p90 = detail::nearest_rank(sorted, 90);
            s.inter_token_p99 = detail::nearest_rank(sorted, 99);
            s.inter_token_max = sorted.back();
        }
        return s;
    }

private:
    static double seconds(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }
    // gaps_ in ascending order: the gaps recorded since the last query are sorted and merged in.
    std::span<const std::chrono::nanoseconds> sorted_gaps() const {
        if (sorted_.size() < gaps_.size()) {
            std::vector<std::chrono::nanoseconds> fresh(gaps_.begin() + static_cast<std::ptrdiff_t>(sorted_.size()), gaps_.end());
            std::sort(fresh.begin(), fresh.end());
            std::vector<std::chrono::nanoseconds> merged(gaps_.size());
            // (std::merge into a new buffer: std::inplace_merge's temporary buffer is deprecated API)
            std::merge(sorted_.begin(), sorted_.end(), fresh.begin(), fresh.end(), merged.begin());
            sorted_.swap(merged);
        }
        return sorted_;
    }

    ClockRef<C> clock_;
    time_point start_{};
    // Plain flags, not std::optional<time_point>: g++ 12 warns maybe-uninitialized through optional.
    bool has_first_ = false;
    time_point first_{};
    time_point last_{};
    bool has_finish_ = false;
    time_point finish_{};
    std::size_t tokens_ = 0;
    std::vector<std::chrono::nanoseconds> gaps_;  // in arrival order
    mutable std::vector<std::chrono::nanoseconds> sorted_;  // a sorted copy of a prefix of gaps_ (all after a query)
};

template <class C>
    requires Clock<C>
StreamRecorder(const C&) -> StreamRecorder<C>;

LLMFAST_END_NAMESPACE
