// benchmarks/batcher_bench.cpp — DynamicBatcher against a port of the chapter's batcher.
//
// The baseline (ChapterBatcher) is the chapter's Python design ported directly: a mutex-guarded vector; the
// producer that fills a batch swaps it out and starts a task (a thread) to run it; with the one fix the
// comparison needs — a timer thread that flushes an under-full batch after max_wait (the chapter's sketch stored
// max_wait_ms and never used it, so a trickle would wait forever).
//
// 1. throughput with a no-op handler, max_batch_size 64, 1 and 2 producers, future and callback forms;
// 2. deadline accuracy under a trickle (one request every 5 ms, max_wait 1 ms): lateness after max_wait;
// 3. the batching gain: a simulated backend (one batch at a time, costing fixed + per_item * n, slept),
//    64 closed-loop callers, batched through DynamicBatcher vs one backend call per request.
//
//     ./build/bench/benchmarks/batcher_bench [--quick] [--rounds N]
#include <llmfast/batcher.hpp>

#include "bench_common.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <future>
#include <mutex>
#include <span>
#include <string_view>
#include <thread>
#include <vector>

#include <sys/resource.h>

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// ---- the baseline: the chapter's design, ported ----------------------------------------------------------
template <class Req, class Resp>
class ChapterBatcher {
public:
    using Handler = std::function<std::vector<Resp>(std::span<Req>)>;
    using Callback = std::function<void(Resp)>;

    ChapterBatcher(Handler handler, std::size_t max_batch_size, std::chrono::nanoseconds max_wait)
        : handler_(std::move(handler)), max_batch_size_(max_batch_size), max_wait_(max_wait),
          timer_([this] { timer_loop(); }) {}

    ~ChapterBatcher() {
        {
            std::lock_guard lock(mutex_);
            stop_ = true;
        }
        cv_.notify_all();
        timer_.join();
        flush();
        std::unique_lock lock(tasks_mutex_);
        tasks_cv_.wait(lock, [&] { return tasks_ == 0; });
    }

    std::future<Resp> submit(Req request) {
        std::promise<Resp> promise;
        auto future = promise.get_future();
        add(Item{std::move(request), std::move(promise), {}});
        return future;
    }
    void submit(Req request, Callback callback) { add(Item{std::move(request), {}, std::move(callback)}); }

    void flush() {
        std::vector<Item> batch;
        {
            std::lock_guard lock(mutex_);
            batch.swap(queue_);
        }
        if (!batch.empty()) spawn(std::move(batch));
    }

private:
    struct Item {
        Req request;
        std::promise<Resp> promise;
        Callback callback;  // set for the callback form
    };

    void add(Item item) {
        std::vector<Item> batch;
        bool first = false;
        {
            std::lock_guard lock(mutex_);
            if (queue_.empty()) {
                oldest_ = Clock::now();
                first = true;
            }
            queue_.push_back(std::move(item));
            if (queue_.size() >= max_batch_size_) batch.swap(queue_);
        }
        if (first) cv_.notify_one();
        if (!batch.empty()) spawn(std::move(batch));  // asyncio.create_task(self._process_batch(batch))
    }

    void spawn(std::vector<Item> batch) {
        {
            std::lock_guard lock(tasks_mutex_);
            ++tasks_;
        }
        std::thread([this, batch = std::move(batch)]() mutable {
            process(batch);
            std::lock_guard lock(tasks_mutex_);
            if (--tasks_ == 0) tasks_cv_.notify_all();
        }).detach();
    }

    void process(std::vector<Item>& batch) {
        std::vector<Req> requests;
        requests.reserve(batch.size());
        for (Item& item : batch) requests.push_back(std::move(item.request));
        try {
            std::vector<Resp> responses = handler_(std::span<Req>(requests));
            for (std::size_t i = 0; i < batch.size(); ++i) {
                if (batch[i].callback)
                    batch[i].callback(std::move(responses[i]));
                else
                    batch[i].promise.set_value(std::move(responses[i]));
            }
        } catch (...) {
            for (Item& item : batch)
                if (!item.callback) item.promise.set_exception(std::current_exception());
        }
    }

