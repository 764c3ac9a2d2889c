// llmfast/detail/embeddings_json.hpp — the JSON of an OpenAI-compatible /embeddings call: the request
// body writer and a small strict parser of the response (internal to llmfast/openai_embedder.hpp).
//
// The library depends on fmt and xxHash only, so this is a purpose-built reader, not a JSON library:
// it validates the whole body as JSON (RFC 8259: one value, no trailing bytes other than whitespace,
// no NaN/Infinity literals, strings with valid escapes and no raw control characters, nesting bounded
// at `embeddings_max_depth`), and extracts `data[i].embedding` and `data[i].index`.
//
// Contract of `parse_embeddings_response(body, count, dimension, out)` (the fuzzer checks it):
// it returns normally only when the body is JSON whose top level is an object with a member "data"
// that is an array of exactly `count` objects, the i-th having "index" == i (absent means i) and
// "embedding", an array of exactly `dimension` numbers, each finite as a float; `out` then holds
// row i = data[i].embedding (row-major, count * dimension floats). Otherwise it throws
// Error(InvalidFormat) whose message says what is wrong, and `out` may have been partly written.
// Other members (model, usage, object) are validated as JSON and ignored. Duplicate "data",
// "embedding" or "index" members are rejected (which one a server meant is ambiguous).
//
// Thread-safety: pure functions.
#pragma once

#include <llmfast/version.hpp>
#include <llmfast/error.hpp>
#include <llmfast/sse.hpp>  // detail::append_json_string: the one JSON string writer (ill-formed UTF-8 becomes U+FFFD)
#include <llmfast/utf8.hpp>

#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <system_error>

#include <fmt/format.h>

LLMFAST_BEGIN_NAMESPACE

namespace detail {

inline constexpr std::size_t embeddings_max_depth = 64;

/// The request body: {"model": ..., "input": [...], "dimensions": n?}.
inline std::string embeddings_request_body(std::string_view model, std::span<const std::string_view> inputs,
                                           std::size_t dimensions_field) {
    std::string body;
    std::size_t reserve = model.size() + 64;
    for (const std::string_view text : inputs) reserve += text.size() + 3;
    body.reserve(reserve);
    body += "{\"model\":";
    append_json_string(body, model);
    body += ",\"input\":[";
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        if (i) body.push_back(',');
        append_json_string(body, inputs[i]);
    }
    body.push_back(']');
    if (dimensions_field != 0) body += fmt::format(",\"dimensions\":{}", dimensions_field);
    body.push_back('}');
    return body;
}

/// The strict reader (see the file comment). One instance per body.
class EmbeddingsResponseParser {
public:
    EmbeddingsResponseParser(std::string_view body, std::size_t count, std::size_t dimension, std::span<float> out)
        : text_(body), count_(count), dimension_(dimension), out_(out) {}

    void parse() {
        if (out_.size() != count_ * dimension_)
            fail(fmt::format("output has {} floats, count * dimension is {}", out_.size(), count_ * dimension_));
        skip_ws();
        if (pos_ >= text_.size()) fail("the body is empty, not JSON");
        if (text_[pos_] != '{') fail(fmt::format("the top-level value is not an object (starts with '{}')", printable(text_[pos_])));
        bool saw_data = false;
        parse_object(1, [&](std::string_view key) {
            if (key == "data") {
                if (saw_data) fail("duplicate member \"data\"");
                saw_data = true;
                parse_data();
            } else {
                skip_value(2);
            }
        });
        skip_ws();
        if (pos_ != text_.size()) fail(fmt::format("trailing bytes after the JSON value at offset {}", pos_));
        if (!saw_data) fail("no \"data\" member");
    }

private:
    [[noreturn]] static void fail(std::string_view what) {
        throw Error(ErrorCode::InvalidFormat, fmt::format("embeddings response: {}", what));
    }
    static char printable(char ch) noexcept { return static_cast<unsigned char>(ch) >= 0x20U && static_cast<unsigned char>(ch) < 0x7FU ? ch : '?'; }

    void skip_ws() noexcept {
        while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r')) ++pos_;
    }
    void expect(char ch) {
        skip_ws();
        if (pos_ >= text_.size()) fail(fmt::format("truncated: expected '{}' at the end", ch));
        if (text_[pos_] != ch) fail(fmt::format("expected '{}' at offset {}, got '{}'", ch, pos_, printable(text_[pos_])));
        ++pos_;
    }
    bool peek_is(char ch) {
        skip_ws();
        return pos_ < text_.size() && text_[pos_] == ch;
    }

