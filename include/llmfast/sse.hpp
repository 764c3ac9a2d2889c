// llmfast/sse.hpp — Server-Sent Events out (a writer and an OpenAI chat-completions chunk encoder)
// and in (an incremental parser for upstream streams: vLLM, llama.cpp server, OpenAI).
//
// Output follows the WHATWG `text/event-stream` rules: every write is a complete frame ending in a
// blank line; multi-line data becomes several `data:` lines (CR, LF and CRLF in data all become line
// breaks, which a reader rejoins with LF — SSE cannot carry a CR); `event` and `id` must be one line.
//
//     std::string out;
//     llmfast::sse::append_event(out, {.event = "update", .data = "line 1\nline 2", .id = "7"});
//     llmfast::sse::append_comment(out, "keep-alive");
//
//     llmfast::OpenAiChunkEncoder encoder({.id = "chatcmpl-1", .model = "my-model", .created = 1700000000});
//     encoder.append_role(out);                 // {"delta":{"role":"assistant","content":""}}
//     encoder.append_content(out, "Hel");       // {"delta":{"content":"Hel"}}
//     encoder.append_finish(out, "stop");       // {"delta":{},"finish_reason":"stop"}
//     encoder.append_usage(out, {.prompt_tokens = 9, .completion_tokens = 12});
//     llmfast::OpenAiChunkEncoder::append_done(out);  // data: [DONE]
//
//     llmfast::SseParser parser({.max_event_size = 1 << 20});
//     parser.feed(bytes_from_socket, [&](const llmfast::SseEventView& event) {
//         if (event.status != llmfast::ErrorCode::Ok) return log_oversized();  // EventTooLarge
//         if (event.data == "[DONE]") return finish();
//         forward(event.type, event.data);
//     });
//
// JSON strings (the encoder's content, ids and model names) are escaped for every input: `"`, `\` and
// all control characters U+0000..U+001F are escaped (`\n`, `\u0001`, ...), as are U+2028/U+2029 (legal
// JSON but line breaks to JavaScript). Input that is not valid UTF-8 is NOT rejected: each ill-formed
// subpart becomes U+FFFD (the same "maximal subpart" rule as `utf8::repair` and `utf8::Assembler`), so
// the output is always valid UTF-8 JSON and a stream never dies on one bad byte. Feed the encoder
// `utf8_chunks` output (llmfast/stream.hpp) so that a character split across tokens is not replaced.
//
// Thread-safety: the free functions are pure; an `OpenAiChunkEncoder` is immutable after construction
// (usable from any thread); an `SseParser` belongs to one stream.
//
// Errors: `sse::append_event` throws `Error(InvalidArgument)` for an `event` or `id` containing CR or
// LF (or an `id` containing NUL), which would break the framing; `SseParserOptions` with
// `max_event_size == 0` throws `Error(InvalidArgument)` (from the `SseParser` constructor and `sse_events`). The parser never throws for its input: an
// event over the size bound is reported as an `SseEventView` with status `ErrorCode::EventTooLarge`.
// `SseParser::feed` propagates what its callback throws, and the parser stays consistent (see `feed`).
#pragma once

#include <llmfast/version.hpp>

#include <llmfast/error.hpp>
#include <llmfast/streaming_generator.hpp>
#include <llmfast/utf8.hpp>

#include <fmt/format.h>

#include <array>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

LLMFAST_BEGIN_NAMESPACE

// ---------------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------------

/// One event to write. Empty `event` means the default type ("message"); `id` absent writes no id
/// field (an empty one resets the reader's last event ID); `retry` asks the reader to reconnect after.
struct SseEventOut {
    std::string_view event{};
    std::string_view data{};
    std::optional<std::string_view> id{};
    std::optional<std::chrono::milliseconds> retry{};
};