    // The fix: flush an under-full batch once its oldest request waited max_wait.
    void timer_loop() {
        std::unique_lock lock(mutex_);
        while (!stop_) {
            if (queue_.empty()) {
                cv_.wait(lock);
                continue;
            }
            const auto due = oldest_ + max_wait_;
            if (Clock::now() < due) {
                cv_.wait_until(lock, due);
                continue;
            }
            std::vector<Item> batch;
            batch.swap(queue_);
            lock.unlock();
            spawn(std::move(batch));
            lock.lock();
        }
    }

    Handler handler_;
    std::size_t max_batch_size_;
    std::chrono::nanoseconds max_wait_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::vector<Item> queue_;
    Clock::time_point oldest_{};
    bool stop_ = false;
    std::mutex tasks_mutex_;
    std::condition_variable tasks_cv_;
    std::size_t tasks_ = 0;
    std::thread timer_;
};

// ---- 1. throughput -------------------------------------------------------------------------------------
std::vector<int> noop_handler(std::span<int> batch) { return std::vector<int>(batch.begin(), batch.end()); }

// Completion counter the callbacks bump; the measuring thread waits until it reaches the total.
struct Done {
    std::atomic<std::size_t> count{0};
    void wait_for(std::size_t total) const {
        while (count.load(std::memory_order_acquire) < total) std::this_thread::yield();
    }
};

// CPU time of the whole process (all threads), user + system. On a shared machine wall-clock
// throughput also measures how much of the machine the scheduler gave us (a design with more runnable
// threads gets more), so the CPU cost per request is reported too.
double process_cpu_seconds() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6; };
    return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}
double last_cpu_ns_per_request = 0;  // set by run_throughput

// Requests/s for `producers` threads each submitting `per_producer` requests (open loop).
template <class SubmitFuture, class SubmitCallback>
double run_throughput(int producers, std::size_t per_producer, bool callback_form, SubmitFuture&& submit_future,
                      SubmitCallback&& submit_callback) {
    Done done;
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    std::vector<std::vector<std::future<int>>> futures(static_cast<std::size_t>(producers));
    for (int p = 0; p < producers; ++p) {
        threads.emplace_back([&, p] {
            auto& mine = futures[static_cast<std::size_t>(p)];
            if (!callback_form) mine.reserve(per_producer);
            while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
            for (std::size_t i = 0; i < per_producer; ++i) {
                if (callback_form)
                    submit_callback(static_cast<int>(i), done);
                else
                    mine.push_back(submit_future(static_cast<int>(i)));
            }
            if (!callback_form)
                for (auto& f : mine) llmfast::bench::keep(f.get());
        });
    }
    const double start = llmfast::bench::now_seconds();
    const double cpu_start = process_cpu_seconds();
    go.store(true, std::memory_order_release);
    for (auto& t : threads) t.join();
    if (callback_form) done.wait_for(per_producer * static_cast<std::size_t>(producers));
    const double seconds = llmfast::bench::now_seconds() - start;
    const double requests = static_cast<double>(per_producer) * producers;
    last_cpu_ns_per_request = (process_cpu_seconds() - cpu_start) * 1e9 / requests;
    return requests / seconds;
}

double ours_throughput(int producers, std::size_t per_producer, bool callback_form) {
    llmfast::DynamicBatcher<int, int> batcher(noop_handler, {.max_batch_size = 64,
                                                             .max_wait = 100us,
                                                             .max_queue = per_producer * static_cast<std::size_t>(producers) + 1});
    return run_throughput(
        producers, per_producer, callback_form, [&](int v) { return batcher.submit(v); },
        [&](int v, Done& done) {
            batcher.submit(v, {}, [&done](llmfast::BatchResult<int>&& r) {
                llmfast::bench::keep(r.ok());
                done.count.fetch_add(1, std::memory_order_release);
            });
        });
}

double seed_throughput(int producers, std::size_t per_producer, bool callback_form) {
    ChapterBatcher<int, int> batcher(noop_handler, 64, 100us);
    return run_throughput(
        producers, per_producer, callback_form, [&](int v) { return batcher.submit(v); },
        [&](int v, Done& done) {
            batcher.submit(v, [&done](int r) {
                llmfast::bench::keep(r);
                done.count.fetch_add(1, std::memory_order_release);
            });
        });
}

