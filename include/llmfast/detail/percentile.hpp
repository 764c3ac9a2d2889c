// llmfast/detail/percentile.hpp — internal: the one percentile definition (nearest rank) and the one
// log-linear histogram, used by the batcher's queue-wait figures, StreamRecorder's inter-token gaps,
// the benchmarks and the demo.
//
// Nearest rank: the p-th percentile (0..100) of n samples is the smallest sample with at least p % of
// the samples <= it, i.e. the ceil(p / 100 * n)-th smallest (the first for p = 0). `nearest_rank`
// reads it from a sorted span; `LogHistogram::percentile` uses the same rank over its buckets.
//
//     std::vector<double> v = ...; std::sort(v.begin(), v.end());
//     double p99 = llmfast::detail::nearest_rank(std::span<const double>(v), 99);
//
// Thread-safety: none (LogHistogram is updated under its owner's mutex). Errors: nothing throws.
#pragma once

#include <llmfast/version.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>

LLMFAST_BEGIN_NAMESPACE

namespace detail {

/// The 0-based index of the nearest-rank p-th percentile (p clamped to 0..100) among n > 0 samples.
[[nodiscard]] inline std::size_t nearest_rank_index(double p, std::size_t n) noexcept {
    const double clamped = p >= 0 ? (p <= 100 ? p : 100.0) : 0.0;  // NaN -> 0
    const auto rank = static_cast<std::size_t>(std::ceil(clamped / 100.0 * static_cast<double>(n)));
    return rank == 0 ? 0 : std::min(rank, n) - 1;
}

/// The nearest-rank p-th percentile (0..100) of `sorted` (ascending); a value-initialized T when empty.
template <class T>
[[nodiscard]] T nearest_rank(std::span<const T> sorted, double p) noexcept(std::is_nothrow_copy_constructible_v<T>) {
    if (sorted.empty()) return T{};
    return sorted[nearest_rank_index(p, sorted.size())];
}

/// Log-linear histogram of non-negative 64-bit values (nanoseconds, say): exact below 16, then 8
/// sub-buckets per power of two, so a percentile is at most 12.5% above the true sample. Fixed size
/// (496 counters), no allocation. Not synchronised.
class LogHistogram {
public:
    /// Records one value; negative values count as 0.
    void record(std::int64_t value) noexcept {
        const std::uint64_t v = value > 0 ? static_cast<std::uint64_t>(value) : 0U;
        ++counts_[bucket(v)];
        ++total_;
        max_ = std::max(max_, v);
    }
    [[nodiscard]] std::uint64_t total() const noexcept { return total_; }
    [[nodiscard]] std::uint64_t max() const noexcept { return max_; }
    /// The upper bound of the bucket holding the nearest-rank p-th percentile (0..100), capped at the
    /// largest value recorded; 0 when empty.
    [[nodiscard]] std::uint64_t percentile(double p) const noexcept {
        if (total_ == 0) return 0;
        const std::uint64_t rank = nearest_rank_index(p, static_cast<std::size_t>(total_)) + 1;
        std::uint64_t seen = 0;
        for (std::size_t b = 0; b < counts_.size(); ++b) {
            seen += counts_[b];
            if (seen >= rank) return std::min(upper(b), max_);
        }
        return max_;
    }

private:
    static constexpr std::size_t sub_bits = 3;
    static constexpr std::size_t buckets = 16 + (64 - 4) * 8;

    static std::size_t bucket(std::uint64_t v) noexcept {
        if (v < 16) return static_cast<std::size_t>(v);
        const auto exponent = static_cast<std::size_t>(63 - std::countl_zero(v));  // >= 4
        const auto sub = static_cast<std::size_t>((v >> (exponent - sub_bits)) & 7U);
        return 16 + (exponent - 4) * 8 + sub;
    }
    static std::uint64_t upper(std::size_t b) noexcept {
        if (b < 16) return b;
        const std::size_t exponent = (b - 16) / 8 + 4;
        const std::size_t sub = (b - 16) % 8;
        const std::uint64_t base = std::uint64_t{1} << exponent;
        const std::uint64_t step = base >> sub_bits;
        return base + step * (sub + 1) - 1;
    }

    std::array<std::uint64_t, buckets> counts_{};
    std::uint64_t total_ = 0;
    std::uint64_t max_ = 0;
};

}  // namespace detail

LLMFAST_END_NAMESPACE
