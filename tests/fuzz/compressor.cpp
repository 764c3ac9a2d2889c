// Fuzzes PromptCompressor: any bytes give valid UTF-8 out (or InvalidUtf8, never anything else), the
// one-pass rule engine agrees with a naive leftmost-longest reference on random rule sets (patterns
// that are prefixes of each other, every prefix of the input so it ends mid-pattern), and budget mode
// meets its budget.
#include <llmfast/compressor.hpp>

#include "../compressor_reference.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

using llmfast::testing::reference_replace;

namespace {


const llmfast::PromptCompressor<>& full(bool repair, bool dedupe) {
    static const auto make = [](bool r, bool d) {
        llmfast::CompressorOptions options;
        options.repair_invalid_utf8 = r;
        options.remove_repeated_lines = d;
        options.remove_repeated_sentences = d;
        options.rules = {{"ab", "请你"}, {"\xE3\x80\x80", "  "}, {"```", "x"}};
        return llmfast::PromptCompressor<>(options);
    };
    static const llmfast::PromptCompressor<> compressors[4] = {make(false, false), make(false, true), make(true, false),
                                                               make(true, true)};
    return compressors[(repair ? 2 : 0) + (dedupe ? 1 : 0)];
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    const unsigned flags = data[0];
    const std::size_t budget = data[1];
    const std::string_view text(reinterpret_cast<const char*>(data + 2), size - 2);
    const bool repair = (flags & 1U) != 0;
    const bool dedupe = (flags & 2U) != 0;
    const auto& compressor = full(repair, dedupe);
    const bool valid = llmfast::utf8::is_valid(text);
    if (llmfast::detail::is_valid_utf8_fast(text) != valid) std::abort();
    if (valid && llmfast::detail::count_code_points_fast(text) != llmfast::utf8::count_code_points(text)) std::abort();
    try {
        const auto result = compressor.compress(text);
        if (!valid && !repair) std::abort();
        if (!llmfast::utf8::is_valid(result.text)) std::abort();
        if (result.report.tokens_after != llmfast::EstimatingTokenCounter{}.count(result.text)) std::abort();
        const auto query = text.substr(0, text.size() / 4);
        if (llmfast::utf8::is_valid(query) || repair) {
            const auto selected = compressor.compress_to_budget(text, query, budget);
            if (!llmfast::utf8::is_valid(selected.text)) std::abort();
            if (llmfast::EstimatingTokenCounter{}.count(selected.text) > budget) std::abort();
        }
    } catch (const llmfast::Error& e) {
        if (e.code() != llmfast::ErrorCode::InvalidUtf8 || valid || repair) std::abort();
    }

    // Rule semantics: a random rule set over a tiny alphabet, built from the input, against the naive
    // leftmost-longest reference, on the text AND on every prefix of it (so inputs end inside a
    // pattern: issue 11's "abc" with ab, abcd, c). Patterns are often extensions of earlier ones
    // (prefixes of each other), and replacements use the same letters (never re-scanned).
    if ((flags & 4U) != 0 && text.size() >= 2) {
        std::size_t at = 0;
        const auto next = [&]() -> unsigned { return at < text.size() ? static_cast<unsigned char>(text[at++]) : 0U; };
        const auto letter = [](unsigned b) { return static_cast<char>('a' + b % 4); };
        std::vector<llmfast::CompressionRule> rules;
        const unsigned rule_count = 1 + next() % 7;
        for (unsigned r = 0; r < rule_count; ++r) {
            const unsigned shape = next();
            std::string pattern;
            if (!rules.empty() && (shape & 3U) != 0) pattern = rules[(shape >> 2) % rules.size()].pattern;  // extend
            const unsigned extra = 1 + (shape >> 4) % 4;
            for (unsigned k = 0; k < extra; ++k) pattern += letter(next());
            if ((shape & 0x80U) != 0 && pattern.size() > 1) pattern.erase(0, 1);  // a suffix too, sometimes
            std::string replacement;
            const unsigned replacement_length = next() % 4;
            for (unsigned k = 0; k < replacement_length; ++k) {
                const unsigned b = next();
                replacement += b % 5 == 4 ? 'X' : letter(b);
            }
            rules.push_back({pattern, replacement});
        }
        llmfast::CompressorOptions options;
        options.rules = rules;
        options.chinese_rules = false;
        options.english_rules = false;
        options.normalize_whitespace = false;
        options.count_tokens = false;
        const llmfast::PromptCompressor<> rules_only(options);
        std::string small;
        for (std::size_t k = at; k < text.size() && small.size() < 48; ++k) small += letter(static_cast<unsigned char>(text[k]));
        for (std::size_t length = 0; length <= small.size(); ++length) {
            const std::string_view input = std::string_view(small).substr(0, length);
            if (rules_only.compress(input).text != reference_replace(input, rules)) std::abort();
        }
    }
    return 0;
}
