// llmfast/utf8.hpp — UTF-8 validation, code-point boundaries and an incremental assembler.
//
// Every component that cuts, joins or streams text uses these so that no output ever splits a
// multi-byte character. Decoding follows Unicode's Table 3-7 (well-formed byte sequences): overlong
// forms, surrogates (U+D800..U+DFFF) and values above U+10FFFF are invalid. Invalid input is replaced
// with U+FFFD using the "maximal subpart" practice (W3C/WHATWG Encoding standard), so repairing the
// same bytes always gives the same text.
//
//     llmfast::utf8::Assembler assembler;
//     for (std::string_view token_bytes : model_output)       // a token may end mid-character
//         send(assembler.push(token_bytes));                  // only whole code points come out
//     send(assembler.finish());                               // a dangling tail becomes U+FFFD
//
// Thread-safety: the free functions are pure; an `Assembler` is a value owned by one stream.
//
// Errors: nothing here throws an `llmfast::Error`; the calls that build a string (`repair`,
// `append_repaired`, `append`, `Assembler`) can throw only std::bad_alloc.
#pragma once

#include <llmfast/version.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

LLMFAST_BEGIN_NAMESPACE
namespace utf8 {

/// U+FFFD REPLACEMENT CHARACTER, encoded.
inline constexpr std::string_view replacement_character = "\xEF\xBF\xBD";

enum class DecodeStatus : std::uint8_t {
    Valid,       ///< a complete, well-formed sequence
    Invalid,     ///< ill-formed: `length` bytes (the maximal subpart, at least 1) should become one U+FFFD
    Incomplete,  ///< the input ends inside a sequence that is well-formed so far: wait for more bytes
};

struct DecodeResult {
    char32_t code_point = 0;  ///< meaningful only when `status == Valid`
    std::size_t length = 0;   ///< bytes consumed (Valid, Invalid) or available (Incomplete)
    DecodeStatus status = DecodeStatus::Valid;
};

/// True for bytes 0x80..0xBF, which never start a code point.
constexpr bool is_continuation(unsigned char byte) noexcept { return (byte & 0xC0U) == 0x80U; }

/// Decodes the sequence starting at `pos` (which must be < text.size()).
constexpr DecodeResult decode(std::string_view text, std::size_t pos) noexcept {
    const auto byte_at = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
    const unsigned char lead = byte_at(pos);
    if (lead < 0x80U) return {lead, 1, DecodeStatus::Valid};

    std::size_t length = 0;
    unsigned char second_low = 0x80U;  // the second byte's allowed range depends on the lead byte
    unsigned char second_high = 0xBFU;
    char32_t value = 0;
    if (lead >= 0xC2U && lead <= 0xDFU) {
        length = 2;
        value = lead & 0x1FU;
    } else if (lead >= 0xE0U && lead <= 0xEFU) {
        length = 3;
        value = lead & 0x0FU;
        if (lead == 0xE0U) second_low = 0xA0U;   // no overlong forms
        if (lead == 0xEDU) second_high = 0x9FU;  // no surrogates
    } else if (lead >= 0xF0U && lead <= 0xF4U) {
        length = 4;
        value = lead & 0x07U;
        if (lead == 0xF0U) second_low = 0x90U;   // no overlong forms
        if (lead == 0xF4U) second_high = 0x8FU;  // nothing above U+10FFFF
    } else {
        return {0, 1, DecodeStatus::Invalid};    // 0x80..0xC1 or 0xF5..0xFF can't start a sequence
    }

    for (std::size_t i = 1; i < length; ++i) {
        if (pos + i >= text.size()) return {0, i, DecodeStatus::Incomplete};
        const unsigned char byte = byte_at(pos + i);
        const unsigned char low = i == 1 ? second_low : 0x80U;
        const unsigned char high = i == 1 ? second_high : 0xBFU;
        if (byte < low || byte > high) return {0, i, DecodeStatus::Invalid};
        value = (value << 6) | (byte & 0x3FU);
    }
    return {value, length, DecodeStatus::Valid};
}

}  // namespace utf8

namespace detail {

/// The first ill-formed subsequence of `text` at or after `pos`: its offset (`text.size()` when there
/// is none) and its length (as utf8::decode reports it).
struct Utf8Invalid {
    std::size_t pos;
    std::size_t length;
};

constexpr Utf8Invalid utf8_next_invalid(std::string_view text, std::size_t pos) noexcept {
    while (pos < text.size()) {
        // ASCII dominates most prompts: skip it a byte at a time without the full decoder.
        if (static_cast<unsigned char>(text[pos]) < 0x80U) {
            ++pos;
            continue;
        }
        const utf8::DecodeResult result = utf8::decode(text, pos);
        if (result.status != utf8::DecodeStatus::Valid) return {pos, result.length};
        pos += result.length;
    }
    return {text.size(), 0};
}

}  // namespace detail

