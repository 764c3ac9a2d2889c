// llmfast/compressor.hpp — rule-based, model-free prompt compression: fewer tokens for the same request.
//
// `PromptCompressor` applies replacement rules (verbose phrase -> short phrase) in ONE pass over the
// prompt, leftmost-longest, with an Aho-Corasick automaton built once per rule set: the time is linear
// in the input whatever the number of rules, and a replacement is never re-scanned (the chapter's sketch ran one
// `str.replace` per rule, so a later rule could rewrite what an earlier one produced). Then it
// normalizes whitespace (Unicode-aware, never inside ``` fenced code blocks), optionally drops
// repeated lines and sentences (common in retrieved context), and reports what it did.
//
//     llmfast::PromptCompressor compressor;                       // Chinese + English built-in rules
//     auto result = compressor.compress("请你帮我分析以下是一段代码。");
//     // result.text == "帮我分析一段代码。", result.report.tokens_before/after, result.report.rules_fired
//
//     // Budget mode for retrieval context: keep the sentences most relevant to the query (BM25 over
//     // words and Chinese character bigrams), in their original order, until the token budget is met.
//     auto ctx = compressor.compress_to_budget(retrieved_text, "how do I rotate the API key?", 500);
//
// Rules: built-in sets `chinese_rules()` (the chapter's: 请你, 请注意→注意, 你需要, 以下是, 首先，→1.,
// 其次，→2., 最后，→3., with full-width and ASCII comma) and `english_rules()` ("please note that",
// "I would like you to", "in order to"→"to", …; ASCII case-insensitive, on word boundaries). Your own
// rules (`CompressorOptions::rules`) come first and win over a built-in rule with the same pattern;
// `rules()` is the set in use, and `RuleFiring::rule` indexes it. At one position the longest
// matching pattern wins; among equal patterns, the first rule. Rules never apply inside fenced code.
//
// Whitespace normalization: runs of spaces, tabs, U+00A0 and U+3000 inside a line become one space,
// trailing whitespace goes, at most one blank line in a row, the text is trimmed. Leading indentation
// made of ASCII spaces/tabs is kept (it structures lists); a leading run with U+3000 (a Chinese
// paragraph indent) is dropped. CRLF becomes LF. Fenced code blocks are copied byte for byte.
//
// Template parameter: any `llmfast::TokenCounter` (default `EstimatingTokenCounter`; an exact
// `BpeTokenizer` works the same way) — it only prices the text for the statistics and the budget.
//
// Thread-safety: a `PromptCompressor` is immutable after construction; `compress` and
// `compress_to_budget` are const and may run concurrently on one shared instance (if the counter's
// `count` is safe to call concurrently, which the concept requires of a const member).
//
// Errors: the constructor throws `Error(InvalidArgument)` for an empty rule pattern, a pattern or
// replacement that is not valid UTF-8, or `min_repeated_length == 0`. `compress` and
// `compress_to_budget` throw `Error(InvalidUtf8)` for input that is not valid UTF-8, unless
// `CompressorOptions::repair_invalid_utf8` is set (then ill-formed bytes become U+FFFD first).
#pragma once

#include <llmfast/version.hpp>

#include <llmfast/detail/text_scan.hpp>
#include <llmfast/error.hpp>
#include <llmfast/estimating_token_counter.hpp>
#include <llmfast/token_counter.hpp>
#include <llmfast/utf8.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

LLMFAST_BEGIN_NAMESPACE

/// One replacement rule: every occurrence of `pattern` becomes `replacement`.
struct CompressionRule {
    std::string pattern;
    std::string replacement;
    bool ignore_case = false;  ///< ASCII letters match either case (non-ASCII bytes always match exactly)
    /// The match must not touch an ASCII letter, digit or '_' on either side (checked only on a side
    /// where the pattern itself starts/ends with such a character), so "in order to" does not fire
    /// inside "within order total".
    bool whole_word = false;
};

/// The chapter's Chinese rules, each with the full-width (，) and the ASCII (,) comma where it has one.
inline std::vector<CompressionRule> chinese_rules() {
    return {
        {"请你", "", false, false},
        {"请注意", "注意", false, false},
        {"你需要", "", false, false},
        {"以下是", "", false, false},
        {"首先，", "1.", false, false},
        {"首先,", "1.", false, false},
        {"其次，", "2.", false, false},
        {"其次,", "2.", false, false},
        {"最后，", "3.", false, false},
        {"最后,", "3.", false, false},
    };
}

/// Verbose English phrasings with the same meaning in fewer tokens (ASCII case-insensitive, on word
/// boundaries). A deletion includes the following space so no stray space is left behind; a
/// replacement keeps the capital of a capitalized match ("In order to" -> "To").
inline std::vector<CompressionRule> english_rules() {
    const auto rule = [](const char* pattern, const char* replacement) {
        return CompressionRule{pattern, replacement, true, true};
    };
    return {
        rule("please note that ", ""),
        rule("it is important to note that ", ""),
        rule("it should be noted that ", ""),
        rule("it is worth noting that ", ""),
        rule("i would like you to ", ""),
        rule("i want you to ", ""),
        rule("could you please ", ""),
        rule("can you please ", ""),
        rule("in order to", "to"),
        rule("due to the fact that", "because"),
        rule("in spite of the fact that", "although"),
        rule("despite the fact that", "although"),
        rule("at this point in time", "now"),
        rule("at the present time", "now"),
        rule("for the purpose of", "for"),
        rule("in the event that", "if"),
        rule("with regard to", "about"),
        rule("with respect to", "about"),
        rule("a large number of", "many"),
        rule("is able to", "can"),
        rule("are able to", "can"),
        rule("has the ability to", "can"),
        rule("prior to", "before"),
        rule("on a daily basis", "daily"),
        rule("make sure that", "ensure"),
    };
}

