// benchmarks/verifier_quality.cpp — precision / recall of semantic-tier hits with PairVerifier at
// δ = 0.10 / 0.05 / 0.02, next to the hit guards alone at thresholds 0.90 / 0.95 / 0.98 (as
// cache_quality computes them), the guards' best recall at the verifier's precision, the wrong-hit
// rate observed when the pairs stream through a WrongHitMonitor with their labels as feedback, and
// the cost of verifying one candidate (prepared form: the cached prompt analysed at insertion; the
// new prompt's analysis, done once per lookup, timed apart from the per-candidate step).
//
// Then the cache-level run: the cache's verifier step itself (detail::VerifiedStep<PairVerifier>,
// what SemanticCache<..., PairVerifier> runs per candidate, with a WrongHitMonitor per scope = per
// source) behind the cache's similarity floor, next to today's step (detail::GuardVerifier), with and
// without the labels fed back through `report`; and the cost of the whole semantic lookup (embed,
// normalize, FlatIndex top-4 search over the scope's entries, the step per candidate under a lock)
// with each step, interleaved in one run.
//
//     verifier_quality pairs-dev.tsv [validation.tsv ...]   (TSVs: lang, label, source, text_a, text_b)
//         validation.tsv: scripts/train_verifier.py --write-validation validation.tsv (the split held
//         out of the training data, without the synthetic pairs)
//     verifier_quality --quick                               # built-in sample, for CI
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // g++ 12 bug 105593 in xxhash's AVX-512 path (-march=native)
#endif
#include <llmfast/pair_verifier.hpp>
#include <llmfast/detail/verified_step.hpp>
#include <llmfast/flat_index.hpp>
#include <llmfast/hashing_embedder.hpp>
#include <llmfast/hit_guards.hpp>
#include <llmfast/wrong_hit_monitor.hpp>

#include "bench_common.hpp"
#include "labelled_pairs.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
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


// ---- cache level: the verifier step as SemanticCache runs it ----

using PairStep = llmfast::detail::VerifiedStep<llmfast::PairVerifier>;
using GuardStep = llmfast::detail::GuardVerifier;

float cosine(const llmfast::HashingEmbedder& embedder, const std::string& a, const std::string& b) {
    std::vector<float> va(embedder.dimension()), vb(embedder.dimension());
    embedder.embed(a, va);
    embedder.embed(b, vb);
    double dot = 0;
    for (std::size_t i = 0; i < va.size(); ++i) dot += static_cast<double>(va[i]) * static_cast<double>(vb[i]);
    return static_cast<float>(dot);
}

struct StreamCount {
    std::map<std::string, Count> by_source;
    Count overall;
    int late_hits = 0, late_wrong = 0;  // the stream's last quarter
};

