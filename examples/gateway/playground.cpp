// examples/gateway/playground.cpp — see playground.hpp. No Beast here: editing the page rebuilds
// only this file.
#include "playground.hpp"

#include "config.hpp"  // sha256()
#include "playground_html.hpp"  // generated: playground_html[]

#include <fmt/format.h>
#include <openssl/evp.h>

#include <array>

namespace gateway {
namespace {

std::string base64(const std::array<unsigned char, 32>& digest) {
    std::array<unsigned char, 45> out{};  // 4 * ceil(32 / 3) + the terminating NUL EVP_EncodeBlock writes
    const int n = EVP_EncodeBlock(out.data(), digest.data(), static_cast<int>(digest.size()));
    return std::string(reinterpret_cast<const char*>(out.data()), static_cast<std::size_t>(n));
}

/// 'sha256-…' of the text between the first `<tag>` and its `</tag>` ("" when the page has none).
std::string inline_hash(std::string_view page, std::string_view tag) {
    const std::string open = fmt::format("<{}>", tag), close = fmt::format("</{}>", tag);
    const std::size_t begin = page.find(open);
    if (begin == std::string_view::npos) return "";
    const std::size_t text = begin + open.size();
    const std::size_t end = page.find(close, text);
    if (end == std::string_view::npos) return "";
    return fmt::format(" 'sha256-{}'", base64(sha256(page.substr(text, end - text))));
}

PlaygroundPage build() {
    PlaygroundPage page;
    page.body = std::string_view(reinterpret_cast<const char*>(playground_html), sizeof playground_html);
    const auto digest = sha256(page.body);
    std::string hex;
    for (std::size_t i = 0; i < 16; ++i) hex += fmt::format("{:02x}", digest[i]);
    page.etag = fmt::format("\"{}\"", hex);  // (not `= "\""` then `+=`: g++ 12's -Wrestrict false positive)
    // default-src 'none': nothing the policy does not name loads; connect-src 'self': the page talks
    // only to this gateway; no framing, no <base>, no form posts elsewhere.
    page.csp = fmt::format("default-src 'none'; script-src{}; style-src{}; connect-src 'self'; img-src 'self'; "
                           "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                           inline_hash(page.body, "script"), inline_hash(page.body, "style"));
    return page;
}

}  // namespace

const PlaygroundPage& playground_page() {
    static const PlaygroundPage page = build();
    return page;
}

bool etag_matches(std::string_view if_none_match, std::string_view etag) {
    if (if_none_match.find('*') != std::string_view::npos) return true;
    return !etag.empty() && if_none_match.find(etag) != std::string_view::npos;
}

}  // namespace gateway
