// benchmarks/verifier_quality.cpp — precision / recall of semantic-tier hits with PairVerifier at
// δ = 0.10 / 0.05 / 0.02, next to the hit guards alone at thresholds 0.90 / 0.95 / 0.98 (as
// cache_quality computes them), the guards' best recall at the verifier's precision, the wrong-hit
// rate observed when the pairs stream through a WrongHitMonitor with their labels as feedback, and
// the cost of verifying one candidate (prepared form: the cached prompt analysed at insertion; the
// new prompt's analysis, done once per lookup, timed apart from the per-candidate step).
//
//     verifier_quality pairs-dev.tsv [validation.tsv ...]   (TSVs: lang, label, source, text_a, text_b)
//         validation.tsv: scripts/train_verifier.py --write-validation validation.tsv (the split held
//         out of the training data, without the synthetic pairs)
//     verifier_quality --quick                               # built-in sample, for CI
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // g++ 12 bug 105593 in xxhash's AVX-512 path (-march=native)
#endif
#include <llmfast/pair_verifier.hpp>
#include <llmfast/hashing_embedder.hpp>
#include <llmfast/hit_guards.hpp>
#include <llmfast/wrong_hit_monitor.hpp>

#include "bench_common.hpp"
#include "labelled_pairs.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <fstream>
#include <string>
#include <vector>