namespace detail {
inline bool sse_has_line_break(std::string_view text) noexcept {
    return text.find_first_of("\r\n") != std::string_view::npos;
}

/// Calls `line(std::string_view text, bool last)` for each line of `text`, split at CRLF, CR or LF
/// (the one SSE line splitter of the writer): a text without a line break is one line, and a
/// trailing break gives a last, empty line.
template <class Line>
void sse_for_each_line(std::string_view text, Line&& line) {
    for (;;) {
        const std::size_t brk = text.find_first_of("\r\n");
        if (brk == std::string_view::npos) {
            line(text, true);
            return;
        }
        line(text.substr(0, brk), false);
        const std::size_t skip = (text[brk] == '\r' && brk + 1 < text.size() && text[brk + 1] == '\n') ? 2 : 1;
        text.remove_prefix(brk + skip);
    }
}

/// Appends `data: <line>\n` for each line of `data`. Empty data gives one empty `data:` line, so the
/// reader still dispatches an event (with empty data).
inline void sse_append_data_lines(std::string& out, std::string_view data) {
    sse_for_each_line(data, [&out](std::string_view line, bool) {
        out.append("data: ");
        out.append(line);
        out.push_back('\n');
    });
}
}  // namespace detail

namespace sse {

/// The media type of an event stream (the response's Content-Type).
inline constexpr std::string_view content_type = "text/event-stream";

/// Appends one complete event (terminated by a blank line) to `out`.
/// Throws Error(InvalidArgument) when `event` or `id` contains CR/LF or `id` contains NUL.
inline void append_event(std::string& out, const SseEventOut& event) {
    if (detail::sse_has_line_break(event.event)) {
        throw Error(ErrorCode::InvalidArgument, fmt::format("sse::append_event: SseEventOut::event must not contain CR "
                                                            "or LF (got {} bytes)", event.event.size()));
    }
    if (event.id && (detail::sse_has_line_break(*event.id) || event.id->find('\0') != std::string_view::npos)) {
        throw Error(ErrorCode::InvalidArgument, fmt::format("sse::append_event: SseEventOut::id must not contain CR, "
                                                            "LF or NUL (got {} bytes)", event.id->size()));
    }
    if (!event.event.empty()) {
        out.append("event: ");
        out.append(event.event);
        out.push_back('\n');
    }
    if (event.id) {
        out.append("id: ");
        out.append(*event.id);
        out.push_back('\n');
    }
    if (event.retry) fmt::format_to(std::back_inserter(out), "retry: {}\n", std::max<std::int64_t>(0, event.retry->count()));
    detail::sse_append_data_lines(out, event.data);
    out.push_back('\n');
}

/// The event as a string.
inline std::string format_event(const SseEventOut& event) {
    std::string out;
    append_event(out, event);
    return out;
}

/// Appends a comment frame (`: text`, one `:` line per line of text, then a blank line). Readers
/// ignore it; proxies see traffic, so it serves as a keep-alive.
inline void append_comment(std::string& out, std::string_view text = {}) {
    detail::sse_for_each_line(text, [&out](std::string_view line, bool last) {
        out.push_back(':');
        if (!line.empty() || !last) out.push_back(' ');  // (a space unless nothing is left to write)
        out.append(line);
        out.push_back('\n');
    });
    out.push_back('\n');
}

}  // namespace sse

namespace detail {

// 0: copied as is; 1: escaped (", \, C0 controls); 2: starts a multi-byte sequence (validated).
inline constexpr std::array<std::uint8_t, 256> json_byte_class = [] {
    std::array<std::uint8_t, 256> table{};
    for (std::size_t i = 0; i < 0x20; ++i) table[i] = 1;
    table['"'] = 1;
    table['\\'] = 1;
    for (std::size_t i = 0x80; i < 0x100; ++i) table[i] = 2;
    return table;
}();

/// Appends `text` as a JSON string literal (with the quotes). Always valid UTF-8 JSON: see the header
/// comment for the escaping and the U+FFFD rule.
inline void append_json_string(std::string& out, std::string_view text) {
    static constexpr char hex[] = "0123456789abcdef";
    out.push_back('"');
    std::size_t run = 0;  // start of the pending run of bytes copied unchanged
    std::size_t pos = 0;
    const std::size_t n = text.size();
    while (pos < n) {
        const auto byte = static_cast<unsigned char>(text[pos]);
        const std::uint8_t cls = json_byte_class[byte];
        if (cls == 0) {
            ++pos;
            continue;
        }
        if (cls == 2) {
            const utf8::DecodeResult d = utf8::decode(text, pos);
            if (d.status == utf8::DecodeStatus::Valid && d.code_point != 0x2028 && d.code_point != 0x2029) {
                pos += d.length;  // well-formed: stays in the run
                continue;
            }
            out.append(text.substr(run, pos - run));
            if (d.status == utf8::DecodeStatus::Valid) {
                out.append(d.code_point == 0x2028 ? "\\u2028" : "\\u2029");
            } else {
                out.append(utf8::replacement_character);
            }
            pos += d.length;
            run = pos;
            continue;
        }
        out.append(text.substr(run, pos - run));
        switch (byte) {
            case '"': out.append("\\\""); break;
            case '\\': out.append("\\\\"); break;
            case '\n': out.append("\\n"); break;
            case '\r': out.append("\\r"); break;
            case '\t': out.append("\\t"); break;
            case '\b': out.append("\\b"); break;
            case '\f': out.append("\\f"); break;
            default: {
                const char escape[6] = {'\\', 'u', '0', '0', hex[byte >> 4], hex[byte & 0xF]};
                out.append(escape, sizeof escape);
            }
        }
        ++pos;
        run = pos;
    }
    out.append(text.substr(run));
    out.push_back('"');
}

}  // namespace detail

