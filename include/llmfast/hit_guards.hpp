// llmfast/hit_guards.hpp — the semantic cache's hit guards: cheap checks that veto a semantic hit
// when two prompts disagree on what matters (numbers, negation, Latin-script names, the order of key
// terms). They are the cache's verifier step today: a candidate the index finds similar enough is
// served only if no enabled guard vetoes it. Usable alone, e.g. to evaluate guards on labelled pairs:
//
//     const llmfast::GuardSignature a = llmfast::make_guard_signature("第一章讲了什么?");
//     const llmfast::GuardSignature b = llmfast::make_guard_signature("第二章讲了什么?");
//     llmfast::check_hit_guards(a, b, llmfast::HitGuards{}) == llmfast::GuardVeto::Numbers;  // true
//
// Thread-safety: pure functions over values; call them from any thread.
//
// Errors: nothing here throws except std::bad_alloc.
#pragma once

#include <llmfast/version.hpp>
#include <llmfast/detail/cache_text.hpp>
#include <llmfast/detail/xxhash.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

LLMFAST_BEGIN_NAMESPACE

/// Which guards may veto a semantic hit. Each is cheap (one pass over both prompts, precomputed for
/// cached entries). See the quality table in the README for what each one buys.
struct HitGuards {
    bool numbers = true;     ///< the prompts' numbers (digits, number words, Chinese numerals) differ
    bool negation = true;    ///< a negation (not, never, 不, 没, 无 ...) occurs in only one of them
    bool latin_names = true; ///< their Latin-script names differ (capitalized words in Latin text, any
                             ///< Latin word inside CJK text)
    bool term_order = true;  ///< the key terms both share (names, numbers) occur in a different order
    friend bool operator==(const HitGuards&, const HitGuards&) = default;
};

/// Why a semantic hit was vetoed.
enum class GuardVeto : std::uint8_t { None, Numbers, Negation, LatinNames, TermOrder };

/// What the guards compare, computed once per prompt (cached entries keep theirs).
struct GuardSignature {
    std::vector<std::uint64_t> numbers;     ///< sorted hashes of number tokens (canonical form)
    std::vector<std::uint64_t> names;       ///< sorted unique hashes of lower-cased Latin names
    std::vector<std::uint64_t> latin_words; ///< sorted unique hashes of every lower-cased Latin word
    std::vector<std::uint64_t> key_terms;   ///< names and numbers in order of appearance
    /// CJK content bigrams that occur once in the prompt: (32-bit hash << 32 | position), sorted.
    std::vector<std::uint64_t> cjk_bigrams;
    std::uint32_t negations = 0;            ///< negation markers counted

    [[nodiscard]] std::size_t memory_bytes() const noexcept {
        return (numbers.capacity() + names.capacity() + latin_words.capacity() + key_terms.capacity() +
                cjk_bigrams.capacity()) *
               sizeof(std::uint64_t);
    }
    friend bool operator==(const GuardSignature&, const GuardSignature&) = default;
};

