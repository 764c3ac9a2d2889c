// llmfast/detail/cache_text.hpp — prompt normalization and character classes shared by the
// semantic cache (exact-tier keys, hit guards) and HashingEmbedder (features).
//
// Internal: users must not depend on anything here.
#pragma once

#include <llmfast/utf8.hpp>

#include <cstddef>
#include <string>
#include <string_view>

namespace llmfast::detail {

/// True for code points treated as whitespace by normalization (ASCII whitespace, NBSP, the
/// Unicode space separators, line/paragraph separators, the ideographic space).
constexpr bool is_space_code_point(char32_t cp) noexcept {
    if (cp < 0x80U) return cp == ' ' || (cp >= '\t' && cp <= '\r');
    return cp == 0x85U || cp == 0xA0U || cp == 0x1680U || (cp >= 0x2000U && cp <= 0x200AU) || cp == 0x2028U ||
           cp == 0x2029U || cp == 0x202FU || cp == 0x205FU || cp == 0x3000U;
}

/// Han, kana, Hangul and CJK compatibility ideographs: scripts written without spaces, where
/// HashingEmbedder uses character uni/bigrams instead of words.
constexpr bool is_cjk(char32_t cp) noexcept {
    return (cp >= 0x2E80U && cp <= 0x2FDFU) ||   // radicals
           (cp >= 0x3040U && cp <= 0x30FFU) ||   // hiragana, katakana
           (cp >= 0x3100U && cp <= 0x31FFU) ||   // bopomofo, kana extensions
           (cp >= 0x3400U && cp <= 0x4DBFU) ||   // CJK extension A
           (cp >= 0x4E00U && cp <= 0x9FFFU) ||   // CJK unified ideographs
           (cp >= 0xAC00U && cp <= 0xD7AFU) ||   // Hangul syllables
           (cp >= 0xF900U && cp <= 0xFAFFU) ||   // compatibility ideographs
           (cp >= 0x20000U && cp <= 0x3FFFFU);   // extensions B..
}

/// Punctuation and symbols that separate words (ASCII punctuation, Latin-1 punctuation, general
/// punctuation, CJK punctuation, full-width forms, symbols and arrows).
constexpr bool is_separator(char32_t cp) noexcept {
    if (cp < 0x80U) {
        return !((cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z'));
    }
    return (cp >= 0x80U && cp <= 0xBFU) || cp == 0xD7U || cp == 0xF7U || (cp >= 0x2000U && cp <= 0x2BFFU) ||
           (cp >= 0x3000U && cp <= 0x303FU) || (cp >= 0xFE30U && cp <= 0xFE4FU) || (cp >= 0xFF00U && cp <= 0xFF0FU) ||
           (cp >= 0xFF1AU && cp <= 0xFF20U) || (cp >= 0xFF3BU && cp <= 0xFF40U) || (cp >= 0xFF5BU && cp <= 0xFF65U) ||
           cp == 0xFFFDU || cp == 0x30FBU;
}

/// One code point (or one invalid byte) of a string, as normalization and the embedder see it.
struct CodePoint {
    char32_t value;     ///< the code point; for an invalid byte, 0xFFFD
    std::size_t length; ///< bytes it occupies in the source
};

inline CodePoint next_code_point(std::string_view text, std::size_t pos) noexcept {
    const auto byte = static_cast<unsigned char>(text[pos]);
    if (byte < 0x80U) return {byte, 1};
    const utf8::DecodeResult result = utf8::decode(text, pos);
    if (result.status == utf8::DecodeStatus::Valid) return {result.code_point, result.length};
    return {0xFFFDU, result.length == 0 ? 1 : result.length};
}

/// The exact tier's normal form: whitespace trimmed and collapsed to one ASCII space, ASCII letters
/// lower-cased, full-width forms (U+FF01..U+FF5E) and the ideographic space mapped to ASCII, so
/// "  What is  ML？" and "what is ml?" agree. Ill-formed UTF-8 bytes are copied unchanged (two
/// different invalid prompts must not collapse into one key). Writes into `out` (cleared first) so
/// a caller can reuse one buffer and keep the hot path free of allocations.
inline void normalize_prompt(std::string_view text, std::string& out) {
    out.clear();
    out.reserve(text.size());
    bool pending_space = false;  // a whitespace run seen after some output: emitted before the next character
    std::size_t pos = 0;
    const std::size_t size = text.size();
    while (pos < size) {
        const auto byte = static_cast<unsigned char>(text[pos]);
        if (byte < 0x80U) {  // fast path: ASCII
            ++pos;
            if (byte == ' ' || (byte >= '\t' && byte <= '\r')) {
                pending_space = !out.empty();
                continue;
            }
            if (pending_space) {
                out.push_back(' ');
                pending_space = false;
            }
            out.push_back(static_cast<char>(byte >= 'A' && byte <= 'Z' ? byte + ('a' - 'A') : byte));
            continue;
        }
        const utf8::DecodeResult result = utf8::decode(text, pos);
        if (result.status != utf8::DecodeStatus::Valid) {
            const std::size_t length = result.length == 0 ? 1 : result.length;
            if (pending_space) {
                out.push_back(' ');
                pending_space = false;
            }
            out.append(text.substr(pos, length));
            pos += length;
            continue;
        }
        char32_t cp = result.code_point;
        const std::size_t start = pos;
        pos += result.length;
        if (is_space_code_point(cp)) {
            pending_space = !out.empty();
            continue;
        }
        if (pending_space) {
            out.push_back(' ');
            pending_space = false;
        }
        if (cp >= 0xFF01U && cp <= 0xFF5EU) {  // full-width ASCII variants
            cp -= 0xFEE0U;
            if (cp >= 'A' && cp <= 'Z') cp += 'a' - 'A';
            out.push_back(static_cast<char>(cp));
            continue;
        }
        out.append(text.substr(start, result.length));
    }
}

inline std::string normalize_prompt(std::string_view text) {
    std::string out;
    normalize_prompt(text, out);
    return out;
}

}  // namespace llmfast::detail
