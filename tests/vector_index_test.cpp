#include <llmfast/vector_index.hpp>
#include <llmfast/flat_index.hpp>

#include "catch.hpp"
#include "test_support.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace {

struct NoOptionsIndex {
    std::size_t dimension() const { return 1; }
};

}  // namespace

TEST_CASE("VectorIndex concept", "[cache]") {
    STATIC_REQUIRE(llmfast::VectorIndex<llmfast::FlatIndex>);
    STATIC_REQUIRE_FALSE(llmfast::VectorIndex<NoOptionsIndex>);
}


TEST_CASE("vector_index_traits: bytes_per_vector is optional", "[cache]") {
    STATIC_REQUIRE(llmfast::vector_index_traits<llmfast::FlatIndex>::has_bytes_per_vector);
    const llmfast::FlatIndex index(8);
    CHECK(llmfast::vector_index_traits<llmfast::FlatIndex>::bytes_per_vector(index) == index.bytes_per_vector());
}
