// llmfast/detail/shared_entry_codec.hpp — the binary value a shared tier stores for one `SharedEntry`
// (llmfast/shared_tier.hpp): versioned, length-checked, checksummed, and canonical (a value that
// decodes re-encodes to the same bytes), so a store's bytes are either exactly an entry or not ours.
//
// Layout, version 1, every integer little-endian whatever the host (replicas on different machines
// share one store), floats as their IEEE-754 bits:
//   "LFSE" | u8 version (1) | u8 flags (0) | u16 reserved (0) | u32 body size |
//   body:    str scope | str key | str prompt | str response | u32 n + n × u32 chunk boundaries |
//            u32 dimension + dimension × f32 embedding | str embedder identity | i64 created (ns) |
//            i64 ttl (ns) |
//   u64 xxh3_64(everything before it, seed 0)
//   str = u32 length + bytes.
// Decoding rejects (never UB, never an exception): another magic (a foreign value under our key
// name), another version, non-zero flags or reserved bits, a size that disagrees, a checksum
// mismatch, trailing bytes, chunk boundaries not strictly increasing or past the response, a
// non-finite embedding value, a ttl <= 0. A future layout gets version 2 here.
//
// Internal: users must not depend on anything here.
#pragma once

#include <llmfast/version.hpp>
#include <llmfast/detail/xxhash.hpp>
#include <llmfast/error.hpp>
#include <llmfast/shared_tier.hpp>

#include <bit>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include <fmt/format.h>

LLMFAST_BEGIN_NAMESPACE
namespace detail {

inline constexpr std::string_view shared_entry_magic = "LFSE";
inline constexpr std::uint8_t shared_entry_version = 1;
inline constexpr std::size_t shared_entry_header_size = 4 + 1 + 1 + 2 + 4;
inline constexpr std::size_t shared_entry_trailer_size = 8;

enum class SharedDecodeStatus : std::uint8_t {
    Ok,
    Foreign,             ///< not an llmfast shared entry at all (bad magic, too short)
    UnsupportedVersion,  ///< ours, of another layout version
    Corrupt,             ///< ours, but damaged or not canonical
};

struct SharedDecodeResult {
    SharedDecodeStatus status = SharedDecodeStatus::Foreign;
    const char* reason = "";  ///< a static string saying what was wrong
    SharedEntry entry;        ///< when Ok
    [[nodiscard]] bool ok() const noexcept { return status == SharedDecodeStatus::Ok; }
};

inline void shared_put_u32(std::string& out, std::uint32_t v) {
    const char bytes[4] = {static_cast<char>(v & 0xFFU), static_cast<char>((v >> 8) & 0xFFU),
                           static_cast<char>((v >> 16) & 0xFFU), static_cast<char>((v >> 24) & 0xFFU)};
    out.append(bytes, 4);
}
inline void shared_put_u64(std::string& out, std::uint64_t v) {
    shared_put_u32(out, static_cast<std::uint32_t>(v & 0xFFFFFFFFULL));
    shared_put_u32(out, static_cast<std::uint32_t>(v >> 32));
}
inline std::uint32_t shared_get_u32(const char* p) noexcept {
    const auto b = [&](int i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(p[i])); };
    return b(0) | (b(1) << 8) | (b(2) << 16) | (b(3) << 24);
}
inline std::uint64_t shared_get_u64(const char* p) noexcept {
    return static_cast<std::uint64_t>(shared_get_u32(p)) | (static_cast<std::uint64_t>(shared_get_u32(p + 4)) << 32);
}

inline std::uint32_t shared_checked_size(std::size_t size, const char* what) {
    if (size > std::numeric_limits<std::uint32_t>::max()) {
        throw Error(ErrorCode::InvalidArgument, fmt::format("encode_shared_entry: {} too large ({} items)", what, size));
    }
    return static_cast<std::uint32_t>(size);
}

/// The value for `entry`. Throws Error(InvalidArgument) for an entry decoding would reject (a field
/// over 4 GiB, ttl <= 0, chunk boundaries not strictly increasing or past the response, a non-finite
/// embedding value), so nothing written is ever unreadable; std::bad_alloc.
inline std::string encode_shared_entry(const SharedEntry& entry) {
    if (entry.ttl <= std::chrono::nanoseconds::zero()) {
        throw Error(ErrorCode::InvalidArgument, fmt::format("encode_shared_entry: ttl must be > 0 (got {} ns)", entry.ttl.count()));
    }
    std::uint64_t previous = 0;
    for (std::size_t i = 0; i < entry.chunk_boundaries.size(); ++i) {
        const std::uint32_t b = entry.chunk_boundaries[i];
        if ((i > 0 && b <= previous) || b > entry.response.size()) {
            throw Error(ErrorCode::InvalidArgument,
                        fmt::format("encode_shared_entry: chunk boundary {} ({}) is not increasing or past the response ({} bytes)", i,
                                    b, entry.response.size()));
        }
        previous = b;
    }
    for (const float x : entry.embedding) {
        if (!std::isfinite(x)) throw Error(ErrorCode::InvalidArgument, "encode_shared_entry: the embedding has a non-finite value");
    }
    std::string out;
    out.reserve(shared_entry_header_size + 7 * 4 + 16 + shared_entry_trailer_size + entry.scope.size() + entry.key.size() +
                entry.prompt.size() + entry.response.size() + 4 * entry.chunk_boundaries.size() + 4 * entry.embedding.size() +
                entry.embedder.size());
    out.append(shared_entry_magic);
    out.push_back(static_cast<char>(shared_entry_version));
    out.push_back('\0');          // flags
    out.append(2, '\0');          // reserved
    shared_put_u32(out, 0);       // body size, patched below
    const auto str = [&](std::string_view s, const char* what) {
        shared_put_u32(out, shared_checked_size(s.size(), what));
        out.append(s);
    };
    str(entry.scope, "scope");
    str(entry.key, "key");
    str(entry.prompt, "prompt");
    str(entry.response, "response");
    shared_put_u32(out, shared_checked_size(entry.chunk_boundaries.size(), "chunk boundaries"));
    for (const std::uint32_t b : entry.chunk_boundaries) shared_put_u32(out, b);
    shared_put_u32(out, shared_checked_size(entry.embedding.size(), "embedding"));
    for (const float x : entry.embedding) shared_put_u32(out, std::bit_cast<std::uint32_t>(x));
    str(entry.embedder, "embedder identity");
    shared_put_u64(out, static_cast<std::uint64_t>(entry.created_ns));
    shared_put_u64(out, static_cast<std::uint64_t>(entry.ttl.count()));
    const std::uint32_t body = shared_checked_size(out.size() - shared_entry_header_size, "entry");
    for (int i = 0; i < 4; ++i) out[8 + static_cast<std::size_t>(i)] = static_cast<char>((body >> (8 * i)) & 0xFFU);
    shared_put_u64(out, xxh3_64(out, 0));
    return out;
}

