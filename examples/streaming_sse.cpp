// examples/streaming_sse.cpp — a model thread streaming byte-level tokens to a client as OpenAI SSE,
// with a deadline, an idle timeout, whole-code-point chunks and stream metrics.
//
// The "model" emits the UTF-8 bytes of a mixed Chinese/English answer in 2-byte tokens (so most
// Chinese characters are split across tokens, as byte-level BPE does), one token every 5 ms. The
// second run uses a model that stalls after a few tokens: the idle timeout ends the stream with a
// distinct status and the model thread is told to stop.
#include <llmfast/llmfast.hpp>

#include <fmt/format.h>

#include <chrono>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>

using namespace std::chrono_literals;

namespace {

llmfast::StreamingGenerator<std::string> fake_model(std::stop_token stop, std::string_view answer, int stall_after) {
    int emitted = 0;
    for (std::size_t pos = 0; pos < answer.size() && !stop.stop_requested(); pos += 2) {
        if (emitted++ == stall_after) {
            while (!stop.stop_requested()) std::this_thread::sleep_for(1ms);  // hangs until told to stop
            co_return;
        }
        std::this_thread::sleep_for(5ms);
        co_yield std::string(answer.substr(pos, 2));
    }
}

void serve(int stall_after) {
    const std::string_view answer = "流式输出让第一个 token 立刻出现。Streaming shows the first token at once.";
    llmfast::TokenChannel<std::string> channel({.capacity = 64});
    auto model = llmfast::spawn_producer(
        channel, [&](std::stop_token stop) { return fake_model(stop, answer, stall_after); });

    llmfast::TimedReceiver receiver(channel, {.total = 10s, .first_item = 2s, .idle = 100ms});
    llmfast::StreamRecorder metrics;
    const llmfast::OpenAiChunkEncoder encoder({.id = "chatcmpl-example", .model = "fake-model", .created = 1700000000});

    std::string wire;  // what would be written to the socket
    std::string text;  // what the client shows
    encoder.append_role(wire);
    std::string_view finish = "stop";
    try {
        for (std::string_view chunk : llmfast::utf8_chunks(receiver.values())) {
            metrics.record_token();
            encoder.append_content(wire, chunk);
            text += chunk;
        }
    } catch (const llmfast::Error& e) {
        fmt::print("stream ended early: {}\n", e.what());
        finish = "length";
    }
    metrics.finish();
    encoder.append_finish(wire, finish);
    llmfast::OpenAiChunkEncoder::append_done(wire);

    // A client (or a gateway downstream) reads the bytes back.
    std::size_t events = 0;
    llmfast::SseParser parser;
    parser.feed(wire, [&](const llmfast::SseEventView&) { ++events; });

    const llmfast::StreamStats s = metrics.stats();
    fmt::print("client text: {}\n", text);
    fmt::print("{} SSE events, {} bytes; {} chunks, TTFT {:.1f} ms, inter-token p50 {:.1f} ms / p99 {:.1f} ms, "
               "{:.0f} chunks/s; model stopped: {}\n\n",
               events, wire.size(), s.tokens,
               s.time_to_first_token ? std::chrono::duration<double, std::milli>(*s.time_to_first_token).count() : -1.0,
               std::chrono::duration<double, std::milli>(s.inter_token_p50).count(),
               std::chrono::duration<double, std::milli>(s.inter_token_p99).count(), s.tokens_per_second,
               channel.stop_requested());
}

}  // namespace

int main() {
    fmt::print("== a healthy model ==\n");
    serve(-1);
    fmt::print("== a model that stalls after 6 tokens (idle timeout 100 ms) ==\n");
    serve(6);
}
