#include <llmfast/detail/percentile.hpp>
#include <llmfast/detail/ring_buffer.hpp>
#include <llmfast/stream.hpp>

#include "catch.hpp"
#include "test_support.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <limits>
#include <cstdint>
#include <memory>
#include <span>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using llmfast::ErrorCode;
using llmfast::ManualClock;
using llmfast::Received;
using llmfast::StreamStatus;
using llmfast::TimedReceiver;
using llmfast::TokenChannel;

using llmfast::testing::error_code_of;

namespace {

// Blocks the calling thread until the stop token fires (a model that stalls until told to stop).
void wait_for_stop(std::stop_token token) {
    std::mutex mutex;
    std::condition_variable_any cv;
    std::unique_lock lock(mutex);
    cv.wait(lock, token, [] { return false; });
}


}  // namespace

TEST_CASE("options are validated at construction", "[channel]") {
    CHECK(error_code_of([] { TokenChannel<int> channel({.capacity = 0}); }) == ErrorCode::InvalidArgument);
    TokenChannel<int> channel;
    CHECK(channel.capacity() == 1024);
    CHECK(error_code_of([&] { TimedReceiver receiver(channel, {.total = 0s}); }) == ErrorCode::InvalidArgument);
    CHECK(error_code_of([&] { TimedReceiver receiver(channel, {.idle = -1ms}); }) == ErrorCode::InvalidArgument);
    CHECK(error_code_of([&] { TimedReceiver receiver(channel, {.first_item = 0ms}); }) == ErrorCode::InvalidArgument);
    CHECK(llmfast::to_string(StreamStatus::IdleTimeout) == "IdleTimeout");
    CHECK(llmfast::to_error_code(StreamStatus::DeadlineExceeded) == ErrorCode::DeadlineExceeded);
}

TEST_CASE("a channel is a bounded FIFO that drains before reporting its end", "[channel]") {
    TokenChannel<std::string> channel({.capacity = 3});
    CHECK(channel.try_push("a") == StreamStatus::Ok);
    const std::string b = "b";
    CHECK(channel.push(b) == StreamStatus::Ok);  // a copy of an lvalue
    CHECK(channel.push("c") == StreamStatus::Ok);
    CHECK(channel.size() == 3);
    CHECK(channel.try_push("d") == StreamStatus::Timeout);  // full: backpressure
    CHECK(channel.push_until("d", std::chrono::steady_clock::now()) == StreamStatus::Timeout);
    CHECK(channel.push_for("d", 1ms) == StreamStatus::Timeout);

    Received<std::string> first = channel.try_pop();
    REQUIRE(first);
    CHECK(*first.value == "a");
    CHECK(channel.push("d") == StreamStatus::Ok);  // the ring wraps around

    SECTION("close: queued items, then Closed, forever") {
        channel.close();
        CHECK(channel.closed());
        CHECK(channel.push("e") == StreamStatus::Closed);
        std::vector<std::string> rest;
        for (Received<std::string> r = channel.pop(); r; r = channel.pop()) rest.push_back(*r.value);
        CHECK(rest == std::vector<std::string>{"b", "c", "d"});
        CHECK(channel.pop().status == StreamStatus::Closed);
        CHECK(channel.try_pop().status == StreamStatus::Closed);
        CHECK(channel.pop().is_end());
    }
    SECTION("close(error): queued items, then Failed with the error") {
        channel.close(std::make_exception_ptr(std::runtime_error("model crashed")));
        channel.close();  // idempotent: the first close wins
        std::vector<std::string> out;
        std::vector<std::string> batch;
        while (channel.pop_batch(batch, 2) == StreamStatus::Ok) out.insert(out.end(), batch.begin(), batch.end()), batch.clear();
        CHECK(out == std::vector<std::string>{"b", "c", "d"});
        Received<std::string> end = channel.pop();
        CHECK(end.status == StreamStatus::Failed);
        REQUIRE(end.error);
        CHECK_THROWS_AS(std::rethrow_exception(end.error), std::runtime_error);
    }
    SECTION("cancel: stop requested, queue dropped, both sides see Cancelled") {
        int callbacks = 0;
        std::stop_callback on_stop(channel.stop_token(), [&] { ++callbacks; });
        CHECK_FALSE(channel.stop_requested());
        channel.cancel();
        channel.cancel();
        CHECK(callbacks == 1);
        CHECK(channel.stop_requested());
        CHECK(channel.cancelled());
        CHECK(channel.size() == 0);
        CHECK(channel.push("e") == StreamStatus::Cancelled);
        CHECK(channel.pop().status == StreamStatus::Cancelled);
    }
}

TEST_CASE("cancel_on links a consumer's stop token (client disconnect) to the channel", "[channel]") {
    TokenChannel<int> channel;
    std::stop_source connection;
    {
        auto link = channel.cancel_on(connection.get_token());
        CHECK_FALSE(channel.cancelled());
        std::thread producer([&] {
            while (channel.push(1) == StreamStatus::Ok) {
            }  // fills the channel, then blocks until the disconnect
        });
        connection.request_stop();  // the client went away
        producer.join();
        CHECK(channel.cancelled());
        CHECK(channel.stop_requested());
    }
    TokenChannel<int> other;
    std::stop_source fired;
    fired.request_stop();
    auto link = other.cancel_on(fired.get_token());  // already fired: cancels at once
    CHECK(other.cancelled());
}

