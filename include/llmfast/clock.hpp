// llmfast/clock.hpp — the `Clock` concept and a manual clock for tests.
//
// Components that measure time (deadlines, TTLs, metrics) take a clock type parameter that defaults
// to `std::chrono::steady_clock`. Tests inject `ManualClock` and move time by hand instead of sleeping.
//
//     llmfast::ManualClock clock;
//     clock.advance(std::chrono::seconds(30));
//
// Thread-safety: `ManualClock` may be read and advanced from any thread (an atomic tick count).
#pragma once

#include <atomic>
#include <chrono>
#include <concepts>

namespace llmfast {

/// A clock object with `now()` returning a `std::chrono::time_point` (a `std::chrono` clock type used
/// through an instance, so a test can hand in a controllable one).
template <class C>
concept Clock = requires(const C& clock) {
    typename C::duration;
    typename C::time_point;
    { clock.now() } -> std::convertible_to<typename C::time_point>;
};

/// Adapts a static `std::chrono` clock (steady_clock, system_clock) to an object with `now()`.
template <class ChronoClock = std::chrono::steady_clock>
struct ChronoClockAdapter {
    using duration = typename ChronoClock::duration;
    using time_point = typename ChronoClock::time_point;
    [[nodiscard]] time_point now() const noexcept { return ChronoClock::now(); }
};

using SteadyClock = ChronoClockAdapter<std::chrono::steady_clock>;

/// A clock that only moves when told to. Its epoch is arbitrary; it starts at `time_point{}` + start.
class ManualClock {
public:
    using duration = std::chrono::nanoseconds;
    using rep = duration::rep;
    using period = duration::period;
    using time_point = std::chrono::time_point<ManualClock, duration>;
    static constexpr bool is_steady = true;

    ManualClock() noexcept = default;
    explicit ManualClock(duration start) noexcept : ticks_(start.count()) {}

    [[nodiscard]] time_point now() const noexcept { return time_point(duration(ticks_.load(std::memory_order_acquire))); }

    void advance(duration by) noexcept { ticks_.fetch_add(by.count(), std::memory_order_acq_rel); }
    void set(time_point to) noexcept { ticks_.store(to.time_since_epoch().count(), std::memory_order_release); }

private:
    std::atomic<rep> ticks_{0};
};

static_assert(Clock<SteadyClock>);
static_assert(Clock<ManualClock>);

}  // namespace llmfast
