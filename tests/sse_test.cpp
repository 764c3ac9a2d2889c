#include <llmfast/sse.hpp>

#include "catch.hpp"

#include <llmfast/stream.hpp>
#include <llmfast/utf8.hpp>

#include <chrono>
#include <cstddef>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#if __has_include(<nlohmann/json.hpp>)
#include <nlohmann/json.hpp>
#define LLMFAST_TEST_HAVE_JSON 1
#endif

using namespace std::chrono_literals;
using namespace std::string_view_literals;
using llmfast::ErrorCode;
using llmfast::SseEvent;
using llmfast::SseEventView;
using llmfast::SseParser;

namespace {

SseEvent ev(std::string data, std::string type = "message", std::string id = "") {
    SseEvent e;
    e.type = std::move(type);
    e.data = std::move(data);
    e.id = std::move(id);
    return e;
}

SseEvent too_large(std::string id = "") {
    SseEvent e;
    e.status = ErrorCode::EventTooLarge;
    e.id = std::move(id);
    return e;
}

std::vector<SseEvent> parse_split(std::string_view stream, const std::vector<std::size_t>& cuts,
                                  llmfast::SseParserOptions options = {}) {
    SseParser parser(options);
    std::vector<SseEvent> events;
    std::size_t from = 0;
    for (std::size_t cut : cuts) {
        parser.feed(stream.substr(from, cut - from), [&](const SseEventView& e) { events.emplace_back(e); });
        from = cut;
    }
    parser.feed(stream.substr(from), [&](const SseEventView& e) { events.emplace_back(e); });
    parser.finish();
    return events;
}

std::string read_file(const std::string& relative) {
    std::ifstream in(std::string(LLMFAST_SOURCE_DIR) + "/" + relative, std::ios::binary);
    std::ostringstream buffer;
    buffer << in.rdbuf();
    return buffer.str();
}

// Every single cut and every pair of cuts (pairs sampled with a stride on long inputs) and one byte
// at a time: the events must equal the unsplit parse.
void check_split_invariance(std::string_view stream, llmfast::SseParserOptions options = {}) {
    const std::vector<SseEvent> whole = SseParser::parse_all(stream, options);
    for (std::size_t i = 0; i <= stream.size(); ++i) {
        const bool same = parse_split(stream, {i}, options) == whole;
        if (!same) FAIL("split at " << i << " changed the events");
    }
    const std::size_t stride = stream.size() > 120 ? 7 : 1;
    for (std::size_t i = 0; i <= stream.size(); i += stride) {
        for (std::size_t j = i; j <= stream.size(); j += stride) {
            if (parse_split(stream, {i, j}, options) != whole) FAIL("splits at " << i << "," << j << " changed the events");
        }
    }
    std::vector<std::size_t> every;
    for (std::size_t i = 1; i < stream.size(); ++i) every.push_back(i);
    CHECK(parse_split(stream, every, options) == whole);
}

}  // namespace

TEST_CASE("SSE writer: fields, multi-line data, comments", "[sse][writer]") {
    using llmfast::sse::format_event;
    CHECK(format_event({.data = "hello"}) == "data: hello\n\n");
    CHECK(format_event({.data = ""}) == "data: \n\n");
    CHECK(format_event({.data = "a\nb\r\nc\rd"}) == "data: a\ndata: b\ndata: c\ndata: d\n\n");
    CHECK(format_event({.data = "end\n"}) == "data: end\ndata: \n\n");
    CHECK(format_event({.event = "update", .data = " x", .id = "42", .retry = 1500ms}) ==
          "event: update\nid: 42\nretry: 1500\ndata:  x\n\n");
    CHECK(format_event({.data = "d", .id = ""}) == "id: \ndata: d\n\n");

    CHECK_THROWS_AS(format_event({.event = "a\nb", .data = "x"}), llmfast::Error);
    CHECK_THROWS_AS(format_event({.data = "x", .id = "1\r"}), llmfast::Error);
    CHECK_THROWS_AS(format_event({.data = "x", .id = std::string_view("1\0", 2)}), llmfast::Error);
    try {
        (void)format_event({.event = "a\rb"});
    } catch (const llmfast::Error& e) {
        CHECK(e.code() == ErrorCode::InvalidArgument);
    }

    std::string out;
    llmfast::sse::append_comment(out);
    llmfast::sse::append_comment(out, "keep-alive");
    llmfast::sse::append_comment(out, "two\nlines");
    CHECK(out == ":\n\n: keep-alive\n\n: two\n: lines\n\n");
    CHECK(SseParser::parse_all(out).empty());  // comments dispatch nothing
    CHECK(llmfast::sse::content_type == "text/event-stream");
}

