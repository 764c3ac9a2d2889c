// llmfast/detail/bytes.hpp — unaligned loads of machine words from byte strings (memcpy, which
// compilers turn into one load). Internal: not part of the API.
#pragma once

#include <llmfast/version.hpp>

#include <cstdint>
#include <cstring>

LLMFAST_BEGIN_NAMESPACE
namespace detail {

/// Loads 8 bytes from `p` (any alignment), in the machine's byte order.
inline std::uint64_t load64(const char* p) noexcept {
    std::uint64_t word;
    std::memcpy(&word, p, sizeof word);
    return word;
}

/// Loads 4 bytes from `p` (any alignment), in the machine's byte order.
inline std::uint32_t load32(const char* p) noexcept {
    std::uint32_t word;
    std::memcpy(&word, p, sizeof word);
    return word;
}

}  // namespace detail
LLMFAST_END_NAMESPACE
