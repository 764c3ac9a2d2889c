#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // g++ 12 bug 105593 in xxhash's AVX-512 path (-march=native)
#endif
#include <llmfast/pair_verifier.hpp>

#include <llmfast/embedder.hpp>

#include "catch.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace {

float cosine(std::string_view a, std::string_view b) {
    const llmfast::HashingEmbedder embedder;
    std::vector<float> va(embedder.dimension()), vb(embedder.dimension());
    embedder.embed(a, va);
    embedder.embed(b, vb);
    double dot = 0;
    for (std::size_t i = 0; i < va.size(); ++i) dot += static_cast<double>(va[i]) * static_cast<double>(vb[i]);
    return static_cast<float>(dot);
}

double probability(const llmfast::PairVerifier& verifier, std::string_view new_prompt, std::string_view cached) {
    return verifier.probability(new_prompt, cached, cosine(new_prompt, cached));
}

}  // namespace

static_assert(llmfast::HitVerifier<llmfast::PairVerifier>);

TEST_CASE("PairVerifier: probabilities are in [0, 1], deterministic, and the prepared form agrees") {
    const llmfast::PairVerifier verifier;
    const std::vector<std::pair<std::string, std::string>> pairs{
        {"How can I reset my password?", "How do I reset my password"},
        {"什么是机器学习?", "机器学习是什么?"},
        {"", ""},
        {"", "non-empty"},
        {std::string(3000, 'x'), std::string(2999, 'x') + "y"},
        {"\xff\xfe broken utf-8", "broken utf-8"},
    };
    for (const auto& [a, b] : pairs) {
        const double p = probability(verifier, a, b);
        CHECK(p >= 0.0);
        CHECK(p <= 1.0);
        CHECK(p == probability(verifier, a, b));
        const auto query = verifier.query(a);
        const auto entry = verifier.entry_data(b);
        CHECK(verifier.probability(query, entry, cosine(a, b)) == p);
        if (!b.empty()) CHECK(llmfast::PairVerifier::entry_bytes(entry) > 0);
    }
}

TEST_CASE("PairVerifier: the guards gate (numbers, negation, names, swapped terms) gives 0") {
    const llmfast::PairVerifier verifier;
    CHECK(probability(verifier, "How do I book 3 tickets to Paris?", "How do I book 4 tickets to Paris?") == 0.0);
    CHECK(probability(verifier, "Is it not safe to eat raw eggs?", "Is it safe to eat raw eggs?") == 0.0);
    CHECK(probability(verifier, "第二季比第一季好看吗", "第一季比第二季好看吗") == 0.0);
    CHECK(probability(verifier, "Does Bob earn more than Alice?", "Does Alice earn more than Bob?") == 0.0);
}

TEST_CASE("PairVerifier: close paraphrases score above unrelated prompts") {
    const llmfast::PairVerifier verifier;
    const double paraphrase = probability(verifier, "how can I reset my password", "How do I reset my password?");
    const double unrelated = probability(verifier, "how can I reset my password", "What is the best pizza in Rome?");
    CHECK(paraphrase > unrelated);
    const double zh = probability(verifier, "今天北京天气怎么样", "今天北京天气如何");
    const double zh_unrelated = probability(verifier, "今天北京天气怎么样", "花呗怎么还款");
    CHECK(zh > zh_unrelated);
}

TEST_CASE("PairVerifier: operating points are monotone in delta; calibration identity is HashingEmbedder's") {
    const llmfast::PairVerifier verifier;
    CHECK(verifier.threshold_for(0.10) <= verifier.threshold_for(0.05));
    CHECK(verifier.threshold_for(0.05) <= verifier.threshold_for(0.02));
    CHECK(verifier.threshold_for(0.0001) == 2.0);  // below the smallest calibrated rate: no hit
    CHECK(llmfast::verifier_threshold(verifier, 0.05) == verifier.threshold_for(0.05));
    CHECK(verifier.calibration_identity() == llmfast::embedder_identity(llmfast::HashingEmbedder{}));
    CHECK(llmfast::verifier_calibrated_for(verifier, llmfast::embedder_identity(llmfast::HashingEmbedder{})));
    CHECK_FALSE(llmfast::verifier_calibrated_for(verifier, "some-other-model dim=768"));
}

