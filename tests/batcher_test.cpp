// Tests of llmfast/batcher.hpp: flush triggers, priorities, deadlines, cancellation, handler failures,
// backpressure, shutdown, metrics, and a multi-producer exactly-once stress test.
//
// Time-driven behaviour uses a ManualClock (the batcher re-checks it every 200 µs of real time); the
// only real-time waits are "it has not happened yet" checks, which cannot flake (with a frozen manual
// clock the event cannot happen), and generous upper bounds on things that must happen.
#include <llmfast/batcher.hpp>
#include <llmfast/llmfast.hpp>

#include "catch.hpp"
#include "test_support.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <limits>
#include <memory>
#include <mutex>
#include <numeric>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using llmfast::BatcherOptions;
using llmfast::ErrorCode;

using llmfast::testing::error_code_of;

namespace {

using ManualBatcher = llmfast::DynamicBatcher<int, int, llmfast::BatchFunction<int, int>, llmfast::ManualClock>;
using Batches = std::vector<std::vector<int>>;

// Records every batch the handler sees; optionally blocks inside the handler until released, so a test
// can keep the (single) worker busy while it queues requests.
struct Recorder {
    std::mutex mutex;
    std::condition_variable cv;
    Batches batches;
    int entered = 0;
    bool hold = false;

    std::vector<int> operator()(std::span<int> batch) {
        std::unique_lock lock(mutex);
        batches.emplace_back(batch.begin(), batch.end());
        ++entered;
        cv.notify_all();
        cv.wait(lock, [&] { return !hold; });
        std::vector<int> out;
        for (int v : batch) out.push_back(v * 10);
        return out;
    }
    void wait_entered(int n) {
        std::unique_lock lock(mutex);
        REQUIRE(cv.wait_for(lock, 10s, [&] { return entered >= n; }));
    }
    void set_hold(bool on) {
        {
            std::lock_guard lock(mutex);
            hold = on;
        }
        cv.notify_all();
    }
    Batches snapshot() {
        std::lock_guard lock(mutex);
        return batches;
    }
};

// Releases the recorder's hold when it goes out of scope, so a failed REQUIRE cannot leave the worker
// stuck in the handler (and the batcher's destructor waiting for it) — declare it after what must end first.
struct ReleaseOnExit {
    Recorder& recorder;
    explicit ReleaseOnExit(Recorder& r) : recorder(r) {}
    ReleaseOnExit(const ReleaseOnExit&) = delete;
    ReleaseOnExit& operator=(const ReleaseOnExit&) = delete;
    ~ReleaseOnExit() { recorder.set_hold(false); }
};

llmfast::BatchFunction<int, int> handler_of(Recorder& recorder) {
    return [&recorder](std::span<int> batch) { return recorder(batch); };
}

template <class T>
bool ready_within(std::future<T>& future, std::chrono::milliseconds within) {
    return future.wait_for(within) == std::future_status::ready;
}

template <class T>
ErrorCode error_of(std::future<T>& future) {
    try {
        future.get();
    } catch (const llmfast::Error& e) {
        return e.code();
    }
    return ErrorCode::Ok;
}


}  // namespace

TEST_CASE("BatchHandler concept and InplaceFunction", "[batcher]") {
    auto good = [](std::span<int> s) { return std::vector<int>(s.size()); };
    auto wrong_return = [](std::span<int>) { return 3; };
    auto wrong_arg = [](std::span<std::string>) { return std::vector<int>{}; };
    STATIC_REQUIRE(llmfast::BatchHandler<decltype(good), int, int>);
    STATIC_REQUIRE(!llmfast::BatchHandler<decltype(wrong_return), int, int>);
    STATIC_REQUIRE(!llmfast::BatchHandler<decltype(wrong_arg), int, int>);
    STATIC_REQUIRE(llmfast::BatchHandler<llmfast::BatchFunction<int, long>, int, long>);

    using Fn = llmfast::detail::InplaceFunction<int(int), 48>;
    struct Big {
        char pad[200];
        int operator()(int x) const { return x + pad[0]; }
    };
    STATIC_REQUIRE(Fn::stores_inline<std::promise<int>>);
    STATIC_REQUIRE(!Fn::stores_inline<Big>);

    auto owned = std::make_unique<int>(5);  // move-only capture
    Fn small = [p = std::move(owned)](int x) { return x + *p; };
    CHECK(small(1) == 6);
    Fn moved = std::move(small);
    CHECK(!small);  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
    CHECK(moved(2) == 7);
    Big big{};
    big.pad[0] = 3;
    Fn boxed = big;
    Fn boxed2 = std::move(boxed);
    CHECK(boxed2(1) == 4);
    boxed2 = std::move(moved);
    CHECK(boxed2(0) == 5);
    Fn empty;
    CHECK_THROWS_AS(empty(1), std::bad_function_call);
}

TEST_CASE("options are validated at construction", "[batcher]") {
    auto handler = [](std::span<int> s) { return std::vector<int>(s.begin(), s.end()); };
    auto make = [&](BatcherOptions o) { return error_code_of([&] { llmfast::DynamicBatcher<int, int> b(handler, o); }); };
    CHECK(make({}) == ErrorCode::Ok);
    CHECK(make({.max_batch_size = 0}) == ErrorCode::InvalidArgument);
    CHECK(make({.max_batch_cost = 0}) == ErrorCode::InvalidArgument);
    CHECK(make({.max_wait = -1ms}) == ErrorCode::InvalidArgument);
    CHECK(make({.max_queue = 0}) == ErrorCode::InvalidArgument);
    CHECK(make({.workers = 0}) == ErrorCode::InvalidArgument);
    CHECK(make({.priority_levels = 0}) == ErrorCode::InvalidArgument);
    CHECK(make({.priority_levels = 65}) == ErrorCode::InvalidArgument);
    CHECK(make({.block_when_full_for = -1ns}) == ErrorCode::InvalidArgument);

    llmfast::DynamicBatcher<int, int> batcher(handler, {.priority_levels = 2});
    CHECK(error_code_of([&] { (void)batcher.submit(1, {.priority = 2}); }) == ErrorCode::InvalidArgument);
    CHECK(error_code_of([&] { (void)batcher.submit(1, {.priority = -1}); }) == ErrorCode::InvalidArgument);
    CHECK(batcher.submit(4, {.priority = 1}).get() == 4);
}

