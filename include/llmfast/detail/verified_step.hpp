// llmfast/detail/verified_step.hpp — the semantic tier's verifier step with a `HitVerifier`
// (llmfast/hit_verifier.hpp): a candidate is served when the verifier's probability that its answer is
// right reaches the scope's operating point, which starts at `verifier_threshold(V, δ)` (δ =
// SemanticCacheOptions::max_wrong_hit_rate) and is raised by the scope's WrongHitMonitor when the
// application's reports (`SemanticCache::report`) show more wrong hits than δ.
//
// Same shape as detail/guard_verifier.hpp's GuardVerifier (see its comment), so the cache holds either:
// `verifier_step_t<V>` is GuardVerifier for `GuardsOnly` (the default) and VerifiedStep<V> for a
// HitVerifier V. How the cache drives it:
//
//     detail::VerifiedStep<PairVerifier> step(PairVerifier{}, options.guards, options.max_wrong_hit_rate, identity);
//     auto entry = step.entry_data(cached_prompt);            // at insertion, outside locks
//     auto query = step.query(new_prompt);                     // per lookup (lazy)
//     auto scope = step.scope_state(scope_name);               // per lookup
//     step.prepare(query);                                     // before the first candidate, outside locks
//     if (auto verdict = step.accept(query, entry, similarity, scope.get())) serve(verdict.probability, scope);
//     step.report(scope, verdict.probability, right);          // SemanticCache::report
//
// Guards exactly once: a V that applies the hit guards itself (`hit_guards()`, as PairVerifier does)
// gets every candidate, and its guards must equal SemanticCacheOptions::guards (else the constructor
// throws, so the two settings cannot silently disagree); its vetoes show as probability 0 (counted as
// verifier rejections). Any other V is asked only about candidates the cache's guards let through (the
// guards run first; a veto is counted in guard_vetoes, and the verifier is not called).
//
// Prepared form when V has one: EntryData holds V::EntryData (made at insertion, outside locks), Query
// V::Query (made by `prepare`, once per lookup, outside locks). Without it EntryData keeps a copy of the
// cached prompt and the plain `probability(new, cached, similarity)` is called per candidate.
//
// Per-scope state: a VerifierScopeState per scope name (made on the scope's first semantic lookup,
// dropped by `forget` / `forget_all`, i.e. erase_scope / clear / load), holding the WrongHitMonitor
// under its own mutex; lookups read its operating point without locking (an atomic), reports lock it.
// A scope whose monitor is exhausted (even its most confident hits are wrong more often than δ) serves
// no semantic hit until reports say otherwise: serving the top bin would break the promise.
//
// Thread-safety: every member may be called concurrently (the cache calls accept under a shard lock,
// the rest under none); the registry of scope states has its own lock, taken alone.
// Errors: the constructor throws Error(InvalidArgument) for δ outside (0, 1), for a verifier calibrated
// for another embedder (`verifier_calibrated_for`), and for a verifier whose own guards differ from the
// cache's. `entry_data`, `prepare` and `accept` throw what V throws (std::bad_alloc).
// Internal: users must not depend on anything here.
#pragma once

#include <llmfast/version.hpp>
#include <llmfast/detail/guard_verifier.hpp>
#include <llmfast/detail/scope_registry.hpp>
#include <llmfast/error.hpp>
#include <llmfast/hit_guards.hpp>
#include <llmfast/hit_verifier.hpp>
#include <llmfast/wrong_hit_monitor.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>

LLMFAST_BEGIN_NAMESPACE
namespace detail {

/// The step's counters (added to SemanticCacheStats by `fill_stats`).
struct VerifiedStepCounters {
    std::atomic<std::uint64_t> rejections{0};       ///< candidates below the operating point (or in an exhausted scope)
    std::atomic<std::uint64_t> reports{0};          ///< outcomes reported for served hits
    std::atomic<std::uint64_t> reported_wrong{0};   ///< of which wrong
    std::atomic<std::uint64_t> threshold_raises{0}; ///< times a scope's operating point went up
    std::atomic<std::int64_t> exhausted_scopes{0};  ///< scopes whose monitor is exhausted now
};

/// One scope's feedback state. Thread-safety: `threshold`/`exhausted` lock-free; `report` locks.
/// The monitor (a few KB of bins) is made on the first report: a cache with many scopes that never
/// get feedback pays only for this small object per scope.
class VerifierScopeState {
public:
    VerifierScopeState(const WrongHitMonitorOptions& options, VerifiedStepCounters* counters)
        : options_(options), counters_(counters), threshold_(options.base_threshold) {}

