// examples/gateway/playground.hpp — the playground page `GET /` serves (playground.html, compiled into
// the binary at build time by embed_file.cmake): its bytes and the headers that go with them.
//
// The page's script and style are inline (one self-contained file, nothing fetched from elsewhere),
// so the Content-Security-Policy names them by their SHA-256 instead of allowing inline code in
// general: a script injected into the page would not run. The hashes and the ETag are computed once,
// from the embedded bytes, so they can never disagree with the page that is served.
//
// Thread-safety: playground_page() builds its value once (a function-local static) and returns it
// read-only; any thread may call it. Errors: none (the page is a constant).
#pragma once

#include <string>
#include <string_view>

namespace gateway {

struct PlaygroundPage {
    std::string_view body;  ///< the HTML, UTF-8
    std::string etag;       ///< a strong validator: `"` + 32 hex digits of the body's SHA-256 + `"`
    std::string csp;        ///< Content-Security-Policy: only the page's own script and style, connections to itself
};

const PlaygroundPage& playground_page();

/// True when an If-None-Match header value names `etag` (a list, weak or strong) or is `*`.
bool etag_matches(std::string_view if_none_match, std::string_view etag);

}  // namespace gateway