TEST_CASE("the ring grows with the backlog and keeps FIFO order across wrap-arounds", "[channel]") {
    TokenChannel<std::string> channel({.capacity = 100});
    int next_in = 0;
    int next_out = 0;
    bool in_order = true;
    // Push 5, pop 3, until full: the ring wraps while it grows (16 -> 32 -> 64 -> 100).
    bool full = false;
    while (!full) {
        for (int i = 0; i < 5; ++i) {
            if (channel.try_push(std::to_string(next_in)) != StreamStatus::Ok) {
                full = true;
                break;
            }
            ++next_in;
        }
        for (int i = 0; i < 3 && !full; ++i) {
            Received<std::string> r = channel.try_pop();
            REQUIRE(r);
            in_order = in_order && *r.value == std::to_string(next_out++);
        }
    }
    CHECK(channel.size() == 100);  // full at exactly the capacity
    CHECK(next_in - next_out == 100);
    channel.close();
    for (Received<std::string> r = channel.pop(); r; r = channel.pop()) {
        in_order = in_order && *r.value == std::to_string(next_out++);
    }
    CHECK(in_order);
    CHECK(next_out == next_in);
}

TEST_CASE("pop with a deadline returns Timeout and the channel stays usable", "[channel]") {
    TokenChannel<int> channel({.capacity = 2});
    CHECK(channel.pop_until(std::chrono::steady_clock::now() - 1s).status == StreamStatus::Timeout);
    CHECK(channel.pop_for(2ms).status == StreamStatus::Timeout);
    CHECK(channel.try_pop().status == StreamStatus::Timeout);
    CHECK_FALSE(channel.try_pop().is_end());
    std::vector<int> batch;
    CHECK(channel.pop_batch(batch, 4, std::chrono::steady_clock::now()) == StreamStatus::Timeout);
    CHECK(channel.push(7) == StreamStatus::Ok);
    Received<int> r = channel.pop_for(1h);
    REQUIRE(r);
    CHECK(*r.value == 7);
}

TEST_CASE("two threads: order kept under backpressure, every item delivered once", "[channel]") {
    constexpr int count = 20000;
    for (std::size_t capacity : {std::size_t{1}, std::size_t{3}, std::size_t{64}}) {
        TokenChannel<std::unique_ptr<int>> channel({.capacity = capacity});
        std::atomic<int> push_failures{0};  // Catch2 assertions are not thread-safe: count, check later
        std::jthread producer([&] {
            for (int i = 0; i < count; ++i) {
                if (channel.push(std::make_unique<int>(i)) != StreamStatus::Ok) push_failures.fetch_add(1);
            }
            channel.close();
        });
        int expected = 0;
        bool in_order = true;
        std::vector<std::unique_ptr<int>> batch;
        for (;;) {
            if (expected % 2 == 0) {
                Received<std::unique_ptr<int>> r = channel.pop();
                if (!r) break;
                in_order = in_order && **r.value == expected;
                ++expected;
            } else {
                batch.clear();
                if (channel.pop_batch(batch, 5) != StreamStatus::Ok) break;
                for (auto& p : batch) in_order = in_order && *p == expected++;
            }
        }
        producer.join();
        CHECK(push_failures.load() == 0);
        CHECK(in_order);
        CHECK(expected == count);
    }
}

TEST_CASE("a producer blocked by backpressure is released by cancel", "[channel]") {
    TokenChannel<int> channel({.capacity = 2});
    std::atomic<int> pushed{0};
    StreamStatus last = StreamStatus::Ok;
    std::thread producer([&] {
        for (;;) {
            last = channel.push(1);
            if (last != StreamStatus::Ok) return;
            pushed.fetch_add(1);
        }
    });
    while (pushed.load() < 2) std::this_thread::yield();  // the ring is full; the producer blocks
    channel.cancel();  // the consumer disconnects
    producer.join();
    CHECK(last == StreamStatus::Cancelled);
    CHECK(pushed.load() == 2);
}

TEST_CASE("stream(): a generator view over the channel", "[channel]") {
    SECTION("all items, then the end") {
        TokenChannel<int> channel({.capacity = 8});
        std::jthread producer([&] {
            for (int i = 0; i < 1000; ++i) (void)channel.push(std::move(i));
            channel.close();
        });
        long long sum = 0;
        int n = 0;
        for (int v : channel.stream()) sum += v, ++n;
        CHECK(n == 1000);
        CHECK(sum == 999LL * 1000 / 2);
        CHECK_FALSE(channel.stop_requested());
    }
    SECTION("the producer's error is rethrown after the items") {
        TokenChannel<int> channel;
        (void)channel.push(1);
        channel.close(std::make_exception_ptr(std::out_of_range("boom")));
        std::vector<int> seen;
        CHECK_THROWS_AS(
            [&] {
                for (int v : channel.stream()) seen.push_back(v);
            }(),
            std::out_of_range);
        CHECK(seen == std::vector<int>{1});
    }
    SECTION("cancellation from elsewhere throws Error(Cancelled)") {
        TokenChannel<int> channel;
        channel.cancel();
        CHECK(error_code_of([&] {
                  for (int v : channel.stream()) (void)v;
              }) == ErrorCode::Cancelled);
    }
    SECTION("a consumer that stops early cancels the producer") {
        TokenChannel<int> channel({.capacity = 4});
        bool producer_saw_stop = false;
        std::thread producer([&] {
            for (int i = 0;; ++i) {
                if (channel.push(std::move(i)) != StreamStatus::Ok) break;
            }
            producer_saw_stop = channel.stop_token().stop_requested();
        });
        int taken = 0;
        for (int v : channel.stream()) {
            (void)v;
            if (++taken == 10) break;  // the client disconnects
        }
        producer.join();
        CHECK(producer_saw_stop);
    }
}

