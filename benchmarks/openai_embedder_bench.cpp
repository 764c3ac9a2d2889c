// benchmarks/openai_embedder_bench.cpp — the HTTP embedder inside the semantic cache.
//
// 1. Batching. 64 threads each run cache lookups (misses on the exact tier, so every lookup embeds
//    its prompt) through SemanticCache<OpenAiEmbedder<CurlTransport>>, against a stub embedding server
//    on 127.0.0.1 that serves one request at a time (as a GPU-backed server does) and costs
//    5 ms + 0.1 ms per input. Ours: batching on (max_batch_size 64, max_wait 2 ms, 2 requests in
//    flight). Baseline: batching off, one request per lookup (64 in flight) — what a plain adapter
//    does. Interleaved rounds; figures: HTTP requests per lookup, lookups/s, lookup p50 / p99.
// 2. The adapter's own cost: one thread, lookups through the HTTP embedder (batching off) against an
//    instant stub, against the same lookups with the in-process HashingEmbedder; the stub's own
//    handling time (measured inside it) is reported too, so adapter = HTTP lookup - stub - in-process.
//
//   openai_embedder_bench [--quick] [--rounds N]
#include "bench_common.hpp"
#include "../tests/stub_http_server.hpp"

#include <llmfast/curl_transport.hpp>
#include <llmfast/hashing_embedder.hpp>
#include <llmfast/openai_embedder.hpp>
#include <llmfast/semantic_cache.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr std::size_t dim = 64;
using HttpEmbedder = llmfast::OpenAiEmbedder<llmfast::CurlTransport>;
using HttpCache = llmfast::SemanticCache<HttpEmbedder>;

const llmfast::HashingEmbedder& hashing() {
    static const llmfast::HashingEmbedder instance({.dimension = dim});
    return instance;
}

llmfast::testing::StubReply embed_reply(const llmfast::testing::StubRequest& request, bool costly) {
    std::vector<std::vector<float>> rows;
    for (const std::string& text : llmfast::testing::stub_inputs(request.body)) {
        std::vector<float> v(dim);
        hashing().embed(text, v);
        rows.push_back(std::move(v));
    }
    llmfast::testing::StubReply reply{.status = 200, .body = llmfast::testing::stub_embeddings_body(rows)};
    if (costly) reply.delay = std::chrono::microseconds(5000 + 100 * static_cast<long>(rows.size()));
    return reply;
}

std::string prompt(int round, int thread, int i) {
    return "round " + std::to_string(round) + " user " + std::to_string(thread) + " asks question number " + std::to_string(i) +
           " about their order";
}

struct RunResult {
    double lookups_per_s = 0;
    double requests_per_lookup = 0;
    std::vector<double> latencies_ms;
};

RunResult run(const llmfast::testing::StubHttpServer& server, bool batched, int threads, int per_thread, int round) {
    llmfast::OpenAiEmbedderOptions options{.base_url = server.base_url(), .model = "stub", .dimension = dim,
                                           .timeout = std::chrono::seconds(60), .attempt_timeout = std::chrono::seconds(60)};
    options.batching = batched;
    options.max_in_flight = batched ? 2 : static_cast<std::size_t>(threads);
    options.max_batch_size = 64;
    options.max_wait = std::chrono::milliseconds(2);
    HttpCache cache(HttpEmbedder(options), {.similarity_threshold = 0.95F});
    cache.insert("what is the status of my order", "scope", "It shipped.");  // so the scope has an index
    const std::uint64_t before = server.requests();
    std::vector<std::vector<double>> latencies(static_cast<std::size_t>(threads));
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            ready.fetch_add(1);
            while (!go.load()) std::this_thread::yield();
            for (int i = 0; i < per_thread; ++i) {
                const std::string text = prompt(round, t, i);
                const auto start = std::chrono::steady_clock::now();
                llmfast::bench::keep(cache.lookup(text, "scope"));
                latencies[static_cast<std::size_t>(t)].push_back(
                    std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
            }
        });
    }
    while (ready.load() < threads) std::this_thread::yield();
    const double start = llmfast::bench::now_seconds();
    go = true;
    for (auto& t : pool) t.join();
    const double elapsed = llmfast::bench::now_seconds() - start;
    RunResult result;
    const double lookups = static_cast<double>(threads * per_thread);
    result.lookups_per_s = lookups / elapsed;
    result.requests_per_lookup = static_cast<double>(server.requests() - before) / lookups;
    for (auto& l : latencies) result.latencies_ms.insert(result.latencies_ms.end(), l.begin(), l.end());
    const auto stats = cache.stats();
    if (stats.embedder_failures != 0) std::fprintf(stderr, "warning: %llu embedder failures\n", static_cast<unsigned long long>(stats.embedder_failures));
    return result;
}

}  // namespace

