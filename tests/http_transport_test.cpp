// Tests of llmfast/http_transport.hpp: the HttpTransport concept and parse_retry_after.
#include "catch.hpp"

#include <llmfast/http_transport.hpp>

#include <chrono>

using namespace std::chrono_literals;

namespace {
struct Good {
    llmfast::HttpResponse post(const llmfast::HttpRequest&) const { return {.status = 204}; }
};
struct NonConst {
    llmfast::HttpResponse post(const llmfast::HttpRequest&) { return {}; }
};
struct WrongResult {
    int post(const llmfast::HttpRequest&) const { return 0; }
};
}  // namespace

TEST_CASE("HttpTransport: a const post(HttpRequest) returning HttpResponse", "[http]") {
    STATIC_REQUIRE(llmfast::HttpTransport<Good>);
    STATIC_REQUIRE(!llmfast::HttpTransport<NonConst>);  // called concurrently on a shared object
    STATIC_REQUIRE(!llmfast::HttpTransport<WrongResult>);
    CHECK(Good{}.post({.url = "http://x"}).status == 204);
    const llmfast::HttpRequest defaults{.url = "http://x"};
    CHECK(defaults.timeout == std::chrono::nanoseconds(30s));
}

TEST_CASE("parse_retry_after: delay-seconds, blanks allowed; anything else is nullopt", "[http]") {
    CHECK(llmfast::parse_retry_after("120") == std::chrono::nanoseconds(120s));
    CHECK(llmfast::parse_retry_after(" \t7 \r\n") == std::chrono::nanoseconds(7s));
    CHECK(llmfast::parse_retry_after("0") == std::chrono::nanoseconds(0s));
    CHECK(llmfast::parse_retry_after("999999999") == std::chrono::nanoseconds(86400s));  // clamped to a day
    CHECK(!llmfast::parse_retry_after("Fri, 31 Dec 1999 23:59:59 GMT"));
    CHECK(!llmfast::parse_retry_after("1.5"));
    CHECK(!llmfast::parse_retry_after("-3"));
    CHECK(!llmfast::parse_retry_after("   "));
    CHECK(!llmfast::parse_retry_after("18446744073709551616"));  // overflows uint64
}
