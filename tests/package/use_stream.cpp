// Package consume test for the streaming component: generator, channel with timeouts, UTF-8 chunks,
// OpenAI SSE encoding and parsing, through the umbrella header of the installed package.
#include <llmfast/llmfast.hpp>

#include <chrono>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {
llmfast::StreamingGenerator<std::string> fake_model() {
    for (const char* token : {"\xE4\xBD", "\xA0\xE5\xA5\xBD", "!"}) co_yield std::string(token);  // 你好!
}
}  // namespace

int main() {
    using namespace std::chrono_literals;
    llmfast::TokenChannel<std::string> channel({.capacity = 16});
    std::jthread model([&] {
        for (std::string&& token : fake_model()) {
            if (channel.push(std::move(token)) != llmfast::StreamStatus::Ok) return;
        }
        channel.close();
    });

    llmfast::TimedReceiver receiver(channel, {.total = 30s, .idle = 10s});
    llmfast::StreamRecorder metrics;
    const llmfast::OpenAiChunkEncoder encoder({.id = "chatcmpl-1", .model = "demo", .created = 1700000000});
    std::string wire;
    encoder.append_role(wire);
    for (std::string_view text : llmfast::utf8_chunks(receiver.values())) {
        metrics.record_token();
        encoder.append_content(wire, text);
    }
    metrics.finish();
    encoder.append_finish(wire, "stop");
    llmfast::OpenAiChunkEncoder::append_done(wire);

    std::size_t events = 0;
    bool done = false;
    llmfast::SseParser parser;
    parser.feed(wire, [&](const llmfast::SseEventView& event) {
        ++events;
        done = event.data == "[DONE]";
    });
    // role + 2 content chunks ("你", "好!") + finish + [DONE]
    return (events == 5 && done && metrics.token_count() == 2) ? 0 : 1;
}
