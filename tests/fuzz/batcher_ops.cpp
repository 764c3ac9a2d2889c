// Fuzz target: a random sequence of batcher operations (submit in both forms, try_submit in both forms,
// priorities, costs up to SIZE_MAX, timeouts and deadlines at the extremes of the duration range, stop
// tokens, clock moves, close, a submit blocked on a full queue that another thread ends) against a
// DynamicBatcher on a ManualClock, with a handler that sometimes throws or returns too few responses.
// Asserts batcher.hpp's documented contract on every input:
//   - every accepted request completes exactly once (all by the time close() returns), a rejected one never;
//     it completes with its own response, or with a documented code that fits what happened to it:
//     HandlerFailed / Ok only if it reached the handler, DeadlineExceeded only if it did not and the clock
//     passed its deadline, Cancelled only if it did not and its stop token fired;
//   - a batch holds 1..max_batch_size requests, and at most max_batch_cost unless it is a single request
//     (the sums here saturate, so costs near SIZE_MAX are checked too);
//   - within a batch, priorities never increase and, within a priority, submission order is kept;
//   - a request never reaches the handler twice, and a request cancelled before submission never does;
//   - liveness ("settle"): with the clock frozen, the batcher comes to rest only when what is queued is not
//     ready by the documented rules (size, summed cost, max_wait, deadline, stop token, closing); a batch
//     that is ready must be dispatched (bounded by a generous 10 s of real time);
//   - the status of every submit / try_submit is the one the documented rules give (InvalidArgument,
//     DeadlineExceeded, Cancelled, Closed, QueueFull, Ok), computed by a reference from the request and the
//     batcher's known state (exactly when the batcher is at rest, as a superset otherwise);
//   - a submit blocked on a full queue ends at its deadline (DeadlineExceeded), its stop token (Cancelled) or
//     close() (Closed) — never QueueFull while block_when_full_for has not run out — within 10 s;
//   - try_submit moves the request only on Ok; the metrics agree with what the fuzzer counted.
#include <llmfast/batcher.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

namespace {

using llmfast::ErrorCode;
using Clock = llmfast::ManualClock;
using TimePoint = Clock::time_point;
using ns = std::chrono::nanoseconds;
constexpr std::size_t size_max = std::numeric_limits<std::size_t>::max();
constexpr std::size_t half = std::size_t{1} << (std::numeric_limits<std::size_t>::digits - 1);

void check_at(bool ok, int line) {
    if (!ok) {
        std::fprintf(stderr, "batcher_ops: invariant at line %d violated\n", line);
        std::abort();
    }
}
#define check(ok) check_at((ok), __LINE__)

struct Request {
    int id;
    int priority;
    std::size_t cost;
    std::string tag;  // long enough to be heap-allocated: a moved-from request is visible
};
const std::string k_tag = "a request tag longer than the small-string buffer";

struct Input {
    const std::uint8_t* data;
    std::size_t size;
    std::size_t pos = 0;
    std::uint8_t next() { return pos < size ? data[pos++] : 0; }
    bool done() const { return pos >= size; }
};

// The reference arithmetic, independent of the header's.
std::size_t add_sat(std::size_t a, std::size_t b) { return a > size_max - b ? size_max : a + b; }
TimePoint add_sat(TimePoint t, ns d) {
    ns::rep out = 0;
    if (__builtin_add_overflow(t.time_since_epoch().count(), d.count(), &out))
        return d.count() > 0 ? TimePoint::max() : TimePoint::min();
    return TimePoint(ns(out));
}

struct Track {
    std::atomic<int> completions{0};
    std::atomic<int> handled{0};
    bool accepted = false;
    bool cancelled_before = false;
    bool is_future = false;
    std::size_t future_index = 0;
    std::size_t cost = 0;
    TimePoint deadline = TimePoint::max();
    TimePoint enqueued_lo{}, enqueued_hi{};  // bounds of the enqueue time (equal unless another thread submitted)
    std::stop_token token{};
};

struct Counts {
    std::atomic<std::uint64_t> ok{0}, failed{0}, expired{0}, cancelled{0}, callback_errors{0};
    std::uint64_t rejected = 0, refused_expired = 0, refused_cancelled = 0;
};

struct Context {
    Clock clock;
    std::vector<Track> tracks;
    Counts counts;
    explicit Context(std::size_t n, ns start) : clock(start), tracks(n) {}

