#include <llmfast/compressor.hpp>

#include "catch.hpp"

#include <string>
#include <thread>
#include <vector>
#include "compressor_reference.hpp"

using llmfast::CompressionRule;
using llmfast::CompressorOptions;
using llmfast::PromptCompressor;

using llmfast::testing::reference_replace;

namespace {

// Only the given rules, nothing else, so rule semantics are tested in isolation.
PromptCompressor<> rules_only(std::vector<CompressionRule> rules, bool normalize = false) {
    CompressorOptions options;
    options.rules = std::move(rules);
    options.chinese_rules = false;
    options.english_rules = false;
    options.normalize_whitespace = normalize;
    return PromptCompressor<>(options);
}

std::string run(const PromptCompressor<>& compressor, std::string_view text) { return compressor.compress(text).text; }


struct WordCounter {  // counts space-separated words: a simple, exact-ish counter for budgets
    std::size_t count(std::string_view text) const {
        std::size_t words = 0;
        bool in_word = false;
        for (const char c : text) {
            const bool space = c == ' ' || c == '\n';
            if (!space && !in_word) ++words;
            in_word = !space;
        }
        return words;
    }
};

}  // namespace

TEST_CASE("rules: leftmost-longest in one pass, replacements not re-scanned", "[compressor]") {
    SECTION("the longest pattern at a position wins") {
        const auto c = rules_only({{"ab", "X"}, {"abc", "Y"}, {"b", "Z"}});
        CHECK(run(c, "abcd") == "Yd");
        CHECK(run(c, "abd") == "Xd");
        CHECK(run(c, "bb") == "ZZ");
    }
    SECTION("the leftmost match wins over a longer one starting later") {
        const auto c = rules_only({{"ab", "1"}, {"bcdef", "2"}});
        CHECK(run(c, "abcdef") == "1cdef");
    }
    SECTION("a longer match found later but starting earlier wins") {
        const auto c = rules_only({{"bc", "1"}, {"abcd", "2"}});
        CHECK(run(c, "abcd") == "2");
        CHECK(run(c, "abce") == "a1e");
    }
    SECTION("a replacement is never re-scanned by another rule") {
        // The chapter's sequential str.replace would turn "ab" into "b" then "b" into "c".
        const auto c = rules_only({{"a", "b"}, {"b", "c"}});
        CHECK(run(c, "ab") == "bc");
        const auto grow = rules_only({{"x", "xx"}});
        CHECK(run(grow, "xxx") == "xxxxxx");
    }
    SECTION("overlapping matches: scanning resumes after the match") {
        const auto c = rules_only({{"aa", "b"}});
        CHECK(run(c, "aaaaa") == "bba");
    }
    SECTION("first rule wins on identical patterns; user rules before built-ins") {
        const auto c = rules_only({{"ab", "1"}, {"ab", "2"}});
        CHECK(run(c, "ab") == "1");
        CHECK(c.rules().size() == 1);
        CompressorOptions options;
        options.rules = {{"请你", "请"}};
        const PromptCompressor<> mine(options);
        CHECK(mine.compress("请你看").text == "请看");
    }
    SECTION("agrees with a naive reference on many random texts") {
        const std::vector<CompressionRule> rules = {{"ab", "1"}, {"abc", "22"}, {"bca", ""}, {"c", "cc"},
                                                    {"aaa", "3"}, {"ba", "4"}, {"cab", "5"}};
        const auto c = rules_only(rules);
        std::uint32_t state = 12345;
        for (int round = 0; round < 2000; ++round) {
            std::string text;
            const int length = static_cast<int>(state % 17);
            for (int i = 0; i < length; ++i) {
                state = state * 1103515245U + 12345U;
                text += static_cast<char>('a' + (state >> 16) % 3);
            }
            state = state * 1103515245U + 12345U;
            INFO(text);
            CHECK(run(c, text) == reference_replace(text, rules));
        }
    }
    SECTION("fired rules are reported by index into rules()") {
        const auto c = rules_only({{"ab", "1"}, {"cd", "2"}, {"ef", "3"}});
        const auto result = c.compress("ab ab cd");
        REQUIRE(result.report.rules_fired.size() == 2);
        CHECK(result.report.rules_fired[0].rule == 0);
        CHECK(result.report.rules_fired[0].count == 2);
        CHECK(result.report.rules_fired[1].rule == 1);
        CHECK(result.report.rules_fired[1].count == 1);
        CHECK(c.rules()[result.report.rules_fired[1].rule].pattern == "cd");
    }
    SECTION("case-insensitive and whole-word rules") {
        const auto c = rules_only({{"in order to", "to", true, true}, {"cat", "dog", true, false}});
        CHECK(run(c, "IN ORDER TO win") == "To win");  // the first capital is kept
        CHECK(run(c, "In Order to win") == "To win");
        CHECK(run(c, "within order total") == "within order total");
        CHECK(run(c, "Concatenate") == "Condogenate");  // not whole-word: fires inside words
        CHECK(run(c, "xin order to") == "xin order to");
        CHECK(run(c, "(in order to)") == "(to)");
    }
    SECTION("a case-sensitive rule does not fire on other case, but a case-insensitive one with the same letters does") {
        const auto c = rules_only({{"ABC", "1", false, false}, {"abc", "2", true, false}});
        CHECK(run(c, "ABC") == "1");
        CHECK(run(c, "aBc") == "2");
        CHECK(run(c, "abc") == "2");
    }
}