namespace detail {

constexpr bool is_ascii_digit(char32_t cp) noexcept { return cp >= '0' && cp <= '9'; }
constexpr bool is_ascii_upper(char32_t cp) noexcept { return cp >= 'A' && cp <= 'Z'; }

/// Chinese numeral characters and their digit value (-1 for 十/百/千/万/亿, which are multipliers).
constexpr int chinese_numeral(char32_t cp) noexcept {
    switch (cp) {
        case U'零': case U'〇': return 0;
        case U'一': return 1;
        case U'二': case U'两': return 2;
        case U'三': return 3;
        case U'四': return 4;
        case U'五': return 5;
        case U'六': return 6;
        case U'七': return 7;
        case U'八': return 8;
        case U'九': return 9;
        case U'十': case U'百': case U'千': case U'万': case U'亿': return -1;
        default: return -2;
    }
}

inline std::string_view english_number_word(std::string_view word) noexcept {
    struct Pair { std::string_view word, digits; };
    static constexpr std::array<Pair, 32> table{{
        {"zero", "0"}, {"one", "1"}, {"two", "2"}, {"three", "3"}, {"four", "4"}, {"five", "5"},
        {"six", "6"}, {"seven", "7"}, {"eight", "8"}, {"nine", "9"}, {"ten", "10"}, {"eleven", "11"},
        {"twelve", "12"}, {"twenty", "20"}, {"thirty", "30"}, {"hundred", "100"}, {"thousand", "1000"},
        {"million", "1000000"}, {"billion", "1000000000"}, {"first", "1"}, {"second", "2"}, {"third", "3"},
        {"fourth", "4"}, {"fifth", "5"}, {"sixth", "6"}, {"seventh", "7"}, {"eighth", "8"}, {"ninth", "9"},
        {"tenth", "10"}, {"once", "1"}, {"twice", "2"}, {"half", "0.5"},
    }};
    for (const Pair& pair : table) {
        if (pair.word == word) return pair.digits;
    }
    return {};
}

inline bool is_english_negation(std::string_view word) noexcept {
    static constexpr std::array<std::string_view, 11> words{
        "not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "cannot", "without", "nowhere"};
    if (std::find(words.begin(), words.end(), word) != words.end()) return true;
    return word.size() > 3 && word.ends_with("n't");
}

/// Counts Chinese negation characters, skipping common words in which the character does not negate
/// (非常 "very", 不同 "different", 不过 "but", 不仅 "not only", 无论 "no matter", 别人 "others" ...).
inline bool is_chinese_negation(char32_t cp, char32_t next, char32_t prev) noexcept {
    switch (cp) {
        case U'不':
            return next != U'同' && next != U'过' && next != U'仅' && next != U'但' && next != U'断' && next != U'久' &&
                   next != U'少' && next != U'列' && next != U'论' && prev != U'了' && prev != U'对';
        case U'没': return true;
        case U'无': return next != U'论' && next != U'数' && next != U'线' && next != U'人';
        case U'非': return next != U'常' && next != U'洲' && prev != U'是';
        case U'未': return next != U'来';
        case U'勿': case U'莫': return true;
        default: return false;
    }
}

/// Question words, particles and copulas that paraphrases move freely ("什么是X" = "X是什么"):
/// bigrams containing them do not count for the order guard.
constexpr bool is_movable_cjk(char32_t cp) noexcept {
    switch (cp) {
        case U'什': case U'么': case U'怎': case U'吗': case U'呢': case U'哪': case U'谁': case U'何':
        case U'是': case U'的': case U'了': case U'吧': case U'啊': case U'呀': case U'在': case U'有':
        case U'和': case U'与': case U'及': case U'并': case U'也': case U'都': case U'就': case U'而':
            return true;
        default:
            return false;
    }
}

struct GuardWord {
    std::size_t begin, end;  ///< byte range in the original text
    bool capitalized;
    bool sentence_start;
};

inline GuardSignature build_guard_signature(std::string_view text) {
    GuardSignature sig;
    // Pass 1: classify the text and collect words and CJK numeral runs in order of appearance.
    bool has_cjk = false;
    std::vector<std::pair<std::size_t, std::uint64_t>> ordered_terms;  // (position, hash)
    std::string lowered;
    std::size_t pos = 0;
    std::vector<GuardWord> words;
    bool at_sentence_start = true;
    std::size_t word_begin = std::string_view::npos;
    bool word_capitalized = false;
    bool word_sentence_start = false;
    char32_t prev_cp = 0;
    std::size_t prev_cjk = std::string_view::npos;  // offset of the previous code point if it was CJK
    std::uint32_t cjk_index = 0;
    std::vector<std::uint64_t> bigrams;  // (hash << 32 | index)
    std::string numeral_run;  // canonical digits of a running CJK numeral
    std::size_t numeral_begin = 0;
    bool numeral_after_di = false;  // preceded by 第 ("第一" = "first")
    std::size_t numeral_chars = 0;
    const auto end_numeral = [&](std::size_t at) {
        (void)at;
        if (numeral_chars == 0) return;
        // A lone 一 is usually the article "a"/"one of" (一种, 一个, 统一): count it only after 第.
        const bool counts = numeral_chars > 1 || numeral_after_di || numeral_run != "1";
        if (counts) {
            const std::uint64_t hash = xxh3_64(numeral_run, 0x4E554DULL);
            sig.numbers.push_back(hash);
            ordered_terms.emplace_back(numeral_begin, hash);
        }
        numeral_run.clear();
        numeral_chars = 0;
    };
    const auto end_word = [&](std::size_t at) {
        if (word_begin == std::string_view::npos) return;
        words.push_back(GuardWord{word_begin, at, word_capitalized, word_sentence_start});
        word_begin = std::string_view::npos;
    };
    while (pos < text.size()) {
        const CodePoint cp = next_code_point(text, pos);
        char32_t value = cp.value;
        if (value >= 0xFF01U && value <= 0xFF5EU) value -= 0xFEE0U;  // full-width forms
        const std::size_t next_pos = pos + cp.length;
        const char32_t next = next_pos < text.size() ? next_code_point(text, next_pos).value : 0;
        if (is_cjk(value)) {
            if (prev_cjk != std::string_view::npos && !is_movable_cjk(value) && !is_movable_cjk(prev_cp)) {
                const auto hash = static_cast<std::uint32_t>(xxh3_64(text.substr(prev_cjk, next_pos - prev_cjk), 0x4F5244ULL));
                bigrams.push_back(static_cast<std::uint64_t>(hash) << 32 | cjk_index);
            }
            ++cjk_index;
            prev_cjk = pos;
        } else {
            prev_cjk = std::string_view::npos;
        }
        const int numeral = chinese_numeral(value);
        if (numeral != -2) {
            end_word(pos);
            if (numeral_chars == 0) {
                numeral_begin = pos;
                numeral_after_di = prev_cp == U'第';
            }
            numeral_run.push_back(numeral >= 0 ? static_cast<char>('0' + numeral) : 'x');
            // keep the multiplier character itself so 二十 and 二百 differ
            if (numeral < 0) numeral_run.append(text.substr(pos, cp.length));
            ++numeral_chars;
            has_cjk = true;
            at_sentence_start = false;
        } else {
            end_numeral(pos);
            if (is_cjk(value)) {
                end_word(pos);
                has_cjk = true;
                if (is_chinese_negation(value, next, prev_cp)) ++sig.negations;
                at_sentence_start = false;
            } else if (is_separator(value) && !(value == '\'' && word_begin != std::string_view::npos) &&
                       !((value == '.' || value == ',') && word_begin != std::string_view::npos &&
                         pos > 0 && is_ascii_digit(static_cast<unsigned char>(text[pos - 1])) && is_ascii_digit(next))) {
                end_word(pos);
                if (value == '.' || value == '!' || value == '?' || value == U'。' || value == U'！' || value == U'？') {
                    at_sentence_start = true;
                }
            } else {
                if (word_begin == std::string_view::npos) {
                    word_begin = pos;
                    word_capitalized = is_ascii_upper(value);
                    word_sentence_start = at_sentence_start;
                    at_sentence_start = false;
                }
            }
        }
        prev_cp = value;
        pos = next_pos;
    }
    end_numeral(text.size());
    end_word(text.size());

    // Pass 2: words -> numbers, negations, names.
    for (const GuardWord& word : words) {
        lowered.clear();
        bool all_digits = true;
        bool any_digit = false;
        for (std::size_t i = word.begin; i < word.end; ++i) {
            const auto byte = static_cast<unsigned char>(text[i]);
            if (byte >= 'A' && byte <= 'Z') {
                lowered.push_back(static_cast<char>(byte + ('a' - 'A')));
            } else if (byte >= 0xEFU && i + 2 < word.end && static_cast<unsigned char>(text[i + 1]) >= 0xBCU &&
                       static_cast<unsigned char>(text[i + 1]) <= 0xBDU) {
                // full-width ASCII (U+FF01..U+FF5E, 3 bytes): fold to ASCII
                const CodePoint cp = next_code_point(text, i);
                char32_t v = cp.value >= 0xFF01U && cp.value <= 0xFF5EU ? cp.value - 0xFEE0U : cp.value;
                if (is_ascii_upper(v)) v += 'a' - 'A';
                lowered.push_back(static_cast<char>(v));
                i += cp.length - 1;
                continue;
            } else {
                lowered.push_back(static_cast<char>(byte));
            }
            const bool digit = is_ascii_digit(static_cast<unsigned char>(lowered.back()));
            any_digit = any_digit || digit;
            all_digits = all_digits && (digit || lowered.back() == '.' || lowered.back() == ',');
        }
        if (any_digit) {
            std::string canonical;
            for (const char c : lowered) {
                if (c != ',') canonical.push_back(c);  // 1,000 == 1000
            }
            const std::uint64_t hash = xxh3_64(canonical, 0x4E554DULL);
            sig.numbers.push_back(hash);
            ordered_terms.emplace_back(word.begin, hash);
            if (all_digits) continue;
        }
        if (const std::string_view digits = english_number_word(lowered); !digits.empty()) {
            const std::uint64_t hash = xxh3_64(digits, 0x4E554DULL);
            sig.numbers.push_back(hash);
            ordered_terms.emplace_back(word.begin, hash);
            continue;
        }
        sig.latin_words.push_back(xxh3_64(lowered, 0x4E414DULL));
        if (is_english_negation(lowered)) {
            ++sig.negations;
            continue;
        }
        // Names: in CJK text every Latin word is a name or a term of art (it was left untranslated);
        // in Latin text, a capitalized word that does not start a sentence.
        const bool latin = static_cast<unsigned char>(text[word.begin]) < 0x80U || !has_cjk;
        const bool name = has_cjk ? latin : (word.capitalized && !word.sentence_start);
        if (name && !any_digit && lowered != "i") {  // the pronoun I is capitalized everywhere
            const std::uint64_t hash = xxh3_64(lowered, 0x4E414DULL);
            sig.names.push_back(hash);
            ordered_terms.emplace_back(word.begin, hash);
        }
    }
    std::sort(sig.numbers.begin(), sig.numbers.end());
    std::sort(sig.names.begin(), sig.names.end());
    sig.names.erase(std::unique(sig.names.begin(), sig.names.end()), sig.names.end());
    std::sort(sig.latin_words.begin(), sig.latin_words.end());
    sig.latin_words.erase(std::unique(sig.latin_words.begin(), sig.latin_words.end()), sig.latin_words.end());
    std::sort(ordered_terms.begin(), ordered_terms.end());
    // Keep the bigrams that occur once: a repeated one has no single position to compare.
    std::sort(bigrams.begin(), bigrams.end());
    for (std::size_t i = 0; i < bigrams.size();) {
        std::size_t j = i + 1;
        while (j < bigrams.size() && (bigrams[j] >> 32) == (bigrams[i] >> 32)) ++j;
        if (j == i + 1) sig.cjk_bigrams.push_back(bigrams[i]);
        i = j;
    }
    sig.key_terms.reserve(ordered_terms.size());
    for (const auto& term : ordered_terms) sig.key_terms.push_back(term.second);
    return sig;
}

/// The terms of `a` that occur exactly once in both, in `a`'s order, must occur in the same order in `b`.
inline bool same_term_order(const std::vector<std::uint64_t>& a, const std::vector<std::uint64_t>& b) {
    const auto count = [](const std::vector<std::uint64_t>& v, std::uint64_t x) {
        return std::count(v.begin(), v.end(), x);
    };
    std::vector<std::size_t> positions_in_b;
    for (const std::uint64_t term : a) {
        if (count(a, term) != 1 || count(b, term) != 1) continue;
        positions_in_b.push_back(static_cast<std::size_t>(std::find(b.begin(), b.end(), term) - b.begin()));
    }
    return std::is_sorted(positions_in_b.begin(), positions_in_b.end());
}

/// The CJK bigrams both prompts contain once must appear in the same relative order: a swap of two
/// terms ("第一季比第二季" vs "第二季比第一季", "东部A和西部B" vs "西部A和东部B") changes the meaning
/// while keeping every character.
inline bool same_cjk_order(const std::vector<std::uint64_t>& a, const std::vector<std::uint64_t>& b) {
    std::vector<std::pair<std::uint32_t, std::uint32_t>> shared;  // (position in a, position in b)
    std::size_t i = 0, j = 0;
    while (i < a.size() && j < b.size()) {
        const std::uint64_t ha = a[i] >> 32, hb = b[j] >> 32;
        if (ha < hb) {
            ++i;
        } else if (hb < ha) {
            ++j;
        } else {
            shared.emplace_back(static_cast<std::uint32_t>(a[i]), static_cast<std::uint32_t>(b[j]));
            ++i;
            ++j;
        }
    }
    std::sort(shared.begin(), shared.end());
    for (std::size_t k = 1; k < shared.size(); ++k) {
        if (shared[k].second < shared[k - 1].second) return false;
    }
    return true;
}

inline GuardVeto guard_veto(const GuardSignature& a, const GuardSignature& b, const HitGuards& guards) {
    if (guards.numbers && a.numbers != b.numbers) return GuardVeto::Numbers;
    if (guards.negation && (a.negations > 0) != (b.negations > 0)) return GuardVeto::Negation;
    // A name of one prompt must occur in the other as a word (in any case: "Paris" vs "paris" agree).
    if (guards.latin_names && (!std::includes(b.latin_words.begin(), b.latin_words.end(), a.names.begin(), a.names.end()) ||
                               !std::includes(a.latin_words.begin(), a.latin_words.end(), b.names.begin(), b.names.end()))) {
        return GuardVeto::LatinNames;
    }
    if (guards.term_order && (!same_term_order(a.key_terms, b.key_terms) || !same_cjk_order(a.cjk_bigrams, b.cjk_bigrams))) {
        return GuardVeto::TermOrder;
    }
    return GuardVeto::None;
}

}  // namespace detail

/// The guard signature of `text` (the original prompt: capitalization marks names in Latin text).
inline GuardSignature make_guard_signature(std::string_view text) { return detail::build_guard_signature(text); }

/// The first guard of `guards` (in the order numbers, negation, names, term order) that vetoes
/// serving the answer of one prompt for the other, or GuardVeto::None.
inline GuardVeto check_hit_guards(const GuardSignature& a, const GuardSignature& b, const HitGuards& guards) {
    return detail::guard_veto(a, b, guards);
}

LLMFAST_END_NAMESPACE
