// benchmarks/calibrate.cpp — llmfast-calibrate: choose `similarity_threshold` for YOUR embedder on
// YOUR labelled pairs, instead of guessing.
//
// Reads labelled prompt pairs (TSV with a header line: lang, label, source, text_a, text_b; label 1 =
// an answer cached for text_a is right for text_b), embeds both texts of every pair whose texts differ
// after normalization (identical ones are exact-tier hits, not the semantic tier's business), and
// prints, per threshold, the precision and recall of semantic hits with the cache's default hit
// guards applied (as the cache would serve them), then the lowest threshold whose precision reaches
// the target, and its recall.
//
//     llmfast-calibrate --pairs my-pairs.tsv                                   # built-in HashingEmbedder
//     llmfast-calibrate --pairs my-pairs.tsv --embedder-url http://127.0.0.1:8080/v1
//                       --model bge-m3 --dimension 1024 [--api-key-env OPENAI_API_KEY]
//                       [--target-precision 0.95] [--no-guards]          (one command line)
//     llmfast-calibrate --quick                                                # built-in sample (CI)
//
// The HTTP embedder is llmfast::OpenAiEmbedder (any OpenAI-compatible /embeddings server); texts go
// in batches of 64 per request. Exit status: 0, or 2 for bad arguments / an unreadable file / an
// embedder error (the message says which).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // g++ 12 bug 105593 in xxhash's AVX-512 path (-march=native)
#endif
#include <llmfast/curl_transport.hpp>
#include <llmfast/detail/cache_text.hpp>
#include <llmfast/hashing_embedder.hpp>
#include <llmfast/hit_guards.hpp>
#include <llmfast/openai_embedder.hpp>

#include "labelled_pairs.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct Scored {
    int label;
    float similarity;
    bool vetoed;  // by the default hit guards
};

// Embeds every text (in batches) and returns the cosine of each pair (vectors are normalized here).
std::vector<float> similarities(const std::vector<const llmfast::bench::LabelledPair*>& pairs, std::size_t dim,
                                const std::function<void(std::span<const std::string_view>, std::span<float>)>& embed_batch) {
    std::vector<float> out;
    constexpr std::size_t batch = 64;
    std::vector<std::string_view> texts;
    std::vector<float> rows;
    for (std::size_t first = 0; first < pairs.size(); first += batch / 2) {
        const std::size_t n = std::min(batch / 2, pairs.size() - first);
        texts.clear();
        for (std::size_t i = 0; i < n; ++i) {
            texts.push_back(pairs[first + i]->a);
            texts.push_back(pairs[first + i]->b);
        }
        rows.assign(texts.size() * dim, 0.0F);
        embed_batch(texts, rows);
        for (std::size_t i = 0; i < n; ++i) {
            const float* a = rows.data() + (2 * i) * dim;
            const float* b = rows.data() + (2 * i + 1) * dim;
            double dot = 0, na = 0, nb = 0;
            for (std::size_t k = 0; k < dim; ++k) {
                dot += static_cast<double>(a[k]) * b[k];
                na += static_cast<double>(a[k]) * a[k];
                nb += static_cast<double>(b[k]) * b[k];
            }
            out.push_back(na > 0 && nb > 0 ? static_cast<float>(dot / std::sqrt(na * nb)) : 0.0F);
        }
    }
    return out;
}

