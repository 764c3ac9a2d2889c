// llmfast/detail/cache_snapshot.hpp — the semantic cache's snapshot format: a streaming writer (the
// snapshot goes to its sink entry by entry, checksummed as it goes, never built whole in memory) and
// a validating parser.
//
// Layout, version 2 (little-endian as written by the host; the magic rejects other byte orders):
//   header:  "LLMFSNAP" | u32 version | u32 flags (0) | u64 payload size | u64 xxh3_64(payload, seed 0)
//   payload: str embedder identity | u64 dimension | i64 saved-at (ns) | u64 entry count |
//            entries: str scope | str prompt | str response | i64 created (ns) | i64 expires (ns) |
//                     u8 has_vector (0 or 1) | has_vector ? dimension x f32 (the entry's normalized
//                     embedding, every value finite) : nothing
//   str = u32 length + bytes.
// Version 1 is version 2 without the has_vector byte and vector (no entry has a vector); it is still
// read. The writer always writes version 2.
// The writer leaves the header's size and checksum zero, streams the payload, then patches them in
// (`Sink::patch`). Entries are in the order the cache gives them: least recently used first across the
// whole cache, so loading into a smaller cache evicts the least recently used. A future layout gets
// version 3 here; `parse_snapshot` names the version it cannot read.
//
// Internal: users must not depend on anything here.
#pragma once

#include <llmfast/version.hpp>
#include <llmfast/detail/xxhash.hpp>
#include <llmfast/error.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <fmt/format.h>

LLMFAST_BEGIN_NAMESPACE
namespace detail {

inline constexpr std::string_view snapshot_magic = "LLMFSNAP";
inline constexpr std::uint32_t snapshot_version = 2;      ///< what the writer writes
inline constexpr std::uint32_t snapshot_version_oldest = 1;  ///< the oldest the parser reads
inline constexpr std::size_t snapshot_size_offset = 8 + 4 + 4;
inline constexpr std::size_t snapshot_header_size = snapshot_size_offset + 8 + 8;

/// One entry as the snapshot stores it (views into the caller's or the snapshot's bytes).
struct SnapshotEntry {
    std::string_view scope, prompt, response;
    std::int64_t created = 0, expires = 0;
    /// The embedding's raw bytes (dimension floats, possibly unaligned: memcpy them out); empty when
    /// the entry has none.
    std::string_view vector_bytes{};
};

/// A sink that appends to a string.
struct StringSnapshotSink {
    std::string& out;
    void write(const void* data, std::size_t size) { out.append(static_cast<const char*>(data), size); }
    void patch(std::size_t offset, const void* data, std::size_t size) { std::memcpy(out.data() + offset, data, size); }
};

/// Streams one snapshot into `Sink` (`write(const void*, size_t)`, `patch(offset, const void*, size_t)`):
/// construct with the header fields, `add` exactly `count` entries, then `finish`.
template <class Sink>
class SnapshotWriter {
public:
    SnapshotWriter(Sink& sink, std::string_view identity, std::uint64_t dimension, std::int64_t saved_at,
                   std::uint64_t count)
        : sink_(sink), expected_(count), dimension_(dimension) {
        sink_.write(snapshot_magic.data(), snapshot_magic.size());
        raw(snapshot_version);
        raw(std::uint32_t{0});
        raw(std::uint64_t{0});  // payload size, patched by finish()
        raw(std::uint64_t{0});  // checksum, patched by finish()
        str(identity);
        pod(dimension);
        pod(saved_at);
        pod(count);
    }

    void add(const SnapshotEntry& entry) {
        str(entry.scope);
        str(entry.prompt);
        str(entry.response);
        pod(entry.created);
        pod(entry.expires);
        pod(static_cast<std::uint8_t>(entry.vector_bytes.empty() ? 0 : 1));
        if (!entry.vector_bytes.empty()) {
            if (entry.vector_bytes.size() != dimension_ * sizeof(float)) {
                throw Error(ErrorCode::InvalidArgument, fmt::format("SnapshotWriter::add: a vector of {} bytes, dimension {} needs {}",
                                                                    entry.vector_bytes.size(), dimension_, dimension_ * sizeof(float)));
            }
            bytes(entry.vector_bytes.data(), entry.vector_bytes.size());
        }
        ++written_;
    }

    void finish() {
        if (written_ != expected_) {
            throw Error(ErrorCode::InvalidArgument,
                        fmt::format("SnapshotWriter::finish: {} entries written, {} announced", written_, expected_));
        }
        const std::uint64_t fields[2] = {payload_bytes_, hash_.digest()};
        sink_.patch(snapshot_size_offset, fields, sizeof(fields));
    }

private:
    template <class T>
    void raw(T value) {
        static_assert(std::is_trivially_copyable_v<T>);
        sink_.write(&value, sizeof(T));
    }
    void bytes(const void* data, std::size_t size) {
        sink_.write(data, size);
        hash_.update(data, size);
        payload_bytes_ += size;
    }
    template <class T>
    void pod(T value) {
        static_assert(std::is_trivially_copyable_v<T>);
        bytes(&value, sizeof(T));
    }
    void str(std::string_view s) {
        pod(static_cast<std::uint32_t>(s.size()));
        bytes(s.data(), s.size());
    }

