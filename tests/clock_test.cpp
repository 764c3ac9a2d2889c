#include <llmfast/clock.hpp>

#include "catch.hpp"

#include <chrono>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

TEST_CASE("ManualClock moves only when told", "[core]") {
    llmfast::ManualClock clock(5s);
    const auto start = clock.now();
    CHECK(start.time_since_epoch() == 5s);
    clock.advance(250ms);
    CHECK(clock.now() - start == 250ms);
    clock.set(llmfast::ManualClock::time_point(1h));
    CHECK(clock.now().time_since_epoch() == 1h);
}

TEST_CASE("ManualClock advances atomically from many threads", "[core]") {
    llmfast::ManualClock clock;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&] { for (int i = 0; i < 1000; ++i) clock.advance(1ns); });
    for (auto& thread : threads) thread.join();
    CHECK(clock.now().time_since_epoch() == 4000ns);
}

TEST_CASE("SteadyClock models Clock and is monotonic", "[core]") {
    STATIC_REQUIRE(llmfast::Clock<llmfast::SteadyClock>);
    STATIC_REQUIRE_FALSE(llmfast::Clock<int>);
    const llmfast::SteadyClock clock;
    const auto a = clock.now();
    CHECK(clock.now() >= a);
}
