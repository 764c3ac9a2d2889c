// The umbrella header compiles on its own and exposes every core component.
#include <llmfast/llmfast.hpp>

#include "catch.hpp"

TEST_CASE("umbrella header exposes the core components and the version", "[core]") {
    STATIC_REQUIRE(LLMFAST_VERSION == LLMFAST_VERSION_MAJOR * 10000 + LLMFAST_VERSION_MINOR * 100 + LLMFAST_VERSION_PATCH);
    STATIC_REQUIRE(llmfast::TokenCounter<llmfast::EstimatingTokenCounter>);
    CHECK(llmfast::utf8::is_valid("ok"));
}
