// Package consume test: the optional hnswlib-backed index (needs hnswlib and llmfast::hnsw).
#include <llmfast/hnsw_index.hpp>
#include <llmfast/llmfast.hpp>

#include <cstdio>
#include <string>

int main() {
    llmfast::SemanticCache<llmfast::HashingEmbedder, llmfast::HnswIndex> cache(
        llmfast::HashingEmbedder{}, {.semantic_tier = llmfast::SemanticTier::On, .similarity_threshold = 0.6F},
        {.ef_search = 32});
    cache.insert("什么是机器学习?", "m", "ML");
    if (cache.lookup("机器学习是什么?", "m").match != llmfast::MatchKind::Semantic) return 1;
    std::printf("hnsw ok\n");
    return 0;
}