    // A completion (callback or future): exactly once, and the code fits what happened to the request.
    void complete(int id, ErrorCode code, std::optional<int> value) {
        Track& t = tracks[static_cast<std::size_t>(id)];
        check(t.completions.fetch_add(1) == 0);
        switch (code) {
            case ErrorCode::Ok:
                check(t.handled.load() == 1);
                check(value && *value == id);
                ++counts.ok;
                break;
            case ErrorCode::HandlerFailed:
                check(t.handled.load() == 1);
                ++counts.failed;
                break;
            case ErrorCode::DeadlineExceeded:
                check(t.handled.load() == 0);
                check(clock.now() >= t.deadline);  // never early (the clock only moves forward here)
                ++counts.expired;
                break;
            case ErrorCode::Cancelled:
                check(t.handled.load() == 0);
                check(t.token.stop_requested());
                ++counts.cancelled;
                break;
            default: check(false);
        }
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace std::chrono_literals;
    if (size < 9) return 0;
    Input in{data, size};
    llmfast::BatcherOptions options;
    const std::uint8_t size_byte = in.next();
    options.max_batch_size = size_byte >= 240 ? size_max : 1 + size_byte % 8;
    const std::uint8_t cost_byte = in.next();
    options.max_batch_cost = cost_byte >= 200   ? size_max
                             : cost_byte >= 180 ? half
                             : cost_byte >= 170 ? size_max - 1
                                                : 1 + cost_byte % 20;
    const std::uint8_t wait_byte = in.next();
    options.max_wait = wait_byte >= 240 ? ns::max() : ns(std::chrono::milliseconds(wait_byte % 4));
    options.max_queue = 1 + in.next() % 32;
    options.workers = 1 + in.next() % 2;
    options.priority_levels = 1 + in.next() % 4;
    const std::uint8_t block_byte = in.next();
    // 0: fail at once; 1 ms of real time; "unbounded" (max, which overflowed before) and 1 h: a blocked submit
    // must be ended by another bound (its deadline, stop token, close), so only the contended op may block.
    options.block_when_full_for = block_byte < 128 ? ns::zero()
                                  : block_byte < 160 ? ns(1ms)
                                  : block_byte < 224 ? ns::max()
                                                     : ns(1h);
    const bool block_unbounded = options.block_when_full_for > ns(1s);
    const std::uint8_t start_byte = in.next();
    const ns start = start_byte < 64    ? ns::zero()
                     : start_byte < 128 ? ns(1h)
                     : start_byte < 192 ? ns(-1h)
                     : start_byte < 224 ? ns::max() - ns(1h)  // the fuzzer moves the clock by far less than 1 h
                                        : ns::min() + ns(1h);

    constexpr std::size_t max_requests = 256;
    Context ctx(max_requests, start);
    Clock& clock = ctx.clock;
    std::vector<std::future<int>> futures;
    std::vector<std::stop_source> sources;
    int next_id = 0;
    bool closed = false;
    bool known = true;  // the batcher is at rest and the fuzzer knows its queue exactly
    int settles = 0;
    std::uint64_t expected_callback_errors = 0;

    {
        using Batcher = llmfast::DynamicBatcher<Request, int, llmfast::BatchFunction<Request, int>, Clock>;
        const std::size_t max_size = options.max_batch_size;
        const std::size_t max_cost = options.max_batch_cost;
        Batcher batcher(
            clock,
            [&](std::span<Request> batch) -> std::vector<int> {
                check(!batch.empty() && batch.size() <= max_size);
                std::size_t cost = 0;
                for (std::size_t i = 0; i < batch.size(); ++i) {
                    const Request& r = batch[i];
                    Track& t = ctx.tracks[static_cast<std::size_t>(r.id)];
                    check(t.handled.fetch_add(1) == 0);
                    check(!t.cancelled_before);
                    check(t.completions.load() == 0);
                    check(r.tag == k_tag);
                    cost = add_sat(cost, r.cost);
                    if (i > 0) {
                        const Request& prev = batch[i - 1];
                        check(prev.priority >= r.priority);
                        if (prev.priority == r.priority) check(prev.id < r.id);
                    }
                }
                check(batch.size() == 1 || cost <= max_cost);
                if (batch[0].id % 17 == 5) throw std::runtime_error("injected");
                std::vector<int> out;
                for (const Request& r : batch) out.push_back(r.id);
                if (batch[0].id % 19 == 7) out.pop_back();
                return out;
            },
            options, [](const Request& r) { return r.cost; });

        // The requests accepted and neither dispatched nor completed: a superset of what is queued now.
        auto pending = [&] {
            std::vector<int> ids;
            for (int id = 0; id < next_id; ++id) {
                const Track& t = ctx.tracks[static_cast<std::size_t>(id)];
                if (!t.accepted || t.handled.load() != 0) continue;
                if (t.is_future ? futures[t.future_index].wait_for(0s) == std::future_status::ready
                                : t.completions.load() != 0)
                    continue;
                ids.push_back(id);
            }
            return ids;
        };

        // Waits until the batcher is at rest, which the contract allows only when what is queued is not
        // ready; returns false when that cannot be decided exactly (an enqueue time known only within bounds).
        auto settle = [&]() -> bool {
            const auto give_up = std::chrono::steady_clock::now() + 10s;
            for (;;) {
                const llmfast::BatcherStats m = batcher.stats();
                if (m.batches_running == 0) {
                    const std::vector<int> queued = pending();
                    if (queued.size() == m.queue_depth) {
                        if (queued.empty()) return true;
                        const TimePoint now = clock.now();
                        bool must_move = closed || options.max_wait == ns::zero() || queued.size() >= max_size;
                        std::size_t cost = 0;
                        TimePoint oldest_lo = TimePoint::max(), oldest_hi = TimePoint::max();
                        for (int id : queued) {
                            const Track& t = ctx.tracks[static_cast<std::size_t>(id)];
                            cost = add_sat(cost, t.cost);
                            must_move = must_move || t.deadline <= now || t.token.stop_requested();
                            oldest_lo = std::min(oldest_lo, t.enqueued_lo);
                            oldest_hi = std::min(oldest_hi, t.enqueued_hi);
                        }
                        must_move = must_move || cost >= max_cost || add_sat(oldest_hi, options.max_wait) <= now;
                        if (!must_move) return add_sat(oldest_lo, options.max_wait) > now;
                    }
                }
                // A ready batch (or an expired / cancelled request) that is never acted on is a hang.
                check(std::chrono::steady_clock::now() < give_up);
                std::this_thread::sleep_for(50us);
            }
        };

        // The documented status of a submit, given what the fuzzer knows; `allowed` lists every code the
        // rules permit (one when the state is known exactly).
        auto expect = [&](int priority, TimePoint deadline, const std::stop_token& token, TimePoint now) {
            std::vector<ErrorCode> allowed;
            if (priority < 0 || static_cast<std::size_t>(priority) >= options.priority_levels) {
                allowed.push_back(ErrorCode::InvalidArgument);
            } else if (deadline <= now || token.stop_requested()) {
                if (deadline <= now) allowed.push_back(ErrorCode::DeadlineExceeded);
                if (token.stop_requested()) allowed.push_back(ErrorCode::Cancelled);
            } else if (closed) {
                allowed.push_back(ErrorCode::Closed);
            } else if (pending().size() >= options.max_queue) {
                allowed.push_back(ErrorCode::QueueFull);
                if (!known) allowed.push_back(ErrorCode::Ok);  // a worker may have made room meanwhile
            } else {
                allowed.push_back(ErrorCode::Ok);
            }
            return allowed;
        };
        auto is_allowed = [](const std::vector<ErrorCode>& allowed, ErrorCode status) {
            for (ErrorCode c : allowed)
                if (c == status) return true;
            return false;
        };
        auto count_refusal = [&](ErrorCode status) {
            if (status == ErrorCode::QueueFull || status == ErrorCode::Closed) ++ctx.counts.rejected;
            if (status == ErrorCode::DeadlineExceeded) ++ctx.counts.refused_expired;
            if (status == ErrorCode::Cancelled) ++ctx.counts.refused_cancelled;
        };

        while (!in.done() && static_cast<std::size_t>(next_id) < max_requests) {
            const std::uint8_t op = in.next();
            switch (op % 10) {
                case 0:
                case 1:
                case 2:
                case 5:
                case 8:
                case 9: {
                    const int id = next_id++;
                    Track& t = ctx.tracks[static_cast<std::size_t>(id)];
                    const std::uint8_t priority_byte = in.next();
                    const int priority = priority_byte == 255 ? -1 : priority_byte % 5;  // 4 or -1 may be invalid
                    const std::uint8_t cost_pick = in.next();
                    const std::size_t cost_table[] = {size_max, size_max - 1, half, half - 1, half + 1,
                                                      max_cost, max_cost - 1, add_sat(max_cost, 1)};
                    t.cost = cost_pick < 160 ? std::size_t{cost_pick} % 12 : cost_table[cost_pick % 8];
                    llmfast::SubmitOptions<Clock> submit_options;
                    submit_options.priority = priority;
                    const std::uint8_t timeout = in.next();
                    if (timeout < 64) submit_options.timeout = std::chrono::microseconds(timeout * 100);
                    else if (timeout < 72) submit_options.timeout = ns::max();
                    else if (timeout < 80) submit_options.timeout = ns::min();
                    else if (timeout < 88) submit_options.timeout = ns(-1);
                    else if (timeout < 96) submit_options.timeout = ns(-1h);
                    const std::uint8_t deadline_byte = in.next();
                    if (deadline_byte < 8) submit_options.deadline = TimePoint::min();
                    else if (deadline_byte < 16) submit_options.deadline = clock.now();
                    else if (deadline_byte < 48)
                        submit_options.deadline = add_sat(clock.now(), std::chrono::microseconds(deadline_byte * 100));
                    std::stop_source* source = nullptr;
                    if (op % 10 == 2 || op % 10 == 9) {
                        sources.emplace_back();
                        source = &sources.back();
                        submit_options.stop_token = source->get_token();
                        if (op % 10 == 2 && in.next() % 4 == 0) {
                            source->request_stop();
                            t.cancelled_before = true;
                        }
                    }
                    t.token = submit_options.stop_token;
                    const TimePoint now = clock.now();
                    t.deadline = submit_options.deadline;
                    if (submit_options.timeout) t.deadline = std::min(t.deadline, add_sat(now, *submit_options.timeout));
                    t.enqueued_lo = t.enqueued_hi = now;
                    const std::vector<ErrorCode> allowed = expect(priority, t.deadline, t.token, now);
                    const bool may_block = is_allowed(allowed, ErrorCode::QueueFull) && block_unbounded;
                    Context* c = &ctx;
                    const bool throws = id % 23 == 11;
                    auto callback = [c, id, throws](llmfast::BatchResult<int>&& r) {
                        c->complete(id, r.error(), r.ok() ? std::optional<int>(r.value()) : std::nullopt);
                        if (throws) {
                            ++c->counts.callback_errors;
                            throw std::runtime_error("callback");
                        }
                    };
                    Request request{id, priority, t.cost, k_tag};
                    ErrorCode status = ErrorCode::Ok;

                    if (op % 10 == 9 || may_block) {
                        if (!may_block) {
                            // Not a submit that could block: an ordinary callback submit.
                            status = batcher.try_submit(std::move(request), submit_options, callback);
                            check(is_allowed(allowed, status));
                        } else {
                            // Contended: another thread submits into the full queue and blocks; this one ends
                            // the wait with one of its bounds. A deadline (absolute: the bound holds even if the
                            // clock moves before that thread starts) or the stop token or close().
                            const std::uint8_t action = in.next() % 3;
                            const auto step = std::chrono::microseconds(50 * (1 + in.next()));
                            if (action == 0) submit_options.deadline = add_sat(now, step);
                            if (action == 1 && source == nullptr) {
                                sources.emplace_back();
                                source = &sources.back();
                                submit_options.stop_token = source->get_token();
                            }
                            t.token = submit_options.stop_token;
                            t.deadline = submit_options.deadline;
                            if (submit_options.timeout)
                                t.deadline = std::min(t.deadline, add_sat(now, *submit_options.timeout));
                            auto blocked = std::async(std::launch::async, [&, callback]() mutable {
                                return batcher.try_submit(std::move(request), submit_options, std::move(callback));
                            });
                            if (blocked.wait_for(0s) != std::future_status::ready) std::this_thread::yield();
                            std::vector<ErrorCode> ends{ErrorCode::Ok};
                            if (action == 0) {
                                clock.advance(step);
                                ends.push_back(ErrorCode::DeadlineExceeded);
                            } else if (action == 1) {
                                source->request_stop();
                                ends.push_back(ErrorCode::Cancelled);
                            } else {
                                batcher.close();
                                closed = true;
                                ends.push_back(ErrorCode::Closed);
                            }
                            // Its bound fired: the wait ends (10 s of real time is generous), never with QueueFull.
                            check(blocked.wait_for(10s) == std::future_status::ready);
                            status = blocked.get();
                            check(is_allowed(ends, status));
                            t.enqueued_hi = clock.now();
                        }
                    } else if (op % 10 == 1 || op % 10 == 8) {
                        t.is_future = true;
                        if (op % 10 == 1) {
                            try {
                                futures.push_back(batcher.submit(request, submit_options));
                            } catch (const llmfast::Error& e) {
                                status = e.code();
                            }
                        } else {
                            llmfast::TrySubmitResult<int> result = batcher.try_submit(std::move(request), submit_options);
                            status = result.status;
                            check(result.future.valid() == (status == ErrorCode::Ok));
                            if (status == ErrorCode::Ok) futures.push_back(std::move(result.future));
                            else check(request.tag == k_tag);  // moved only on Ok
                        }
                        t.future_index = futures.size() - (status == ErrorCode::Ok ? 1 : 0);
                        check(is_allowed(allowed, status));
                    } else if (op % 10 == 5) {
                        status = batcher.try_submit(std::move(request), submit_options, callback);
                        check(is_allowed(allowed, status));
                        if (status != ErrorCode::Ok) check(request.tag == k_tag);  // moved only on Ok
                    } else {
                        try {
                            batcher.submit(request, submit_options, callback);
                        } catch (const llmfast::Error& e) {
                            status = e.code();
                        }
                        check(is_allowed(allowed, status));
                    }
                    t.accepted = status == ErrorCode::Ok;
                    if (t.accepted) {
                        known = false;
                        if (!t.is_future && throws) ++expected_callback_errors;
                    } else {
                        count_refusal(status);
                    }
                    break;
                }
                case 3:
                    if (!sources.empty()) {
                        sources[in.next() % sources.size()].request_stop();
                        known = false;
                    }
                    break;
                case 4:
                    clock.advance(std::chrono::microseconds(in.next() * 50));
                    known = false;
                    break;
                case 6:
                    if (settles < 64) {  // each costs a few hundred microseconds of real time
                        ++settles;
                        known = settle();
                    }
                    break;
                case 7:
                    if (in.next() % 8 == 0) {
                        batcher.close();
                        closed = true;
                        known = true;  // drained and joined
                    }
                    break;
            }
        }
        batcher.close();
        for (int id = 0; id < next_id; ++id) {
            const Track& t = ctx.tracks[static_cast<std::size_t>(id)];
            if (!t.accepted || !t.is_future) continue;
            std::future<int>& future = futures[t.future_index];
            check(future.wait_for(0s) == std::future_status::ready);
            try {
                const int value = future.get();
                ctx.complete(id, ErrorCode::Ok, value);
            } catch (const llmfast::Error& e) {
                ctx.complete(id, e.code(), std::nullopt);
            }
        }
        const llmfast::BatcherStats m = batcher.stats();
        std::uint64_t accepted = 0, handled = 0;
        for (int id = 0; id < next_id; ++id) {
            const Track& t = ctx.tracks[static_cast<std::size_t>(id)];
            accepted += t.accepted ? 1U : 0U;
            handled += static_cast<std::uint64_t>(t.handled.load());
        }
        check(m.queue_depth == 0 && m.batches_running == 0);
        check(m.accepted == accepted);
        check(m.dispatched == handled);
        check(m.succeeded == ctx.counts.ok.load());
        check(m.failed == ctx.counts.failed.load());
        check(m.expired == ctx.counts.expired.load() + ctx.counts.refused_expired);
        check(m.cancelled == ctx.counts.cancelled.load() + ctx.counts.refused_cancelled);
        check(m.rejected == ctx.counts.rejected);
        check(m.callback_errors == expected_callback_errors);
        check(ctx.counts.callback_errors.load() == expected_callback_errors);
        std::uint64_t in_histogram = 0;
        for (std::size_t n = 1; n < m.batch_size_histogram.size(); ++n) in_histogram += m.batch_size_histogram[n] * n;
        if (max_size <= 1024) check(in_histogram == m.dispatched);
        check(m.batch_size_histogram[0] == 0);
    }
    for (int id = 0; id < next_id; ++id) {
        const Track& t = ctx.tracks[static_cast<std::size_t>(id)];
        check(t.completions.load() == (t.accepted ? 1 : 0));
        check(t.handled.load() <= (t.accepted ? 1 : 0));
    }
    return 0;
}
