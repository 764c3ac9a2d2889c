// llmfast/wrong_hit_monitor.hpp — keeps a verifier's promise on a user's own traffic: a per-scope
// estimate of the wrong-hit rate from reported outcomes, which raises the operating point when the
// served hits turn out wrong more often than `max_wrong_hit_rate` (δ).
//
// The shipped operating point (`threshold_for(δ)`) is measured on our data; a user's traffic may be
// harder. An application that learns the truth about a served hit (a thumbs-down, a regenerated
// answer) reports it with the verifier's probability for that hit. The monitor keeps counts of served
// and wrong hits per probability bin; its threshold is the lowest bin edge >= the base threshold such
// that, over the hits reported at or above it, the one-sided lower confidence bound (Wilson, `z`) of
// the wrong-hit rate is not above `safety` × δ — it raises the threshold only on evidence that δ is exceeded, and
// as reports accumulate the bound tightens, so the observed wrong-hit rate converges to <= δ.
//
//     llmfast::WrongHitMonitor monitor({.max_wrong_hit_rate = 0.05, .base_threshold = verifier.threshold_for(0.05)});
//     if (p >= monitor.threshold()) serve(...);
//     monitor.report(p, /*right=*/false);            // when the application learns the hit was wrong
//
// Thread-safety: not thread-safe; the cache keeps one per scope under the scope's lock (or wrap it).
// Errors: the constructor throws Error(InvalidArgument) for δ outside (0, 1), a base threshold that is
// not finite, zero bins, a negative z, a safety outside (0, 1] or a zero `forget_after`. `report` does not throw.
#pragma once

#include <llmfast/version.hpp>

#include <llmfast/error.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

LLMFAST_BEGIN_NAMESPACE

struct WrongHitMonitorOptions {
    double max_wrong_hit_rate = 0.05;  ///< δ, the promise
    double base_threshold = 0.5;       ///< the shipped operating point for δ (never goes below it)
    std::size_t bins = 200;            ///< probability bins over [0, 1]
    double z = 1.0;                    ///< one-sided confidence of the violation test (1.0 ≈ 84 %)
    /// The test compares with safety * δ, so the bound's slack still lands at or under δ.
    double safety = 0.9;
    std::size_t min_reports = 20;      ///< reports at or above an edge before it can be judged
    /// When the reports reach this many, every count is halved (old traffic counts less).
    std::size_t forget_after = 100000;
};

struct WrongHitMonitorStats {
    std::uint64_t reports = 0;        ///< outcomes reported since construction
    std::uint64_t wrong_reports = 0;  ///< of which wrong
    double threshold = 0;             ///< the current operating point
    std::uint64_t raises = 0;         ///< how often the threshold went up
    /// Even the top bin exceeds δ: the cache should turn the semantic tier off for this scope (the
    /// monitor keeps serving the top bin only, so it can still see the traffic change).
    bool exhausted = false;
};

/// Per-scope wrong-hit estimator (see the header comment). Thread-safety: not thread-safe.
class WrongHitMonitor {
public:
    using Options = WrongHitMonitorOptions;

    WrongHitMonitor() : WrongHitMonitor(Options{}) {}
    explicit WrongHitMonitor(Options options) : options_(options) {
        if (!(options_.max_wrong_hit_rate > 0.0 && options_.max_wrong_hit_rate < 1.0)) {
            throw Error(ErrorCode::InvalidArgument,
                        fmt::format("WrongHitMonitorOptions::max_wrong_hit_rate must be in (0, 1) (got {})", options_.max_wrong_hit_rate));
        }
        if (!std::isfinite(options_.base_threshold)) {
            throw Error(ErrorCode::InvalidArgument,
                        fmt::format("WrongHitMonitorOptions::base_threshold must be finite (got {})", options_.base_threshold));
        }
        if (options_.bins == 0) throw Error(ErrorCode::InvalidArgument, "WrongHitMonitorOptions::bins must be >= 1 (got 0)");
        if (!(options_.safety > 0.0 && options_.safety <= 1.0)) {
            throw Error(ErrorCode::InvalidArgument, fmt::format("WrongHitMonitorOptions::safety must be in (0, 1] (got {})", options_.safety));
        }
        if (!(options_.z >= 0.0)) throw Error(ErrorCode::InvalidArgument, fmt::format("WrongHitMonitorOptions::z must be >= 0 (got {})", options_.z));
        if (options_.forget_after == 0) throw Error(ErrorCode::InvalidArgument, "WrongHitMonitorOptions::forget_after must be >= 1 (got 0)");
        served_.assign(options_.bins, 0.0);
        wrong_.assign(options_.bins, 0.0);
        scratch_served_.assign(options_.bins + 1, 0.0);
        scratch_wrong_.assign(options_.bins + 1, 0.0);
        threshold_ = options_.base_threshold;
    }

