// Package consume test: the installed llmfast batches requests through the umbrella header.
#include <llmfast/llmfast.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <span>
#include <string>
#include <vector>

int main() {
    llmfast::DynamicBatcher<std::string, std::size_t> batcher(
        [](std::span<std::string> prompts) {
            std::vector<std::size_t> lengths;
            for (const std::string& p : prompts) lengths.push_back(p.size());
            return lengths;
        },
        {.max_batch_size = 8, .max_wait = std::chrono::milliseconds(1)});
    std::future<std::size_t> a = batcher.submit("hello");
    std::promise<std::size_t> b;
    batcher.submit("hi", {.priority = 1}, [&](llmfast::BatchResult<std::size_t>&& r) {
        b.set_value(r.ok() ? r.value() : 0);
    });
    const bool ok = a.get() == 5 && b.get_future().get() == 2;
    batcher.close();
    const llmfast::BatcherStats m = batcher.stats();
    return ok && m.succeeded == 2 && m.queue_depth == 0 ? 0 : 1;
}