/// Fixed fields of one OpenAI chat-completions stream (the same in every chunk).
struct OpenAiStreamOptions {
    std::string id{};                ///< e.g. "chatcmpl-..."
    std::string model{};
    std::int64_t created = 0;        ///< Unix time in seconds
    std::string system_fingerprint{};  ///< omitted when empty
};

/// Token counts for the optional final usage chunk (`stream_options: {"include_usage": true}`).
struct OpenAiUsage {
    std::uint64_t prompt_tokens = 0;
    std::uint64_t completion_tokens = 0;
};

/// Encodes OpenAI `chat.completion.chunk` objects as SSE frames (`data: {...}\n\n`), the wire format
/// OpenAI, vLLM and llama.cpp server send and every OpenAI client library reads. The constant prefix
/// (id, object, created, model, fingerprint) is formatted once at construction; a content chunk is a
/// memcpy of it plus the escaped text.
class OpenAiChunkEncoder {
public:
    explicit OpenAiChunkEncoder(const OpenAiStreamOptions& options) {
        prefix_ = "data: {\"id\":";
        detail::append_json_string(prefix_, options.id);
        prefix_.append(",\"object\":\"chat.completion.chunk\",\"created\":");
        fmt::format_to(std::back_inserter(prefix_), "{}", options.created);
        prefix_.append(",\"model\":");
        detail::append_json_string(prefix_, options.model);
        if (!options.system_fingerprint.empty()) {
            prefix_.append(",\"system_fingerprint\":");
            detail::append_json_string(prefix_, options.system_fingerprint);
        }
        prefix_.append(",\"choices\":");
        content_prefix_ = prefix_ + "[{\"index\":0,\"delta\":{\"content\":";
    }

    /// The first chunk of a choice: `"delta":{"role":<role>,"content":""}`.
    void append_role(std::string& out, std::string_view role = "assistant", std::size_t choice = 0) const {
        open_choice(out, choice);
        out.append("{\"role\":");
        detail::append_json_string(out, role);
        out.append(",\"content\":\"\"}");
        close_choice(out, {});
    }

    /// A content delta: `"delta":{"content":<text>}`.
    void append_content(std::string& out, std::string_view text, std::size_t choice = 0) const {
        if (choice == 0) {  // the hot path: two memcpys around the escaped text
            out.append(content_prefix_);
            detail::append_json_string(out, text);
            out.append("},\"logprobs\":null,\"finish_reason\":null}]}\n\n");
            return;
        }
        open_choice(out, choice);
        out.append("{\"content\":");
        detail::append_json_string(out, text);
        out.push_back('}');
        close_choice(out, {});
    }

    /// The last chunk of a choice: an empty delta and `"finish_reason"` ("stop", "length", ...).
    void append_finish(std::string& out, std::string_view finish_reason = "stop", std::size_t choice = 0) const {
        open_choice(out, choice);
        out.append("{}");
        close_choice(out, finish_reason);
    }

