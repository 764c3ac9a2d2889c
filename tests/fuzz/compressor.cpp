// Fuzzes PromptCompressor: any bytes give valid UTF-8 out (or InvalidUtf8, never anything else), the
// one-pass rule engine agrees with a naive leftmost-longest reference, and budget mode meets its budget.
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
        if (result.stats.tokens_after != llmfast::EstimatingTokenCounter{}.count(result.text)) std::abort();
        const auto query = text.substr(0, text.size() / 4);
        if (llmfast::utf8::is_valid(query) || repair) {
            const auto selected = compressor.compress_to_budget(text, query, budget);
            if (!llmfast::utf8::is_valid(selected.text)) std::abort();
            if (llmfast::EstimatingTokenCounter{}.count(selected.text) > budget) std::abort();
        }
    } catch (const llmfast::Error& e) {
        if (e.code() != llmfast::ErrorCode::InvalidUtf8 || valid || repair) std::abort();
    }

    // Rule semantics on a tiny alphabet: one pass, leftmost-longest, equal to the naive reference.
    if ((flags & 4U) != 0) {
        static const std::vector<llmfast::CompressionRule> rules = {
            {"ab", "b"}, {"abc", "c"}, {"bca", ""}, {"c", "ab"}, {"aaa", "a"}, {"ba", "abc"}};
        static const llmfast::PromptCompressor<> rules_only([] {
            llmfast::CompressorOptions options;
            options.rules = rules;
            options.chinese_rules = false;
            options.english_rules = false;
            options.normalize_whitespace = false;
            return options;
        }());
        std::string small;
        for (const char c : text) small += static_cast<char>('a' + static_cast<unsigned char>(c) % 4);
        if (rules_only.compress(small).text != reference_replace(small, rules)) std::abort();
    }
    return 0;
}