namespace utf8 {

/// Offset of the first byte that is not part of a well-formed sequence (an incomplete sequence at the
/// end counts as ill-formed), or `std::string_view::npos` when `text` is valid UTF-8.
constexpr std::size_t find_invalid(std::string_view text) noexcept {
    const std::size_t pos = detail::utf8_next_invalid(text, 0).pos;
    return pos < text.size() ? pos : std::string_view::npos;
}

/// True when `text` is well-formed UTF-8.
constexpr bool is_valid(std::string_view text) noexcept { return find_invalid(text) == std::string_view::npos; }

/// The largest code-point boundary <= `pos` (clamped to text.size()). A boundary is 0, text.size(),
/// or an offset whose byte is not a continuation byte. Steps back at most 3 bytes, so on ill-formed
/// input it still returns quickly (and never splits a well-formed sequence).
constexpr std::size_t floor_boundary(std::string_view text, std::size_t pos) noexcept {
    if (pos >= text.size()) return text.size();
    std::size_t steps = 0;
    while (pos > 0 && steps < 3 && is_continuation(static_cast<unsigned char>(text[pos]))) {
        --pos;
        ++steps;
    }
    return pos;
}

/// The smallest code-point boundary >= `pos` (clamped to text.size()).
constexpr std::size_t ceil_boundary(std::string_view text, std::size_t pos) noexcept {
    if (pos >= text.size()) return text.size();
    std::size_t steps = 0;
    while (pos < text.size() && steps < 3 && is_continuation(static_cast<unsigned char>(text[pos]))) {
        ++pos;
        ++steps;
    }
    return pos;
}

/// Length of the longest prefix of `text` that does not end inside an incomplete (but so far
/// well-formed) sequence: the bytes after it are what a stream must hold back until more arrive.
constexpr std::size_t complete_prefix_length(std::string_view text) noexcept {
    const std::size_t start = text.size() > 3 ? text.size() - 3 : 0;
    for (std::size_t pos = text.size(); pos > start;) {
        --pos;
        const auto byte = static_cast<unsigned char>(text[pos]);
        if (is_continuation(byte)) continue;
        return decode(text, pos).status == DecodeStatus::Incomplete ? pos : text.size();
    }
    return text.size();
}

/// Number of code points; each ill-formed subpart counts as one (it would become one U+FFFD).
constexpr std::size_t count_code_points(std::string_view text) noexcept {
    std::size_t count = 0;
    for (std::size_t pos = 0; pos < text.size(); ++count) {
        const auto byte = static_cast<unsigned char>(text[pos]);
        pos += byte < 0x80U ? 1 : decode(text, pos).length;
    }
    return count;
}

/// Appends the encoding of `code_point` (U+FFFD for surrogates and values above U+10FFFF).
inline void append(std::string& out, char32_t code_point) {
    if (code_point < 0x80U) {
        out.push_back(static_cast<char>(code_point));
    } else if (code_point < 0x800U) {
        out.push_back(static_cast<char>(0xC0U | (code_point >> 6)));
        out.push_back(static_cast<char>(0x80U | (code_point & 0x3FU)));
    } else if (code_point >= 0xD800U && code_point <= 0xDFFFU) {
        out.append(replacement_character);
    } else if (code_point < 0x10000U) {
        out.push_back(static_cast<char>(0xE0U | (code_point >> 12)));
        out.push_back(static_cast<char>(0x80U | ((code_point >> 6) & 0x3FU)));
        out.push_back(static_cast<char>(0x80U | (code_point & 0x3FU)));
    } else if (code_point <= 0x10FFFFU) {
        out.push_back(static_cast<char>(0xF0U | (code_point >> 18)));
        out.push_back(static_cast<char>(0x80U | ((code_point >> 12) & 0x3FU)));
        out.push_back(static_cast<char>(0x80U | ((code_point >> 6) & 0x3FU)));
        out.push_back(static_cast<char>(0x80U | (code_point & 0x3FU)));
    } else {
        out.append(replacement_character);
    }
}

/// Appends `text` to `out` with every ill-formed subpart (including an incomplete tail) replaced by
/// U+FFFD. Valid input is appended unchanged.
inline void append_repaired(std::string& out, std::string_view text) {
    std::size_t clean_start = 0;  // start of the run of valid bytes not yet copied
    for (;;) {
        const detail::Utf8Invalid invalid = detail::utf8_next_invalid(text, clean_start);
        if (invalid.pos == text.size()) break;
        out.append(text.substr(clean_start, invalid.pos - clean_start));
        out.append(replacement_character);
        clean_start = invalid.pos + invalid.length;
    }
    out.append(text.substr(clean_start));
}

/// `text` with every ill-formed subpart replaced by U+FFFD.
inline std::string repair(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    append_repaired(out, text);
    return out;
}

/// Turns a stream of byte chunks (model tokens) into chunks of whole code points.
///
/// Invariant: `pending_` holds at most 3 bytes, and they are a well-formed but incomplete sequence.
/// `push` returns valid UTF-8 only: complete sequences pass through, ill-formed bytes become U+FFFD,
/// an incomplete tail waits for the next chunk. `finish` flushes that tail as U+FFFD.
class Assembler {
public:
    /// Returns the whole code points completed by `bytes`. The view is valid until the next call and
    /// while `bytes` lives (when nothing needed fixing it is `bytes` itself, with no copy).
    std::string_view push(std::string_view bytes) {
        output_.clear();
        if (pending_.empty() && is_valid(bytes)) {
            return bytes;  // the common case: a token of whole characters is handed on as is
        }
        pending_.append(bytes);
        const std::size_t complete = complete_prefix_length(pending_);
        append_repaired(output_, std::string_view(pending_).substr(0, complete));
        pending_.erase(0, complete);
        return output_;
    }

    /// Ends the stream: returns the held-back tail as U+FFFD (or nothing), and resets the assembler.
    std::string_view finish() {
        output_.clear();
        if (!pending_.empty()) output_.append(replacement_character);
        pending_.clear();
        return output_;
    }

    /// Bytes held back, waiting for the rest of their character (0..3).
    [[nodiscard]] std::size_t pending_bytes() const noexcept { return pending_.size(); }

private:
    std::string pending_;
    std::string output_;
};

}  // namespace utf8
LLMFAST_END_NAMESPACE
