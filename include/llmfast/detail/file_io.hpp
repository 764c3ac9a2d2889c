// llmfast/detail/file_io.hpp — whole-file reads that fail only with Error(IoError).
//
// std::ifstream + istreambuf_iterator lets libstdc++'s basic_filebuf::underflow throw
// std::ios_base::failure when read(2) fails (a directory: EISDIR; /proc/self/mem: EIO), which the
// stream's exception mask does not catch. This reads with <cstdio> instead and reports every failure,
// with the path and the system's reason, as llmfast::Error(IoError).
#pragma once

#include <llmfast/version.hpp>

#include <llmfast/error.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

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

/// The whole content of the file at `path`. Throws Error(IoError) "<what>: cannot open|read <path>: <reason>"
/// (a directory, a missing file, a read error part way through); std::bad_alloc for a file too large.
inline std::string read_whole_file(const std::filesystem::path& path, std::string_view what) {
    const std::string shown = path_for_message(path);
    errno = 0;
    std::FILE* file = std::fopen(shown.c_str(), "rb");
    if (file == nullptr) {
        const int error = errno;
        throw Error(ErrorCode::IoError, std::string(what) + ": cannot open " + shown + ": " +
                                            std::generic_category().message(error != 0 ? error : EIO));
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
                throw Error(ErrorCode::IoError, std::string(what) + ": cannot read " + shown + ": " +
                                                    std::generic_category().message(error != 0 ? error : EIO));
            }
            if (std::feof(file) != 0) break;
        }
    }
    std::fclose(file);
    return data;
}

}  // namespace detail
LLMFAST_END_NAMESPACE