TEST_CASE("flush when max_batch_size is reached", "[batcher]") {
    llmfast::ManualClock clock;
    Recorder recorder;
    ManualBatcher batcher(clock, handler_of(recorder), {.max_batch_size = 4, .max_wait = 1h});
    std::vector<std::future<int>> futures;
    for (int i = 0; i < 3; ++i) futures.push_back(batcher.submit(i));
    // The clock is frozen and the batch is not full: it cannot be dispatched.
    CHECK_FALSE(ready_within(futures[0], 30ms));
    futures.push_back(batcher.submit(3));
    for (int i = 0; i < 4; ++i) CHECK(futures[static_cast<std::size_t>(i)].get() == i * 10);
    CHECK(recorder.snapshot() == Batches{{0, 1, 2, 3}});
    const auto m = batcher.stats();
    CHECK(m.batches == 1);
    CHECK(m.batch_size_histogram.size() == 5);
    CHECK(m.batch_size_histogram[4] == 1);
    CHECK(m.succeeded == 4);
    CHECK(m.queue_wait_max == 0ns);  // the manual clock never moved
}

TEST_CASE("flush when the oldest request waited max_wait", "[batcher]") {
    llmfast::ManualClock clock;
    Recorder recorder;
    ManualBatcher batcher(clock, handler_of(recorder), {.max_batch_size = 8, .max_wait = 10ms});
    auto a = batcher.submit(1);
    clock.advance(4ms);
    auto b = batcher.submit(2);
    clock.advance(5ms);  // oldest waited 9 ms
    CHECK_FALSE(ready_within(a, 30ms));
    clock.advance(1ms);  // 10 ms: due
    REQUIRE(ready_within(a, 10000ms));
    CHECK(a.get() == 10);
    CHECK(b.get() == 20);
    CHECK(recorder.snapshot() == Batches{{1, 2}});
    const auto m = batcher.stats();
    CHECK(m.queue_wait_max >= 10ms);
    CHECK(m.queue_wait_max < 12ms);
    CHECK(m.queue_wait_p50 >= 6ms);  // one request waited 10 ms, the other 6 ms
}

TEST_CASE("max_wait = 0 dispatches whatever is queued at once", "[batcher]") {
    llmfast::ManualClock clock;
    Recorder recorder;
    ManualBatcher batcher(clock, handler_of(recorder), {.max_batch_size = 8, .max_wait = 0ms});
    CHECK(batcher.submit(7).get() == 70);
    CHECK(batcher.submit(8).get() == 80);
    CHECK(recorder.snapshot() == Batches{{7}, {8}});
}

TEST_CASE("flush when the summed cost reaches max_batch_cost; oversize requests go alone", "[batcher]") {
    llmfast::ManualClock clock;
    Recorder recorder;
    auto cost = [](const int& v) { return static_cast<std::size_t>(v); };

    SECTION("cost trigger, the request that does not fit starts the next batch") {
        ManualBatcher batcher(clock, handler_of(recorder), {.max_batch_size = 100, .max_batch_cost = 10, .max_wait = 1h}, cost);
        auto a = batcher.submit(3);
        auto b = batcher.submit(3);
        auto c = batcher.submit(3);
        CHECK_FALSE(ready_within(a, 30ms));  // cost 9 < 10
        auto d = batcher.submit(3);          // 12 >= 10: ready; 3+3+3 fits, the 4th does not
        CHECK(a.get() == 30);
        CHECK(b.get() == 30);
        CHECK(c.get() == 30);
        CHECK_FALSE(ready_within(d, 30ms));  // alone it costs 3: waits for max_wait
        clock.advance(1h);
        CHECK(d.get() == 30);
        CHECK(recorder.snapshot() == Batches{{3, 3, 3}, {3}});
    }
    SECTION("a request costlier than max_batch_cost is dispatched alone, never stuck") {
        ManualBatcher batcher(clock, handler_of(recorder), {.max_batch_size = 100, .max_batch_cost = 10, .max_wait = 1h}, cost);
        auto small = batcher.submit(2);
        auto huge = batcher.submit(50);
        CHECK(small.get() == 20);
        CHECK(huge.get() == 500);
        CHECK(recorder.snapshot() == Batches{{2}, {50}});
        CHECK(batcher.submit(11).get() == 110);
    }
    SECTION("an oversize request goes alone even next to zero-cost requests (found by fuzz_batcher_ops)") {
        ManualBatcher batcher(clock, handler_of(recorder), {.max_batch_size = 100, .max_batch_cost = 10, .max_wait = 1h}, cost);
        auto zero = batcher.submit(0);
        auto huge = batcher.submit(15);
        auto zero2 = batcher.submit(0);
        CHECK(zero.get() == 0);
        CHECK(huge.get() == 150);
        batcher.close();
        CHECK(zero2.get() == 0);
        CHECK(recorder.snapshot() == Batches{{0}, {15}, {0}});
    }
}

TEST_CASE("a batch is formed when a worker is free; higher priorities first, FIFO within a level", "[batcher]") {
    llmfast::ManualClock clock;
    Recorder recorder;
    ManualBatcher batcher(clock, handler_of(recorder), {.max_batch_size = 2, .max_wait = 0ms, .priority_levels = 3});
    recorder.set_hold(true);
    auto blocker = batcher.submit(100);
    recorder.wait_entered(1);  // the only worker is busy from here on
    std::vector<std::future<int>> futures;
    futures.push_back(batcher.submit(1, {.priority = 0}));
    futures.push_back(batcher.submit(2, {.priority = 0}));
    futures.push_back(batcher.submit(3, {.priority = 2}));
    futures.push_back(batcher.submit(4, {.priority = 1}));
    futures.push_back(batcher.submit(5, {.priority = 2}));
    futures.push_back(batcher.submit(6, {.priority = 0}));
    CHECK(batcher.stats().queue_depth == 6);
    CHECK(batcher.stats().batches_running == 1);
    recorder.set_hold(false);
    CHECK(blocker.get() == 1000);
    for (auto& f : futures) f.get();
    CHECK(recorder.snapshot() == Batches{{100}, {3, 5}, {4, 1}, {2, 6}});
}

