// llmfast/pair_verifier.hpp — `PairVerifier`, the built-in `HitVerifier`: a small trained model that
// says whether an answer cached for one prompt is right for another, from lexical evidence alone.
//
// `HashingEmbedder` measures shared characters and words, so by itself it cannot tell "how do I reset
// my password" (same question) from "第一季比第二季好看吗" / "第二季比第一季好看吗" (same words,
// another question). PairVerifier looks at the pair more closely — overlaps at several n-gram orders
// weighted by how rare each word is, word order (longest common subsequence, Kendall tau of the shared
// words' positions), the hit guards' signals (numbers, negation, Latin names, term order), length
// ratios — plus a learned embedding of what differs (the tokens, bigrams and Latin trigrams only one
// side has, hashed into a trained int8 table, so substitutions seen in the labelled pairs count), and
// a small neural network (one hidden layer, trained by scripts/train_verifier.py, weights in the
// generated pair_verifier_weights.hpp) turns them into a probability. Its operating point for a
// wrong-hit rate δ comes from a calibration curve measured on a validation split held out of the
// training data (`threshold_for(δ)`); WrongHitMonitor (wrong_hit_monitor.hpp) raises it on a user's own
// traffic when feedback shows more wrong hits than δ. See docs/verifier.md for the figures.
//
//     const llmfast::PairVerifier verifier;                                  // the shipped weights
//     double p = verifier.probability("how can I reset my password", "How do I reset my password?", 0.83F);
//     bool serve = p >= verifier.threshold_for(0.05);                        // at most ~5 % wrong hits
//
//     auto entry = verifier.entry_data(cached_prompt);                       // once, at insertion
//     auto query = verifier.query(new_prompt);                               // once per lookup
//     double p2 = verifier.probability(query, entry, similarity);            // per candidate, no allocation
//
// The similarity feature is calibrated for `HashingEmbedder` with default options (its identity is
// `calibration_identity()`). With another embedder, construct it with
// `PairVerifierOptions{.use_similarity = false}`: the model then ignores the given similarity and
// uses the lexical features alone (its own cosine of hashed n-grams replaces it), which stay valid
// whatever embedder found the candidate; `calibration_identity()` becomes empty.
//
// Thread-safety: immutable after construction; every const member may be called from any number of
// threads at once. `EntryData` and `Query` are plain values.
//
// Errors: nothing throws except allocation failure (std::bad_alloc) in `entry_data`, `query` and the
// plain `probability` form, which analyse text.
#pragma once

#include <llmfast/version.hpp>

#include <llmfast/detail/cache_text.hpp>
#include <llmfast/detail/xxhash.hpp>
#include <llmfast/hashing_embedder.hpp>
#include <llmfast/hit_guards.hpp>
#include <llmfast/error.hpp>
#include <llmfast/hit_verifier.hpp>
#include <llmfast/pair_verifier_weights.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

LLMFAST_BEGIN_NAMESPACE

/// What PairVerifier knows about one prompt: computed once (entry_data / query), compared per pair.
struct PairText {
    std::vector<std::uint32_t> tokens;         ///< token hashes in order (a CJK character or a word each)
    std::vector<std::uint32_t> token_set;      ///< sorted unique token hashes
    std::vector<float> token_set_idf;          ///< idf of each token_set entry
    std::vector<std::uint32_t> unique_tokens;  ///< (hash) of tokens occurring once, sorted
    std::vector<std::uint16_t> unique_pos;     ///< their positions, parallel to unique_tokens
    std::vector<std::uint32_t> bigrams;        ///< sorted token-bigram hashes (a multiset)
    std::vector<std::uint32_t> trigrams;       ///< sorted token-trigram hashes (a multiset)
    std::vector<std::uint32_t> char_trigrams;  ///< sorted code-point trigrams inside Latin words
    float idf_total = 0;                       ///< sum of token_set_idf
    std::uint32_t cjk_tokens = 0;              ///< how many tokens are CJK characters
    GuardSignature guards;                     ///< the hit guards' view of the original prompt

    [[nodiscard]] std::size_t memory_bytes() const noexcept {
        return (tokens.capacity() + token_set.capacity() + unique_tokens.capacity() + bigrams.capacity() +
                trigrams.capacity() + char_trigrams.capacity()) *
                   sizeof(std::uint32_t) +
               token_set_idf.capacity() * sizeof(float) + unique_pos.capacity() * sizeof(std::uint16_t) +
               guards.memory_bytes();
    }
};

