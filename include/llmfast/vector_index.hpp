// llmfast/vector_index.hpp — the `VectorIndex` concept: what the semantic cache needs from a
// nearest-neighbour index, and `SearchHit`, what a search returns.
//
// The cache keeps one index per scope, builds each itself, and asks it for the entries most similar to
// a query vector. Similarity is the inner product, which is the cosine for the L2-normalized vectors
// the cache stores. Required of a model `I`:
//   - `typename I::Options` and a constructor `I(std::size_t dimension, const I::Options&)`;
//   - const `dimension()` and `size()`;
//   - `add(std::uint64_t id, std::span<const float>)` (inserts or replaces), `remove(id)` → bool
//     (whether it was present; should not throw: the cache removes under a lock and ignores a failure);
//   - const `search(std::span<const float> query, std::size_t k)` → `std::vector<SearchHit>`, up to k
//     hits, best (highest score) first. Concurrent const `search` calls must be safe (the cache holds
//     a reader/writer lock per scope; `add`/`remove` get exclusive access).
// Optional, detected through `vector_index_traits<I>`:
//   - const `bytes_per_vector()`: the bytes one more vector costs, for the cache's byte accounting
//     (without it the cache counts `dimension * sizeof(float)` plus an id).
//
//     static_assert(llmfast::VectorIndex<MyIndex>,
//                   "MyIndex needs Options, MyIndex(dim, options), dimension, size, add, remove, search");
//
// Models: `FlatIndex` (llmfast/flat_index.hpp: exact, float32 or int8) and `HnswIndex`
// (llmfast/hnsw_index.hpp: approximate, needs hnswlib).
//
// Thread-safety: a concept, nothing to synchronize; see each model.
//
// Errors: nothing here throws.
#pragma once

#include <llmfast/version.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

LLMFAST_BEGIN_NAMESPACE

/// One search result: the id given to `add` and its similarity (inner product) to the query.
struct SearchHit {
    std::uint64_t id = 0;
    float score = 0;
};

/// An index of vectors under caller-chosen 64-bit ids (see the header comment for the contract).
template <class I>
concept VectorIndex = requires(I& index, const I& const_index, std::uint64_t id, std::span<const float> vector,
                               std::size_t k) {
    typename I::Options;
    requires std::constructible_from<I, std::size_t, const typename I::Options&>;
    { const_index.dimension() } -> std::convertible_to<std::size_t>;
    { const_index.size() } -> std::convertible_to<std::size_t>;
    index.add(id, vector);
    { index.remove(id) } -> std::convertible_to<bool>;
    { const_index.search(vector, k) } -> std::same_as<std::vector<SearchHit>>;
};

/// What an index optionally provides, detected from its members.
template <class I>
struct vector_index_traits {
    /// const `bytes_per_vector()` returning something convertible to std::size_t.
    static constexpr bool has_bytes_per_vector = requires(const I& index) {
        { index.bytes_per_vector() } -> std::convertible_to<std::size_t>;
    };

    /// The bytes one more vector adds to `index`: its own figure when it has one, else the raw floats
    /// plus an id.
    static std::size_t bytes_per_vector(const I& index) noexcept {
        if constexpr (has_bytes_per_vector) {
            return static_cast<std::size_t>(index.bytes_per_vector());
        } else {
            return static_cast<std::size_t>(index.dimension()) * sizeof(float) + sizeof(std::uint64_t);
        }
    }
};

LLMFAST_END_NAMESPACE