struct CompressorOptions {
    std::vector<CompressionRule> rules{};  ///< your rules; they take precedence over the built-in ones
    bool chinese_rules = true;             ///< add `chinese_rules()`
    bool english_rules = true;             ///< add `english_rules()`
    bool normalize_whitespace = true;
    bool remove_repeated_lines = false;      ///< drop a line whose (whitespace-normalized) text was seen before
    bool remove_repeated_sentences = false;  ///< drop a sentence seen before (anywhere in the prose)
    std::size_t min_repeated_length = 12;    ///< shorter lines/sentences ("}", "---") are never dropped (> 0)
    bool repair_invalid_utf8 = false;        ///< replace ill-formed bytes with U+FFFD instead of throwing
    /// Fill `tokens_before`/`tokens_after`. Counting both texts can cost more than compressing them;
    /// turn it off on a hot path that doesn't read them (budget mode always counts what it keeps).
    bool count_tokens = true;
    double bm25_k1 = 1.2;                    ///< budget mode: BM25 term-frequency saturation (>= 0)
    double bm25_b = 0.75;                    ///< budget mode: BM25 length normalization (0..1)
};

/// A rule that fired: `rule` indexes `PromptCompressor::rules()`.
struct RuleFiring {
    std::size_t rule = 0;
    std::size_t count = 0;
};

/// What one `compress` / `compress_to_budget` call did (a per-call report; the compressor keeps no
/// counters of its own).
struct CompressionReport {
    std::size_t bytes_before = 0;
    std::size_t bytes_after = 0;
    std::size_t chars_before = 0;  ///< code points
    std::size_t chars_after = 0;
    std::size_t tokens_before = 0;  ///< as the compressor's TokenCounter counts them (0 if !count_tokens)
    std::size_t tokens_after = 0;
    std::vector<RuleFiring> rules_fired;  ///< in rule order, only rules that fired
    std::size_t lines_removed = 0;        ///< repeated lines dropped
    std::size_t sentences_removed = 0;    ///< repeated sentences dropped
    std::size_t chunks_total = 0;         ///< budget mode: sentences/chunks the context was split into
    std::size_t chunks_kept = 0;          ///< budget mode: how many were kept

    /// Fraction of tokens saved, 0..1 (0 for empty input).
    [[nodiscard]] double token_reduction() const noexcept {
        if (tokens_before == 0 || tokens_after >= tokens_before) return 0;
        return 1.0 - static_cast<double>(tokens_after) / static_cast<double>(tokens_before);
    }
};

/// The result of one call: the compressed text and what was done to it.
struct CompressionResult {
    std::string text;
    CompressionReport report;
};

namespace detail {

/// ASCII lowercase, identity elsewhere (UTF-8 continuation and lead bytes are >= 0x80, so folding
/// can never make a multi-byte sequence match an ASCII one).
constexpr unsigned char fold_ascii(unsigned char b) noexcept {
    return (b >= 'A' && b <= 'Z') ? static_cast<unsigned char>(b + ('a' - 'A')) : b;
}

/// An Aho-Corasick automaton, as a DFA over byte classes, that finds the leftmost-longest rule match.
///
/// Patterns are inserted ASCII-folded; a case-sensitive pattern is verified against the original
/// bytes on a hit, and word boundaries are checked there too. Invariant of `replace_all`: when a
/// candidate match starts at `s`, it is committed as soon as the automaton's deepest live state
/// starts after `s` (no longer match at `s`, and no match starting earlier, is still possible); the
/// scan then restarts at the end of the match, so replacements are never re-scanned.
class RuleAutomaton {
public:
    RuleAutomaton() = default;

