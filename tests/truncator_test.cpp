#include <llmfast/truncator.hpp>

#include "catch.hpp"

#include <algorithm>
#include <array>
#include <limits>
#include <string>
#include <vector>

using llmfast::ChatMessage;
using llmfast::FitOptions;
using llmfast::TruncateStrategy;
using llmfast::Truncator;
using llmfast::TruncatorOptions;
namespace utf8 = llmfast::utf8;

namespace {

// One token per code point: exact and additive.
struct CodePointCounter {
    std::size_t count(std::string_view text) const { return utf8::count_code_points(text); }
};

// A greedy longest-match tokenizer over a small vocabulary, falling back to one token per byte:
// like byte-level BPE it is neither additive nor guaranteed monotone in the prefix length.
struct GreedyVocabCounter {
    std::size_t count(std::string_view text) const {
        static constexpr std::array<std::string_view, 16> vocab = {
            " the", "the", " and", "ing", " to", "tion", "er", "\n\n", "。", "的", "模型", "推理",
            "\xF0\x9F\x98\x80", " is", "  ", "ab"};
        std::size_t tokens = 0;
        std::size_t pos = 0;
        while (pos < text.size()) {
            std::size_t best = 1;
            for (const std::string_view word : vocab)
                if (word.size() > best && text.substr(pos, word.size()) == word) best = word.size();
            pos += best;
            ++tokens;
        }
        return tokens;
    }
};

// Records how many bytes it was asked to count in total (to check cost ~ what is kept). Monotone
// like the estimator it wraps, so the truncator may settle "does not fit" from a prefix.
struct MeteredCounter {
    static constexpr bool monotone = true;
    std::size_t* bytes;
    std::size_t count(std::string_view text) const {
        *bytes += text.size();
        return llmfast::EstimatingTokenCounter{}.count(text);
    }
};

const std::string mixed_text =
    "LLM inference latency is the biggest pain point in production. 推理延迟是生产环境最大的痛点。\n"
    "Streaming lowers the time to first token 😀 by about 80%, and the user feels it.\n"
    "本章涵盖从应用层到模型层的全链路优化！Batching raises throughput; caching cuts cost.\n"
    "\n"
    "Emoji 🎉🚀 and CJK 模型推理 mixed: the end is near. 最后一句。";

constexpr std::array<TruncateStrategy, 3> strategies = {TruncateStrategy::Head, TruncateStrategy::Tail,
                                                        TruncateStrategy::Middle};

bool starts_with(std::string_view text, std::string_view prefix) { return text.substr(0, prefix.size()) == prefix; }
bool ends_with(std::string_view text, std::string_view suffix) {
    return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

template <class Counter>
void check_every_budget(const Counter& counter, const std::string& text, const TruncatorOptions& options) {
    const Truncator<Counter> truncator(options, counter);
    const std::string_view marker = options.marker;
    const std::size_t whole = counter.count(text);
    for (const TruncateStrategy strategy : strategies) {
        std::size_t previous_kept = 0;
        for (std::size_t budget = 0; budget <= whole + 3; ++budget) {
            const llmfast::Truncation cut = truncator.truncate(text, budget, strategy);
            INFO("strategy " << static_cast<int>(strategy) << " budget " << budget << ": " << cut.text);
            REQUIRE(counter.count(cut.text) <= budget);
            REQUIRE(cut.tokens == counter.count(cut.text));
            REQUIRE(utf8::is_valid(cut.text));
            if (budget >= whole) {
                CHECK_FALSE(cut.truncated);
                CHECK(cut.text == text);
                continue;
            }
            if (cut.text.empty()) {
                // Only when the budget can't hold the marker and a little text.
                CHECK(budget <= counter.count(marker) + 8);
                continue;
            }
            CHECK(cut.truncated);
            const std::size_t kept = cut.text.size() - marker.size();
            switch (strategy) {
                case TruncateStrategy::Head:
                    CHECK(ends_with(cut.text, marker));
                    CHECK(starts_with(text, std::string_view(cut.text).substr(0, kept)));
                    break;
                case TruncateStrategy::Tail:
                    CHECK(starts_with(cut.text, marker));
                    CHECK(ends_with(text, std::string_view(cut.text).substr(marker.size())));
                    break;
                case TruncateStrategy::Middle: {
                    // head + marker + tail, for some split (any split when the marker is empty).
                    const std::string_view out = cut.text;
                    bool found = false;
                    for (std::size_t at = out.find(marker); at != std::string_view::npos && !found;
                         at = out.find(marker, at + 1))
                        found = starts_with(text, out.substr(0, at)) && ends_with(text, out.substr(at + marker.size()));
                    CHECK(found);
                    break;
                }
            }
            // Keeping more with a larger budget, roughly (boundary preference may move a cut back).
            CHECK(kept + 2 * options.boundary_window + 16 >= previous_kept);
            previous_kept = std::max(previous_kept, kept);
        }
    }
}

std::string repeat(std::string_view piece, std::size_t times) {
    std::string out;
    for (std::size_t i = 0; i < times; ++i) out += piece;
    return out;
}

}  // namespace

TEST_CASE("every budget from 0 upward: never over budget, valid UTF-8, right shape", "[truncator]") {
    const std::string text = mixed_text + "\n" + mixed_text;  // several pieces long
    TruncatorOptions options;
    options.piece_bytes = 64;  // many pieces, so the piecewise pricing is exercised
    SECTION("estimating counter") { check_every_budget(llmfast::EstimatingTokenCounter{}, text, options); }
    SECTION("code-point counter") { check_every_budget(CodePointCounter{}, text, options); }
    SECTION("greedy vocabulary counter") { check_every_budget(GreedyVocabCounter{}, text, options); }
    SECTION("ASCII marker with newlines, small window") {
        options.marker = "\n[...]\n";
        options.boundary_window = 8;
        check_every_budget(llmfast::EstimatingTokenCounter{}, text, options);
        check_every_budget(GreedyVocabCounter{}, text, options);
    }
    SECTION("empty marker, default pieces") {
        TruncatorOptions plain;
        plain.marker = "";
        check_every_budget(CodePointCounter{}, text, plain);
        check_every_budget(GreedyVocabCounter{}, text, plain);
    }
    SECTION("middle with an uneven share") {
        options.head_share = 0.2;
        check_every_budget(llmfast::EstimatingTokenCounter{}, text, options);
    }
}

TEST_CASE("a cut uses the budget well with an additive counter", "[truncator]") {
    const CodePointCounter counter;
    TruncatorOptions options;
    options.boundary_window = 0;  // no boundary preference: the cut is the largest that fits
    const Truncator<CodePointCounter> truncator(options, counter);
    const std::string text = repeat("模型推理😀ab ", 500);
    for (const TruncateStrategy strategy : strategies) {
        for (const std::size_t budget : {2U, 3U, 10U, 99U, 1000U}) {
            const auto cut = truncator.truncate(text, budget, strategy);
            INFO(static_cast<int>(strategy) << " " << budget);
            CHECK(cut.tokens == budget);  // every code point of the budget is used
        }
    }
}

TEST_CASE("cuts prefer line, then sentence, then word boundaries", "[truncator]") {
    const CodePointCounter counter;
    const Truncator<CodePointCounter> truncator({}, counter);
    const std::string lines = "first line here\nsecond line here\nthird line here\n";
    CHECK(truncator.truncate(lines, 30, TruncateStrategy::Head).text == "first line here\n…");
    CHECK(truncator.truncate(lines, 30, TruncateStrategy::Tail).text == "…third line here\n");
    const std::string sentences = "One sentence. Two sentence. Three sentence.";
    CHECK(truncator.truncate(sentences, 25, TruncateStrategy::Head).text == "One sentence.…");
    CHECK(truncator.truncate(sentences, 25, TruncateStrategy::Tail).text == "…Three sentence.");
    const std::string chinese = "第一句话很短。第二句话也很短。第三句话。";
    CHECK(truncator.truncate(chinese, 12, TruncateStrategy::Head).text == "第一句话很短。…");
    CHECK(truncator.truncate(chinese, 10, TruncateStrategy::Tail).text == "…第三句话。");
    const std::string words = "alpha beta gamma delta epsilon";
    CHECK(truncator.truncate(words, 14, TruncateStrategy::Head).text == "alpha beta…");
    CHECK(truncator.truncate(words, 15, TruncateStrategy::Tail).text == "…delta epsilon");
    const auto middle = truncator.truncate(lines, 36, TruncateStrategy::Middle);
    CHECK(middle.text == "first line here\n…third line here\n");
}

TEST_CASE("cost is proportional to what is kept, not to the input", "[truncator]") {
    // 4 MB of text, with an invalid byte at the very end: head truncation never reads it.
    std::string big = repeat("The quick brown fox jumps over the lazy dog. 敏捷的棕色狐狸。\n", 60000);
    big += "\xFF";
    std::size_t bytes = 0;
    const Truncator<MeteredCounter> truncator({}, MeteredCounter{&bytes});
    const auto head = truncator.truncate(big, 2000, TruncateStrategy::Head);
    CHECK(head.tokens <= 2000);
    CHECK(head.tokens > 1900);
    CHECK(bytes < 20 * head.text.size());
    // The tail starts at the invalid byte: it is read and rejected.
    CHECK_THROWS_AS(truncator.truncate(big, 2000, TruncateStrategy::Tail), llmfast::Error);
    big.pop_back();
    bytes = 0;
    const auto tail = truncator.truncate(big, 2000, TruncateStrategy::Tail);
    CHECK(tail.tokens <= 2000);
    CHECK(tail.tokens > 1900);
    CHECK(bytes < 20 * tail.text.size());
    bytes = 0;
    const auto middle = truncator.truncate(big, 2000, TruncateStrategy::Middle);
    CHECK(middle.tokens <= 2000);
    CHECK(middle.tokens > 1900);
    CHECK(bytes < 20 * middle.text.size());

    TruncatorOptions whole;
    whole.check_whole_input = true;
    const Truncator<> strict(whole);
    CHECK_THROWS_AS(strict.truncate(big + "\xFF", 2000, TruncateStrategy::Head), llmfast::Error);
}

TEST_CASE("invalid UTF-8: InvalidUtf8 unless repair was asked for", "[truncator]") {
    const Truncator<> truncator;
    for (const TruncateStrategy strategy : strategies) {
        try {
            (void)truncator.truncate("abc\xE4\xBD def", 100, strategy);
            FAIL("no throw");
        } catch (const llmfast::Error& e) {
            CHECK(e.code() == llmfast::ErrorCode::InvalidUtf8);
        }
    }
    TruncatorOptions repair;
    repair.repair_invalid_utf8 = true;
    const Truncator<> repairing(repair);
    const auto fixed = repairing.truncate("abc\xE4\xBD def", 100);
    CHECK(fixed.text == "abc\xEF\xBF\xBD def");
    const auto cut = repairing.truncate(repeat("ab\xFF ", 100), 20, TruncateStrategy::Tail);
    CHECK(utf8::is_valid(cut.text));
    CHECK(cut.tokens <= 20);
}

TEST_CASE("small budgets, empty text, options", "[truncator]") {
    const Truncator<> truncator;
    CHECK(truncator.truncate("", 10).text.empty());
    CHECK(truncator.truncate("hello world", 0).text.empty());
    CHECK(truncator.truncate("hello", 1).text == "hello");  // fits whole: no marker needed
    for (const TruncateStrategy strategy : strategies) {
        const auto unlimited = truncator.truncate(mixed_text, std::numeric_limits<std::size_t>::max(), strategy);
        CHECK(unlimited.text == mixed_text);
        CHECK_FALSE(unlimited.truncated);
    }
    TruncatorOptions all_head;
    all_head.head_share = 1.0;
    const auto head_only = Truncator<>(all_head).truncate(mixed_text, 20, TruncateStrategy::Middle);
    CHECK(ends_with(head_only.text, "\xE2\x80\xA6"));
    CHECK(head_only.tokens <= 20);
    const auto tiny = truncator.truncate(repeat("hello ", 100), 1);
    CHECK(tiny.text.empty());  // the marker alone uses the budget: nothing of the text fits
    CHECK(tiny.truncated);

    const auto invalid_argument = [](TruncatorOptions options) {
        try {
            Truncator<> bad(std::move(options));
        } catch (const llmfast::Error& e) {
            return e.code() == llmfast::ErrorCode::InvalidArgument;
        }
        return false;
    };
    TruncatorOptions bad_marker;
    bad_marker.marker = "\xFF";
    CHECK(invalid_argument(bad_marker));
    TruncatorOptions bad_share;
    bad_share.head_share = 1.5;
    CHECK(invalid_argument(bad_share));
    TruncatorOptions bad_piece;
    bad_piece.piece_bytes = 4;
    CHECK(invalid_argument(bad_piece));
    STATIC_REQUIRE(llmfast::TokenCounter<GreedyVocabCounter>);
}

TEST_CASE("fit_messages: system kept, oldest whole turns dropped, newest kept", "[truncator]") {
    const CodePointCounter counter;
    const Truncator<CodePointCounter> truncator({}, counter);
    FitOptions plain;  // simple arithmetic: content only
    plain.per_message_overhead = 0;
    plain.reply_overhead = 0;
    plain.count_role = false;
    const std::vector<ChatMessage> history = {
        {"system", "sys"},          // 3
        {"user", "u1u1u1u1u1"},     // 10
        {"assistant", "a1a1a1a1"},  // 8
        {"tool", "t1t1"},           // 4
        {"user", "u2u2u2"},         // 6
        {"assistant", "a2a2"},      // 4
        {"user", "u3"},             // 2
    };
    SECTION("everything fits") {
        const auto fit = truncator.fit_messages(history, 37, plain);
        CHECK(fit.messages.size() == history.size());
        CHECK(fit.dropped.empty());
        CHECK(fit.shortened.empty());
        CHECK(fit.tokens == 37);
    }
    SECTION("the oldest turn goes whole: user, assistant and tool together") {
        const auto fit = truncator.fit_messages(history, 36, plain);
        CHECK(fit.dropped == std::vector<std::size_t>{1, 2, 3});
        REQUIRE(fit.messages.size() == 4);
        CHECK(fit.messages[0].role == "system");
        CHECK(fit.messages[1].content == "u2u2u2");
        CHECK(fit.tokens == 15);
    }
    SECTION("only the newest turn left, then it is shortened") {
        const auto fit = truncator.fit_messages(history, 5, plain);
        CHECK(fit.dropped == std::vector<std::size_t>{1, 2, 3, 4, 5});
        CHECK(fit.tokens == 5);
        const auto shorter = truncator.fit_messages(history, 4, plain);
        CHECK(shorter.shortened == std::vector<std::size_t>{6});
        CHECK(shorter.tokens <= 4);
        REQUIRE(shorter.messages.size() == 2);
        CHECK(shorter.messages[1].role == "user");
    }
    SECTION("overheads are counted") {
        FitOptions chat;  // 3 per message + role + content, 3 for the reply
        const auto fit = truncator.fit_messages(history, 1000, chat);
        std::size_t expected = 3;
        for (const ChatMessage& m : history) expected += 3 + m.role.size() + m.content.size();
        CHECK(fit.tokens == expected);
        const auto tight = truncator.fit_messages(history, expected - 1, chat);
        CHECK(tight.dropped == std::vector<std::size_t>{1, 2, 3});
        CHECK(tight.tokens <= expected - 1);
    }
    SECTION("the system messages alone don't fit") {
        try {
            (void)truncator.fit_messages(history, 2, plain);
            FAIL("no throw");
        } catch (const llmfast::Error& e) {
            CHECK(e.code() == llmfast::ErrorCode::BudgetTooSmall);
        }
    }
}

TEST_CASE("fit_messages edge cases", "[truncator]") {
    const CodePointCounter counter;
    const Truncator<CodePointCounter> truncator({}, counter);
    FitOptions plain;
    plain.per_message_overhead = 0;
    plain.reply_overhead = 0;
    plain.count_role = false;

    CHECK(truncator.fit_messages({}, 10, plain).messages.empty());

    // An assistant greeting before the first user message is its own (oldest) turn.
    const std::vector<ChatMessage> greeting = {{"assistant", "hello!"}, {"user", "hi"}, {"assistant", "yes"}};
    const auto g = truncator.fit_messages(greeting, 5, plain);
    CHECK(g.dropped == std::vector<std::size_t>{0});
    REQUIRE(g.messages.size() == 2);
    CHECK(g.messages[0].role == "user");

    // A system message in the middle stays; an assistant reply never survives without its user.
    const std::vector<ChatMessage> mid = {{"user", "aaaa"}, {"assistant", "bbbb"}, {"system", "S"},
                                          {"user", "cccc"}, {"assistant", "dddd"}};
    for (std::size_t budget = 1; budget <= 20; ++budget) {
        const auto fit = truncator.fit_messages(mid, budget, plain);
        INFO(budget);
        CHECK(fit.tokens <= budget);
        bool system = false;
        for (std::size_t i = 0; i < fit.messages.size(); ++i) {
            if (fit.messages[i].role == "system") system = true;
            if (fit.messages[i].role == "assistant") {
                REQUIRE(i > 0);
                CHECK((fit.messages[i - 1].role == "user" || fit.messages[i - 1].role == "system"));
            }
        }
        CHECK(system);
        std::size_t total = 0;
        for (const ChatMessage& m : fit.messages) total += counter.count(m.content);
        CHECK(total == fit.tokens);
    }
    // The newest turn's long message is shortened, not dropped, and says so.
    const std::vector<ChatMessage> long_question = {{"system", "S"}, {"user", repeat("question ", 50)}};
    const auto q = truncator.fit_messages(long_question, 40, plain);
    CHECK(q.shortened == std::vector<std::size_t>{1});
    CHECK(q.tokens <= 40);
    CHECK(q.messages[1].content.find("…") != std::string::npos);

    // Overheads alone exceed the budget.
    FitOptions heavy;
    heavy.per_message_overhead = 50;
    CHECK_THROWS_AS(truncator.fit_messages(long_question, 60, heavy), llmfast::Error);

    // Invalid UTF-8.
    const std::vector<ChatMessage> invalid = {{"user", "ok"}, {"assistant", "bad\xC3"}};
    CHECK_THROWS_AS(truncator.fit_messages(invalid, 100, plain), llmfast::Error);
    TruncatorOptions repair;
    repair.repair_invalid_utf8 = true;
    const Truncator<CodePointCounter> repairing(repair, counter);
    const auto fixed = repairing.fit_messages(invalid, 100, plain);
    CHECK(fixed.messages[1].content == "bad\xEF\xBF\xBD");
}

TEST_CASE("a text that fits is returned unchanged under every strategy, whatever its length", "[truncator]") {
    // Issue 11: below about two pieces, a Middle cut whose cost was between budget/2 and the budget
    // came back cut; a long whitespace run (1 token whole, 1 per piece) was cut under every strategy.
    const Truncator<> truncator;
    const llmfast::EstimatingTokenCounter counter;
    const std::string words = repeat("word ", 200);
    for (std::size_t length = 1; length <= words.size(); length += 7) {
        const std::string text = words.substr(0, length);
        const std::size_t cost = counter.count(text);
        for (const TruncateStrategy strategy : strategies)
            for (const std::size_t budget : {cost, cost + 1, 2 * cost}) {
                const auto cut = truncator.truncate(text, budget, strategy);
                INFO("length " << length << " cost " << cost << " budget " << budget << " strategy "
                               << static_cast<int>(strategy));
                CHECK_FALSE(cut.truncated);
                CHECK(cut.text == text);
                CHECK(cut.tokens == cost);
            }
    }
    const std::string sixty_four = words.substr(0, 64);
    CHECK(truncator.truncate(sixty_four, counter.count(sixty_four), TruncateStrategy::Middle).text == sixty_four);

    const std::string newlines(100000, '\n');
    REQUIRE(counter.count(newlines) <= 10);
    for (const TruncateStrategy strategy : strategies) {
        const auto cut = truncator.truncate(newlines, 10, strategy);
        CHECK_FALSE(cut.truncated);
        CHECK(cut.text == newlines);
    }
    // Counters that are not monotone take the whole-count path; the same holds.
    const Truncator<CodePointCounter> code_points;
    const Truncator<GreedyVocabCounter> greedy;
    for (const TruncateStrategy strategy : strategies) {
        CHECK(code_points.truncate(sixty_four, 64, strategy).text == sixty_four);
        CHECK_FALSE(greedy.truncate(newlines, 50000, strategy).truncated);  // "\n\n" is one token
    }
}

TEST_CASE("empty only when not even one character fits next to the marker", "[truncator]") {
    // Issue 11: "字" and "…" cost 2 each when priced alone, "字…" costs 3: budget 3 gave "".
    const Truncator<> truncator;
    const std::string han = repeat("\xE5\xAD\x97", 20);
    REQUIRE(truncator.counter().count("\xE5\xAD\x97\xE2\x80\xA6") == 3);
    CHECK(truncator.truncate(han, 3, TruncateStrategy::Head).text == "\xE5\xAD\x97\xE2\x80\xA6");
    CHECK(truncator.truncate(han, 3, TruncateStrategy::Tail).text == "\xE2\x80\xA6\xE5\xAD\x97");
    const auto middle = truncator.truncate(han, 3, TruncateStrategy::Middle);
    CHECK(middle.tokens == 3);
    CHECK(middle.text.size() == 6);
    CHECK(truncator.truncate(han, 2, TruncateStrategy::Head).text.empty());  // the marker alone costs 2
}

TEST_CASE("max_bytes caps every result, marker included, and never splits a character", "[truncator]") {
    const std::string spaces(5'000'000, ' ');  // the estimator: 1 token
    const std::string text = repeat("The model 模型推理 streams 😀 tokens.\n", 400);
    for (const std::size_t cap : {0U, 1U, 3U, 4U, 5U, 17U, 100U, 1000U, 4096U}) {
        TruncatorOptions options;
        options.max_bytes = cap;
        const Truncator<> truncator(options);
        for (const TruncateStrategy strategy : strategies) {
            INFO("cap " << cap << " strategy " << static_cast<int>(strategy));
            for (const std::string* input : {&spaces, &text}) {
                const auto cut = truncator.truncate(*input, 100000, strategy);
                CHECK(cut.text.size() <= cap);
                CHECK(utf8::is_valid(cut.text));
                CHECK(cut.truncated);
                if (cap >= 4 + 3) {
                    CHECK_FALSE(cut.text.empty());  // room for the marker and a character
                }
                CHECK(cut.tokens == truncator.counter().count(cut.text));
            }
            const auto small = truncator.truncate("abc", 100, strategy);
            CHECK(small.truncated == (cap < 3));
            if (cap >= 3) CHECK(small.text == "abc");
        }
    }
    // fit_messages applies the cap to every content, reports it as shortened, and still fits.
    TruncatorOptions options;
    options.max_bytes = 64;
    const Truncator<> truncator(options);
    const std::vector<ChatMessage> history = {{"system", "be brief"}, {"user", spaces}, {"assistant", "ok"}};
    const auto fit = truncator.fit_messages(history, 1000);
    REQUIRE(fit.messages.size() == 3);
    for (const ChatMessage& m : fit.messages) CHECK(m.content.size() <= 64);
    CHECK(fit.shortened == std::vector<std::size_t>{1});
    CHECK(fit.tokens <= 1000);
}
