// llmfast/hit_verifier.hpp — the `HitVerifier` concept: how sure is it that a cached answer is right
// for a new prompt?
//
// The semantic cache's index proposes candidates (cached prompts whose embedding is close to the new
// prompt's); a hit verifier turns one candidate into a probability that serving the candidate's answer
// is right, and the cache serves it only when that probability clears the operating point chosen for
// the scope's `max_wrong_hit_rate`. `PairVerifier` (pair_verifier.hpp) is the built-in model; plug in
// your own (a cross-encoder you run, a rule set) by writing a type that models this concept.
//
//     struct MyVerifier {
//         double probability(std::string_view new_prompt, std::string_view cached_prompt, float similarity) const;
//     };
//     static_assert(llmfast::HitVerifier<MyVerifier>);
//     double p = llmfast::verify_hit(verifier, "how do I reset my password", "How can I reset my password?", 0.91F);
//
// Required: a const `probability(new_prompt, cached_prompt, similarity)` returning a probability in
// [0, 1] (convertible to double). `similarity` is what the cache's embedder + index computed (cosine).
//
// Optional (detected; the free functions below use them when present, else fall back):
//   * prepared form — `typename V::EntryData`, `entry_data(cached_prompt) -> EntryData` (computed once
//     when an entry is inserted, outside locks), `typename V::Query`, `query(new_prompt) -> Query`
//     (computed once per lookup, before the first candidate), and
//     `probability(const Query&, const EntryData&, float similarity)`. Same result as the plain form,
//     without re-analysing the cached prompt on every lookup. `entry_bytes(const EntryData&)` if
//     the cache should count its memory.
//   * batch form — `probability_batch(new_prompt, std::span<const std::string_view> cached_prompts,
//     std::span<const float> similarities, std::span<double> out)` (a model scores a batch faster).
//   * `threshold_for(double max_wrong_hit_rate) -> double`: the probability threshold whose wrong-hit
//     rate, measured on the verifier's calibration data, is at most the given rate. Without it the
//     threshold is `1 - max_wrong_hit_rate` (exact for a calibrated probability: every accepted hit is
//     wrong with probability at most δ, hence so is their mix).
//   * `calibration_identity() -> std::string`: the identity (`embedder_identity(e)`) of the embedder
//     whose similarity the verifier was calibrated with. Absent or empty: the verifier does not depend
//     on the similarity's scale and is valid with any embedder. A cache must not trust a verifier's
//     thresholds with another embedder; `verifier_calibrated_for` says whether it may.
//   * `recommends_semantic_tier(double max_wrong_hit_rate) -> bool`: true when the verifier's own
//     measurements (shipped with it) meet the bar for turning the semantic tier on by default
//     (`SemanticTier::Auto`) at that rate. Absent: false (the user opts in).
//   * `hit_guards()` (returning a `HitGuards`, llmfast/hit_guards.hpp): the verifier applies these
//     hit guards itself (PairVerifier gates on them). Absent: the cache's verifier step applies its
//     own guards (`SemanticCacheOptions::guards`) first and asks the verifier only about candidates
//     no guard vetoes — either way the guards run exactly once per candidate.
//
// Thread-safety: the cache calls a verifier's const members from many threads at once; a model of
// HitVerifier must allow that (the built-in one is immutable after construction).
//
// Errors: `verify_hits` throws Error(InvalidArgument) for spans of different sizes; otherwise the free
// functions throw only what the verifier throws.
#pragma once

#include <llmfast/version.hpp>

#include <llmfast/error.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>

LLMFAST_BEGIN_NAMESPACE

/// A type whose const `probability(new_prompt, cached_prompt, similarity)` says how likely the answer
/// cached for `cached_prompt` is right for `new_prompt` (a probability in [0, 1]).
template <class V>
concept HitVerifier = requires(const V& verifier, std::string_view new_prompt, std::string_view cached_prompt, float similarity) {
    { verifier.probability(new_prompt, cached_prompt, similarity) } -> std::convertible_to<double>;
};