    explicit RuleAutomaton(const std::vector<CompressionRule>& rules) : rules_(&rules) {
        // Byte classes: each byte used by some folded pattern gets its own class, the rest share 0.
        class_of_.fill(0);
        std::uint32_t classes = 1;
        for (const CompressionRule& rule : rules)
            for (const char ch : rule.pattern) {
                const unsigned char b = fold_ascii(static_cast<unsigned char>(ch));
                if (class_of_[b] == 0) class_of_[b] = classes++;
            }
        for (unsigned b = 'A'; b <= 'Z'; ++b) class_of_[b] = class_of_[fold_ascii(static_cast<unsigned char>(b))];
        classes_ = classes;

        // The trie, with -1 for "no child" until the DFA is completed below.
        std::vector<std::int32_t> next(classes_, -1);
        depth_.push_back(0);
        own_begin_.push_back(0);
        std::vector<std::vector<std::uint32_t>> own(1);
        for (std::size_t index = 0; index < rules.size(); ++index) {
            std::uint32_t state = 0;
            for (const char ch : rules[index].pattern) {
                const std::uint32_t cls = class_of_[static_cast<unsigned char>(ch)];
                std::int32_t& child = next[state * classes_ + cls];
                if (child < 0) {
                    child = static_cast<std::int32_t>(depth_.size());
                    const std::uint32_t child_depth = depth_[state] + 1;
                    depth_.push_back(child_depth);
                    own.emplace_back();
                    next.resize(next.size() + classes_, -1);
                }
                state = static_cast<std::uint32_t>(next[state * classes_ + cls]);
            }
            own[state].push_back(static_cast<std::uint32_t>(index));
        }
        const std::size_t states = depth_.size();

        // Breadth-first: failure links, dictionary links (nearest proper suffix state with an output)
        // and the completed DFA transitions.
        std::vector<std::uint32_t> fail(states, 0);
        dict_.assign(states, -1);
        std::vector<std::uint32_t> queue;
        queue.reserve(states);
        for (std::uint32_t cls = 0; cls < classes_; ++cls) {
            std::int32_t& child = next[cls];
            if (child < 0) {
                child = 0;
            } else {
                fail[static_cast<std::size_t>(child)] = 0;
                queue.push_back(static_cast<std::uint32_t>(child));
            }
        }
        for (std::size_t head = 0; head < queue.size(); ++head) {
            const std::uint32_t state = queue[head];
            const std::uint32_t f = fail[state];
            dict_[state] = own[f].empty() ? dict_[f] : static_cast<std::int32_t>(f);
            for (std::uint32_t cls = 0; cls < classes_; ++cls) {
                std::int32_t& child = next[state * classes_ + cls];
                const std::int32_t via_fail = next[f * classes_ + cls];
                if (child < 0) {
                    child = via_fail;
                } else {
                    fail[static_cast<std::size_t>(child)] = static_cast<std::uint32_t>(via_fail);
                    queue.push_back(static_cast<std::uint32_t>(child));
                }
            }
        }
        // The scan's table: each entry is the target's row offset (id * classes) shifted left by one,
        // with the low bit set when the target has an output, so one load per byte drives the scan.
        trans_.resize(next.size());
        // Flatten the output lists; mark states that have any output (own or via dictionary link).
        own_begin_.assign(states + 1, 0);
        for (std::size_t s = 0; s < states; ++s) {
            own_begin_[s] = static_cast<std::uint32_t>(own_ids_.size());
            own_ids_.insert(own_ids_.end(), own[s].begin(), own[s].end());
        }
        own_begin_[states] = static_cast<std::uint32_t>(own_ids_.size());
        has_output_.assign(states, 0);
        for (std::size_t s = 0; s < states; ++s)
            has_output_[s] = static_cast<unsigned char>(!own[s].empty() || dict_[s] >= 0);
        for (std::size_t k = 0; k < next.size(); ++k) {
            const auto target = static_cast<std::size_t>(next[k]);
            trans_[k] = static_cast<std::uint32_t>(target * classes_ * 2 + has_output_[target]);
        }
        // Which (folded) byte pairs can start a match: at the root the scan skips every other pair.
        start_pairs_.assign(65536 / 64, 0);
        for (const CompressionRule& rule : rules) {
            const unsigned first = fold_ascii(static_cast<unsigned char>(rule.pattern[0]));
            if (rule.pattern.size() == 1) {
                for (unsigned second = 0; second < 256; ++second) set_pair(first, second);
            } else {
                set_pair(first, fold_ascii(static_cast<unsigned char>(rule.pattern[1])));
            }
        }
    }

    /// Appends `text` with every leftmost-longest match replaced to `out`; counts firings per rule
    /// into `fired` (sized like the rule set).
    void replace_all(std::string_view text, std::string& out, std::vector<std::size_t>& fired) const {
        if (rules_ == nullptr || rules_->empty()) {
            out.append(text);
            return;
        }
        const std::vector<CompressionRule>& rules = *rules_;
        const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
        const std::size_t n = text.size();
        std::size_t copied = 0;  // text[copied, ...) is not yet in `out`
        std::uint32_t row = 0;  // current state's row offset in trans_ (state id * classes_)
        std::size_t capitalize_at = std::string::npos;  // see emit()
        bool have = false;
        std::size_t cand_start = 0, cand_end = 0, cand_rule = 0;
        for (std::size_t i = 0;; ++i) {
            if (i == n) {
                // The end of the text is where every pending longer match dies: commit the candidate
                // and rescan from its end, exactly as when a non-matching byte follows ("abc" with
                // ab, abcd, c is "XZ", like "abc." is "XZ.").
                if (!have) break;
                emit(text, out, copied, cand_start, rules[cand_rule], capitalize_at);
                ++fired[cand_rule];
                copied = cand_end;
                have = false;
                row = 0;
                i = cand_end - 1;
                continue;
            }
            if (row == 0) {
                // Hot loop: at the root (no candidate pending), skip pairs of bytes no pattern starts with.
                while (i + 1 < n && !starts_pair(bytes[i], bytes[i + 1])) ++i;
            }
            const std::uint32_t entry = trans_[row + class_of_[bytes[i]]];
            row = entry >> 1;
            if (!have && (entry & 1U) == 0) continue;  // the common case: nothing to decide here
            const std::uint32_t state = row / classes_;
            if (have && i + 1 - depth_[state] > cand_start) {
                emit(text, out, copied, cand_start, rules[cand_rule], capitalize_at);
                ++fired[cand_rule];
                copied = cand_end;
                have = false;
                row = 0;
                i = cand_end - 1;  // resume right after the match: replacements are never re-scanned
                continue;
            }
            if (has_output_[state] == 0) continue;
            // Walk the output chain from the deepest state: the first verified hit is the longest
            // match ending here, i.e. the leftmost one.
            std::int32_t s = own_begin_[state] == own_begin_[state + 1] ? dict_[state] : static_cast<std::int32_t>(state);
            while (s >= 0) {
                const auto us = static_cast<std::size_t>(s);
                const std::size_t length = depth_[us];
                const std::size_t start = i + 1 - length;
                bool found = false;
                for (std::uint32_t k = own_begin_[us]; k < own_begin_[us + 1]; ++k) {
                    const std::uint32_t rule = own_ids_[k];
                    if (!verify(text, start, i + 1, rules[rule])) continue;
                    if (!have || start < cand_start || (start == cand_start && i + 1 > cand_end)) {
                        have = true;
                        cand_start = start;
                        cand_end = i + 1;
                        cand_rule = rule;
                    }
                    found = true;
                    break;
                }
                if (found) break;
                s = dict_[us];
            }
        }
        out.append(text.substr(copied));
        capitalize(out, capitalize_at);
    }

