// benchmarks/gateway_bench/gateway_bench_tool.cpp — the two native pieces of the gateway benchmark
// (benchmarks/gateway_bench/run.py drives them; docs/gateway.md#performance has the figures):
//
//   gateway_bench_tool upstream --port P [--tokens 64] [--interval-ms 10]
//       a fake OpenAI upstream: every POST gets a chat.completion.chunk SSE stream of `tokens` content
//       chunks, one every `interval-ms` (absolute deadlines, so no drift), then a finish chunk and
//       [DONE]; chunked transfer encoding, keep-alive. Prints "listening on 127.0.0.1:P".
//   gateway_bench_tool load --port P [--concurrency C] [--streams N] [--model M] [--max-tokens K]
//                      [--prompt-seed S] [--stall-ms MS] [--stages a,b,c] [--connect-burst 200] [--spread-ms MS]
//       the load generator: C keep-alive connections, each sending streaming chat requests one after
//       another until N streams have been sent (at most `connect-burst` connects in flight); per stream the time to first token (the first SSE
//       event whose delta has content, from the request's first byte) and the end-to-end time (to
//       the end of the chunked body, [DONE] seen). A stream with no byte for `stall-ms` is stalled;
//       one that fails or ends without [DONE] is lost. With --stages, streams are opened in steps
//       (one per connection, all held open): after each step, once every open stream has its first
//       token, it prints "STAGE n" and waits for a line on stdin (the driver samples memory there).
//       Ends with one JSON line: counts, TTFT and end-to-end p50/p99/max, and its own CPU seconds
//       (/proc/self/stat) so a run shows the load generator was not the bottleneck. --spread-ms: the
//       connections start spread evenly over that time (the steady state of C open streams with
//       arrivals spread out) instead of all at once (C requests in the same instant, then in waves).
//
// Both run on one thread (one io_context, C++20 coroutines) so they cost one core at most.
#include <llmfast/detail/percentile.hpp>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <functional>
#include <optional>
#include <iostream>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

