#include <llmfast/tokens.hpp>

#include "catch.hpp"

#include <string>

using llmfast::EstimatingTokenCounter;
using llmfast::EstimatorRatios;

namespace {
struct ConstantCounter {
    std::size_t count(std::string_view) const { return 7; }
};
struct MutableOnlyCounter {
    std::size_t count(std::string_view) { return 7; }  // not const: can't be shared between threads
};
}  // namespace

TEST_CASE("TokenCounter concept", "[tokens]") {
    STATIC_REQUIRE(llmfast::TokenCounter<EstimatingTokenCounter>);
    STATIC_REQUIRE(llmfast::TokenCounter<ConstantCounter>);
    STATIC_REQUIRE_FALSE(llmfast::TokenCounter<MutableOnlyCounter>);
    STATIC_REQUIRE_FALSE(llmfast::TokenCounter<int>);
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

TEST_CASE("the estimate beats the seed's 2-characters-per-token on English", "[tokens]") {
    // English runs at about 0.2 tokens per character with real BPE vocabularies; "chars / 2" gives 0.5.
    const std::string english =
        "The quick brown fox jumps over the lazy dog while the model streams its answer token by token.";
    const double per_char = static_cast<double>(EstimatingTokenCounter{}.count(english)) /
                            static_cast<double>(english.size());
    CHECK(per_char > 0.15);
    CHECK(per_char < 0.3);
}
