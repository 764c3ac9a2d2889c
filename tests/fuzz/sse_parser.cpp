// Fuzzes llmfast::SseParser (and the SSE/JSON writers it must read back):
//  - any bytes, split anywhere, give exactly the events of the unsplit parse (size bound included);
//  - dispatched events respect the size bound;
//  - a writer's event with the input as data parses back to that data (line ends normalized to LF);
//  - JSON escaping of any bytes is valid UTF-8 with no raw control character.
#include <llmfast/sse.hpp>
#include <llmfast/utf8.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

std::vector<llmfast::SseEvent> parse(std::string_view stream, std::size_t chunk, std::size_t max_event_size) {
    llmfast::SseParser parser({.max_event_size = max_event_size});
    std::vector<llmfast::SseEvent> events;
    const auto sink = [&](const llmfast::SseEventView& e) {
        // The bound counts raw line bytes, which include every data and event value (not the default type).
        if (e.data.size() > max_event_size) std::abort();
        if (e.type != "message" && e.type.size() > max_event_size) std::abort();
        if (e.status != llmfast::ErrorCode::Ok && (!e.data.empty() || !e.type.empty())) std::abort();
        events.emplace_back(e);
    };
    if (chunk == 0) {
        parser.feed(stream, sink);
    } else {
        for (std::size_t pos = 0; pos < stream.size(); pos += chunk) parser.feed(stream.substr(pos, chunk), sink);
    }
    parser.finish();
    return events;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    // The whole input is the stream (so the corpus holds real streams as they are); the chunk size
    // and the event size bound are derived from it.
    const std::size_t chunk = size % 13 + 1;
    const std::size_t max_event_size =
        (data[0] ^ data[size - 1]) & 1U ? static_cast<std::size_t>(data[size / 2] % 64) + 1 : std::size_t{1} << 20;
    const std::string_view input(reinterpret_cast<const char*>(data), size);

    const std::vector<llmfast::SseEvent> whole = parse(input, 0, max_event_size);
    if (parse(input, chunk, max_event_size) != whole) std::abort();
    if (parse(input, 1, max_event_size) != whole) std::abort();

    // Writer round trip: the input as the data of one event (event/id fixed, always valid).
    std::string framed;
    llmfast::sse::append_event(framed, {.event = "e", .data = input, .id = "1"});
    const std::vector<llmfast::SseEvent> back = llmfast::SseParser::parse_all(framed);
    std::string normalized;
    for (std::size_t i = 0; i < input.size(); ++i) {
        if (input[i] == '\r') {
            normalized.push_back('\n');
            if (i + 1 < input.size() && input[i + 1] == '\n') ++i;
        } else {
            normalized.push_back(input[i]);
        }
    }
    if (back.size() != 1 || back[0].data != normalized || back[0].type != "e" || back[0].id != "1") std::abort();

    std::string json;
    llmfast::detail::append_json_string(json, input);
    if (!llmfast::utf8::is_valid(json)) std::abort();
    for (const char c : json) {
        if (static_cast<unsigned char>(c) < 0x20) std::abort();
    }
    return 0;
}
