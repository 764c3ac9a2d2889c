// The optional llmfast::redis component through the installed package: RedisTier compiles, links
// hiredis, and answers Unavailable (never throws) when no Redis listens.
#include <llmfast/redis_tier.hpp>

#include <cstdio>

int main() {
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    llmfast::RedisTier tier({.port = 1, .key_prefix = "package-test"});
    const llmfast::SharedLookup found = tier.lookup("scope", "key");
    if (found.status != llmfast::SharedStatus::Unavailable || tier.stats().unavailable != 1) {
        std::puts("RedisTier did not report Unavailable");
        return 1;
    }
    std::puts("llmfast::redis ok");
    return 0;
}
