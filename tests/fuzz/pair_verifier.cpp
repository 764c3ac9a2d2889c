// Fuzzes PairVerifier on arbitrary byte pairs (UTF-8 or not): the probability is finite and in
// [0, 1]; the plain form, the prepared form and a second call agree exactly; a pair the gate's guards
// veto gets 0; with use_similarity = false the given similarity does not matter; every feature is
// finite; every difference item names a row of the embedding table; a prompt against itself has no
// difference items. No symmetry is asserted: the model is not symmetric (the new prompt and the cached
// one play different roles in some features, e.g. the unshared-token counts per side).
//
// Input: byte 0 picks the similarity (0..255 -> [-1, 1], 255 -> NaN), the rest is split at the first
// 0x00 byte into the new prompt and the cached one (no 0x00: the cached prompt is empty).
#include <llmfast/pair_verifier.hpp>

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string_view>

namespace {

void require(bool ok) {
    if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    static const llmfast::PairVerifier verifier;
    static const llmfast::PairVerifier lexical(llmfast::PairVerifierOptions{.use_similarity = false});
    const float similarity = data[0] == 255 ? std::numeric_limits<float>::quiet_NaN()
                                            : static_cast<float>(data[0]) / 127.0F - 1.0F;
    const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
    const std::size_t cut = rest.find('\0');
    const std::string_view new_prompt = rest.substr(0, cut);
    const std::string_view cached = cut == std::string_view::npos ? std::string_view() : rest.substr(cut + 1);

    const auto query = verifier.query(new_prompt);
    const auto entry = verifier.entry_data(cached);
    const double p = verifier.probability(query, entry, similarity);
    require(std::isfinite(p) && p >= 0.0 && p <= 1.0);
    require(verifier.probability(new_prompt, cached, similarity) == p);
    require(verifier.probability(query, entry, similarity) == p);
    if (llmfast::check_hit_guards(query.guards, entry.guards, verifier.options().guards) != llmfast::GuardVeto::None) require(p == 0.0);

    const double q1 = lexical.probability(query, entry, similarity);
    const double q2 = lexical.probability(query, entry, 0.5F);
    require(std::isfinite(q1) && q1 >= 0.0 && q1 <= 1.0 && q1 == q2);

    std::array<float, llmfast::pair_feature_count> x{};
    verifier.features(query, entry, std::isfinite(similarity) ? similarity : 0.0F, x);
    for (const float v : x) require(std::isfinite(v));

    const llmfast::detail::PairDiff diff = llmfast::detail::pair_diff(query, entry);
    require(diff.na <= llmfast::detail::pair_max_diff_items && diff.nb <= llmfast::detail::pair_max_diff_items);
    for (std::size_t i = 0; i < diff.na; ++i) require(diff.a[i] < llmfast::detail::pair_embed_buckets);
    for (std::size_t i = 0; i < diff.nb; ++i) require(diff.b[i] < llmfast::detail::pair_embed_buckets);
    // The same prompt on both sides differs in nothing.
    const llmfast::detail::PairDiff self = llmfast::detail::pair_diff(query, verifier.entry_data(new_prompt));
    require(self.na == 0 && self.nb == 0);
    return 0;
}