/// Which optional parts of the HitVerifier concept a verifier type provides.
template <class V>
struct hit_verifier_traits {
    /// The prepared form: EntryData per cached prompt, Query per lookup, probability(Query, EntryData, sim).
    static constexpr bool prepared = requires(const V& verifier, std::string_view text, float similarity) {
        typename V::EntryData;
        typename V::Query;
        { verifier.entry_data(text) } -> std::convertible_to<typename V::EntryData>;
        { verifier.query(text) } -> std::convertible_to<typename V::Query>;
        requires requires(const typename V::Query& query, const typename V::EntryData& entry) {
            { verifier.probability(query, entry, similarity) } -> std::convertible_to<double>;
        };
    };
    static constexpr bool batch = requires(const V& verifier, std::string_view text, std::span<const std::string_view> cached,
                                           std::span<const float> similarities, std::span<double> out) {
        verifier.probability_batch(text, cached, similarities, out);
    };
    static constexpr bool calibration_identity = requires(const V& verifier) {
        { verifier.calibration_identity() } -> std::convertible_to<std::string>;
    };
    static constexpr bool threshold_for = requires(const V& verifier, double rate) {
        { verifier.threshold_for(rate) } -> std::convertible_to<double>;
    };
    static constexpr bool recommends_semantic_tier = requires(const V& verifier, double rate) {
        { verifier.recommends_semantic_tier(rate) } -> std::convertible_to<bool>;
    };
    /// It applies the hit guards itself (`hit_guards()`), so the cache must not apply them again.
    static constexpr bool applies_hit_guards = requires(const V& verifier) { verifier.hit_guards(); };
};

/// The semantic cache's default verifier step: no HitVerifier, the hit guards alone decide
/// (`SemanticCacheOptions::guards`); there is no probability and no `max_wrong_hit_rate` to keep.
struct GuardsOnly {};

/// The probability that the answer cached for `cached_prompt` is right for `new_prompt`, clamped to [0, 1].
template <class V>
    requires HitVerifier<V>
[[nodiscard]] double verify_hit(const V& verifier, std::string_view new_prompt, std::string_view cached_prompt, float similarity) {
    const double p = static_cast<double>(verifier.probability(new_prompt, cached_prompt, similarity));
    return p > 0.0 ? std::min(p, 1.0) : 0.0;  // NaN -> 0: never serve on a broken estimate
}

/// Scores every candidate: `out[i]` = the probability for `cached_prompts[i]` at `similarities[i]`,
/// through the verifier's `probability_batch` when it has one. Throws Error(InvalidArgument) when the
/// three spans differ in size.
template <class V>
    requires HitVerifier<V>
void verify_hits(const V& verifier, std::string_view new_prompt, std::span<const std::string_view> cached_prompts,
                 std::span<const float> similarities, std::span<double> out) {
    if (cached_prompts.size() != similarities.size() || out.size() != similarities.size()) {
        throw Error(ErrorCode::InvalidArgument,
                    fmt::format("verify_hits: {} prompts, {} similarities and {} outputs must agree", cached_prompts.size(),
                                similarities.size(), out.size()));
    }
    if constexpr (hit_verifier_traits<V>::batch) {
        verifier.probability_batch(new_prompt, cached_prompts, similarities, out);
        for (double& p : out) p = p > 0.0 ? std::min(p, 1.0) : 0.0;
    } else {
        for (std::size_t i = 0; i < out.size(); ++i) out[i] = verify_hit(verifier, new_prompt, cached_prompts[i], similarities[i]);
    }
}

/// The probability threshold for a wrong-hit rate of at most `max_wrong_hit_rate` (δ): the verifier's
/// `threshold_for(δ)` if it has one, else `1 - δ`. δ is clamped to [0, 1].
template <class V>
    requires HitVerifier<V>
[[nodiscard]] double verifier_threshold(const V& verifier, double max_wrong_hit_rate) {
    const double rate = max_wrong_hit_rate > 0.0 ? std::min(max_wrong_hit_rate, 1.0) : 0.0;
    if constexpr (hit_verifier_traits<V>::threshold_for) {
        return static_cast<double>(verifier.threshold_for(rate));
    } else {
        return 1.0 - rate;
    }
}

/// The identity of the embedder the verifier was calibrated with; empty when it has none (it does not
/// depend on the similarity's scale).
template <class V>
    requires HitVerifier<V>
[[nodiscard]] std::string verifier_calibration_identity(const V& verifier) {
    if constexpr (hit_verifier_traits<V>::calibration_identity) {
        return std::string(verifier.calibration_identity());
    } else {
        return {};
    }
}

/// True when the verifier's probabilities (and thresholds) are valid for similarities computed by the
/// embedder whose identity is `embedder_identity`: it has no calibration identity, or it matches.
template <class V>
    requires HitVerifier<V>
[[nodiscard]] bool verifier_calibrated_for(const V& verifier, std::string_view embedder_identity) {
    const std::string calibrated = verifier_calibration_identity(verifier);
    return calibrated.empty() || calibrated == embedder_identity;
}

/// True when the verifier vouches for turning the semantic tier on by default at `max_wrong_hit_rate`.
template <class V>
    requires HitVerifier<V>
[[nodiscard]] bool verifier_recommends_semantic_tier(const V& verifier, double max_wrong_hit_rate) {
    if constexpr (hit_verifier_traits<V>::recommends_semantic_tier) {
        return static_cast<bool>(verifier.recommends_semantic_tier(max_wrong_hit_rate));
    } else {
        return false;
    }
}

LLMFAST_END_NAMESPACE
