// llmfast/hashing_embedder.hpp — `HashingEmbedder`, the model-free default `Embedder`.
//
// Feature hashing of character n-grams: it needs no model and measures *lexical* similarity (shared
// characters and words), not meaning: "机器学习是什么?" and "什么是机器学习?" come out close, but so do
// "第一季比第二季好" and "第二季比第一季好". It declares `lexical = true`, so the cache's
// `SemanticTier::Auto` keeps the semantic tier off for it (see llmfast/hit_guards.hpp and the quality
// table in docs/cache.md). Plug a real sentence-embedding model in by writing a type that models
// `Embedder` (llmfast/embedder.hpp).
//
//     llmfast::HashingEmbedder embedder;                    // 384 dimensions
//     std::vector<float> v(embedder.dimension());
//     embedder.embed("什么是机器学习?", v);                 // L2-normalized
//
// Thread-safety: immutable after construction; `embed` may be called from any number of threads at once.
//
// Errors: the constructor throws Error(InvalidArgument) for a zero dimension; `embed` and
// `embed_batch` throw Error(InvalidArgument) when the output span has the wrong size.
#pragma once

#include <llmfast/version.hpp>
#include <llmfast/detail/cache_text.hpp>
#include <llmfast/detail/xxhash.hpp>
#include <llmfast/embedder.hpp>
#include <llmfast/error.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include <fmt/format.h>

LLMFAST_BEGIN_NAMESPACE

struct HashingEmbedderOptions {
    std::size_t dimension = 384;  ///< output width; more dimensions = fewer hash collisions
    std::uint64_t seed = 0;       ///< hashing seed (part of the identity)
};

/// Feature hashing of character n-grams: CJK runs (no spaces) give character unigrams and bigrams;
/// Latin and other alphabetic text gives whole words plus their character trigrams. Each feature is
/// hashed with xxHash3 to a bucket and a sign (signed hashing keeps collisions from biasing the
/// cosine), and the vector is L2-normalized. Input is normalized first like the exact tier (ASCII
/// case-fold, full-width to half-width, whitespace collapsed). Deterministic across runs and builds.
/// Empty or punctuation-only text gives the zero vector (similarity 0 to everything).
/// Thread-safety: immutable after construction; `embed` may run on any number of threads at once.
class HashingEmbedder {
public:
    using Options = HashingEmbedderOptions;
    /// Lexical, not semantic: `SemanticTier::Auto` keeps the cache's semantic tier off for it.
    static constexpr bool lexical = true;

    HashingEmbedder() : HashingEmbedder(Options{}) {}
    explicit HashingEmbedder(Options options) : options_(options) {
        if (options_.dimension == 0) throw Error(ErrorCode::InvalidArgument,
                        fmt::format("HashingEmbedderOptions::dimension must be > 0 (got {})", options_.dimension));
    }

    [[nodiscard]] std::size_t dimension() const noexcept { return options_.dimension; }

    [[nodiscard]] std::string identity() const {
        return fmt::format("llmfast.HashingEmbedder/1 dim={} seed={}", options_.dimension, options_.seed);
    }

    void embed(std::string_view text, std::span<float> out) const {
        if (out.size() != options_.dimension) {
            throw Error(ErrorCode::InvalidArgument,
                        fmt::format("HashingEmbedder::embed: output has {} floats, dimension is {}", out.size(),
                                    options_.dimension));
        }
        for (float& value : out) value = 0.0F;
        thread_local std::string normalized;  // reused: no allocation per call once warm
        detail::normalize_prompt(text, normalized);
        accumulate(normalized, out);
        double norm = 0;
        for (const float value : out) norm += static_cast<double>(value) * static_cast<double>(value);
        if (norm > 0) {
            const auto inv = static_cast<float>(1.0 / std::sqrt(norm));
            for (float& value : out) value *= inv;
        }
    }

    void embed_batch(std::span<const std::string_view> texts, std::span<float> out) const {
        const std::size_t dim = options_.dimension;
        if (out.size() != texts.size() * dim) {
            throw Error(ErrorCode::InvalidArgument,
                        fmt::format("HashingEmbedder::embed_batch: output has {} floats, texts.size() * dimension() is {}",
                                    out.size(), texts.size() * dim));
        }
        for (std::size_t i = 0; i < texts.size(); ++i) embed(texts[i], out.subspan(i * dim, dim));
    }

    [[nodiscard]] const Options& options() const noexcept { return options_; }

private:
    // Feature kinds hash with different seeds so a word "ab" and a bigram "ab" never share a bucket
    // by construction.
    static constexpr std::uint64_t kind_unigram = 0x9E3779B97F4A7C15ULL;
    static constexpr std::uint64_t kind_bigram = 0xC2B2AE3D27D4EB4FULL;
    static constexpr std::uint64_t kind_word = 0x165667B19E3779F9ULL;
    static constexpr std::uint64_t kind_trigram = 0x27D4EB2F165667C5ULL;

    void add_feature(std::string_view bytes, std::uint64_t kind, float weight, std::span<float> out) const {
        const std::uint64_t hash = detail::xxh3_64(bytes, options_.seed ^ kind);
        const std::size_t bucket = static_cast<std::size_t>(hash % options_.dimension);
        out[bucket] += (hash >> 63) != 0 ? -weight : weight;
    }

    // One pass over the normalized text. Invariant: `word_start` is npos outside a word; inside one,
    // `starts` holds the byte offsets of the word's last three code points (for trigrams).
    void accumulate(std::string_view text, std::span<float> out) const {
        constexpr std::size_t npos = std::string_view::npos;
        std::size_t prev_cjk = npos;  // offset of the previous code point if it was CJK
        std::size_t word_start = npos;
        std::size_t word_chars = 0;
        std::size_t starts[3] = {0, 0, 0};
        const auto end_word = [&](std::size_t end) {
            if (word_start == npos) return;
            add_feature(text.substr(word_start, end - word_start), kind_word, 1.0F, out);
            word_start = npos;
            word_chars = 0;
        };
        std::size_t pos = 0;
        while (pos < text.size()) {
            const detail::CodePoint cp = detail::next_code_point(text, pos);
            if (detail::is_cjk(cp.value)) {
                end_word(pos);
                add_feature(text.substr(pos, cp.length), kind_unigram, 1.0F, out);
                if (prev_cjk != npos) add_feature(text.substr(prev_cjk, pos + cp.length - prev_cjk), kind_bigram, 1.0F, out);
                prev_cjk = pos;
            } else if (detail::is_separator(cp.value)) {
                end_word(pos);
                prev_cjk = npos;
            } else {  // a word character
                prev_cjk = npos;
                if (word_start == npos) word_start = pos;
                starts[0] = starts[1];
                starts[1] = starts[2];
                starts[2] = pos;
                ++word_chars;
                if (word_chars >= 3) add_feature(text.substr(starts[0], pos + cp.length - starts[0]), kind_trigram, 0.5F, out);
            }
            pos += cp.length;
        }
        end_word(text.size());
    }

    Options options_;
};

static_assert(Embedder<HashingEmbedder>);
static_assert(embedder_traits<HashingEmbedder>::lexical);

LLMFAST_END_NAMESPACE