    /// The probability a candidate needs now.
    [[nodiscard]] double threshold() const noexcept { return threshold_.load(std::memory_order_relaxed); }
    /// Even the most confident hits were wrong too often: serve nothing.
    [[nodiscard]] bool exhausted() const noexcept { return exhausted_.load(std::memory_order_relaxed); }

    /// Whether this state belongs to the step whose counters are `counters` (a result of another
    /// cache must not feed this one's monitor, nor the other's behind its back).
    [[nodiscard]] bool owned_by(const VerifiedStepCounters* counters) const noexcept { return counters_ == counters; }

    /// Records the outcome of a hit served at `probability`.
    void report(double probability, bool right) {
        std::lock_guard lock(mutex_);
        if (!monitor_) monitor_.emplace(options_);
        const std::uint64_t raises_before = monitor_->stats().raises;
        monitor_->report(probability, right);
        const WrongHitMonitorStats s = monitor_->stats();
        threshold_.store(s.threshold, std::memory_order_relaxed);
        counters_->reports.fetch_add(1, std::memory_order_relaxed);
        if (!right) counters_->reported_wrong.fetch_add(1, std::memory_order_relaxed);
        counters_->threshold_raises.fetch_add(s.raises - raises_before, std::memory_order_relaxed);
        set_exhausted_locked(s.exhausted);
    }

    [[nodiscard]] WrongHitMonitorStats stats() const {
        std::lock_guard lock(mutex_);
        if (monitor_) return monitor_->stats();
        WrongHitMonitorStats none;
        none.threshold = options_.base_threshold;
        return none;
    }

    /// The scope left the cache: it no longer counts among the exhausted scopes (later reports through
    /// an old LookupResult still reach this state, which nothing reads any more).
    void forget() {
        std::lock_guard lock(mutex_);
        set_exhausted_locked(false);
        forgotten_ = true;
    }

private:
    void set_exhausted_locked(bool now) noexcept {
        const bool before = exhausted_.load(std::memory_order_relaxed);
        if (forgotten_ || now == before) return;
        exhausted_.store(now, std::memory_order_relaxed);
        counters_->exhausted_scopes.fetch_add(now ? 1 : -1, std::memory_order_relaxed);
    }

    mutable std::mutex mutex_;  // guards monitor_ and forgotten_
    WrongHitMonitorOptions options_;
    std::optional<WrongHitMonitor> monitor_;  // made on the first report
    VerifiedStepCounters* counters_;
    std::atomic<double> threshold_;
    std::atomic<bool> exhausted_{false};
    bool forgotten_ = false;
};

struct VerifiedStepEmpty {};

template <class V>
class VerifiedStep {
    static_assert(HitVerifier<V>, "llmfast::detail::VerifiedStep<V>: V must model llmfast::HitVerifier — it needs a const "
                                  "probability(std::string_view new_prompt, std::string_view cached_prompt, float similarity) "
                                  "returning a probability in [0, 1]");

    using Traits = hit_verifier_traits<V>;
    static constexpr bool prepared = Traits::prepared;
    /// The step applies the cache's guards itself (V does not).
    static constexpr bool guards_first = !Traits::applies_hit_guards;

    template <class T, bool = prepared>
    struct PreparedTypes {
        using Entry = std::string;  // the cached prompt, for the plain form
        using Query = VerifiedStepEmpty;
    };
    template <class T>
    struct PreparedTypes<T, true> {
        using Entry = typename T::EntryData;
        using Query = std::optional<typename T::Query>;
    };

public:
    using VerifierType = V;
    using GuardPart = std::conditional_t<guards_first, GuardSignature, VerifiedStepEmpty>;

    struct EntryData {
        [[no_unique_address]] GuardPart guards{};
        typename PreparedTypes<V>::Entry verifier{};
    };
    static_assert(std::is_default_constructible_v<typename PreparedTypes<V>::Entry>,
                  "llmfast::detail::VerifiedStep<V>: V::EntryData must be default-constructible (the cache default-constructs it)");

    struct Query {
        std::string_view prompt;
        GuardVerifier::Query guards;  // signature made by prepare when guards_first
        [[no_unique_address]] typename PreparedTypes<V>::Query verifier{};
        bool prepared = false;
    };

