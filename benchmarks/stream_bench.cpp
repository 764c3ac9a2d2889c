// benchmarks/stream_bench.cpp — the streaming building blocks against what a user would write instead.
//
//  1. StreamingGenerator<int> per element vs a plain loop and vs a std::function callback.
//  2. TokenChannel hand-over between two threads (tokens/s) vs a textbook mutex + condvar +
//     std::queue that notifies on every push and pop. Goal: >= 5 M tokens/s.
//  3. SSE parse throughput (MB/s) of an OpenAI chunk stream read in 4 KiB socket-sized pieces, vs a
//     plain line-splitting parser (LF only, copies each line). Goal: >= 500 MB/s.
//  4. OpenAI chunk encode (ns per chunk) vs building the object with nlohmann::json and dump().
//     Goal: <= 200 ns.
//
// Usage: stream_bench [--quick] [--rounds N]
#include <llmfast/sse.hpp>
#include <llmfast/stream.hpp>
#include <llmfast/streaming_generator.hpp>

#include "bench_common.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <queue>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#if __has_include(<nlohmann/json.hpp>)
#include <nlohmann/json.hpp>
#define LLMFAST_BENCH_HAVE_JSON 1
#endif

namespace bench = llmfast::bench;

namespace {

// ---- 1. generator vs loop vs callback ----

llmfast::StreamingGenerator<int> generate(const std::vector<int>& data) {
    for (int v : data) co_yield v;
}

// Not inlined into the caller: a producer behind a callback is what a library boundary looks like.
[[gnu::noinline]] void produce(const std::vector<int>& data, const std::function<void(int)>& sink) {
    for (int v : data) sink(v);
}

double ns_per_element(std::size_t n, auto&& body) {
    const double start = bench::now_seconds();
    body();
    return (bench::now_seconds() - start) * 1e9 / static_cast<double>(n);
}

// ---- 2. channel hand-over ----

// The textbook blocking queue: the simplest correct bounded channel.
class NaiveChannel {
public:
    explicit NaiveChannel(std::size_t capacity) : capacity_(capacity) {}
    void push(int v) {
        std::unique_lock lock(mutex_);
        not_full_.wait(lock, [&] { return queue_.size() < capacity_; });
        queue_.push(v);
        not_empty_.notify_one();
    }
    void close() {
        std::lock_guard lock(mutex_);
        closed_ = true;
        not_empty_.notify_all();
    }
    bool pop(int& out) {
        std::unique_lock lock(mutex_);
        not_empty_.wait(lock, [&] { return !queue_.empty() || closed_; });
        if (queue_.empty()) return false;
        out = queue_.front();
        queue_.pop();
        not_full_.notify_one();
        return true;
    }

private:
    std::size_t capacity_;
    std::mutex mutex_;
    std::condition_variable not_empty_;
    std::condition_variable not_full_;
    std::queue<int> queue_;
    bool closed_ = false;
};

double channel_tokens_per_second(std::size_t n, std::size_t capacity, int mode) {
    const double start = bench::now_seconds();
    long long sum = 0;
    if (mode == 2) {
        NaiveChannel channel(capacity);
        std::thread producer([&] {
            for (std::size_t i = 0; i < n; ++i) channel.push(static_cast<int>(i));
            channel.close();
        });
        int v = 0;
        while (channel.pop(v)) sum += v;
        producer.join();
    } else {
        llmfast::TokenChannel<int> channel({.capacity = capacity});
        std::thread producer([&] {
            for (std::size_t i = 0; i < n; ++i) (void)channel.push(static_cast<int>(i));
            channel.close();
        });
        if (mode == 0) {
            for (llmfast::Received<int> r = channel.pop(); r; r = channel.pop()) sum += *r.value;
        } else {
            for (int v : channel.stream()) sum += v;
        }
        producer.join();
    }
    const double seconds = bench::now_seconds() - start;
    bench::keep(sum);
    return static_cast<double>(n) / seconds;
}

// ---- 3. SSE parse ----

std::string make_openai_stream(std::size_t chunks) {
    const llmfast::OpenAiChunkEncoder encoder({.id = "chatcmpl-AGhIvDNLuXJKQSPRZ9NvWGcnrMGXF",
                                               .model = "gpt-4o-mini-2024-07-18",
                                               .created = 1728499445,
                                               .system_fingerprint = "fp_e2bde53e6e"});
    const std::string_view tokens[] = {"Hello", ",", " world", " \xE4\xBD\xA0\xE5\xA5\xBD", "\n", " the", " quick", " \"fox\""};
    std::string out;
    encoder.append_role(out);
    for (std::size_t i = 0; i < chunks; ++i) encoder.append_content(out, tokens[i % std::size(tokens)]);
    encoder.append_finish(out);
    llmfast::OpenAiChunkEncoder::append_done(out);
    return out;
}

// A plain parser a user would write: buffer, split at LF, strip a trailing CR, collect data lines.
class NaiveSseParser {
public:
    template <class F>
    void feed(std::string_view bytes, F&& on_data) {
        buffer_.append(bytes);
        std::size_t start = 0;
        for (std::size_t lf; (lf = buffer_.find('\n', start)) != std::string::npos; start = lf + 1) {
            std::string line = buffer_.substr(start, lf - start);
            if (!line.empty() && line.back() == '\r') line.pop_back();
            if (line.empty()) {
                if (!data_.empty()) {
                    data_.pop_back();
                    on_data(data_);
                    data_.clear();
                }
            } else if (line.rfind("data:", 0) == 0) {
                std::string_view value = std::string_view(line).substr(5);
                if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
                data_.append(value);
                data_.push_back('\n');
            }
        }
        buffer_.erase(0, start);
    }

private:
    std::string buffer_;
    std::string data_;
};

double parse_mb_per_second(const std::string& stream, int reps, bool ours, std::size_t expected_events) {
    constexpr std::size_t piece = 4096;
    std::size_t events = 0;
    std::size_t bytes_seen = 0;
    const double start = bench::now_seconds();
    for (int r = 0; r < reps; ++r) {
        if (ours) {
            llmfast::SseParser parser;
            for (std::size_t pos = 0; pos < stream.size(); pos += piece) {
                parser.feed(std::string_view(stream).substr(pos, piece), [&](const llmfast::SseEventView& e) {
                    ++events;
                    bytes_seen += e.data.size();
                });
            }
        } else {
            NaiveSseParser parser;
            for (std::size_t pos = 0; pos < stream.size(); pos += piece) {
                parser.feed(std::string_view(stream).substr(pos, piece), [&](const std::string& data) {
                    ++events;
                    bytes_seen += data.size();
                });
            }
        }
    }
    const double seconds = bench::now_seconds() - start;
    if (events != expected_events * static_cast<std::size_t>(reps)) {
        std::fprintf(stderr, "parse mismatch: %zu events\n", events);
        std::exit(1);
    }
    bench::keep(bytes_seen);
    return static_cast<double>(stream.size()) * reps / seconds / 1e6;
}

// ---- 4. OpenAI chunk encode ----

double encode_ns(std::size_t n, bool ours) {
    static const std::string_view tokens[] = {"Hello", ",", " world", " \xE4\xBD\xA0\xE5\xA5\xBD", "\n", " the", " quick", " \"fox\""};
    std::string out;
    out.reserve(512);
    std::size_t total = 0;
    const double start = bench::now_seconds();
    if (ours) {
        const llmfast::OpenAiChunkEncoder encoder({.id = "chatcmpl-AGhIvDNLuXJKQSPRZ9NvWGcnrMGXF",
                                                   .model = "gpt-4o-mini-2024-07-18",
                                                   .created = 1728499445,
                                                   .system_fingerprint = "fp_e2bde53e6e"});
        for (std::size_t i = 0; i < n; ++i) {
            out.clear();
            encoder.append_content(out, tokens[i % std::size(tokens)]);
            total += out.size();
        }
    } else {
#ifdef LLMFAST_BENCH_HAVE_JSON
        for (std::size_t i = 0; i < n; ++i) {
            nlohmann::json chunk = {
                {"id", "chatcmpl-AGhIvDNLuXJKQSPRZ9NvWGcnrMGXF"},
                {"object", "chat.completion.chunk"},
                {"created", 1728499445},
                {"model", "gpt-4o-mini-2024-07-18"},
                {"system_fingerprint", "fp_e2bde53e6e"},
                {"choices", nlohmann::json::array({{{"index", 0},
                                                    {"delta", {{"content", tokens[i % std::size(tokens)]}}},
                                                    {"logprobs", nullptr},
                                                    {"finish_reason", nullptr}}})}};
            out.clear();
            out.append("data: ");
            out.append(chunk.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
            out.append("\n\n");
            total += out.size();
        }
#else
        // Without nlohmann-json: the same chunk through fmt::format with a per-call escape.
        for (std::size_t i = 0; i < n; ++i) {
            std::string escaped;
            llmfast::detail::append_json_string(escaped, tokens[i % std::size(tokens)]);
            out = fmt::format(
                "data: {{\"id\":\"{}\",\"object\":\"chat.completion.chunk\",\"created\":{},\"model\":\"{}\","
                "\"system_fingerprint\":\"{}\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{}}},"
                "\"logprobs\":null,\"finish_reason\":null}}]}}\n\n",
                "chatcmpl-AGhIvDNLuXJKQSPRZ9NvWGcnrMGXF", 1728499445, "gpt-4o-mini-2024-07-18", "fp_e2bde53e6e",
                escaped);
            total += out.size();
        }
#endif
    }
    const double seconds = bench::now_seconds() - start;
    bench::keep(total);
    return seconds * 1e9 / static_cast<double>(n);
}

}  // namespace

int main(int argc, char** argv) {
    const bench::Options options = bench::parse_options(argc, argv);
    const std::size_t n = options.quick ? 200'000 : 2'000'000;

    {
        std::vector<int> data(n);
        for (std::size_t i = 0; i < n; ++i) data[i] = static_cast<int>(i * 2654435761U % 1000);
        long long sink = 0;
        const auto gen = [&] {
            return ns_per_element(n, [&] {
                long long s = 0;
                for (int v : generate(data)) s += v;
                sink += s;
            });
        };
        const auto callback = [&] {
            return ns_per_element(n, [&] {
                long long s = 0;
                produce(data, [&](int v) { s += v; });
                sink += s;
            });
        };
        const auto loop = [&] {
            return ns_per_element(n, [&] {
                long long s = 0;
                for (int v : data) {
                    s += v;
                    bench::keep(s);  // one element at a time, as a consumer would handle it
                }
                sink += s;
            });
        };
        auto [gen_vs_cb, cb] = bench::interleave(options.rounds, gen, callback);
        auto [gen2, plain] = bench::interleave(options.rounds, gen, loop);
        bench::keep(sink);
        bench::Table table("StreamingGenerator<int>: cost per element");
        table.add("generator vs std::function callback", gen_vs_cb, cb, "ns/elem", bench::Better::Lower);
        table.add("generator vs plain loop", gen2, plain, "ns/elem", bench::Better::Lower);
        table.print();
    }

    {
        const std::size_t items = options.quick ? 200'000 : 2'000'000;
        bench::Table table("TokenChannel: hand-over between two threads (goal >= 5e6 tokens/s)");
        for (std::size_t capacity : {std::size_t{64}, std::size_t{1024}}) {
            auto [pop, naive] = bench::interleave(options.rounds, [&] { return channel_tokens_per_second(items, capacity, 0); },
                                                  [&] { return channel_tokens_per_second(items, capacity, 2); });
            auto [stream, naive2] = bench::interleave(options.rounds, [&] { return channel_tokens_per_second(items, capacity, 1); },
                                                      [&] { return channel_tokens_per_second(items, capacity, 2); });
            table.add("pop() per token, capacity " + std::to_string(capacity), pop, naive, "tokens/s", bench::Better::Higher);
            table.add("stream() generator, capacity " + std::to_string(capacity), stream, naive2, "tokens/s",
                      bench::Better::Higher);
        }
        table.print();
    }

    {
        const std::size_t chunks = options.quick ? 2'000 : 20'000;
        const std::string stream = make_openai_stream(chunks);
        const int reps = options.quick ? 2 : 5;
        auto [ours, naive] = bench::interleave(options.rounds, [&] { return parse_mb_per_second(stream, reps, true, chunks + 3); },
                                               [&] { return parse_mb_per_second(stream, reps, false, chunks + 3); });
        bench::Table table("SSE parse: OpenAI chunk stream in 4 KiB reads (goal >= 500 MB/s)");
        table.add("SseParser vs naive line splitter", ours, naive, "MB/s", bench::Better::Higher);
        table.print();
    }

    {
        const std::size_t count = options.quick ? 100'000 : 1'000'000;
        auto [ours, baseline] = bench::interleave(options.rounds, [&] { return encode_ns(count, true); },
                                                  [&] { return encode_ns(count, false); });
        bench::Table table("OpenAI chunk encode (goal <= 200 ns/chunk)");
#ifdef LLMFAST_BENCH_HAVE_JSON
        table.add("OpenAiChunkEncoder vs nlohmann::json dump", ours, baseline, "ns/chunk", bench::Better::Lower);
#else
        table.add("OpenAiChunkEncoder vs fmt::format", ours, baseline, "ns/chunk", bench::Better::Lower);
#endif
        const std::string one = [] {
            std::string s;
            llmfast::OpenAiChunkEncoder({.id = "chatcmpl-AGhIvDNLuXJKQSPRZ9NvWGcnrMGXF",
                                         .model = "gpt-4o-mini-2024-07-18",
                                         .created = 1728499445,
                                         .system_fingerprint = "fp_e2bde53e6e"})
                .append_content(s, "Hello");
            return s;
        }();
        table.add_absolute("encode throughput (ours)", static_cast<double>(one.size()) / ours * 1e3, "MB/s");
        table.print();
    }
    return 0;
}