[[noreturn]] void usage_error(const char* what) {
    std::fprintf(stderr, "llmfast-calibrate: %s (see --help)\n", what);
    std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
    std::string pairs_path, url, model, key_env;
    std::size_t dimension = 0;
    double target = 0.95;
    bool quick = false, guards = true;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        const auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage_error("an option is missing its value");
            return argv[++i];
        };
        if (arg == "--quick") quick = true;
        else if (arg == "--pairs") pairs_path = value();
        else if (arg == "--embedder-url") url = value();
        else if (arg == "--model") model = value();
        else if (arg == "--dimension") dimension = static_cast<std::size_t>(std::strtoull(value().c_str(), nullptr, 10));
        else if (arg == "--api-key-env") key_env = value();
        else if (arg == "--target-precision") target = std::strtod(value().c_str(), nullptr);
        else if (arg == "--no-guards") guards = false;
        else if (arg == "--help" || arg == "-h") {
            std::printf("usage: %s [--quick] [--pairs FILE.tsv] [--embedder-url URL --model NAME --dimension N "
                        "[--api-key-env VAR]] [--target-precision P] [--no-guards]\n", argv[0]);
            return 0;
        } else if (!arg.empty() && arg[0] != '-' && pairs_path.empty()) pairs_path = std::string(arg);
        else usage_error("unknown argument");
    }
    if (!(target > 0 && target <= 1)) usage_error("--target-precision must be in (0, 1]");
    const std::vector<llmfast::bench::LabelledPair> pairs =
        pairs_path.empty() || quick ? llmfast::bench::builtin_pairs_sample() : llmfast::bench::read_labelled_pairs(pairs_path);
    std::vector<const llmfast::bench::LabelledPair*> semantic;  // pairs the semantic tier would decide
    for (const auto& pair : pairs)
        if (llmfast::detail::normalize_prompt(pair.a) != llmfast::detail::normalize_prompt(pair.b)) semantic.push_back(&pair);

    std::vector<float> sims;
    std::string name;
    try {
        if (!url.empty()) {
            if (model.empty() || dimension == 0) usage_error("--embedder-url needs --model and --dimension");
            llmfast::OpenAiEmbedderOptions options{.base_url = url, .model = model, .dimension = dimension,
                                                   .timeout = std::chrono::seconds(120), .attempt_timeout = std::chrono::seconds(60)};
            if (!key_env.empty()) {
                const char* key = std::getenv(key_env.c_str());
                if (key == nullptr) usage_error("the --api-key-env variable is not set");
                options.api_key = key;
            }
            options.batching = false;  // one thread: batches are formed here
            const llmfast::OpenAiEmbedder<llmfast::CurlTransport> embedder(options);
            name = embedder.identity();
            sims = similarities(semantic, dimension, [&](auto texts, auto out) { embedder.embed_batch(texts, out); });
        } else {
            const llmfast::HashingEmbedder embedder;
            name = embedder.identity();
            sims = similarities(semantic, embedder.dimension(), [&](auto texts, auto out) { embedder.embed_batch(texts, out); });
        }
    } catch (const llmfast::Error& e) {
        std::fprintf(stderr, "llmfast-calibrate: embedder failed: %s\n", e.what());
        return 2;
    }

    std::vector<Scored> scored;
    int positives = 0;
    const llmfast::HitGuards defaults{};
    for (std::size_t i = 0; i < semantic.size(); ++i) {
        const bool vetoed = guards && llmfast::check_hit_guards(llmfast::make_guard_signature(semantic[i]->b),
                                                                llmfast::make_guard_signature(semantic[i]->a), defaults) !=
                                          llmfast::GuardVeto::None;
        scored.push_back({semantic[i]->label, sims[i], vetoed});
        positives += semantic[i]->label;
    }
    std::printf("embedder: %s\npairs: %zu (%zu decided by the semantic tier, %d of them positive); hit guards: %s\n\n", name.c_str(),
                pairs.size(), semantic.size(), positives, guards ? "defaults" : "off");
    std::printf("%9s  %9s  %9s  %6s\n", "threshold", "precision", "recall", "hits");
    // The lowest threshold such that it and every threshold above it (with hits) reach the target:
    // precision is not monotone in the threshold, and a lucky dip must not be the recommendation.
    double best = -1, best_recall = 0;
    bool below = false;
    for (int step = 100; step >= 30; --step) {  // 1.00 down to 0.30
        const float threshold = static_cast<float>(step) / 100.0F;
        int hits = 0, true_hits = 0;
        for (const Scored& s : scored) {
            if (s.similarity < threshold || s.vetoed) continue;
            ++hits;
            true_hits += s.label;
        }
        const double precision = hits ? static_cast<double>(true_hits) / hits : 1.0;
        const double recall = positives ? static_cast<double>(true_hits) / positives : 0.0;
        if (step % 5 == 0) std::printf("%9.2f  %9.3f  %9.3f  %6d\n", threshold, precision, recall, hits);
        if (hits > 0 && precision < target) below = true;
        if (hits > 0 && !below) {
            best = threshold;
            best_recall = recall;
        }
    }
    if (best < 0) {
        std::printf("\nno threshold in [0.30, 1.00] reaches precision %.3f on these pairs: keep the semantic tier off for this "
                    "embedder\n", target);
    } else {
        std::printf("\nlowest threshold with precision >= %.3f (there and above): %.2f (recall %.3f) -> SemanticCacheOptions::similarity_threshold\n",
                    target, best, best_recall);
    }
    return 0;
}
