// Package consume test: the semantic cache through the umbrella header of an installed llmfast.
#include <llmfast/llmfast.hpp>

#include <cstdio>
#include <filesystem>
#include <string>

int main() {
    llmfast::SemanticCache<llmfast::HashingEmbedder> cache(
        llmfast::HashingEmbedder{}, {.max_entries = 100, .semantic_tier = llmfast::SemanticTier::On, .similarity_threshold = 0.6F});
    int calls = 0;
    const auto first = cache.get_or_compute("什么是机器学习?", "model-a", [&] {
        ++calls;
        return std::string("Machine learning is ...");
    });
    const auto exact = cache.lookup("什么是机器学习？", "model-a");      // full-width '？' normalizes to '?'
    const auto similar = cache.lookup("机器学习是什么?", "model-a");     // a paraphrase: semantic tier
    const auto other_scope = cache.lookup("什么是机器学习?", "model-b");
    if (calls != 1 || first.match != llmfast::MatchKind::Computed || exact.match != llmfast::MatchKind::Exact ||
        similar.match != llmfast::MatchKind::Semantic || other_scope.hit()) {
        std::fprintf(stderr, "unexpected cache results\n");
        return 1;
    }
    const auto path = std::filesystem::temp_directory_path() / "llmfast_use_cache.snap";
    cache.save(path);
    llmfast::SemanticCache<llmfast::HashingEmbedder> restored(llmfast::HashingEmbedder{}, cache.options());
    restored.load(path);
    std::filesystem::remove(path);
    if (restored.lookup("什么是机器学习?", "model-a").response() != "Machine learning is ...") return 1;
    std::printf("cache ok: hit rate %.2f\n", cache.stats().hit_rate());
    return 0;
}