TEST_CASE("spawn_producer runs a generator into the channel", "[channel]") {
    SECTION("all items, then Closed") {
        TokenChannel<int> channel({.capacity = 4});
        auto model = llmfast::spawn_producer(channel, [](std::stop_token) -> llmfast::StreamingGenerator<int> {
            for (int i = 0; i < 100; ++i) co_yield i;
        });
        int sum = 0;
        for (int v : channel.stream()) sum += v;
        CHECK(sum == 4950);
    }
    SECTION("an exception in the model reaches the consumer") {
        TokenChannel<std::string> channel;
        auto model = llmfast::spawn_producer(channel, [](std::stop_token) -> llmfast::StreamingGenerator<std::string> {
            co_yield "a";
            throw std::runtime_error("CUDA out of memory");
        });
        std::vector<std::string> seen;
        CHECK_THROWS_AS(
            [&] {
                for (std::string&& s : channel.stream()) seen.push_back(s);
            }(),
            std::runtime_error);
        CHECK(seen == std::vector<std::string>{"a"});
    }
    SECTION("a timeout stops an endless model; its stop_token fires") {
        ManualClock clock;
        TokenChannel<int> channel({.capacity = 2});
        auto model = llmfast::spawn_producer(channel, [](std::stop_token stop) -> llmfast::StreamingGenerator<int> {
            for (int i = 0; !stop.stop_requested(); ++i) co_yield i;  // a model loop that checks its token
        });
        TimedReceiver receiver(clock, channel, {.total = 1s});
        CHECK(receiver.next());
        clock.advance(1s);
        CHECK(receiver.next().status == StreamStatus::DeadlineExceeded);
        model.join();  // returns: the producer was stopped
        CHECK(channel.stop_requested());
    }
    SECTION("destroying the jthread early cancels the channel") {
        TokenChannel<int> channel({.capacity = 1});
        {
            auto model = llmfast::spawn_producer(channel, [](std::stop_token) { return std::views::iota(0); });
        }
        CHECK(channel.cancelled());
    }
}

TEST_CASE("TimedReceiver passes items and ends through", "[timeout]") {
    ManualClock clock;
    TokenChannel<int> channel;
    (void)channel.push(1);
    (void)channel.push(2);
    channel.close();
    TimedReceiver receiver(clock, channel, {.total = 10s, .idle = 1s});
    CHECK(*receiver.next().value == 1);
    CHECK(*receiver.next().value == 2);
    CHECK(receiver.next().status == StreamStatus::Closed);
    CHECK(receiver.next().status == StreamStatus::Closed);  // sticky
    CHECK(receiver.end_status() == StreamStatus::Closed);
}

TEST_CASE("TimedReceiver passes the producer's error and a cancellation through", "[timeout]") {
    ManualClock clock;
    SECTION("Failed: next() carries the error, values() rethrows it") {
        TokenChannel<int> channel;
        (void)channel.push(1);
        channel.close(std::make_exception_ptr(std::invalid_argument("bad prompt")));
        TimedReceiver receiver(clock, channel, {.total = 10s});
        std::vector<int> seen;
        CHECK_THROWS_AS(
            [&] {
                for (int v : receiver.values()) seen.push_back(v);
            }(),
            std::invalid_argument);
        CHECK(seen == std::vector<int>{1});
        Received<int> again = receiver.next();
        CHECK(again.status == StreamStatus::Failed);
        CHECK(again.error);
        CHECK_FALSE(channel.stop_requested());  // a producer failure is not a cancellation
    }
    SECTION("Cancelled elsewhere: Error(Cancelled) with a message") {
        TokenChannel<int> channel;
        TimedReceiver receiver(clock, channel, {.total = 10s});
        channel.cancel();
        try {
            for (int v : receiver.values()) (void)v;
            FAIL("no exception");
        } catch (const llmfast::Error& e) {
            CHECK(e.code() == ErrorCode::Cancelled);
            CHECK(std::string(e.what()).find("cancelled") != std::string::npos);
        }
    }
    SECTION("timeout messages say which limit fired") {
        TokenChannel<int> channel;
        TimedReceiver receiver(clock, channel, {.first_item = 250ms});
        clock.advance(250ms);
        try {
            for (int v : receiver.values()) (void)v;
            FAIL("no exception");
        } catch (const llmfast::Error& e) {
            CHECK(e.code() == ErrorCode::IdleTimeout);
            CHECK(std::string(e.what()) == "IdleTimeout: no first token within 250 ms");
        }
    }
}

TEST_CASE("TimedReceiver: overall deadline", "[timeout]") {
    ManualClock clock;
    TokenChannel<int> channel;
    TimedReceiver receiver(clock, channel, {.total = 5s, .idle = 2s});
    CHECK(receiver.deadline() == ManualClock::time_point(5s));
    // Tokens every second: the idle timeout never fires, the total deadline does.
    int delivered = 0;
    StreamStatus end = StreamStatus::Ok;
    for (int i = 0; i < 10; ++i) {
        if (channel.push(std::move(i)) != StreamStatus::Ok) break;
        Received<int> r = receiver.next();
        if (!r) {
            end = r.status;
            break;
        }
        ++delivered;
        clock.advance(1s);
    }
    CHECK(end == StreamStatus::DeadlineExceeded);
    CHECK(delivered == 5);                       // at t = 0, 1, 2, 3, 4
    CHECK(channel.stop_requested());             // the producer was told to stop
    CHECK(channel.push(99) == StreamStatus::Cancelled);
    CHECK(receiver.next().status == StreamStatus::DeadlineExceeded);
}