/// The names of PairVerifier's features, in order (the training script's columns).
inline constexpr std::array<std::string_view, 32> pair_feature_names{
    "similarity",        "cjk_share",        "token_dice",         "idf_jaccard",       "idf_contain_min",
    "idf_contain_max",   "bigram_dice",      "trigram_dice",       "char3_dice",        "lcs_max",
    "lcs_min",           "kendall_discord",  "bigram_discord",     "log_shared",        "log_len_min",
    "log_len_max",       "len_ratio",        "max_unshared_idf",   "unshared_idf_sum",  "log_unshared_a",
    "log_unshared_b",    "veto_numbers",     "veto_negation",      "veto_names",        "veto_term_order",
    "number_diff",       "negation_diff",    "has_numbers",        "same_bag_reordered", "first_token_same",
    "last_token_same",   "hashed_cosine",
};
inline constexpr std::size_t pair_feature_count = pair_feature_names.size();

struct PairVerifierOptions {
    /// The hit guards act as a gate: a pair one of them vetoes gets probability 0 (the model was
    /// calibrated with this gate; turning guards off here raises the wrong-hit rate above the
    /// calibration's).
    HitGuards guards{};
    /// Use the similarity the cache passes in (calibrated for HashingEmbedder with default options).
    /// false: ignore it and use the verifier's own lexical cosine in its place, valid with any embedder.
    bool use_similarity = true;
};

namespace detail {

/// Token hashes and per-bucket idf: the bucket of a token is `hash % table size`.
constexpr std::uint64_t pair_token_seed = 0x50564B54ULL;

/// Byte `k` of a table packed little-endian into 64-bit words (how the generated header stores its
/// byte tables: one hex literal per 8 bytes keeps the header small and needs no decoding at start-up).
constexpr std::uint8_t pair_packed_byte(std::span<const std::uint64_t> words, std::size_t k) noexcept {
    return static_cast<std::uint8_t>(words[k / 8] >> (8 * (k % 8)));
}

/// An idf table in 1/16 units: the training tool's plain bytes, or the shipped packed words; empty: 1.
struct PairIdfTable {
    std::span<const std::uint8_t> bytes{};
    std::span<const std::uint64_t> packed{};