    // Calls member(key) with pos_ at the member's value, which member must consume.
    template <class F>
    void parse_object(std::size_t depth, F&& member) {
        if (depth > embeddings_max_depth) fail("nesting deeper than 64 levels");
        expect('{');
        if (peek_is('}')) {
            ++pos_;
            return;
        }
        for (;;) {
            skip_ws();
            if (pos_ >= text_.size() || text_[pos_] != '"') fail(fmt::format("expected a member name at offset {}", pos_));
            key_.clear();
            parse_string(&key_);
            expect(':');
            skip_ws();
            member(std::string_view(key_));
            skip_ws();
            if (pos_ >= text_.size()) fail("truncated object");
            if (text_[pos_] == ',') {
                ++pos_;
                continue;
            }
            if (text_[pos_] == '}') {
                ++pos_;
                return;
            }
            fail(fmt::format("expected ',' or '}}' at offset {}", pos_));
        }
    }

    // Calls element(i) with pos_ at the i-th element.
    template <class F>
    void parse_array(std::size_t depth, F&& element) {
        if (depth > embeddings_max_depth) fail("nesting deeper than 64 levels");
        expect('[');
        if (peek_is(']')) {
            ++pos_;
            return;
        }
        for (std::size_t i = 0;; ++i) {
            skip_ws();
            element(i);
            skip_ws();
            if (pos_ >= text_.size()) fail("truncated array");
            if (text_[pos_] == ',') {
                ++pos_;
                continue;
            }
            if (text_[pos_] == ']') {
                ++pos_;
                return;
            }
            fail(fmt::format("expected ',' or ']' at offset {}", pos_));
        }
    }

    void parse_data() {
        if (!peek_is('[')) fail("\"data\" is not an array");
        std::size_t seen = 0;
        parse_array(2, [&](std::size_t i) {
            if (i >= count_) fail(fmt::format("\"data\" has more than the {} embeddings requested", count_));
            parse_item(i);
            seen = i + 1;
        });
        if (seen != count_) fail(fmt::format("\"data\" has {} embeddings, {} were requested", seen, count_));
    }

    void parse_item(std::size_t position) {
        if (!peek_is('{')) fail(fmt::format("data[{}] is not an object", position));
        bool saw_embedding = false;
        bool saw_index = false;
        parse_object(3, [&](std::string_view key) {
            if (key == "embedding") {
                if (saw_embedding) fail(fmt::format("data[{}] has a duplicate \"embedding\"", position));
                saw_embedding = true;
                parse_embedding(position);
            } else if (key == "index") {
                if (saw_index) fail(fmt::format("data[{}] has a duplicate \"index\"", position));
                saw_index = true;
                const double index = parse_number();
                if (!(index == static_cast<double>(position)))
                    fail(fmt::format("data[{}] has index {} (out of order or out of range)", position, index));
            } else {
                skip_value(4);
            }
        });
        if (!saw_embedding) fail(fmt::format("data[{}] has no \"embedding\"", position));
    }

    void parse_embedding(std::size_t position) {
        if (!peek_is('[')) {
            fail(fmt::format("data[{}].embedding is not an array of numbers (a base64 string needs encoding_format float)", position));
        }
        std::span<float> row = out_.subspan(position * dimension_, dimension_);
        std::size_t n = 0;
        parse_array(4, [&](std::size_t i) {
            if (i >= dimension_) fail(fmt::format("data[{}].embedding has more than {} dimensions", position, dimension_));
            const double value = parse_number();
            const auto as_float = static_cast<float>(value);
            if (!std::isfinite(as_float)) fail(fmt::format("data[{}].embedding[{}] = {} is not finite as a float", position, i, value));
            row[i] = as_float;
            n = i + 1;
        });
        if (n != dimension_) fail(fmt::format("data[{}].embedding has {} dimensions, expected {}", position, n, dimension_));
    }

    // RFC 8259 number grammar, then std::from_chars on exactly those bytes.
    double parse_number() {
        skip_ws();
        const std::size_t start = pos_;
        const auto digit = [&] { return pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9'; };
        if (pos_ < text_.size() && text_[pos_] == '-') ++pos_;
        if (!digit()) fail(fmt::format("expected a number at offset {}", start));
        if (text_[pos_] == '0') {
            ++pos_;
        } else {
            while (digit()) ++pos_;
        }
        if (pos_ < text_.size() && text_[pos_] == '.') {
            ++pos_;
            if (!digit()) fail(fmt::format("a digit must follow '.' at offset {}", pos_));
            while (digit()) ++pos_;
        }
        if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
            ++pos_;
            if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
            if (!digit()) fail(fmt::format("a digit must follow the exponent at offset {}", pos_));
            while (digit()) ++pos_;
        }
        double value = 0;
        const char* first = text_.data() + start;
        const char* last = text_.data() + pos_;
        const auto [ptr, ec] = std::from_chars(first, last, value);
        // out of range: a magnitude beyond double (then certainly not a finite float) or an underflow
        // to zero/subnormal, which is a finite value we take as 0.
        if (ec == std::errc::result_out_of_range) {
            const bool tiny = [&] {
                for (const char* p = first; p != last; ++p)
                    if (*p == 'e' || *p == 'E') return p + 1 != last && p[1] == '-';
                return false;
            }();
            if (!tiny) return std::numeric_limits<double>::infinity();
            return 0.0;
        }
        if (ec != std::errc{} || ptr != last) fail(fmt::format("malformed number at offset {}", start));
        return value;
    }