// Insert text_a, look up text_b, one pair at a time (as cache_quality's run through SemanticCache),
// in a seeded shuffled order; the scope is the pair's source. `feedback`: each served hit's label is
// reported to its scope (the application learning the truth).
template <class Step, class MakeStep>
StreamCount stream_through(const std::vector<const Pair*>& pairs, const std::vector<float>& similarity, float floor, bool feedback,
                           MakeStep make_step) {
    Step step = make_step();
    std::vector<std::size_t> order(pairs.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::mt19937_64 rng(17);
    std::shuffle(order.begin(), order.end(), rng);
    StreamCount out;
    for (std::size_t n = 0; n < order.size(); ++n) {
        const Pair& pair = *pairs[order[n]];
        Count& source = out.by_source[pair.source];
        source.positives += pair.label;
        out.overall.positives += pair.label;
        if (!(similarity[order[n]] >= floor)) continue;
        const auto entry = step.entry_data(pair.a);
        auto query = Step::query(pair.b);
        step.prepare(query);
        const auto state = step.scope_state(pair.source);
        const llmfast::detail::StepVerdict verdict = step.accept(query, entry, similarity[order[n]], state.get());
        if (!verdict) continue;
        ++source.hits;
        ++out.overall.hits;
        source.true_hits += pair.label;
        out.overall.true_hits += pair.label;
        if (n >= order.size() * 3 / 4) {
            ++out.late_hits;
            out.late_wrong += pair.label ? 0 : 1;
        }
        if (feedback) step.report(state, verdict.probability, pair.label == 1);
    }
    return out;
}

// The semantic lookup of SemanticCache::lookup_semantic + search_semantic, with `Step` as its
// verifier step: embed, normalize, search the scope's index, then per candidate above the floor
// prepare (outside the lock) and accept (under the shard's lock). Returns whether it served a hit.
template <class Step>
bool semantic_lookup(Step& step, const llmfast::HashingEmbedder& embedder, const llmfast::FlatIndex& index,
                     const std::vector<typename Step::EntryData>& entries, std::mutex& shard, const std::string& prompt, float floor,
                     std::size_t& verified) {
    thread_local std::vector<float> vector;
    vector.resize(embedder.dimension());
    embedder.embed(prompt, vector);
    double norm = 0;
    for (const float x : vector) norm += static_cast<double>(x) * static_cast<double>(x);
    if (!(norm > 0)) return false;
    const double inv = 1.0 / std::sqrt(norm);
    for (float& x : vector) x = static_cast<float>(static_cast<double>(x) * inv);
    const std::vector<llmfast::SearchHit> candidates = index.search(vector, 4);
    typename Step::Query query = Step::query(prompt);
    const auto state = step.scope_state("scope");
    for (const llmfast::SearchHit& candidate : candidates) {
        if (!(candidate.score >= floor)) break;
        step.prepare(query);
        ++verified;
        std::lock_guard lock(shard);
        if (step.accept(query, entries[candidate.id], candidate.score, state.get())) return true;
    }
    return false;
}

void cache_level(const std::string& name, const std::vector<Pair>& all, bool quick) {
    const llmfast::HashingEmbedder embedder;
    const std::string identity = embedder.identity();
    std::vector<const Pair*> pairs;
    std::vector<float> similarity;
    std::vector<std::string> sources;
    for (const Pair& pair : all) {
        if (llmfast::detail::normalize_prompt(pair.a) == llmfast::detail::normalize_prompt(pair.b)) continue;  // exact tier
        if (std::find(sources.begin(), sources.end(), pair.source) == sources.end()) sources.push_back(pair.source);
        pairs.push_back(&pair);
        similarity.push_back(cosine(embedder, pair.a, pair.b));
    }
    std::printf("== %s: cache level (the verifier step SemanticCache runs; scope = source) ==\n", name.c_str());
    const std::array<double, 3> deltas{0.10, 0.05, 0.02};
    const std::array<float, 3> guard_floors{0.90F, 0.95F, 0.98F};
    const std::array<float, 2> step_floors{0.90F, 0.50F};  // the cache's default similarity_threshold, and a low floor
    auto guards = [&](float floor) {
        return stream_through<GuardStep>(pairs, similarity, floor, false,
                                         [&] { return GuardStep(llmfast::GuardsOnly{}, llmfast::HitGuards{}, 0.05, identity); });
    };
    auto verified_run = [&](double delta, float floor, bool feedback) {
        return stream_through<PairStep>(pairs, similarity, floor, feedback, [&] {
            return PairStep(llmfast::PairVerifier{}, llmfast::HitGuards{}, delta, identity);
        });
    };
    // PairStep is not movable (it owns mutexes): stream_through builds it from the factory in place.
    std::vector<std::pair<std::string, StreamCount>> columns;
    for (const float floor : step_floors) {
        for (const double delta : deltas) {
            columns.emplace_back(fmt::format("δ={:.2f} s>={:.1f}", delta, static_cast<double>(floor)), verified_run(delta, floor, false));
        }
    }
    for (const float floor : step_floors) {
        for (const double delta : deltas) {
            columns.emplace_back(fmt::format("δ={:.2f} s>={:.1f} fb", delta, static_cast<double>(floor)), verified_run(delta, floor, true));
        }
    }
    for (const float floor : guard_floors) columns.emplace_back(fmt::format("guards {:.2f}", static_cast<double>(floor)), guards(floor));
    std::printf("precision/recall of served semantic hits (s>=: the cache's similarity_threshold; fb: labels reported as feedback)\n");
    for (std::size_t first = 0; first < columns.size(); first += 6) {
        const std::size_t last = std::min(columns.size(), first + 6);
        std::printf("%-16s", "");
        for (std::size_t c = first; c < last; ++c) std::printf(" %-18s", columns[c].first.c_str());
        std::printf("\n");
        std::vector<std::string> groups{""};
        groups.insert(groups.end(), sources.begin(), sources.end());
        for (const std::string& group : groups) {
            std::printf("%-16s", group.empty() ? "overall" : group.c_str());
            for (std::size_t c = first; c < last; ++c) {
                const StreamCount& sc = columns[c].second;
                const Count& count = group.empty() ? sc.overall : sc.by_source.at(group);
                std::printf(" %-18s", (count.hits ? fmt::format("{}/{} ({})", cell(count).substr(0, 5), cell(count).substr(6), count.hits)
                                                  : std::string("-/0.000 (0)"))
                                          .c_str());
            }
            std::printf("\n");
        }
        std::printf("%-16s", "wrong rate all");
        for (std::size_t c = first; c < last; ++c) {
            const Count& o = columns[c].second.overall;
            std::printf(" %-18s", o.hits ? fmt::format("{:.3f}", 1.0 - o.precision()).c_str() : "-");
        }
        std::printf("\n%-16s", "wrong rate late");
        for (std::size_t c = first; c < last; ++c) {
            const StreamCount& sc = columns[c].second;
            std::printf(" %-18s", sc.late_hits ? fmt::format("{:.3f} ({})", static_cast<double>(sc.late_wrong) / sc.late_hits, sc.late_hits).c_str()
                                               : "- (0)");
        }
        std::printf("\n\n");
    }

    // Cost of the whole semantic lookup: the scope holds the first 100 (or 5,000) text_a, the lookups
    // are their pairs' text_b (so each finds its own pair's prompt among the candidates); today's step (guards, at the cache's default floor 0.9) vs the verified step
    // (PairVerifier at floors 0.9 and 0.5), interleaved.
    const int rounds = quick ? 2 : 9;
    for (const std::size_t wanted : {std::size_t{100}, std::size_t{5000}}) {
        const std::size_t n = std::min(wanted, pairs.size());
        if (wanted != 100 && n <= 100) break;  // already measured at this size
        llmfast::FlatIndex index(embedder.dimension());
        GuardStep guard_step(llmfast::GuardsOnly{}, llmfast::HitGuards{}, 0.05, identity);
        PairStep pair_step(llmfast::PairVerifier{}, llmfast::HitGuards{}, 0.05, identity);
        std::vector<GuardStep::EntryData> guard_entries;
        std::vector<PairStep::EntryData> pair_entries;
        std::vector<float> vector(embedder.dimension());
        for (std::size_t i = 0; i < n; ++i) {
            embedder.embed(pairs[i]->a, vector);
            double norm = 0;
            for (const float x : vector) norm += static_cast<double>(x) * static_cast<double>(x);
            for (float& x : vector) x = static_cast<float>(static_cast<double>(x) / std::sqrt(norm > 0 ? norm : 1.0));
            index.add(i, vector);
            guard_entries.push_back(guard_step.entry_data(pairs[i]->a));
            pair_entries.push_back(pair_step.entry_data(pairs[i]->a));
        }
        const std::size_t lookups = quick ? 50 : 1000;
        std::mutex shard;
        std::size_t served = 0, verified = 0;
        std::map<std::string, std::pair<std::size_t, std::size_t>> per_lookup;  // (served, candidates verified) per configuration
        auto time_guards = [&] {
            served = verified = 0;
            const double start = llmfast::bench::now_seconds();
            for (std::size_t i = 0; i < lookups; ++i)
                served += semantic_lookup(guard_step, embedder, index, guard_entries, shard, pairs[i % n]->b, 0.9F, verified);
            const double us = (llmfast::bench::now_seconds() - start) * 1e6 / static_cast<double>(lookups);
            per_lookup["guards 0.9"] = {served, verified};
            return us;
        };
        auto time_step = [&](float floor) {
            return [&, floor] {
                served = verified = 0;
                const double start = llmfast::bench::now_seconds();
                for (std::size_t i = 0; i < lookups; ++i)
                    served += semantic_lookup(pair_step, embedder, index, pair_entries, shard, pairs[i % n]->b, floor, verified);
                const double us = (llmfast::bench::now_seconds() - start) * 1e6 / static_cast<double>(lookups);
                per_lookup[fmt::format("verified {:.1f}", static_cast<double>(floor))] = {served, verified};
                return us;
            };
        };
        llmfast::bench::Table table(fmt::format("{}: whole semantic lookup, {} cached prompts in the scope, {} lookups (ours: PairVerifier step, "
                                                "baseline: guards at floor 0.9)", name, n, lookups));
        for (const float floor : {0.9F, 0.5F}) {
            const auto [ours, base] = llmfast::bench::interleave(rounds, time_step(floor), time_guards);
            table.add(fmt::format("lookup, verified step at floor {:.1f}", static_cast<double>(floor)), ours, base, "µs", llmfast::bench::Better::Lower);
        }
        table.print();
        for (const auto& [what, counts] : per_lookup) {
            std::printf("  %-14s served %.2f of the lookups, %.2f candidates verified per lookup\n", what.c_str(),
                        static_cast<double>(counts.first) / static_cast<double>(lookups), static_cast<double>(counts.second) / static_cast<double>(lookups));
        }
        std::printf("(ratio > 0.50x meets the goal: the lookup with the step within 2x of today's)\n\n");
    }
}

}  // namespace

int main(int argc, char** argv) {
    const auto options = llmfast::bench::parse_options(argc, argv, "[pairs.tsv ...]");
    if (!options.positional.empty()) {
        for (const std::string& path : options.positional) {
            const std::vector<Pair> pairs = llmfast::bench::read_labelled_pairs(path);
            evaluate(path, pairs);
            cache_level(path, pairs, options.quick);
        }
    } else if (options.quick) {
        const std::vector<Pair> sample = llmfast::bench::builtin_pairs_sample();
        evaluate("built-in sample", sample);
        cache_level("built-in sample", sample, true);
    } else {
        std::fprintf(stderr, "usage: verifier_quality [--quick] pairs.tsv [more.tsv ...]\n");
        return 2;
    }
    std::printf("shipped model: dev met precision >= 0.95 on every dev source at δ=0.05: %s\n",
                llmfast::PairVerifier{}.recommends_semantic_tier(0.05) ? "yes" : "no");
    return 0;
}