// The scheduler's exact runtime of this (single-threaded) process: /proc/self/stat's utime and stime
// are sampled at the 10 ms clock tick, too coarse for an event loop that runs in short bursts.
double cpu_seconds_of_self() {
    std::ifstream schedstat("/proc/self/schedstat");
    double ns = -1;
    if (schedstat >> ns) return ns / 1e9;
    std::ifstream in("/proc/self/stat");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto close = text.rfind(')');
    if (close == std::string::npos) return 0;
    std::istringstream fields(text.substr(close + 2));
    std::string field;
    double utime = 0, stime = 0;
    for (int i = 3; i <= 15 && fields >> field; ++i) {  // field 3 is the state; 14 utime, 15 stime
        if (i == 14) utime = std::strtod(field.c_str(), nullptr);
        if (i == 15) stime = std::strtod(field.c_str(), nullptr);
    }
    return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double ms_between(Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
}

struct Args {
    std::vector<std::string> items;
    std::string get(std::string_view flag, std::string fallback) const {
        for (std::size_t i = 0; i + 1 < items.size(); ++i)
            if (items[i] == flag) return items[i + 1];
        return fallback;
    }
    long num(std::string_view flag, long fallback) const {
        const std::string text = get(flag, "");
        return text.empty() ? fallback : std::strtol(text.c_str(), nullptr, 10);
    }
};

// ---- the fake upstream ----------------------------------------------------------------------------

struct UpstreamOptions {
    int tokens = 64;
    std::chrono::milliseconds interval{10};
};

std::string chunk(std::string_view data) {
    char size[32];
    const int n = std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    std::string out(size, static_cast<std::size_t>(n));
    out.append(data);
    out.append("\r\n");
    return out;
}

std::string content_event(int k) {
    std::string delta = k == 0 ? R"({"role":"assistant","content":")" : R"({"content":")";
    delta += "tok" + std::to_string(k) + " \"}";
    return R"(data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench","choices":[{"index":0,"delta":)" +
           delta + R"(,"finish_reason":null}]})" + "\n\n";
}

net::awaitable<void> upstream_session(tcp::socket socket, UpstreamOptions options) {
    beast::flat_buffer buffer;
    boost::system::error_code ec;
    net::steady_timer timer(socket.get_executor());
    socket.set_option(tcp::no_delay(true), ec);
    const std::string head =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
    const std::string finish = chunk(
        R"(data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"bench","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})"
        "\n\ndata: [DONE]\n\n") + "0\r\n\r\n";
    for (;;) {
        http::request<http::string_body> request;
        co_await http::async_read(socket, buffer, request, net::redirect_error(net::use_awaitable, ec));
        if (ec) co_return;
        const bool keep_alive = request.keep_alive();
        co_await net::async_write(socket, net::buffer(head), net::redirect_error(net::use_awaitable, ec));
        if (ec) co_return;
        const auto start = Clock::now();
        for (int k = 0; k < options.tokens; ++k) {
            timer.expires_at(start + options.interval * (k + 1));
            co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
            const std::string piece = chunk(content_event(k));
            co_await net::async_write(socket, net::buffer(piece), net::redirect_error(net::use_awaitable, ec));
            if (ec) co_return;  // the client went away: stop "generating"
        }
        co_await net::async_write(socket, net::buffer(finish), net::redirect_error(net::use_awaitable, ec));
        if (ec || !keep_alive) co_return;
    }
}

net::awaitable<void> upstream_accept(tcp::acceptor& acceptor, UpstreamOptions options) {
    for (;;) {
        boost::system::error_code ec;
        tcp::socket socket = co_await acceptor.async_accept(net::redirect_error(net::use_awaitable, ec));
        if (ec) {
            if (ec == net::error::operation_aborted) co_return;
            continue;  // EMFILE and the like: keep serving the others
        }
        auto executor = socket.get_executor();
        net::co_spawn(executor, upstream_session(std::move(socket), options), net::detached);
    }
}

int run_upstream(const Args& args) {
    UpstreamOptions options;
    options.tokens = static_cast<int>(args.num("--tokens", 64));
    options.interval = std::chrono::milliseconds(args.num("--interval-ms", 10));
    net::io_context io(1);
    tcp::acceptor acceptor(io);
    const tcp::endpoint endpoint(net::ip::make_address("127.0.0.1"), static_cast<unsigned short>(args.num("--port", 0)));
    acceptor.open(endpoint.protocol());
    acceptor.set_option(net::socket_base::reuse_address(true));
    acceptor.bind(endpoint);
    acceptor.listen(8192);
    std::printf("listening on 127.0.0.1:%u\n", static_cast<unsigned>(acceptor.local_endpoint().port()));
    std::fflush(stdout);
    net::signal_set signals(io, SIGTERM, SIGINT);
    signals.async_wait([&](auto, int) { io.stop(); });
    net::co_spawn(io, upstream_accept(acceptor, options), net::detached);
    io.run();
    std::printf("{\"upstream_cpu_s\":%.3f}\n", cpu_seconds_of_self());
    return 0;
}

// ---- the load generator -------------------------------------------------------------------------------

struct LoadOptions {
    std::string host = "127.0.0.1";
    unsigned short port = 0;
    std::string path = "/v1/chat/completions";
    std::string model = "bench";
    long concurrency = 1, streams = 1, max_tokens = 64, prompt_seed = 1;
    long connect_burst = 200;
    std::chrono::milliseconds spread{0};  ///< slot i starts at i * spread / concurrency: arrivals spread evenly, not one burst  ///< connects in flight at once (clients arrive in a burst, not all in one instant)
    std::chrono::milliseconds stall{10000};
    std::vector<long> stages;
};

struct StreamResult {
    double ttft_ms = -1, e2e_ms = -1, max_gap_ms = 0;
};

struct Load {
    LoadOptions options;
    tcp::endpoint endpoint;
    long next = 0;  // the next stream index to send
    std::vector<StreamResult> ok;
    long lost = 0, stalled = 0, non_200 = 0, connect_failed = 0;
    long open = 0, settled = 0;  // for --stages: streams flowing; streams with a first token or an end
    std::string first_error;
    std::function<void()> on_progress;
    long connecting = 0;
    std::deque<net::steady_timer*> connect_waiters;  // slots waiting for a connect slot (cancel = go)

    void note_error(const std::string& what) {
        if (first_error.empty()) first_error = what;
    }
    std::string body(long index) const {
        return R"({"model":")" + options.model + R"(","stream":true,"temperature":0,"max_tokens":)" +
               std::to_string(options.max_tokens) + R"(,"messages":[{"role":"user","content":"benchmark prompt )" +
               std::to_string(options.prompt_seed) + "-" + std::to_string(index) + R"("}]})";
    }
};

