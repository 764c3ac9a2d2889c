// llmfast/bpe_tokenizer.hpp — exact token counts: a tiktoken-compatible byte-level BPE tokenizer.
//
// Budgets are billed in the model's tokens, so a truncator that "never exceeds the budget" needs the
// exact count. `BpeTokenizer` loads a tiktoken rank file (one `base64(token bytes) rank` per line,
// as OpenAI publishes cl100k_base and o200k_base) from a path you supply, splits text with the
// encoding's pre-tokenization pattern (written by hand over UTF-8, see below) and merges each piece
// with tiktoken's algorithm, giving the same ids as tiktoken. It models `llmfast::TokenCounter`.
//
//     auto tokenizer = llmfast::BpeTokenizer::cl100k_base("/data/cl100k_base.tiktoken");
//     std::size_t n = tokenizer.count("Hello, 世界!");                  // exact, no allocation
//     std::vector<llmfast::TokenId> ids = tokenizer.encode("Hello");   // [9906]
//     std::string text = tokenizer.decode(ids);                        // "Hello"
//     tokenizer.encode("<|endoftext|>", {.allow_special = true});     // [100257]
//
// An encoding is a rank file plus a `BpeEncoding`: a name, a named split pattern and the special
// tokens; `BpeEncoding::cl100k_base()` and `o200k_base()` describe OpenAI's. Another tiktoken-format
// encoding needs no change here: name one of the patterns, or pass your own splitter
// (`BpeEncoding::custom_split`).
//
// Special-token strings such as `<|endoftext|>` are ordinary text by default (tiktoken's
// `encode_ordinary`): user input cannot smuggle a control token in. `EncodeOptions::allow_special`
// recognizes them (tiktoken's `encode(text, allowed_special="all")`).
//
// Pre-tokenization: tiktoken splits with a regex (`\p{L}`, `\p{N}`, possessive quantifiers) that
// std::regex cannot express; each pattern is implemented here as a hand-written matcher that follows
// the regex's leftmost-first, backtracking semantics alternative by alternative, over Unicode classes
// generated from the UCD (detail/unicode_tables.hpp, scripts/gen_unicode_tables.py). It needs no
// regex library and does no more work than the patterns require. Invalid UTF-8 (which tiktoken cannot receive) is
// split as if each ill-formed subsequence were a symbol, and encodes to its byte tokens, so
// `decode(encode(s)) == s` holds for any bytes.
//
// Merging: tiktoken's rule (repeatedly merge the adjacent pair of lowest rank, leftmost on ties).
// Short pieces use tiktoken's array scan on the stack; long pieces (a long word, a run of digits or
// spaces, base64 blobs) use a heap and a linked list, O(n log n) instead of O(n^2), same result.
// Ranks live in a flat open-addressing map (16-byte slots that hold a token of up to 8 bytes
// outright, so most lookups touch one cache line) behind a small Bloom filter, since most merge
// candidates are not tokens; two-byte tokens come from a direct 64K table.
//
// Thread-safety: a constructed `BpeTokenizer` is immutable; `encode`, `decode` and `count` may be
// called from any number of threads. `count` allocates nothing except, for pieces longer than
// `detail::bpe_small_piece_limit` bytes, a per-thread scratch buffer that is reused.
//
// Errors:
//   - `BpeTokenizer(path, encoding)`, `cl100k_base(path)`, `o200k_base(path)`: `IoError` (with the
//     path and the reason) when the file cannot be opened or read — a missing file, a directory, a
//     read error part way through; no std::ios_base::failure or filesystem_error escapes; otherwise
//     as `from_rank_data`.
//   - `from_rank_data(data, encoding)`: `InvalidFormat` for a malformed rank file (bad base64, a
//     missing or non-numeric rank, ranks that are not exactly 0..n-1, duplicate token bytes, a byte
//     without a single-byte token, fewer or more ranks than the encoding expects, i.e. a truncated
//     file, a special token id that collides with a rank); `InvalidArgument` for a bad `BpeEncoding`
//     (an empty or duplicate special token).
//   - `decode`: `InvalidArgument` for an id that is neither a rank nor a special token.
//   - `encode`, `count`: throw nothing but `std::bad_alloc` (`encode`'s result; the per-thread
//     scratch of either, the first time a thread meets a long piece).
#pragma once

#include <llmfast/version.hpp>

#include <llmfast/detail/file_io.hpp>
#include <llmfast/detail/bytes.hpp>
#include <llmfast/detail/unicode.hpp>
#include <llmfast/error.hpp>
#include <llmfast/token_counter.hpp>
#include <llmfast/utf8.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

LLMFAST_BEGIN_NAMESPACE

/// A token id: a rank of the rank file, or a special token's id.
using TokenId = std::uint32_t;

/// The pre-tokenization patterns implemented (each matches the tiktoken regex named).
enum class SplitPattern : std::uint8_t {
    /// cl100k_base as the npm `tiktoken` (WASM) build and Python tiktoken < 0.7 define it:
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|`
    /// `\s*[\r\n]+|\s+(?!\S)|\s+`
    Cl100k,
    /// cl100k_base as Python tiktoken >= 0.7 writes it (possessive quantifiers and `\s++$`). It
    /// differs from `Cl100k` only for a whitespace run that ends the text and holds a line break
    /// followed by other whitespace ("a\n  "), which it keeps as one piece.
    Cl100kTrailingSpace,
    /// o200k_base: `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+`
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+`
    /// `[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|`
    /// `\s*[\r\n]+|\s+(?!\S)|\s+`
    O200k,
};

/// A special token: its text and its id (outside the rank file's ranks).
struct SpecialToken {
    std::string text;
    TokenId id = 0;
};

/// A pre-tokenizer of your own: the end of the piece that starts at `pos` (< text.size()). It must
/// return a value in (pos, text.size()] for any bytes, invalid UTF-8 included.
using PieceEndFunction = std::size_t (*)(std::string_view text, std::size_t pos) noexcept;

