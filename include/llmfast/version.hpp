// llmfast/version.hpp — the library's version, as macros and as constants.
//
// The three macros are the single source of truth: CMake reads them to set the project version,
// and the package configuration files are generated from it.
//
// Every llmfast header includes this one first: it also defines the namespace macros. All of the
// library lives in an inline namespace named after the ABI version (`llmfast::v0_2`), as fmt does, so
// two llmfast versions linked into one program get distinct symbols instead of silently violating the
// one-definition rule; users keep writing `llmfast::X`.
#pragma once

#define LLMFAST_VERSION_MAJOR 0
#define LLMFAST_VERSION_MINOR 2
#define LLMFAST_VERSION_PATCH 0

// Encoded as MAJOR * 10000 + MINOR * 100 + PATCH, for `#if LLMFAST_VERSION >= 100` style checks.
#define LLMFAST_VERSION (LLMFAST_VERSION_MAJOR * 10000 + LLMFAST_VERSION_MINOR * 100 + LLMFAST_VERSION_PATCH)

// The inline namespace changes whenever the ABI may change: every minor version while at 0.x.
#define LLMFAST_ABI_NAMESPACE v0_2
#define LLMFAST_BEGIN_NAMESPACE \
    namespace llmfast {         \
    inline namespace LLMFAST_ABI_NAMESPACE {
#define LLMFAST_END_NAMESPACE \
    }                         \
    }

LLMFAST_BEGIN_NAMESPACE
inline constexpr int version_major = LLMFAST_VERSION_MAJOR;
inline constexpr int version_minor = LLMFAST_VERSION_MINOR;
inline constexpr int version_patch = LLMFAST_VERSION_PATCH;
LLMFAST_END_NAMESPACE
