#include <llmfast/utf8.hpp>

#include "catch.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace utf8 = llmfast::utf8;
using namespace std::string_view_literals;

TEST_CASE("valid UTF-8 of every length is accepted", "[utf8]") {
    CHECK(utf8::is_valid(""));
    CHECK(utf8::is_valid("plain ASCII"));
    CHECK(utf8::is_valid("caf\xC3\xA9"));                  // 2-byte
    CHECK(utf8::is_valid("\xE4\xB8\xAD\xE6\x96\x87"));     // 中文, 3-byte
    CHECK(utf8::is_valid("\xF0\x9F\x98\x80"));             // U+1F600, 4-byte
    CHECK(utf8::is_valid("\xF4\x8F\xBF\xBF"));             // U+10FFFF, the last code point
    CHECK(utf8::is_valid("\xED\x9F\xBF"));                 // U+D7FF, just below the surrogates
}

TEST_CASE("ill-formed UTF-8 is rejected at the first bad byte", "[utf8]") {
    CHECK(utf8::find_invalid("ab\x80") == 2);              // lone continuation byte
    CHECK(utf8::find_invalid("\xC0\xAF") == 0);            // overlong '/'
    CHECK(utf8::find_invalid("\xE0\x80\xAF") == 0);        // overlong, 3-byte
    CHECK(utf8::find_invalid("x\xED\xA0\x80") == 1);       // surrogate U+D800
    CHECK(utf8::find_invalid("\xF4\x90\x80\x80") == 0);    // above U+10FFFF
    CHECK(utf8::find_invalid("\xF5\x80\x80\x80") == 0);    // impossible lead byte
    CHECK(utf8::find_invalid("ok\xE4\xB8") == 2);          // truncated at the end
    CHECK(utf8::find_invalid("\xFF") == 0);
}

TEST_CASE("decode reports code points, maximal subparts and incomplete tails", "[utf8]") {
    auto r = utf8::decode("\xE4\xB8\xAD", 0);
    CHECK(r.status == utf8::DecodeStatus::Valid);
    CHECK(r.code_point == U'\u4E2D');
    CHECK(r.length == 3);

    r = utf8::decode("\xE4\xB8", 0);
    CHECK(r.status == utf8::DecodeStatus::Incomplete);
    CHECK(r.length == 2);

    r = utf8::decode("\xE4\xB8" "A", 0);  // broken after two bytes: those two are one maximal subpart
    CHECK(r.status == utf8::DecodeStatus::Invalid);
    CHECK(r.length == 2);

    r = utf8::decode("\xF0\x80", 0);      // 0x80 can't follow F0: the subpart is the lead byte alone
    CHECK(r.status == utf8::DecodeStatus::Invalid);
    CHECK(r.length == 1);
}

TEST_CASE("repair follows the maximal-subpart practice", "[utf8]") {
    // Examples from the Unicode standard, section 3.9 (U+FFFD substitution of maximal subparts).
    const std::string repaired = utf8::repair("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64");
    const std::string fffd{utf8::replacement_character};
    CHECK(repaired == "a" + fffd + fffd + fffd + "b" + fffd + "c" + fffd + fffd + "d");
    CHECK(utf8::repair("clean \xE4\xB8\xAD") == "clean \xE4\xB8\xAD");
    CHECK(utf8::is_valid(utf8::repair("\xED\xA0\x80\xF0\x9F")));
}

TEST_CASE("boundaries never fall inside a character", "[utf8]") {
    const std::string_view text = "a\xE4\xB8\xAD\xF0\x9F\x98\x80z";  // a 中 😀 z: offsets 0 1 4 8 9
    const std::vector<std::size_t> expected_floor = {0, 1, 1, 1, 4, 4, 4, 4, 8, 9, 10};
    const std::vector<std::size_t> expected_ceil = {0, 1, 4, 4, 4, 8, 8, 8, 8, 9, 10};
    for (std::size_t pos = 0; pos <= text.size(); ++pos) {
        CAPTURE(pos);
        CHECK(utf8::floor_boundary(text, pos) == expected_floor[pos]);
        CHECK(utf8::ceil_boundary(text, pos) == expected_ceil[pos]);
    }
    CHECK(utf8::floor_boundary(text, 100) == text.size());
}

TEST_CASE("complete_prefix_length holds back only a well-formed incomplete tail", "[utf8]") {
    CHECK(utf8::complete_prefix_length("abc") == 3);
    CHECK(utf8::complete_prefix_length("ab\xE4") == 2);
    CHECK(utf8::complete_prefix_length("ab\xE4\xB8") == 2);
    CHECK(utf8::complete_prefix_length("ab\xE4\xB8\xAD") == 5);
    CHECK(utf8::complete_prefix_length("ab\xF0\x9F\x98") == 2);
    CHECK(utf8::complete_prefix_length("ab\xC0") == 3);  // ill-formed, not incomplete: nothing to wait for
    CHECK(utf8::complete_prefix_length("") == 0);
}

TEST_CASE("count_code_points and append", "[utf8]") {
    CHECK(utf8::count_code_points("a\xE4\xB8\xAD\xF0\x9F\x98\x80") == 3);
    CHECK(utf8::count_code_points("\xFF\xFE") == 2);
    std::string out;
    for (char32_t cp : {U'A', U'\u00E9', U'\u4E2D', U'\U0001F600'}) utf8::append(out, cp);
    CHECK(out == "A\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80");
    out.clear();
    utf8::append(out, 0xD800);
    utf8::append(out, 0x110000);
    CHECK(out == std::string(utf8::replacement_character) + std::string(utf8::replacement_character));
}

TEST_CASE("Assembler yields whole code points for every split of the input", "[utf8]") {
    const std::string text = "Hi \xE4\xBD\xA0\xE5\xA5\xBD\xF0\x9F\x91\x8B caf\xC3\xA9!";  // Hi 你好👋 café!
    for (std::size_t split = 0; split <= text.size(); ++split) {
        for (std::size_t split2 = split; split2 <= text.size(); ++split2) {
            utf8::Assembler assembler;
            std::string joined;
            for (auto piece : {std::string_view(text).substr(0, split),
                               std::string_view(text).substr(split, split2 - split),
                               std::string_view(text).substr(split2)}) {
                const std::string_view chunk = assembler.push(piece);
                CHECK(utf8::is_valid(chunk));
                joined.append(chunk);
            }
            CHECK(assembler.finish().empty());
            CHECK(joined == text);
        }
    }
}

TEST_CASE("Assembler flushes a dangling tail as U+FFFD and repairs bad bytes", "[utf8]") {
    utf8::Assembler assembler;
    CHECK(assembler.push("ok\xE4\xB8") == "ok");
    CHECK(assembler.pending_bytes() == 2);
    CHECK(assembler.finish() == utf8::replacement_character);
    CHECK(assembler.pending_bytes() == 0);

    CHECK(assembler.push("\xE4") == "");
    CHECK(assembler.push("A") == std::string(utf8::replacement_character) + "A");  // the sequence broke
    CHECK(assembler.push("\x80x") == std::string(utf8::replacement_character) + "x");
}