    /// The usage chunk: `"choices":[]` and `"usage":{prompt_tokens, completion_tokens, total_tokens}`.
    void append_usage(std::string& out, OpenAiUsage usage) const {
        out.append(prefix_);
        fmt::format_to(std::back_inserter(out),
                       "[],\"usage\":{{\"prompt_tokens\":{},\"completion_tokens\":{},\"total_tokens\":{}}}}}\n\n",
                       usage.prompt_tokens, usage.completion_tokens, usage.prompt_tokens + usage.completion_tokens);
    }

    /// The stream terminator every OpenAI client waits for: `data: [DONE]`.
    static void append_done(std::string& out) { out.append("data: [DONE]\n\n"); }

private:
    void open_choice(std::string& out, std::size_t choice) const {
        out.append(prefix_);
        out.append("[{\"index\":");
        if (choice < 10) {
            out.push_back(static_cast<char>('0' + choice));
        } else {
            fmt::format_to(std::back_inserter(out), "{}", choice);
        }
        out.append(",\"delta\":");
    }
    static void close_choice(std::string& out, std::string_view finish_reason) {
        out.append(",\"logprobs\":null,\"finish_reason\":");
        if (finish_reason.empty()) {
            out.append("null");
        } else {
            detail::append_json_string(out, finish_reason);
        }
        out.append("}]}\n\n");
    }

    std::string prefix_;          // `data: {"id":...,"choices":`
    std::string content_prefix_;  // prefix_ + `[{"index":0,"delta":{"content":`
};

// ---------------------------------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------------------------------

struct SseParserOptions {
    /// Bound on one event: the bytes of its lines (fields, comments, the line being read; not the
    /// line ends) since the last blank line. Past it the event is reported once as EventTooLarge and
    /// skipped up to the next blank line. Measured on raw lines, so how the input is split never
    /// changes the outcome. > 0.
    std::size_t max_event_size = std::size_t{1} << 20;
};

/// The parser's counters (`SseParser::stats()`).
struct SseParserStats {
    std::size_t events_too_large = 0;  ///< events reported as EventTooLarge since construction or reset()
};

/// An event as the parser hands it to the callback; the views are valid during the callback only.
struct SseEventView {
    ErrorCode status = ErrorCode::Ok;  ///< Ok, or EventTooLarge (then type and data are empty)
    std::string_view type;             ///< "message" unless an `event:` field set it
    std::string_view data;             ///< the data lines joined with LF
    std::string_view id;               ///< the last event ID at dispatch (may come from an earlier event)
};

/// An owned event (for collecting).
struct SseEvent {
    ErrorCode status = ErrorCode::Ok;
    std::string type;
    std::string data;
    std::string id;

    SseEvent() = default;
    explicit SseEvent(const SseEventView& view)
        : status(view.status), type(view.type), data(view.data), id(view.id) {}
    friend bool operator==(const SseEvent&, const SseEvent&) = default;
};

namespace detail {
inline const SseParserOptions& sse_validate(const SseParserOptions& options) {
    if (options.max_event_size == 0)
        throw Error(ErrorCode::InvalidArgument,
                    fmt::format("SseParserOptions::max_event_size must be >= 1 (got {})", options.max_event_size));
    return options;
}
}  // namespace detail

/// Incremental `text/event-stream` parser (WHATWG "event stream interpretation"): bytes may arrive
/// split anywhere (inside a line, a CRLF or a UTF-8 character). Handles CR, LF and CRLF line ends,
/// one leading BOM, comments, multi-line data, `event`, `id` (ignored when it contains NUL) and
/// `retry` (ASCII digits only, any number of them, leading zeros included, else ignored; a value
/// past `milliseconds::max()` saturates to it), ignores unknown fields and dispatches on blank
/// lines. At the end of the stream an unterminated event is discarded, as the standard says
/// (`finish()`). A callback that throws leaves the parser consistent and loses no input (`feed`).
///
/// Bytes are passed through; the parser does not decode or validate UTF-8 (a proxy forwards what it
/// got). Memory is bounded by `max_event_size` (plus, only after a callback threw, a copy of the
/// unparsed rest of that one `feed` call's bytes until the next feed). Hot-path invariant: a line
/// that lies entirely inside one `feed` is parsed in place, and a one-line event (the
/// OpenAI/vLLM/llama.cpp shape) that lies inside one `feed` reaches the callback as a view of the
/// input, with no copy; only a line or an event split across feeds is buffered.
///
/// Thread-safety: one parser belongs to one stream (no internal locking).
class SseParser {
public:
    using Options = SseParserOptions;