TEST_CASE("SSE writer output is read back by the parser", "[sse][writer]") {
    const std::vector<std::string> payloads = {"", "x", "multi\nline", "crlf\r\nline", "trailing\n", "\n", "\n\n",
                                               " leading space", ":colon", "data: nested", "中文 \xF0\x9F\x98\x80"};
    std::string stream;
    std::vector<SseEvent> expected;
    int n = 0;
    for (const std::string& p : payloads) {
        const std::string id = std::to_string(n++);
        llmfast::sse::append_event(stream, {.event = n % 2 ? "odd" : "", .data = p, .id = id});
        std::string normalized;  // SSE carries line breaks as LF only
        for (std::size_t i = 0; i < p.size(); ++i) {
            if (p[i] == '\r') {
                normalized.push_back('\n');
                if (i + 1 < p.size() && p[i + 1] == '\n') ++i;
            } else {
                normalized.push_back(p[i]);
            }
        }
        expected.push_back(ev(normalized, n % 2 ? "odd" : "message", id));
        llmfast::sse::append_comment(stream, "ping");
    }
    CHECK(SseParser::parse_all(stream) == expected);
}

TEST_CASE("SSE parser: the WHATWG examples", "[sse][parser]") {
    CHECK(SseParser::parse_all("data: YHOO\ndata: +2\ndata: 10\n\n") == std::vector{ev("YHOO\n+2\n10")});
    CHECK(SseParser::parse_all(": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n") ==
          std::vector{ev("first event", "message", "1"), ev("second event"), ev(" third event")});
    // "data" alone is an empty data line; an event without its blank line at EOF is discarded.
    CHECK(SseParser::parse_all("data\n\ndata\ndata\n\ndata:") == std::vector{ev(""), ev("\n")});
    CHECK(SseParser::parse_all("data:test\n\ndata: test\n\n") == std::vector{ev("test"), ev("test")});
}

TEST_CASE("SSE parser: fields, line ends, BOM", "[sse][parser]") {
    SECTION("CR, LF and CRLF all end lines") {
        const auto expected = std::vector{ev("a\nb", "t")};
        CHECK(SseParser::parse_all("event: t\ndata: a\ndata: b\n\n") == expected);
        CHECK(SseParser::parse_all("event: t\r\ndata: a\r\ndata: b\r\n\r\n") == expected);
        CHECK(SseParser::parse_all("event: t\rdata: a\rdata: b\r\r") == expected);
        CHECK(SseParser::parse_all("event: t\r\ndata: a\rdata: b\n\r\n") == expected);
    }
    SECTION("one leading BOM is skipped, a second one is not") {
        CHECK(SseParser::parse_all("\xEF\xBB\xBF" "data: x\n\n") == std::vector{ev("x")});
        CHECK(SseParser::parse_all("\xEF\xBB\xBF\xEF\xBB\xBF" "data: x\n\n").empty());  // field "\uFEFFdata"
        CHECK(SseParser::parse_all("data: \xEF\xBB\xBFx\n\n") == std::vector{ev("\xEF\xBB\xBFx")});
    }
    SECTION("id, retry, unknown fields, comments") {
        SseParser parser;
        std::vector<SseEvent> events;
        const auto sink = [&](const SseEventView& e) { events.emplace_back(e); };
        parser.feed("retry: 2500\nid: 7\nfoo: bar\n: comment\ndata: one\n\n", sink);
        CHECK(parser.retry() == 2500ms);
        parser.feed("retry: 12x\nretry: -1\nretry\ndata: two\n\n", sink);  // invalid retries ignored
        CHECK(parser.retry() == 2500ms);
        parser.feed(std::string_view("id: a\0b\ndata: three\n\n", 21), sink);  // an id with NUL is ignored
        parser.feed("id\ndata: four\n\n", sink);                                // empty id resets it
        parser.feed("event: e\n\ndata: five\n\n", sink);  // no data: nothing dispatched, type reset
        parser.feed("Data: six\ndata:six\n\n", sink);     // field names are case-sensitive
        CHECK(events == std::vector{ev("one", "message", "7"), ev("two", "message", "7"), ev("three", "message", "7"),
                                    ev("four"), ev("five"), ev("six")});
        CHECK(parser.last_event_id().empty());
        parser.feed("id: 9\n\n", sink);  // the id is set even though nothing is dispatched
        CHECK(parser.last_event_id() == "9");
    }
    SECTION("finish() drops an unterminated event and allows a new stream") {
        SseParser parser;
        std::vector<SseEvent> events;
        const auto sink = [&](const SseEventView& e) { events.emplace_back(e); };
        parser.feed("id: 3\ndata: partial\n", sink);
        parser.finish();
        parser.feed("\xEF\xBB\xBF" "data: new\n\n", sink);
        CHECK(events == std::vector{ev("new", "message", "3")});
        parser.reset();
        CHECK(parser.last_event_id().empty());
    }
}

