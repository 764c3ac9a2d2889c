// llmfast/clock.hpp — the `Clock` concept, the clocks llmfast uses, and `ClockRef`, how components
// hold one.
//
// Components that measure time (deadlines, TTLs, stream timings) take a clock type parameter `C`
// (default `SteadyClock`; the cache's default is `WallClock`, because its stored times must mean the
// same after a restart) and hold it in a `ClockRef<C>`. Every such component has the same two
// constructor forms: `X(args...)` for a stateless clock, and `X(const C& clock, args...)`, the clock
// first and every other argument still defaulted. Tests inject `ManualClock` and move time by hand
// instead of sleeping:
//
//     llmfast::ManualClock clock;
//     llmfast::DynamicBatcher<int, int, Handler, llmfast::ManualClock> batcher(clock, handler);
//     clock.advance(std::chrono::seconds(30));
//
// Thread-safety: `ManualClock` may be read and advanced from any thread (an atomic tick count);
// `ClockRef` is a plain value (a pointer to the clock, or nothing for a stateless one).
//
// Errors: nothing here throws.
#pragma once

#include <llmfast/version.hpp>

#include <atomic>
#include <chrono>
#include <concepts>
#include <type_traits>

LLMFAST_BEGIN_NAMESPACE

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
/// The wall clock as a `Clock` object: for times that must mean the same after a restart (cache TTLs).
using WallClock = ChronoClockAdapter<std::chrono::system_clock>;

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
static_assert(Clock<WallClock>);
static_assert(Clock<ManualClock>);

/// How a component holds its clock. A stateless clock (an empty, default-constructible type such as
/// `SteadyClock`) is not stored at all: every instance reads the same time. Any other clock
/// (`ManualClock`) is held by reference and must outlive the component.
template <class C>
class ClockRef {
    static_assert(Clock<C>, "llmfast::ClockRef<C>: C must model llmfast::Clock — it needs nested types "
                            "`duration` and `time_point` and a const `now()` returning a time_point");

public:
    using clock_type = C;
    using duration = typename C::duration;
    using time_point = typename C::time_point;
    /// True when C need not be stored (and the components' clock-less constructors are available).
    static constexpr bool stateless = std::is_empty_v<C> && std::default_initializable<C>;

    ClockRef() noexcept
        requires stateless
    = default;
    explicit ClockRef(const C& clock) noexcept {
        if constexpr (stateless) {
            (void)clock;  // every instance of a stateless clock reads the same time
        } else {
            clock_ = &clock;
        }
    }

    [[nodiscard]] time_point now() const noexcept(noexcept(std::declval<const C&>().now())) {
        if constexpr (stateless) {
            return C{}.now();
        } else {
            return clock_->now();
        }
    }

private:
    struct Nothing {};
    [[no_unique_address]] std::conditional_t<stateless, Nothing, const C*> clock_{};
};

LLMFAST_END_NAMESPACE
