#include <llmfast/token_counter.hpp>

#include "catch.hpp"

#include <cstddef>
#include <string_view>

namespace {
struct ConstantCounter {
    std::size_t count(std::string_view) const { return 7; }
};
struct MutableOnlyCounter {
    std::size_t count(std::string_view) { return 7; }  // not const: can't be shared between threads
};
struct DeclaredMonotone {
    std::size_t count(std::string_view text) const { return text.size(); }
    static constexpr bool monotone = true;
};
struct DeclaredNotMonotone {
    std::size_t count(std::string_view text) const { return text.size(); }
    static constexpr bool monotone = false;
};
}  // namespace

TEST_CASE("TokenCounter concept", "[tokens]") {
    STATIC_REQUIRE(llmfast::TokenCounter<ConstantCounter>);
    STATIC_REQUIRE_FALSE(llmfast::TokenCounter<MutableOnlyCounter>);
    STATIC_REQUIRE_FALSE(llmfast::TokenCounter<int>);
}

TEST_CASE("TokenCounter: the optional monotone flag", "[tokens]") {
    STATIC_REQUIRE_FALSE(llmfast::is_monotone_token_counter<ConstantCounter>);  // absent: false
    STATIC_REQUIRE(llmfast::is_monotone_token_counter<DeclaredMonotone>);
    STATIC_REQUIRE_FALSE(llmfast::is_monotone_token_counter<DeclaredNotMonotone>);
}
