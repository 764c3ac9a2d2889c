// llmfast/detail/file_io.hpp — file reads and atomic file writes that fail only with Error(IoError).
//
// std::ifstream + istreambuf_iterator lets libstdc++'s basic_filebuf::underflow throw
// std::ios_base::failure when read(2) fails (a directory: EISDIR; /proc/self/mem: EIO), which the
// stream's exception mask does not catch. This reads with <cstdio> instead and reports every failure,
// with the path and the system's reason, as llmfast::Error(IoError). `AtomicFileWriter` writes a file
// through a temporary beside it (flushed to disk, then renamed over the target), so a crash leaves
// either the old file or the new one, never half of one.
//
// Internal: users must not depend on anything here.
#pragma once

#include <llmfast/version.hpp>
#include <llmfast/error.hpp>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <string_view>
#include <system_error>

#include <fmt/format.h>

#if __has_include(<unistd.h>)
#include <fcntl.h>
#include <unistd.h>
#define LLMFAST_FILE_IO_HAVE_FSYNC 1
#endif

LLMFAST_BEGIN_NAMESPACE
namespace detail {

/// `path` as text for an error message (never throws on a path that does not convert).
inline std::string path_for_message(const std::filesystem::path& path) {
    try {
        return path.string();
    } catch (...) {
        return "<unprintable path>";
    }
}

inline std::string errno_message(int error) { return std::generic_category().message(error != 0 ? error : EIO); }

/// The whole content of the file at `path`. Throws Error(IoError) "<what>: cannot open|read <path>: <reason>"
/// (a directory, a missing file, a read error part way through); std::bad_alloc for a file too large.
inline std::string read_whole_file(const std::filesystem::path& path, std::string_view what) {
    const std::string shown = path_for_message(path);
    errno = 0;
    std::FILE* file = std::fopen(shown.c_str(), "rb");
    if (file == nullptr) {
        const int error = errno;
        throw Error(ErrorCode::IoError, fmt::format("{}: cannot open {}: {}", what, shown, errno_message(error)));
    }
    std::string data;
    char buffer[1 << 16];
    for (;;) {
        errno = 0;
        const std::size_t got = std::fread(buffer, 1, sizeof(buffer), file);
        if (got > 0) {
            try {
                data.append(buffer, got);
            } catch (...) {
                std::fclose(file);
                throw;
            }
        }
        if (got < sizeof(buffer)) {
            if (std::ferror(file) != 0) {
                const int error = errno;
                std::fclose(file);
                throw Error(ErrorCode::IoError, fmt::format("{}: cannot read {}: {}", what, shown, errno_message(error)));
            }
            if (std::feof(file) != 0) break;
        }
    }
    std::fclose(file);
    return data;
}

/// Writes `path` atomically: `write` streams into a temporary file beside it, `commit` flushes it to
/// disk and renames it over `path`. Destroyed without a successful commit, it removes the temporary
/// and `path` is untouched. Errors are Error(IoError) "<what>: ..." naming the file.
class AtomicFileWriter {
public:
    AtomicFileWriter(const std::filesystem::path& path, std::string_view what) : path_(path), what_(what) {
        temp_ = path;
        temp_ += fmt::format(".tmp.{:x}", temp_suffix());
        temp_name_ = path_for_message(temp_);
        errno = 0;
        file_ = std::fopen(temp_name_.c_str(), "wb");
        if (file_ == nullptr) {
            const int error = errno;
            throw Error(ErrorCode::IoError, fmt::format("{}: cannot create {}: {}", what_, temp_name_, errno_message(error)));
        }
    }
    AtomicFileWriter(const AtomicFileWriter&) = delete;
    AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
    ~AtomicFileWriter() { abandon(); }

    void write(const void* data, std::size_t size) {
        if (size != 0 && std::fwrite(data, 1, size, file_) != size) fail("writing");
    }
    void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }

    /// Overwrites `size` bytes at `offset` (already written), then continues at the end.
    void patch(std::size_t offset, const void* data, std::size_t size) {
        if (std::fseek(file_, static_cast<long>(offset), SEEK_SET) != 0 || std::fwrite(data, 1, size, file_) != size ||
            std::fseek(file_, 0, SEEK_END) != 0) {
            fail("writing");
        }
    }

    /// Flushes (and fsyncs) the temporary file, closes it and renames it over the target.
    void commit() {
        bool ok = std::fflush(file_) == 0;
#ifdef LLMFAST_FILE_IO_HAVE_FSYNC
        ok = ok && ::fsync(::fileno(file_)) == 0;
#endif
        ok = std::fclose(file_) == 0 && ok;
        file_ = nullptr;
        if (!ok) fail("writing");
        std::error_code error;
        std::filesystem::rename(temp_, path_, error);
        if (error) {
            remove_temp();
            throw Error(ErrorCode::IoError,
                        fmt::format("{}: renaming to {} failed: {}", what_, path_for_message(path_), error.message()));
        }
        committed_ = true;
    }

private:
    [[noreturn]] void fail(std::string_view doing) {
        abandon();
        throw Error(ErrorCode::IoError, fmt::format("{}: {} {} failed", what_, doing, temp_name_));
    }

    void abandon() noexcept {
        if (committed_) return;
        if (file_ != nullptr) {
            std::fclose(file_);
            file_ = nullptr;
        }
        remove_temp();
    }

    void remove_temp() noexcept {
        std::error_code ignored;
        std::filesystem::remove(temp_, ignored);
    }

    // A temporary name concurrent writers of the same path do not share; never throws
    // (std::random_device may, when the system has no entropy source).
    std::uint64_t temp_suffix() const noexcept {
        std::uint64_t suffix = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
                               static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(this));
        try {
            suffix ^= static_cast<std::uint64_t>(std::random_device{}()) << 32U;
        } catch (...) {
        }
        return suffix;
    }

    std::filesystem::path path_;
    std::string what_;
    std::filesystem::path temp_;
    std::string temp_name_;
    std::FILE* file_ = nullptr;
    bool committed_ = false;
};

}  // namespace detail
LLMFAST_END_NAMESPACE
