// llmfast/detail/text_scan.hpp — small text helpers shared by the compressor and the truncator
// (internal: code fences, whitespace, sentence ends, fast UTF-8 scans; character classes are in
// detail/unicode.hpp). Not part of the public API.
#pragma once

#include <llmfast/version.hpp>

#include <llmfast/detail/bytes.hpp>
#include <llmfast/detail/unicode.hpp>
#include <llmfast/utf8.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

LLMFAST_BEGIN_NAMESPACE
namespace detail {

/// Code points in valid UTF-8: the bytes that are not continuation bytes (10xxxxxx), 8 at a time.
inline std::size_t count_code_points_fast(std::string_view text) noexcept {
    constexpr std::uint64_t high = 0x8080808080808080ULL;
    std::size_t continuation = 0;
    std::size_t pos = 0;
    for (; pos + 8 <= text.size(); pos += 8) {
        const std::uint64_t x = load64(text.data() + pos);
        continuation += static_cast<std::size_t>(__builtin_popcountll(x & ~(x << 1) & high));
    }
    for (; pos < text.size(); ++pos) continuation += (static_cast<unsigned char>(text[pos]) & 0xC0U) == 0x80U ? 1U : 0U;
    return text.size() - continuation;
}

/// Same answer as utf8::is_valid, faster on long texts: 8 ASCII bytes at a time, and the common
/// three-byte sequences (most of CJK) checked inline; everything else goes through utf8::decode.
inline bool is_valid_utf8_fast(std::string_view text) noexcept {
    const auto* b = reinterpret_cast<const unsigned char*>(text.data());
    const std::size_t n = text.size();
    std::size_t pos = 0;
    while (pos < n) {
        if (pos + 8 <= n && (load64(text.data() + pos) & 0x8080808080808080ULL) == 0) {
            pos += 8;
            continue;
        }
        const unsigned char lead = b[pos];
        if (lead < 0x80U) {
            ++pos;
            continue;
        }
        // E1..EC and EE..EF take any two continuation bytes (E0 and ED restrict the second byte).
        if (pos + 2 < n && lead >= 0xE1U && lead <= 0xEFU && lead != 0xEDU && (b[pos + 1] & 0xC0U) == 0x80U &&
            (b[pos + 2] & 0xC0U) == 0x80U) {
            pos += 3;
            continue;
        }
        const utf8::DecodeResult d = utf8::decode(text, pos);
        if (d.status != utf8::DecodeStatus::Valid) return false;
        pos += d.length;
    }
    return true;
}

/// A byte range [begin, end) of a text, and whether it is a fenced code block (``` or ~~~ fences,
/// the opening and closing lines included).
struct TextSegment {
    std::size_t begin = 0;
    std::size_t end = 0;
    bool fenced = false;
};

/// True when the line starting at `pos` opens or closes a fence: up to 3 spaces, then ``` or ~~~.
/// Returns the fence character ('`' or '~') or 0.
inline char fence_at(std::string_view text, std::size_t pos) noexcept {
    std::size_t spaces = 0;
    while (pos < text.size() && text[pos] == ' ' && spaces < 3) {
        ++pos;
        ++spaces;
    }
    if (pos + 3 > text.size()) return 0;
    const char c = text[pos];
    if ((c == '`' || c == '~') && text[pos + 1] == c && text[pos + 2] == c) return c;
    return 0;
}

/// Splits `text` into prose and fenced segments, line-aligned: every segment but the last ends just
/// after a '\n'. An unclosed fence runs to the end of the text (Markdown's rule).
inline std::vector<TextSegment> split_fences(std::string_view text) {
    std::vector<TextSegment> segments;
    std::size_t prose_begin = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t line_end = text.find('\n', pos);
        line_end = line_end == std::string_view::npos ? text.size() : line_end + 1;
        const char fence = fence_at(text, pos);
        if (fence == 0) {
            pos = line_end;
            continue;
        }
        if (pos > prose_begin) segments.push_back({prose_begin, pos, false});
        const std::size_t fence_begin = pos;
        pos = line_end;
        std::size_t fence_end = text.size();
        while (pos < text.size()) {
            std::size_t end = text.find('\n', pos);
            end = end == std::string_view::npos ? text.size() : end + 1;
            if (fence_at(text, pos) == fence) {
                fence_end = end;
                pos = end;
                break;
            }
            pos = end;
        }
        if (fence_end == text.size()) pos = text.size();
        segments.push_back({fence_begin, fence_end, true});
        prose_begin = fence_end;
    }
    if (prose_begin < text.size() || segments.empty()) segments.push_back({prose_begin, text.size(), false});
    return segments;
}

