// Tests of llmfast/curl_transport.hpp against a scripted stub server on 127.0.0.1.
#include "catch.hpp"
#include "stub_http_server.hpp"
#include "test_support.hpp"

#include <llmfast/curl_transport.hpp>

#include <chrono>
#include <string>

using namespace std::chrono_literals;
using llmfast::ErrorCode;
using llmfast::testing::error_code_of;

TEST_CASE("CurlTransport: status, body, headers and Retry-After of any answer", "[http]") {
    llmfast::testing::StubHttpServer server([](const llmfast::testing::StubRequest& r) -> llmfast::testing::StubReply {
        if (r.path == "/limited") return {.status = 429, .body = "later", .headers = {{"Retry-After", "3"}}};
        if (r.path == "/date") return {.status = 503, .body = "x", .headers = {{"retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"}}};
        const bool has_header = r.headers.find("X-Test: yes") != std::string::npos;
        return {.status = 200, .body = r.method + " " + r.body + (has_header ? " +header" : "")};
    });
    const llmfast::CurlTransport transport;
    const std::string base = "http://127.0.0.1:" + std::to_string(server.port());
    llmfast::HttpResponse ok = transport.post({.url = base + "/echo", .headers = {{"X-Test", "yes"}}, .body = "hello", .timeout = 5s});
    CHECK(ok.status == 200);
    CHECK(ok.body == "POST hello +header");
    CHECK(!ok.retry_after);
    const llmfast::HttpResponse limited = transport.post({.url = base + "/limited", .body = "{}", .timeout = 5s});
    CHECK(limited.status == 429);
    CHECK(limited.body == "later");
    CHECK(limited.retry_after == std::chrono::nanoseconds(3s));
    const llmfast::HttpResponse dated = transport.post({.url = base + "/date", .body = "{}", .timeout = 5s});
    CHECK(dated.status == 503);
    CHECK(!dated.retry_after);
    // A binary body goes through unchanged (POSTFIELDSIZE, not strlen).
    const std::string binary("a\0b", 3);
    ok = transport.post({.url = base + "/echo", .body = binary, .timeout = 5s});
    CHECK(ok.body == "POST " + binary);
}

TEST_CASE("CurlTransport: a stalled server is DeadlineExceeded, a refused or reset connection IoError", "[http]") {
    llmfast::testing::StubHttpServer server([](const llmfast::testing::StubRequest& r) -> llmfast::testing::StubReply {
        if (r.path == "/stall") return {.delay = 10s};
        return {.reset = true};
    });
    const llmfast::CurlTransport transport;
    const std::string base = "http://127.0.0.1:" + std::to_string(server.port());
    CHECK(error_code_of([&] { (void)transport.post({.url = base + "/stall", .body = "{}", .timeout = 200ms}); }) ==
          ErrorCode::DeadlineExceeded);
    CHECK(error_code_of([&] { (void)transport.post({.url = base + "/reset", .body = "{}", .timeout = 5s}); }) == ErrorCode::IoError);
    // Port 1: nothing listens there on loopback.
    CHECK(error_code_of([&] { (void)transport.post({.url = "http://127.0.0.1:1/x", .body = "{}", .timeout = 5s}); }) ==
          ErrorCode::IoError);
}

TEST_CASE("CurlTransportOptions are validated", "[http]") {
    CHECK(error_code_of([] { llmfast::CurlTransport t({.connect_timeout = -1s}); }) == ErrorCode::InvalidArgument);
}
