#include <llmfast/hashing_embedder.hpp>

#include "catch.hpp"

#include <cmath>
#include <string>
#include <string_view>
#include <vector>

namespace {

std::vector<float> embed(const llmfast::HashingEmbedder& embedder, std::string_view text) {
    std::vector<float> v(embedder.dimension());
    embedder.embed(text, v);
    return v;
}

float cosine(const std::vector<float>& a, const std::vector<float>& b) {
    double dot = 0;
    for (std::size_t i = 0; i < a.size(); ++i) dot += static_cast<double>(a[i]) * static_cast<double>(b[i]);
    return static_cast<float>(dot);
}

float norm(const std::vector<float>& a) { return std::sqrt(cosine(a, a)); }

}  // namespace

TEST_CASE("HashingEmbedder output is deterministic and L2-normalized", "[cache]") {
    const llmfast::HashingEmbedder embedder;
    CHECK(embedder.dimension() == 384);
    const auto a = embed(embedder, "什么是机器学习? What is machine learning?");
    const auto b = embed(embedder, "什么是机器学习? What is machine learning?");
    CHECK(a == b);
    CHECK(std::fabs(norm(a) - 1.0F) < 1e-5F);
    // Another instance with the same options gives the same vector (no per-process randomness).
    CHECK(embed(llmfast::HashingEmbedder{}, "什么是机器学习? What is machine learning?") == a);
}

TEST_CASE("HashingEmbedder: lexical similarity across scripts", "[cache]") {
    const llmfast::HashingEmbedder embedder;
    // The chapter's own example: a reordering of the same characters is close.
    const float zh_paraphrase = cosine(embed(embedder, "什么是机器学习?"), embed(embedder, "机器学习是什么?"));
    const float zh_unrelated = cosine(embed(embedder, "什么是机器学习?"), embed(embedder, "今天天气怎么样"));
    CHECK(zh_paraphrase > 0.7F);
    CHECK(zh_unrelated < 0.2F);
    CHECK(zh_paraphrase > zh_unrelated);

    const float en_close = cosine(embed(embedder, "How do I reset my password?"), embed(embedder, "how can I reset my password"));
    const float en_far = cosine(embed(embedder, "How do I reset my password?"), embed(embedder, "Best pizza in Naples"));
    CHECK(en_close > 0.6F);
    CHECK(en_far < 0.2F);

    // Case and full-width forms do not matter (the same normalization as the exact tier).
    CHECK(cosine(embed(embedder, "ＨＥＬＬＯ world？"), embed(embedder, "hello   WORLD?")) > 0.999F);
}

TEST_CASE("HashingEmbedder: empty and punctuation-only text is the zero vector", "[cache]") {
    const llmfast::HashingEmbedder embedder;
    for (const std::string_view text : {std::string_view(""), std::string_view("   "), std::string_view("?!。，")}) {
        const auto v = embed(embedder, text);
        CHECK(norm(v) == 0.0F);
    }
    // Invalid UTF-8 does not crash and is deterministic.
    CHECK(embed(embedder, "ab\xff\xfe cd") == embed(embedder, "ab\xff\xfe cd"));
}

TEST_CASE("HashingEmbedder options, identity and errors", "[cache]") {
    CHECK_THROWS_AS(llmfast::HashingEmbedder({.dimension = 0}), llmfast::Error);
    const llmfast::HashingEmbedder small({.dimension = 64, .seed = 7});
    CHECK(small.dimension() == 64);
    CHECK(small.identity() == "llmfast.HashingEmbedder/1 dim=64 seed=7");
    CHECK(llmfast::embedder_identity(small) != llmfast::embedder_identity(llmfast::HashingEmbedder{}));
    std::vector<float> wrong(10);
    try {
        small.embed("x", wrong);
        FAIL("expected InvalidArgument");
    } catch (const llmfast::Error& e) {
        CHECK(e.code() == llmfast::ErrorCode::InvalidArgument);
    }
    // Different seeds hash differently.
    const llmfast::HashingEmbedder other({.dimension = 64, .seed = 8});
    CHECK(embed(small, "hello world") != embed(other, "hello world"));
}