// One connection: streams one after another (keep-alive), a new connection after a close or an error.
net::awaitable<void> load_slot(Load& load, long fixed_index, std::chrono::microseconds delay) {
    auto executor = co_await net::this_coro::executor;
    boost::system::error_code ec;
    std::optional<beast::tcp_stream> stream;
    beast::flat_buffer buffer;
    net::steady_timer turn(executor);  // waits for a connect slot (frame-level: the g++ 12 rule of docs/gateway.md)
    if (delay.count() > 0) {
        turn.expires_after(delay);
        co_await turn.async_wait(net::redirect_error(net::use_awaitable, ec));
    }
    for (;;) {
        long index = fixed_index;
        if (index < 0) {
            if (load.next >= load.options.streams) break;
            index = load.next++;
        }
        if (!stream) {
            if (load.connecting >= load.options.connect_burst) {
                turn.expires_at(Clock::time_point::max());
                load.connect_waiters.push_back(&turn);
                co_await turn.async_wait(net::redirect_error(net::use_awaitable, ec));
            }
            ++load.connecting;
            stream.emplace(executor);
            stream->expires_after(std::chrono::seconds(30));
            co_await stream->async_connect(load.endpoint, net::redirect_error(net::use_awaitable, ec));
            --load.connecting;
            if (!load.connect_waiters.empty()) {
                load.connect_waiters.front()->cancel();
                load.connect_waiters.pop_front();
            }
            if (ec) {
                ++load.connect_failed;
                load.note_error("connect: " + ec.message());
                stream.reset();
                if (fixed_index >= 0) break;
                continue;
            }
            stream->socket().set_option(tcp::no_delay(true), ec);
            buffer.clear();
        }
        http::request<http::string_body> request{http::verb::post, load.options.path, 11};
        request.set(http::field::host, load.options.host);
        request.set(http::field::content_type, "application/json");
        request.set(http::field::accept, "text/event-stream");
        request.body() = load.body(index);
        request.prepare_payload();

        StreamResult result;
        bool done_seen = false, first = true;
        std::string line;  // the SSE line being assembled across chunk pieces
        auto last = Clock::now();
        const auto start = last;
        http::response_parser<http::string_body> parser;
        parser.body_limit(boost::none);
        auto scan = [&](std::uint64_t, std::string_view data, boost::system::error_code&) -> std::size_t {
            const auto now = Clock::now();
            if (!first) result.max_gap_ms = std::max(result.max_gap_ms, ms_between(last, now));  // after the first token
            last = now;
            for (char c : data) {
                if (c != '\n') { line.push_back(c); continue; }
                if (line.starts_with("data: ")) {
                    const std::string_view event(line);
                    if (event == "data: [DONE]") {
                        done_seen = true;
                    } else if (first) {
                        const auto at = event.find(R"("content":")");
                        if (at != std::string_view::npos && at + 11 < event.size() && event[at + 11] != '"') {
                            first = false;
                            result.ttft_ms = ms_between(start, now);
                            ++load.settled;
                            ++load.open;
                            if (load.on_progress) load.on_progress();
                        }
                    }
                }
                line.clear();
            }
            return data.size();
        };
        parser.on_chunk_body(scan);

        stream->expires_after(load.options.stall);
        co_await http::async_write(*stream, request, net::redirect_error(net::use_awaitable, ec));
        while (!ec && !parser.is_done()) {
            stream->expires_after(load.options.stall);
            co_await http::async_read_some(*stream, buffer, parser, net::redirect_error(net::use_awaitable, ec));
        }
        if (!first) --load.open;
        else ++load.settled;
        bool reuse = false;
        if (ec == beast::error::timeout) {
            ++load.stalled;
            load.note_error("stalled: no byte for " + std::to_string(load.options.stall.count()) + " ms");
        } else if (ec) {
            ++load.lost;
            load.note_error("stream: " + ec.message());
        } else if (parser.get().result_int() != 200) {
            ++load.non_200;
            load.note_error("HTTP " + std::to_string(parser.get().result_int()) + ": " + parser.get().body().substr(0, 200));
            reuse = parser.get().keep_alive();
        } else if (!done_seen || first) {
            ++load.lost;
            load.note_error(first ? "stream without content" : "stream ended without [DONE]");
        } else {
            result.e2e_ms = ms_between(start, Clock::now());
            load.ok.push_back(result);
            reuse = parser.get().keep_alive();
        }
        if (load.on_progress) load.on_progress();
        if (!reuse) {
            stream->socket().close(ec);
            stream.reset();
        }
        if (fixed_index >= 0) break;
    }
    if (stream) stream->socket().close(ec);
}

void print_quantiles(const char* name, std::vector<double> values) {
    std::sort(values.begin(), values.end());
    const std::span<const double> sorted(values);
    std::printf("\"%s\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f}", name, llmfast::detail::nearest_rank(sorted, 50),
                llmfast::detail::nearest_rank(sorted, 99), values.empty() ? 0.0 : values.back());
}