TEST_CASE("TimedReceiver: idle and first-item timeouts", "[timeout]") {
    ManualClock clock;
    TokenChannel<int> channel;
    SECTION("a gap longer than idle ends the stream with IdleTimeout") {
        TimedReceiver receiver(clock, channel, {.idle = 100ms});
        clock.advance(10s);  // no first_item limit: a slow prefill is fine
        (void)channel.push(1);
        CHECK(receiver.next());
        clock.advance(100ms);
        (void)channel.push(2);  // too late: the gap already reached the idle timeout
        CHECK(receiver.next().status == StreamStatus::IdleTimeout);
        CHECK(channel.stop_requested());
    }
    SECTION("an item that arrives while waiting, but after the limit, is not delivered") {
        TimedReceiver receiver(clock, channel, {.idle = 1h});
        (void)channel.push(1);
        CHECK(receiver.next());
        std::jthread producer([&] {
            clock.advance(2h);  // the model stalls (by the injected clock) ...
            (void)channel.push(2);  // ... then emits
        });
        CHECK(receiver.next().status == StreamStatus::IdleTimeout);
    }
    SECTION("first_item bounds the wait for the first token") {
        TimedReceiver receiver(clock, channel, {.first_item = 3s, .idle = 100ms});
        clock.advance(3s);
        CHECK(receiver.next().status == StreamStatus::IdleTimeout);
    }
    SECTION("values() throws the distinct timeout error") {
        TimedReceiver receiver(clock, channel, {.total = 1s});
        (void)channel.push(1);
        std::vector<int> seen;
        CHECK(error_code_of([&] {
                  for (int v : receiver.values()) {
                      seen.push_back(v);
                      clock.advance(1s);
                  }
              }) == ErrorCode::DeadlineExceeded);
        CHECK(seen == std::vector<int>{1});
    }
    SECTION("events() yields the items and exactly one end event") {
        TimedReceiver receiver(clock, channel, {.idle = 1s});
        (void)channel.push(1);
        std::vector<StreamStatus> statuses;
        std::vector<int> values;
        for (auto&& event : receiver.events()) {
            statuses.push_back(event.status);
            if (!event) continue;  // the end event is the last one the generator yields
            values.push_back(*event.value);
            if (*event.value < 3) {
                (void)channel.push(*event.value + 1);
                clock.advance(600ms);  // within idle
            } else {
                clock.advance(2s);  // the model stalls
            }
        }
        CHECK(values == std::vector<int>{1, 2, 3});
        CHECK(statuses == std::vector<StreamStatus>{StreamStatus::Ok, StreamStatus::Ok, StreamStatus::Ok,
                                                    StreamStatus::IdleTimeout});
    }
}

TEST_CASE("a receiver dropped before the end cancels the producer", "[timeout]") {
    TokenChannel<int> channel;
    {
        TimedReceiver receiver(channel, {.total = 1h});
        (void)channel.push(1);
        CHECK(receiver.next());
    }
    CHECK(channel.stop_requested());
    TokenChannel<int> finished;
    finished.close();
    {
        TimedReceiver receiver(finished, {.total = 1h});
        CHECK(receiver.next().status == StreamStatus::Closed);
    }
    CHECK_FALSE(finished.stop_requested());  // a stream that ended normally is not cancelled
}

TEST_CASE("end to end: a stalled producer is stopped at the deadline (real clock)", "[timeout][e2e]") {
    for (const bool idle : {false, true}) {
        TokenChannel<std::string> channel({.capacity = 4});
        std::atomic<bool> producer_stopped{false};
        std::jthread model([&] {
            (void)channel.push("first");
            wait_for_stop(channel.stop_token());  // stalls until told to stop
            producer_stopped = true;
        });
        const auto started = std::chrono::steady_clock::now();
        llmfast::StreamTimeouts limits;
        if (idle) {
            limits.idle = 50ms;
        } else {
            limits.total = 100ms;
        }
        TimedReceiver receiver(channel, limits);
        std::vector<std::string> got;
        StreamStatus end = StreamStatus::Ok;
        for (auto&& event : receiver.events()) {
            if (event) {
                got.push_back(*event.value);
            } else {
                end = event.status;
            }
        }
        model.join();
        const auto waited = std::chrono::steady_clock::now() - started;
        CHECK(got == std::vector<std::string>{"first"});
        CHECK(end == (idle ? StreamStatus::IdleTimeout : StreamStatus::DeadlineExceeded));
        CHECK(producer_stopped);
        CHECK(waited < 10s);  // generous: the point is that it returns at all
    }
}

TEST_CASE("utf8_chunks: characters split at every byte position come out whole", "[utf8]") {
    // 1-, 2-, 3- and 4-byte characters: "a", "é", "中", "文", U+1F600.
    const std::string text = "a\xC3\xA9\xE4\xB8\xAD\xE6\x96\x87\xF0\x9F\x98\x80z";
    for (std::size_t i = 0; i <= text.size(); ++i) {
        for (std::size_t j = i; j <= text.size(); ++j) {
            const std::vector<std::string> tokens = {text.substr(0, i), text.substr(i, j - i), text.substr(j)};
            std::string joined;
            bool all_valid = true;
            for (std::string_view chunk : llmfast::utf8_chunks(tokens)) {
                all_valid = all_valid && llmfast::utf8::is_valid(chunk) && !chunk.empty();
                joined += chunk;
            }
            CHECK(all_valid);
            CHECK(joined == text);
        }
    }
    // One byte per token: every chunk is one whole character.
    std::vector<std::string> bytes;
    for (char c : text) bytes.emplace_back(1, c);
    std::vector<std::string> chunks;
    for (std::string_view chunk : llmfast::utf8_chunks(bytes)) chunks.emplace_back(chunk);
    CHECK(chunks == std::vector<std::string>{"a", "\xC3\xA9", "\xE4\xB8\xAD", "\xE6\x96\x87", "\xF0\x9F\x98\x80", "z"});
}

TEST_CASE("utf8_chunks: a dangling tail and ill-formed bytes become U+FFFD", "[utf8]") {
    const std::vector<std::string_view> tokens = {"ok", "\xFF", "\xE4\xB8"};
    std::string joined;
    for (std::string_view chunk : llmfast::utf8_chunks(tokens)) joined += chunk;
    CHECK(joined == "ok\xEF\xBF\xBD\xEF\xBF\xBD");

    // Over a channel's generator (an rvalue range is moved in).
    TokenChannel<std::string> channel;
    (void)channel.push("\xE4");
    (void)channel.push("\xBD\xA0\xE5\xA5");
    (void)channel.push("\xBD");
    channel.close();
    std::vector<std::string> out;
    for (std::string_view chunk : llmfast::utf8_chunks(channel.stream())) out.emplace_back(chunk);
    CHECK(out == std::vector<std::string>{"\xE4\xBD\xA0", "\xE5\xA5\xBD"});
}

