#include <llmfast/wrong_hit_monitor.hpp>

#include "catch.hpp"

#include <cstdint>
#include <random>

namespace {

// A stream whose verifier is over-confident: a candidate with probability p is right with probability
// p^k (k = 1 is calibrated). The cache serves when p >= the monitor's threshold and reports the truth.
struct Outcome {
    double observed_late = 0;  // wrong rate among served hits in the last quarter of the stream
    double observed_all = 0;
    double threshold = 0;
    std::uint64_t served_late = 0;
};

Outcome simulate(double delta, double base, double k, std::uint64_t seed, int n) {
    llmfast::WrongHitMonitor monitor({.max_wrong_hit_rate = delta, .base_threshold = base});
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    std::uint64_t served = 0, wrong = 0, served_late = 0, wrong_late = 0;
    for (int i = 0; i < n; ++i) {
        const double p = 0.5 + 0.5 * uniform(rng);
        if (p < monitor.threshold()) continue;
        const bool right = uniform(rng) < std::pow(p, k);
        ++served;
        wrong += right ? 0 : 1;
        if (i >= n * 3 / 4) {
            ++served_late;
            wrong_late += right ? 0 : 1;
        }
        monitor.report(p, right);
    }
    return {served_late ? static_cast<double>(wrong_late) / static_cast<double>(served_late) : 0.0,
            served ? static_cast<double>(wrong) / static_cast<double>(served) : 0.0, monitor.threshold(), served_late};
}

}  // namespace

TEST_CASE("WrongHitMonitor: options are validated") {
    CHECK_THROWS_AS(llmfast::WrongHitMonitor({.max_wrong_hit_rate = 0.0}), llmfast::Error);
    CHECK_THROWS_AS(llmfast::WrongHitMonitor({.max_wrong_hit_rate = 1.0}), llmfast::Error);
    CHECK_THROWS_AS(llmfast::WrongHitMonitor({.bins = 0}), llmfast::Error);
    CHECK_THROWS_AS(llmfast::WrongHitMonitor({.z = -1.0}), llmfast::Error);
    CHECK_THROWS_AS(llmfast::WrongHitMonitor({.forget_after = 0}), llmfast::Error);
    CHECK_THROWS_AS(llmfast::WrongHitMonitor({.safety = 0.0}), llmfast::Error);
    const llmfast::WrongHitMonitor monitor({.base_threshold = 0.8});
    CHECK(monitor.threshold() == 0.8);
}

TEST_CASE("WrongHitMonitor: a calibrated verifier keeps the base threshold") {
    // Right with probability p: at base 0.96 the served wrong rate is ~0.02 <= 0.05, nothing to raise.
    const Outcome outcome = simulate(0.05, 0.96, 1.0, 7, 40000);
    CHECK(outcome.threshold == Approx(0.96));
    CHECK(outcome.observed_all <= 0.05);
}

TEST_CASE("WrongHitMonitor: an over-confident verifier is corrected until wrong hits are <= delta") {
    for (const double delta : {0.10, 0.05, 0.02}) {
        // p^4 at the calibrated base for delta: wrong rates far above delta until the monitor raises.
        const double base = 1.0 - delta;
        const Outcome outcome = simulate(delta, base, 4.0, 11, 2000000);
        INFO("delta " << delta << " threshold " << outcome.threshold << " late " << outcome.observed_late << " all "
                      << outcome.observed_all);
        CHECK(outcome.threshold > base);
        CHECK(outcome.served_late > 100);
        CHECK(outcome.observed_late <= delta);
    }
}

TEST_CASE("WrongHitMonitor: when every bin is wrong too often it serves the top bin only and says so") {
    llmfast::WrongHitMonitor monitor({.max_wrong_hit_rate = 0.05, .base_threshold = 0.9});
    for (int i = 0; i < 200; ++i) monitor.report(0.999, i % 2 == 0);
    CHECK(monitor.stats().exhausted);
    CHECK(monitor.threshold() == Approx(0.995));
    CHECK(monitor.stats().reports == 200);
    CHECK(monitor.stats().wrong_reports == 100);
}

TEST_CASE("WrongHitMonitor: the Wilson lower bound") {
    CHECK(llmfast::WrongHitMonitor::wilson_lower(0, 0, 1.0) == 0.0);
    CHECK(llmfast::WrongHitMonitor::wilson_lower(10, 100, 0.0) == Approx(0.1));
    CHECK(llmfast::WrongHitMonitor::wilson_lower(10, 100, 1.645) < 0.1);
    CHECK(llmfast::WrongHitMonitor::wilson_lower(1000, 10000, 1.645) > 0.09);
}