    /// `guards` and `max_wrong_hit_rate` are SemanticCacheOptions'; `embedder_identity` the cache's
    /// embedder's (`embedder_identity(e)`), which the verifier must be calibrated for.
    VerifiedStep(V verifier, const HitGuards& guards, double max_wrong_hit_rate, std::string_view embedder_identity)
        : verifier_(std::move(verifier)), guards_(guards), rate_(checked_max_wrong_hit_rate(max_wrong_hit_rate)),
          base_threshold_(verifier_threshold(verifier_, rate_)) {
        if (!verifier_calibrated_for(verifier_, embedder_identity)) {
            throw Error(ErrorCode::InvalidArgument,
                        fmt::format("SemanticCache::SemanticCache: the HitVerifier was calibrated for the embedder '{}', this cache's "
                                    "embedder is '{}' (PairVerifier: construct it with PairVerifierOptions{{.use_similarity = false}})",
                                    verifier_calibration_identity(verifier_), embedder_identity));
        }
        if constexpr (!guards_first) {
            if (!(HitGuards(verifier_.hit_guards()) == guards)) {
                throw Error(ErrorCode::InvalidArgument,
                            "SemanticCache::SemanticCache: SemanticCacheOptions::guards differ from the HitVerifier's own guards, which "
                            "it applies itself (PairVerifier: set PairVerifierOptions::guards to the same)");
            }
        }
        if (!std::isfinite(base_threshold_)) {
            throw Error(ErrorCode::InvalidArgument,
                        fmt::format("SemanticCache::SemanticCache: the HitVerifier's threshold_for({}) is not finite ({})", rate_, base_threshold_));
        }
        recommends_ = verifier_recommends_semantic_tier(verifier_, rate_);
    }

    VerifiedStep(const VerifiedStep&) = delete;
    VerifiedStep& operator=(const VerifiedStep&) = delete;

    [[nodiscard]] const V& verifier() const noexcept { return verifier_; }
    [[nodiscard]] double max_wrong_hit_rate() const noexcept { return rate_; }
    /// The shipped operating point for δ (every scope starts there; never goes below it).
    [[nodiscard]] double base_threshold() const noexcept { return base_threshold_; }

    [[nodiscard]] EntryData entry_data(std::string_view prompt) const {
        EntryData data;
        if constexpr (guards_first) data.guards = make_guard_signature(prompt);
        if constexpr (prepared) {
            data.verifier = verifier_.entry_data(prompt);
        } else {
            data.verifier = std::string(prompt);
        }
        return data;
    }

    [[nodiscard]] static Query query(std::string_view prompt) noexcept { return Query{prompt, GuardVerifier::query(prompt), {}, false}; }

    /// Completes `query` before a candidate is checked (outside every lock): the guards' signature (if
    /// the step applies them) and V's Query (prepared form). Idempotent.
    void prepare(Query& query) const {
        if (query.prepared) return;
        if constexpr (guards_first) GuardVerifier::prepare(query.guards);
        if constexpr (prepared) query.verifier.emplace(verifier_.query(query.prompt));
        query.prepared = true;
    }

    /// The verifier's probability for the candidate (clamped to [0, 1]; NaN -> 0). `prepare` must have run.
    [[nodiscard]] double probability(const Query& query, const EntryData& entry, float similarity) const {
        double p = 0;
        if constexpr (prepared) {
            p = static_cast<double>(verifier_.probability(*query.verifier, entry.verifier, similarity));
        } else {
            p = static_cast<double>(verifier_.probability(query.prompt, std::string_view(entry.verifier), similarity));
        }
        return p > 0.0 ? std::min(p, 1.0) : 0.0;  // NaN -> 0: never serve on a broken estimate
    }

    /// Guards (if the step applies them), then the verifier's probability against `scope`'s operating
    /// point (`base_threshold()` without a scope state). `prepare` must have run.
    [[nodiscard]] StepVerdict accept(const Query& query, const EntryData& entry, float similarity, const VerifierScopeState* scope) const {
        if constexpr (guards_first) {
            if (check_hit_guards(*query.guards.signature, entry.guards, guards_) != GuardVeto::None) return {StepOutcome::GuardVeto, 0.0};
        }
        const double p = probability(query, entry, similarity);
        const bool exhausted = scope != nullptr && scope->exhausted();
        const double threshold = scope != nullptr ? scope->threshold() : base_threshold_;
        if (exhausted || !(p >= threshold)) {
            counters_.rejections.fetch_add(1, std::memory_order_relaxed);
            return {StepOutcome::Rejected, p};
        }
        return {StepOutcome::Accepted, p};
    }