TEST_CASE("built-in Chinese rules (the chapter's, both commas)", "[compressor]") {
    CompressorOptions options;
    options.english_rules = false;
    const PromptCompressor<> c(options);
    CHECK(run(c, "请你帮我") == "帮我");
    CHECK(run(c, "请注意格式") == "注意格式");
    CHECK(run(c, "你需要回答") == "回答");
    CHECK(run(c, "以下是代码") == "代码");
    CHECK(run(c, "首先，读题") == "1.读题");
    CHECK(run(c, "首先,读题") == "1.读题");
    CHECK(run(c, "其次，分析") == "2.分析");
    CHECK(run(c, "其次,分析") == "2.分析");
    CHECK(run(c, "最后，总结") == "3.总结");
    CHECK(run(c, "最后,总结") == "3.总结");
    CHECK(run(c, "首先读题") == "首先读题");  // no comma: not an enumeration, left alone
    CHECK(c.rules().size() == llmfast::chinese_rules().size());

    // The chapter's own example prompt.
    const std::string seed_prompt =
        "\n请你帮我分析以下是一段代码，你需要首先，理解代码的功能，其次，找出潜在的问题，最后，给出改进建议。\n"
        "请注意代码的性能和可读性。\n";
    const auto result = c.compress(seed_prompt);
    CHECK(result.text == "帮我分析一段代码，1.理解代码的功能，2.找出潜在的问题，3.给出改进建议。\n注意代码的性能和可读性。");
    CHECK(result.report.tokens_after < result.report.tokens_before);
    CHECK(result.report.token_reduction() > 0.15);
    CHECK(result.report.rules_fired.size() == 7);
}

TEST_CASE("built-in English rules: case-insensitive, word boundaries, capitals kept", "[compressor]") {
    CompressorOptions options;
    options.chinese_rules = false;
    const PromptCompressor<> c(options);
    for (const CompressionRule& rule : llmfast::english_rules()) {
        INFO(rule.pattern);
        const std::string gap = rule.pattern.back() == ' ' ? "" : " ";  // a deletion pattern ends with its space
        const std::string text = "x " + rule.pattern + gap + "y";
        const std::string expected = "x " + rule.replacement + gap + "y";
        CHECK(c.compress(text).text == expected);
        CHECK(rule.ignore_case);
        CHECK(rule.whole_word);
    }
    CHECK(run(c, "Please note that the file is large.") == "The file is large.");
    CHECK(run(c, "I would like you to summarize it in order to save time.") == "Summarize it to save time.");
    CHECK(run(c, "Due to the fact that it rained, we stayed.") == "Because it rained, we stayed.");
    CHECK(run(c, "premake sure that") == "premake sure that");  // word boundary on the left
    CHECK(run(c, "this is able to go") == "this can go");
    CHECK(run(c, "this is able tons") == "this is able tons");  // word boundary on the right
}