int main(int argc, char** argv) {
    const llmfast::bench::Options options = llmfast::bench::parse_options(argc, argv);
    const int threads = 64;
    const int per_thread = options.quick ? 2 : 6;
    const int rounds = options.quick ? 1 : std::min(options.rounds, 5);

    {
        llmfast::testing::StubHttpServer server([](const auto& r) { return embed_reply(r, true); }, /*serial=*/true);
        std::vector<double> ours_rate, base_rate, ours_req, base_req, ours_lat, base_lat;
        std::vector<double> ours_p50, base_p50, ours_p99, base_p99;
        for (int round = 0; round < rounds; ++round) {
            // Interleaved, the first side alternating; distinct prompts per run (no exact hits).
            RunResult a, b;
            if (round % 2 == 0) {
                a = run(server, true, threads, per_thread, 2 * round);
                b = run(server, false, threads, per_thread, 2 * round + 1);
            } else {
                b = run(server, false, threads, per_thread, 2 * round + 1);
                a = run(server, true, threads, per_thread, 2 * round);
            }
            ours_rate.push_back(a.lookups_per_s);
            base_rate.push_back(b.lookups_per_s);
            ours_req.push_back(a.requests_per_lookup);
            base_req.push_back(b.requests_per_lookup);
            ours_p50.push_back(llmfast::bench::percentile(a.latencies_ms, 50));
            base_p50.push_back(llmfast::bench::percentile(b.latencies_ms, 50));
            ours_p99.push_back(llmfast::bench::percentile(a.latencies_ms, 99));
            base_p99.push_back(llmfast::bench::percentile(b.latencies_ms, 99));
        }
        llmfast::bench::Table table("64 concurrent cache lookups, stub server: one request at a time, 5 ms + 0.1 ms/item "
                                    "(ours: batched; baseline: one request per lookup)");
        using llmfast::bench::Better;
        using llmfast::bench::median;
        table.add("HTTP requests per lookup", median(ours_req), median(base_req), "req", Better::Lower);
        table.add("lookups/s", median(ours_rate), median(base_rate), "1/s", Better::Higher);
        table.add("lookup p50", median(ours_p50), median(base_p50), "ms", Better::Lower);
        table.add("lookup p99", median(ours_p99), median(base_p99), "ms", Better::Lower);
        table.print();
    }

    {
        std::atomic<std::int64_t> stub_ns{0};
        llmfast::testing::StubHttpServer server([&](const auto& r) {
            const auto start = std::chrono::steady_clock::now();
            auto reply = embed_reply(r, false);
            stub_ns += std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count();
            return reply;
        });
        HttpCache http(HttpEmbedder({.base_url = server.base_url(), .model = "stub", .dimension = dim, .batching = false}),
                       {.similarity_threshold = 0.95F});
        llmfast::SemanticCache<llmfast::HashingEmbedder> local(llmfast::HashingEmbedder({.dimension = dim}),
                                                               {.semantic_tier = llmfast::SemanticTier::On, .similarity_threshold = 0.95F});
        http.insert("what is the status of my order", "scope", "It shipped.");
        local.insert("what is the status of my order", "scope", "It shipped.");
        const int n = options.quick ? 50 : 500;
        std::vector<double> http_us, local_us;
        const std::int64_t stub_before = stub_ns.load();
        for (int i = 0; i < n; ++i) {
            const std::string text = prompt(1000, 0, i);
            auto start = std::chrono::steady_clock::now();
            llmfast::bench::keep(http.lookup(text, "scope"));
            http_us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
            start = std::chrono::steady_clock::now();
            llmfast::bench::keep(local.lookup(text, "scope"));
            local_us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
        }
        const double stub_us = static_cast<double>(stub_ns.load() - stub_before) / 1000.0 / n;
        llmfast::bench::Table table("adapter cost: one thread, instant stub (ours: HTTP embedder lookup; baseline: in-process "
                                    "HashingEmbedder lookup)");
        table.add("lookup p50", llmfast::bench::percentile(http_us, 50), llmfast::bench::percentile(local_us, 50), "us",
                  llmfast::bench::Better::Lower);
        table.add_absolute("stub handling per request (mean)", stub_us, "us");
        table.add_absolute("adapter + HTTP + loopback per lookup (p50 - stub - in-process)",
                           llmfast::bench::percentile(http_us, 50) - stub_us - llmfast::bench::percentile(local_us, 50), "us");
        table.print();
    }
    return 0;
}