    /// "states=N classes=M" (for benchmarks and tests).
    [[nodiscard]] std::string describe() const {
        return fmt::format("states={} classes={}", depth_.size(), classes_);
    }

private:
    static bool verify(std::string_view text, std::size_t start, std::size_t end, const CompressionRule& rule) noexcept {
        if (!rule.ignore_case && text.compare(start, end - start, rule.pattern) != 0) return false;
        if (rule.whole_word) {
            const auto first = static_cast<unsigned char>(rule.pattern.front());
            const auto last = static_cast<unsigned char>(rule.pattern.back());
            if (start > 0 && is_ascii_word_byte(first) && is_ascii_word_byte(static_cast<unsigned char>(text[start - 1])))
                return false;
            if (end < text.size() && is_ascii_word_byte(last) && is_ascii_word_byte(static_cast<unsigned char>(text[end])))
                return false;
        }
        return true;
    }

    // After a capitalized match was deleted ("Please note that the ..."), the next letter written
    // takes the capital ("The ...").
    static void capitalize(std::string& out, std::size_t& capitalize_at) noexcept {
        if (capitalize_at >= out.size()) return;
        const auto c = static_cast<unsigned char>(out[capitalize_at]);
        if (c >= 'a' && c <= 'z') out[capitalize_at] = static_cast<char>(c - ('a' - 'A'));
        capitalize_at = std::string::npos;
    }

    static void emit(std::string_view text, std::string& out, std::size_t copied, std::size_t start,
                     const CompressionRule& rule, std::size_t& capitalize_at) {
        out.append(text.substr(copied, start - copied));
        capitalize(out, capitalize_at);
        const std::size_t at = out.size();
        out.append(rule.replacement);
        const auto m = static_cast<unsigned char>(text[start]);
        if (!rule.ignore_case || m < 'A' || m > 'Z') return;
        // A capitalized case-insensitive match keeps its capital: "In order to" -> "To".
        capitalize_at = at;
        capitalize(out, capitalize_at);
        if (rule.replacement.empty()) capitalize_at = at;
    }

    void set_pair(unsigned first, unsigned second) {
        const unsigned index = first << 8 | second;
        start_pairs_[index >> 6] |= std::uint64_t{1} << (index & 63U);
        if (second >= 'a' && second <= 'z') set_pair_exact(first, second - ('a' - 'A'));
        if (first >= 'a' && first <= 'z') {
            const unsigned upper = first - ('a' - 'A');
            set_pair_exact(upper, second);
            if (second >= 'a' && second <= 'z') set_pair_exact(upper, second - ('a' - 'A'));
        }
    }
    void set_pair_exact(unsigned first, unsigned second) {
        const unsigned index = first << 8 | second;
        start_pairs_[index >> 6] |= std::uint64_t{1} << (index & 63U);
    }
    bool starts_pair(unsigned char first, unsigned char second) const noexcept {
        const unsigned index = static_cast<unsigned>(first) << 8 | second;
        return (start_pairs_[index >> 6] >> (index & 63U) & 1U) != 0;
    }

