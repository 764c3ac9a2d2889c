#include <llmfast/clock.hpp>
#include <llmfast/detail/saturating.hpp>

#include "catch.hpp"

#include <chrono>
#include <cstdint>
#include <limits>
#include <ratio>
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

TEST_CASE("detail::saturating_add: exact integer arithmetic, clamped both ways, any units", "[core][saturating]") {
    using llmfast::detail::add_sat;
    using llmfast::detail::deadline_after;
    using llmfast::detail::saturating_add;
    using ns = std::chrono::nanoseconds;
    using NsPoint = std::chrono::time_point<std::chrono::steady_clock, ns>;
    // The extremes of every sign combination, in the time point's own units.
    CHECK(saturating_add(NsPoint::max(), ns::max()) == NsPoint::max());
    CHECK(saturating_add(NsPoint::min(), ns::min()) == NsPoint::min());
    CHECK(saturating_add(NsPoint::max(), ns::min()) == NsPoint(ns(-1)));
    CHECK(saturating_add(NsPoint::min(), ns::max()) == NsPoint(ns(-1)));
    CHECK(saturating_add(NsPoint::min(), ns::zero()) == NsPoint::min());
    CHECK(saturating_add(NsPoint(ns(1)), ns::max()) == NsPoint::max());
    CHECK(saturating_add(NsPoint(ns(-1)), ns::max()) == NsPoint(ns::max() - ns(1)));
    CHECK(saturating_add(NsPoint(ns(-1)), ns::min()) == NsPoint::min());
    CHECK(saturating_add(NsPoint(ns(0)), ns::min()) == NsPoint::min());
    CHECK(saturating_add(NsPoint(ns(1)), ns::min()) == NsPoint(ns::min() + ns(1)));

    // Coarser units into a nanosecond time point: exact until the last representable nanosecond.
    constexpr std::int64_t max_seconds = std::numeric_limits<std::int64_t>::max() / 1'000'000'000;  // 9223372036
    CHECK(saturating_add(NsPoint(), std::chrono::seconds(max_seconds)) == NsPoint(std::chrono::seconds(max_seconds)));
    CHECK(saturating_add(NsPoint(), std::chrono::seconds(max_seconds + 1)) == NsPoint::max());
    CHECK(saturating_add(NsPoint(), std::chrono::seconds(-max_seconds)) == NsPoint(std::chrono::seconds(-max_seconds)));
    CHECK(saturating_add(NsPoint(), std::chrono::seconds(-max_seconds - 1)) == NsPoint::min());
    CHECK(saturating_add(NsPoint::min(), std::chrono::seconds(max_seconds)) ==
          NsPoint(ns::min() + std::chrono::seconds(max_seconds)));
    CHECK(saturating_add(NsPoint(), std::chrono::seconds::max()) == NsPoint::max());
    CHECK(saturating_add(NsPoint(), std::chrono::seconds::min()) == NsPoint::min());
    CHECK(saturating_add(NsPoint::max(), std::chrono::years::min()) == NsPoint::min());

    // Finer units into a coarser time point: rounded toward zero (as duration_cast), never overflowing.
    using SecPoint = std::chrono::time_point<std::chrono::system_clock, std::chrono::seconds>;
    CHECK(saturating_add(SecPoint(std::chrono::seconds(10)), ns(1'999'999'999)) == SecPoint(std::chrono::seconds(11)));
    CHECK(saturating_add(SecPoint(std::chrono::seconds(10)), ns(-1'999'999'999)) == SecPoint(std::chrono::seconds(9)));
    CHECK(saturating_add(SecPoint::max(), ns::max()) == SecPoint::max());
    CHECK(saturating_add(SecPoint::min(), ns::min()) == SecPoint::min());
    CHECK(saturating_add(SecPoint::max(), ns::min()) == SecPoint(std::chrono::seconds::max() - std::chrono::seconds(max_seconds)));

    // A clock finer than a nanosecond (picoseconds): nanoseconds multiply by 1000, exactly or saturated.
    using ps = std::chrono::duration<std::int64_t, std::pico>;
    using PsPoint = std::chrono::time_point<std::chrono::steady_clock, ps>;
    CHECK(saturating_add(PsPoint(), ns(5)) == PsPoint(ps(5000)));
    CHECK(saturating_add(PsPoint(), ns(-5)) == PsPoint(ps(-5000)));
    CHECK(saturating_add(PsPoint(), ns::max()) == PsPoint::max());
    CHECK(saturating_add(PsPoint(), ns::min()) == PsPoint::min());
    CHECK(saturating_add(PsPoint::max(), ns(-1)) == PsPoint(ps::max() - ps(1000)));
    CHECK(saturating_add(PsPoint::min(), ns(1)) == PsPoint(ps::min() + ps(1000)));
    CHECK(saturating_add(PsPoint(), ns(std::numeric_limits<std::int64_t>::max() / 1000)) ==
          PsPoint(ps(std::numeric_limits<std::int64_t>::max() / 1000 * 1000)));
    CHECK(saturating_add(PsPoint(), ns(std::numeric_limits<std::int64_t>::max() / 1000 + 1)) == PsPoint::max());

    // A ratio that is neither a multiple nor a divisor (1/3 s ticks; 1/7 s durations), and one whose
    // conversion factor overflows 64 bits (1/(2^62) s durations into 1/3 s ticks): exact floor.
    using third = std::chrono::duration<std::int64_t, std::ratio<1, 3>>;
    using seventh = std::chrono::duration<std::int64_t, std::ratio<1, 7>>;
    using ThirdPoint = std::chrono::time_point<std::chrono::steady_clock, third>;
    CHECK(saturating_add(ThirdPoint(), seventh(7)) == ThirdPoint(third(3)));
    CHECK(saturating_add(ThirdPoint(), seventh(6)) == ThirdPoint(third(2)));  // 18/7 = 2.57 -> 2
    CHECK(saturating_add(ThirdPoint(), seventh(-6)) == ThirdPoint(third(-2)));
    CHECK(saturating_add(ThirdPoint(), seventh::max()) == ThirdPoint(third(std::numeric_limits<std::int64_t>::max() / 7 * 3 +
                                                                            (std::numeric_limits<std::int64_t>::max() % 7) * 3 / 7)));
    using tiny = std::chrono::duration<std::int64_t, std::ratio<1, (std::int64_t{1} << 62)>>;
    CHECK(saturating_add(ThirdPoint(), tiny(std::int64_t{1} << 62)) == ThirdPoint(third(3)));
    CHECK(saturating_add(ThirdPoint(), tiny((std::int64_t{1} << 62) - 1)) == ThirdPoint(third(2)));
    CHECK(saturating_add(ThirdPoint(), tiny::max()) == ThirdPoint(third(5)));  // (2^63 - 1) / 2^62 s = 1.99.. s

    // Unsigned and narrow reps; floating point (NaN adds nothing, infinities saturate).
    CHECK(saturating_add(NsPoint(), std::chrono::duration<std::uint64_t, std::nano>(std::numeric_limits<std::uint64_t>::max())) ==
          NsPoint::max());
    CHECK(saturating_add(NsPoint::min(), std::chrono::duration<std::uint64_t, std::nano>(std::numeric_limits<std::uint64_t>::max())) ==
          NsPoint::max());
    CHECK(saturating_add(NsPoint::min(), std::chrono::duration<std::uint64_t, std::nano>(std::numeric_limits<std::uint64_t>::max() / 2)) ==
          NsPoint(ns(-1)));
    using ms32 = std::chrono::duration<std::int32_t, std::milli>;
    using Ms32Point = std::chrono::time_point<std::chrono::steady_clock, ms32>;
    CHECK(saturating_add(Ms32Point(ms32(std::numeric_limits<std::int32_t>::max() - 1)), std::chrono::hours(1)) == Ms32Point::max());
    CHECK(saturating_add(Ms32Point(ms32(5)), std::chrono::seconds(-1)) == Ms32Point(ms32(-995)));
    CHECK(saturating_add(Ms32Point(), std::chrono::hours::min()) == Ms32Point::min());
    const double inf = std::numeric_limits<double>::infinity();
    CHECK(saturating_add(NsPoint(), std::chrono::duration<double>(inf)) == NsPoint::max());
    CHECK(saturating_add(NsPoint(), std::chrono::duration<double>(-inf)) == NsPoint::min());
    CHECK(saturating_add(NsPoint(), std::chrono::duration<double>(std::numeric_limits<double>::quiet_NaN())) == NsPoint());
    CHECK(saturating_add(NsPoint::min(), std::chrono::duration<double>(1.8e10)) == NsPoint(ns::min() + std::chrono::seconds(9'000'000'000) + std::chrono::seconds(9'000'000'000)));
    CHECK(saturating_add(NsPoint(), std::chrono::duration<double, std::milli>(-0.9e-6)) == NsPoint());  // toward zero

    // Durations too, and the deadline spelling.
    CHECK(saturating_add(ns::max(), ns(1)) == ns::max());
    CHECK(saturating_add(std::chrono::seconds(1), ns(-1'500'000'000)) == std::chrono::seconds(0));
    CHECK(saturating_add(std::chrono::hours(1), std::chrono::minutes(30)) == std::chrono::hours(1));
    CHECK(saturating_add(std::chrono::minutes(1), std::chrono::hours::max()) == std::chrono::minutes::max());
    CHECK(deadline_after(NsPoint(ns(7)), ns::max()) == NsPoint::max());
    CHECK(deadline_after(NsPoint(ns(7)), std::chrono::hours::min()) == NsPoint::min());
    CHECK(deadline_after(NsPoint(ns(7)), 3ms) == NsPoint(3ms + ns(7)));
    static_assert(saturating_add(ns(1), ns(2)) == ns(3));  // constexpr

    // Sizes.
    constexpr std::size_t max = std::numeric_limits<std::size_t>::max();
    CHECK(add_sat(1, 2) == 3);
    CHECK(add_sat(max, 1) == max);
    CHECK(add_sat(max - 1, 1) == max);
    CHECK(add_sat(max, max) == max);
    CHECK(add_sat(0, max) == max);
}