TEST_CASE("whitespace normalization: Unicode spaces, blank lines, trimming", "[compressor]") {
    CompressorOptions options;
    options.chinese_rules = false;
    options.english_rules = false;
    const PromptCompressor<> c(options);
    CHECK(run(c, "  \n\n a  b\t\tc   \n") == "a b c");
    CHECK(run(c, "a\n  b   c") == "a\n  b c");  // leading ASCII indentation kept inside the text
    CHECK(run(c, "a\xE3\x80\x80\xE3\x80\x80" "b") == "a b");  // ideographic spaces
    CHECK(run(c, "\xE3\x80\x80\xE3\x80\x80段落") == "段落");    // Chinese paragraph indent dropped
    CHECK(run(c, "a\xC2\xA0 b") == "a b");                    // no-break space
    CHECK(run(c, "a\n\n\n\nb\n \n\t\nc") == "a\n\nb\n\nc");
    CHECK(run(c, "a\r\nb\r\n") == "a\nb");
    CHECK(run(c, "") == "");
    CHECK(run(c, " \n\t ") == "");
    CHECK(run(c, "- item\n  - nested") == "- item\n  - nested");
}

namespace {
// Reference whitespace normalization, written plainly (no fences in its input).
std::size_t space_width(std::string_view text, std::size_t i) {
    const char c = text[i];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') return 1;
    if (text.substr(i, 2) == "\xC2\xA0") return 2;
    if (text.substr(i, 3) == "\xE3\x80\x80") return 3;
    return 0;
}
std::string reference_normalize(std::string_view text) {
    std::string out;
    bool started = false, blank = false;
    std::size_t line_start = 0;
    while (line_start <= text.size()) {
        std::size_t line_end = text.find('\n', line_start);
        if (line_end == std::string_view::npos) line_end = text.size();
        const std::string_view line = text.substr(line_start, line_end - line_start);
        line_start = line_end + 1;
        std::size_t i = 0;
        bool ascii = true;
        while (i < line.size() && space_width(line, i) != 0) {
            if (space_width(line, i) > 1 || (line[i] != ' ' && line[i] != '\t')) ascii = false;
            i += space_width(line, i);
        }
        if (i == line.size()) {
            blank = blank || started;
            continue;
        }
        std::string body = started && ascii ? std::string(line.substr(0, i)) : std::string();
        bool in_run = false;
        for (; i < line.size();) {
            if (const std::size_t w = space_width(line, i); w != 0) {
                in_run = true;
                i += w;
                continue;
            }
            if (in_run) body += ' ';
            in_run = false;
            body += line[i++];
        }
        if (started) out += blank ? "\n\n" : "\n";
        out += body;
        started = true;
        blank = false;
    }
    return out;
}
}  // namespace

TEST_CASE("whitespace normalization agrees with a plain reference on random text", "[compressor]") {
    CompressorOptions options;
    options.chinese_rules = false;
    options.english_rules = false;
    const PromptCompressor<> c(options);
    const std::vector<std::string> alphabet = {" ", " ", " ", "\t", "\r", "a", "b", "c", "\n", "\xE3\x80\x80",
                                               "\xC2\xA0", "\xE3\x80\x82", "\xC3\xA9", "\xE4\xB8\xAD", "xyz"};
    std::uint32_t state = 99;
    for (int round = 0; round < 3000; ++round) {
        std::string text;
        state = state * 1103515245U + 12345U;
        const std::size_t length = (state >> 16) % 70;
        for (std::size_t i = 0; i < length; ++i) {
            state = state * 1103515245U + 12345U;
            text += alphabet[(state >> 16) % alphabet.size()];
        }
        INFO(text);
        CHECK(c.compress(text).text == reference_normalize(text));
    }
}

TEST_CASE("code fences are copied byte for byte", "[compressor]") {
    const PromptCompressor<> c;
    const std::string code = "```python\ndef f(x):\n    请你  =  1\n\n\n\n    return   x  # in order to\n```";
    const std::string text = "请你看   代码:\n\n\n" + code + "\n\n\n\n请注意   缩进。";
    const auto result = c.compress(text);
    CHECK(result.text == "看 代码:\n\n" + code + "\n\n注意 缩进。");
    // An unclosed fence runs to the end of the text.
    const std::string open = "请你\n~~~\n请你   x\n\n\n";
    CHECK(run(c, open) == "~~~\n请你   x\n\n");  // only the newline ending the text is trimmed
    // Indented fences (up to 3 spaces) count too.
    CHECK(run(c, "a\n   ```\n  x   y\n   ```\nb") == "a\n   ```\n  x   y\n   ```\nb");
}

