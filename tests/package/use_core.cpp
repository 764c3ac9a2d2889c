// The shared pieces through the installed package: version, errors, UTF-8, token estimates.
#include <llmfast/llmfast.hpp>

#include <fmt/format.h>

int main() {
    static_assert(LLMFAST_VERSION_MAJOR >= 0);
    const llmfast::EstimatingTokenCounter counter;
    if (counter.count("hello world") != 2) return 1;
    if (!llmfast::utf8::is_valid("\xE4\xB8\xAD")) return 1;
    try {
        throw llmfast::Error(llmfast::ErrorCode::QueueFull, "full");
    } catch (const llmfast::Error& error) {
        if (error.code() != llmfast::ErrorCode::QueueFull) return 1;
    }
    fmt::print("llmfast {}.{}.{}: core ok\n", LLMFAST_VERSION_MAJOR, LLMFAST_VERSION_MINOR, LLMFAST_VERSION_PATCH);
    return 0;
}
