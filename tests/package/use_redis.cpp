// The optional llmfast::redis component through the installed package: RedisTier compiles, links
// hiredis, and answers Unavailable (never throws) when no Redis listens; a SemanticCache with it
// attached goes on local-only.
#include <llmfast/hashing_embedder.hpp>
#include <llmfast/redis_tier.hpp>
#include <llmfast/semantic_cache.hpp>

#include <cstdio>
#include <memory>

int main() {
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    llmfast::RedisTier tier({.port = 1, .key_prefix = "package-test"});
    const llmfast::SharedLookup found = tier.lookup("scope", "key");
    if (found.status != llmfast::SharedStatus::Unavailable || tier.stats().unavailable != 1) {
        std::puts("RedisTier did not report Unavailable");
        return 1;
    }
    llmfast::SemanticCache<llmfast::HashingEmbedder, llmfast::FlatIndex, llmfast::WallClock, llmfast::LruPolicy, llmfast::RedisTier> cache;
    cache.attach_shared(std::make_shared<llmfast::RedisTier>(llmfast::RedisTierOptions{.port = 1, .key_prefix = "package-test"}));
    const bool missed = !cache.lookup("q", "scope");
    cache.insert("q", "scope", "a");
    if (!missed || cache.lookup("q", "scope").response() != "a" || cache.stats().shared_unavailable != 1) {
        std::puts("SemanticCache with an unreachable RedisTier did not go on local-only");
        return 1;
    }
    std::puts("llmfast::redis ok");
    return 0;
}
