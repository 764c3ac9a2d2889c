#include <llmfast/hit_verifier.hpp>

#include "catch.hpp"

#include <cmath>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace {

// Only what the concept requires.
struct Minimal {
    double probability(std::string_view a, std::string_view b, float similarity) const {
        return a == b ? 1.0 : static_cast<double>(similarity);
    }
};

// Every optional part.
struct Full {
    mutable int batch_calls = 0;
    float probability(std::string_view, std::string_view, float similarity) const { return similarity * 2.0F; }  // out of range on purpose
    void probability_batch(std::string_view, std::span<const std::string_view>, std::span<const float> sims, std::span<double> out) const {
        ++batch_calls;
        for (std::size_t i = 0; i < out.size(); ++i) out[i] = sims[i];
    }
    double threshold_for(double rate) const { return 0.9 - rate; }
    std::string calibration_identity() const { return "embedder-x"; }
    bool recommends_semantic_tier(double rate) const { return rate >= 0.05; }
};

struct NotAVerifier {
    double score(std::string_view, std::string_view) const { return 0; }
};

struct NanVerifier {
    double probability(std::string_view, std::string_view, float) const { return std::numeric_limits<double>::quiet_NaN(); }
};

}  // namespace

static_assert(llmfast::HitVerifier<Minimal>);
static_assert(llmfast::HitVerifier<Full>);
static_assert(!llmfast::HitVerifier<NotAVerifier>);
static_assert(!llmfast::hit_verifier_traits<Minimal>::batch && !llmfast::hit_verifier_traits<Minimal>::threshold_for &&
              !llmfast::hit_verifier_traits<Minimal>::calibration_identity && !llmfast::hit_verifier_traits<Minimal>::prepared);
static_assert(llmfast::hit_verifier_traits<Full>::batch && llmfast::hit_verifier_traits<Full>::threshold_for &&
              llmfast::hit_verifier_traits<Full>::calibration_identity && llmfast::hit_verifier_traits<Full>::recommends_semantic_tier);

TEST_CASE("HitVerifier: the required form, clamped to [0, 1]; NaN never serves") {
    const Minimal minimal;
    CHECK(llmfast::verify_hit(minimal, "a", "a", 0.2F) == 1.0);
    CHECK(llmfast::verify_hit(minimal, "a", "b", 0.25F) == 0.25);
    CHECK(llmfast::verify_hit(minimal, "a", "b", -3.0F) == 0.0);
    const Full full;
    CHECK(llmfast::verify_hit(full, "a", "b", 0.9F) == 1.0);
    CHECK(llmfast::verify_hit(NanVerifier{}, "a", "b", 0.9F) == 0.0);
}

TEST_CASE("HitVerifier: fallbacks for the optional parts") {
    const Minimal minimal;
    CHECK(llmfast::verifier_threshold(minimal, 0.05) == Approx(0.95));
    CHECK(llmfast::verifier_threshold(minimal, -1.0) == 1.0);
    CHECK(llmfast::verifier_calibration_identity(minimal).empty());
    CHECK(llmfast::verifier_calibrated_for(minimal, "any embedder"));
    CHECK_FALSE(llmfast::verifier_recommends_semantic_tier(minimal, 0.05));
    const Full full;
    CHECK(llmfast::verifier_threshold(full, 0.05) == Approx(0.85));
    CHECK(llmfast::verifier_calibrated_for(full, "embedder-x"));
    CHECK_FALSE(llmfast::verifier_calibrated_for(full, "embedder-y"));
    CHECK(llmfast::verifier_recommends_semantic_tier(full, 0.05));
    CHECK_FALSE(llmfast::verifier_recommends_semantic_tier(full, 0.02));
}

TEST_CASE("HitVerifier: verify_hits uses the batch form when there is one, else one by one") {
    const std::vector<std::string_view> prompts{"x", "y", "q"};
    const std::vector<float> sims{0.5F, 0.7F, 0.1F};
    std::vector<double> out(3);
    const Full full;
    llmfast::verify_hits(full, "q", prompts, sims, out);
    CHECK(full.batch_calls == 1);
    CHECK(out[1] == Approx(0.7));
    const Minimal minimal;
    llmfast::verify_hits(minimal, "q", prompts, sims, out);
    CHECK(out[2] == 1.0);
    CHECK(out[0] == Approx(0.5));
    std::vector<double> short_out(2);
    CHECK_THROWS_AS(llmfast::verify_hits(minimal, "q", prompts, sims, short_out), llmfast::Error);
}