TEST_CASE("StreamRecorder: TTFT, inter-token percentiles, rates", "[metrics]") {
    ManualClock clock;
    llmfast::StreamRecorder metrics(clock);
    CHECK_FALSE(metrics.time_to_first_token());
    CHECK(metrics.inter_token_percentile(50) == 0ns);
    clock.advance(200ms);
    metrics.record_token();
    for (int gap_ms = 10; gap_ms <= 100; gap_ms += 10) {  // gaps 10, 20, ..., 100 ms
        clock.advance(std::chrono::milliseconds(gap_ms));
        metrics.record_token();
    }
    clock.advance(250ms);
    metrics.finish();
    clock.advance(1h);  // after finish: no effect
    const llmfast::StreamStats s = metrics.stats();
    CHECK(s.tokens == 11);
    REQUIRE(s.time_to_first_token);
    CHECK(*s.time_to_first_token == 200ms);
    CHECK(s.total == 200ms + 550ms + 250ms);
    CHECK(s.tokens_per_second == Approx(11.0));
    CHECK(s.decode_tokens_per_second == Approx(10.0 / 0.55));
    CHECK(s.inter_token_p50 == 50ms);
    CHECK(s.inter_token_p90 == 90ms);
    CHECK(s.inter_token_p99 == 100ms);
    CHECK(s.inter_token_max == 100ms);
    CHECK(metrics.inter_token_percentile(0) == 10ms);
    CHECK(metrics.inter_token_percentile(100) == 100ms);
    CHECK(metrics.inter_token_gaps().size() == 10);

    metrics.start();
    metrics.record_token(5);  // one arrival carrying 5 tokens
    CHECK(metrics.token_count() == 5);
    CHECK(metrics.time_to_first_token() == 0ns);
    CHECK(metrics.inter_token_gaps().empty());

    llmfast::StreamRecorder steady;  // the default clock needs no argument
    steady.record_token();
    CHECK(steady.token_count() == 1);
}

TEST_CASE("saturating deadlines: extreme and negative durations never overflow", "[channel][timeout]") {
    // Issue 11: pop_for(hours::min()) converted hours::min() to nanoseconds (signed overflow, UB;
    // UBSan reports it under the asan preset) because the add saturated only upward.
    using TP = ManualClock::time_point;
    using llmfast::detail::saturating_add;
    const TP zero{};
    const TP five(5ns);
    const TP minus_five(-5ns);
    CHECK(saturating_add(five, std::chrono::hours::max()) == TP::max());
    CHECK(saturating_add(five, std::chrono::hours::min()) == TP::min());
    CHECK(saturating_add(zero, std::chrono::nanoseconds::min()) == TP::min());
    CHECK(saturating_add(zero, std::chrono::nanoseconds::max()) == TP::max());
    CHECK(saturating_add(five, std::chrono::nanoseconds::max()) == TP::max());
    CHECK(saturating_add(minus_five, std::chrono::nanoseconds::min()) == TP::min());
    CHECK(saturating_add(minus_five, std::chrono::nanoseconds::max()) == TP(std::chrono::nanoseconds::max() - 5ns));
    CHECK(saturating_add(TP::max(), 1ns) == TP::max());
    CHECK(saturating_add(TP::min(), -1ns) == TP::min());
    CHECK(saturating_add(TP::max(), std::chrono::hours::min()) == TP::min());
    CHECK(saturating_add(TP::max(), std::chrono::nanoseconds::min()) == TP(-1ns));  // in range: exact
    CHECK(saturating_add(TP::min(), std::chrono::nanoseconds::max()) == TP(-1ns));
    CHECK(saturating_add(TP::min(), std::chrono::hours::max()) == TP::max());
    CHECK(saturating_add(five, -3ns) == TP(2ns));
    CHECK(saturating_add(five, 2h) == TP(2h + 5ns));
    CHECK(saturating_add(five, -2h) == TP(-2h + 5ns));
    CHECK(saturating_add(five, std::chrono::duration<double>(-1e300)) == TP::min());
    CHECK(saturating_add(five, std::chrono::duration<double>(1e300)) == TP::max());
    CHECK(saturating_add(five, std::chrono::duration<double>(std::numeric_limits<double>::quiet_NaN())) == five);
    CHECK(saturating_add(five, std::chrono::duration<double>(1.5)) == TP(1500ms + 5ns));
    // Just below and just above the room left: exact, then saturated.
    const auto room = TP::max() - five;
    CHECK(saturating_add(five, room - 1ns) == TP::max() - 1ns);
    CHECK(saturating_add(five, room) == TP::max());
    CHECK(saturating_add(five, std::chrono::duration_cast<std::chrono::hours>(room)) ==
          five + std::chrono::duration_cast<std::chrono::hours>(room));
    CHECK(saturating_add(five, std::chrono::duration_cast<std::chrono::hours>(room) + 1h) == TP::max());
}