TEST_CASE("SSE parser: input split at every byte position gives the same events", "[sse][parser]") {
    check_split_invariance("\xEF\xBB\xBF: hi\r\nevent: a\r\ndata: 1\r\ndata: \xE4\xB8\xAD\r\n\r\nid: 5\rdata:2\r\r"
                           "data: x\n\ndata\n\nretry: 10\nid: 6\ndata: y\n\n");
    check_split_invariance("data: CR at the very end\r\r");
    check_split_invariance("\r\n\r\n\n\r\rdata: after blank lines\n\n");
    for (const char* name : {"openai.txt", "vllm.txt", "llamacpp_crlf.txt", "mixed_fields.txt"}) {
        const std::string stream = read_file(std::string("tests/fuzz/corpus/sse_parser/") + name);
        REQUIRE(!stream.empty());
        for (std::size_t i = 0; i <= stream.size(); ++i) {
            if (parse_split(stream, {i}) != SseParser::parse_all(stream)) FAIL(name << ": split at " << i);
        }
    }
}

TEST_CASE("SSE parser: an oversized event is reported and the parser resynchronizes", "[sse][parser]") {
    const llmfast::SseParserOptions small{.max_event_size = 16};
    const std::string big(40, 'x');
    const std::string stream = "data: ok\n\ndata: " + big + "\ndata: more\n\nid: 1\ndata: after\n\n" +
                               "data: 0123456789\ndata: 0123456789\n\ndata: 0123456789\n\n";
    const auto events = SseParser::parse_all(stream, small);
    CHECK(events == std::vector{ev("ok"), too_large(), ev("after", "message", "1"), too_large("1"),
                                ev("0123456789", "message", "1")});
    check_split_invariance(stream, small);

    // A line that never ends does not grow memory: reported once, then skipped to the blank line.
    SseParser parser(small);
    std::vector<SseEvent> got;
    const auto sink = [&](const SseEventView& e) { got.emplace_back(e); };
    for (int i = 0; i < 1000; ++i) parser.feed("yyyyyyyyyy", sink);
    parser.feed("\ndata: z\n\ndata: fine\n\n", sink);
    CHECK(got == std::vector{too_large(), ev("fine")});
    CHECK(parser.stats().events_too_large == 1);
    CHECK_THROWS_AS(SseParser({.max_event_size = 0}), llmfast::Error);
}

