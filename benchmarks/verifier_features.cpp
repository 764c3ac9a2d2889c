// benchmarks/verifier_features.cpp — the feature tool scripts/train_verifier.py drives (not installed).
//
//     verifier_features idf <pairs.tsv> <idf.bin>                 # token idf table of a pairs file
//     verifier_features features <idf.bin> <pairs.tsv> <out.f32>  # PairVerifier's features per pair
//                                                                 # (+ out.f32.items: the difference items)
//     verifier_features --quick                                   # CI: features of a built-in sample
//
// Pairs TSV: lang, label, source, text_a, text_b (header line). text_b plays the new prompt, text_a the
// cached one (as in cache_quality). out.f32 is float32: rows, columns, then rows x columns values;
// the last column is 1 for pairs identical after normalization (exact-tier hits, not the verifier's).
// out.f32.items is int32: per pair na, nb, then the na + nb embedding buckets (detail::pair_diff).
// The similarity column is HashingEmbedder's cosine (default options), as the cache would pass it.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // g++ 12 bug 105593 in xxhash's AVX-512 path (-march=native)
#endif
#include <llmfast/hashing_embedder.hpp>
#include <llmfast/pair_verifier.hpp>

#include "labelled_pairs.hpp"

#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

namespace {

using Pair = llmfast::bench::LabelledPair;

std::vector<Pair> read_pairs(const std::string& path) {
    return llmfast::bench::read_labelled_pairs(path, llmfast::bench::MalformedLine::Fail);
}

constexpr std::size_t idf_buckets = llmfast::pair_verifier_weights::idf_buckets;

int make_idf(const std::string& pairs_path, const std::string& out_path) {
    const auto pairs = read_pairs(pairs_path);
    std::vector<std::uint32_t> df(idf_buckets, 0);
    std::size_t documents = 0;
    const auto count = [&](const std::string& text) {
        const llmfast::PairText analysed = llmfast::detail::pair_analyse(text, {});
        std::vector<std::size_t> buckets;
        for (const std::uint32_t hash : analysed.token_set) buckets.push_back(hash % idf_buckets);
        std::sort(buckets.begin(), buckets.end());
        buckets.erase(std::unique(buckets.begin(), buckets.end()), buckets.end());
        for (const std::size_t b : buckets) ++df[b];
        ++documents;
    };
    for (const Pair& pair : pairs) {
        count(pair.a);
        count(pair.b);
    }
    std::vector<std::uint8_t> idf(idf_buckets);
    for (std::size_t i = 0; i < idf_buckets; ++i) {
        const double value = std::log((static_cast<double>(documents) + 1.0) / (static_cast<double>(df[i]) + 1.0));
        idf[i] = static_cast<std::uint8_t>(std::clamp(std::lround(value * 16.0), 0L, 255L));
    }
    std::FILE* out = std::fopen(out_path.c_str(), "wb");
    if (out == nullptr || std::fwrite(idf.data(), 1, idf.size(), out) != idf.size() || std::fclose(out) != 0) {
        std::fprintf(stderr, "cannot write %s\n", out_path.c_str());
        return 2;
    }
    std::printf("idf: %zu texts, %zu buckets\n", documents, idf_buckets);
    return 0;
}

std::vector<float> featurize(const std::vector<Pair>& pairs, const llmfast::detail::PairIdfTable& idf,
                             std::vector<std::int32_t>* items = nullptr) {
    const llmfast::HashingEmbedder embedder;
    std::vector<float> va(embedder.dimension()), vb(embedder.dimension());
    constexpr std::size_t cols = llmfast::pair_feature_count + 1;
    std::vector<float> out;
    out.reserve(2 + pairs.size() * cols);
    out.push_back(static_cast<float>(pairs.size()));
    out.push_back(static_cast<float>(cols));
    std::array<float, llmfast::pair_feature_count> x{};
    for (const Pair& pair : pairs) {
        embedder.embed(pair.a, va);
        embedder.embed(pair.b, vb);
        double dot = 0;
        for (std::size_t i = 0; i < va.size(); ++i) dot += static_cast<double>(va[i]) * static_cast<double>(vb[i]);
        const llmfast::PairText cached = llmfast::detail::pair_analyse(pair.a, idf);
        const llmfast::PairText query = llmfast::detail::pair_analyse(pair.b, idf);
        llmfast::detail::pair_features(query, cached, static_cast<float>(dot), x);
        if (items != nullptr) {
            const llmfast::detail::PairDiff diff = llmfast::detail::pair_diff(query, cached);
            items->push_back(static_cast<std::int32_t>(diff.na));
            items->push_back(static_cast<std::int32_t>(diff.nb));
            for (std::size_t i = 0; i < diff.na; ++i) items->push_back(diff.a[i]);
            for (std::size_t i = 0; i < diff.nb; ++i) items->push_back(diff.b[i]);
        }
        out.insert(out.end(), x.begin(), x.end());
        out.push_back(llmfast::detail::normalize_prompt(pair.a) == llmfast::detail::normalize_prompt(pair.b) ? 1.0F : 0.0F);
    }
    return out;
}

int make_features(const std::string& idf_path, const std::string& pairs_path, const std::string& out_path) {
    std::vector<std::uint8_t> idf(idf_buckets);
    std::FILE* in = std::fopen(idf_path.c_str(), "rb");
    if (in == nullptr || std::fread(idf.data(), 1, idf.size(), in) != idf.size()) {
        std::fprintf(stderr, "cannot read %s\n", idf_path.c_str());
        return 2;
    }
    std::fclose(in);
    std::vector<std::int32_t> items;
    const std::vector<float> out = featurize(read_pairs(pairs_path), {.bytes = idf, .packed = {}}, &items);
    std::FILE* file = std::fopen(out_path.c_str(), "wb");
    if (file == nullptr || std::fwrite(out.data(), sizeof(float), out.size(), file) != out.size() || std::fclose(file) != 0) {
        std::fprintf(stderr, "cannot write %s\n", out_path.c_str());
        return 2;
    }
    const std::string items_path = out_path + ".items";
    file = std::fopen(items_path.c_str(), "wb");
    if (file == nullptr || std::fwrite(items.data(), sizeof(std::int32_t), items.size(), file) != items.size() ||
        std::fclose(file) != 0) {
        std::fprintf(stderr, "cannot write %s\n", items_path.c_str());
        return 2;
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() == 3 && args[0] == "idf") return make_idf(args[1], args[2]);
    if (args.size() == 4 && args[0] == "features") return make_features(args[1], args[2], args[3]);
    if (args.size() == 1 && args[0] == "--quick") {
        const std::vector<Pair> sample{{"sample-zh", 1, "什么是机器学习?", "机器学习是什么?"},
                                       {"sample-zh", 0, "第一季比第二季好看吗", "第二季比第一季好看吗"},
                                       {"sample-en", 1, "How do I reset my password?", "how can I reset my password"}};
        const std::vector<float> out = featurize(sample, {.bytes = {}, .packed = llmfast::pair_verifier_weights::idf_codes});
        for (std::size_t row = 0; row < sample.size(); ++row) {
            std::printf("%s | %s\n", sample[row].a.c_str(), sample[row].b.c_str());
            for (std::size_t i = 0; i < llmfast::pair_feature_count; ++i) {
                std::printf("  %-18.*s %8.4f\n", static_cast<int>(llmfast::pair_feature_names[i].size()),
                            llmfast::pair_feature_names[i].data(),
                            static_cast<double>(out[2 + row * (llmfast::pair_feature_count + 1) + i]));
            }
        }
        return 0;
    }
    std::fprintf(stderr, "usage: verifier_features idf <pairs.tsv> <idf.bin> | features <idf.bin> <pairs.tsv> <out.f32> | --quick\n");
    return 2;
}
