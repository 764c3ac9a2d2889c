// benchmarks/cache_quality.cpp — how often would the semantic tier serve a wrong answer?
//
// Reads labelled prompt pairs (TSV: lang, label, source, text_a, text_b; label 1 = an answer cached
// for text_a is right for text_b) and reports, per source and overall, the precision and recall of
// *semantic-tier* hits (pairs whose texts differ after normalization; identical ones are exact-tier
// hits) over a range of similarity thresholds, with each hit guard on and off. Then it checks the
// figures through a real SemanticCache (insert text_a, look up text_b) at the defaults, and with
// PairVerifier as its verifier step at δ = 0.10 / 0.05 / 0.02 (scope = source; without and with the
// labels reported back through `report`).
//
//     cache_quality pairs-dev.tsv   (a TSV: lang, label, source, text_a, text_b)
//     cache_quality --quick            # built-in sample, for CI
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // g++ 12 bug 105593 in xxhash's AVX-512 path (-march=native)
#endif
#include <llmfast/hashing_embedder.hpp>
#include <llmfast/hit_guards.hpp>
#include <llmfast/pair_verifier.hpp>
#include <llmfast/semantic_cache.hpp>

#include "bench_common.hpp"
#include "labelled_pairs.hpp"

#include <array>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace {

using Pair = llmfast::bench::LabelledPair;

struct Scored {
    const Pair* pair;
    float similarity;
    llmfast::GuardSignature sig_a, sig_b;
};

struct Count {
    int hits = 0, true_hits = 0, positives = 0;
    [[nodiscard]] double precision() const { return hits ? static_cast<double>(true_hits) / hits : 0.0; }
    [[nodiscard]] double recall() const { return positives ? static_cast<double>(true_hits) / positives : 0.0; }
};

struct GuardConfig {
    const char* name;
    llmfast::HitGuards guards;
};

Count evaluate(const std::vector<Scored>& scored, const std::string& source, float threshold, const llmfast::HitGuards& guards) {
    Count count;
    for (const Scored& s : scored) {
        if (!source.empty() && s.pair->source != source) continue;
        count.positives += s.pair->label;
        if (s.similarity < threshold) continue;
        if (llmfast::check_hit_guards(s.sig_b, s.sig_a, guards) != llmfast::GuardVeto::None) continue;
        ++count.hits;
        count.true_hits += s.pair->label;
    }
    return count;
}

}  // namespace

