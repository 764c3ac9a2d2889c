// llmfast/detail/cache_key.hpp — the semantic cache's exact-tier key: 128 bits of xxHash3 over
// (scope, normalized prompt), computed once per call.
//
// Internal: users must not depend on anything here.
#pragma once

#include <llmfast/version.hpp>
#include <llmfast/detail/cache_text.hpp>
#include <llmfast/detail/xxhash.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

LLMFAST_BEGIN_NAMESPACE
namespace detail {

struct CacheKey {
    std::uint64_t low = 0;
    std::uint64_t high = 0;
    friend bool operator==(const CacheKey&, const CacheKey&) = default;
};

struct CacheKeyHash {
    std::size_t operator()(const CacheKey& key) const noexcept { return static_cast<std::size_t>(key.low); }
};

/// 128-bit key of (scope, normalized prompt): the scope's hash seeds the prompt's. At 128 bits a
/// collision is not a practical concern, so entries need not keep the normalized prompt.
inline CacheKey make_cache_key(std::string_view scope, std::string_view normalized_prompt) noexcept {
    // Two independently seeded 64-bit hashes (XXH3_128bits trips g++ 12's -Wmaybe-uninitialized in
    // xxhash's AVX-512 path under -march=native).
    const std::uint64_t scope_hash = xxh3_64(scope, 0x53434F5045ULL);
    return {xxh3_64(normalized_prompt, scope_hash), xxh3_64(normalized_prompt, scope_hash ^ 0x9E3779B97F4A7C15ULL)};
}

/// The key as a shared tier stores it (llmfast/shared_tier.hpp): 32 lowercase hex digits, high
/// word first. One format for every replica, whatever its byte order.
inline std::string cache_key_hex(const CacheKey& key) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out(32, '0');
    for (int i = 0; i < 16; ++i) {
        out[static_cast<std::size_t>(15 - i)] = digits[(key.high >> (4 * i)) & 0xF];
        out[static_cast<std::size_t>(31 - i)] = digits[(key.low >> (4 * i)) & 0xF];
    }
    return out;
}

/// The inverse of cache_key_hex; false (and `out` unspecified) for anything but 32 hex digits.
inline bool parse_cache_key_hex(std::string_view hex, CacheKey& out) noexcept {
    if (hex.size() != 32) return false;
    std::uint64_t words[2] = {0, 0};
    for (std::size_t i = 0; i < 32; ++i) {
        const char c = hex[i];
        std::uint64_t v = 0;
        if (c >= '0' && c <= '9') {
            v = static_cast<std::uint64_t>(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            v = static_cast<std::uint64_t>(c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            v = static_cast<std::uint64_t>(c - 'A' + 10);
        } else {
            return false;
        }
        words[i / 16] = (words[i / 16] << 4) | v;
    }
    out.high = words[0];
    out.low = words[1];
    return true;
}

/// Normalizes `prompt` (into a per-thread buffer: no allocation once warm) and hashes it with
/// `scope`. Every public call of the cache computes this once and passes the key on.
inline CacheKey prompt_cache_key(std::string_view scope, std::string_view prompt) {
    thread_local std::string normalized;
    normalize_prompt(prompt, normalized);
    return make_cache_key(scope, normalized);
}

}  // namespace detail
LLMFAST_END_NAMESPACE
