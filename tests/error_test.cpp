#include <llmfast/error.hpp>

#include "catch.hpp"

#include <string>

TEST_CASE("Error carries its code and names it in what()", "[core]") {
    const llmfast::Error error(llmfast::ErrorCode::QueueFull, "32 requests waiting");
    CHECK(error.code() == llmfast::ErrorCode::QueueFull);
    CHECK(std::string(error.what()) == "QueueFull: 32 requests waiting");
    const std::runtime_error& base = error;  // catchable as a standard exception
    CHECK(std::string(base.what()).find("QueueFull") == 0);
}

TEST_CASE("every code has a distinct name", "[core]") {
    using llmfast::ErrorCode;
    CHECK(llmfast::to_string(ErrorCode::Ok) == "Ok");
    CHECK(llmfast::to_string(ErrorCode::EventTooLarge) == "EventTooLarge");
    CHECK(llmfast::to_string(static_cast<ErrorCode>(9999)) == "Unknown");
    for (int a = 0; a <= static_cast<int>(ErrorCode::EventTooLarge); ++a)
        for (int b = a + 1; b <= static_cast<int>(ErrorCode::EventTooLarge); ++b)
            CHECK(llmfast::to_string(static_cast<ErrorCode>(a)) != llmfast::to_string(static_cast<ErrorCode>(b)));
}
