// Fuzzes llmfast::SseParser against its documented contract, and the SSE/JSON writers it must read back:
//  - a small, line-at-a-time reference of the WHATWG event-stream algorithm (CR/LF/CRLF, one leading
//    BOM, comments, event/data/id/retry, dispatch on blank lines, the unterminated event at the end
//    dropped), with the parser's size bound modelled (raw line bytes since the last blank line; past
//    it one EventTooLarge report, then skip to the next blank line), gives exactly the parser's
//    events, last event ID, retry and too-large count;
//  - for the whole input in one feed, one byte per feed, and arbitrary split points (empty feeds
//    included) derived from the input;
//  - with a callback that throws on some events (chosen by the input bytes) while the caller catches
//    and keeps feeding (then `feed({})` until it no longer throws): the events seen equal the
//    reference's, each thrown-on event counted as delivered exactly once, nothing leaked into the next;
//  - dispatched events respect the size bound;
//  - a writer's event (type, id, retry, data taken from the input) parses back to exactly those
//    fields (data line ends normalized to LF), or append_event throws InvalidArgument for a type/id
//    that cannot be framed;
//  - JSON escaping of any bytes is valid UTF-8 with no raw control character, and (with nlohmann-json)
//    OpenAI chunks built from the input, parsed back by SseParser and JSON-decoded, carry exactly
//    utf8::repair of the input in content, id, model, role and finish_reason.
#include <llmfast/error.hpp>
#include <llmfast/sse.hpp>
#include <llmfast/utf8.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#if __has_include(<nlohmann/json.hpp>)
#include <nlohmann/json.hpp>
#define LLMFAST_FUZZ_HAVE_JSON 1
#endif

namespace {

using llmfast::ErrorCode;
using llmfast::SseEvent;

void check(bool ok) {
    if (!ok) std::abort();
}

// The WHATWG "interpret an event stream" algorithm on the whole input, plus the parser's size bound.
struct Reference {
    std::size_t max_event_size = 0;
    std::vector<SseEvent> events;
    std::string last_id;
    std::optional<std::chrono::milliseconds> retry;
    std::size_t too_large = 0;

    std::string data;  // each data line followed by LF
    std::string type;
    std::size_t raw = 0;  // bytes of the current event's lines (the bound)
    bool discarding = false;
    bool first_line = true;

    void run(std::string_view in) {
        std::size_t pos = 0;
        for (;;) {
            const std::size_t brk = in.find_first_of("\r\n", pos);
            if (brk == std::string_view::npos) {
                // An unterminated last line: dropped at the end, but it still counts against the bound.
                const std::size_t tail = in.size() - pos;
                if (tail > 0 && !discarding && raw + tail > max_event_size) overflow();
                return;
            }
            const std::string_view line = in.substr(pos, brk - pos);
            pos = brk + 1;
            if (in[brk] == '\r' && pos < in.size() && in[pos] == '\n') ++pos;
            process(line);
        }
    }

    void overflow() {
        ++too_large;
        discarding = true;
        raw = 0;
        data.clear();
        type.clear();
        SseEvent e;
        e.status = ErrorCode::EventTooLarge;
        e.id = last_id;
        events.push_back(e);
    }

    void process(std::string_view line) {
        if (discarding) {
            first_line = false;
            if (line.empty()) discarding = false;
            return;
        }
        if (raw + line.size() > max_event_size) return overflow();
        raw += line.size();
        if (first_line) {
            first_line = false;
            if (line.substr(0, 3) == "\xEF\xBB\xBF") line.remove_prefix(3);
        }
        if (line.empty()) {
            raw = 0;
            if (!data.empty()) {
                SseEvent e;
                e.type = type.empty() ? "message" : type;
                e.data = data.substr(0, data.size() - 1);
                e.id = last_id;
                events.push_back(e);
            }
            data.clear();
            type.clear();
            return;
        }
        if (line[0] == ':') return;
        std::string_view field = line;
        std::string_view value;
        if (const std::size_t colon = line.find(':'); colon != std::string_view::npos) {
            field = line.substr(0, colon);
            value = line.substr(colon + 1);
            if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
        }
        if (field == "data") {
            data.append(value);
            data.push_back('\n');
        } else if (field == "event") {
            type.assign(value);
        } else if (field == "id") {
            if (value.find('\0') == std::string_view::npos) last_id.assign(value);
        } else if (field == "retry") {
            if (value.empty() || value.find_first_not_of("0123456789") != std::string_view::npos) return;
            // Saturating base-ten value (the header: too big for milliseconds saturates).
            const auto max = std::chrono::milliseconds::max().count();
            std::chrono::milliseconds::rep ms = 0;
            for (const char c : value) {
                const int digit = c - '0';
                if (ms > (max - digit) / 10) {
                    ms = max;
                } else {
                    ms = ms * 10 + digit;
                }
            }
            retry = std::chrono::milliseconds(ms);
        }
    }
};

struct Thrown {};  // what a caller's callback throws (e.g. its JSON error); the caller catches it

struct Input {
    std::string_view bytes;
    const std::uint8_t* raw;
    std::size_t size;
    std::size_t max_event_size = 0;