/// Parses `bytes`; never throws except std::bad_alloc. Anything but a canonical version-1 value is
/// rejected with a reason.
inline SharedDecodeResult decode_shared_entry(std::string_view bytes) {
    SharedDecodeResult result;
    const auto reject = [&](SharedDecodeStatus status, const char* reason) {
        result.status = status;
        result.reason = reason;
        result.entry = {};
        return result;
    };
    if (bytes.size() < shared_entry_header_size + shared_entry_trailer_size || bytes.substr(0, 4) != shared_entry_magic) {
        return reject(SharedDecodeStatus::Foreign, "not an llmfast shared entry (bad magic or too short)");
    }
    if (static_cast<std::uint8_t>(bytes[4]) != shared_entry_version) {
        return reject(SharedDecodeStatus::UnsupportedVersion, "another version of the shared entry layout");
    }
    if (bytes[5] != '\0' || bytes[6] != '\0' || bytes[7] != '\0') return reject(SharedDecodeStatus::Corrupt, "unknown flags or reserved bits");
    const std::uint64_t body = shared_get_u32(bytes.data() + 8);
    if (body != bytes.size() - shared_entry_header_size - shared_entry_trailer_size) {
        return reject(SharedDecodeStatus::Corrupt, "body size disagrees with the value's length");
    }
    const std::size_t checked = bytes.size() - shared_entry_trailer_size;
    if (xxh3_64(bytes.substr(0, checked), 0) != shared_get_u64(bytes.data() + checked)) {
        return reject(SharedDecodeStatus::Corrupt, "checksum mismatch");
    }

    std::size_t pos = shared_entry_header_size;
    const std::size_t end = checked;
    bool short_read = false;
    const auto need = [&](std::uint64_t n) {
        if (short_read || end - pos < n) short_read = true;
        return !short_read;
    };
    const auto u32 = [&]() -> std::uint32_t {
        if (!need(4)) return 0;
        const std::uint32_t v = shared_get_u32(bytes.data() + pos);
        pos += 4;
        return v;
    };
    const auto u64 = [&]() -> std::uint64_t {
        if (!need(8)) return 0;
        const std::uint64_t v = shared_get_u64(bytes.data() + pos);
        pos += 8;
        return v;
    };
    const auto str = [&](std::string& out) {
        const std::uint32_t n = u32();
        if (!need(n)) return;
        out.assign(bytes.data() + pos, n);
        pos += n;
    };
    SharedEntry& e = result.entry;
    str(e.scope);
    str(e.key);
    str(e.prompt);
    str(e.response);
    const std::uint32_t chunks = u32();
    if (!need(std::uint64_t{4} * chunks)) return reject(SharedDecodeStatus::Corrupt, "truncated");
    e.chunk_boundaries.reserve(chunks);
    for (std::uint32_t i = 0; i < chunks; ++i) {
        const std::uint32_t b = u32();
        if ((i > 0 && b <= e.chunk_boundaries.back()) || b > e.response.size()) {
            return reject(SharedDecodeStatus::Corrupt, "chunk boundaries not increasing or past the response");
        }
        e.chunk_boundaries.push_back(b);
    }
    const std::uint32_t dimension = u32();
    if (!need(std::uint64_t{4} * dimension)) return reject(SharedDecodeStatus::Corrupt, "truncated");
    e.embedding.reserve(dimension);
    for (std::uint32_t i = 0; i < dimension; ++i) {
        const float x = std::bit_cast<float>(u32());
        if (!std::isfinite(x)) return reject(SharedDecodeStatus::Corrupt, "non-finite embedding value");
        e.embedding.push_back(x);
    }
    str(e.embedder);
    e.created_ns = static_cast<std::int64_t>(u64());
    e.ttl = std::chrono::nanoseconds(static_cast<std::int64_t>(u64()));
    if (short_read) return reject(SharedDecodeStatus::Corrupt, "truncated");
    if (pos != end) return reject(SharedDecodeStatus::Corrupt, "trailing bytes");
    if (e.ttl <= std::chrono::nanoseconds::zero()) return reject(SharedDecodeStatus::Corrupt, "ttl <= 0");
    result.status = SharedDecodeStatus::Ok;
    result.reason = "";
    return result;
}

}  // namespace detail
LLMFAST_END_NAMESPACE