TEST_CASE("a busy backend lets the next batch grow", "[batcher]") {
    llmfast::ManualClock clock;
    Recorder recorder;
    ManualBatcher batcher(clock, handler_of(recorder), {.max_batch_size = 8, .max_wait = 0ms});
    recorder.set_hold(true);
    auto blocker = batcher.submit(0);
    recorder.wait_entered(1);
    std::vector<std::future<int>> futures;
    for (int i = 1; i <= 10; ++i) futures.push_back(batcher.submit(i));
    recorder.set_hold(false);
    for (auto& f : futures) f.get();
    CHECK(recorder.snapshot() == Batches{{0}, {1, 2, 3, 4, 5, 6, 7, 8}, {9, 10}});
}

TEST_CASE("requests past their deadline never reach the handler", "[batcher]") {
    llmfast::ManualClock clock(1h);
    Recorder recorder;

    SECTION("expired while the worker was busy") {
        ManualBatcher batcher(clock, handler_of(recorder), {.max_batch_size = 8, .max_wait = 0ms});
        recorder.set_hold(true);
        auto blocker = batcher.submit(0);
        recorder.wait_entered(1);
        auto a = batcher.submit(1, {.timeout = 5ms});
        auto b = batcher.submit(2, {.deadline = clock.now() + 50ms});
        auto c = batcher.submit(3);
        clock.advance(10ms);
        recorder.set_hold(false);
        CHECK(error_of(a) == ErrorCode::DeadlineExceeded);
        CHECK(b.get() == 20);
        CHECK(c.get() == 30);
        blocker.get();
        CHECK(recorder.snapshot() == Batches{{0}, {2, 3}});
        CHECK(batcher.stats().expired == 1);
    }
    SECTION("expired while queued behind a long max_wait: completed at its deadline, not at max_wait") {
        ManualBatcher batcher(clock, handler_of(recorder), {.max_batch_size = 8, .max_wait = 1h});
        auto a = batcher.submit(1, {.timeout = 5ms});
        auto b = batcher.submit(2);
        CHECK_FALSE(ready_within(a, 20ms));
        clock.advance(6ms);
        REQUIRE(ready_within(a, 10000ms));
        CHECK(error_of(a) == ErrorCode::DeadlineExceeded);
        CHECK_FALSE(ready_within(b, 20ms));
        CHECK(batcher.stats().queue_depth == 1);
        clock.advance(1h);
        CHECK(b.get() == 20);
        CHECK(recorder.snapshot() == Batches{{2}});
    }
    SECTION("already past at submission") {
        ManualBatcher batcher(clock, handler_of(recorder));
        CHECK(error_code_of([&] { (void)batcher.submit(1, {.deadline = clock.now()}); }) == ErrorCode::DeadlineExceeded);
        int request = 1;
        CHECK(batcher.try_submit(std::move(request), {.timeout = 0ns}).status == ErrorCode::DeadlineExceeded);
        CHECK(batcher.stats().expired == 2);
        CHECK(batcher.stats().accepted == 0);
    }
}

TEST_CASE("sweeping expired requests out of a long queue keeps the others in FIFO order", "[batcher]") {
    llmfast::ManualClock clock;
    Recorder recorder;
    ManualBatcher batcher(clock, handler_of(recorder), {.max_batch_size = 100, .max_wait = 1h});
    std::vector<std::future<int>> futures;
    for (int i = 0; i < 70; ++i)  // grows the ring buffer past 16, 32 and 64 entries
        futures.push_back(i % 3 == 0 ? batcher.submit(i, {.timeout = 5ms}) : batcher.submit(i));
    clock.advance(6ms);
    for (int i = 0; i < 70; i += 3) CHECK(error_of(futures[static_cast<std::size_t>(i)]) == ErrorCode::DeadlineExceeded);
    for (int i = 70; i < 80; ++i) futures.push_back(batcher.submit(i));
    batcher.close();
    std::vector<int> expected;
    for (int i = 0; i < 80; ++i)
        if (i >= 70 || i % 3 != 0) expected.push_back(i);
    CHECK(recorder.snapshot() == Batches{expected});
    CHECK(batcher.stats().expired == 24);
}

TEST_CASE("cancelled requests never reach the handler", "[batcher]") {
    Recorder recorder;

    SECTION("cancelled while the worker was busy") {
        llmfast::ManualClock clock;
        ManualBatcher batcher(clock, handler_of(recorder), {.max_batch_size = 8, .max_wait = 0ms});
        recorder.set_hold(true);
        auto blocker = batcher.submit(0);
        recorder.wait_entered(1);
        std::stop_source source;
        auto a = batcher.submit(1, {.stop_token = source.get_token()});
        auto b = batcher.submit(2);
        source.request_stop();
        recorder.set_hold(false);  // the cancelled request is dropped when the next batch is formed
        CHECK(error_of(a) == ErrorCode::Cancelled);
        CHECK(b.get() == 20);
        blocker.get();
        CHECK(recorder.snapshot() == Batches{{0}, {2}});
        CHECK(batcher.stats().cancelled == 1);
    }
    SECTION("cancelled while queued behind a long max_wait: completed promptly") {
        llmfast::DynamicBatcher<int, int> batcher(handler_of(recorder), {.max_batch_size = 8, .max_wait = 1h});
        std::stop_source source;
        auto a = batcher.submit(1, {.stop_token = source.get_token()});
        auto b = batcher.submit(2);
        source.request_stop();
        REQUIRE(ready_within(a, 10000ms));
        CHECK(error_of(a) == ErrorCode::Cancelled);
        CHECK_FALSE(ready_within(b, 20ms));
        batcher.close();
        CHECK(b.get() == 20);
        CHECK(recorder.snapshot() == Batches{{2}});
    }
    SECTION("already cancelled at submission") {
        llmfast::DynamicBatcher<int, int> batcher(handler_of(recorder));
        std::stop_source source;
        source.request_stop();
        CHECK(error_code_of([&] { (void)batcher.submit(1, {.stop_token = source.get_token()}); }) == ErrorCode::Cancelled);
        bool called = false;
        int request = 1;
        CHECK(batcher.try_submit(std::move(request), {.stop_token = source.get_token()},
                                 [&](llmfast::BatchResult<int>&&) { called = true; }) == ErrorCode::Cancelled);
        batcher.close();
        CHECK_FALSE(called);
        CHECK(batcher.stats().cancelled == 2);
    }
}