/// What makes an encoding besides its rank file.
struct BpeEncoding {
    std::string name;
    SplitPattern pattern = SplitPattern::Cl100k;
    std::vector<SpecialToken> special_tokens;
    /// The number of ranks the rank file must hold (a shorter file is truncated); 0 accepts any.
    std::size_t expected_ranks = 0;
    /// When set, splits the text instead of `pattern` (for an encoding whose regex is not one of
    /// the built-in patterns).
    PieceEndFunction custom_split = nullptr;

    /// OpenAI's cl100k_base (GPT-4, GPT-3.5-turbo, text-embedding-3): 100,256 ranks.
    static BpeEncoding cl100k_base() {
        return {"cl100k_base",
                SplitPattern::Cl100k,
                {{"<|endoftext|>", 100257},
                 {"<|fim_prefix|>", 100258},
                 {"<|fim_middle|>", 100259},
                 {"<|fim_suffix|>", 100260},
                 {"<|endofprompt|>", 100276}},
                100256,
                nullptr};
    }
    /// OpenAI's o200k_base (GPT-4o, o1, o3): 199,998 ranks.
    static BpeEncoding o200k_base() {
        return {"o200k_base", SplitPattern::O200k, {{"<|endoftext|>", 199999}, {"<|endofprompt|>", 200018}}, 199998, nullptr};
    }
};

/// Options of `encode` and `count`.
struct EncodeOptions {
    /// Recognize the encoding's special-token strings in the text and emit their ids; by default they
    /// are encoded as ordinary text (tiktoken's `encode_ordinary`).
    bool allow_special = false;
};

