// llmfast/detail/xxhash.hpp — xxHash, used header-only.
//
// XXH_INLINE_ALL makes every XXH function static inline in this translation unit, so the library
// needs no libxxhash at link time and cannot clash with another copy an application links.
// Only XXH3 64-bit is used (exact-tier keys, embedder feature hashing, snapshot checksums; the
// snapshot writer hashes as it streams, through `Xxh3Stream`).
#pragma once

#include <llmfast/version.hpp>

#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#endif
// g++ 12 with -march=native on an AVX-512 machine warns, inside its own avx512fintrin.h, that the
// `_mm512_undefined_epi32()` placeholders xxHash's AVX-512 kernel passes are uninitialized. They are
// undefined by design; silence that false positive here rather than in every user's build.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <xxhash.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include <cstddef>
#include <cstdint>
#include <string_view>

LLMFAST_BEGIN_NAMESPACE
namespace detail {

inline std::uint64_t xxh3_64(std::string_view bytes, std::uint64_t seed = 0) noexcept {
    return XXH3_64bits_withSeed(bytes.data(), bytes.size(), seed);
}

inline std::uint64_t xxh3_64(const void* data, std::size_t size, std::uint64_t seed = 0) noexcept {
    return XXH3_64bits_withSeed(data, size, seed);
}

/// XXH3 64-bit over data fed in pieces: `digest()` equals `xxh3_64` of their concatenation.
class Xxh3Stream {
public:
    explicit Xxh3Stream(std::uint64_t seed = 0) noexcept { (void)XXH3_64bits_reset_withSeed(&state_, seed); }
    Xxh3Stream(const Xxh3Stream&) = delete;
    Xxh3Stream& operator=(const Xxh3Stream&) = delete;

    void update(const void* data, std::size_t size) noexcept { (void)XXH3_64bits_update(&state_, data, size); }
    void update(std::string_view bytes) noexcept { update(bytes.data(), bytes.size()); }
    [[nodiscard]] std::uint64_t digest() const noexcept { return XXH3_64bits_digest(&state_); }

private:
    XXH3_state_t state_;  // XXH_INLINE_ALL exposes its definition (64-byte aligned, ~600 bytes)
};

}  // namespace detail
LLMFAST_END_NAMESPACE