    [[nodiscard]] const Options& options() const noexcept { return options_; }

    /// The probability a candidate needs to be served now (>= base_threshold).
    [[nodiscard]] double threshold() const noexcept { return threshold_; }

    /// Records the outcome of a served hit whose verifier probability was `probability`.
    void report(double probability, bool right) noexcept {
        if (!std::isfinite(probability)) probability = 0.0;
        const std::size_t bin = bin_of(probability);
        served_[bin] += 1.0;
        if (!right) wrong_[bin] += 1.0;
        ++stats_.reports;
        if (!right) ++stats_.wrong_reports;
        total_ += 1.0;
        if (total_ >= static_cast<double>(options_.forget_after)) {
            for (double& v : served_) v *= 0.5;
            for (double& v : wrong_) v *= 0.5;
            total_ *= 0.5;
        }
        update();
    }

    [[nodiscard]] WrongHitMonitorStats stats() const noexcept {
        WrongHitMonitorStats s = stats_;
        s.threshold = threshold_;
        return s;
    }

    /// One-sided Wilson lower bound of a rate of `wrong` in `n` at `z`.
    [[nodiscard]] static double wilson_lower(double wrong, double n, double z) noexcept {
        if (n <= 0) return 0.0;
        const double p = wrong / n;
        const double z2 = z * z;
        const double centre = p + z2 / (2 * n);
        const double margin = z * std::sqrt(p * (1 - p) / n + z2 / (4 * n * n));
        return std::max(0.0, (centre - margin) / (1 + z2 / n));
    }

private:
    [[nodiscard]] std::size_t bin_of(double probability) const noexcept {
        const double clamped = std::clamp(probability, 0.0, 1.0);
        return std::min(options_.bins - 1, static_cast<std::size_t>(clamped * static_cast<double>(options_.bins)));
    }
    [[nodiscard]] double edge(std::size_t bin) const noexcept { return static_cast<double>(bin) / static_cast<double>(options_.bins); }

    // The lowest edge >= base whose reports above it show no confident violation of δ.
    void update() noexcept {
        const std::size_t bins = options_.bins;
        double served = 0, wrong = 0;
        std::vector<double>& suffix_served = scratch_served_;
        std::vector<double>& suffix_wrong = scratch_wrong_;
        std::fill(suffix_served.begin(), suffix_served.end(), 0.0);
        std::fill(suffix_wrong.begin(), suffix_wrong.end(), 0.0);
        for (std::size_t b = bins; b-- > 0;) {
            served += served_[b];
            wrong += wrong_[b];
            suffix_served[b] = served;
            suffix_wrong[b] = wrong;
        }
        const double target = options_.max_wrong_hit_rate * options_.safety;
        // No edge acceptable: keep serving the top bin only (and say so), so the reports continue.
        double chosen = std::max(options_.base_threshold, edge(bins - 1));
        stats_.exhausted = true;
        // Judge from the base edge (the served bins include the partial bin holding base_threshold).
        const std::size_t base_bin = bin_of(options_.base_threshold);
        for (std::size_t b = base_bin; b < bins; ++b) {
            const double n = suffix_served[b];
            const bool violated = n >= static_cast<double>(options_.min_reports) &&
                                  wilson_lower(suffix_wrong[b], n, options_.z) > target;
            if (!violated) {
                stats_.exhausted = false;
                chosen = b == base_bin ? options_.base_threshold : std::max(options_.base_threshold, edge(b));
                break;
            }
        }
        if (chosen > threshold_) ++stats_.raises;
        threshold_ = chosen;
    }

    Options options_;
    std::vector<double> served_, wrong_;
    std::vector<double> scratch_served_, scratch_wrong_;
    double total_ = 0;
    double threshold_ = 0;
    WrongHitMonitorStats stats_{};
};

LLMFAST_END_NAMESPACE