namespace detail {

inline constexpr TokenId bpe_no_rank = std::numeric_limits<TokenId>::max();
/// Pieces up to this many bytes are merged with tiktoken's scan on a stack array; longer ones with a heap.
inline constexpr std::size_t bpe_small_piece_limit = 96;

// ---------------------------------------------------------------------------------------------
// Character classes: detail::unicode_class (detail/unicode.hpp); the low 3 bits are the category, bit 3 is \s.
inline constexpr std::array<std::uint8_t, 128> bpe_ascii_class = [] {
    std::array<std::uint8_t, 128> table{};
    for (char32_t cp = 0; cp < 128; ++cp) table[cp] = unicode_class(cp);
    return table;
}();

constexpr bool bpe_is_letter(std::uint8_t cls) noexcept { return ((0x3EU >> (cls & 7U)) & 1U) != 0; }   // Lu Ll Lt Lm Lo
constexpr bool bpe_is_number(std::uint8_t cls) noexcept { return (cls & 7U) == unicode_number; }
constexpr bool bpe_is_space(std::uint8_t cls) noexcept { return (cls & unicode_space) != 0; }
// o200k's [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}] and [\p{Ll}\p{Lm}\p{Lo}\p{M}]
constexpr bool bpe_is_upper_class(std::uint8_t cls) noexcept { return ((0x7AU >> (cls & 7U)) & 1U) != 0; }
constexpr bool bpe_is_lower_class(std::uint8_t cls) noexcept { return ((0x74U >> (cls & 7U)) & 1U) != 0; }

/// One character of the text: a code point, or one ill-formed UTF-8 subsequence (class other, so it
/// behaves like a symbol: not a letter, digit or space).
struct BpeChar {
    std::uint32_t length;
    std::uint8_t cls;
    char32_t cp;  ///< 0xFFFFFFFF for an ill-formed subsequence
};

inline BpeChar bpe_char_at_multibyte(std::string_view text, std::size_t pos) noexcept {
    const utf8::DecodeResult decoded = utf8::decode(text, pos);
    if (decoded.status != utf8::DecodeStatus::Valid)
        return {static_cast<std::uint32_t>(decoded.length), unicode_other, 0xFFFFFFFFU};
    return {static_cast<std::uint32_t>(decoded.length), unicode_class(decoded.code_point), decoded.code_point};
}

// Kept tiny so that it inlines into the splitters: ASCII is a table lookup.
inline BpeChar bpe_char_at(std::string_view text, std::size_t pos) noexcept {
    const auto byte = static_cast<unsigned char>(text[pos]);
    if (byte < 0x80U) return {1, bpe_ascii_class[byte], byte};
    return bpe_char_at_multibyte(text, pos);
}

constexpr bool bpe_is_line_break(char32_t cp) noexcept { return cp == U'\r' || cp == U'\n'; }
// [^\r\n\p{L}\p{N}]
constexpr bool bpe_is_word_prefix(const BpeChar& c) noexcept {
    return !bpe_is_letter(c.cls) && !bpe_is_number(c.cls) && !bpe_is_line_break(c.cp);
}
// [^\s\p{L}\p{N}]
constexpr bool bpe_is_symbol(const BpeChar& c) noexcept { return !bpe_is_letter(c.cls) && !bpe_is_number(c.cls) && !bpe_is_space(c.cls); }

/// Length of `(?i:'s|'t|'re|'ve|'m|'ll|'d)` at `pos`, 0 when there is none. Case-insensitive as the
/// regex crate does it (simple case folding), so U+017F LATIN SMALL LETTER LONG S counts as an s.
inline std::size_t bpe_contraction_length(std::string_view text, std::size_t pos) noexcept {
    if (pos + 1 >= text.size() || text[pos] != '\'') return 0;
    const auto lower = [&](std::size_t i) { return static_cast<unsigned char>(static_cast<unsigned char>(text[i]) | 0x20U); };
    const unsigned char a = lower(pos + 1);  // only 'X' and 'x' map to 'x' for the letters below
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (pos + 2 < text.size()) {
        if (static_cast<unsigned char>(text[pos + 1]) == 0xC5U && static_cast<unsigned char>(text[pos + 2]) == 0xBFU)
            return 3;  // U+017F
        const unsigned char b = lower(pos + 2);
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    }
    return 0;
}

template <class Predicate>
inline std::size_t bpe_run_end(std::string_view text, std::size_t pos, Predicate predicate) noexcept {
    while (pos < text.size()) {
        const BpeChar c = bpe_char_at(text, pos);
        if (!predicate(c)) break;
        pos += c.length;
    }
    return pos;
}

/// `\p{N}{1,3}` at `pos` (a digit is known to be there).
inline std::size_t bpe_digits_end(std::string_view text, std::size_t pos, const BpeChar& first) noexcept {
    std::size_t end = pos + first.length;
    for (int k = 1; k < 3 && end < text.size(); ++k) {
        const BpeChar c = bpe_char_at(text, end);
        if (!bpe_is_number(c.cls)) break;
        end += c.length;
    }
    return end;
}

/// ` ?[^\s\p{L}\p{N}]+` followed by `[\r\n]*` (or `[\r\n/]*` for o200k); 0 when it does not match.
inline std::size_t bpe_symbols_end(std::string_view text, std::size_t pos, const BpeChar& first, bool slash_tail) noexcept {
    std::size_t p = pos;
    BpeChar c = first;
    if (first.cp == U' ' && pos + 1 < text.size()) {
        p = pos + 1;
        c = bpe_char_at(text, p);
    }
    if (!bpe_is_symbol(c)) return 0;
    p = bpe_run_end(text, p + c.length, [](const BpeChar& d) { return bpe_is_symbol(d); });
    while (p < text.size() && (text[p] == '\r' || text[p] == '\n' || (slash_tail && text[p] == '/'))) ++p;
    return p;
}

/// The whitespace alternatives at `pos` (a blank is known to be there):
/// `[\s++$|]\s*[\r\n]+|\s+(?!\S)|\s+`.
inline std::size_t bpe_blanks_end(std::string_view text, std::size_t pos, bool whole_tail) noexcept {
    std::size_t end = pos;
    std::size_t last_start = pos;
    std::size_t after_line_break = 0;
    while (end < text.size()) {
        const BpeChar c = bpe_char_at(text, end);
        if (!bpe_is_space(c.cls)) break;
        if (bpe_is_line_break(c.cp)) after_line_break = end + 1;
        last_start = end;
        end += c.length;
    }
    if (whole_tail && end == text.size()) return end;  // \s++$
    if (after_line_break != 0) return after_line_break;  // \s*[\r\n]+ backtracks to the last line break
    if (end == text.size()) return end;                  // \s+(?!\S) at the end of the text
    if (last_start > pos) return last_start;             // \s+(?!\S): the last blank joins the next word
    return end;                                          // \s+: one blank before a non-blank
}

/// End of the cl100k piece that starts at `pos` (< text.size()).
inline std::size_t bpe_cl100k_piece_end(std::string_view text, std::size_t pos, bool whole_tail) noexcept {
    const BpeChar c = bpe_char_at(text, pos);
    if (c.cp == U'\'') {
        if (const std::size_t n = bpe_contraction_length(text, pos)) return pos + n;
    }
    const auto letter = [](const BpeChar& d) { return bpe_is_letter(d.cls); };
    if (bpe_is_letter(c.cls)) return bpe_run_end(text, pos + c.length, letter);
    if (bpe_is_word_prefix(c) && pos + c.length < text.size()) {
        const BpeChar next = bpe_char_at(text, pos + c.length);
        if (bpe_is_letter(next.cls)) return bpe_run_end(text, pos + c.length + next.length, letter);
    }
    if (bpe_is_number(c.cls)) return bpe_digits_end(text, pos, c);
    if (const std::size_t end = bpe_symbols_end(text, pos, c, false)) return end;
    return bpe_blanks_end(text, pos, whole_tail);  // what is left is a blank
}

/// o200k's first word alternative at `start`: `[U]*[W]+` (U, W: the two letter classes) plus an
/// optional contraction; 0 when it does not match. `[U]*` backtracks to the last position where
/// `[W]+` can start, i.e. the end of the U run if a W follows it, else the run's last U-and-W char.
inline std::size_t bpe_o200k_word1_end(std::string_view text, std::size_t start) noexcept {
    std::size_t p = start;
    std::size_t last_both = std::string_view::npos;
    while (p < text.size()) {
        const BpeChar c = bpe_char_at(text, p);
        if (!bpe_is_upper_class(c.cls)) break;
        if (bpe_is_lower_class(c.cls)) last_both = p;
        p += c.length;
    }
    std::size_t w_start = p;
    if (p >= text.size() || !bpe_is_lower_class(bpe_char_at(text, p).cls)) {
        if (last_both == std::string_view::npos) return 0;
        w_start = last_both;
    }
    const std::size_t end = bpe_run_end(text, w_start, [](const BpeChar& d) { return bpe_is_lower_class(d.cls); });
    return end + bpe_contraction_length(text, end);
}

/// o200k's second word alternative at `start`: `[U]+[W]*` plus an optional contraction; 0 if no match.
inline std::size_t bpe_o200k_word2_end(std::string_view text, std::size_t start) noexcept {
    const std::size_t upper_end = bpe_run_end(text, start, [](const BpeChar& d) { return bpe_is_upper_class(d.cls); });
    if (upper_end == start) return 0;
    const std::size_t end = bpe_run_end(text, upper_end, [](const BpeChar& d) { return bpe_is_lower_class(d.cls); });
    return end + bpe_contraction_length(text, end);
}

/// End of the o200k piece that starts at `pos` (< text.size()).
inline std::size_t bpe_o200k_piece_end(std::string_view text, std::size_t pos) noexcept {
    const BpeChar c = bpe_char_at(text, pos);
    // Each word alternative is tried with its optional prefix first, then without (regex order).
    const bool prefixed = bpe_is_word_prefix(c) && pos + c.length < text.size();
    if (prefixed) {
        if (const std::size_t end = bpe_o200k_word1_end(text, pos + c.length)) return end;
    }
    if (const std::size_t end = bpe_o200k_word1_end(text, pos)) return end;
    if (prefixed) {
        if (const std::size_t end = bpe_o200k_word2_end(text, pos + c.length)) return end;
    }
    if (const std::size_t end = bpe_o200k_word2_end(text, pos)) return end;
    if (bpe_is_number(c.cls)) return bpe_digits_end(text, pos, c);
    if (const std::size_t end = bpe_symbols_end(text, pos, c, true)) return end;
    return bpe_blanks_end(text, pos, false);
}

/// End of the piece of `pattern` that starts at `pos` (< text.size()); always > pos.
inline std::size_t bpe_piece_end(SplitPattern pattern, std::string_view text, std::size_t pos) noexcept {
    switch (pattern) {
        case SplitPattern::Cl100k: return bpe_cl100k_piece_end(text, pos, false);
        case SplitPattern::Cl100kTrailingSpace: return bpe_cl100k_piece_end(text, pos, true);
        case SplitPattern::O200k: return bpe_o200k_piece_end(text, pos);
    }
    return text.size();
}

// ---------------------------------------------------------------------------------------------
// Base64 (RFC 4648, standard alphabet, padded), as the rank files use it.

inline constexpr std::array<std::int8_t, 256> bpe_base64_values = [] {
    std::array<std::int8_t, 256> table{};
    table.fill(-1);
    constexpr std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (std::size_t i = 0; i < alphabet.size(); ++i)
        table[static_cast<unsigned char>(alphabet[i])] = static_cast<std::int8_t>(i);
    return table;
}();

/// Appends the decoded bytes to `out`; false when `text` is not canonical padded base64.
inline bool bpe_base64_decode(std::string_view text, std::string& out) {
    if (text.empty() || text.size() % 4 != 0) return false;
    for (std::size_t i = 0; i < text.size(); i += 4) {
        const bool last = i + 4 == text.size();
        std::uint32_t value = 0;
        int padding = 0;
        for (std::size_t k = 0; k < 4; ++k) {
            const char ch = text[i + k];
            if (ch == '=') {
                if (!last || k < 2) return false;
                ++padding;
                value <<= 6;
                continue;
            }
            if (padding > 0) return false;  // data after '='
            const std::int8_t v = bpe_base64_values[static_cast<unsigned char>(ch)];
            if (v < 0) return false;
            value = (value << 6) | static_cast<std::uint32_t>(v);
        }
        out.push_back(static_cast<char>((value >> 16) & 0xFFU));
        if (padding < 2) out.push_back(static_cast<char>((value >> 8) & 0xFFU));
        if (padding < 1) out.push_back(static_cast<char>(value & 0xFFU));
    }
    return true;
}

inline std::string bpe_base64_encode(std::string_view bytes) {
    constexpr std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    for (std::size_t i = 0; i < bytes.size(); i += 3) {
        const std::size_t n = std::min<std::size_t>(3, bytes.size() - i);
        std::uint32_t value = 0;
        for (std::size_t k = 0; k < 3; ++k)
            value = (value << 8) | (k < n ? static_cast<unsigned char>(bytes[i + k]) : 0U);
        out.push_back(alphabet[(value >> 18) & 63U]);
        out.push_back(alphabet[(value >> 12) & 63U]);
        out.push_back(n > 1 ? alphabet[(value >> 6) & 63U] : '=');
        out.push_back(n > 2 ? alphabet[value & 63U] : '=');
    }
    return out;
}

/// A word that determines a string of 1..8 bytes given its length, read without a variable-length
/// copy (two overlapping loads, or three single bytes), as wyhash does.
inline std::uint64_t bpe_short_key(const char* data, std::size_t length) noexcept {
    if (length >= 4) return std::uint64_t{load32(data)} | (std::uint64_t{load32(data + length - 4)} << 32);
    const auto byte = [&](std::size_t i) { return static_cast<std::uint64_t>(static_cast<unsigned char>(data[i])); };
    return byte(0) | (byte(length / 2) << 8) | (byte(length - 1) << 16);
}

/// Hash of a token or merge candidate (1 or more bytes) for the rank map. Tokens are short, so a
/// word-at-a-time multiply-mix beats a general hash's setup cost; the murmur3 finalizer spreads the
/// bits so that the low (slot) and high (filter, check) parts are all usable.
inline std::uint64_t bpe_hash_bytes(const char* data, std::size_t length) noexcept {
    constexpr std::uint64_t k = 0x9E3779B97F4A7C15ULL;
    std::uint64_t h = (length + 1) * k;
    if (length <= 8) {
        h = (h ^ bpe_short_key(data, length)) * k;
    } else {
        std::size_t i = 0;
        for (; i + 8 < length; i += 8) {
            h = (h ^ load64(data + i)) * k;
            h ^= h >> 32;
        }
        h = (h ^ load64(data + length - 8)) * k;  // the last 8 bytes, overlapping the previous word
    }
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDULL;
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ULL;
    h ^= h >> 33;
    return h;
}

/// Scratch for merging long pieces: reused by each thread, so `count` does not allocate per call.
struct BpeLongMergeScratch {
    struct Candidate {
        TokenId rank;
        std::uint32_t pos;
        bool operator>(const Candidate& other) const noexcept {
            return rank != other.rank ? rank > other.rank : pos > other.pos;
        }
    };
    std::vector<std::uint32_t> next;   ///< next[i]: start of the part after the part starting at i
    std::vector<std::uint32_t> prev;   ///< prev[i]: start of the part before it
    std::vector<TokenId> pair_rank;    ///< rank of the part at i merged with its successor
    std::vector<Candidate> heap;       ///< min-heap of (rank, pos), stale entries skipped on pop
};

inline BpeLongMergeScratch& bpe_long_merge_scratch() {
    thread_local BpeLongMergeScratch scratch;
    return scratch;
}

}  // namespace detail

