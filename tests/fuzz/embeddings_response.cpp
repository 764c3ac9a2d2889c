// Fuzz target: the embeddings response parser (llmfast/detail/embeddings_json.hpp), against its
// documented contract.
//   - Every input either parses or throws Error(InvalidFormat); nothing else escapes.
//   - Accepted: every value is a finite float; the same body with whitespace around it gives the same
//     floats; the body with its last non-whitespace byte removed, or with a byte appended, is rejected.
// Input: byte 0 picks the mode, byte 1 the count (0..3), byte 2 the dimension (1..8).
//   mode even: the rest is the body as is.
//   mode odd:  the rest describes a body built here (floats from the bytes, then one defect picked by
//              a byte: none, an index out of order, a row one value short, an extra row, a NaN
//              literal, a huge number, a missing "data"); the expected outcome is known and checked,
//              and an accepted body must give exactly the floats written (printed with %.9g).
#include <llmfast/detail/embeddings_json.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

// Parses; true when accepted. Anything but InvalidFormat aborts.
bool parse(std::string_view body, std::size_t count, std::size_t dim, std::vector<float>& out) {
    out.assign(count * dim, 0.0F);
    try {
        llmfast::detail::parse_embeddings_response(body, count, dim, out);
        return true;
    } catch (const llmfast::Error& e) {
        check(e.code() == llmfast::ErrorCode::InvalidFormat);
        return false;
    }
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

void check_accepted_invariants(std::string_view body, std::size_t count, std::size_t dim, const std::vector<float>& out) {
    for (const float v : out) check(std::isfinite(v));
    std::vector<float> again;
    const std::string padded = " \n\t" + std::string(body) + "\r\n ";
    check(parse(padded, count, dim, again));
    check(same_bits(again, out));
    check(!parse(std::string(body) + "x", count, dim, again));
    std::string_view trimmed = body;
    while (!trimmed.empty() && (trimmed.back() == ' ' || trimmed.back() == '\n' || trimmed.back() == '\r' || trimmed.back() == '\t'))
        trimmed.remove_suffix(1);
    check(!trimmed.empty());
    check(!parse(trimmed.substr(0, trimmed.size() - 1), count, dim, again));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 3) return 0;
    const std::uint8_t mode = data[0];
    const std::size_t count = data[1] % 4;
    const std::size_t dim = 1 + data[2] % 8;
    const std::string_view rest(reinterpret_cast<const char*>(data + 3), size - 3);
    std::vector<float> out;
    if (mode % 2 == 0) {
        if (parse(rest, count, dim, out)) check_accepted_invariants(rest, count, dim, out);
        return 0;
    }
    // Built body: floats from 2 bytes each (value in [-8, 8)), a defect from the first byte.
    const std::uint8_t defect = rest.empty() ? 0 : static_cast<std::uint8_t>(rest[0]) % 8;
    std::vector<float> written(count * dim);
    for (std::size_t i = 0; i < written.size(); ++i) {
        const std::size_t at = 1 + 2 * i;
        unsigned raw = 0;
        if (at + 1 < rest.size())
            raw = (static_cast<unsigned>(static_cast<unsigned char>(rest[at])) << 8U) | static_cast<unsigned>(static_cast<unsigned char>(rest[at + 1]));
        char text[32];
        std::snprintf(text, sizeof text, "%.9g", (static_cast<double>(raw) - 32768.0) / 4096.0);
        written[i] = std::strtof(text, nullptr);
    }
    std::string body = defect == 6 ? "{\"dat\":[" : "{\"object\":\"list\",\"data\":[";
    const std::size_t rows = count + (defect == 3 ? 1 : 0);
    for (std::size_t r = 0; r < rows; ++r) {
        if (r) body += ',';
        std::size_t index = r;
        if (defect == 1 && count >= 2 && r < 2) index = 1 - r;  // first two swapped
        body += "{\"index\":" + std::to_string(index) + ",\"embedding\":[";
        const std::size_t n = (defect == 2 && r == 0) ? dim - 1 : dim;
        for (std::size_t k = 0; k < n; ++k) {
            if (k) body += ',';
            if (defect == 4 && r == 0 && k == 0) {
                body += "NaN";
            } else if (defect == 5 && r == 0 && k == 0) {
                body += "1e39";  // finite as a double, not as a float
            } else {
                char text[32];
                std::snprintf(text, sizeof text, "%.9g", static_cast<double>(r < count ? written[r * dim + k] : 1.0F));
                body += text;
            }
        }
        body += "]}";
    }
    body += "],\"usage\":{\"prompt_tokens\":3}}";
    const bool accepted = parse(body, count, dim, out);
    const bool defective = (defect == 1 && count >= 2) || (defect == 2 && count >= 1) || defect == 3 ||
                           ((defect == 4 || defect == 5) && count >= 1) || defect == 6;
    check(accepted == !defective);
    if (accepted) {
        check(same_bits(out, written));
        check_accepted_invariants(body, count, dim, out);
    }
    return 0;
}