TEST_CASE("a failing handler fails its batch only", "[batcher]") {
    llmfast::ManualClock clock;
    std::atomic<int> calls{0};
    auto handler = [&](std::span<int> batch) -> std::vector<int> {
        ++calls;
        if (batch[0] == 1) throw std::runtime_error("backend down");
        if (batch[0] == 2) return std::vector<int>(batch.size() - 1, 0);  // one response short
        return std::vector<int>(batch.begin(), batch.end());
    };
    ManualBatcher batcher(clock, handler, {.max_batch_size = 2, .max_wait = 1h});

    auto a1 = batcher.submit(1);
    auto a2 = batcher.submit(5);
    try {
        a1.get();
        FAIL("expected HandlerFailed");
    } catch (const llmfast::Error& e) {
        CHECK(e.code() == ErrorCode::HandlerFailed);
        CHECK(std::string(e.what()).find("backend down") != std::string::npos);
    }
    CHECK(error_of(a2) == ErrorCode::HandlerFailed);

    auto b1 = batcher.submit(2);
    auto b2 = batcher.submit(6);
    try {
        b1.get();
        FAIL("expected HandlerFailed");
    } catch (const llmfast::Error& e) {
        CHECK(e.code() == ErrorCode::HandlerFailed);
        CHECK(std::string(e.what()).find("returned 1 responses for 2 requests") != std::string::npos);
    }
    CHECK(error_of(b2) == ErrorCode::HandlerFailed);

    auto c1 = batcher.submit(3);
    auto c2 = batcher.submit(4);
    CHECK(c1.get() == 3);
    CHECK(c2.get() == 4);
    CHECK(calls == 3);
    const auto m = batcher.stats();
    CHECK(m.failed == 4);
    CHECK(m.succeeded == 2);

    // The callback form sees the same error as a BatchResult.
    std::promise<ErrorCode> seen;
    batcher.submit(1, {}, [&](llmfast::BatchResult<int>&& r) {
        seen.set_value(r.error());
        CHECK_THROWS_AS(r.value(), llmfast::Error);
    });
    (void)batcher.submit(9);
    CHECK(seen.get_future().get() == ErrorCode::HandlerFailed);
}

TEST_CASE("the queue bound rejects at once, or blocks up to a timeout when asked", "[batcher]") {
    llmfast::ManualClock clock;
    Recorder recorder;

    SECTION("QueueFull at once by default") {
        ManualBatcher batcher(clock, handler_of(recorder), {.max_batch_size = 8, .max_wait = 0ms, .max_queue = 2});
        recorder.set_hold(true);
        auto blocker = batcher.submit(0);
        recorder.wait_entered(1);
        auto a = batcher.submit(1);
        auto b = batcher.submit(2);
        CHECK(error_code_of([&] { (void)batcher.submit(3); }) == ErrorCode::QueueFull);
        int request = 4;
        CHECK(batcher.try_submit(std::move(request)).status == ErrorCode::QueueFull);
        bool called = false;
        CHECK(batcher.try_submit(5, {}, [&](llmfast::BatchResult<int>&&) { called = true; }) == ErrorCode::QueueFull);
        CHECK(batcher.stats().rejected == 3);
        recorder.set_hold(false);
        CHECK(a.get() == 10);
        CHECK(b.get() == 20);
        blocker.get();
        CHECK_FALSE(called);
    }
    SECTION("try_submit leaves a rejected request with the caller") {
        llmfast::DynamicBatcher<std::string, std::size_t> batcher(
            [](std::span<std::string> s) {
                std::vector<std::size_t> out;
                for (auto& v : s) out.push_back(v.size());
                return out;
            },
            {.max_queue = 1});
        batcher.close();
        std::string request = "a fairly long request that would not fit in the small-string buffer";
        CHECK(batcher.try_submit(std::move(request)).status == ErrorCode::Closed);
        CHECK(request.size() > 20);  // NOLINT(bugprone-use-after-move): not moved on failure, by contract
    }
    SECTION("blocking submit waits for room") {
        ManualBatcher batcher(clock, handler_of(recorder),
                              {.max_batch_size = 8, .max_wait = 0ms, .max_queue = 1, .block_when_full_for = 60s});
        recorder.set_hold(true);
        auto blocker = batcher.submit(0);
        recorder.wait_entered(1);
        auto a = batcher.submit(1);
        auto blocked = std::async(std::launch::async, [&] { return batcher.submit(2).get(); });
        CHECK(blocked.wait_for(30ms) == std::future_status::timeout);
        recorder.set_hold(false);
        CHECK(blocked.get() == 20);
        CHECK(a.get() == 10);
        blocker.get();
    }
    SECTION("blocking submit gives up after its timeout") {
        ManualBatcher batcher(clock, handler_of(recorder),
                              {.max_batch_size = 8, .max_wait = 0ms, .max_queue = 1, .block_when_full_for = 20ms});
        recorder.set_hold(true);
        auto blocker = batcher.submit(0);
        recorder.wait_entered(1);
        auto a = batcher.submit(1);
        CHECK(error_code_of([&] { (void)batcher.submit(2); }) == ErrorCode::QueueFull);
        recorder.set_hold(false);
        CHECK(a.get() == 10);
        blocker.get();
    }
}

