// llmfast/http_transport.hpp — the `HttpTransport` concept: the one HTTP call an HTTP-backed
// component (llmfast/openai_embedder.hpp) needs, so an application can plug in the client it
// already has (its own connection pool, proxy settings, TLS, tracing). The library ships one model
// of it, `CurlTransport` (llmfast/curl_transport.hpp, CMake component `http`, needs libcurl).
//
// Required: a const `post(const HttpRequest&)` returning `HttpResponse` (convertible to it). It
//   - sends `request.body` to `request.url` with `request.headers`, and returns the status and body
//     of whatever the server answered (a 4xx/5xx is a response, not an exception);
//   - returns or throws within `request.timeout` (connecting included): on a timeout it throws
//     Error(DeadlineExceeded); on any other transport failure (refused, reset, DNS, TLS) it throws
//     Error(IoError) with a message naming the URL. Anything else it throws is reported by the caller
//     as IoError with its what();
//   - may be called from many threads at once.
// Optional: nothing. `HttpResponse::retry_after` is filled from a `Retry-After: <seconds>` header when
// the transport sees one (leave it empty otherwise; the caller then uses its own backoff).
//
//     struct MyTransport {
//         llmfast::HttpResponse post(const llmfast::HttpRequest& request) const;  // your client
//     };
//     static_assert(llmfast::HttpTransport<MyTransport>);
//
// Thread-safety: the types here are plain values; models of the concept must allow concurrent `post`.
// Errors: `parse_retry_after` never throws.
#pragma once

#include <llmfast/version.hpp>

#include <charconv>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

LLMFAST_BEGIN_NAMESPACE

/// One POST request.
struct HttpRequest {
    std::string url;
    std::vector<std::pair<std::string, std::string>> headers{};  ///< e.g. {"Content-Type", "application/json"}
    std::string body{};
    /// Bound of the whole exchange, connecting included (the transport must end by then).
    std::chrono::nanoseconds timeout = std::chrono::seconds(30);
};

/// What the server answered.
struct HttpResponse {
    int status = 0;
    std::string body{};
    /// From a `Retry-After: <delay-seconds>` header, when present and numeric.
    std::optional<std::chrono::nanoseconds> retry_after{};
};

/// A client that can POST (see the header comment for the contract).
template <class T>
concept HttpTransport = requires(const T& transport, const HttpRequest& request) {
    { transport.post(request) } -> std::convertible_to<HttpResponse>;
};

/// The value of a `Retry-After` header as a delay: "<seconds>" (digits, optional surrounding blanks).
/// An HTTP-date or anything else gives nullopt (the caller falls back to its own backoff).
[[nodiscard]] inline std::optional<std::chrono::nanoseconds> parse_retry_after(std::string_view value) noexcept {
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t' || value.back() == '\r' || value.back() == '\n'))
        value.remove_suffix(1);
    if (value.empty()) return std::nullopt;
    std::uint64_t seconds = 0;
    const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
    if (ec != std::errc{} || ptr != value.data() + value.size()) return std::nullopt;
    // Clamp: a day is "not within any deadline" as well as a century is, and stays representable.
    if (seconds > 86'400) seconds = 86'400;
    return std::chrono::seconds(static_cast<std::int64_t>(seconds));
}

LLMFAST_END_NAMESPACE