/// Length of the horizontal whitespace character at `pos` (space, tab, CR, FF, VT, U+00A0 no-break
/// space, U+3000 ideographic space), or 0.
inline std::size_t horizontal_space_at(std::string_view text, std::size_t pos) noexcept {
    const auto b = static_cast<unsigned char>(text[pos]);
    if (b == ' ' || b == '\t' || b == '\r' || b == '\f' || b == '\v') return 1;
    if (b == 0xC2U && pos + 1 < text.size() && static_cast<unsigned char>(text[pos + 1]) == 0xA0U) return 2;
    if (b == 0xE3U && pos + 2 < text.size() && static_cast<unsigned char>(text[pos + 1]) == 0x80U &&
        static_cast<unsigned char>(text[pos + 2]) == 0x80U)
        return 3;
    return 0;
}

/// If a sentence ends at `pos` (a sentence-ending punctuation mark, Chinese or ASCII), returns the
/// offset just after it and any closing quotes/brackets; else 0. ASCII '.', '!', '?' end a sentence
/// only when followed by whitespace or the end of the text ("3.14", "e.g.x" do not).
inline std::size_t sentence_end_at(std::string_view text, std::size_t pos) noexcept {
    const auto b = static_cast<unsigned char>(text[pos]);
    std::size_t end = 0;
    if (b == '.' || b == '!' || b == '?' || b == ';') {
        end = pos + 1;
        if (end < text.size() && text[end] != ' ' && text[end] != '\n' && text[end] != '\t' && text[end] != '\r' &&
            text[end] != '"' && text[end] != '\'' && text[end] != ')')
            return 0;
    } else if (b == 0xE3U && pos + 2 < text.size() && static_cast<unsigned char>(text[pos + 1]) == 0x80U &&
               static_cast<unsigned char>(text[pos + 2]) == 0x82U) {
        end = pos + 3;  // 。
    } else if (b == 0xEFU && pos + 2 < text.size() && static_cast<unsigned char>(text[pos + 1]) == 0xBCU) {
        const auto c = static_cast<unsigned char>(text[pos + 2]);
        if (c != 0x81U && c != 0x9FU && c != 0x9BU) return 0;  // ！ ？ ；
        end = pos + 3;
    } else {
        return 0;
    }
    // Absorb closing quotes and brackets: ” ’ 」 』 ） " ' )
    while (end < text.size()) {
        const auto c = static_cast<unsigned char>(text[end]);
        if (c == '"' || c == '\'' || c == ')') {
            ++end;
        } else if (c == 0xE2U && end + 2 < text.size() && static_cast<unsigned char>(text[end + 1]) == 0x80U &&
                   (static_cast<unsigned char>(text[end + 2]) == 0x9DU ||
                    static_cast<unsigned char>(text[end + 2]) == 0x99U)) {
            end += 3;
        } else if (c == 0xE3U && end + 2 < text.size() && static_cast<unsigned char>(text[end + 1]) == 0x80U &&
                   (static_cast<unsigned char>(text[end + 2]) == 0x8DU ||
                    static_cast<unsigned char>(text[end + 2]) == 0x8FU)) {
            end += 3;
        } else if (c == 0xEFU && end + 2 < text.size() && static_cast<unsigned char>(text[end + 1]) == 0xBCU &&
                   static_cast<unsigned char>(text[end + 2]) == 0x89U) {
            end += 3;
        } else {
            break;
        }
    }
    return end;
}

/// True for an ASCII letter, digit or underscore: what a word boundary separates.
constexpr bool is_ascii_word_byte(unsigned char b) noexcept {
    return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') || b == '_';
}

}  // namespace detail
LLMFAST_END_NAMESPACE
