// examples/batcher.cpp — DynamicBatcher: many callers' requests become batches for a backend that is
// cheaper per item in bulk. Future form, callback form (no shared state, no allocation per request),
// deadlines, priorities, a failing batch, and the counters.
#include <llmfast/batcher.hpp>

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <future>
#include <span>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

// The backend: 5 ms per call plus 0.1 ms per prompt, so a batch of 16 costs 6.6 ms instead of 80 ms.
struct Embedder {
    std::vector<std::size_t> operator()(std::span<std::string> prompts) const {
        std::this_thread::sleep_for(5ms + 100us * prompts.size());
        std::vector<std::size_t> lengths;
        for (const std::string& prompt : prompts) {
            if (prompt == "poison") throw std::runtime_error("the backend rejected the batch");
            lengths.push_back(prompt.size());  // "the response"
        }
        return lengths;
    }
};

}  // namespace

int main() {
    llmfast::DynamicBatcher<std::string, std::size_t, Embedder> batcher(
        Embedder{}, {.max_batch_size = 16, .max_wait = 2ms, .max_queue = 1024, .workers = 1, .priority_levels = 2});

    // Future form: 8 threads, 16 requests each.
    std::atomic<std::size_t> ok{0};
    {
        std::vector<std::jthread> clients;
        for (int c = 0; c < 8; ++c) {
            clients.emplace_back([&, c] {
                std::vector<std::future<std::size_t>> replies;
                for (int i = 0; i < 16; ++i)
                    replies.push_back(batcher.submit(fmt::format("client {} prompt {}", c, i), {.timeout = 2s}));
                for (auto& reply : replies)
                    if (reply.get() > 0) ++ok;
            });
        }
    }
    fmt::print("future form: {} of 128 requests answered\n", ok.load());

    // Callback form: runs exactly once on a worker thread, with the response or the error.
    std::atomic<int> callbacks{0};
    std::atomic<int> failed{0};
    for (int i = 0; i < 32; ++i) {
        batcher.submit(fmt::format("background job {}", i), {.priority = 0},
                       [&](llmfast::BatchResult<std::size_t>&& result) {
                           if (!result.ok()) ++failed;
                           ++callbacks;
                       });
    }
    // A high-priority request jumps the queue; a request whose deadline has passed is refused at once.
    auto urgent = batcher.submit("urgent", {.priority = 1});
    fmt::print("urgent: {} bytes\n", urgent.get());
    try {
        (void)batcher.submit("too late", {.timeout = -1ms});
    } catch (const llmfast::Error& e) {
        fmt::print("expired at submit: {}\n", e.what());
    }
    while (callbacks < 32) std::this_thread::sleep_for(1ms);  // let the background jobs finish first

    // A handler that throws fails its own batch only (here a batch of one), with HandlerFailed.
    auto poisoned = batcher.submit("poison");
    try {
        (void)poisoned.get();
    } catch (const llmfast::Error& e) {
        fmt::print("poisoned batch: {}\n", e.what());
    }

    batcher.close();  // drains everything queued, joins the workers; every request completed exactly once
    const llmfast::BatcherStats s = batcher.stats();
    fmt::print("callbacks: {} run, {} with an error\n", callbacks.load(), failed.load());
    fmt::print("stats: {} accepted, {} batches (mean {:.1f} requests), {} succeeded, {} failed, {} expired; "
               "queue wait p50 {:.2f} ms, p99 {:.2f} ms\n",
               s.accepted, s.batches, s.mean_batch_size(), s.succeeded, s.failed, s.expired,
               std::chrono::duration<double, std::milli>(s.queue_wait_p50).count(),
               std::chrono::duration<double, std::milli>(s.queue_wait_p99).count());
    return ok == 128 && callbacks == 32 ? 0 : 1;
}