    const std::vector<CompressionRule>* rules_ = nullptr;  // owned by the compressor (stable address)
    std::vector<std::uint64_t> start_pairs_;
    std::array<std::uint32_t, 256> class_of_{};
    std::uint32_t classes_ = 1;
    std::vector<std::uint32_t> trans_;
    std::vector<std::uint32_t> depth_;
    std::vector<std::int32_t> dict_;
    std::vector<std::uint32_t> own_begin_;
    std::vector<std::uint32_t> own_ids_;
    std::vector<unsigned char> has_output_;
};

/// Appends one line (without its '\n') to `out`, whitespace-normalized: inner runs -> one space,
/// trailing run removed, a leading ASCII indentation kept (a leading run with other spaces dropped).
inline void append_normalized_line(std::string& out, std::string_view line) {
    std::size_t pos = 0;
    bool ascii_indent = true;
    while (pos < line.size()) {
        const std::size_t w = horizontal_space_at(line, pos);
        if (w == 0) break;
        if (w > 1 || line[pos] == '\r' || line[pos] == '\f' || line[pos] == '\v') ascii_indent = false;
        pos += w;
    }
    if (pos == line.size()) return;  // blank
    if (ascii_indent) out.append(line.substr(0, pos));
    std::size_t run_start = pos;  // start of the not-yet-copied non-space run
    static constexpr auto may_start_space = [] {
        std::array<bool, 256> table{};
        for (const char b : {' ', '\t', '\r', '\f', '\v'}) table[static_cast<unsigned char>(b)] = true;
        table[0xC2U] = table[0xE3U] = true;
        return table;
    }();
    constexpr std::uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    while (pos < line.size()) {
        // Hot loop: skip 8 bytes at a time while none is a control byte (tab, CR, ...), a 0xC2/0xE3
        // lead byte (no-break and ideographic space) or a space followed by a space. Byte masks can
        // have false positives (then the byte loop below decides), never false negatives. The second
        // load reads one byte further, so a skipped block never holds the line's last byte.
        if (pos + 9 <= line.size()) {
            const std::uint64_t x = load64(line.data() + pos);
            const std::uint64_t y = load64(line.data() + pos + 1);
            const auto zero_bytes = [&](std::uint64_t v) { return (v - ones) & ~v & high; };
            const std::uint64_t special = ((x - ones * 0x20U) & ~x & high) | zero_bytes(x ^ (ones * 0xC2U)) |
                                          zero_bytes(x ^ (ones * 0xE3U)) |
                                          (zero_bytes(x ^ (ones * 0x20U)) & zero_bytes(y ^ (ones * 0x20U)));
            if (special == 0) {
                pos += 8;
                continue;
            }
        }
        if (!may_start_space[static_cast<unsigned char>(line[pos])]) {
            ++pos;
            continue;
        }
        std::size_t w = horizontal_space_at(line, pos);
        if (w == 0) {
            ++pos;
            continue;
        }
        // One ASCII space between words is already normal: keep copying.
        if (line[pos] == ' ' && pos + 1 < line.size() && horizontal_space_at(line, pos + 1) == 0) {
            ++pos;
            continue;
        }
        // A single space just before this run was copied along (it ended a skipped block): the run
        // starts there.
        std::size_t run_begin = pos;
        if (run_begin > run_start && line[run_begin - 1] == ' ') --run_begin;
        out.append(line.substr(run_start, run_begin - run_start));
        std::size_t end = pos;
        while (end < line.size() && (w = horizontal_space_at(line, end)) != 0) end += w;
        if (end < line.size()) out.push_back(' ');  // inner run; a trailing run is dropped
        pos = end;
        run_start = end;
    }
    out.append(line.substr(run_start));
}

/// Builds the normalized document line by line: one blank line at most between lines, none at the
/// start or the end, fenced blocks verbatim (their own blank lines included).
class NormalizedWriter {
public:
    explicit NormalizedWriter(std::string& out) : out_(out) {}

    void prose(std::string_view text) {
        std::size_t pos = 0;
        while (pos < text.size()) {
            std::size_t end = text.find('\n', pos);
            if (end == std::string_view::npos) end = text.size();
            const std::size_t before = out_.size();
            separator();
            const std::size_t content = out_.size();
            append_normalized_line(out_, text.substr(pos, end - pos));
            if (!started_) {  // the document is trimmed: no indentation on its first line
                std::size_t indent = content;
                while (indent < out_.size() && (out_[indent] == ' ' || out_[indent] == '\t')) ++indent;
                out_.erase(content, indent - content);
            }
            if (out_.size() == content) {  // blank line: undo the separator, remember the gap
                out_.resize(before);
                if (started_) blank_ = true;
            } else {
                started_ = true;
                blank_ = false;
            }
            pos = end + 1;
        }
    }

    void fenced(std::string_view text) {
        if (text.empty()) return;
        if (text.back() == '\n') text.remove_suffix(1);
        separator();
        out_.append(text);
        started_ = true;
        blank_ = false;
    }

private:
    void separator() {
        if (!started_) return;
        out_.push_back('\n');
        if (blank_) out_.push_back('\n');
    }

    std::string& out_;
    bool started_ = false;
    bool blank_ = false;
};

/// A 64-bit hash of `bytes` salted by `kind` (std::hash is enough for in-memory sets and keeps this
/// header free of xxHash, whose AVX-512 path warns under g++ 12 -march=native -Werror).
inline std::uint64_t text_hash(std::string_view bytes, std::uint64_t kind) noexcept {
    const std::uint64_t h = std::hash<std::string_view>{}(bytes);
    return h ^ (kind * 0x9E3779B97F4A7C15ULL + (h << 6) + (h >> 2));
}

/// BM25 terms of a text: lowercase ASCII/Latin words and Han character bigrams (a lone Han
/// character is its own term). Each term is reported as a 64-bit hash.
template <class Sink>
void for_each_term(std::string_view text, Sink&& sink) {
    std::string word;
    char32_t prev_han = 0;
    std::size_t prev_han_start = 0;
    bool han_pair_emitted = false;
    const auto flush_word = [&] {
        if (!word.empty()) sink(text_hash(word, 1));
        word.clear();
    };
    const auto end_han_run = [&] {
        if (prev_han != 0 && !han_pair_emitted) sink(text_hash(text.substr(prev_han_start, utf8::decode(text, prev_han_start).length), 2));
        prev_han = 0;
        han_pair_emitted = false;
    };
    std::size_t pos = 0;
    while (pos < text.size()) {
        const auto b = static_cast<unsigned char>(text[pos]);
        if (b < 0x80U) {
            end_han_run();
            if (is_ascii_word_byte(b) && b != '_') {
                word.push_back(static_cast<char>(fold_ascii(b)));
            } else {
                flush_word();
            }
            ++pos;
            continue;
        }
        const utf8::DecodeResult d = utf8::decode(text, pos);
        const char32_t cp = d.status == utf8::DecodeStatus::Valid ? d.code_point : 0xFFFDU;
        if (is_han_ideograph(cp)) {
            flush_word();
            if (prev_han != 0) {
                sink(text_hash(text.substr(prev_han_start, pos + d.length - prev_han_start), 2));
                han_pair_emitted = true;
            } else {
                han_pair_emitted = false;
            }
            prev_han = cp;
            prev_han_start = pos;
        } else {
            end_han_run();
            if (classify(cp) == CharClass::Letter) {
                word.append(text.substr(pos, d.length));
            } else {
                flush_word();
            }
        }
        pos += d.length;
    }
    end_han_run();
    flush_word();
}

}  // namespace detail