TEST_CASE("pop_for / push_for: a negative or minimal timeout does not wait, a maximal one is no limit",
          "[channel]") {
    TokenChannel<int> channel({.capacity = 1});
    CHECK(channel.pop_for(std::chrono::hours::min()).status == StreamStatus::Timeout);
    CHECK(channel.pop_for(std::chrono::nanoseconds::min()).status == StreamStatus::Timeout);
    CHECK(channel.pop_for(-1s).status == StreamStatus::Timeout);
    CHECK(channel.pop_for(std::chrono::duration<double>(-std::numeric_limits<double>::infinity())).status ==
          StreamStatus::Timeout);
    CHECK(channel.pop_for(std::chrono::duration<double>(std::numeric_limits<double>::quiet_NaN())).status ==
          StreamStatus::Timeout);
    CHECK(channel.push_for(1, std::chrono::hours::max()) == StreamStatus::Ok);
    CHECK(channel.push_for(2, std::chrono::hours::min()) == StreamStatus::Timeout);  // full
    CHECK(channel.push_for(2, -1h) == StreamStatus::Timeout);
    Received<int> got = channel.pop_for(std::chrono::hours::max());
    REQUIRE(got);
    CHECK(*got.value == 1);
    // hours::max() while empty: waits (no limit) until a producer delivers.
    std::jthread producer([&] { CHECK(channel.push_for(3, std::chrono::hours::max()) == StreamStatus::Ok); });
    got = channel.pop_for(std::chrono::hours::max());
    REQUIRE(got);
    CHECK(*got.value == 3);
    producer.join();
    channel.close();
    CHECK(channel.pop_for(std::chrono::hours::min()).status == StreamStatus::Closed);
}

TEST_CASE("TimedReceiver: a clock with negative time_points and no limits does not overflow", "[timeout]") {
    // The remaining wait was `limit - now`: max() - (a negative now) overflowed.
    ManualClock clock(-1h);
    TokenChannel<int> channel;
    TimedReceiver receiver(clock, channel);
    CHECK(receiver.deadline() == ManualClock::time_point::max() - 1h);  // no limit: -1h + nanoseconds::max()
    CHECK(channel.push(1) == StreamStatus::Ok);
    Received<int> got = receiver.next();
    REQUIRE(got);
    CHECK(*got.value == 1);
    channel.close();
    CHECK(receiver.next().status == StreamStatus::Closed);

    ManualClock late(std::chrono::nanoseconds::min() + 1h);
    TokenChannel<int> other;
    TimedReceiver limited(late, other, {.total = 2h, .idle = 1h});
    CHECK(other.push(2) == StreamStatus::Ok);
    REQUIRE(limited.next());
    late.advance(90min);
    CHECK(limited.next().status == StreamStatus::IdleTimeout);
}

TEST_CASE("detail::RingBuffer: FIFO across wrap-around and growth, bounded growth, no steady-state allocation",
          "[channel][ring]") {
    llmfast::detail::RingBuffer<std::unique_ptr<int>> ring;
    CHECK(ring.empty());
    CHECK(ring.capacity() == 0);
    int next_in = 0, next_out = 0;
    // Interleave pushes and pops so the head wraps, then grow with a wrapped head.
    for (int round = 0; round < 5; ++round) {
        for (int i = 0; i < 10 + round * 7; ++i) ring.push_back(std::make_unique<int>(next_in++));
        for (int i = 0; i < 8; ++i) CHECK(*ring.take_front() == next_out++);
        for (std::size_t i = 0; i < ring.size(); ++i) CHECK(*ring[i] == next_out + static_cast<int>(i));
    }
    const std::size_t grown = ring.capacity();
    CHECK(grown >= ring.size());
    // Steady state: a queue that stays below its capacity does not reallocate.
    for (int i = 0; i < 1000; ++i) {
        ring.push_back(std::make_unique<int>(next_in++));
        CHECK(*ring.front() == next_out);
        ring.pop_front();
        ++next_out;
    }
    CHECK(ring.capacity() == grown);
    ring.clear();
    CHECK(ring.empty());
    CHECK(ring.capacity() == grown);

    // A bounded ring grows 16, 32, ... and stops at its limit (a channel's capacity need not be 2^k).
    llmfast::detail::RingBuffer<std::string> bounded(100);
    bounded.reserve(16);
    CHECK(bounded.capacity() == 16);
    for (int i = 0; i < 100; ++i) bounded.emplace_back(std::to_string(i));
    CHECK(bounded.capacity() == 100);
    for (int i = 0; i < 100; ++i) CHECK(bounded.take_front() == std::to_string(i));
    llmfast::detail::RingBuffer<int> one(1);
    one.reserve(16);
    CHECK(one.capacity() == 1);
}

TEST_CASE("detail::nearest_rank and LogHistogram: one percentile definition", "[metrics][percentile]") {
    using llmfast::detail::nearest_rank;
    const std::vector<int> none;
    CHECK(nearest_rank(std::span<const int>(none), 50) == 0);
    const std::vector<int> ten = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    const std::span<const int> s(ten);
    CHECK(nearest_rank(s, 0) == 1);
    CHECK(nearest_rank(s, 10) == 1);
    CHECK(nearest_rank(s, 10.1) == 2);
    CHECK(nearest_rank(s, 50) == 5);
    CHECK(nearest_rank(s, 90) == 9);
    CHECK(nearest_rank(s, 99) == 10);
    CHECK(nearest_rank(s, 100) == 10);
    CHECK(nearest_rank(s, 250) == 10);  // clamped
    CHECK(nearest_rank(s, -5) == 1);
    const std::vector<int> two = {6, 10};
    CHECK(nearest_rank(std::span<const int>(two), 50) == 6);
    CHECK(nearest_rank(std::span<const int>(two), 90) == 10);

    llmfast::detail::LogHistogram histogram;
    CHECK(histogram.percentile(50) == 0);
    for (std::int64_t v = 1; v <= 10; ++v) histogram.record(v);  // exact below 16
    CHECK(histogram.percentile(50) == 5);
    CHECK(histogram.percentile(90) == 9);
    CHECK(histogram.percentile(99) == 10);
    CHECK(histogram.max() == 10);
    histogram.record(-3);  // counts as 0
    CHECK(histogram.total() == 11);
    CHECK(histogram.percentile(0) == 0);
    llmfast::detail::LogHistogram big;
    big.record(1'000'000);
    big.record(2'000'000);
    CHECK(big.percentile(50) >= 1'000'000);
    CHECK(big.percentile(50) <= 1'125'000);  // <= 12.5% high
    CHECK(big.percentile(100) == 2'000'000);  // capped at the maximum
}