    Sink& sink_;
    Xxh3Stream hash_{0};
    std::uint64_t payload_bytes_ = 0;
    std::uint64_t expected_ = 0;
    std::uint64_t written_ = 0;
    std::uint64_t dimension_ = 0;
};

class SnapshotReader {
public:
    explicit SnapshotReader(std::string_view in) : in_(in) {}
    template <class T>
    T pod(const char* what) {
        static_assert(std::is_trivially_copyable_v<T>);
        need(sizeof(T), what);
        T value;
        std::memcpy(&value, in_.data() + pos_, sizeof(T));
        pos_ += sizeof(T);
        return value;
    }
    std::string_view str(const char* what) {
        const auto size = pod<std::uint32_t>(what);
        need(size, what);
        const std::string_view s = in_.substr(pos_, size);
        pos_ += size;
        return s;
    }
    std::string_view raw(std::size_t size, const char* what) {
        need(size, what);
        const std::string_view s = in_.substr(pos_, size);
        pos_ += size;
        return s;
    }
    [[nodiscard]] std::size_t remaining() const noexcept { return in_.size() - pos_; }

private:
    void need(std::size_t bytes, const char* what) const {
        if (in_.size() - pos_ < bytes) {
            throw Error(ErrorCode::CorruptSnapshot, fmt::format("snapshot truncated while reading {}", what));
        }
    }
    std::string_view in_;
    std::size_t pos_ = 0;
};

/// A parsed snapshot; the views point into the bytes given to `parse_snapshot`.
struct SnapshotContents {
    std::uint32_t version = 0;
    std::string_view identity;
    std::uint64_t dimension = 0;
    std::int64_t saved_at = 0;
    std::vector<SnapshotEntry> entries;
};

/// Validates all of `bytes` (magic, version, flags, size, checksum, every field) and returns its
/// content. Throws Error(CorruptSnapshot) saying what is wrong; touches nothing else.
inline SnapshotContents parse_snapshot(std::string_view bytes) {
    if (bytes.size() < snapshot_header_size) {
        throw Error(ErrorCode::CorruptSnapshot, fmt::format("snapshot too short ({} bytes)", bytes.size()));
    }
    if (bytes.substr(0, snapshot_magic.size()) != snapshot_magic) {
        throw Error(ErrorCode::CorruptSnapshot, "not an llmfast cache snapshot (bad magic)");
    }
    SnapshotReader header(bytes.substr(snapshot_magic.size(), snapshot_header_size - snapshot_magic.size()));
    const auto version = header.pod<std::uint32_t>("version");
    const auto flags = header.pod<std::uint32_t>("flags");
    const auto payload_size = header.pod<std::uint64_t>("payload size");
    const auto checksum = header.pod<std::uint64_t>("checksum");
    if (version < snapshot_version_oldest || version > snapshot_version) {
        throw Error(ErrorCode::CorruptSnapshot, fmt::format("snapshot version {} is not supported (this build reads versions {} to {})",
                                                            version, snapshot_version_oldest, snapshot_version));
    }
    if (flags != 0) throw Error(ErrorCode::CorruptSnapshot, fmt::format("snapshot has unknown flags ({:#x})", flags));
    const std::string_view payload = bytes.substr(snapshot_header_size);
    if (payload_size != payload.size()) {
        throw Error(ErrorCode::CorruptSnapshot,
                    fmt::format("snapshot payload is {} bytes, header says {} (truncated?)", payload.size(), payload_size));
    }
    if (xxh3_64(payload, 0) != checksum) throw Error(ErrorCode::CorruptSnapshot, "snapshot checksum mismatch");

    SnapshotReader in(payload);
    SnapshotContents contents;
    contents.version = version;
    contents.identity = in.str("embedder identity");
    contents.dimension = in.pod<std::uint64_t>("dimension");
    contents.saved_at = in.pod<std::int64_t>("saved-at time");
    const auto count = in.pod<std::uint64_t>("entry count");
    const std::size_t min_entry_bytes = 3 * 4 + 2 * 8 + (version >= 2 ? 1 : 0);
    if (count > in.remaining() / min_entry_bytes) {
        throw Error(ErrorCode::CorruptSnapshot, fmt::format("snapshot claims {} entries, too many for its size", count));
    }
    contents.entries.reserve(static_cast<std::size_t>(count));
    for (std::uint64_t i = 0; i < count; ++i) {
        SnapshotEntry e;
        e.scope = in.str("entry scope");
        e.prompt = in.str("entry prompt");
        e.response = in.str("entry response");
        e.created = in.pod<std::int64_t>("entry creation time");
        e.expires = in.pod<std::int64_t>("entry expiry time");
        if (e.expires <= e.created) {
            throw Error(ErrorCode::CorruptSnapshot,
                        fmt::format("snapshot entry {} expires ({}) before it was created ({})", i, e.expires, e.created));
        }
        if (version >= 2) {
            const auto has_vector = in.pod<std::uint8_t>("entry vector flag");
            if (has_vector > 1) throw Error(ErrorCode::CorruptSnapshot, fmt::format("snapshot entry {} has vector flag {}", i, has_vector));
            if (has_vector == 1) {
                if (contents.dimension == 0 || contents.dimension > in.remaining() / sizeof(float)) {
                    throw Error(ErrorCode::CorruptSnapshot, fmt::format("snapshot truncated in entry {}'s vector", i));
                }
                e.vector_bytes = in.raw(static_cast<std::size_t>(contents.dimension) * sizeof(float), "entry vector");
                for (std::size_t k = 0; k < e.vector_bytes.size(); k += sizeof(float)) {
                    float value;
                    std::memcpy(&value, e.vector_bytes.data() + k, sizeof(float));
                    if (!std::isfinite(value)) {
                        throw Error(ErrorCode::CorruptSnapshot, fmt::format("snapshot entry {}'s vector has a non-finite value", i));
                    }
                }
            }
        }
        contents.entries.push_back(e);
    }
    if (in.remaining() != 0) {
        throw Error(ErrorCode::CorruptSnapshot, fmt::format("snapshot has {} trailing bytes", in.remaining()));
    }
    return contents;
}

}  // namespace detail
LLMFAST_END_NAMESPACE
