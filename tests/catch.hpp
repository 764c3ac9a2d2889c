// tests/catch.hpp — the one place that knows which Catch2 is installed.
//
// Debian 12 ships Catch2 2.13 (one header, <catch2/catch.hpp>); vcpkg, Conan and newer distributions
// ship Catch2 v3 (split headers). Tests include this file and use only macros both versions have,
// plus LLMFAST_SKIP_TEST, which v2 lacks.
#pragma once

#if __has_include(<catch2/catch_all.hpp>)
#include <catch2/catch_all.hpp>
#define LLMFAST_CATCH_V3 1
#else
#include <catch2/catch.hpp>
#endif

#include <cstdio>
#include <cstdlib>

#ifndef LLMFAST_TEST_SKIP_CODE
#define LLMFAST_TEST_SKIP_CODE 77
#endif

// Marks the whole test program as skipped (CTest's SKIP_RETURN_CODE) with a reason on stderr.
// Use it for missing optional data only, never for a failure. Catch2 v2 has no SKIP, so the program
// exits with the skip code; with v3 the test case is skipped and the program still reports it.
#ifdef LLMFAST_CATCH_V3
#define LLMFAST_SKIP_TEST(reason) SKIP(reason)
#else
#define LLMFAST_SKIP_TEST(reason)                                 \
    do {                                                          \
        std::fprintf(stderr, "SKIPPED: %s\n", (reason));          \
        std::fflush(stderr);                                      \
        std::_Exit(LLMFAST_TEST_SKIP_CODE);                       \
    } while (false)
#endif