/// A tiktoken-compatible BPE tokenizer. See the header comment.
class BpeTokenizer {
public:
    /// Loads the rank file at `rank_file` for `encoding`. Throws `IoError`, `InvalidFormat`, `InvalidArgument`.
    BpeTokenizer(const std::filesystem::path& rank_file, BpeEncoding encoding)
        : BpeTokenizer(from_rank_data(read_file(rank_file), std::move(encoding))) {}

    /// cl100k_base from its rank file (e.g. gpt-tokenizer's data/cl100k_base.tiktoken).
    static BpeTokenizer cl100k_base(const std::filesystem::path& rank_file) {
        return BpeTokenizer(rank_file, BpeEncoding::cl100k_base());
    }
    /// o200k_base from its rank file.
    static BpeTokenizer o200k_base(const std::filesystem::path& rank_file) {
        return BpeTokenizer(rank_file, BpeEncoding::o200k_base());
    }

    /// Builds a tokenizer from the contents of a rank file. Throws `InvalidFormat`, `InvalidArgument`.
    static BpeTokenizer from_rank_data(std::string_view data, BpeEncoding encoding) {
        BpeTokenizer tokenizer;
        tokenizer.encoding_ = std::move(encoding);
        tokenizer.load(data);
        return tokenizer;
    }