int run_load(const Args& args) {
    Load load;
    auto& o = load.options;
    o.port = static_cast<unsigned short>(args.num("--port", 0));
    o.model = args.get("--model", o.model);
    o.path = args.get("--path", o.path);
    o.concurrency = std::max(1L, args.num("--concurrency", 1));
    o.streams = std::max(1L, args.num("--streams", o.concurrency));
    o.max_tokens = args.num("--max-tokens", 64);
    o.prompt_seed = args.num("--prompt-seed", 1);
    o.connect_burst = std::max(1L, args.num("--connect-burst", o.connect_burst));
    o.spread = std::chrono::milliseconds(std::max(0L, args.num("--spread-ms", 0)));
    o.stall = std::chrono::milliseconds(args.num("--stall-ms", 10000));
    {
        std::stringstream list(args.get("--stages", ""));
        for (std::string item; std::getline(list, item, ',');)
            if (!item.empty()) o.stages.push_back(std::strtol(item.c_str(), nullptr, 10));
    }
    load.endpoint = tcp::endpoint(net::ip::make_address(o.host), o.port);
    net::io_context io(1);
    const double cpu_before = cpu_seconds_of_self();
    const auto wall_start = Clock::now();
    if (o.stages.empty()) {
        const long slots = std::min(o.concurrency, o.streams);
        for (long i = 0; i < slots; ++i) {
            const auto delay = std::chrono::duration_cast<std::chrono::microseconds>(o.spread) * i / slots;
            net::co_spawn(io, load_slot(load, -1, delay), net::detached);
        }
    } else {
        // Stages: open streams up to each count, report once all of them are flowing (or ended),
        // then wait for the driver's line on stdin before the next stage.
        o.streams = o.stages.back();
        std::size_t stage = 0;
        long started = 0;
        bool waiting_for_driver = false;
        net::posix::stream_descriptor input(io, ::dup(STDIN_FILENO));
        net::streambuf input_buffer;
        const auto start_stage = [&] {
            for (; started < o.stages[stage]; ++started) net::co_spawn(io, load_slot(load, started, std::chrono::microseconds(0)), net::detached);
        };
        std::function<void()> check;
        check = [&] {
            if (waiting_for_driver || stage >= o.stages.size() || load.settled < started) return;
            std::printf("STAGE %ld open=%ld settled=%ld\n", started, load.open, load.settled);
            std::fflush(stdout);
            waiting_for_driver = true;
            net::async_read_until(input, input_buffer, '\n', [&](boost::system::error_code, std::size_t n) {
                input_buffer.consume(n);
                waiting_for_driver = false;
                if (++stage < o.stages.size()) {
                    start_stage();
                } else {
                    input.close();
                }
            });
        };
        load.on_progress = [&] { check(); };
        start_stage();
        io.run();
    }
    if (o.stages.empty()) io.run();
    const double wall_s = std::chrono::duration<double>(Clock::now() - wall_start).count();
    std::vector<double> ttft, e2e, gaps;
    for (const auto& r : load.ok) {
        ttft.push_back(r.ttft_ms);
        e2e.push_back(r.e2e_ms);
        gaps.push_back(r.max_gap_ms);
    }
    std::printf("{\"streams\":%ld,\"ok\":%zu,\"lost\":%ld,\"stalled\":%ld,\"non_200\":%ld,\"connect_failed\":%ld,\"wall_s\":%.3f,\"cpu_s\":%.3f,",
                o.streams, load.ok.size(), load.lost, load.stalled, load.non_200, load.connect_failed, wall_s,
                cpu_seconds_of_self() - cpu_before);
    print_quantiles("ttft_ms", ttft);
    std::printf(",");
    print_quantiles("e2e_ms", e2e);
    std::printf(",");
    print_quantiles("max_gap_ms", gaps);
    std::string error;
    for (char c : load.first_error) error += (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) ? ' ' : c;
    std::printf(",\"first_error\":\"%s\"}\n", error.c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    Args args;
    for (int i = 2; i < argc; ++i) args.items.emplace_back(argv[i]);
    const std::string mode = argc > 1 ? argv[1] : "";
    try {
        if (mode == "upstream") return run_upstream(args);
        if (mode == "load") return run_load(args);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "gateway_bench_tool: %s\n", e.what());
        return 1;
    }
    std::fprintf(stderr, "usage: gateway_bench_tool upstream|load [flags] (see the comment at the top of the source)\n");
    return 2;
}
