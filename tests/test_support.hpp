// tests/test_support.hpp — small helpers shared by the test programs.
#pragma once

#include <llmfast/error.hpp>

#include <utility>

namespace llmfast::testing {

/// Runs `f` and returns the code of the `llmfast::Error` it throws, or `ErrorCode::Ok` if it returns.
/// Any other exception propagates (and fails the test).
template <class F>
ErrorCode error_code_of(F&& f) {
    try {
        std::forward<F>(f)();
    } catch (const Error& error) {
        return error.code();
    }
    return ErrorCode::Ok;
}

}  // namespace llmfast::testing