TEST_CASE("repeated lines and sentences", "[compressor]") {
    CompressorOptions options;
    options.chinese_rules = false;
    options.english_rules = false;
    options.remove_repeated_lines = true;
    const PromptCompressor<> lines(options);
    const auto r = lines.compress("The server restarted at noon.\nok\nThe  server restarted at noon.  \nok\nend");
    CHECK(r.text == "The server restarted at noon.\nok\nok\nend");  // short lines are never dropped
    CHECK(r.report.lines_removed == 1);

    options.remove_repeated_lines = false;
    options.remove_repeated_sentences = true;
    const PromptCompressor<> sentences(options);
    const auto s = sentences.compress(
        "Paris is the capital of France. It is large. Paris is the capital of France.\n"
        "巴黎是法国的首都和最大城市。巴黎是法国的首都和最大城市。它很美。");
    CHECK(s.text == "Paris is the capital of France. It is large.\n巴黎是法国的首都和最大城市。它很美。");
    CHECK(s.report.sentences_removed == 2);

    // Not inside code fences.
    const auto f = sentences.compress("```\nrepeated line here.\nrepeated line here.\n```");
    CHECK(f.text == "```\nrepeated line here.\nrepeated line here.\n```");
}

TEST_CASE("budget mode: BM25 relevance, original order, budget met", "[compressor]") {
    const std::string context =
        "The weather in Paris was sunny all week. "
        "To rotate an API key, open the dashboard and click rotate. "
        "Our office dog is named Biscuit. "
        "Old API keys stop working one hour after you rotate them. "
        "The cafeteria serves soup on Mondays.\n"
        "密钥轮换后旧密钥一小时内失效。今天食堂有汤。";
    const PromptCompressor<> c;
    const llmfast::EstimatingTokenCounter counter;

    const auto all = c.compress_to_budget(context, "rotate API key", 100000);
    CHECK(all.report.chunks_total == 7);
    CHECK(all.report.chunks_kept == 7);

    for (std::size_t budget = 0; budget <= 80; ++budget) {
        const auto r = c.compress_to_budget(context, "how do I rotate an API key", budget);
        INFO(budget << ": " << r.text);
        CHECK(counter.count(r.text) <= budget);
        CHECK(r.report.tokens_after <= budget);
        CHECK(llmfast::utf8::is_valid(r.text));
    }
    const auto r = c.compress_to_budget(context, "how do I rotate an API key", 30);
    // The two API-key sentences are kept, in their original order, the dog and the soup are not.
    const auto first = r.text.find("To rotate an API key");
    const auto second = r.text.find("Old API keys");
    REQUIRE(first != std::string::npos);
    REQUIRE(second != std::string::npos);
    CHECK(first < second);
    CHECK(r.text.find("Biscuit") == std::string::npos);
    CHECK(r.text.find("soup") == std::string::npos);

    // Chinese bigrams: a Chinese query finds the Chinese sentence.
    const auto zh = c.compress_to_budget(context, "密钥失效", 20);
    CHECK(zh.text == "密钥轮换后旧密钥一小时内失效。");

    // With a word counter the budget is met as that counter counts it.
    const PromptCompressor<WordCounter> words;
    const auto w = words.compress_to_budget(context, "rotate API key", 20);
    CHECK(WordCounter{}.count(w.text) <= 20);
    CHECK(w.text.find("rotate") != std::string::npos);
}

TEST_CASE("budget mode keeps a fenced code block whole or not at all", "[compressor]") {
    const std::string context =
        "The config loader reads YAML. It retries twice.\n"
        "```python\ndef load_config(path):\n    return yaml.safe_load(open(path))\n```\n"
        "Lunch is at noon. The loader caches results.";
    const PromptCompressor<> c;
    const llmfast::EstimatingTokenCounter counter;
    const std::string fence = "```python\ndef load_config(path):\n    return yaml.safe_load(open(path))\n```";
    for (std::size_t budget = 0; budget <= 60; ++budget) {
        const auto r = c.compress_to_budget(context, "load_config yaml loader", budget);
        INFO(budget << ": " << r.text);
        CHECK(counter.count(r.text) <= budget);
        const bool has_start = r.text.find("```python") != std::string::npos;
        const bool has_whole = r.text.find(fence) != std::string::npos;
        CHECK(has_start == has_whole);
    }
    const auto r = c.compress_to_budget(context, "load_config yaml", 40);
    CHECK(r.text.find(fence) != std::string::npos);
    CHECK(r.text.find("Lunch") == std::string::npos);
}