// ---- the async seam: readiness callbacks and stats ----

TEST_CASE("on_ready fires at once when try_pop would not return Timeout", "[channel][async]") {
    int calls = 0;
    SECTION("an item is queued") {
        TokenChannel<int> channel({.capacity = 4});
        REQUIRE(channel.try_push(1) == StreamStatus::Ok);
        llmfast::Subscription sub = channel.on_ready([&] { ++calls; });
        CHECK(calls == 1);  // on this thread, before on_ready returned
        CHECK_FALSE(sub.pending());
    }
    SECTION("closed") {
        TokenChannel<int> channel({.capacity = 4});
        channel.close();
        llmfast::Subscription sub = channel.on_ready([&] { ++calls; });
        CHECK(calls == 1);
        CHECK(channel.try_pop().status == StreamStatus::Closed);
    }
    SECTION("failed") {
        TokenChannel<int> channel({.capacity = 4});
        channel.close(std::make_exception_ptr(std::runtime_error("model died")));
        llmfast::Subscription sub = channel.on_ready([&] { ++calls; });
        CHECK(calls == 1);
        CHECK(channel.try_pop().status == StreamStatus::Failed);
    }
    SECTION("cancelled") {
        TokenChannel<int> channel({.capacity = 4});
        channel.cancel();
        llmfast::Subscription sub = channel.on_ready([&] { ++calls; });
        CHECK(calls == 1);
        CHECK(channel.try_pop().status == StreamStatus::Cancelled);
    }
}

TEST_CASE("on_ready fires once, from push / close / cancel, outside the channel's lock", "[channel][async]") {
    TokenChannel<int> channel({.capacity = 4});
    int calls = 0;
    Received<int> seen;
    // The callback calls back into the channel: it would deadlock if it ran under the lock.
    llmfast::Subscription sub = channel.on_ready([&] {
        ++calls;
        seen = channel.try_pop();
    });
    CHECK(calls == 0);
    CHECK(sub.pending());
    CHECK(channel.try_pop().status == StreamStatus::Timeout);
    REQUIRE(channel.push(7) == StreamStatus::Ok);
    CHECK(calls == 1);
    CHECK(seen.status == StreamStatus::Ok);
    CHECK(*seen.value == 7);
    REQUIRE(channel.push(8) == StreamStatus::Ok);
    CHECK(calls == 1);  // at most once per registration

    SECTION("close wakes a registered consumer") {
        REQUIRE(channel.try_pop().status == StreamStatus::Ok);
        int closed_calls = 0;
        llmfast::Subscription end = channel.on_ready([&] { ++closed_calls; });
        channel.close();
        CHECK(closed_calls == 1);
        CHECK(channel.try_pop().status == StreamStatus::Closed);
    }
    SECTION("cancel wakes every registered consumer") {
        REQUIRE(channel.try_pop().status == StreamStatus::Ok);
        int a = 0, b = 0;
        llmfast::Subscription first = channel.on_ready([&] { ++a; });
        llmfast::Subscription second = channel.on_ready([&] { ++b; });
        channel.cancel();
        CHECK(a == 1);
        CHECK(b == 1);
    }
    SECTION("a cancelled registration is never called") {
        REQUIRE(channel.try_pop().status == StreamStatus::Ok);
        int late = 0;
        llmfast::Subscription gone = channel.on_ready([&] { ++late; });
        CHECK(gone.cancel());
        REQUIRE(channel.push(9) == StreamStatus::Ok);
        CHECK(late == 0);
    }
}

TEST_CASE("on_space: at once when there is room; after a full channel, once half of it is free", "[channel][async]") {
    TokenChannel<int> channel({.capacity = 4});
    int calls = 0;
    {
        llmfast::Subscription room = channel.on_space([&] { ++calls; });
        CHECK(calls == 1);
    }
    for (int i = 0; i < 4; ++i) REQUIRE(channel.try_push(int{i}) == StreamStatus::Ok);
    CHECK(channel.try_push(4) == StreamStatus::Timeout);
    calls = 0;
    llmfast::Subscription sub = channel.on_space([&] {
        ++calls;
        CHECK(channel.try_push(100) == StreamStatus::Ok);  // outside the lock
    });
    CHECK(calls == 0);
    REQUIRE(channel.try_pop().status == StreamStatus::Ok);  // 1 free of 4: below the hysteresis
    CHECK(calls == 0);
    REQUIRE(channel.try_pop().status == StreamStatus::Ok);  // 2 free: half
    CHECK(calls == 1);
    CHECK(channel.size() == 3);

    SECTION("close and cancel wake a registered producer") {
        REQUIRE(channel.try_push(5) == StreamStatus::Ok);  // full again
        int a = 0;
        llmfast::Subscription s = channel.on_space([&] { ++a; });
        CHECK(a == 0);
        channel.close();
        CHECK(a == 1);
        CHECK(channel.try_push(6) == StreamStatus::Closed);
    }
    SECTION("cancel") {
        REQUIRE(channel.try_push(5) == StreamStatus::Ok);
        int a = 0;
        llmfast::Subscription s = channel.on_space([&] { ++a; });
        channel.cancel();
        CHECK(a == 1);
        CHECK(channel.try_push(6) == StreamStatus::Cancelled);
    }
    SECTION("pop_batch wakes it too") {
        REQUIRE(channel.try_push(5) == StreamStatus::Ok);
        int a = 0;
        llmfast::Subscription s = channel.on_space([&] { ++a; });
        std::vector<int> out;
        REQUIRE(channel.pop_batch(out, 4) == StreamStatus::Ok);
        CHECK(a == 1);
    }
}

