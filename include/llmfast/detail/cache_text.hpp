// llmfast/detail/cache_text.hpp — prompt normalization and character classes shared by the
// semantic cache (exact-tier keys, hit guards) and HashingEmbedder (features).
//
// Internal: users must not depend on anything here.
#pragma once

#include <llmfast/version.hpp>

#include <llmfast/utf8.hpp>
#include <llmfast/detail/unicode.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

LLMFAST_BEGIN_NAMESPACE
namespace detail {

/// True for code points treated as whitespace by normalization (ASCII whitespace, NBSP, the
/// Unicode space separators, line/paragraph separators, the ideographic space).
constexpr bool is_space_code_point(char32_t cp) noexcept {
    if (cp < 0x80U) return cp == ' ' || (cp >= '\t' && cp <= '\r');
    return cp == 0x85U || cp == 0xA0U || cp == 0x1680U || (cp >= 0x2000U && cp <= 0x200AU) || cp == 0x2028U ||
           cp == 0x2029U || cp == 0x202FU || cp == 0x205FU || cp == 0x3000U;
}

/// Han, kana, Hangul and Bopomofo (detail::is_cjk_script): scripts written without spaces, where
/// HashingEmbedder uses character uni/bigrams instead of words.
constexpr bool is_cjk(char32_t cp) noexcept { return is_cjk_script(cp); }

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
    // The output is never longer than the input (every mapping keeps or shrinks a character), so the
    // loop writes through a raw pointer into a pre-sized buffer: this is the exact tier's hot path.
    out.resize(text.size());
    char* const begin = out.data();
    char* dst = begin;
    bool pending_space = false;  // a whitespace run seen after some output: emitted before the next character
    std::size_t pos = 0;
    const std::size_t size = text.size();
    const char* const src = text.data();
    while (pos < size) {
        // Fastest path, 8 bytes at a time: a chunk of printable ASCII whose spaces are single (no
        // run to collapse, none at the chunk's edges) is lower-cased with SWAR arithmetic and copied
        // as is. Prompts are mostly such text. Little-endian only (byte 0 = lowest bits).
        while (std::endian::native == std::endian::little && pos + 8 <= size) {
            constexpr std::uint64_t ones = 0x0101010101010101ULL;
            constexpr std::uint64_t highs = 0x8080808080808080ULL;
            constexpr std::uint64_t lows = 0x7F7F7F7F7F7F7F7FULL;
            std::uint64_t word;
            std::memcpy(&word, src + pos, 8);
            // Any byte >= 0x80 (non-ASCII) or < 0x20 (tab, newline, control)? Exact as an "any" test.
            if ((word & highs) != 0 || ((word - ones * 0x20) & ~word & highs) != 0) break;
            const std::uint64_t x = word ^ (ones * 0x20);
            const std::uint64_t spaces = ~(((x & lows) + lows) | x) & highs;  // exact: high bit per space byte
            const bool leading_space_ok = !(pending_space || dst == begin);
            if ((spaces & (spaces << 8)) != 0 || (spaces & (std::uint64_t{0x80} << 56)) != 0 ||
                ((spaces & 0x80U) != 0 && !leading_space_ok)) {
                break;
            }
            const std::uint64_t ge_a = word + ones * (0x80 - 'A');  // high bit set where byte >= 'A'
            const std::uint64_t gt_z = word + ones * (0x7F - 'Z');  // high bit set where byte > 'Z'
            word |= (ge_a & ~gt_z & highs) >> 2;                     // 0x80 >> 2 == 0x20: to lower case
            if (pending_space) {
                *dst++ = ' ';
                pending_space = false;
            }
            std::memcpy(dst, &word, 8);
            dst += 8;
            pos += 8;
        }
        if (pos >= size) break;
        const auto byte = static_cast<unsigned char>(src[pos]);
        if (byte < 0x80U) {  // fast path: ASCII
            ++pos;
            if (byte == ' ' || (byte >= '\t' && byte <= '\r')) {
                pending_space = dst != begin;
                continue;
            }
            if (pending_space) {
                *dst++ = ' ';
                pending_space = false;
            }
            *dst++ = static_cast<char>(static_cast<unsigned>(byte - 'A') < 26U ? byte + ('a' - 'A') : byte);
            continue;
        }
        const utf8::DecodeResult result = utf8::decode(text, pos);
        if (result.status != utf8::DecodeStatus::Valid) {
            const std::size_t length = result.length == 0 ? 1 : result.length;
            if (pending_space) {
                *dst++ = ' ';
                pending_space = false;
            }
            for (std::size_t i = 0; i < length; ++i) *dst++ = src[pos + i];
            pos += length;
            continue;
        }
        char32_t cp = result.code_point;
        const std::size_t start = pos;
        pos += result.length;
        if (is_space_code_point(cp)) {
            pending_space = dst != begin;
            continue;
        }
        if (pending_space) {
            *dst++ = ' ';
            pending_space = false;
        }
        if (cp >= 0xFF01U && cp <= 0xFF5EU) {  // full-width ASCII variants
            cp -= 0xFEE0U;
            if (cp >= 'A' && cp <= 'Z') cp += 'a' - 'A';
            *dst++ = static_cast<char>(cp);
            continue;
        }
        for (std::size_t i = start; i < pos; ++i) *dst++ = src[i];
    }
    out.resize(static_cast<std::size_t>(dst - begin));
}

inline std::string normalize_prompt(std::string_view text) {
    std::string out;
    normalize_prompt(text, out);
    return out;
}

}  // namespace detail
LLMFAST_END_NAMESPACE
