// llmfast/detail/finite_vector.hpp — the vector indexes' shared input check.
//
// Internal: users must not depend on anything here.
#pragma once

#include <llmfast/version.hpp>
#include <llmfast/error.hpp>

#include <cmath>
#include <cstddef>
#include <span>

#include <fmt/format.h>

LLMFAST_BEGIN_NAMESPACE
namespace detail {

/// Throws Error(InvalidArgument) "<index>::<what>: ..." if `vector` holds a NaN or an infinity.
inline void require_finite(std::span<const float> vector, const char* index, const char* what) {
    for (std::size_t i = 0; i < vector.size(); ++i) {
        if (!std::isfinite(vector[i])) {
            throw Error(ErrorCode::InvalidArgument,
                        fmt::format("{}::{}: element {} of the vector is not finite ({})", index, what, i, vector[i]));
        }
    }
}

}  // namespace detail
LLMFAST_END_NAMESPACE