// ---- 2. deadline accuracy ------------------------------------------------------------------------------
// Lateness (µs) of each dispatch after submit + max_wait, one request every `gap`.
template <class Make>
std::vector<double> trickle_lateness(int requests, std::chrono::microseconds gap, std::chrono::microseconds max_wait,
                                     Make&& make_and_run) {
    std::vector<double> lateness;
    lateness.reserve(static_cast<std::size_t>(requests));
    std::mutex mutex;
    // The handler receives the submit time point (as ns since epoch) and records its own lateness.
    auto handler = [&](std::span<long long> batch) {
        const auto now = Clock::now().time_since_epoch();
        std::lock_guard lock(mutex);
        for (long long submitted : batch) {
            const auto late = now - std::chrono::nanoseconds(submitted) - max_wait;
            lateness.push_back(std::chrono::duration<double, std::micro>(late).count());
        }
        return std::vector<int>(batch.size(), 0);
    };
    make_and_run(handler, [&](auto&& submit) {
        auto next = Clock::now();
        for (int i = 0; i < requests; ++i) {
            std::this_thread::sleep_until(next);
            submit(static_cast<long long>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count()));
            next += gap;
        }
    });
    return lateness;
}

// ---- 3. simulated backend ------------------------------------------------------------------------------
struct Backend {
    std::chrono::microseconds fixed;
    std::chrono::microseconds per_item;
    std::mutex device{};  // one batch on the device at a time
    std::vector<int> run(std::span<int> batch) {
        std::lock_guard lock(device);
        std::this_thread::sleep_for(fixed + per_item * static_cast<long>(batch.size()));
        return std::vector<int>(batch.begin(), batch.end());
    }
};

struct LoadResult {
    double throughput = 0;  // req/s
    double p50_ms = 0, p99_ms = 0;
};

// `callers` closed-loop threads for `duration`; `call(i)` performs one request and blocks for its answer.
template <class Call>
LoadResult closed_loop(int callers, std::chrono::milliseconds duration, Call&& call) {
    std::vector<std::vector<double>> latencies(static_cast<std::size_t>(callers));
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    const double start = llmfast::bench::now_seconds();
    for (int c = 0; c < callers; ++c) {
        threads.emplace_back([&, c] {
            while (!stop.load(std::memory_order_relaxed)) {
                const double t0 = llmfast::bench::now_seconds();
                call(c);
                latencies[static_cast<std::size_t>(c)].push_back((llmfast::bench::now_seconds() - t0) * 1e3);
            }
        });
    }
    std::this_thread::sleep_for(duration);
    stop = true;
    for (auto& t : threads) t.join();
    const double seconds = llmfast::bench::now_seconds() - start;
    std::vector<double> all;
    for (auto& v : latencies) all.insert(all.end(), v.begin(), v.end());
    return {static_cast<double>(all.size()) / seconds, llmfast::bench::percentile(all, 50),
            llmfast::bench::percentile(all, 99)};
}

}  // namespace