TEST_CASE("PairVerifier: with use_similarity = false the given similarity is ignored") {
    const llmfast::PairVerifier lexical(llmfast::PairVerifierOptions{.use_similarity = false});
    const auto query = lexical.query("how can I reset my password");
    const auto entry = lexical.entry_data("How do I reset my password?");
    CHECK(lexical.probability(query, entry, 0.1F) == lexical.probability(query, entry, 0.99F));
    CHECK(lexical.calibration_identity().empty());
    CHECK(llmfast::verifier_calibrated_for(lexical, "some-other-model dim=768"));
    CHECK_FALSE(lexical.recommends_semantic_tier(0.05));
}

TEST_CASE("PairVerifier: features of a same-words-other-order pair flag the reordering") {
    const llmfast::PairVerifier verifier;
    std::array<float, llmfast::pair_feature_count> x{};
    verifier.features(verifier.query("第二季比第一季好看吗"), verifier.entry_data("第一季比第二季好看吗"), 1.0F, x);
    const auto at = [&](std::string_view name) {
        for (std::size_t i = 0; i < llmfast::pair_feature_count; ++i) {
            if (llmfast::pair_feature_names[i] == name) return x[i];
        }
        FAIL("no feature " << name);
        return 0.0F;
    };
    CHECK(at("token_dice") == 1.0F);
    CHECK(at("kendall_discord") > 0.0F);
    CHECK(at("same_bag_reordered") == 1.0F);
    CHECK(at("lcs_max") < 1.0F);
}

TEST_CASE("PairVerifier: difference items are what only one side has") {
    const llmfast::PairVerifier verifier;
    const auto same = llmfast::detail::pair_diff(verifier.query("how do I reset my password"),
                                                 verifier.entry_data("How do I reset my password?"));
    CHECK(same.na == 0);
    CHECK(same.nb == 0);
    // One substituted word: its token, the two bigrams around it and its code-point trigrams differ.
    const auto sub = llmfast::detail::pair_diff(verifier.query("how do I reset my password"),
                                                verifier.entry_data("how do I change my password"));
    CHECK(sub.na >= 3);
    CHECK(sub.nb >= 3);
    for (std::size_t i = 0; i < sub.na; ++i) CHECK(sub.a[i] < llmfast::detail::pair_embed_buckets);
    // Swapped roles swap the sides.
    const auto swapped = llmfast::detail::pair_diff(verifier.query("how do I change my password"),
                                                    verifier.entry_data("how do I reset my password"));
    CHECK(swapped.na == sub.nb);
    CHECK(swapped.nb == sub.na);
    CHECK(std::equal(swapped.a.begin(), swapped.a.begin() + static_cast<std::ptrdiff_t>(swapped.na), sub.b.begin()));
    // A long prompt is capped per side.
    std::string long_a, long_b;
    for (int i = 0; i < 200; ++i) {
        long_a += "alpha" + std::to_string(i) + " ";
        long_b += "beta" + std::to_string(i) + " ";
    }
    const auto capped = llmfast::detail::pair_diff(verifier.query(long_a), verifier.entry_data(long_b));
    CHECK(capped.na == llmfast::detail::pair_max_diff_items);
    CHECK(capped.nb == llmfast::detail::pair_max_diff_items);
}

TEST_CASE("PairVerifier: packed byte tables read little-endian, as the training script writes them") {
    const std::array<std::uint64_t, 2> words{0x0807060504030201ULL, 0x00000000000000FFULL};
    CHECK(llmfast::detail::pair_packed_byte(words, 0) == 0x01);
    CHECK(llmfast::detail::pair_packed_byte(words, 7) == 0x08);
    CHECK(llmfast::detail::pair_packed_byte(words, 8) == 0xFF);
    CHECK(static_cast<std::int8_t>(llmfast::detail::pair_packed_byte(words, 8)) == -1);
    const std::array<std::uint8_t, 2> bytes{16, 32};
    const llmfast::detail::PairIdfTable table{.bytes = bytes, .packed = {}};
    CHECK(table(0) == 1.0F);
    CHECK(table(1) == 2.0F);
    CHECK(llmfast::detail::PairIdfTable{}(12345) == 1.0F);
}