namespace {

using Pair = llmfast::bench::LabelledPair;

struct Scored {
    const Pair* pair;
    float similarity;
    bool guards_pass;
    double p;
};

struct Count {
    int hits = 0, true_hits = 0, positives = 0;
    [[nodiscard]] double precision() const { return hits ? static_cast<double>(true_hits) / hits : 0.0; }
    [[nodiscard]] double recall() const { return positives ? static_cast<double>(true_hits) / positives : 0.0; }
};

template <class Accept>
Count count(const std::vector<Scored>& scored, const std::string& group, Accept accept) {
    Count c;
    for (const Scored& s : scored) {
        if (!group.empty() && s.pair->source != group) continue;
        c.positives += s.pair->label;
        if (!accept(s)) continue;
        ++c.hits;
        c.true_hits += s.pair->label;
    }
    return c;
}

std::string cell(const Count& c) { return c.hits ? fmt::format("{:.3f}/{:.3f}", c.precision(), c.recall()) : std::string("  -  /0.000"); }


void evaluate(const std::string& name, const std::vector<Pair>& pairs) {
    const llmfast::HashingEmbedder embedder;
    const llmfast::PairVerifier verifier;
    const llmfast::HitGuards guards{};
    std::vector<float> va(embedder.dimension()), vb(embedder.dimension());
    std::vector<Scored> scored;
    std::vector<std::string> sources;
    double query_seconds = 0, candidate_seconds = 0;
    std::size_t verify_calls = 0;
    for (const Pair& pair : pairs) {
        if (std::find(sources.begin(), sources.end(), pair.source) == sources.end()) sources.push_back(pair.source);
        if (llmfast::detail::normalize_prompt(pair.a) == llmfast::detail::normalize_prompt(pair.b)) continue;  // exact tier
        embedder.embed(pair.a, va);
        embedder.embed(pair.b, vb);
        double dot = 0;
        for (std::size_t i = 0; i < va.size(); ++i) dot += static_cast<double>(va[i]) * static_cast<double>(vb[i]);
        const auto sig_a = llmfast::make_guard_signature(pair.a);
        const auto sig_b = llmfast::make_guard_signature(pair.b);
        const bool pass = llmfast::check_hit_guards(sig_b, sig_a, guards) == llmfast::GuardVeto::None;
        const auto entry = verifier.entry_data(pair.a);  // at insertion, not timed
        const auto start = std::chrono::steady_clock::now();
        const auto query = verifier.query(pair.b);  // once per lookup
        const auto analysed = std::chrono::steady_clock::now();
        const double p = verifier.probability(query, entry, static_cast<float>(dot));  // per candidate
        const auto done = std::chrono::steady_clock::now();
        query_seconds += std::chrono::duration<double>(analysed - start).count();
        candidate_seconds += std::chrono::duration<double>(done - analysed).count();
        ++verify_calls;
        scored.push_back({&pair, static_cast<float>(dot), pass, p});
    }
    std::printf("== %s ==\npairs: %zu, semantic tier (differ after normalization): %zu\n", name.c_str(), pairs.size(), scored.size());
    const std::array<double, 3> deltas{0.10, 0.05, 0.02};
    const std::array<float, 3> thresholds{0.90F, 0.95F, 0.98F};
    std::printf("operating points: δ=0.10 -> p>=%.4f, δ=0.05 -> p>=%.4f, δ=0.02 -> p>=%.4f\n\n", verifier.threshold_for(0.10),
                verifier.threshold_for(0.05), verifier.threshold_for(0.02));
    std::printf("precision/recall      %-13s %-13s %-13s | %-13s %-13s %-13s | guards' recall at the verifier's precision (δ=0.05)\n",
                "verif δ=0.10", "verif δ=0.05", "verif δ=0.02", "guards 0.90", "guards 0.95", "guards 0.98");
    std::vector<std::string> groups{""};
    groups.insert(groups.end(), sources.begin(), sources.end());
    for (const std::string& group : groups) {
        std::printf("%-20s", group.empty() ? "overall" : group.c_str());
        Count at05;
        for (const double delta : deltas) {
            const double t = verifier.threshold_for(delta);
            const Count c = count(scored, group, [&](const Scored& s) { return s.p >= t; });
            if (delta == 0.05) at05 = c;
            std::printf("  %-12s", cell(c).c_str());
        }
        std::printf(" |");
        for (const float t : thresholds) {
            std::printf("  %-12s", cell(count(scored, group, [&](const Scored& s) { return s.guards_pass && s.similarity >= t; })).c_str());
        }
        // The guards at the threshold (0.50 .. 0.995) with the best recall at precision >= the verifier's.
        double best = 0;
        for (int k = 50; k <= 199; ++k) {
            const float t = static_cast<float>(k) / 200.0F;
            const Count g = count(scored, group, [&](const Scored& s) { return s.guards_pass && s.similarity >= t; });
            if (g.hits > 0 && at05.hits > 0 && g.precision() >= at05.precision()) best = std::max(best, g.recall());
        }
        if (at05.hits == 0) {
            std::printf(" | verifier has no hits\n");
        } else {
            std::printf(" | guards %.3f vs verifier %.3f (%s)\n", best, at05.recall(),
                        best > 0 ? fmt::format("{:.1f}x", at05.recall() / best).c_str() : "guards: none");
        }
    }
    // The pairs stream through a WrongHitMonitor per δ: served when p >= its threshold, label as feedback.
    std::printf("\nobserved wrong-hit rate (1 - precision of served hits), streaming the pairs with their labels as feedback:\n");
    for (const double delta : deltas) {
        llmfast::WrongHitMonitor monitor({.max_wrong_hit_rate = delta, .base_threshold = verifier.threshold_for(delta)});
        int served = 0, wrong = 0;
        for (const Scored& s : scored) {
            if (s.p < monitor.threshold()) continue;
            ++served;
            wrong += s.pair->label ? 0 : 1;
            monitor.report(s.p, s.pair->label == 1);
        }
        const Count fixed = count(scored, "", [&](const Scored& s) { return s.p >= verifier.threshold_for(delta); });
        std::printf("  δ=%.2f  shipped point: %.3f (%d hits)   with feedback: %.3f (%d hits, final threshold %.4f, %llu raises%s)\n", delta,
                    fixed.hits ? 1.0 - fixed.precision() : 0.0, fixed.hits, served ? static_cast<double>(wrong) / served : 0.0, served,
                    monitor.threshold(), static_cast<unsigned long long>(monitor.stats().raises), monitor.stats().exhausted ? ", exhausted" : "");
    }
    const double calls = verify_calls ? static_cast<double>(verify_calls) : 1.0;
    std::printf("\nverify: new prompt's analysis (once per lookup) %.2f µs + per candidate %.2f µs mean over %zu "
                "(one-candidate lookup %.2f µs)\n\n",
                query_seconds * 1e6 / calls, candidate_seconds * 1e6 / calls, verify_calls,
                (query_seconds + candidate_seconds) * 1e6 / calls);
}

}  // namespace

int main(int argc, char** argv) {
    const auto options = llmfast::bench::parse_options(argc, argv, "[pairs.tsv ...]");
    if (!options.positional.empty()) {
        for (const std::string& path : options.positional) evaluate(path, llmfast::bench::read_labelled_pairs(path));
    } else if (options.quick) {
        evaluate("built-in sample", llmfast::bench::builtin_pairs_sample());
    } else {
        std::fprintf(stderr, "usage: verifier_quality [--quick] pairs.tsv [more.tsv ...]\n");
        return 2;
    }
    std::printf("shipped model: dev met precision >= 0.95 on every dev source at δ=0.05: %s\n",
                llmfast::PairVerifier{}.recommends_semantic_tier(0.05) ? "yes" : "no");
    return 0;
}