int main(int argc, char** argv) {
    const llmfast::bench::Options options =
        llmfast::bench::parse_options(argc, argv, "[throughput] [deadline] [gain]  (default: all three)");
    auto wanted = [&](std::string_view part) {
        return options.positional.empty() ||
               std::find(options.positional.begin(), options.positional.end(), part) != options.positional.end();
    };
    const std::size_t per_producer = options.quick ? 20'000 : 400'000;

    if (wanted("throughput")) {
    llmfast::bench::Table throughput("batcher throughput: no-op handler, max_batch_size 64 (ours vs the chapter's design, ported)");
    for (int producers : {1, 2}) {
        for (bool callback_form : {false, true}) {
            const std::size_t n = per_producer / static_cast<std::size_t>(producers);
            std::vector<double> ours_cpu, base_cpu;
            auto [ours, base] = llmfast::bench::interleave(
                options.rounds,
                [&] {
                    const double rps = ours_throughput(producers, n, callback_form);
                    ours_cpu.push_back(last_cpu_ns_per_request);
                    return rps;
                },
                [&] {
                    const double rps = seed_throughput(producers, n, callback_form);
                    base_cpu.push_back(last_cpu_ns_per_request);
                    return rps;
                });
            const std::string what = std::to_string(producers) + " producer" + (producers > 1 ? "s" : "") +
                                     (callback_form ? ", callback" : ", future");
            throughput.add(what, ours, base, "req/s", llmfast::bench::Better::Higher);
            throughput.add(what + ": CPU per request", llmfast::bench::median(ours_cpu),
                           llmfast::bench::median(base_cpu), "ns", llmfast::bench::Better::Lower);
        }
    }
    throughput.print();
    }

    if (wanted("deadline")) {
    const int trickle = options.quick ? 20 : 400;
    constexpr auto gap = 5ms;
    constexpr auto max_wait = 1ms;
    std::vector<double> ours_late, base_late;
    for (int round = 0; round < (options.quick ? 1 : 2); ++round) {
        auto ours = trickle_lateness(trickle / 2, gap, max_wait, [&](auto handler, auto drive) {
            llmfast::DynamicBatcher<long long, int> batcher(handler, {.max_batch_size = 64, .max_wait = max_wait});
            drive([&](long long v) { batcher.submit(v, {}, [](llmfast::BatchResult<int>&&) {}); });
        });
        auto base = trickle_lateness(trickle / 2, gap, max_wait, [&](auto handler, auto drive) {
            ChapterBatcher<long long, int> batcher(handler, 64, max_wait);
            drive([&](long long v) { batcher.submit(v, [](int) {}); });
        });
        ours_late.insert(ours_late.end(), ours.begin(), ours.end());
        base_late.insert(base_late.end(), base.begin(), base.end());
    }
    llmfast::bench::Table deadline("deadline accuracy: one request every 5 ms, max_wait 1 ms (lateness after max_wait)");
    deadline.add("lateness p50", llmfast::bench::percentile(ours_late, 50), llmfast::bench::percentile(base_late, 50), "us",
                 llmfast::bench::Better::Lower);
    deadline.add("lateness p99", llmfast::bench::percentile(ours_late, 99), llmfast::bench::percentile(base_late, 99), "us",
                 llmfast::bench::Better::Lower);
    // The floor: how late a bare condition_variable::wait_until wakes on this machine right now (the
    // scheduler's wake-up latency). No batcher can be dispatched earlier than its thread wakes.
    // Measured on a thread with the batcher workers' 1 ns timer slack.
    std::vector<double> floor_late;
    std::thread([&] {
#if defined(PR_SET_TIMERSLACK)
        (void)::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
#endif
        std::mutex mutex;
        std::condition_variable cv;
        std::unique_lock lock(mutex);
        for (int i = 0; i < trickle; ++i) {
            const auto due = Clock::now() + gap;
            while (Clock::now() < due) cv.wait_until(lock, due);
            floor_late.push_back(std::chrono::duration<double, std::micro>(Clock::now() - due).count());
        }
    }).join();
    deadline.add_absolute("floor: bare condition_variable wake p50", llmfast::bench::percentile(floor_late, 50), "us");
    deadline.add_absolute("floor: bare condition_variable wake p99", llmfast::bench::percentile(floor_late, 99), "us");
    deadline.print();
    }

    if (wanted("gain")) {
    const auto duration = options.quick ? 300ms : 3000ms;
    constexpr int callers = 64;
    Backend backend{options.quick ? 2000us : 20000us, options.quick ? 100us : 1000us, {}};
    LoadResult batched;
    {
        llmfast::DynamicBatcher<int, int> batcher([&](std::span<int> b) { return backend.run(b); },
                                                  {.max_batch_size = 64, .max_wait = 2ms});
        batched = closed_loop(callers, duration, [&](int c) { llmfast::bench::keep(batcher.submit(c).get()); });
    }
    const LoadResult unbatched = closed_loop(callers, duration, [&](int c) {
        int request = c;
        llmfast::bench::keep(backend.run(std::span<int>(&request, 1)));
    });
    llmfast::bench::Table gain("batching gain: backend fixed " + std::to_string(backend.fixed.count()) + " us + " +
                               std::to_string(backend.per_item.count()) + " us/item, 64 callers (batched vs unbatched)");
    gain.add("throughput", batched.throughput, unbatched.throughput, "req/s", llmfast::bench::Better::Higher);
    gain.add("latency p50", batched.p50_ms, unbatched.p50_ms, "ms", llmfast::bench::Better::Lower);
    gain.add("latency p99", batched.p99_ms, unbatched.p99_ms, "ms", llmfast::bench::Better::Lower);
    gain.print();
    }
    return 0;
}
