#include <llmfast/estimating_token_counter.hpp>

#include "catch.hpp"

#include <string>

using llmfast::EstimatingTokenCounter;
using llmfast::EstimatorRatios;

TEST_CASE("EstimatingTokenCounter models TokenCounter and declares itself monotone", "[tokens]") {
    STATIC_REQUIRE(llmfast::TokenCounter<EstimatingTokenCounter>);
    STATIC_REQUIRE(llmfast::is_monotone_token_counter<EstimatingTokenCounter>);
}

TEST_CASE("estimating counter prices each kind of run", "[tokens]") {
    const EstimatingTokenCounter counter;
    CHECK(counter.count("") == 0);
    CHECK(counter.count("hello") == 1);
    CHECK(counter.count("hello world") == 2);               // one space is merged into the next word
    CHECK(counter.count("internationalization") == 2);      // 1 + floor(19 / 10)
    CHECK(counter.count("1234567") == 3);                   // digits in groups of three
    CHECK(counter.count("\xE4\xBD\xA0\xE5\xA5\xBD") == 3);  // 你好: 2 * 1.15, rounded up
    CHECK(counter.count("\xE3\x81\x93\xE3\x82\x93") == 2);  // こん: kana
    CHECK(counter.count("!") == 1);
    CHECK(counter.count("\n\n") == 1);                    // a whitespace run: 0.5, rounded up
    CHECK(counter.count("a\n\nb") == 3);                   // 1 + 0.5 + 1, rounded up
    CHECK(counter.count("\xF0\x9F\x98\x80") == 2);          // emoji: byte fallback, 4 bytes * 0.5
}

TEST_CASE("estimating counter: mixed text, ratios and invalid bytes", "[tokens]") {
    const std::string mixed = "Please summarize \xE8\xBF\x99\xE7\xAF\x87\xE6\x96\x87\xE7\xAB\xA0 in 3 points.";
    const EstimatingTokenCounter cl100k;
    const EstimatingTokenCounter o200k(EstimatorRatios::o200k());
    // Please, summarize, 4 ideographs, in, 3, points, "." (a punctuation run costs at least 1)
    CHECK(cl100k.count(mixed) == 11);  // 1 + 1 + 4 * 1.15 + 1 + 1 + 1 + 1 = 10.6
    CHECK(o200k.count(mixed) == 10);   // 1 + 1 + 4 * 0.8 + 1 + 1 + 1 + 1 = 9.2
    CHECK(cl100k.count("\xFF\xFE") == 1);  // two invalid bytes, 0.5 each, never a crash

    EstimatorRatios zero;
    zero.letters_per_token = 0;  // a divisor of 0 is clamped to 1, not a division by zero
    CHECK(EstimatingTokenCounter(zero).count("abc") == 3);
}

TEST_CASE("the estimate beats the chapter's 2-characters-per-token on English", "[tokens]") {
    // English runs at about 0.2 tokens per character with real BPE vocabularies; "chars / 2" gives 0.5.
    const std::string english =
        "The quick brown fox jumps over the lazy dog while the model streams its answer token by token.";
    const double per_char = static_cast<double>(EstimatingTokenCounter{}.count(english)) /
                            static_cast<double>(english.size());
    CHECK(per_char > 0.15);
    CHECK(per_char < 0.3);
}

TEST_CASE("estimating counter: at least 1 for non-empty text, truncate consistent with count", "[tokens]") {
    // Issue 11: count(" ") was 0 although the header promised at least 1 for non-empty text.
    const EstimatingTokenCounter counter;
    CHECK(counter.count(" ") == 1);
    CHECK(counter.count("") == 0);
    // "字…": 1.15 + 3 * 0.5 = 2.65, i.e. 3 tokens; the longest prefix within 3 tokens is all of it.
    const std::string zi = "\xE5\xAD\x97\xE2\x80\xA6";
    REQUIRE(counter.count(zi) == 3);
    CHECK(counter.truncate(zi, 3) == zi);
    CHECK(counter.truncate(zi, 2) == "\xE5\xAD\x97");
    CHECK(counter.truncate(zi, 0).empty());

    // On mixed text: truncate(text, n) is the longest prefix at a character boundary within n tokens.
    const std::string text = "Hello, \xE4\xB8\x96\xE7\x95\x8C! 12345 internationalization  \n\n\xF0\x9F\x98\x80 ok \xFF.";
    for (std::size_t n = 0; n <= counter.count(text) + 1; ++n) {
        const std::string_view prefix = counter.truncate(text, n);
        INFO(n << ": " << prefix);
        CHECK(counter.count(prefix) <= n);
        if (prefix.size() < text.size()) {
            // the next character boundary costs more
            std::size_t next = prefix.size() + 1;
            while (next < text.size() && (static_cast<unsigned char>(text[next]) & 0xC0U) == 0x80U) ++next;
            CHECK(counter.count(std::string_view(text).substr(0, next)) > n);
        } else {
            CHECK(counter.count(text) <= n);
        }
    }
    // Monotone in the prefix.
    std::size_t previous = 0;
    for (std::size_t length = 0; length <= text.size(); ++length) {
        const std::size_t c = counter.count(std::string_view(text).substr(0, length));
        CHECK(c >= previous);
        previous = c;
    }
    // Negative prices are clamped to 0 (a negative price would break monotonicity).
    EstimatorRatios negative;
    negative.whitespace_run = -5;
    CHECK(EstimatingTokenCounter(negative).count("a \n\n b") == EstimatingTokenCounter(negative).count("a b") + 0);
}
