// llmfast/version.hpp — the library's version, as macros and as constants.
//
// The three macros are the single source of truth: CMake reads them to set the project version,
// and the package configuration files are generated from it.
#pragma once

#define LLMFAST_VERSION_MAJOR 0
#define LLMFAST_VERSION_MINOR 1
#define LLMFAST_VERSION_PATCH 0

// Encoded as MAJOR * 10000 + MINOR * 100 + PATCH, for `#if LLMFAST_VERSION >= 100` style checks.
#define LLMFAST_VERSION (LLMFAST_VERSION_MAJOR * 10000 + LLMFAST_VERSION_MINOR * 100 + LLMFAST_VERSION_PATCH)

namespace llmfast {
inline constexpr int version_major = LLMFAST_VERSION_MAJOR;
inline constexpr int version_minor = LLMFAST_VERSION_MINOR;
inline constexpr int version_patch = LLMFAST_VERSION_PATCH;
}  // namespace llmfast