TEST_CASE("JSON string escaping is right for every input", "[sse][json]") {
    const auto json = [](std::string_view s) {
        std::string out;
        llmfast::detail::append_json_string(out, s);
        return out;
    };
    CHECK(json("plain") == "\"plain\"");
    CHECK(json("q\"b\\s/") == "\"q\\\"b\\\\s/\"");
    CHECK(json("\n\r\t\b\f") == "\"\\n\\r\\t\\b\\f\"");
    CHECK(json(std::string_view("\0\x01\x1f\x7f", 4)) == "\"\\u0000\\u0001\\u001f\x7f\"");
    CHECK(json("中文 \xF0\x9F\x98\x80") == "\"中文 \xF0\x9F\x98\x80\"");  // valid UTF-8 passes raw
    CHECK(json("\xE2\x80\xA8|\xE2\x80\xA9") == "\"\\u2028|\\u2029\"");
    CHECK(json("a\xFF" "b") == "\"a\xEF\xBF\xBD" "b\"");          // invalid byte -> U+FFFD
    CHECK(json("\xE4\xB8") == "\"\xEF\xBF\xBD\"");                // truncated character -> one U+FFFD
    CHECK(json("\xED\xA0\x80") == "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"");  // surrogate: maximal subparts

    // Every byte value, alone and inside text: valid UTF-8 out, and a JSON reader gets repair(input).
    for (int b = 0; b < 256; ++b) {
        for (const std::string& input : {std::string(1, static_cast<char>(b)),
                                         "x" + std::string(1, static_cast<char>(b)) + "\xC3\xA9y"}) {
            const std::string out = json(input);
            CHECK(llmfast::utf8::is_valid(out));
#ifdef LLMFAST_TEST_HAVE_JSON
            CHECK(nlohmann::json::parse(out).get<std::string>() == llmfast::utf8::repair(input));
#endif
        }
    }
}

TEST_CASE("OpenAI chunk encoder: the wire format, re-read by the parser", "[sse][openai]") {
    const llmfast::OpenAiChunkEncoder encoder(
        {.id = "chatcmpl-1", .model = "m\"odel", .created = 1700000000, .system_fingerprint = "fp_1"});
    std::string out;
    encoder.append_content(out, "Hi");
    CHECK(out ==
          "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"m\\\"odel\","
          "\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"logprobs\":null,"
          "\"finish_reason\":null}]}\n\n");

    out.clear();
    const std::vector<std::string> pieces = {"Hel", "lo \"w\"\n", "\x01\xFF", "中文", ""};
    encoder.append_role(out);
    for (const std::string& p : pieces) encoder.append_content(out, p);
    encoder.append_content(out, "second choice", 12);
    encoder.append_finish(out, "length");
    encoder.append_usage(out, {.prompt_tokens = 9, .completion_tokens = 12});
    llmfast::OpenAiChunkEncoder::append_done(out);
    CHECK(llmfast::utf8::is_valid(out));

    const std::vector<SseEvent> events = SseParser::parse_all(out);
    REQUIRE(events.size() == 10);
    CHECK(events.back().data == "[DONE]");
#ifdef LLMFAST_TEST_HAVE_JSON
    using nlohmann::json;
    const json role = json::parse(events[0].data);
    CHECK(role["object"] == "chat.completion.chunk");
    CHECK(role["choices"][0]["delta"]["role"] == "assistant");
    CHECK(role["choices"][0]["delta"]["content"] == "");
    CHECK(role["model"] == "m\"odel");
    std::string content;
    for (std::size_t i = 1; i <= pieces.size(); ++i) {
        const json chunk = json::parse(events[i].data);
        CHECK(chunk["choices"][0]["finish_reason"].is_null());
        content += chunk["choices"][0]["delta"]["content"].get<std::string>();
    }
    CHECK(content == llmfast::utf8::repair("Hello \"w\"\n\x01\xFF中文"));
    CHECK(json::parse(events[6].data)["choices"][0]["index"] == 12);
    const json finish = json::parse(events[7].data);
    CHECK(finish["choices"][0]["finish_reason"] == "length");
    CHECK(finish["choices"][0]["delta"].empty());
    const json usage = json::parse(events[8].data);
    CHECK(usage["choices"].empty());
    CHECK(usage["usage"]["total_tokens"] == 21);
    CHECK(usage["created"] == 1700000000);
    CHECK(usage["system_fingerprint"] == "fp_1");
#endif
}

TEST_CASE("SSE parser reads real OpenAI-compatible upstream streams", "[sse][upstream]") {
    struct Sample {
        const char* file;
        const char* text;
    };
    for (const Sample& sample : {Sample{"openai.txt", "Hello! How can I assist you today?"},
                                 Sample{"vllm.txt", "你好！我是通义千问。"},
                                 Sample{"llamacpp_crlf.txt", "The capital of France is Paris."}}) {
        const std::string stream = read_file(std::string("tests/fuzz/corpus/sse_parser/") + sample.file);
        REQUIRE(!stream.empty());
        const std::vector<SseEvent> events = SseParser::parse_all(stream);
        REQUIRE(events.size() >= 3);
        CHECK(events.back().data == "[DONE]");
        for (const SseEvent& e : events) CHECK(e.type == "message");
#ifdef LLMFAST_TEST_HAVE_JSON
        std::string text;
        std::string finish;
        for (std::size_t i = 0; i + 1 < events.size(); ++i) {
            const nlohmann::json chunk = nlohmann::json::parse(events[i].data);
            CHECK(chunk["object"] == "chat.completion.chunk");
            for (const auto& choice : chunk["choices"]) {
                const auto& delta = choice["delta"];
                if (delta.contains("content") && delta["content"].is_string()) text += delta["content"].get<std::string>();
                if (choice.contains("finish_reason") && choice["finish_reason"].is_string()) finish = choice["finish_reason"];
            }
        }
        CHECK(text == sample.text);
        CHECK(finish == "stop");
#endif
    }
    const std::vector<SseEvent> mixed = SseParser::parse_all(read_file("tests/fuzz/corpus/sse_parser/mixed_fields.txt"));
    REQUIRE(mixed.size() == 7);
    CHECK(mixed[0] == ev("{\"type\":\"message_start\"}", "message_start", "1"));
    CHECK(mixed[1].type == "content_block_delta");
    CHECK(mixed[1].id == "2");
    CHECK(mixed[2] == ev("YHOO\n+2\n10", "message", "2"));
    CHECK(mixed[3] == ev(" leading space"));
    CHECK(mixed[4] == ev(""));
    CHECK(mixed[5] == ev("\n"));
    CHECK(mixed[6].type == "error");
}

TEST_CASE("sse_events: a generator over byte chunks", "[sse][parser]") {
    const std::vector<std::string> chunks = {"da", "ta: one\n", "\ndata: t", "wo\r", "\n\r\n", "data: lost"};
    std::vector<std::string> data;
    for (SseEvent&& e : llmfast::sse_events(chunks)) data.push_back(e.data);
    CHECK(data == std::vector<std::string>{"one", "two"});

    // Upstream bytes from a channel (e.g. the HTTP client thread) straight into events.
    llmfast::TokenChannel<std::string> channel;
    (void)channel.push("data: [DO");
    (void)channel.push("NE]\n\n");
    channel.close();
    std::vector<std::string> from_channel;
    for (SseEvent&& e : llmfast::sse_events(channel.stream())) from_channel.push_back(e.data);
    CHECK(from_channel == std::vector<std::string>{"[DONE]"});
    CHECK_THROWS_AS(llmfast::sse_events(chunks, {.max_event_size = 0}), llmfast::Error);
}

namespace {
struct CallbackFailed {};  // what a caller's JSON error inside the callback looks like to the parser
}  // namespace

TEST_CASE("SSE parser: a throwing callback leaves the parser consistent and loses no input", "[sse][parser]") {
    // Issue 11: type and data were cleared only after the callback returned, so a throw leaked the
    // event type and the data lines into the next event.
    const auto throwing_then_collecting = [](const std::vector<std::string>& first_feeds,
                                             const std::vector<std::string>& later_feeds) {
        SseParser parser;
        std::vector<SseEvent> events;
        bool threw = false;
        for (const std::string& bytes : first_feeds) {
            try {
                parser.feed(bytes, [&](const SseEventView& e) {
                    events.emplace_back(e);
                    throw CallbackFailed{};
                });
            } catch (const CallbackFailed&) {
                threw = true;
            }
        }
        CHECK(threw);
        for (const std::string& bytes : later_feeds) {
            parser.feed(bytes, [&](const SseEventView& e) { events.emplace_back(e); });
        }
        parser.finish();
        return events;
    };
    SECTION("the event type does not leak into the next event") {
        CHECK(throwing_then_collecting({"event: alert\ndata: x\n\n"}, {"data: y\n\n"}) ==
              std::vector{ev("x", "alert"), ev("y")});
        CHECK(throwing_then_collecting({"event: alert\ndata: x\n", "\n"}, {"data: y\n\n"}) ==
              std::vector{ev("x", "alert"), ev("y")});
    }
    SECTION("multi-line data is not glued onto the next event") {
        CHECK(throwing_then_collecting({"data: a\ndata: b\n\n"}, {"data: c\n\n"}) == std::vector{ev("a\nb"), ev("c")});
        CHECK(throwing_then_collecting({"data: a\ndata: b", "\n\n"}, {"data: c\n\n"}) == std::vector{ev("a\nb"), ev("c")});
        CHECK(throwing_then_collecting({"data: a\ndata: b\n\r", "\n"}, {"data: c\r\n\r\n"}) ==
              std::vector{ev("a\nb"), ev("c")});
    }
    SECTION("the rest of the feed after the event is parsed at the next feed, in order, once") {
        const std::string stream = "id: 1\ndata: one\n\nevent: t\ndata: two\n\ndata: thr";
        CHECK(throwing_then_collecting({stream}, {"ee\n\n", "data: four\n\n"}) ==
              std::vector{ev("one", "message", "1"), ev("two", "t", "1"), ev("three", "message", "1"),
                          ev("four", "message", "1")});
        // An empty feed resumes without new input.
        CHECK(throwing_then_collecting({stream}, {""}) == std::vector{ev("one", "message", "1"), ev("two", "t", "1")});
        // finish() drops the kept rest (as it drops an unterminated event).
        SseParser parser;
        std::vector<SseEvent> events;
        CHECK_THROWS_AS(parser.feed("data: one\n\ndata: two\n\n",
                                    [&](const SseEventView&) -> void { throw CallbackFailed{}; }),
                        CallbackFailed);
        parser.finish();
        parser.feed("data: three\n\n", [&](const SseEventView& e) { events.emplace_back(e); });
        CHECK(events == std::vector{ev("three")});
    }
    SECTION("a CR that ended the thrown-on event still pairs with an LF in the next feed") {
        CHECK(throwing_then_collecting({"data: a\r\r"}, {"\ndata: b\n\n"}) == std::vector{ev("a"), ev("b")});
    }
    SECTION("every event throwing, the caller feeding on: every event is seen exactly once") {
        const std::string stream = "event: a\ndata: 1\ndata: 2\n\ndata: 3\n\nevent: b\ndata: 4\n\n: c\n\ndata: 5\n\n";
        const std::vector<SseEvent> expected = SseParser::parse_all(stream);
        REQUIRE(expected.size() == 4);
        for (std::size_t chunk = 1; chunk <= stream.size(); ++chunk) {
            SseParser parser;
            std::vector<SseEvent> events;
            const auto thrower = [&](const SseEventView& e) {
                events.emplace_back(e);
                throw CallbackFailed{};
            };
            for (std::size_t pos = 0; pos < stream.size(); pos += chunk) {
                try {
                    parser.feed(std::string_view(stream).substr(pos, chunk), thrower);
                } catch (const CallbackFailed&) {
                }
            }
            for (int i = 0; i < 10; ++i) {  // drain what the throws left
                try {
                    parser.feed({}, thrower);
                } catch (const CallbackFailed&) {
                }
            }
            if (events != expected) FAIL("chunk size " << chunk);
        }
    }
    SECTION("a throw on an EventTooLarge report") {
        SseParser parser({.max_event_size = 8});
        std::vector<SseEvent> events;
        CHECK_THROWS_AS(parser.feed("event: t\ndata: far too long\ndata: x\n\ndata: ok\n\n",
                                    [&](const SseEventView& e) {
                                        events.emplace_back(e);
                                        throw CallbackFailed{};
                                    }),
                        CallbackFailed);
        parser.feed({}, [&](const SseEventView& e) { events.emplace_back(e); });
        CHECK(events == std::vector{too_large(), ev("ok")});
    }
}

TEST_CASE("SSE parser: retry takes any run of ASCII digits (WHATWG)", "[sse][parser]") {
    const auto retry_after = [](std::string_view stream) {
        SseParser parser;
        parser.feed(stream, [](const SseEventView&) {});
        return parser.retry();
    };
    CHECK(retry_after("retry: 0000000000000005\n") == 5ms);  // issue 11: 16 digits were ignored
    CHECK(retry_after("retry: 00000000000000000000000000000000000000000000007\n") == 7ms);
    CHECK(retry_after("retry: 0\n") == 0ms);
    CHECK(retry_after("retry: 9223372036854775807\n") == std::chrono::milliseconds::max());
    CHECK(retry_after("retry: 9223372036854775806\n") == std::chrono::milliseconds(9223372036854775806));
    // Only digits but too big: saturates.
    CHECK(retry_after("retry: 9223372036854775808\n") == std::chrono::milliseconds::max());
    CHECK(retry_after("retry: 99999999999999999999999999999\n") == std::chrono::milliseconds::max());
    // Anything else is ignored, however long.
    CHECK(!retry_after("retry: 99999999999999999999999999999x\n").has_value());
    CHECK(!retry_after("retry: 1e3\n").has_value());
    CHECK(!retry_after("retry: +5\n").has_value());
    CHECK(!retry_after("retry:  5\n").has_value());  // only one leading space is stripped
    CHECK(!retry_after("retry: \xD9\xA5\n").has_value());  // ARABIC-INDIC DIGIT FIVE is not ASCII
    CHECK(retry_after("retry: 10\nretry: 00000000000000000000x\n") == 10ms);
}