/// Rule-based prompt compression with statistics; see the header comment.
template <class Counter = EstimatingTokenCounter>
class PromptCompressor {
    static_assert(TokenCounter<Counter>,
                  "llmfast::PromptCompressor<Counter>: Counter must model llmfast::TokenCounter — it needs "
                  "`count(std::string_view) const` returning something convertible to std::size_t");

public:
    using Options = CompressorOptions;

    explicit PromptCompressor(CompressorOptions options = {}, Counter counter = {})
        : options_(std::move(options)), counter_(std::move(counter)) {
        if (options_.min_repeated_length == 0)
            throw Error(ErrorCode::InvalidArgument, "CompressorOptions::min_repeated_length must be > 0 (got 0)");
        if (!(options_.bm25_k1 >= 0) || !(options_.bm25_b >= 0 && options_.bm25_b <= 1))
            throw Error(ErrorCode::InvalidArgument,
                        fmt::format("CompressorOptions::bm25_k1 must be >= 0 and CompressorOptions::bm25_b in [0, 1] "
                                    "(got {} and {})",
                                    options_.bm25_k1, options_.bm25_b));
        const auto add = [this](const CompressionRule& rule) {
            if (rule.pattern.empty())
                throw Error(ErrorCode::InvalidArgument, "CompressorOptions::rules: a rule with an empty pattern");
            if (!utf8::is_valid(rule.pattern) || !utf8::is_valid(rule.replacement))
                throw Error(ErrorCode::InvalidArgument,
                            fmt::format("CompressorOptions::rules: a rule that is not valid UTF-8 ({})",
                                        utf8::repair(rule.pattern)));
            // Same pattern and matching mode as an earlier rule: the earlier one (yours) wins.
            for (const CompressionRule& existing : rules_)
                if (existing.pattern == rule.pattern && existing.ignore_case == rule.ignore_case &&
                    existing.whole_word == rule.whole_word)
                    return;
            rules_.push_back(rule);
        };
        for (const CompressionRule& rule : options_.rules) add(rule);
        if (options_.chinese_rules)
            for (const CompressionRule& rule : chinese_rules()) add(rule);
        if (options_.english_rules)
            for (const CompressionRule& rule : english_rules()) add(rule);
        automaton_ = detail::RuleAutomaton(rules_);
    }

    // The automaton points into rules_: copying/moving must rebuild or re-point it.
    PromptCompressor(const PromptCompressor& other)
        : options_(other.options_), counter_(other.counter_), rules_(other.rules_), automaton_(rules_) {}
    PromptCompressor& operator=(const PromptCompressor& other) {
        if (this != &other) {
            options_ = other.options_;
            counter_ = other.counter_;
            rules_ = other.rules_;
            automaton_ = detail::RuleAutomaton(rules_);
        }
        return *this;
    }
    PromptCompressor(PromptCompressor&& other) : PromptCompressor(static_cast<const PromptCompressor&>(other)) {}
    PromptCompressor& operator=(PromptCompressor&& other) { return *this = static_cast<const PromptCompressor&>(other); }
    ~PromptCompressor() = default;

    /// The rules in use, in priority order (yours first, then the enabled built-in sets, duplicates removed).
    [[nodiscard]] const std::vector<CompressionRule>& rules() const noexcept { return rules_; }
    [[nodiscard]] const CompressorOptions& options() const noexcept { return options_; }
    [[nodiscard]] const Counter& counter() const noexcept { return counter_; }

    /// Rules, repeated-text removal and whitespace normalization, with statistics.
    /// Throws Error(InvalidUtf8) for ill-formed input unless `repair_invalid_utf8`.
    [[nodiscard]] CompressionResult compress(std::string_view text) const {
        std::string repaired;
        text = checked(text, repaired, "PromptCompressor::compress");
        CompressionResult result;
        result.text = transform(text, result.report);
        fill_report(text, result);
        return result;
    }

    /// Budget mode: compresses `context` as `compress` does, splits it into sentences (Chinese and
    /// ASCII sentence ends, line breaks; a fenced code block is one chunk), ranks them by BM25
    /// relevance to `query` and keeps the best, in their original order, while the total fits
    /// `budget` tokens. Chunks that don't mention the query come last (in original order). The
    /// result never exceeds `budget` as the counter counts it; a budget of 0 gives empty text.
    [[nodiscard]] CompressionResult compress_to_budget(std::string_view context, std::string_view query,
                                                       std::size_t budget) const {
        std::string repaired_context, repaired_query;
        context = checked(context, repaired_context, "PromptCompressor::compress_to_budget");
        query = checked(query, repaired_query, "PromptCompressor::compress_to_budget");
        CompressionResult result;
        const std::string compressed = transform(context, result.report);
        result.text = select(compressed, query, budget, result.report);
        fill_report(context, result);
        return result;
    }

private:
    struct Chunk {
        std::size_t begin = 0;
        std::size_t end = 0;
        bool fenced = false;
        double score = 0;
        std::size_t tokens = 0;
    };