// Issue 11, defect 5: a submit blocked on a full queue ended only at block_when_full_for (or room / close),
// ignoring the request's own deadline and stop token.
TEST_CASE("a submit blocked on a full queue ends at the earliest of its bounds", "[batcher]") {
    llmfast::ManualClock clock(1h);
    Recorder recorder;
    // Worker held in the handler, queue (max_queue = 1) full: the next submit blocks.
    auto fill = [&](ManualBatcher& batcher, std::vector<std::future<int>>& keep) {
        recorder.set_hold(true);
        keep.push_back(batcher.submit(0));
        recorder.wait_entered(1);
        keep.push_back(batcher.submit(1));
    };
    auto message_of = [](auto&& f) -> std::string {
        try {
            f();
        } catch (const llmfast::Error& e) {
            return e.what();
        }
        return "no error";
    };
    const BatcherOptions options{.max_batch_size = 8, .max_wait = 0ms, .max_queue = 1, .block_when_full_for = 30s};

    SECTION("its timeout, on the manual clock: DeadlineExceeded when the clock passes it, not QueueFull at 30 s") {
        ManualBatcher batcher(clock, handler_of(recorder), options);
        std::vector<std::future<int>> keep;
        fill(batcher, keep);
        auto blocked = std::async(std::launch::async, [&] {
            return message_of([&] { (void)batcher.submit(2, {.timeout = 100ms}); });
        });
        ReleaseOnExit release{recorder};
        CHECK(blocked.wait_for(30ms) == std::future_status::timeout);  // the manual clock is frozen
        clock.advance(100ms);
        REQUIRE(blocked.wait_for(10s) == std::future_status::ready);  // well before block_when_full_for (30 s)
        const std::string message = blocked.get();
        CHECK(message.rfind("DeadlineExceeded", 0) == 0);
        CHECK(message.find("already") == std::string::npos);
        CHECK(batcher.stats().expired == 1);
        recorder.set_hold(false);
        for (auto& f : keep) f.get();
    }
    SECTION("try_submit: its deadline ends the wait with the status DeadlineExceeded, the callback never runs") {
        ManualBatcher batcher(clock, handler_of(recorder), options);
        std::vector<std::future<int>> keep;
        fill(batcher, keep);
        std::atomic<bool> called{false};
        const auto deadline = clock.now() + 5ms;
        auto blocked = std::async(std::launch::async, [&] {
            return batcher.try_submit(2, {.deadline = deadline}, [&](llmfast::BatchResult<int>&&) { called = true; });
        });
        ReleaseOnExit release{recorder};
        CHECK(blocked.wait_for(30ms) == std::future_status::timeout);
        clock.advance(5ms);
        REQUIRE(blocked.wait_for(10s) == std::future_status::ready);
        CHECK(blocked.get() == ErrorCode::DeadlineExceeded);
        recorder.set_hold(false);
        for (auto& f : keep) f.get();
        CHECK_FALSE(called);
    }
    SECTION("its stop token: Cancelled as soon as it fires, and the message does not say 'already'") {
        ManualBatcher batcher(clock, handler_of(recorder), options);
        std::vector<std::future<int>> keep;
        fill(batcher, keep);
        std::stop_source stop;
        auto blocked = std::async(std::launch::async, [&] {
            return message_of([&] { (void)batcher.submit(2, {.stop_token = stop.get_token()}); });
        });
        ReleaseOnExit release{recorder};
        CHECK(blocked.wait_for(30ms) == std::future_status::timeout);
        stop.request_stop();
        REQUIRE(blocked.wait_for(10s) == std::future_status::ready);
        const std::string message = blocked.get();
        CHECK(message.rfind("Cancelled", 0) == 0);
        CHECK(message.find("already") == std::string::npos);
        CHECK(batcher.stats().cancelled == 1);
        recorder.set_hold(false);
        for (auto& f : keep) f.get();
    }
    SECTION("block_when_full_for = nanoseconds::max() waits for room instead of overflowing into QueueFull") {
        auto unbounded = options;
        unbounded.block_when_full_for = std::chrono::nanoseconds::max();
        ManualBatcher batcher(clock, handler_of(recorder), unbounded);
        std::vector<std::future<int>> keep;
        fill(batcher, keep);
        auto blocked = std::async(std::launch::async, [&] { return batcher.submit(2).get(); });
        ReleaseOnExit release{recorder};
        CHECK(blocked.wait_for(30ms) == std::future_status::timeout);
        recorder.set_hold(false);
        CHECK(blocked.get() == 20);
        for (auto& f : keep) f.get();
    }
}

TEST_CASE("end to end on the steady clock: a submit blocked on a full queue ends at its timeout", "[batcher]") {
    Recorder recorder;
    llmfast::DynamicBatcher<int, int> batcher(
        handler_of(recorder), {.max_batch_size = 8, .max_wait = 0ms, .max_queue = 1, .block_when_full_for = 30s});
    recorder.set_hold(true);
    auto blocker = batcher.submit(0);
    recorder.wait_entered(1);
    auto a = batcher.submit(1);
    auto blocked = std::async(std::launch::async, [&] {
        return error_code_of([&] { (void)batcher.submit(2, {.timeout = 100ms}); });
    });
    ReleaseOnExit release{recorder};
    // Generous: the bound that must end the wait is 100 ms, the one that must not is 30 s.
    REQUIRE(blocked.wait_for(10s) == std::future_status::ready);
    CHECK(blocked.get() == ErrorCode::DeadlineExceeded);
    recorder.set_hold(false);
    CHECK(a.get() == 10);
    blocker.get();
}