TEST_CASE("statistics", "[compressor]") {
    const PromptCompressor<> c;
    const auto r = c.compress("请你  翻译");
    CHECK(r.text == "翻译");
    CHECK(r.report.bytes_before == 14);
    CHECK(r.report.bytes_after == 6);
    CHECK(r.report.chars_before == 6);
    CHECK(r.report.chars_after == 2);
    CHECK(r.report.tokens_before == llmfast::EstimatingTokenCounter{}.count("请你  翻译"));
    CHECK(r.report.tokens_after == llmfast::EstimatingTokenCounter{}.count("翻译"));
    CHECK(r.report.token_reduction() >= 0.5);
    const auto empty = c.compress("");
    CHECK(empty.report.token_reduction() == 0);
}

TEST_CASE("invalid UTF-8 and invalid options", "[compressor]") {
    const PromptCompressor<> c;
    CHECK_THROWS_AS(c.compress("ab\xFF"), llmfast::Error);
    try {
        (void)c.compress("ab\xE4\xBD");
        FAIL("no throw");
    } catch (const llmfast::Error& e) {
        CHECK(e.code() == llmfast::ErrorCode::InvalidUtf8);
    }
    CompressorOptions repair;
    repair.repair_invalid_utf8 = true;
    const PromptCompressor<> r(repair);
    CHECK(r.compress("请你\xFF").text == "\xEF\xBF\xBD");

    const auto invalid_argument = [](CompressorOptions options) {
        try {
            PromptCompressor<> bad(std::move(options));
        } catch (const llmfast::Error& e) {
            return e.code() == llmfast::ErrorCode::InvalidArgument;
        }
        return false;
    };
    CompressorOptions empty_pattern;
    empty_pattern.rules = {{"", "x"}};
    CHECK(invalid_argument(empty_pattern));
    CompressorOptions bad_pattern;
    bad_pattern.rules = {{"\xC0", "x"}};
    CHECK(invalid_argument(bad_pattern));
    CompressorOptions zero;
    zero.min_repeated_length = 0;
    CHECK(invalid_argument(zero));
}

TEST_CASE("copies work and a compressor is shared between threads", "[compressor]") {
    const PromptCompressor<> original;
    PromptCompressor<> copy = original;
    const PromptCompressor<> moved = std::move(copy);
    CHECK(moved.compress("请你看").text == "看");
    STATIC_REQUIRE(llmfast::TokenCounter<WordCounter>);

    std::vector<std::thread> threads;
    std::vector<int> ok(4, 0);
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < 200; ++i) ok[static_cast<std::size_t>(t)] += original.compress("请你 in order to 看").text == "to 看";
        });
    for (std::thread& thread : threads) thread.join();
    for (const int count : ok) CHECK(count == 200);
}

TEST_CASE("end of input behaves like a non-matching character", "[compressor]") {
    // Issue 11: the automaton inside "abcd" when "abc" ended emitted "ab" and copied "c" raw.
    const std::vector<CompressionRule> rules = {{"ab", "X"}, {"abcd", "Y"}, {"c", "Z"}};
    const auto c = rules_only(rules);
    CHECK(run(c, "abc") == "XZ");
    CHECK(run(c, "abc.") == "XZ.");
    CHECK(run(c, "abcabc") == "XZXZ");
    CHECK(run(c, "abcd") == "Y");
    CHECK(run(c, "xabcdabc") == "xYXZ");
    const auto deep = rules_only({{"a", "1"}, {"abcde", "2"}, {"b", "3"}, {"cd", "4"}});
    CHECK(run(deep, "abcd") == "134");
    for (const std::string_view text : {"abc", "abcabc", "ab", "abcab", "cabca"}) {
        INFO(text);
        CHECK(run(c, text) == reference_replace(text, rules));
    }
}
