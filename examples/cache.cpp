// examples/cache.cpp — SemanticCache in front of a model: get_or_compute (exact repeats, single flight
// for concurrent identical misses: MatchKind::Coalesced), scopes, the semantic tier, stats and a
// snapshot round trip.
#include <llmfast/hashing_embedder.hpp>
#include <llmfast/semantic_cache.hpp>

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

std::atomic<int> model_calls{0};

std::string call_model(const std::string& prompt) {  // a stand-in for a slow LLM call
    ++model_calls;
    std::this_thread::sleep_for(50ms);
    return "answer(" + prompt + ")";
}

}  // namespace

int main() {
    // The scope says what must match for an answer to be reusable: model, system prompt, sampling.
    const std::string scope = "gpt-4o|system=v3|temperature=0";
    llmfast::SemanticCache<llmfast::HashingEmbedder> cache({}, {.max_entries = 10'000, .ttl = 1h});

    // 1. A miss runs the function; a repeat (normalized: case, spacing, full-width forms) is an exact hit.
    auto first = cache.get_or_compute("What is ML?", scope, [] { return call_model("What is ML?"); });
    auto again = cache.get_or_compute("  what is   ml?", scope, [] { return call_model("what is ml?"); });
    fmt::print("'What is ML?'     -> {} ({})\n", to_string(first.match), first.response());
    fmt::print("'  what is   ml?' -> {} (similarity {:.2f})\n", to_string(again.match), again.similarity);
    // Another scope never shares answers.
    auto other = cache.lookup("What is ML?", "llama-3-8b|system=v3|temperature=0");
    fmt::print("same prompt, other scope -> {}\n", to_string(other.match));

    // 2. Eight callers miss on the same prompt at once: the model runs once, the others wait for it.
    const int before = model_calls.load();
    std::vector<llmfast::MatchKind> kinds(8);
    {
        std::latch start(8);
        std::vector<std::jthread> callers;
        for (std::size_t i = 0; i < kinds.size(); ++i) {
            callers.emplace_back([&, i] {
                start.arrive_and_wait();
                kinds[i] = cache.get_or_compute("Explain KV caching", scope,
                                                [] { return call_model("Explain KV caching"); }).match;
            });
        }
    }
    int computed = 0, coalesced = 0, exact = 0;
    for (llmfast::MatchKind kind : kinds) {
        computed += kind == llmfast::MatchKind::Computed;
        coalesced += kind == llmfast::MatchKind::Coalesced;
        exact += kind == llmfast::MatchKind::Exact;
    }
    fmt::print("8 concurrent identical misses: model called {} time(s); {} Computed, {} Coalesced, {} Exact\n",
               model_calls.load() - before, computed, coalesced, exact);

    // 3. The semantic tier: off by default for the lexical HashingEmbedder (its paraphrase precision is
    // too low for a cache); opt in where prompts are templated, or plug in a sentence-embedding model.
    llmfast::SemanticCache<llmfast::HashingEmbedder> templated(
        {}, {.semantic_tier = llmfast::SemanticTier::On, .similarity_threshold = 0.6F});
    templated.insert("什么是机器学习?", scope, "机器学习是……");
    auto paraphrase = templated.lookup("机器学习是什么？", scope);
    auto numbers = templated.lookup("什么是机器学习? 用5个例子", scope);  // the hit guards veto mismatched numbers
    fmt::print("semantic tier on: '机器学习是什么？' -> {} (similarity {:.2f}); with a number -> {}\n",
               to_string(paraphrase.match), paraphrase.similarity, to_string(numbers.match));

    // 4. Counters, and a snapshot (save(path) / load(path) write and read the same bytes to a file).
    const llmfast::SemanticCacheStats s = cache.stats();
    fmt::print("stats: {} entries, {} bytes; {} exact hits, {} misses, {} computed, {} coalesced, hit rate {:.0f} %\n",
               s.entries, s.memory_bytes, s.exact_hits, s.misses, s.computations, s.coalesced, 100 * s.hit_rate());
    const std::string snapshot = cache.save_to_string();
    llmfast::SemanticCache<llmfast::HashingEmbedder> restored({}, {.max_entries = 10'000, .ttl = 1h});
    restored.load_from_string(snapshot);
    fmt::print("snapshot: {} bytes, restored {} entries; 'what is ML?' -> {}\n", snapshot.size(), restored.size(),
               to_string(restored.lookup("what is ML?", scope).match));
    return computed == 1 && again.match == llmfast::MatchKind::Exact ? 0 : 1;
}