// Issue 11, defect 7: with the default max_batch_cost (SIZE_MAX) the summed cost wrapped around, so a batch
// ready by cost waited for max_wait.
TEST_CASE("costs near SIZE_MAX: the summed cost does not overflow", "[batcher]") {
    llmfast::ManualClock clock;
    Recorder recorder;
    constexpr std::size_t half = std::size_t{1} << (std::numeric_limits<std::size_t>::digits - 1);  // 2^63
    auto cost = [](const int& v) -> std::size_t {
        if (v == 1) return half;
        if (v == 2) return std::numeric_limits<std::size_t>::max();
        return static_cast<std::size_t>(v);
    };
    SECTION("two requests of 2^63 reach SIZE_MAX: the first is dispatched without waiting max_wait") {
        ManualBatcher batcher(clock, handler_of(recorder), {.max_batch_size = 100, .max_wait = 1h}, cost);
        auto a = batcher.submit(1);
        auto b = batcher.submit(1);
        REQUIRE(ready_within(a, 10000ms));  // the clock is frozen: only the cost trigger can dispatch it
        CHECK(a.get() == 10);
        CHECK_FALSE(ready_within(b, 30ms));  // alone, 2^63 < SIZE_MAX: waits for max_wait
        clock.advance(1h);
        CHECK(b.get() == 10);
        CHECK(recorder.snapshot() == Batches{{1}, {1}});
    }
    SECTION("a cost of SIZE_MAX behind a cost of 3: both dispatched, each alone") {
        ManualBatcher batcher(clock, handler_of(recorder), {.max_batch_size = 100, .max_wait = 1h}, cost);
        auto a = batcher.submit(3);
        auto b = batcher.submit(2);
        REQUIRE(ready_within(a, 10000ms));
        REQUIRE(ready_within(b, 10000ms));
        CHECK(a.get() == 30);
        CHECK(b.get() == 20);
        CHECK(recorder.snapshot() == Batches{{3}, {2}});
    }
}

TEST_CASE("now + timeout saturates at the clock's limits both ways", "[batcher]") {
    Recorder recorder;
    SECTION("a hugely negative timeout has already passed (even on a clock before its epoch)") {
        llmfast::ManualClock clock(-1h);
        ManualBatcher batcher(clock, handler_of(recorder), {.max_wait = 0ms});
        CHECK(error_code_of([&] { (void)batcher.submit(1, {.timeout = std::chrono::nanoseconds::min()}); }) ==
              ErrorCode::DeadlineExceeded);
        CHECK(error_code_of([&] { (void)batcher.submit(1, {.timeout = -1ns}); }) == ErrorCode::DeadlineExceeded);
        CHECK(batcher.stats().accepted == 0);
    }
    SECTION("a huge timeout never expires (even late in the clock's range)") {
        llmfast::ManualClock clock(std::chrono::nanoseconds::max() - 1h);
        ManualBatcher batcher(clock, handler_of(recorder), {.max_wait = 0ms});
        CHECK(batcher.submit(4, {.timeout = std::chrono::nanoseconds::max()}).get() == 40);
    }
}

TEST_CASE("close drains pending requests; later submits fail with Closed", "[batcher]") {
    llmfast::ManualClock clock;
    Recorder recorder;

    SECTION("close()") {
        ManualBatcher batcher(clock, handler_of(recorder), {.max_batch_size = 4, .max_wait = 1h});
        std::vector<std::future<int>> futures;
        for (int i = 0; i < 10; ++i) futures.push_back(batcher.submit(i));
        batcher.close();
        for (int i = 0; i < 10; ++i) CHECK(futures[static_cast<std::size_t>(i)].get() == i * 10);
        CHECK(recorder.snapshot() == Batches{{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9}});
        CHECK(error_code_of([&] { (void)batcher.submit(1); }) == ErrorCode::Closed);
        CHECK(batcher.try_submit(1, {}, [](llmfast::BatchResult<int>&&) {}) == ErrorCode::Closed);
        CHECK(batcher.closed());
        batcher.close();  // idempotent
        const auto m = batcher.stats();
        CHECK(m.queue_depth == 0);
        CHECK(m.rejected == 2);
        CHECK(m.succeeded == 10);
    }
    SECTION("close releases a blocked producer with Closed, and the destructor drains") {
        std::atomic<int> completed{0};
        std::future<ErrorCode> blocked;
        {
            ManualBatcher batcher(clock, handler_of(recorder),
                                  {.max_batch_size = 4, .max_wait = 1h, .max_queue = 3, .block_when_full_for = 60s});
            for (int i = 0; i < 3; ++i)
                batcher.submit(i, {}, [&](llmfast::BatchResult<int>&& r) {
                    if (r.ok()) ++completed;
                });
            blocked = std::async(std::launch::async, [&] { return error_code_of([&] { (void)batcher.submit(9); }); });
            CHECK(blocked.wait_for(30ms) == std::future_status::timeout);
            batcher.close();
            blocked.wait();  // no call may still be inside the batcher when it is destroyed
        }
        CHECK(completed == 3);
        CHECK(blocked.get() == ErrorCode::Closed);
    }
    SECTION("the destructor alone drains") {
        std::atomic<int> completed{0};
        std::future<int> future;
        {
            ManualBatcher batcher(clock, handler_of(recorder), {.max_batch_size = 4, .max_wait = 1h});
            future = batcher.submit(100);
            for (int i = 0; i < 5; ++i)
                batcher.submit(i, {}, [&](llmfast::BatchResult<int>&& r) {
                    if (r.ok()) ++completed;
                });
        }
        CHECK(completed == 5);
        CHECK(future.get() == 1000);
        CHECK(recorder.snapshot() == Batches{{100, 0, 1, 2}, {3, 4}});
    }
    SECTION("close from inside a callback does not deadlock") {
        auto batcher = std::make_unique<ManualBatcher>(clock, handler_of(recorder), BatcherOptions{.max_wait = 0ms});
        std::promise<void> done;
        batcher->submit(1, {}, [&](llmfast::BatchResult<int>&&) {
            batcher->close();
            done.set_value();
        });
        done.get_future().get();
        CHECK(batcher->closed());
        batcher.reset();
    }
}