    std::string_view checked(std::string_view text, std::string& storage, std::string_view where) const {
        if (detail::is_valid_utf8_fast(text)) return text;
        if (!options_.repair_invalid_utf8)
            throw Error(ErrorCode::InvalidUtf8, fmt::format("{}: input is not valid UTF-8 (at byte {})", where,
                                                            utf8::find_invalid(text)));
        storage = utf8::repair(text);
        return storage;
    }

    void fill_report(std::string_view original, CompressionResult& result) const {
        CompressionReport& report = result.report;
        report.bytes_before = original.size();
        report.bytes_after = result.text.size();
        report.chars_before = detail::count_code_points_fast(original);
        report.chars_after = detail::count_code_points_fast(result.text);
        if (!options_.count_tokens) return;
        report.tokens_before = static_cast<std::size_t>(counter_.count(original));
        report.tokens_after = static_cast<std::size_t>(counter_.count(result.text));
    }

    std::string transform(std::string_view text, CompressionReport& report) const {
        const std::vector<detail::TextSegment> segments = detail::split_fences(text);
        std::vector<std::size_t> fired(rules_.size(), 0);
        std::string replaced;  // all prose and fenced segments, rules applied to prose
        replaced.reserve(text.size());
        std::vector<detail::TextSegment> out_segments;
        out_segments.reserve(segments.size());
        std::unordered_set<std::uint64_t> seen;
        const bool dedupe = options_.remove_repeated_lines || options_.remove_repeated_sentences;
        std::string scratch;
        for (const detail::TextSegment& segment : segments) {
            const std::string_view part = text.substr(segment.begin, segment.end - segment.begin);
            const std::size_t begin = replaced.size();
            if (segment.fenced) {
                replaced.append(part);
            } else if (dedupe) {
                scratch.clear();
                automaton_.replace_all(part, scratch, fired);
                remove_repeats(scratch, replaced, seen, report);
            } else {
                automaton_.replace_all(part, replaced, fired);
            }
            out_segments.push_back({begin, replaced.size(), segment.fenced});
        }
        for (std::size_t rule = 0; rule < fired.size(); ++rule)
            if (fired[rule] != 0) report.rules_fired.push_back({rule, fired[rule]});
        if (!options_.normalize_whitespace) return replaced;

        std::string out;
        out.reserve(replaced.size());
        detail::NormalizedWriter writer(out);
        const std::string_view all = replaced;
        for (const detail::TextSegment& segment : out_segments) {
            const std::string_view part = all.substr(segment.begin, segment.end - segment.begin);
            if (segment.fenced) {
                writer.fenced(part);
            } else {
                writer.prose(part);
            }
        }
        return out;
    }

    // Key of a line or sentence for repeat detection: its whitespace-normalized text.
    static std::uint64_t repeat_key(std::string_view text, std::string& buffer) {
        buffer.clear();
        detail::append_normalized_line(buffer, text);
        std::size_t start = 0;
        while (start < buffer.size() && (buffer[start] == ' ' || buffer[start] == '\t')) ++start;
        return detail::text_hash(std::string_view(buffer).substr(start), 3);
    }

    void remove_repeats(std::string_view text, std::string& out, std::unordered_set<std::uint64_t>& seen,
                        CompressionReport& report) const {
        std::string buffer;
        std::size_t pos = 0;
        while (pos < text.size()) {
            std::size_t end = text.find('\n', pos);
            const std::size_t next = end == std::string_view::npos ? text.size() : end + 1;
            if (end == std::string_view::npos) end = text.size();
            const std::string_view line = text.substr(pos, end - pos);
            const std::string_view with_newline = text.substr(pos, next - pos);
            pos = next;
            if (options_.remove_repeated_lines && significant(line)) {
                if (!seen.insert(repeat_key(line, buffer) ^ 0x9E3779B97F4A7C15ULL).second) {
                    ++report.lines_removed;
                    continue;
                }
            }
            if (!options_.remove_repeated_sentences) {
                out.append(with_newline);
                continue;
            }
            // Sentence by sentence within the line; a dropped sentence takes its trailing spaces along.
            const auto handle = [&](std::size_t begin, std::size_t sentence_end, std::size_t after) {
                const std::string_view sentence = line.substr(begin, sentence_end - begin);
                if (significant(sentence) && !seen.insert(repeat_key(sentence, buffer)).second) {
                    ++report.sentences_removed;
                } else {
                    out.append(line.substr(begin, after - begin));
                }
            };
            std::size_t s = 0;
            std::size_t i = 0;
            while (i < line.size()) {
                const std::size_t e = detail::sentence_end_at(line, i);
                if (e == 0) {
                    ++i;
                    continue;
                }
                std::size_t after = e;
                while (after < line.size() && (line[after] == ' ' || line[after] == '\t')) ++after;
                handle(s, e, after);
                s = i = after;
            }
            if (s < line.size()) handle(s, line.size(), line.size());
            if (next > end) out.push_back('\n');
        }
    }

    bool significant(std::string_view text) const noexcept {
        std::size_t length = 0;
        for (std::size_t i = 0; i < text.size(); ++i)
            if (text[i] != ' ' && text[i] != '\t' && text[i] != '\r') ++length;
        return length >= options_.min_repeated_length;
    }