    [[nodiscard]] float operator()(std::uint32_t hash) const noexcept {
        if (!packed.empty()) return static_cast<float>(pair_packed_byte(packed, hash % (packed.size() * 8))) * (1.0F / 16.0F);
        if (bytes.empty()) return 1.0F;
        return static_cast<float>(bytes[hash % bytes.size()]) * (1.0F / 16.0F);
    }
};

inline std::uint32_t pair_mix(std::uint32_t a, std::uint32_t b) noexcept {
    std::uint64_t x = (static_cast<std::uint64_t>(a) << 32 | b) * 0x9E3779B97F4A7C15ULL;
    x ^= x >> 29;
    return static_cast<std::uint32_t>(x >> 32);
}

/// Tokenizes the normalized prompt: every CJK code point is a token, every run of other word
/// characters is a token (a word); separators split. Latin words also give code-point trigrams.
inline PairText pair_analyse(std::string_view prompt, const PairIdfTable& idf_table) {
    PairText text;
    std::string normalized;
    normalize_prompt(prompt, normalized);
    constexpr std::size_t npos = std::string_view::npos;
    const std::string_view view = normalized;
    std::size_t word_start = npos;
    std::size_t starts[3] = {0, 0, 0};
    std::size_t word_chars = 0;
    const auto end_word = [&](std::size_t end) {
        if (word_start == npos) return;
        const std::string_view word = view.substr(word_start, end - word_start);
        text.tokens.push_back(static_cast<std::uint32_t>(xxh3_64(word, pair_token_seed)));
        if (word_chars < 3) text.char_trigrams.push_back(static_cast<std::uint32_t>(xxh3_64(word, pair_token_seed + 3)));
        word_start = npos;
        word_chars = 0;
    };
    std::size_t pos = 0;
    while (pos < view.size()) {
        const CodePoint cp = next_code_point(view, pos);
        if (is_cjk(cp.value)) {
            end_word(pos);
            text.tokens.push_back(static_cast<std::uint32_t>(xxh3_64(view.substr(pos, cp.length), pair_token_seed)));
            ++text.cjk_tokens;
        } else if (is_separator(cp.value)) {
            end_word(pos);
        } else {
            if (word_start == npos) word_start = pos;
            starts[0] = starts[1];
            starts[1] = starts[2];
            starts[2] = pos;
            ++word_chars;
            if (word_chars >= 3) {
                text.char_trigrams.push_back(
                    static_cast<std::uint32_t>(xxh3_64(view.substr(starts[0], pos + cp.length - starts[0]), pair_token_seed + 3)));
            }
        }
        pos += cp.length;
    }
    end_word(view.size());

    const std::size_t n = text.tokens.size();
    for (std::size_t i = 0; i + 1 < n; ++i) text.bigrams.push_back(pair_mix(text.tokens[i], text.tokens[i + 1]));
    for (std::size_t i = 0; i + 2 < n; ++i) {
        text.trigrams.push_back(pair_mix(pair_mix(text.tokens[i], text.tokens[i + 1]), text.tokens[i + 2]));
    }
    std::sort(text.bigrams.begin(), text.bigrams.end());
    std::sort(text.trigrams.begin(), text.trigrams.end());
    std::sort(text.char_trigrams.begin(), text.char_trigrams.end());

    // Sorted (hash, position) to find the unique tokens and the set.
    std::vector<std::uint64_t> keyed(n);
    for (std::size_t i = 0; i < n; ++i) keyed[i] = static_cast<std::uint64_t>(text.tokens[i]) << 32 | i;
    std::sort(keyed.begin(), keyed.end());
    for (std::size_t i = 0; i < n;) {
        std::size_t j = i + 1;
        const auto hash = static_cast<std::uint32_t>(keyed[i] >> 32);
        while (j < n && static_cast<std::uint32_t>(keyed[j] >> 32) == hash) ++j;
        text.token_set.push_back(hash);
        const float idf = idf_table(hash);
        text.token_set_idf.push_back(idf);
        text.idf_total += idf;
        if (j == i + 1 && (keyed[i] & 0xFFFFFFFFU) <= 0xFFFFU) {
            text.unique_tokens.push_back(hash);
            text.unique_pos.push_back(static_cast<std::uint16_t>(keyed[i] & 0xFFFFU));
        }
        i = j;
    }
    text.guards = make_guard_signature(prompt);
    return text;
}

/// Size of the intersection of two sorted multisets.
inline std::size_t pair_common(std::span<const std::uint32_t> a, std::span<const std::uint32_t> b) noexcept {
    std::size_t i = 0, j = 0, common = 0;
    while (i < a.size() && j < b.size()) {
        if (a[i] < b[j]) {
            ++i;
        } else if (b[j] < a[i]) {
            ++j;
        } else {
            ++common;
            ++i;
            ++j;
        }
    }
    return common;
}

inline float pair_dice(std::span<const std::uint32_t> a, std::span<const std::uint32_t> b) noexcept {
    if (a.empty() && b.empty()) return 1.0F;
    return static_cast<float>(2.0 * static_cast<double>(pair_common(a, b)) / static_cast<double>(a.size() + b.size()));
}

/// Fraction of discordant pairs among (position in a, position in b) sorted by position in a.
inline float pair_discordance(std::span<std::pair<std::uint16_t, std::uint16_t>> shared) noexcept {
    if (shared.size() < 2) return 0.0F;
    std::sort(shared.begin(), shared.end());
    std::size_t discordant = 0;
    for (std::size_t i = 0; i < shared.size(); ++i) {
        for (std::size_t j = i + 1; j < shared.size(); ++j) discordant += shared[j].second < shared[i].second ? 1 : 0;
    }
    const double pairs = static_cast<double>(shared.size()) * static_cast<double>(shared.size() - 1) / 2.0;
    return static_cast<float>(static_cast<double>(discordant) / pairs);
}

/// Longest common subsequence of two token sequences (each capped at 128 tokens), by rows.
inline std::size_t pair_lcs(std::span<const std::uint32_t> a, std::span<const std::uint32_t> b) noexcept {
    constexpr std::size_t cap = 128;
    a = a.first(std::min(a.size(), cap));
    b = b.first(std::min(b.size(), cap));
    std::array<std::uint8_t, cap + 1> prev{}, cur{};
    for (std::size_t i = 0; i < a.size(); ++i) {
        cur[0] = 0;
        for (std::size_t j = 0; j < b.size(); ++j) {
            cur[j + 1] = a[i] == b[j] ? static_cast<std::uint8_t>(prev[j] + 1) : std::max(prev[j + 1], cur[j]);
        }
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

/// The learned part of the model looks at what differs between the two prompts: the tokens, token
/// bigrams and Latin code-point trigrams that only one side has (a substitution "怎么" -> "如何" is
/// a paraphrase, a changed bigram at a swapped chunk's edge is not), each hashed into one of
/// `pair_embed_buckets` rows of a trained embedding table. At most `pair_max_diff_items` per side.
inline constexpr std::size_t pair_embed_buckets = 16384;
inline constexpr std::size_t pair_max_diff_items = 64;

struct PairDiff {
    std::array<std::uint16_t, pair_max_diff_items> a{}, b{};
    std::size_t na = 0, nb = 0;
};

/// Merges two sorted hash lists (duplicates allowed), recording the buckets of values only one side has.
inline void pair_diff_merge(std::span<const std::uint32_t> a, std::span<const std::uint32_t> b, std::uint32_t salt,
                            PairDiff& out) noexcept {
    const auto bucket = [salt](std::uint32_t h) {
        return static_cast<std::uint16_t>(pair_mix(h, salt) % pair_embed_buckets);
    };
    std::size_t i = 0, j = 0;
    while (i < a.size() || j < b.size()) {
        if (j == b.size() || (i < a.size() && a[i] < b[j])) {
            const std::uint32_t h = a[i];
            if (out.na < pair_max_diff_items) out.a[out.na++] = bucket(h);
            while (i < a.size() && a[i] == h) ++i;
        } else if (i == a.size() || b[j] < a[i]) {
            const std::uint32_t h = b[j];
            if (out.nb < pair_max_diff_items) out.b[out.nb++] = bucket(h);
            while (j < b.size() && b[j] == h) ++j;
        } else {
            const std::uint32_t h = a[i];
            while (i < a.size() && a[i] == h) ++i;
            while (j < b.size() && b[j] == h) ++j;
        }
    }
}

/// The difference items of a pair (a = the new prompt, b = the cached one).
inline PairDiff pair_diff(const PairText& a, const PairText& b) noexcept {
    PairDiff out;
    pair_diff_merge(a.token_set, b.token_set, 0x746F6BU, out);
    pair_diff_merge(a.bigrams, b.bigrams, 0x626967U, out);
    pair_diff_merge(a.char_trigrams, b.char_trigrams, 0x636833U, out);
    return out;
}

/// The features of the pair (a = the new prompt, b = the cached one), written into `out`.
inline void pair_features(const PairText& a, const PairText& b, float similarity, std::span<float> out) noexcept {
    const auto clamp01 = [](double x) { return static_cast<float>(x < 0 ? 0 : (x > 1 ? 1 : x)); };
    const double len_a = static_cast<double>(a.tokens.size()), len_b = static_cast<double>(b.tokens.size());
    const double len_min = std::min(len_a, len_b), len_max = std::max(len_a, len_b);
    // Set intersection with idf.
    double idf_shared = 0, max_unshared = 0, unshared_sum = 0;
    std::size_t shared = 0, only_a = 0, only_b = 0;
    {
        std::size_t i = 0, j = 0;
        while (i < a.token_set.size() || j < b.token_set.size()) {
            if (j == b.token_set.size() || (i < a.token_set.size() && a.token_set[i] < b.token_set[j])) {
                max_unshared = std::max(max_unshared, static_cast<double>(a.token_set_idf[i]));
                unshared_sum += a.token_set_idf[i];
                ++only_a;
                ++i;
            } else if (i == a.token_set.size() || b.token_set[j] < a.token_set[i]) {
                max_unshared = std::max(max_unshared, static_cast<double>(b.token_set_idf[j]));
                unshared_sum += b.token_set_idf[j];
                ++only_b;
                ++j;
            } else {
                idf_shared += a.token_set_idf[i];
                ++shared;
                ++i;
                ++j;
            }
        }
    }
    const double idf_union = static_cast<double>(a.idf_total) + static_cast<double>(b.idf_total) - idf_shared;
    // Token multiset Dice: sorted copies would allocate; the sequences' sets are close enough for
    // prompts (repeats are rare), so use set sizes.
    const double token_dice = (a.token_set.empty() && b.token_set.empty())
                                  ? 1.0
                                  : 2.0 * static_cast<double>(shared) / static_cast<double>(a.token_set.size() + b.token_set.size());
    // Order of the tokens both contain once.
    std::array<std::pair<std::uint16_t, std::uint16_t>, 64> order{};
    std::size_t n_order = 0;
    {
        std::size_t i = 0, j = 0;
        while (i < a.unique_tokens.size() && j < b.unique_tokens.size() && n_order < order.size()) {
            if (a.unique_tokens[i] < b.unique_tokens[j]) {
                ++i;
            } else if (b.unique_tokens[j] < a.unique_tokens[i]) {
                ++j;
            } else {
                order[n_order++] = {a.unique_pos[i], b.unique_pos[j]};
                ++i;
                ++j;
            }
        }
    }
    const float kendall = pair_discordance(std::span(order.data(), n_order));
    const std::size_t lcs = pair_lcs(a.tokens, b.tokens);
    const bool cjk_order_same = same_cjk_order(a.guards.cjk_bigrams, b.guards.cjk_bigrams);
    // Hashed cosine of token + bigram sets (a lexical similarity of the verifier's own).
    const double bigram_common = static_cast<double>(pair_common(a.bigrams, b.bigrams));
    const double own_cos_den = std::sqrt((static_cast<double>(a.token_set.size() + a.bigrams.size())) *
                                         (static_cast<double>(b.token_set.size() + b.bigrams.size())));
    const double own_cos = own_cos_den > 0 ? (static_cast<double>(shared) + bigram_common) / own_cos_den : 0.0;

    const HitGuards only_numbers{.numbers = true, .negation = false, .latin_names = false, .term_order = false};
    const HitGuards only_negation{.numbers = false, .negation = true, .latin_names = false, .term_order = false};
    const HitGuards only_names{.numbers = false, .negation = false, .latin_names = true, .term_order = false};
    const HitGuards only_order{.numbers = false, .negation = false, .latin_names = false, .term_order = true};
    std::size_t number_diff = 0;
    {
        const auto& na = a.guards.numbers;
        const auto& nb = b.guards.numbers;
        std::size_t i = 0, j = 0;
        while (i < na.size() || j < nb.size()) {
            if (j == nb.size() || (i < na.size() && na[i] < nb[j])) {
                ++number_diff;
                ++i;
            } else if (i == na.size() || nb[j] < na[i]) {
                ++number_diff;
                ++j;
            } else {
                ++i;
                ++j;
            }
        }
    }
    const double cjk_share = (len_a + len_b) > 0 ? static_cast<double>(a.cjk_tokens + b.cjk_tokens) / (len_a + len_b) : 0.0;
    const bool same_bag = a.token_set == b.token_set && a.tokens.size() == b.tokens.size() && a.tokens != b.tokens;

    std::size_t k = 0;
    out[k++] = similarity;
    out[k++] = static_cast<float>(cjk_share);
    out[k++] = static_cast<float>(token_dice);
    out[k++] = idf_union > 0 ? clamp01(idf_shared / idf_union) : 1.0F;
    out[k++] = clamp01(std::min(a.idf_total > 0 ? idf_shared / a.idf_total : 1.0, b.idf_total > 0 ? idf_shared / b.idf_total : 1.0));
    out[k++] = clamp01(std::max(a.idf_total > 0 ? idf_shared / a.idf_total : 1.0, b.idf_total > 0 ? idf_shared / b.idf_total : 1.0));
    out[k++] = pair_dice(a.bigrams, b.bigrams);
    out[k++] = pair_dice(a.trigrams, b.trigrams);
    out[k++] = pair_dice(a.char_trigrams, b.char_trigrams);
    out[k++] = len_max > 0 ? static_cast<float>(static_cast<double>(lcs) / len_max) : 1.0F;
    out[k++] = len_min > 0 ? static_cast<float>(static_cast<double>(lcs) / len_min) : 1.0F;
    out[k++] = kendall;
    out[k++] = cjk_order_same ? 0.0F : 1.0F;
    out[k++] = static_cast<float>(std::log1p(static_cast<double>(shared)));
    out[k++] = static_cast<float>(std::log1p(len_min));
    out[k++] = static_cast<float>(std::log1p(len_max));
    out[k++] = len_max > 0 ? static_cast<float>(len_min / len_max) : 1.0F;
    out[k++] = static_cast<float>(max_unshared);
    out[k++] = static_cast<float>(std::log1p(unshared_sum));
    out[k++] = static_cast<float>(std::log1p(static_cast<double>(only_a)));
    out[k++] = static_cast<float>(std::log1p(static_cast<double>(only_b)));
    out[k++] = check_hit_guards(a.guards, b.guards, only_numbers) != GuardVeto::None ? 1.0F : 0.0F;
    out[k++] = check_hit_guards(a.guards, b.guards, only_negation) != GuardVeto::None ? 1.0F : 0.0F;
    out[k++] = check_hit_guards(a.guards, b.guards, only_names) != GuardVeto::None ? 1.0F : 0.0F;
    out[k++] = check_hit_guards(a.guards, b.guards, only_order) != GuardVeto::None ? 1.0F : 0.0F;
    out[k++] = static_cast<float>(std::log1p(static_cast<double>(number_diff)));
    out[k++] = static_cast<float>(a.guards.negations > b.guards.negations ? a.guards.negations - b.guards.negations
                                                                          : b.guards.negations - a.guards.negations);
    out[k++] = (a.guards.numbers.empty() && b.guards.numbers.empty()) ? 0.0F : 1.0F;
    out[k++] = same_bag ? 1.0F : 0.0F;
    out[k++] = (!a.tokens.empty() && !b.tokens.empty() && a.tokens.front() == b.tokens.front()) ? 1.0F : 0.0F;
    out[k++] = (!a.tokens.empty() && !b.tokens.empty() && a.tokens.back() == b.tokens.back()) ? 1.0F : 0.0F;
    out[k++] = static_cast<float>(own_cos);
}

}  // namespace detail

/// The built-in HitVerifier (see the header comment). Thread-safety: immutable; share one instance.
class PairVerifier {
public:
    using Options = PairVerifierOptions;
    using EntryData = PairText;
    using Query = PairText;

    PairVerifier() : PairVerifier(Options{}) {}
    explicit PairVerifier(Options options) : options_(options) {
        static_assert(pair_verifier_weights::feature_count == pair_feature_count &&
                          pair_verifier_weights::embed_buckets == detail::pair_embed_buckets &&
                          pair_verifier_weights::embed_codes.size() * 8 >= detail::pair_embed_buckets * pair_verifier_weights::embed_dim,
                      "pair_verifier_weights.hpp was generated for another feature set: rerun scripts/train_verifier.py");
    }

    [[nodiscard]] const Options& options() const noexcept { return options_; }
    /// The guards it gates on (HitVerifier's optional `hit_guards()`: a cache must not apply them again).
    [[nodiscard]] const HitGuards& hit_guards() const noexcept { return options_.guards; }

    /// What the verifier keeps per cached prompt (computed once, at insertion).
    [[nodiscard]] EntryData entry_data(std::string_view cached_prompt) const {
        return detail::pair_analyse(cached_prompt, shipped_idf());
    }
    /// What the verifier keeps per lookup (computed once, before the first candidate).
    [[nodiscard]] Query query(std::string_view new_prompt) const { return detail::pair_analyse(new_prompt, shipped_idf()); }
    [[nodiscard]] static std::size_t entry_bytes(const EntryData& entry) noexcept { return entry.memory_bytes(); }

    /// The features of a prepared pair (for tools and tests; `out.size()` must be pair_feature_count).
    void features(const Query& query, const EntryData& entry, float similarity, std::span<float> out) const noexcept {
        detail::pair_features(query, entry, similarity, out);
        if (!options_.use_similarity) out[0] = out[pair_feature_count - 1];
    }

    /// The probability that the answer cached for `entry`'s prompt is right for `query`'s prompt.
    /// Per candidate: the dense features, the difference items' mean embeddings, one hidden layer —
    /// a few thousand multiply-adds and no allocation.
    [[nodiscard]] double probability(const Query& query, const EntryData& entry, float similarity) const noexcept {
        if (check_hit_guards(query.guards, entry.guards, options_.guards) != GuardVeto::None) return 0.0;
        namespace w = pair_verifier_weights;
        std::array<float, w::inputs> in{};
        features(query, entry, similarity, std::span(in).first<pair_feature_count>());
        for (std::size_t i = 0; i < pair_feature_count; ++i) {
            const float v = std::isfinite(in[i]) ? in[i] : 0.0F;
            in[i] = (v - w::feature_mean[i]) * w::feature_inv_std[i];
        }
        const detail::PairDiff diff = detail::pair_diff(query, entry);
        const std::array<float, w::embed_dim> ua = pool(diff.a, diff.na);
        const std::array<float, w::embed_dim> ub = pool(diff.b, diff.nb);
        for (std::size_t d = 0; d < w::embed_dim; ++d) {
            in[pair_feature_count + d] = ua[d] * ub[d];
            in[pair_feature_count + w::embed_dim + d] = std::fabs(ua[d] - ub[d]);
        }
        double logit = w::output_bias;
        for (std::size_t h = 0; h < w::hidden; ++h) {
            float a = w::hidden_bias[h];
            const float* row = &w::hidden_weights[h * w::inputs];
            for (std::size_t i = 0; i < w::inputs; ++i) a += row[i] * in[i];
            if (a > 0.0F) logit += static_cast<double>(a) * static_cast<double>(w::output_weights[h]);
        }
        if (!std::isfinite(logit)) return 0.0;
        return 1.0 / (1.0 + std::exp(-logit));
    }

    /// The plain form: analyses both prompts, then as above.
    [[nodiscard]] double probability(std::string_view new_prompt, std::string_view cached_prompt, float similarity) const {
        return probability(query(new_prompt), entry_data(cached_prompt), similarity);
    }

    /// The probability threshold whose wrong-hit rate on the calibration (validation) split was at most
    /// `max_wrong_hit_rate` on the mix and on every source: the operating point of the largest
    /// calibrated rate <= the asked one. Below the smallest calibrated rate: 2.0 (no hit qualifies).
    [[nodiscard]] static double threshold_for(double max_wrong_hit_rate) noexcept {
        namespace w = pair_verifier_weights;
        double threshold = 2.0;
        for (std::size_t i = 0; i < w::calibration_rates.size(); ++i) {
            if (w::calibration_rates[i] <= max_wrong_hit_rate + 1e-12) threshold = std::min(threshold, w::calibration_thresholds[i]);
        }
        return threshold;
    }

    /// The embedder whose similarity the model was trained with (empty with use_similarity = false).
    [[nodiscard]] std::string calibration_identity() const {
        return options_.use_similarity ? std::string(pair_verifier_weights::embedder_identity) : std::string();
    }

    /// True when the shipped dev figures met precision >= 0.95 on every dev source at this rate (or a
    /// smaller calibrated one): the bar for `SemanticTier::Auto`.
    [[nodiscard]] bool recommends_semantic_tier(double max_wrong_hit_rate) const noexcept {
        namespace w = pair_verifier_weights;
        if (!options_.use_similarity) return false;
        for (std::size_t i = 0; i < w::calibration_rates.size(); ++i) {
            if (w::calibration_rates[i] <= max_wrong_hit_rate + 1e-12 && w::dev_meets_bar[i]) return true;
        }
        return false;
    }

private:
    static detail::PairIdfTable shipped_idf() noexcept { return {.bytes = {}, .packed = pair_verifier_weights::idf_codes}; }

    /// Mean embedding of one side's difference items (zero for none).
    static std::array<float, pair_verifier_weights::embed_dim> pool(std::span<const std::uint16_t> items, std::size_t n) noexcept {
        namespace w = pair_verifier_weights;
        std::array<std::int32_t, w::embed_dim> sum{};
        for (std::size_t k = 0; k < n; ++k) {
            const std::size_t base = static_cast<std::size_t>(items[k]) * w::embed_dim;
            for (std::size_t d = 0; d < w::embed_dim; ++d) {
                sum[d] += static_cast<std::int8_t>(detail::pair_packed_byte(w::embed_codes, base + d));
            }
        }
        std::array<float, w::embed_dim> out{};
        if (n == 0) return out;
        const float inv = 1.0F / static_cast<float>(n);
        for (std::size_t d = 0; d < w::embed_dim; ++d) out[d] = static_cast<float>(sum[d]) * w::embed_scale[d] * inv;
        return out;
    }

    Options options_;
};

static_assert(HitVerifier<PairVerifier>, "llmfast::PairVerifier must model llmfast::HitVerifier");
static_assert(hit_verifier_traits<PairVerifier>::prepared && hit_verifier_traits<PairVerifier>::threshold_for &&
              hit_verifier_traits<PairVerifier>::calibration_identity && hit_verifier_traits<PairVerifier>::applies_hit_guards);

LLMFAST_END_NAMESPACE