    // A string starting at pos_ ('"'); appends its decoded bytes to `into` when not null.
    void parse_string(std::string* into) {
        ++pos_;  // the opening quote
        for (;;) {
            if (pos_ >= text_.size()) fail("truncated string");
            const auto byte = static_cast<unsigned char>(text_[pos_]);
            if (byte == '"') {
                ++pos_;
                return;
            }
            if (byte < 0x20U) fail(fmt::format("raw control character in a string at offset {}", pos_));
            if (byte == '\\') {
                ++pos_;
                if (pos_ >= text_.size()) fail("truncated escape");
                const char esc = text_[pos_++];
                switch (esc) {
                    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                        if (into) into->push_back(esc == 'n' ? '\n' : esc == 't' ? '\t' : esc == 'r' ? '\r' : esc == 'b' ? '\b' : esc == 'f' ? '\f' : esc);
                        break;
                    case 'u': {
                        if (pos_ + 4 > text_.size()) fail("truncated \\u escape");
                        unsigned value = 0;
                        for (int k = 0; k < 4; ++k) {
                            const char h = text_[pos_++];
                            value <<= 4U;
                            if (h >= '0' && h <= '9') value |= static_cast<unsigned>(h - '0');
                            else if (h >= 'a' && h <= 'f') value |= static_cast<unsigned>(h - 'a' + 10);
                            else if (h >= 'A' && h <= 'F') value |= static_cast<unsigned>(h - 'A' + 10);
                            else fail(fmt::format("bad hex digit in a \\u escape at offset {}", pos_ - 1));
                        }
                        // Member names we look for are ASCII; a lone surrogate cannot equal them, so
                        // anything non-ASCII is kept as U+FFFD (it only has to differ from them).
                        if (into) {
                            if (value < 0x80U) into->push_back(static_cast<char>(value));
                            else utf8::append(*into, U'\uFFFD');
                        }
                        break;
                    }
                    default: fail(fmt::format("bad escape '\\{}' at offset {}", printable(esc), pos_ - 1));
                }
                continue;
            }
            if (byte < 0x80U) {
                if (into) into->push_back(static_cast<char>(byte));
                ++pos_;
                continue;
            }
            const utf8::DecodeResult cp = utf8::decode(text_, pos_);
            if (cp.status != utf8::DecodeStatus::Valid) fail(fmt::format("invalid UTF-8 in a string at offset {}", pos_));
            if (into) into->append(text_.substr(pos_, cp.length));
            pos_ += cp.length;
        }
    }

    void skip_literal(std::string_view word) {
        if (text_.substr(pos_, word.size()) != word) fail(fmt::format("invalid value at offset {}", pos_));
        pos_ += word.size();
    }

    void skip_value(std::size_t depth) {
        skip_ws();
        if (pos_ >= text_.size()) fail("truncated: a value is missing");
        switch (text_[pos_]) {
            case '{': parse_object(depth, [&](std::string_view) { skip_value(depth + 1); }); break;
            case '[': parse_array(depth, [&](std::size_t) { skip_value(depth + 1); }); break;
            case '"': parse_string(nullptr); break;
            case 't': skip_literal("true"); break;
            case 'f': skip_literal("false"); break;
            case 'n': skip_literal("null"); break;
            default: (void)parse_number();
        }
    }

    std::string_view text_;
    std::size_t pos_ = 0;
    std::size_t count_;
    std::size_t dimension_;
    std::span<float> out_;
    std::string key_;
};

/// See the file comment: fills `out` (count * dimension floats) or throws Error(InvalidFormat).
inline void parse_embeddings_response(std::string_view body, std::size_t count, std::size_t dimension, std::span<float> out) {
    EmbeddingsResponseParser(body, count, dimension, out).parse();
}

}  // namespace detail

LLMFAST_END_NAMESPACE