    /// Throws Error(InvalidArgument) when `options.max_event_size` is 0.
    explicit SseParser(SseParserOptions options = {}) : max_event_size_(detail::sse_validate(options).max_event_size) {}

    /// Parses `bytes` and calls `on_event(const SseEventView&)` for each dispatched event (and once
    /// for each event that exceeded the bound). Returns the number of calls.
    ///
    /// If `on_event` throws, the exception propagates out of `feed`, and the event it was called for
    /// counts as delivered: the parser's state is as if the callback had returned (that event's type
    /// and data are gone; the last event ID and retry stay). The bytes of `bytes` after the line that
    /// ended that event are not parsed now: the parser keeps a copy of them and parses them first at
    /// the next `feed` call, before that call's own bytes (`feed({}, on_event)` resumes without new
    /// input), so catching the exception and feeding on loses nothing and repeats nothing.
    /// `finish()` and `reset()` drop that kept rest, as they drop an unterminated event.
    template <class OnEvent>
        requires std::invocable<OnEvent&, const SseEventView&>
    std::size_t feed(std::string_view bytes, OnEvent&& on_event) {
        if (!resume_.empty()) {  // the rest of a feed whose callback threw: parse it first
            std::string input = std::move(resume_);
            resume_.clear();
            input.append(bytes);
            return feed_bytes(input, on_event);
        }
        return feed_bytes(bytes, on_event);
    }

private:
    template <class OnEvent>
    std::size_t feed_bytes(std::string_view bytes, OnEvent& on_event) {
        std::size_t calls = 0;
        const auto emit = [&](const SseEventView& view) {
            ++calls;
            std::invoke(on_event, view);
        };
        const char* const begin = bytes.data();
        const std::size_t n = bytes.size();
        std::size_t pos = 0;
        if (n == 0) return 0;
        if (pending_cr_) {  // the previous feed ended with CR: an LF here completes that CRLF
            pending_cr_ = false;
            if (begin[0] == '\n') pos = 1;
        }
        // The next CR at or after `pos` is looked up once and cached, so CR-free input (the common
        // case) costs one memchr for CR per feed, not one per line.
        std::size_t next_cr = find(begin, pos, n, '\r');
        // `pos` moves past a line (and its terminator) before the line is processed, so that when the
        // callback throws, [pos, n) is exactly the unparsed rest (kept in resume_ for the next feed).
        try {
            while (pos < n) {
                if (next_cr != npos && next_cr < pos) next_cr = find(begin, pos, n, '\r');
                const std::size_t lf_limit = next_cr == npos ? n : next_cr;
                const std::size_t lf = find(begin, pos, lf_limit, '\n');
                const std::size_t end = lf != npos ? lf : next_cr;
                if (end == npos) {  // no terminator: keep the partial line for the next feed
                    const std::string_view rest(begin + pos, n - pos);
                    pos = n;
                    take_partial(rest, emit);
                    break;
                }
                const std::string_view piece(begin + pos, end - pos);
                pos = end + 1;
                if (begin[end] == '\r') {
                    if (pos < n) {
                        if (begin[pos] == '\n') ++pos;
                    } else {
                        pending_cr_ = true;
                    }
                }
                if (line_.empty() && !partial_line_) {
                    process_line(piece, /*in_place=*/true, emit);
                } else {
                    const LineDone done{*this};  // the buffered line is consumed, even if the callback throws
                    if (!discarding_) line_.append(piece);
                    const std::string_view line = discarding_ ? std::string_view(partial_line_ ? "x" : "") : line_;
                    process_line(line, /*in_place=*/false, emit);
                }
            }
        } catch (...) {
            own_data_view();  // (never active here: dispatch and overflow end it before calling back)
            resume_.assign(begin + pos, n - pos);
            throw;
        }
        own_data_view();
        return calls;
    }