    [[nodiscard]] const BpeEncoding& encoding() const noexcept { return encoding_; }
    /// Number of ranks (ordinary tokens) in the rank file.
    [[nodiscard]] std::size_t rank_count() const noexcept { return offsets_.empty() ? 0 : offsets_.size() - 1; }
    /// The id of a special token's text, if the encoding has it.
    [[nodiscard]] std::optional<TokenId> special_token_id(std::string_view text) const noexcept {
        for (const SpecialToken& token : encoding_.special_tokens)
            if (token.text == text) return token.id;
        return std::nullopt;
    }
    /// The bytes of a token (a rank or a special token); nullopt for an unknown id.
    [[nodiscard]] std::optional<std::string_view> token_bytes(TokenId id) const noexcept {
        if (id < rank_count()) return rank_bytes(id);
        for (const SpecialToken& token : encoding_.special_tokens)
            if (token.id == id) return std::string_view(token.text);
        return std::nullopt;
    }

    /// Appends the tokens of `text` to `out`.
    void encode(std::string_view text, std::vector<TokenId>& out, EncodeOptions options = {}) const {
        for_each_segment(text, options, [&](std::string_view segment, TokenId special) {
            encode_ordinary(segment, [&](TokenId id) { out.push_back(id); });
            if (special != detail::bpe_no_rank) out.push_back(special);
        });
    }
    /// The tokens of `text`.
    [[nodiscard]] std::vector<TokenId> encode(std::string_view text, EncodeOptions options = {}) const {
        std::vector<TokenId> out;
        out.reserve(text.size() / 3 + 4);
        encode(text, out, options);
        return out;
    }

    /// Number of tokens `encode(text, options)` would return, without building the vector.
    [[nodiscard]] std::size_t count(std::string_view text, EncodeOptions options) const {
        std::size_t total = 0;
        for_each_segment(text, options, [&](std::string_view segment, TokenId special) {
            total += count_ordinary(segment);
            if (special != detail::bpe_no_rank) ++total;
        });
        return total;
    }
    /// Number of tokens of `text`, special-token strings counted as ordinary text (the `TokenCounter`
    /// call).
    [[nodiscard]] std::size_t count(std::string_view text) const { return count_ordinary(text); }

    /// The bytes of `ids`, concatenated. A prefix of a token sequence may end inside a UTF-8
    /// character: use `utf8::Assembler` to stream decoded text. Throws `InvalidArgument` for an
    /// unknown id.
    [[nodiscard]] std::string decode(std::span<const TokenId> ids) const {
        std::string out;
        for (const TokenId id : ids) {
            const std::optional<std::string_view> bytes = token_bytes(id);
            if (!bytes) throw Error(ErrorCode::InvalidArgument, fmt::format("BpeTokenizer::decode: unknown token id ({})", id));
            out.append(*bytes);
        }
        return out;
    }
    [[nodiscard]] std::string decode(std::initializer_list<TokenId> ids) const {
        return decode(std::span<const TokenId>(ids.begin(), ids.size()));
    }

private:
    BpeTokenizer() = default;

    static std::string read_file(const std::filesystem::path& path) {
        return detail::read_whole_file(path, "rank file");  // only Error(IoError) (or bad_alloc) escapes
    }

    [[noreturn]] void fail(std::size_t line, std::string_view what) const {
        const std::string_view name = encoding_.name.empty() ? std::string_view("encoding") : std::string_view(encoding_.name);
        if (line != 0)
            throw Error(ErrorCode::InvalidFormat,
                        fmt::format("BpeTokenizer: rank file for {}, line {}: {}", name, line, what));
        throw Error(ErrorCode::InvalidFormat, fmt::format("BpeTokenizer: rank file for {}: {}", name, what));
    }

