#include <llmfast/flat_index.hpp>

#include "catch.hpp"
#include "test_support.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace {

using llmfast::testing::random_unit;

float dot(const std::vector<float>& a, const std::vector<float>& b) {
    double sum = 0;
    for (std::size_t i = 0; i < a.size(); ++i) sum += static_cast<double>(a[i]) * static_cast<double>(b[i]);
    return static_cast<float>(sum);
}

struct NoOptionsIndex {
    std::size_t dimension() const { return 1; }
};

}  // namespace

TEST_CASE("FlatIndex: exact search matches brute force, add replaces, remove swaps", "[cache]") {
    for (const auto storage : {llmfast::FlatIndex::Storage::Float32, llmfast::FlatIndex::Storage::Int8}) {
        const std::size_t dim = 37;  // not a multiple of the SIMD width: exercises the zero padding
        llmfast::FlatIndex index(dim, {.storage = storage});
        CHECK(index.search(std::vector<float>(dim, 0.1F), 3).empty());
        std::mt19937_64 rng(42);
        std::vector<std::vector<float>> vectors;
        for (std::uint64_t id = 0; id < 200; ++id) {
            vectors.push_back(random_unit(rng, dim));
            index.add(id * 10, vectors.back());
        }
        CHECK(index.size() == 200);
        const float tolerance = storage == llmfast::FlatIndex::Storage::Float32 ? 1e-5F : 0.03F;
        for (int q = 0; q < 20; ++q) {
            const auto query = random_unit(rng, dim);
            std::vector<std::pair<float, std::uint64_t>> expected;
            for (std::uint64_t id = 0; id < 200; ++id) expected.emplace_back(dot(query, vectors[id]), id * 10);
            std::sort(expected.begin(), expected.end(), std::greater<>());
            const auto hits = index.search(query, 5);
            REQUIRE(hits.size() == 5);
            for (std::size_t i = 0; i < hits.size(); ++i) {
                CHECK(std::fabs(hits[i].score - dot(query, vectors[hits[i].id / 10])) < tolerance);
                if (i > 0) CHECK(hits[i - 1].score >= hits[i].score);
            }
            if (storage == llmfast::FlatIndex::Storage::Float32) {
                CHECK(hits[0].id == expected[0].second);
                CHECK(index.search(query, 1).at(0).id == expected[0].second);
            }
        }
        // Searching for a stored vector finds itself.
        CHECK(index.search(vectors[17], 1).at(0).id == 170);
        // Replace: id 170 now holds vector 3's direction.
        index.add(170, vectors[3]);
        CHECK(index.size() == 200);
        const auto replaced = index.search(vectors[3], 2);
        CHECK(((replaced[0].id == 30 && replaced[1].id == 170) || (replaced[0].id == 170 && replaced[1].id == 30)));
        // Remove from the middle and the end; the moved row stays searchable.
        CHECK(index.remove(50));
        CHECK_FALSE(index.remove(50));
        CHECK(index.remove(1990));
        CHECK(index.size() == 198);
        CHECK_FALSE(index.contains(50));
        CHECK(index.search(vectors[198], 1).at(0).id == 1980);
        for (const auto& hit : index.search(vectors[5], 198)) CHECK(hit.id != 50);
        CHECK(index.search(vectors[5], 1000).size() == 198);
        CHECK(index.memory_bytes() > 0);
    }
}

TEST_CASE("FlatIndex: Int8 storage is a quarter of Float32's rows", "[cache]") {
    llmfast::FlatIndex f32(384);
    llmfast::FlatIndex i8(384, {.storage = llmfast::FlatIndex::Storage::Int8});
    CHECK(i8.bytes_per_vector() < f32.bytes_per_vector() / 3);
    // The zero vector quantizes to zeros and scores 0.
    i8.add(1, std::vector<float>(384, 0.0F));
    std::vector<float> q(384, 0.0F);
    q[0] = 1;
    CHECK(i8.search(q, 1).at(0).score == 0.0F);
}

TEST_CASE("FlatIndex errors", "[cache]") {
    CHECK_THROWS_AS(llmfast::FlatIndex(0), llmfast::Error);
    llmfast::FlatIndex index(4);
    try {
        index.add(1, std::vector<float>(3));
        FAIL("expected InvalidArgument");
    } catch (const llmfast::Error& e) {
        CHECK(e.code() == llmfast::ErrorCode::InvalidArgument);
    }
    CHECK_THROWS_AS(index.search(std::vector<float>(5), 1), llmfast::Error);
    CHECK(index.size() == 0);
    CHECK(index.search(std::vector<float>(4, 1.0F), 0).empty());
}

// Issue 11 #10: a NaN query gave a made-up hit (score -inf) with k = 1 and none with k = 2, and an
// Int8 add converted NaN to int8 (undefined behaviour). Non-finite input is now an InvalidArgument.
TEST_CASE("FlatIndex rejects non-finite vectors in add and search, and stays unchanged", "[cache]") {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const float inf = std::numeric_limits<float>::infinity();
    for (const auto storage : {llmfast::FlatIndex::Storage::Float32, llmfast::FlatIndex::Storage::Int8}) {
        INFO((storage == llmfast::FlatIndex::Storage::Float32 ? "float32" : "int8"));
        llmfast::FlatIndex index(3, {.storage = storage});
        index.add(1, std::vector<float>{1, 0, 0});
        index.add(2, std::vector<float>{0, 1, 0});
        for (const float bad : {nan, inf, -inf}) {
            const std::vector<float> vector{bad, 0.5F, 0};
            CHECK(llmfast::testing::error_code_of([&] { index.add(3, vector); }) == llmfast::ErrorCode::InvalidArgument);
            CHECK(llmfast::testing::error_code_of([&] { index.add(1, vector); }) == llmfast::ErrorCode::InvalidArgument);
            for (const std::size_t k : {std::size_t{1}, std::size_t{2}, std::size_t{5}}) {
                CHECK(llmfast::testing::error_code_of([&] { (void)index.search(vector, k); }) ==
                      llmfast::ErrorCode::InvalidArgument);
            }
        }
        CHECK(index.size() == 2);
        CHECK_FALSE(index.contains(3));
        const auto hits = index.search(std::vector<float>{1, 0, 0}, 2);  // id 1 keeps its vector
        REQUIRE(hits.size() == 2);
        CHECK(hits[0].id == 1);
        CHECK(hits[0].score == Approx(1.0).margin(0.01));
        // Subnormal vectors are finite: accepted, and Int8 quantizes them without overflow.
        index.add(4, std::vector<float>{1e-40F, 0, 0});
        CHECK(index.search(std::vector<float>{1e-40F, 0, 0}, 3).size() >= 2);
    }
}

TEST_CASE("FlatIndex: k = 1 is the first hit of k = 2, also when every product overflows", "[cache]") {
    llmfast::FlatIndex index(2);
    index.add(7, std::vector<float>{3e38F, 3e38F});
    const std::vector<float> query{3e38F, -3e38F};  // inf + -inf = NaN: no score at all
    const auto one = index.search(query, 1);
    const auto two = index.search(query, 2);
    CHECK(two.empty());
    CHECK(one.size() == two.size());
    for (const auto& hit : one) CHECK(std::isfinite(hit.score));
}
