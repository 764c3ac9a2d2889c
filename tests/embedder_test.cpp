#include <llmfast/embedder.hpp>
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


struct MinimalEmbedder {
    std::size_t dimension() const { return 2; }
    void embed(std::string_view text, std::span<float> out) const {
        out[0] = static_cast<float>(text.size());
        out[1] = 1;
    }
};

struct NotAnEmbedder {
    std::size_t dimension() const { return 2; }
};

}  // namespace

TEST_CASE("Embedder concept", "[cache]") {
    STATIC_REQUIRE(llmfast::Embedder<llmfast::HashingEmbedder>);
    STATIC_REQUIRE(llmfast::Embedder<MinimalEmbedder>);
    STATIC_REQUIRE_FALSE(llmfast::Embedder<NotAnEmbedder>);
    STATIC_REQUIRE_FALSE(llmfast::Embedder<int>);
}

TEST_CASE("embedder_traits: optional members are detected", "[cache]") {
    STATIC_REQUIRE(llmfast::embedder_traits<llmfast::HashingEmbedder>::lexical);
    STATIC_REQUIRE(llmfast::embedder_traits<llmfast::HashingEmbedder>::has_identity);
    STATIC_REQUIRE(llmfast::embedder_traits<llmfast::HashingEmbedder>::has_embed_batch);
    STATIC_REQUIRE_FALSE(llmfast::embedder_traits<MinimalEmbedder>::lexical);
    STATIC_REQUIRE_FALSE(llmfast::embedder_traits<MinimalEmbedder>::has_identity);
    STATIC_REQUIRE_FALSE(llmfast::embedder_traits<MinimalEmbedder>::has_embed_batch);
    CHECK(llmfast::embedder_identity(MinimalEmbedder{}) == "anonymous-embedder dim=2");
    CHECK(llmfast::embedder_identity(llmfast::HashingEmbedder{}) == llmfast::HashingEmbedder{}.identity());
}

TEST_CASE("embed_batch matches single calls", "[cache]") {
    const llmfast::HashingEmbedder embedder({.dimension = 32});
    const std::vector<std::string_view> texts{"one", "两个", "three four"};
    std::vector<float> out(texts.size() * 32);
    llmfast::embed_batch(embedder, std::span<const std::string_view>(texts), out);
    for (std::size_t i = 0; i < texts.size(); ++i) {
        const auto single = embed(embedder, texts[i]);
        CHECK(std::equal(single.begin(), single.end(), out.begin() + static_cast<std::ptrdiff_t>(i * 32)));
    }
    // The generic path (an embedder without embed_batch) too.
    std::vector<float> minimal_out(4);
    const std::vector<std::string_view> two{"a", "bcd"};
    llmfast::embed_batch(MinimalEmbedder{}, std::span<const std::string_view>(two), minimal_out);
    CHECK(minimal_out == std::vector<float>{1, 1, 3, 1});
    std::vector<float> bad(3);
    CHECK_THROWS_AS(llmfast::embed_batch(embedder, std::span<const std::string_view>(texts), bad), llmfast::Error);
}
