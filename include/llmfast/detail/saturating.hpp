// llmfast/detail/saturating.hpp — internal: saturating arithmetic on time points, durations and sizes,
// the one copy every component uses (deadlines from timeouts, "no limit" durations, summed sizes).
//
// `saturating_add(point, by)` is `point + by` clamped to the time point's range in both directions: a
// sum past the top gives TimePoint::max() (so `duration::max()` means "no limit"), one past the bottom
// TimePoint::min() (a hugely negative timeout is a deadline already passed). It is exact integer
// arithmetic for any integer `by` in any units (hours into a nanosecond clock, nanoseconds into a
// picosecond one, seconds into a clock with a 1/3 s tick): `by` is converted to the time point's units
// rounding toward zero, as `duration_cast` does, without ever overflowing. A floating-point `by` is
// truncated the same way; a NaN adds nothing. `saturating_add(duration, duration)` does the same for
// durations. `deadline_after(now, timeout)` is the name to use for "the deadline `timeout` from now".
//
// Thread-safety: pure functions. Errors: nothing here throws.
#pragma once

#include <llmfast/version.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <ratio>
#include <type_traits>

LLMFAST_BEGIN_NAMESPACE

namespace detail {

/// `a + b` for sizes, SIZE_MAX instead of wrapping around.
[[nodiscard]] constexpr std::size_t add_sat(std::size_t a, std::size_t b) noexcept {
    return a > std::numeric_limits<std::size_t>::max() - b ? std::numeric_limits<std::size_t>::max() : a + b;
}

/// floor(a * b / c) for a < c (so the result is below b): exact, through a 128-bit product built from
/// 32-bit halves and a bitwise long division. Only for unit ratios whose product overflows 64 bits.
[[nodiscard]] constexpr std::uint64_t saturating_mul_div_small(std::uint64_t a, std::uint64_t b, std::uint64_t c) noexcept {
    const std::uint64_t mask = 0xFFFFFFFFU;
    const std::uint64_t a_lo = a & mask, a_hi = a >> 32, b_lo = b & mask, b_hi = b >> 32;
    const std::uint64_t lo_lo = a_lo * b_lo, hi_lo = a_hi * b_lo, lo_hi = a_lo * b_hi, hi_hi = a_hi * b_hi;
    const std::uint64_t mid = (lo_lo >> 32) + (hi_lo & mask) + (lo_hi & mask);
    const std::uint64_t low = (mid << 32) | (lo_lo & mask);
    const std::uint64_t high = hi_hi + (hi_lo >> 32) + (lo_hi >> 32) + (mid >> 32);
    std::uint64_t quotient = 0, remainder = 0;
    for (int bit = 127; bit >= 0; --bit) {
        const bool carry = (remainder >> 63) != 0;
        remainder = (remainder << 1) | ((bit >= 64 ? high >> (bit - 64) : low >> bit) & 1U);
        quotient <<= 1;
        if (carry || remainder >= c) {
            remainder -= c;
            quotient |= 1U;
        }
    }
    return quotient;
}

/// |count| of a duration in units of `To` (Ratio = From::period / To::period), rounded toward zero.
/// Sets `overflow` when the magnitude is 2^64 or more (then no 64-bit time point can hold the sum).
template <class Ratio>
[[nodiscard]] constexpr std::uint64_t saturating_scale(std::uint64_t magnitude, bool& overflow) noexcept {
    constexpr auto num = static_cast<std::uint64_t>(Ratio::num);
    constexpr auto den = static_cast<std::uint64_t>(Ratio::den);
    constexpr std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
    const std::uint64_t whole = magnitude / den;
    const std::uint64_t rest = magnitude % den;
    if (whole > max / num) {
        overflow = true;
        return max;
    }
    std::uint64_t fraction = 0;  // floor(rest * num / den) < num
    if constexpr (den == 1) {
        (void)rest;
    } else if constexpr (num <= max / (den - 1)) {
        fraction = rest * num / den;  // rest < den: no overflow
    } else {
        fraction = saturating_mul_div_small(rest, num, den);
    }
    const std::uint64_t scaled = whole * num;
    if (scaled > max - fraction) {
        overflow = true;
        return max;
    }
    return scaled + fraction;
}

/// `count + (negative ? -magnitude : magnitude)` clamped to [lo, hi] (lo <= count <= hi), exactly.
[[nodiscard]] constexpr std::int64_t saturating_offset(std::int64_t count, bool negative, std::uint64_t magnitude,
                                                       bool overflow, std::int64_t lo, std::int64_t hi) noexcept {
    // Differences of two int64 values fit in uint64; unsigned arithmetic wraps, and converting back
    // to int64 is modular (C++20), so in-range results are exact.
    if (negative) {
        const std::uint64_t room = static_cast<std::uint64_t>(count) - static_cast<std::uint64_t>(lo);
        if (overflow || magnitude > room) return lo;
        return static_cast<std::int64_t>(static_cast<std::uint64_t>(count) - magnitude);
    }
    const std::uint64_t room = static_cast<std::uint64_t>(hi) - static_cast<std::uint64_t>(count);
    if (overflow || magnitude > room) return hi;
    return static_cast<std::int64_t>(static_cast<std::uint64_t>(count) + magnitude);
}

/// `base + by` for durations, clamped to To's range both ways (see the file comment).
template <class Rep, class Period, class ByRep, class ByPeriod>
[[nodiscard]] constexpr std::chrono::duration<Rep, Period> saturating_add(
    std::chrono::duration<Rep, Period> base, std::chrono::duration<ByRep, ByPeriod> by) noexcept {
    using To = std::chrono::duration<Rep, Period>;
    if constexpr (std::is_floating_point_v<Rep>) {
        if (by != by) return base;  // NaN adds nothing
        return base + std::chrono::duration_cast<To>(by);
    } else {
        static_assert(std::is_signed_v<Rep> && sizeof(Rep) <= sizeof(std::int64_t),
                      "llmfast::detail::saturating_add: the target duration needs a signed integer rep of at most 64 bits");
        using Ratio = std::ratio_divide<ByPeriod, Period>;
        constexpr auto lo = static_cast<std::int64_t>(To::min().count());
        constexpr auto hi = static_cast<std::int64_t>(To::max().count());
        bool negative = false;
        bool overflow = false;
        std::uint64_t magnitude = 0;
        if constexpr (std::is_floating_point_v<ByRep>) {
            // Floating point: convert in double (to the target units), then truncate toward zero.
            const double value = std::chrono::duration<double, Period>(by).count();
            if (value != value) return base;  // NaN adds nothing
            negative = value < 0;
            const double abs = negative ? -value : value;
            constexpr double two_to_64 = 18446744073709551616.0;
            if (abs >= two_to_64) {
                overflow = true;
            } else {
                magnitude = static_cast<std::uint64_t>(abs);
            }
        } else {
            static_assert(sizeof(ByRep) <= sizeof(std::uint64_t),
                          "llmfast::detail::saturating_add: durations up to 64-bit counts are supported");
            const ByRep count = by.count();
            if constexpr (std::is_signed_v<ByRep>) {
                negative = count < 0;
                // |INT64_MIN| as uint64 without overflow: negate in unsigned arithmetic.
                magnitude = negative ? std::uint64_t{0} - static_cast<std::uint64_t>(count) : static_cast<std::uint64_t>(count);
            } else {
                magnitude = static_cast<std::uint64_t>(count);
            }
            magnitude = saturating_scale<Ratio>(magnitude, overflow);
        }
        return To(static_cast<Rep>(
            saturating_offset(static_cast<std::int64_t>(base.count()), negative, magnitude, overflow, lo, hi)));
    }
}

/// `point + by`, clamped to TimePoint::min() / max() both ways (see the file comment).
template <class Clock, class Duration, class ByRep, class ByPeriod>
[[nodiscard]] constexpr std::chrono::time_point<Clock, Duration> saturating_add(
    std::chrono::time_point<Clock, Duration> point, std::chrono::duration<ByRep, ByPeriod> by) noexcept {
    return std::chrono::time_point<Clock, Duration>(saturating_add(point.time_since_epoch(), by));
}

/// The deadline `timeout` after `now`: `duration::max()` never expires, a negative timeout has passed.
template <class TimePoint, class Rep, class Period>
[[nodiscard]] constexpr TimePoint deadline_after(TimePoint now, std::chrono::duration<Rep, Period> timeout) noexcept {
    return saturating_add(now, timeout);
}

}  // namespace detail

LLMFAST_END_NAMESPACE