    [[nodiscard]] std::uint8_t at(std::size_t i) const { return raw[i % size]; }
};

enum class Split { Whole, OneByte, Derived };

// Feeds the input split as asked; throws from the callback on the events chosen by the input when
// `throw_salt` is set, catching and feeding on as a caller would. Checks the parser against `ref`.
void run_parser(const Input& in, const Reference& ref, Split split, std::optional<std::size_t> throw_salt) {
    llmfast::SseParser parser({.max_event_size = in.max_event_size});
    std::vector<SseEvent> got;
    const auto sink = [&](const llmfast::SseEventView& e) {
        // The bound counts raw line bytes, which include every data and event value (not the default type).
        check(e.data.size() <= in.max_event_size);
        check(e.type == "message" || e.type.size() <= in.max_event_size);
        check(e.status == ErrorCode::Ok || (e.data.empty() && e.type.empty()));
        got.emplace_back(e);
        if (throw_salt && (in.at(got.size() * 13 + *throw_salt) & 3U) == 1) throw Thrown{};
    };
    std::size_t throws = 0;
    const auto feed = [&](std::string_view bytes) {
        try {
            parser.feed(bytes, sink);
        } catch (const Thrown&) {
            ++throws;
        }
    };
    const std::string_view stream = in.bytes;
    switch (split) {
        case Split::Whole: feed(stream); break;
        case Split::OneByte:
            for (std::size_t pos = 0; pos < stream.size(); ++pos) feed(stream.substr(pos, 1));
            break;
        case Split::Derived: {
            std::size_t k = 0;
            bool force = false;
            for (std::size_t pos = 0; pos < stream.size();) {
                std::size_t len = in.at(k * 7 + 1) % 19;  // 0: an empty feed (then at least one byte)
                ++k;
                if (force) len = len == 0 ? 1 : len;
                force = len == 0;
                feed(stream.substr(pos, len));
                pos += len;
            }
            break;
        }
    }
    // After throws, what the failed feeds left is parsed by further (empty) feeds; each throw
    // consumes one event, so this ends.
    for (std::size_t rounds = 0;; ++rounds) {
        check(rounds <= ref.events.size() + 1);
        const std::size_t before = throws;
        feed({});
        if (throws == before) break;
    }
    parser.finish();
    check(got == ref.events);
    check(parser.last_event_id() == ref.last_id);
    check(parser.retry() == ref.retry);
    check(parser.stats().events_too_large == ref.too_large);
    if (!throw_salt) check(throws == 0);
}

std::string normalize_line_ends(std::string_view text) {
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\r') {
            out.push_back('\n');
            if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
        } else {
            out.push_back(text[i]);
        }
    }
    return out;
}

void check_writer(const Input& in) {
    const std::string_view input = in.bytes;
    // The input's first bytes as event type and id, the rest as data; retry from one byte.
    const std::size_t type_len = std::min<std::size_t>(in.at(2) % 8, input.size());
    const std::size_t id_len = std::min<std::size_t>(in.at(3) % 8, input.size() - type_len);
    const std::string_view type = input.substr(0, type_len);
    const std::string_view id = input.substr(type_len, id_len);
    const std::string_view data = input.substr(type_len + id_len);
    const bool with_id = (in.at(4) & 1U) != 0;
    const bool with_retry = (in.at(4) & 2U) != 0;
    const auto retry = std::chrono::milliseconds(static_cast<std::int64_t>(in.at(5)) - 100);
    const llmfast::SseEventOut out{.event = type,
                                   .data = data,
                                   .id = with_id ? std::optional<std::string_view>(id) : std::nullopt,
                                   .retry = with_retry ? std::optional(retry) : std::nullopt};
    const bool framable = type.find_first_of("\r\n") == std::string_view::npos &&
                          (!with_id || id.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos);
    std::string framed;
    try {
        llmfast::sse::append_event(framed, out);
        check(framable);
    } catch (const llmfast::Error& e) {
        check(!framable && e.code() == ErrorCode::InvalidArgument);
        return;
    }
    llmfast::SseParser parser;
    std::vector<SseEvent> back;
    parser.feed(framed, [&](const llmfast::SseEventView& e) { back.emplace_back(e); });
    parser.finish();
    check(back.size() == 1);
    check(back[0].status == ErrorCode::Ok);
    check(back[0].data == normalize_line_ends(data));
    check(back[0].type == (type.empty() ? std::string_view("message") : type));
    check(back[0].id == (with_id ? id : std::string_view()));
    if (with_retry) {
        check(parser.retry() == std::max(retry, std::chrono::milliseconds(0)));
    } else {
        check(!parser.retry().has_value());
    }
}