int main(int argc, char** argv) {
    const auto options = llmfast::bench::parse_options(argc, argv, "[pairs.tsv]");
    std::vector<Pair> pairs;
    if (!options.positional.empty()) {
        pairs = llmfast::bench::read_labelled_pairs(options.positional[0]);
    } else if (options.quick) {
        pairs = llmfast::bench::builtin_pairs_sample();
    } else {
        std::fprintf(stderr, "usage: cache_quality [--quick] pairs.tsv (a TSV with columns lang, label, source, text_a, text_b)\n");
        return 2;
    }

    const llmfast::HashingEmbedder embedder;
    const std::size_t dim = embedder.dimension();
    std::vector<float> va(dim), vb(dim);
    std::vector<Scored> scored;
    std::map<std::string, int> exact_by_source;
    std::vector<std::string> sources;
    for (const Pair& pair : pairs) {
        if (std::find(sources.begin(), sources.end(), pair.source) == sources.end()) sources.push_back(pair.source);
        if (llmfast::detail::normalize_prompt(pair.a) == llmfast::detail::normalize_prompt(pair.b)) {
            ++exact_by_source[pair.source];  // the exact tier's business, not the semantic tier's
            continue;
        }
        embedder.embed(pair.a, va);
        embedder.embed(pair.b, vb);
        double dot = 0;
        for (std::size_t i = 0; i < dim; ++i) dot += static_cast<double>(va[i]) * static_cast<double>(vb[i]);
        scored.push_back({&pair, static_cast<float>(dot), llmfast::make_guard_signature(pair.a), llmfast::make_guard_signature(pair.b)});
    }
    std::printf("pairs: %zu, of which %zu differ after normalization (semantic tier)\n", pairs.size(), scored.size());
    for (const auto& [source, n] : exact_by_source) std::printf("  %s: %d pairs identical after normalization (exact tier)\n", source.c_str(), n);

    const llmfast::HitGuards none{.numbers = false, .negation = false, .latin_names = false, .term_order = false};
    const std::vector<GuardConfig> configs{
        {"no guards", none},
        {"numbers only", {.numbers = true, .negation = false, .latin_names = false, .term_order = false}},
        {"negation only", {.numbers = false, .negation = true, .latin_names = false, .term_order = false}},
        {"latin names only", {.numbers = false, .negation = false, .latin_names = true, .term_order = false}},
        {"term order only", {.numbers = false, .negation = false, .latin_names = false, .term_order = true}},
        {"all guards", llmfast::HitGuards{}},
    };
    const std::vector<float> thresholds{0.5F, 0.6F, 0.7F, 0.75F, 0.8F, 0.85F, 0.9F, 0.95F, 0.98F};

    std::vector<std::string> groups{""};
    groups.insert(groups.end(), sources.begin(), sources.end());
    for (const std::string& group : groups) {
        std::printf("\n== semantic-tier precision / recall: %s ==\n%-18s", group.empty() ? "overall" : group.c_str(), "threshold");
        for (const float t : thresholds) std::printf(" %11.2f", static_cast<double>(t));
        std::printf("\n");
        for (const GuardConfig& config : configs) {
            std::printf("%-18s", config.name);
            for (const float t : thresholds) {
                const Count c = evaluate(scored, group, t, config.guards);
                if (c.hits == 0) {
                    std::printf(" %11s", "  -  /0.00");
                } else {
                    std::printf("  %4.2f/%4.2f", c.precision(), c.recall());
                }
            }
            std::printf("\n");
        }
    }

    // What each guard vetoes, by label (a veto of a label-0 pair is a wrong answer avoided; of a
    // label-1 pair, a right answer lost), among pairs at or above 0.8.
    std::printf("\n== guard vetoes among pairs with similarity >= 0.80 (each guard alone) ==\n");
    for (std::size_t i = 1; i + 1 < configs.size(); ++i) {
        int wrong_avoided = 0, right_lost = 0;
        for (const Scored& s : scored) {
            if (s.similarity < 0.8F) continue;
            if (llmfast::check_hit_guards(s.sig_b, s.sig_a, configs[i].guards) == llmfast::GuardVeto::None) continue;
            (s.pair->label ? right_lost : wrong_avoided)++;
        }
        std::printf("%-18s wrong answers avoided %5d   right answers lost %5d\n", configs[i].name, wrong_avoided, right_lost);
    }

    // The defaults, measured through the cache itself: insert text_a, look up text_b.
    // One cache for the whole run (scope = source: each source's feedback is its own); each pair's
    // text_a is inserted, text_b looked up, then text_a erased again so pairs do not see each other.
    const auto through_cache = [&]<class Cache>(Cache& cache, const char* what, bool feedback = false) {
        Count overall;
        int exact_hits = 0;
        for (const Pair& pair : pairs) {
            cache.insert(pair.a, pair.source, "answer");
            const auto result = cache.lookup(pair.b, pair.source);
            cache.erase(pair.a, pair.source);
            if (result.match == llmfast::MatchKind::Exact) {
                ++exact_hits;
                continue;
            }
            overall.positives += pair.label;
            if (result.match == llmfast::MatchKind::Semantic) {
                ++overall.hits;
                overall.true_hits += pair.label;
                if (feedback) cache.report(result, pair.label == 1);
            }
        }
        std::printf("%-52s semantic hits %5d  precision %.3f  recall %.3f  (exact-tier hits %d)\n", what, overall.hits,
                    overall.precision(), overall.recall(), exact_hits);
    };
    std::printf("\n== through SemanticCache<HashingEmbedder> ==\n");
    {
        llmfast::SemanticCache<llmfast::HashingEmbedder> cache;
        through_cache(cache, "defaults (semantic tier Auto = off for HashingEmbedder)");
    }
    llmfast::SemanticCacheOptions opted_in;
    opted_in.semantic_tier = llmfast::SemanticTier::On;
    {
        llmfast::SemanticCache<llmfast::HashingEmbedder> cache(llmfast::HashingEmbedder{}, opted_in);
        through_cache(cache, fmt::format("opted in: threshold {:.2f}, all guards", static_cast<double>(opted_in.similarity_threshold)).c_str());
    }
    using Verified = llmfast::SemanticCache<llmfast::HashingEmbedder, llmfast::FlatIndex, llmfast::WallClock, llmfast::LruPolicy, llmfast::NoSharedTier, llmfast::PairVerifier>;
    {
        Verified cache;
        through_cache(cache, fmt::format("PairVerifier, defaults (Auto: {})", cache.semantic_enabled() ? "on" : "off").c_str());
    }
    for (const float floor : {0.9F, 0.5F}) {
        for (const double delta : {0.10, 0.05, 0.02}) {
            for (const bool feedback : {false, true}) {
                llmfast::SemanticCacheOptions verified = opted_in;
                verified.similarity_threshold = floor;
                verified.max_wrong_hit_rate = delta;
                Verified cache(llmfast::HashingEmbedder{}, verified);
                through_cache(cache,
                              fmt::format("PairVerifier, threshold {:.1f}, δ={:.2f}{}", static_cast<double>(floor), delta,
                                          feedback ? ", labels reported" : "")
                                  .c_str(),
                              feedback);
                if (feedback) {
                    const auto stats = cache.stats();
                    std::printf("%-52s reported %llu (%llu wrong), threshold raises %llu, exhausted scopes %zu\n", "",
                                static_cast<unsigned long long>(stats.reported_hits), static_cast<unsigned long long>(stats.reported_wrong),
                                static_cast<unsigned long long>(stats.threshold_raises), stats.exhausted_scopes);
                }
            }
        }
    }
    return 0;
}