TEST_CASE("callback form: results, errors and throwing callbacks", "[batcher]") {
    llmfast::DynamicBatcher<int, std::string> batcher(
        [](std::span<int> batch) {
            std::vector<std::string> out;
            for (int v : batch) out.push_back(std::to_string(v));
            return out;
        },
        {.max_batch_size = 4, .max_wait = 0ms});
    std::promise<std::string> got;
    batcher.submit(42, {}, [&](llmfast::BatchResult<std::string>&& r) { got.set_value(std::move(r).value()); });
    CHECK(got.get_future().get() == "42");

    std::promise<void> thrown;
    batcher.submit(1, {}, [&](llmfast::BatchResult<std::string>&&) {
        thrown.set_value();
        throw std::runtime_error("callback bug");
    });
    thrown.get_future().get();
    CHECK(batcher.submit(2).get() == "2");  // still serving
    batcher.close();
    CHECK(batcher.stats().callback_errors == 1);
}

TEST_CASE("move-only requests and responses", "[batcher]") {
    llmfast::DynamicBatcher<std::unique_ptr<int>, std::unique_ptr<long>> batcher(
        [](std::span<std::unique_ptr<int>> batch) {
            std::vector<std::unique_ptr<long>> out;
            for (auto& p : batch) out.push_back(std::make_unique<long>(*p + 1));
            return out;
        },
        {.max_batch_size = 2, .max_wait = 0ms});
    auto f = batcher.submit(std::make_unique<int>(41));
    CHECK(*f.get() == 42);
    std::promise<long> got;
    batcher.submit(std::make_unique<int>(1), {}, [&](llmfast::BatchResult<std::unique_ptr<long>>&& r) {
        got.set_value(*std::move(r).value());
    });
    CHECK(got.get_future().get() == 2);
    auto request = std::make_unique<int>(7);
    auto result = batcher.try_submit(std::move(request));
    REQUIRE(result);
    CHECK(request == nullptr);  // NOLINT(bugprone-use-after-move): moved on Ok
    CHECK(*result.future.get() == 8);
}

TEST_CASE("several workers run batches concurrently", "[batcher]") {
    llmfast::ManualClock clock;
    Recorder recorder;
    ManualBatcher batcher(clock, handler_of(recorder), {.max_batch_size = 1, .max_wait = 0ms, .workers = 2});
    recorder.set_hold(true);
    auto a = batcher.submit(1);
    auto b = batcher.submit(2);
    recorder.wait_entered(2);  // both in the handler at once
    CHECK(batcher.stats().batches_running == 2);
    recorder.set_hold(false);
    CHECK(a.get() + b.get() == 30);
}

TEST_CASE("stress: many producers, every request gets exactly its own response once", "[batcher]") {
    constexpr int producers = 4;
    constexpr int per_producer = 2500;
    constexpr int total = producers * per_producer;
    std::vector<std::atomic<int>> seen_by_handler(total);
    std::vector<std::atomic<int>> completions(total);
    std::atomic<int> wrong{0};
    std::atomic<int> errors{0};

    {
        llmfast::DynamicBatcher<int, long> batcher(
            [&](std::span<int> batch) {
                std::vector<long> out;
                out.reserve(batch.size());
                for (int id : batch) {
                    seen_by_handler[static_cast<std::size_t>(id)].fetch_add(1);
                    out.push_back(static_cast<long>(id) * 7 + 1);
                }
                return out;
            },
            {.max_batch_size = 16, .max_wait = 50us, .max_queue = 256, .workers = 2, .block_when_full_for = 60s});
        std::vector<std::thread> threads;
        for (int p = 0; p < producers; ++p) {
            threads.emplace_back([&, p] {
                std::vector<std::pair<int, std::future<long>>> futures;
                for (int i = 0; i < per_producer; ++i) {
                    const int id = p * per_producer + i;
                    if (i % 2 == 0) {
                        futures.emplace_back(id, batcher.submit(id, {.priority = i % 3}));
                    } else {
                        batcher.submit(id, {.priority = i % 4}, [&, id](llmfast::BatchResult<long>&& r) {
                            completions[static_cast<std::size_t>(id)].fetch_add(1);
                            if (!r.ok()) ++errors;
                            else if (r.value() != static_cast<long>(id) * 7 + 1) ++wrong;
                        });
                    }
                }
                for (auto& [id, f] : futures) {
                    const long v = f.get();
                    completions[static_cast<std::size_t>(id)].fetch_add(1);
                    if (v != static_cast<long>(id) * 7 + 1) ++wrong;
                }
            });
        }
        for (auto& t : threads) t.join();
        batcher.close();
        const auto m = batcher.stats();
        CHECK(m.accepted == static_cast<std::uint64_t>(total));
        CHECK(m.succeeded == static_cast<std::uint64_t>(total));
        CHECK(m.dispatched == static_cast<std::uint64_t>(total));
        std::uint64_t hist_total = 0;
        for (std::size_t n = 1; n < m.batch_size_histogram.size(); ++n) hist_total += m.batch_size_histogram[n] * n;
        CHECK(hist_total == static_cast<std::uint64_t>(total));
        CHECK(m.batch_size_histogram[0] == 0);
    }
    int bad_handler = 0, bad_completion = 0;
    for (int id = 0; id < total; ++id) {
        bad_handler += seen_by_handler[static_cast<std::size_t>(id)].load() != 1;
        bad_completion += completions[static_cast<std::size_t>(id)].load() != 1;
    }
    CHECK(bad_handler == 0);
    CHECK(bad_completion == 0);
    CHECK(wrong == 0);
    CHECK(errors == 0);
}