    // Ends the buffered line on scope exit (normal or by an exception from the callback).
    struct LineDone {
        SseParser& parser;
        ~LineDone() {
            parser.line_.clear();
            parser.partial_line_ = false;
        }
    };

    // Ends the dispatched event on scope exit (normal or by an exception from the callback), so the
    // next event starts clean: no leftover type or data lines.
    struct EventDone {
        SseParser& parser;
        ~EventDone() {
            parser.data_.clear();
            parser.type_.clear();
        }
    };

public:

    /// The stream ended: an event without its closing blank line is discarded (WHATWG). The last
    /// event ID and retry survive (a reconnecting client needs them); the next feed may start with a
    /// BOM again.
    void finish() noexcept {
        data_view_active_ = false;
        resume_.clear();
        line_.clear();
        data_.clear();
        type_.clear();
        event_raw_ = 0;
        partial_line_ = false;
        discarding_ = false;
        pending_cr_ = false;
        at_start_ = true;
    }

    /// Back to the initial state (forgets the last event ID and retry too).
    void reset() noexcept {
        finish();
        last_id_.clear();
        retry_.reset();
        events_too_large_ = 0;
    }

    [[nodiscard]] std::string_view last_event_id() const noexcept { return last_id_; }
    /// The latest valid `retry:` value.
    [[nodiscard]] std::optional<std::chrono::milliseconds> retry() const noexcept { return retry_; }
    /// The counters (events reported as EventTooLarge so far).
    [[nodiscard]] SseParserStats stats() const noexcept { return SseParserStats{events_too_large_}; }

    /// Parses a whole stream at once (then `finish()`), collecting owned events.
    [[nodiscard]] static std::vector<SseEvent> parse_all(std::string_view stream, SseParserOptions options = {}) {
        SseParser parser(options);
        std::vector<SseEvent> events;
        parser.feed(stream, [&](const SseEventView& e) { events.emplace_back(e); });
        parser.finish();
        return events;
    }

private:
    static constexpr std::size_t npos = std::string_view::npos;
    static constexpr std::string_view bom = "\xEF\xBB\xBF";

    static std::size_t find(const char* base, std::size_t from, std::size_t to, char c) noexcept {
        if (from >= to) return npos;
        const void* hit = std::memchr(base + from, c, to - from);
        return hit ? static_cast<std::size_t>(static_cast<const char*>(hit) - base) : npos;
    }

    // Moves a pending in-place data view into the owned buffer (before its bytes go away).
    void own_data_view() {
        if (!data_view_active_) return;
        data_view_active_ = false;
        data_.assign(data_view_);
        data_.push_back('\n');
    }

    template <class Emit>
    void overflow(Emit& emit) {
        ++events_too_large_;
        discarding_ = true;
        data_view_active_ = false;
        event_raw_ = 0;
        data_.clear();
        type_.clear();
        line_.clear();
        emit(SseEventView{ErrorCode::EventTooLarge, {}, {}, last_id_});
    }

    template <class Emit>
    void take_partial(std::string_view rest, Emit& emit) {
        if (rest.empty()) return;
        partial_line_ = true;
        if (discarding_) return;  // only whether the line is empty matters now
        if (event_raw_ + line_.size() + rest.size() > max_event_size_) {
            overflow(emit);
            return;
        }
        line_.append(rest);
    }

    template <class Emit>
    void process_line(std::string_view line, bool in_place, Emit& emit) {
        if (discarding_) {
            at_start_ = false;
            if (line.empty()) discarding_ = false;  // resynchronized at the blank line
            return;
        }
        if (event_raw_ + line.size() > max_event_size_) return overflow(emit);  // BOM included, as in take_partial
        event_raw_ += line.size();
        if (at_start_) {
            at_start_ = false;
            if (line.starts_with(bom)) line.remove_prefix(bom.size());
        }
        if (line.empty()) {
            dispatch(emit);
            return;
        }
        if (line.front() == ':') return;  // a comment
        const std::size_t colon = line.find(':');
        std::string_view field = line;
        std::string_view value;
        if (colon != npos) {
            field = line.substr(0, colon);
            value = line.substr(colon + 1);
            if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        }
        if (field == "data") {
            if (data_view_active_) own_data_view();  // a second data line: join in the buffer
            if (in_place && data_.empty()) {
                data_view_ = value;  // the usual one-line event: no copy until it is dispatched
                data_view_active_ = true;
            } else {
                data_.append(value);
                data_.push_back('\n');
            }
        } else if (field == "event") {
            type_.assign(value);
        } else if (field == "id") {
            if (value.find('\0') == npos) last_id_.assign(value);
        } else if (field == "retry") {
            parse_retry(value);
        }
        // any other field is ignored
    }

