// llmfast/detail/unicode.hpp — the Unicode character classes llmfast uses, all read from the tables
// generated from the Unicode Character Database (detail/unicode_tables.hpp,
// scripts/gen_unicode_tables.py): the general-category classes of the BPE pre-tokenizer, and the CJK
// scripts (Han, Hiragana, Katakana, Hangul, Bopomofo) that the estimator, the compressor and the
// embedder tell apart. No hand-written script ranges anywhere else. Internal: not part of the API.
#pragma once

#include <llmfast/version.hpp>

#include <llmfast/detail/unicode_tables.hpp>

#include <cstdint>

LLMFAST_BEGIN_NAMESPACE
namespace detail {

// General-category classes (the category table): the low 3 bits are the category, bit 3 is \s.
enum : std::uint8_t {
    unicode_other = 0, unicode_lu = 1, unicode_ll = 2, unicode_lt = 3, unicode_lm = 4, unicode_lo = 5,
    unicode_mark = 6, unicode_number = 7, unicode_space = 8,
};

/// The category class of `cp` (unicode_other for anything above U+10FFFF).
constexpr std::uint8_t unicode_class(char32_t cp) noexcept {
    if (cp >= 0x110000U) return unicode_other;
    constexpr unsigned shift = unicode_block_shift;
    const std::size_t block = unicode_stage1[cp >> shift];
    const std::uint8_t packed = unicode_stage2[(block << (shift - 1)) + ((cp & ((1U << shift) - 1U)) >> 1)];
    return static_cast<std::uint8_t>((cp & 1U) ? packed >> 4 : packed & 0x0FU);
}

/// The script-table byte of `cp`: script (unicode_script_*) in the low 3 bits, category class in
/// bits 4-6; 0 for every code point of no CJK script.
constexpr std::uint8_t unicode_script_entry(char32_t cp) noexcept {
    if (cp >= unicode_script_limit) return 0;
    constexpr unsigned shift = unicode_block_shift;
    return unicode_script_stage2[(std::size_t{unicode_script_stage1[cp >> shift]} << shift) +
                                 (cp & ((1U << shift) - 1U))];
}

/// The CJK script of `cp` (unicode_script_none .. unicode_script_kana_shared).
constexpr std::uint8_t unicode_script(char32_t cp) noexcept {
    return static_cast<std::uint8_t>(unicode_script_entry(cp) & 7U);
}

/// A script-table entry (unicode_script_entry) that is a Han ideograph: script Han and category Lo.
constexpr bool is_han_ideograph_entry(std::uint8_t entry) noexcept {
    return entry == (unicode_script_han | (unicode_lo << 4));
}

/// A Han ideograph: script Han and category Lo — the unified ideographs of every extension and the
/// compatibility ideographs (not the radicals, the iteration mark 々 or the Hangzhou numerals).
constexpr bool is_han_ideograph(char32_t cp) noexcept {
    if (cp - unicode_han_run_first <= unicode_han_run_last - unicode_han_run_first) return true;  // the common block
    return is_han_ideograph_entry(unicode_script_entry(cp));
}

/// A kana script (unicode_script's result): Hiragana, Katakana, or used only with kana.
constexpr bool is_kana_script(std::uint8_t script) noexcept {
    return script == unicode_script_hiragana || script == unicode_script_katakana ||
           script == unicode_script_kana_shared;
}

/// A kana character: script Hiragana or Katakana (half-width and small forms, phonetic extensions,
/// the square and circled katakana), or used only with kana (ー, the voiced sound marks ゛ ゜).
constexpr bool is_kana(char32_t cp) noexcept { return is_kana_script(unicode_script(cp)); }

/// A character of the Hangul script (syllables, jamo of every block, half-width and compatibility forms).
constexpr bool is_hangul(char32_t cp) noexcept { return unicode_script(cp) == unicode_script_hangul; }

/// A character of a CJK script (Han, Hiragana, Katakana, Hangul, Bopomofo, or used only with kana):
/// the scripts written without spaces between words.
constexpr bool is_cjk_script(char32_t cp) noexcept { return unicode_script(cp) != unicode_script_none; }

}  // namespace detail
LLMFAST_END_NAMESPACE