TEST_CASE("end to end on the steady clock: an under-full batch is flushed after max_wait", "[batcher]") {
    Recorder recorder;
    llmfast::DynamicBatcher<int, int> batcher(handler_of(recorder), {.max_batch_size = 64, .max_wait = 2ms});
    const auto start = std::chrono::steady_clock::now();
    auto a = batcher.submit(1);
    REQUIRE(ready_within(a, 10000ms));  // the chapter's batcher would wait here forever
    CHECK(std::chrono::steady_clock::now() - start >= 2ms);
    CHECK(a.get() == 10);
}

// ---- the async seam: the callback form driven from an event loop ----

TEST_CASE("callback form + stop token: a queued request cancelled by its caller completes with Cancelled on a "
          "worker thread and never reaches the handler", "[batcher][async]") {
    Recorder recorder;
    const std::thread::id caller = std::this_thread::get_id();
    struct Seen {
        std::mutex mutex;
        std::condition_variable cv;
        std::vector<std::pair<ErrorCode, std::thread::id>> results;
        void add(ErrorCode code) {
            {
                std::lock_guard lock(mutex);
                results.emplace_back(code, std::this_thread::get_id());
            }
            cv.notify_all();
        }
        bool wait_for(std::size_t n) {
            std::unique_lock lock(mutex);
            return cv.wait_for(lock, 10s, [&] { return results.size() >= n; });
        }
    } seen;
    const auto callback = [&seen](llmfast::BatchResult<int>&& r) { seen.add(r.error()); };

    SECTION("cancelled while the worker was busy") {
        llmfast::ManualClock clock;
        ManualBatcher batcher(clock, handler_of(recorder), {.max_batch_size = 8, .max_wait = 0ms});
        ReleaseOnExit release(recorder);
        recorder.set_hold(true);
        batcher.submit(0, {}, callback);
        recorder.wait_entered(1);
        std::stop_source client;  // one per request: the connection's "client went away"
        batcher.submit(1, {.stop_token = client.get_token()}, callback);
        batcher.submit(2, {}, callback);
        client.request_stop();
        std::this_thread::sleep_for(5ms);  // "not yet": the callback never runs on the cancelling thread
        {
            std::lock_guard lock(seen.mutex);
            CHECK(seen.results.empty());
        }
        recorder.set_hold(false);
        REQUIRE(seen.wait_for(3));
        batcher.close();
        std::lock_guard lock(seen.mutex);
        std::size_t cancelled = 0, ok = 0;
        for (const auto& [code, thread] : seen.results) {
            CHECK(thread != caller);  // a worker thread
            cancelled += code == ErrorCode::Cancelled ? 1 : 0;
            ok += code == ErrorCode::Ok ? 1 : 0;
        }
        CHECK(cancelled == 1);
        CHECK(ok == 2);
        CHECK(recorder.snapshot() == Batches{{0}, {2}});
        CHECK(batcher.stats().cancelled == 1);
    }
    SECTION("cancelled while queued behind a long max_wait: completed promptly by an idle worker") {
        llmfast::DynamicBatcher<int, int> batcher(handler_of(recorder), {.max_batch_size = 8, .max_wait = 1h});
        std::stop_source client;
        batcher.submit(1, {.stop_token = client.get_token()}, callback);
        batcher.submit(2, {}, callback);
        client.request_stop();
        REQUIRE(seen.wait_for(1));
        {
            std::lock_guard lock(seen.mutex);
            CHECK(seen.results.size() == 1);
            CHECK(seen.results[0].first == ErrorCode::Cancelled);
            CHECK(seen.results[0].second != caller);
        }
        batcher.close();
        REQUIRE(seen.wait_for(2));
        CHECK(recorder.snapshot() == Batches{{2}});
        CHECK(batcher.stats().cancelled == 1);
    }
    SECTION("cancelled after dispatch: runs to completion") {
        llmfast::ManualClock clock;
        ManualBatcher batcher(clock, handler_of(recorder), {.max_batch_size = 8, .max_wait = 0ms});
        ReleaseOnExit release(recorder);
        recorder.set_hold(true);
        std::stop_source client;
        batcher.submit(1, {.stop_token = client.get_token()}, callback);
        recorder.wait_entered(1);
        client.request_stop();
        recorder.set_hold(false);
        REQUIRE(seen.wait_for(1));
        std::lock_guard lock(seen.mutex);
        CHECK(seen.results[0].first == ErrorCode::Ok);
    }
}

TEST_CASE("an event loop uses try_submit + the callback form: nothing blocks, reasons stay distinguishable",
          "[batcher][async]") {
    llmfast::ManualClock clock;
    Recorder recorder;
    ManualBatcher batcher(clock, handler_of(recorder), {.max_batch_size = 8, .max_wait = 1h, .max_queue = 2});
    llmfast::testing::TaskQueue loop;  // the callbacks post here, as an Asio handler posts to its strand
    std::vector<std::pair<int, ErrorCode>> completed;  // touched only on the loop's thread
    const auto submit = [&](int value, llmfast::SubmitOptions<llmfast::ManualClock> options) {
        int request = value;
        return batcher.try_submit(std::move(request), options, [&loop, &completed, value](llmfast::BatchResult<int>&& r) {
            const ErrorCode code = r.error();
            loop.post([&completed, value, code] { completed.emplace_back(value, code); });
        });
    };
    CHECK(submit(1, {.timeout = 10s}) == ErrorCode::Ok);
    CHECK(submit(2, {}) == ErrorCode::Ok);
    CHECK(submit(3, {}) == ErrorCode::QueueFull);  // -> 429, at once, no callback
    clock.advance(11s);                              // request 1's deadline passes while queued -> 504
    REQUIRE(loop.run_until([&] { return completed.size() == 1; }));
    CHECK(completed[0] == std::pair{1, ErrorCode::DeadlineExceeded});
    batcher.close();  // drains request 2
    REQUIRE(loop.run_until([&] { return completed.size() == 2; }));
    CHECK(completed[1] == std::pair{2, ErrorCode::Ok});
    CHECK(recorder.snapshot() == Batches{{2}});
    const auto stats = batcher.stats();
    CHECK(stats.rejected == 1);
    CHECK(stats.expired == 1);
}