void check_json(const Input& in) {
    const std::string_view input = in.bytes;
    std::string json;
    llmfast::detail::append_json_string(json, input);
    check(llmfast::utf8::is_valid(json));
    for (const char c : json) check(static_cast<unsigned char>(c) >= 0x20);
#ifdef LLMFAST_FUZZ_HAVE_JSON
    const std::string repaired = llmfast::utf8::repair(input);
    check(nlohmann::json::parse(json).get<std::string>() == repaired);

    const std::size_t cut = std::min<std::size_t>(in.at(6) % 16, input.size());
    const std::string_view id = input.substr(0, cut);
    const std::string_view model = input.substr(cut);
    const llmfast::OpenAiChunkEncoder encoder(
        {.id = std::string(id), .model = std::string(model), .created = 1700000000, .system_fingerprint = "fp"});
    const std::size_t choice = in.at(7) % 3 == 0 ? 0 : in.at(7);
    std::string frames;
    encoder.append_role(frames, input, choice);
    encoder.append_content(frames, input, choice);
    encoder.append_content(frames, input);
    encoder.append_finish(frames, input.empty() ? "stop" : input, choice);
    encoder.append_usage(frames, {.prompt_tokens = in.at(8), .completion_tokens = in.at(9)});
    llmfast::OpenAiChunkEncoder::append_done(frames);
    const std::vector<SseEvent> events = llmfast::SseParser::parse_all(frames);
    check(events.size() == 6);
    for (std::size_t i = 0; i < 5; ++i) {
        check(events[i].type == "message");
        const nlohmann::json chunk = nlohmann::json::parse(events[i].data);
        check(chunk.at("id").get<std::string>() == llmfast::utf8::repair(id));
        check(chunk.at("model").get<std::string>() == llmfast::utf8::repair(model));
        check(chunk.at("object") == "chat.completion.chunk");
        if (i == 4) {
            check(chunk.at("choices").empty());
            check(chunk.at("usage").at("total_tokens").get<std::uint64_t>() ==
                  std::uint64_t{in.at(8)} + std::uint64_t{in.at(9)});
            continue;
        }
        const nlohmann::json& c = chunk.at("choices").at(0);
        check(c.at("index").get<std::size_t>() == (i == 2 ? 0 : choice));
        const nlohmann::json& delta = c.at("delta");
        switch (i) {
            case 0:
                check(delta.at("role").get<std::string>() == repaired);
                check(delta.at("content") == "");
                check(c.at("finish_reason").is_null());
                break;
            case 1:
            case 2:
                check(delta.at("content").get<std::string>() == repaired);
                check(c.at("finish_reason").is_null());
                break;
            case 3:
                check(delta.empty());
                check(c.at("finish_reason").get<std::string>() == (input.empty() ? std::string("stop") : repaired));
                break;
        }
    }
    check(events[5].data == "[DONE]");
#endif
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    // The whole input is the stream (so the corpus holds real streams as they are); the split
    // points, the events whose callback throws and the event size bound are derived from it.
    const std::size_t max_event_size =
        (data[0] ^ data[size - 1]) & 1U ? static_cast<std::size_t>(data[size / 2] % 64) + 1 : std::size_t{1} << 20;
    const Input in{std::string_view(reinterpret_cast<const char*>(data), size), data, size, max_event_size};

    Reference ref;
    ref.max_event_size = max_event_size;
    ref.run(in.bytes);

    run_parser(in, ref, Split::Whole, std::nullopt);
    run_parser(in, ref, Split::Derived, std::nullopt);
    run_parser(in, ref, Split::Whole, std::size_t{5});
    run_parser(in, ref, Split::Derived, std::size_t{11});
    run_parser(in, ref, Split::OneByte, std::size_t{3});

    check_writer(in);
    check_json(in);
    return 0;
}
