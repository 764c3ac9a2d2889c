// examples/overview.cpp — README's opening example, compiled: a truncator, a cache and a batcher in
// front of a model, called from many threads. The "model" below is a stand-in for your backend.
#include <llmfast/llmfast.hpp>

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace {
std::atomic<int> model_batches{0};
}  // namespace

// Your model server: one call answers a whole batch of prompts (here: a stand-in that takes 10 ms).
std::vector<std::string> generate_batch(std::span<std::string> prompts) {
    ++model_batches;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::vector<std::string> answers;
    for (const std::string& prompt : prompts) answers.push_back("answer to: " + prompt.substr(0, 24));
    return answers;
}

// ---- README: begin ----
llmfast::Truncator truncator;                                              // fits a token budget
llmfast::SemanticCache<llmfast::HashingEmbedder> cache({}, {.ttl = std::chrono::hours(1)});  // repeats
llmfast::DynamicBatcher<std::string, std::string> batcher(generate_batch,  // many callers -> one batch
    {.max_batch_size = 32, .max_wait = std::chrono::milliseconds(5)});

std::string answer(const std::string& prompt) {                          // call from any thread
    std::string fitted = truncator.truncate(prompt, 4000, llmfast::TruncateStrategy::Tail).text;
    return cache.get_or_compute(fitted, "my-model|t=0", [&] { return batcher.submit(fitted).get(); }).response();
}
// ---- README: end ----

int main() {
    // 16 concurrent clients ask 4 questions each; 24 of the 64 are asked by two clients at once.
    std::vector<std::jthread> clients;
    std::atomic<std::size_t> answered{0};
    for (int client = 0; client < 16; ++client) {
        clients.emplace_back([client, &answered] {
            for (int i = 0; i < 4; ++i) {
                const int question = (client * 4 + i) % 40;
                std::string prompt = fmt::format("What is the capital of country number {}?", question);
                if (client % 2 == 1) prompt = "  " + prompt + "  ";  // the cache normalizes whitespace
                if (!answer(prompt).empty()) ++answered;
            }
        });
    }
    clients.clear();  // joins
    // Later, the same questions again (differently spaced): answered from the cache, no model call.
    for (int question = 0; question < 40; ++question)
        if (!answer(fmt::format("What is the capital of  country number {}?", question)).empty()) ++answered;

    const llmfast::SemanticCacheStats cache_stats = cache.stats();
    const llmfast::BatcherStats batcher_stats = batcher.stats();
    fmt::print("{} questions answered; the model ran {} prompts in {} batches (mean batch {:.1f})\n",
               answered.load(), batcher_stats.dispatched, model_batches.load(), batcher_stats.mean_batch_size());
    fmt::print("cache: {} exact hits, {} computed, {} coalesced (waited for an identical call), hit rate {:.0f} %\n",
               cache_stats.exact_hits, cache_stats.computations, cache_stats.coalesced, 100 * cache_stats.hit_rate());
    // Each distinct question reached the model once, whatever the timing (a late duplicate is an exact hit).
    return answered.load() == 104 && cache_stats.computations == 40 ? 0 : 1;
}