TEST_CASE("stats: pushed, popped, discarded at cancel, queued", "[channel][async]") {
    TokenChannel<int> channel({.capacity = 8});
    for (int i = 0; i < 5; ++i) REQUIRE(channel.push(int{i}) == StreamStatus::Ok);
    REQUIRE(channel.pop().status == StreamStatus::Ok);
    std::vector<int> out;
    REQUIRE(channel.pop_batch(out, 2) == StreamStatus::Ok);
    llmfast::TokenChannelStats s = channel.stats();
    CHECK(s.pushed == 5);
    CHECK(s.popped == 3);
    CHECK(s.queued == 2);
    CHECK(s.discarded == 0);
    channel.cancel();
    s = channel.stats();
    CHECK(s.discarded == 2);
    CHECK(s.queued == 0);
    CHECK(channel.push(1) == StreamStatus::Cancelled);
    CHECK(channel.stats().pushed == 5);
}

namespace {

// An async producer and consumer on executors, never blocking: each drains / fills with try_*, then
// registers and returns; the callback posts the next step to the executor.
struct AsyncPipe {
    AsyncPipe(TokenChannel<int>& c, llmfast::testing::TaskQueue& p, llmfast::testing::TaskQueue& q, int n)
        : channel(c), producer_loop(p), consumer_loop(q), items(n) {}
    TokenChannel<int>& channel;
    llmfast::testing::TaskQueue& producer_loop;
    llmfast::testing::TaskQueue& consumer_loop;
    int items;
    int next = 0;
    std::vector<int> received;
    std::optional<StreamStatus> end;
    llmfast::Subscription producer_wait;
    llmfast::Subscription consumer_wait;

    void produce() {
        while (next < items) {
            const StreamStatus status = channel.try_push(int{next});
            if (status == StreamStatus::Timeout) {
                producer_wait = channel.on_space([this] { producer_loop.post([this] { produce(); }); });
                return;
            }
            REQUIRE(status == StreamStatus::Ok);
            ++next;
        }
        channel.close();
    }
    void consume() {
        for (;;) {
            Received<int> got = channel.try_pop();
            if (got.status == StreamStatus::Timeout) {
                consumer_wait = channel.on_ready([this] { consumer_loop.post([this] { consume(); }); });
                return;
            }
            if (got.is_end()) {
                end = got.status;
                return;
            }
            received.push_back(*got.value);
        }
    }
};

}  // namespace

TEST_CASE("an event loop drives both ends through try_* and readiness callbacks (one thread)", "[channel][async]") {
    TokenChannel<int> channel({.capacity = 4});
    llmfast::testing::TaskQueue loop;
    AsyncPipe pipe(channel, loop, loop, 1000);
    loop.post([&] { pipe.consume(); });
    loop.post([&] { pipe.produce(); });
    REQUIRE(loop.run_until([&] { return pipe.end.has_value(); }));
    CHECK(*pipe.end == StreamStatus::Closed);
    REQUIRE(pipe.received.size() == 1000);
    for (int i = 0; i < 1000; ++i) CHECK(pipe.received[static_cast<std::size_t>(i)] == i);
    CHECK(channel.stats().pushed == 1000);
    CHECK(channel.stats().popped == 1000);
}

TEST_CASE("stress: async producer and consumer on two event-loop threads, order and exactly-once kept",
          "[channel][async][stress]") {
    for (std::size_t capacity : {std::size_t{1}, std::size_t{3}, std::size_t{64}}) {
        TokenChannel<int> channel({.capacity = capacity});
        llmfast::testing::TaskQueue producer_loop, consumer_loop;
        constexpr int items = 20000;
        AsyncPipe pipe(channel, producer_loop, consumer_loop, items);
        std::atomic<bool> produced{false};
        std::thread producer([&] {
            producer_loop.post([&] { pipe.produce(); });
            CHECK(producer_loop.run_until([&] { return pipe.next == items; }));
            produced = true;
        });
        consumer_loop.post([&] { pipe.consume(); });
        REQUIRE(consumer_loop.run_until([&] { return pipe.end.has_value(); }));
        producer.join();
        CHECK(produced.load());
        CHECK(*pipe.end == StreamStatus::Closed);
        REQUIRE(pipe.received.size() == static_cast<std::size_t>(items));
        bool in_order = true;
        for (int i = 0; i < items; ++i) in_order = in_order && pipe.received[static_cast<std::size_t>(i)] == i;
        CHECK(in_order);
        // Destroy the subscriptions before the loops they post to.
        pipe.producer_wait.cancel();
        pipe.consumer_wait.cancel();
    }
}

TEST_CASE("stress: registrations cancelled while a producer pushes never fire after cancel() returned",
          "[channel][async][stress]") {
    TokenChannel<int> channel({.capacity = 16});
    std::atomic<bool> stop{false};
    std::thread producer([&] {
        int i = 0;
        while (!stop.load()) {
            if (channel.try_push(int{i}) == StreamStatus::Ok) ++i;
            else std::this_thread::yield();
        }
    });
    int violations = 0;
    for (int round = 0; round < 5000; ++round) {
        auto alive = std::make_shared<std::atomic<bool>>(true);
        std::atomic<int> fired{0};
        llmfast::Subscription sub = channel.on_ready([alive, &fired] {
            if (!alive->load()) std::abort();  // must never run after cancel() returned
            fired.fetch_add(1);
        });
        (void)channel.try_pop();
        sub.cancel();
        alive->store(false);
        if (fired.load() > 1) ++violations;
    }
    stop = true;
    producer.join();
    CHECK(violations == 0);
    channel.cancel();
}