    void load(std::string_view data) {
        // The encoding first: its errors are the caller's, not the file's.
        for (std::size_t i = 0; i < encoding_.special_tokens.size(); ++i) {
            const SpecialToken& token = encoding_.special_tokens[i];
            if (token.text.empty())
                throw Error(ErrorCode::InvalidArgument,
                            fmt::format("BpeEncoding::special_tokens: empty special token text (index {})", i));
            for (std::size_t k = 0; k < i; ++k)
                if (encoding_.special_tokens[k].text == token.text || encoding_.special_tokens[k].id == token.id)
                    throw Error(ErrorCode::InvalidArgument,
                                fmt::format("BpeEncoding::special_tokens: duplicate special token ({})", token.text));
        }

        // Pass 1: parse every line into (rank, bytes), checking syntax.
        struct Entry {
            TokenId rank;
            std::uint32_t offset;
            std::uint32_t length;
            std::uint32_t line;
        };
        std::vector<Entry> entries;
        std::string bytes;
        bytes.reserve(data.size() / 2);
        std::size_t line_number = 0;
        std::size_t pos = 0;
        while (pos < data.size()) {
            std::size_t eol = data.find('\n', pos);
            const bool has_newline = eol != std::string_view::npos;
            if (!has_newline) eol = data.size();
            std::string_view line = data.substr(pos, eol - pos);
            pos = has_newline ? eol + 1 : data.size();
            ++line_number;
            if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
            if (line.empty()) continue;  // tiktoken skips blank lines
            const std::size_t space = line.find(' ');
            if (space == std::string_view::npos) fail(line_number, "expected \"<base64 token> <rank>\" (truncated line?)");
            const std::string_view encoded = line.substr(0, space);
            const std::string_view rank_text = line.substr(space + 1);
            if (rank_text.empty() || rank_text.size() > 10 ||
                !std::all_of(rank_text.begin(), rank_text.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
                fail(line_number, fmt::format("rank is not a decimal number: \"{}\"", rank_text.substr(0, 32)));
            const std::uint64_t rank = std::stoull(std::string(rank_text));
            const std::size_t offset = bytes.size();
            if (!detail::bpe_base64_decode(encoded, bytes))
                fail(line_number, fmt::format("invalid base64 token \"{}\"", encoded.substr(0, 64)));
            if (bytes.size() > std::numeric_limits<std::uint32_t>::max() - 1) fail(line_number, "rank file too large");
            if (rank >= detail::bpe_no_rank) fail(line_number, "rank out of range");
            entries.push_back({static_cast<TokenId>(rank), static_cast<std::uint32_t>(offset),
                               static_cast<std::uint32_t>(bytes.size() - offset), static_cast<std::uint32_t>(line_number)});
        }
        const std::size_t n = entries.size();
        if (n == 0) fail(0, "no ranks (empty file)");
        if (encoding_.expected_ranks != 0 && n != encoding_.expected_ranks)
            fail(0, fmt::format("expected {} ranks, found {}{}", encoding_.expected_ranks, n,
                                n < encoding_.expected_ranks ? " (truncated file?)" : ""));

        // Ranks must be exactly 0..n-1 (any order).
        std::vector<std::uint32_t> index_of_rank(n, std::numeric_limits<std::uint32_t>::max());
        for (std::size_t i = 0; i < n; ++i) {
            const Entry& entry = entries[i];
            if (entry.rank >= n)
                fail(entry.line, fmt::format("rank {} out of sequence: ranks must be 0..{} without gaps "
                                             "(non-contiguous ranks)",
                                             entry.rank, n - 1));
            if (index_of_rank[entry.rank] != std::numeric_limits<std::uint32_t>::max())
                fail(entry.line, fmt::format("rank {} appears twice (non-contiguous ranks)", entry.rank));
            index_of_rank[entry.rank] = static_cast<std::uint32_t>(i);
        }

        // Token bytes in rank order.
        arena_.clear();
        arena_.reserve(bytes.size());
        offsets_.assign(n + 1, 0);
        for (std::size_t rank = 0; rank < n; ++rank) {
            const Entry& entry = entries[index_of_rank[rank]];
            offsets_[rank] = static_cast<std::uint32_t>(arena_.size());
            arena_.append(bytes, entry.offset, entry.length);
            max_token_length_ = std::max<std::size_t>(max_token_length_, entry.length);
        }
        offsets_[n] = static_cast<std::uint32_t>(arena_.size());

        // The hash map; duplicate token bytes are an error (they would make decode ambiguous).
        std::size_t capacity = 16;
        while (capacity < n * 2) capacity <<= 1;
        slots_.assign(capacity, Slot{});
        mask_ = capacity - 1;
        std::size_t filter_words = 64;
        while (filter_words * 64 < n * 8) filter_words <<= 1;  // about 8 bits per token
        filter_.assign(filter_words, 0);
        filter_mask_ = filter_words - 1;
        for (std::size_t rank = 0; rank < n; ++rank) {
            const std::string_view token = rank_bytes(static_cast<TokenId>(rank));
            if (token.empty()) fail(entries[index_of_rank[rank]].line, "empty token");
            const TokenId existing = find(token);
            if (existing != detail::bpe_no_rank)
                fail(entries[index_of_rank[rank]].line, fmt::format("token bytes duplicate those of rank {}", existing));
            const std::uint64_t hash = detail::bpe_hash_bytes(token.data(), token.size());
            filter_[filter_word(hash)] |= filter_bits(hash);
            std::size_t slot = hash & mask_;
            while (slots_[slot].rank_plus_one != 0) slot = (slot + 1) & mask_;
            slots_[slot] = {head_of(token.data(), token.size()), static_cast<std::uint32_t>(rank + 1),
                            check_of(hash, token.size())};
        }

        // Byte-level BPE needs a token for every single byte, or some text would be unencodable.
        byte_rank_.fill(detail::bpe_no_rank);
        pair_rank_.assign(65536, detail::bpe_no_rank);
        for (std::size_t rank = 0; rank < n; ++rank) {
            const std::string_view token = rank_bytes(static_cast<TokenId>(rank));
            if (token.size() == 1) byte_rank_[static_cast<unsigned char>(token[0])] = static_cast<TokenId>(rank);
            if (token.size() == 2)
                pair_rank_[pair_index(token[0], token[1])] = static_cast<TokenId>(rank);
        }
        for (std::size_t b = 0; b < 256; ++b)
            if (byte_rank_[b] == detail::bpe_no_rank) fail(0, fmt::format("no single-byte token for byte {}", b));

        for (const SpecialToken& token : encoding_.special_tokens)
            if (token.id < n)
                fail(0, fmt::format("special token {} id {} collides with a rank", token.text, token.id));
    }

    /// A slot of the rank map. Most lookups are for short byte strings (a merge candidate), so a slot
    /// holds a word that determines a token of up to 8 bytes: those are verified without touching
    /// the arena, one cache line per lookup instead of three.
    struct Slot {
        std::uint64_t head = 0;           ///< head_of(token)
        std::uint32_t rank_plus_one = 0;  ///< 0: empty
        std::uint32_t check = 0;          ///< hash bits 40..63 above min(length, 255)
    };

    // A blocked Bloom filter over the tokens: two bits in one 64-bit word per token. The hash bits
    // used here are disjoint from the slot index (low bits) where the tables are of realistic size.
    [[nodiscard]] std::size_t filter_word(std::uint64_t hash) const noexcept { return (hash >> 24) & filter_mask_; }
    static std::uint64_t filter_bits(std::uint64_t hash) noexcept {
        return (std::uint64_t{1} << ((hash >> 52) & 63U)) | (std::uint64_t{1} << ((hash >> 58) & 63U));
    }

    /// For up to 8 bytes a word that determines them (with the length, which `check` holds); for
    /// longer tokens their first 8 bytes.
    static std::uint64_t head_of(const char* data, std::size_t length) noexcept {
        return length <= 8 ? detail::bpe_short_key(data, length) : detail::load64(data);
    }
    static std::uint32_t check_of(std::uint64_t hash, std::size_t length) noexcept {
        return (static_cast<std::uint32_t>(hash >> 40) << 8) | static_cast<std::uint32_t>(std::min<std::size_t>(length, 255));
    }

    static std::size_t pair_index(char a, char b) noexcept {
        return (std::size_t{static_cast<unsigned char>(a)} << 8) | static_cast<unsigned char>(b);
    }

    [[nodiscard]] std::string_view rank_bytes(TokenId rank) const noexcept {
        return std::string_view(arena_).substr(offsets_[rank], offsets_[rank + 1] - offsets_[rank]);
    }

    /// The rank of exactly these bytes, or no_rank.
    [[nodiscard]] TokenId find(std::string_view bytes) const noexcept {
        if (bytes.size() > max_token_length_) return detail::bpe_no_rank;
        const std::uint64_t hash = detail::bpe_hash_bytes(bytes.data(), bytes.size());
        // Most merge candidates are not tokens; the filter (small enough to stay in L2) rejects
        // about 95% of them without touching the big table.
        const std::uint64_t bits = filter_bits(hash);
        if ((filter_[filter_word(hash)] & bits) != bits) return detail::bpe_no_rank;
        const std::uint32_t check = check_of(hash, bytes.size());
        const std::uint64_t head = head_of(bytes.data(), bytes.size());
        // Invariant: the table is at most half full, so an empty slot ends every probe sequence.
        for (std::size_t index = hash & mask_;; index = (index + 1) & mask_) {
            const Slot& slot = slots_[index];
            if (slot.rank_plus_one == 0) return detail::bpe_no_rank;
            if (slot.check != check || slot.head != head) continue;
            const TokenId rank = slot.rank_plus_one - 1;
            if (bytes.size() <= 8) return rank;  // head and length (in check) cover every byte
            const std::uint32_t begin = offsets_[rank];
            if (offsets_[rank + 1] - begin == bytes.size() && std::memcmp(arena_.data() + begin, bytes.data(), bytes.size()) == 0)
                return rank;
        }
    }

    [[nodiscard]] TokenId rank_of(const char* data, std::size_t length) const noexcept {
        if (length == 2) return pair_rank_[pair_index(data[0], data[1])];
        return find(std::string_view(data, length));
    }

    /// Splits `text` at recognized special tokens (when allowed): calls `segment(ordinary, special_id)`
    /// for each ordinary run followed by a special token (no_rank after the last run).
    template <class Segment>
    void for_each_segment(std::string_view text, EncodeOptions options, Segment&& segment) const {
        if (!options.allow_special || encoding_.special_tokens.empty()) {
            segment(text, detail::bpe_no_rank);
            return;
        }
        // next_at[k]: the next occurrence of special token k at or after `pos` (npos: none left).
        // Remembered between segments, so text full of one special token is not rescanned for the
        // others each time (which would be quadratic). Encodings have a handful of special tokens;
        // beyond `cached` the rest are searched afresh, still correct.
        constexpr std::size_t cached = 16;
        const std::size_t specials = encoding_.special_tokens.size();
        std::array<std::size_t, cached> next_at{};
        for (std::size_t k = 0; k < std::min(specials, cached); ++k) next_at[k] = text.find(encoding_.special_tokens[k].text);
        std::size_t pos = 0;
        while (true) {
            // The leftmost occurrence of any special token; the longest one on a tie.
            std::size_t best = std::string_view::npos;
            const SpecialToken* best_token = nullptr;
            for (std::size_t k = 0; k < specials; ++k) {
                const SpecialToken& token = encoding_.special_tokens[k];
                std::size_t at = 0;
                if (k < cached) {
                    if (next_at[k] != std::string_view::npos && next_at[k] < pos) next_at[k] = text.find(token.text, pos);
                    at = next_at[k];
                } else {
                    at = text.find(token.text, pos);
                }
                if (at == std::string_view::npos) continue;
                if (at < best || (at == best && token.text.size() > best_token->text.size())) {
                    best = at;
                    best_token = &token;
                }
            }
            if (best_token == nullptr) {
                segment(text.substr(pos), detail::bpe_no_rank);
                return;
            }
            segment(text.substr(pos, best - pos), best_token->id);
            pos = best + best_token->text.size();
        }
    }

    [[nodiscard]] std::size_t piece_end(std::string_view text, std::size_t pos) const noexcept {
        if (encoding_.custom_split != nullptr) {
            // Guard the invariant the loops rely on (progress, in bounds) against a faulty splitter.
            const std::size_t end = encoding_.custom_split(text, pos);
            return end > pos && end <= text.size() ? end : text.size();
        }
        return detail::bpe_piece_end(encoding_.pattern, text, pos);
    }

    template <class Emit>
    void encode_ordinary(std::string_view text, Emit&& emit) const {
        std::size_t pos = 0;
        while (pos < text.size()) {
            const std::size_t end = piece_end(text, pos);
            encode_piece<true>(text.substr(pos, end - pos), emit);
            pos = end;
        }
    }

    [[nodiscard]] std::size_t count_ordinary(std::string_view text) const {
        std::size_t total = 0;
        std::size_t pos = 0;
        const auto no_emit = [](TokenId) noexcept {};
        while (pos < text.size()) {
            const std::size_t end = piece_end(text, pos);
            total += encode_piece<false>(text.substr(pos, end - pos), no_emit);
            pos = end;
        }
        return total;
    }

    /// Tokens of one piece: calls `emit(id)` for each when `Ids`; returns how many.
    template <bool Ids, class Emit>
    std::size_t encode_piece(std::string_view piece, Emit& emit) const {
        if (piece.size() == 1) {
            if constexpr (Ids) emit(byte_rank_[static_cast<unsigned char>(piece[0])]);
            return 1;
        }
        if (const TokenId whole = rank_of(piece.data(), piece.size()); whole != detail::bpe_no_rank) {
            if constexpr (Ids) emit(whole);
            return 1;
        }
        if (piece.size() <= detail::bpe_small_piece_limit) return merge_small<Ids>(piece, emit);
        return merge_long<Ids>(piece, emit);
    }

    /// tiktoken's byte_pair_merge on a stack array: parts[i] = (start, rank of merging part i with
    /// part i+1); repeatedly merge the lowest rank (leftmost on ties). O(n^2) but tiny n.
    template <bool Ids, class Emit>
    std::size_t merge_small(std::string_view piece, Emit& emit) const {
        struct Part {
            std::uint32_t start;
            TokenId rank;
        };
        std::array<Part, detail::bpe_small_piece_limit + 1> parts;  // parts[0..n] are set below
        const std::size_t n = piece.size();
        for (std::size_t i = 0; i + 1 < n; ++i)
            parts[i] = {static_cast<std::uint32_t>(i), pair_rank_[pair_index(piece[i], piece[i + 1])]};
        parts[n - 1] = {static_cast<std::uint32_t>(n - 1), detail::bpe_no_rank};
        parts[n] = {static_cast<std::uint32_t>(n), detail::bpe_no_rank};
        std::size_t size = n + 1;  // parts in use (the last one marks the end)
        const auto rank_at = [&](std::size_t i) -> TokenId {  // rank of parts i and i+1 merged with i+2
            if (i + 3 >= size) return detail::bpe_no_rank;
            return rank_of(piece.data() + parts[i].start, parts[i + 3].start - parts[i].start);
        };
        while (true) {
            TokenId min_rank = detail::bpe_no_rank;
            std::size_t min_index = 0;
            for (std::size_t i = 0; i + 1 < size; ++i) {
                if (parts[i].rank < min_rank) {
                    min_rank = parts[i].rank;
                    min_index = i;
                }
            }
            if (min_rank == detail::bpe_no_rank) break;
            const std::size_t i = min_index;
            if (i > 0) parts[i - 1].rank = rank_at(i - 1);
            parts[i].rank = rank_at(i);
            std::memmove(&parts[i + 1], &parts[i + 2], (size - i - 2) * sizeof(Part));
            --size;
        }
        if constexpr (Ids) {
            for (std::size_t i = 0; i + 1 < size; ++i)
                emit(rank_of_part(piece.data() + parts[i].start, parts[i + 1].start - parts[i].start));
        }
        return size - 1;
    }

    [[nodiscard]] TokenId rank_of_part(const char* data, std::size_t length) const noexcept {
        if (length == 1) return byte_rank_[static_cast<unsigned char>(data[0])];
        return rank_of(data, length);
    }

    /// The same merges for long pieces with a min-heap of (rank, start) and a linked list of parts:
    /// O(n log n). Stale heap entries (a part merged away, or its pair rank changed) are skipped.
    template <bool Ids, class Emit>
    std::size_t merge_long(std::string_view piece, Emit& emit) const {
        using Candidate = detail::BpeLongMergeScratch::Candidate;
        constexpr std::uint32_t dead = std::numeric_limits<std::uint32_t>::max();
        detail::BpeLongMergeScratch& scratch = detail::bpe_long_merge_scratch();
        const auto n = static_cast<std::uint32_t>(piece.size());
        scratch.next.resize(n);
        scratch.prev.resize(n);
        scratch.pair_rank.resize(n);
        scratch.heap.clear();
        std::uint32_t* next = scratch.next.data();
        std::uint32_t* prev = scratch.prev.data();
        TokenId* pair_rank = scratch.pair_rank.data();
        const auto greater = std::greater<Candidate>();
        for (std::uint32_t i = 0; i < n; ++i) {
            next[i] = i + 1;  // == n for the last part
            prev[i] = i == 0 ? dead : i - 1;
            pair_rank[i] = i + 1 < n ? pair_rank_[pair_index(piece[i], piece[i + 1])] : detail::bpe_no_rank;
            if (pair_rank[i] != detail::bpe_no_rank) scratch.heap.push_back({pair_rank[i], i});
        }
        std::make_heap(scratch.heap.begin(), scratch.heap.end(), greater);
        // Rank of the part at i merged with its successor (which must exist and have a successor end).
        const auto pair_at = [&](std::uint32_t i) -> TokenId {
            const std::uint32_t j = next[i];
            if (j >= n) return detail::bpe_no_rank;
            const std::uint32_t end = next[j];
            return rank_of(piece.data() + i, end - i);
        };
        std::size_t parts = n;
        while (!scratch.heap.empty()) {
            std::pop_heap(scratch.heap.begin(), scratch.heap.end(), greater);
            const Candidate top = scratch.heap.back();
            scratch.heap.pop_back();
            const std::uint32_t i = top.pos;
            if (next[i] == dead || pair_rank[i] != top.rank) continue;  // stale
            const std::uint32_t j = next[i];
            next[i] = next[j];
            if (next[j] < n) prev[next[j]] = i;
            next[j] = dead;
            --parts;
            pair_rank[i] = pair_at(i);
            if (pair_rank[i] != detail::bpe_no_rank) {
                scratch.heap.push_back({pair_rank[i], i});
                std::push_heap(scratch.heap.begin(), scratch.heap.end(), greater);
            }
            if (prev[i] != dead) {
                const std::uint32_t p = prev[i];
                pair_rank[p] = pair_at(p);
                if (pair_rank[p] != detail::bpe_no_rank) {
                    scratch.heap.push_back({pair_rank[p], p});
                    std::push_heap(scratch.heap.begin(), scratch.heap.end(), greater);
                }
            }
        }
        if constexpr (Ids) {
            for (std::uint32_t i = 0; i < n; i = next[i]) emit(rank_of_part(piece.data() + i, next[i] - i));
        }
        return parts;
    }

    BpeEncoding encoding_;
    std::string arena_;                 ///< token bytes in rank order
    std::vector<std::uint32_t> offsets_;  ///< rank r's bytes are arena_[offsets_[r], offsets_[r+1])
    std::vector<Slot> slots_;           ///< open addressing, linear probing, at most half full
    std::size_t mask_ = 0;
    std::vector<std::uint64_t> filter_;  ///< Bloom filter of the tokens (see filter_bits)
    std::size_t filter_mask_ = 0;
    std::size_t max_token_length_ = 0;
    std::array<TokenId, 256> byte_rank_{};
    std::vector<TokenId> pair_rank_;    ///< rank of each two-byte token, indexed by (b0 << 8) | b1
};

static_assert(TokenCounter<BpeTokenizer>);

LLMFAST_END_NAMESPACE