    /// The heap bytes an entry's data holds (V's static `entry_bytes` when it has one).
    [[nodiscard]] static std::size_t entry_bytes(const EntryData& entry) noexcept {
        std::size_t bytes = 0;
        if constexpr (guards_first) bytes += entry.guards.memory_bytes();
        if constexpr (!prepared) {
            if (entry.verifier.capacity() > std::string().capacity()) bytes += entry.verifier.capacity() + 1;
        } else if constexpr (requires(const typename V::EntryData& e) { { V::entry_bytes(e) } -> std::convertible_to<std::size_t>; }) {
            bytes += static_cast<std::size_t>(V::entry_bytes(entry.verifier));
        }
        return bytes;
    }

    /// The state of scope `name` (made on first use). Once per lookup, outside the cache's locks.
    [[nodiscard]] std::shared_ptr<VerifierScopeState> scope_state(std::string_view name) {
        {
            std::shared_lock lock(mutex_);
            if (const auto it = scopes_.find(name); it != scopes_.end()) return it->second;
        }
        auto made = std::make_shared<VerifierScopeState>(WrongHitMonitorOptions{.max_wrong_hit_rate = rate_, .base_threshold = base_threshold_},
                                                         &counters_);
        std::unique_lock lock(mutex_);
        return scopes_.try_emplace(std::string(name), std::move(made)).first->second;
    }

    /// Feeds the outcome of a hit served in `scope` at `probability` to the scope's monitor. False when
    /// there is no state or it is another step's (not a hit this step served).
    bool report(const std::weak_ptr<VerifierScopeState>& scope, double probability, bool right) {
        const std::shared_ptr<VerifierScopeState> state = scope.lock();
        if (!state || !state->owned_by(&counters_)) return false;
        state->report(probability, right);
        return true;
    }

    /// Drops scope `name`'s state (erase_scope): its operating point starts again from the base.
    void forget(std::string_view name) {
        std::shared_ptr<VerifierScopeState> state;
        {
            std::unique_lock lock(mutex_);
            const auto it = scopes_.find(name);
            if (it == scopes_.end()) return;
            state = std::move(it->second);
            scopes_.erase(it);
        }
        state->forget();
    }

    /// Drops every scope's state (clear, load).
    void forget_all() {
        std::unordered_map<std::string, std::shared_ptr<VerifierScopeState>, ScopeNameHash, std::equal_to<>> old;
        {
            std::unique_lock lock(mutex_);
            old.swap(scopes_);
        }
        for (auto& [name, state] : old) state->forget();
    }

    /// Adds the step's counters to the cache's stats snapshot.
    template <class Stats>
    void fill_stats(Stats& stats) const noexcept {
        stats.verifier_rejections = counters_.rejections.load(std::memory_order_relaxed);
        stats.reported_hits = counters_.reports.load(std::memory_order_relaxed);
        stats.reported_wrong = counters_.reported_wrong.load(std::memory_order_relaxed);
        stats.threshold_raises = counters_.threshold_raises.load(std::memory_order_relaxed);
        stats.exhausted_scopes = static_cast<std::size_t>(std::max<std::int64_t>(0, counters_.exhausted_scopes.load(std::memory_order_relaxed)));
    }

    /// The verifier's vote for SemanticTier::Auto with a lexical embedder: `recommends_semantic_tier(δ)`
    /// (calibration for the embedder was checked by the constructor).
    [[nodiscard]] bool recommends_semantic_tier() const noexcept { return recommends_; }

private:
    V verifier_;
    HitGuards guards_;
    double rate_;
    double base_threshold_;
    bool recommends_ = false;
    mutable VerifiedStepCounters counters_;
    mutable std::shared_mutex mutex_;  // guards scopes_
    std::unordered_map<std::string, std::shared_ptr<VerifierScopeState>, ScopeNameHash, std::equal_to<>> scopes_;
};

template <class V>
struct VerifierStepOf {
    using type = VerifiedStep<V>;
};
template <>
struct VerifierStepOf<GuardsOnly> {
    using type = GuardVerifier;
};

/// The cache's verifier step for its verifier parameter: the guards alone for GuardsOnly, else VerifiedStep<V>.
template <class V>
using verifier_step_t = typename VerifierStepOf<V>::type;

}  // namespace detail
LLMFAST_END_NAMESPACE
