// llmfast/detail/guard_verifier.hpp — the semantic tier's verifier step as the hit guards implement
// it: after the index proposes a candidate above the similarity threshold, the verifier decides
// whether its answer may be served for the new prompt.
//
// The step's shape (what the cache calls; detail/verified_step.hpp's `VerifiedStep<V>` has the same
// one, so the cache can hold either): per cached entry the step keeps `EntryData` (computed once, at
// insertion, outside locks); per lookup it keeps a `Query` (made by the static `query(prompt)`,
// completed by `prepare` on the first candidate, outside locks); `scope_state(scope name)` once per
// lookup gives the scope's feedback state (none here: nullptr); `accept(query, entry_data,
// similarity, state)` decides and returns a `StepVerdict`; `report` feeds a served hit's outcome back
// (nothing to feed here: false); `forget` / `forget_all` drop a scope's state (erase_scope / clear);
// `fill_stats` adds the step's counters to the cache's; `recommends_semantic_tier()` is the step's
// vote for SemanticTier::Auto (never, for the guards alone).
// Internal: users must not depend on anything here.
#pragma once

#include <llmfast/version.hpp>
#include <llmfast/error.hpp>
#include <llmfast/hit_guards.hpp>
#include <llmfast/hit_verifier.hpp>

#include <fmt/format.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

LLMFAST_BEGIN_NAMESPACE
namespace detail {

/// A scope's feedback state (detail/verified_step.hpp): its WrongHitMonitor and current operating point.
class VerifierScopeState;

/// What the verifier step decided about one candidate.
enum class StepOutcome : std::uint8_t {
    Accepted,  ///< serve it
    GuardVeto, ///< a hit guard vetoed it (counted in SemanticCacheStats::guard_vetoes)
    Rejected,  ///< the verifier's probability is below the scope's operating point, or the scope is exhausted
};

struct StepVerdict {
    StepOutcome outcome = StepOutcome::Rejected;
    /// The verifier's probability that the candidate's answer is right (1 for the guards alone, which
    /// give none; 0 for a guard veto).
    double probability = 0;

    [[nodiscard]] bool accepted() const noexcept { return outcome == StepOutcome::Accepted; }
    [[nodiscard]] bool guard_veto() const noexcept { return outcome == StepOutcome::GuardVeto; }
    explicit operator bool() const noexcept { return accepted(); }
};

/// Validates SemanticCacheOptions::max_wrong_hit_rate (every step validates it, used or not, so an
/// invalid δ is an error whichever verifier the cache has).
inline double checked_max_wrong_hit_rate(double max_wrong_hit_rate) {
    if (!(max_wrong_hit_rate > 0.0 && max_wrong_hit_rate < 1.0)) {
        throw Error(ErrorCode::InvalidArgument,
                    fmt::format("SemanticCacheOptions::max_wrong_hit_rate must be in (0, 1) (got {})", max_wrong_hit_rate));
    }
    return max_wrong_hit_rate;
}

class GuardVerifier {
public:
    using EntryData = GuardSignature;

    struct Query {
        std::string_view prompt;
        std::optional<GuardSignature> signature;
    };

    explicit GuardVerifier(const HitGuards& guards) noexcept : guards_(guards) {}
    /// The cache's form (the same arguments as VerifiedStep's): validates δ, which the guards do not use.
    GuardVerifier(GuardsOnly /*verifier*/, const HitGuards& guards, double max_wrong_hit_rate, std::string_view /*embedder_identity*/)
        : guards_(guards) {
        checked_max_wrong_hit_rate(max_wrong_hit_rate);
    }

    [[nodiscard]] EntryData entry_data(std::string_view prompt) const { return make_guard_signature(prompt); }
    [[nodiscard]] static Query query(std::string_view prompt) noexcept { return Query{prompt, std::nullopt}; }
    /// Completes `query` before a candidate is checked (outside every lock).
    static void prepare(Query& query) {
        if (!query.signature) query.signature = make_guard_signature(query.prompt);
    }
    /// True if the candidate may be served (no enabled guard vetoes it). `prepare` must have run.
    [[nodiscard]] bool accept(const Query& query, const EntryData& entry, float /*similarity*/) const {
        return check_hit_guards(*query.signature, entry, guards_) == GuardVeto::None;
    }
    /// The step's shape: the guards' verdict; no probability (1 when accepted), no scope state.
    [[nodiscard]] StepVerdict accept(const Query& query, const EntryData& entry, float similarity,
                                     const VerifierScopeState* /*scope*/) const {
        return accept(query, entry, similarity) ? StepVerdict{StepOutcome::Accepted, 1.0} : StepVerdict{StepOutcome::GuardVeto, 0.0};
    }
    [[nodiscard]] static std::size_t entry_bytes(const EntryData& entry) noexcept { return entry.memory_bytes(); }

    /// No feedback state: the guards have no operating point to move.
    [[nodiscard]] static std::shared_ptr<VerifierScopeState> scope_state(std::string_view /*scope*/) noexcept { return nullptr; }
    static bool report(const std::weak_ptr<VerifierScopeState>& /*scope*/, double /*probability*/, bool /*right*/) noexcept { return false; }
    static void forget(std::string_view /*scope*/) noexcept {}
    static void forget_all() noexcept {}
    template <class Stats>
    static void fill_stats(Stats& /*stats*/) noexcept {}
    [[nodiscard]] static bool recommends_semantic_tier() noexcept { return false; }

private:
    HitGuards guards_;
};

}  // namespace detail
LLMFAST_END_NAMESPACE