    static std::vector<Chunk> split_chunks(std::string_view text) {
        std::vector<Chunk> chunks;
        const auto push = [&](std::size_t b, std::size_t e, bool fenced) {
            while (b < e && detail::horizontal_space_at(text, b) != 0) b += detail::horizontal_space_at(text, b);
            while (e > b && (text[e - 1] == ' ' || text[e - 1] == '\t' || text[e - 1] == '\r' || text[e - 1] == '\n')) --e;
            if (e > b) chunks.push_back({b, e, fenced, 0, 0});
        };
        for (const detail::TextSegment& segment : detail::split_fences(text)) {
            if (segment.fenced) {
                push(segment.begin, segment.end, true);
                continue;
            }
            std::size_t start = segment.begin;
            for (std::size_t i = segment.begin; i < segment.end;) {
                if (text[i] == '\n') {
                    push(start, i, false);
                    start = ++i;
                    continue;
                }
                const std::size_t e = detail::sentence_end_at(text.substr(0, segment.end), i);
                if (e != 0) {
                    push(start, e, false);
                    start = i = e;
                    continue;
                }
                ++i;
            }
            push(start, segment.end, false);
        }
        return chunks;
    }

    std::string join(std::string_view text, const std::vector<Chunk>& chunks, const std::vector<bool>& keep) const {
        std::string out;
        const Chunk* previous = nullptr;
        for (std::size_t i = 0; i < chunks.size(); ++i) {
            if (!keep[i]) continue;
            const Chunk& chunk = chunks[i];
            if (previous != nullptr) {
                const std::string_view gap = text.substr(previous->end, chunk.begin - previous->end);
                const bool adjacent = i > 0 && &chunks[i - 1] == previous;
                if (previous->fenced || chunk.fenced || gap.find('\n') != std::string_view::npos) {
                    out.push_back('\n');
                } else if (adjacent) {
                    out.append(gap);
                } else {
                    // Not adjacent: a space between Latin sentences, nothing after a CJK sentence end.
                    const auto last = static_cast<unsigned char>(text[previous->end - 1]);
                    if (last < 0x80U) out.push_back(' ');
                }
            }
            out.append(text.substr(chunk.begin, chunk.end - chunk.begin));
            previous = &chunk;
        }
        return out;
    }

    std::string select(std::string_view text, std::string_view query, std::size_t budget, CompressionReport& report) const {
        std::vector<Chunk> chunks = split_chunks(text);
        report.chunks_total = chunks.size();
        if (budget == 0 || chunks.empty()) return {};

        // BM25: document frequency per term over chunks, then each chunk's score for the query terms.
        std::unordered_set<std::uint64_t> query_terms;
        detail::for_each_term(query, [&](std::uint64_t term) { query_terms.insert(term); });
        std::vector<std::unordered_map<std::uint64_t, std::uint32_t>> tf(chunks.size());
        std::vector<std::size_t> length(chunks.size(), 0);
        std::unordered_map<std::uint64_t, std::uint32_t> df;
        double total_length = 0;
        for (std::size_t i = 0; i < chunks.size(); ++i) {
            detail::for_each_term(text.substr(chunks[i].begin, chunks[i].end - chunks[i].begin), [&](std::uint64_t term) {
                ++length[i];
                if (query_terms.count(term) != 0) ++tf[i][term];
            });
            for (const auto& [term, count] : tf[i]) ++df[term];
            total_length += static_cast<double>(length[i]);
        }
        const double n = static_cast<double>(chunks.size());
        const double average = total_length > 0 ? total_length / n : 1;
        const double k1 = options_.bm25_k1, b = options_.bm25_b;
        for (std::size_t i = 0; i < chunks.size(); ++i) {
            double score = 0;
            for (const auto& [term, count] : tf[i]) {
                const double d = df[term];
                const double idf = std::log(1.0 + (n - d + 0.5) / (d + 0.5));
                const double f = count;
                score += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * static_cast<double>(length[i]) / average));
            }
            chunks[i].score = score;
            chunks[i].tokens = static_cast<std::size_t>(counter_.count(text.substr(chunks[i].begin, chunks[i].end - chunks[i].begin)));
        }

        // Greedy by score (ties: earlier first), skipping what doesn't fit; then verify the joined text.
        std::vector<std::size_t> order(chunks.size());
        for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
        // (std::sort with an index tie-break: libstdc++'s stable_sort trips clang's deprecation warning.)
        std::sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) {
            return chunks[x].score != chunks[y].score ? chunks[x].score > chunks[y].score : x < y;
        });
        std::vector<bool> keep(chunks.size(), false);
        std::size_t used = 0;
        std::vector<std::size_t> kept_order;
        for (const std::size_t i : order) {
            if (chunks[i].tokens == 0 || used + chunks[i].tokens > budget) continue;
            keep[i] = true;
            used += chunks[i].tokens;
            kept_order.push_back(i);
        }
        std::string out = join(text, chunks, keep);
        // Joining can cost tokens the per-chunk counts missed (separators, merged runs): drop the
        // lowest-ranked kept chunk until the counter agrees the budget is met.
        while (!kept_order.empty() && static_cast<std::size_t>(counter_.count(out)) > budget) {
            keep[kept_order.back()] = false;
            kept_order.pop_back();
            out = join(text, chunks, keep);
        }
        report.chunks_kept = kept_order.size();
        return out;
    }

    CompressorOptions options_;
    Counter counter_;
    std::vector<CompressionRule> rules_;
    detail::RuleAutomaton automaton_;
};

LLMFAST_END_NAMESPACE