    // WHATWG: a value of only ASCII digits (any number of them, leading zeros included) is the
    // reconnection time in ms; anything else is ignored. A value too big for milliseconds saturates.
    void parse_retry(std::string_view value) noexcept {
        if (value.empty()) return;
        using Rep = std::chrono::milliseconds::rep;
        constexpr Rep max = std::chrono::milliseconds::max().count();
        Rep ms = 0;
        for (const char c : value) {
            if (c < '0' || c > '9') return;
            const Rep digit = c - '0';
            ms = ms > (max - digit) / 10 ? max : ms * 10 + digit;
        }
        retry_ = std::chrono::milliseconds(ms);
    }

    template <class Emit>
    void dispatch(Emit& emit) {
        event_raw_ = 0;
        const EventDone done{*this};  // clears type_ and data_ after the callback, also when it throws
        if (data_view_active_) {
            data_view_active_ = false;
            const std::string_view type = type_.empty() ? std::string_view("message") : std::string_view(type_);
            emit(SseEventView{ErrorCode::Ok, type, data_view_, last_id_});
            return;
        }
        if (data_.empty()) return;  // no data lines: nothing is dispatched (WHATWG)
        const std::string_view data(data_.data(), data_.size() - 1);  // drop the last LF
        const std::string_view type = type_.empty() ? std::string_view("message") : std::string_view(type_);
        emit(SseEventView{ErrorCode::Ok, type, data, last_id_});
    }

    std::size_t max_event_size_;
    std::string line_;     // a line split across feeds (its first part(s))
    std::string resume_;   // the unparsed rest of a feed whose callback threw (parsed first next time)
    std::string data_;     // data buffer: each data line followed by LF
    std::string type_;     // event type buffer
    std::string last_id_;  // last event ID buffer
    std::optional<std::chrono::milliseconds> retry_;
    std::size_t events_too_large_ = 0;
    std::size_t event_raw_ = 0;  // bytes of the current event's complete lines (the size bound)
    bool partial_line_ = false;  // bytes of the current line arrived in an earlier feed
    bool discarding_ = false;    // the current event overflowed: skip to the next blank line
    bool pending_cr_ = false;    // the last feed ended with CR (maybe the first half of CRLF)
    bool at_start_ = true;       // the next line is the stream's first (a BOM may lead it)
    // The data of a one-line event whose line lay inside the current feed: a view into the caller's
    // bytes, valid until `feed` returns (then copied into data_ if the event is still open).
    // Invariant: while active, data_ is empty.
    std::string_view data_view_;
    bool data_view_active_ = false;
};

namespace detail {
template <class View>
StreamingGenerator<SseEvent> sse_events_impl(View chunks, SseParserOptions options) {
    SseParser parser(options);
    std::vector<SseEvent> ready;
    for (auto&& chunk : chunks) {
        ready.clear();
        parser.feed(std::string_view(chunk), [&](const SseEventView& e) { ready.emplace_back(e); });
        for (SseEvent& event : ready) co_yield std::move(event);
    }
    parser.finish();
}
}  // namespace detail

/// The events of a stream that arrives as a range of byte chunks (e.g. a generator over socket reads).
/// An lvalue range is referenced (keep it alive); an rvalue is moved in.
template <std::ranges::viewable_range R>
    requires std::ranges::input_range<R> && std::convertible_to<std::ranges::range_reference_t<R>, std::string_view>
StreamingGenerator<SseEvent> sse_events(R&& chunks, SseParserOptions options = {}) {
    detail::sse_validate(options);  // eagerly, not at the first resumption
    return detail::sse_events_impl(std::views::all(std::forward<R>(chunks)), options);
}

LLMFAST_END_NAMESPACE
