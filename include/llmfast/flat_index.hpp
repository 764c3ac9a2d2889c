// llmfast/flat_index.hpp — `FlatIndex`, exact nearest-neighbour search; the semantic cache's default
// `VectorIndex` (llmfast/vector_index.hpp).
//
// FlatIndex keeps all vectors in one contiguous array and scans it with loops the compiler
// vectorizes: exact, and faster than a graph index up to ~100k vectors per scope. For millions use
// `HnswIndex` (llmfast/hnsw_index.hpp, needs hnswlib). Similarity is the inner product.
//
//     llmfast::FlatIndex index(384);                      // or FlatIndex(384, {.storage = Int8})
//     index.add(42, vector);                              // ids are the caller's; add replaces
//     for (auto hit : index.search(query, 3)) use(hit.id, hit.score);
//     index.remove(42);                                   // O(1): swaps with the last row
//
// Storage: Float32 (4 bytes per dimension) or Int8 (symmetric scalar quantization with a per-vector
// scale: a quarter of the memory; scores are approximate, see the cache benchmark for the recall it
// costs).
//
// Thread-safety: not synchronized. Concurrent `search` calls on a const index are safe; `add` and
// `remove` need exclusive access (SemanticCache holds a reader/writer lock per scope).
//
// Errors: the constructor throws Error(InvalidArgument) for dimension 0; `add` and `search` throw
// Error(InvalidArgument) when the vector's size differs from `dimension()` or when it holds a NaN or
// an infinity (no score can be computed from one; the index is then unchanged).
#pragma once

#include <llmfast/version.hpp>
#include <llmfast/detail/finite_vector.hpp>
#include <llmfast/error.hpp>
#include <llmfast/vector_index.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

LLMFAST_BEGIN_NAMESPACE

namespace detail {

/// Keeps the best `k` hits seen so far, sorted best first. `k` is small (the cache asks for a
/// handful), so insertion into a short sorted array beats a heap.
class TopK {
public:
    explicit TopK(std::size_t k) : k_(k) { hits_.reserve(k); }

    [[nodiscard]] float threshold() const noexcept {
        return hits_.size() < k_ ? -std::numeric_limits<float>::infinity() : hits_.back().score;
    }
    void push(std::uint64_t id, float score) {
        if (k_ == 0) return;
        if (hits_.size() == k_) {
            if (!(score > hits_.back().score)) return;
            hits_.pop_back();
        }
        auto at = std::upper_bound(hits_.begin(), hits_.end(), score,
                                   [](float s, const SearchHit& hit) { return s > hit.score; });
        hits_.insert(at, SearchHit{id, score});
    }
    std::vector<SearchHit> take() && { return std::move(hits_); }

private:
    std::size_t k_;
    std::vector<SearchHit> hits_;
};

// Rows are padded to a multiple of `lanes` floats with zeros, so the kernels below have no tail loop
// and the compiler turns the fixed-width inner loop into SIMD (16 independent accumulators also keep
// the float adds from forming one serial dependency chain).
inline constexpr std::size_t lanes = 16;

/// Sums `lanes` partial sums as a tree (log2(lanes) dependent adds instead of `lanes`).
template <class T>
inline T reduce_lanes(T* acc) noexcept {
    for (std::size_t width = lanes / 2; width >= 1; width /= 2) {
        for (std::size_t j = 0; j < width; ++j) acc[j] += acc[j + width];
    }
    return acc[0];
}

/// Float32 rows are stored in blocks of `block_rows` rows, dimension-major inside a block
/// (element d of the block's row j at [d * block_rows + j]). Scoring a block then needs no horizontal
/// sums: each query element is broadcast against 16 rows at once, and four accumulator sets give four
/// independent chains. (A row-major dot product spends as long reducing 16 lanes as multiplying at
/// dimension 384.)
inline constexpr std::size_t block_rows = 16;

inline void block_scores(const float* q, const float* block, std::size_t dim4, float* scores) noexcept {
    float a0[block_rows] = {}, a1[block_rows] = {}, a2[block_rows] = {}, a3[block_rows] = {};
    for (std::size_t d = 0; d < dim4; d += 4) {
        const float* p = block + d * block_rows;
        const float q0 = q[d], q1 = q[d + 1], q2 = q[d + 2], q3 = q[d + 3];
        for (std::size_t j = 0; j < block_rows; ++j) {
            a0[j] += q0 * p[j];
            a1[j] += q1 * p[block_rows + j];
            a2[j] += q2 * p[2 * block_rows + j];
            a3[j] += q3 * p[3 * block_rows + j];
        }
    }
    for (std::size_t j = 0; j < block_rows; ++j) scores[j] = (a0[j] + a1[j]) + (a2[j] + a3[j]);
}

inline std::int32_t dot_i8(const std::int8_t* a, const std::int8_t* b, std::size_t padded_dim) noexcept {
    std::int32_t acc[lanes] = {};
    for (std::size_t i = 0; i < padded_dim; i += lanes) {
        for (std::size_t j = 0; j < lanes; ++j) acc[j] += static_cast<std::int32_t>(a[i + j]) * static_cast<std::int32_t>(b[i + j]);
    }
    return reduce_lanes(acc);
}

/// Symmetric int8 quantization: scale = max|x| / 127; returns the scale (0 for the zero vector).
/// `in` must be finite (the index checks). The factor is a double: 127 / max|x| overflows a float
/// for subnormal input, and inf * 0 = NaN must never reach the int8 conversion.
inline float quantize_i8(std::span<const float> in, std::int8_t* out) noexcept {
    float max_abs = 0;
    for (const float x : in) max_abs = std::max(max_abs, std::fabs(x));
    if (!(max_abs > 0) || !std::isfinite(max_abs)) {
        std::memset(out, 0, in.size());
        return 0;
    }
    const double inv = 127.0 / static_cast<double>(max_abs);
    for (std::size_t i = 0; i < in.size(); ++i) {
        const double q = std::nearbyint(static_cast<double>(in[i]) * inv);
        out[i] = static_cast<std::int8_t>(std::clamp(q, -127.0, 127.0));
    }
    return max_abs / 127.0F;
}

}  // namespace detail
struct FlatIndexOptions {
    enum class Storage : std::uint8_t {
        Float32,  ///< exact scores
        Int8,     ///< scalar-quantized: 1 byte per dimension plus a scale per vector
    };
    Storage storage = Storage::Float32;
    std::size_t initial_capacity = 0;  ///< vectors to reserve room for up front
};

/// Exact inner-product search over contiguous rows. O(n * dimension) per search, O(1) add (amortized)
/// and remove (the last row moves into the hole). Thread-safety: concurrent const `search` calls are
/// safe; `add`, `remove` and `reserve` need exclusive access.
class FlatIndex {
public:
    using Options = FlatIndexOptions;
    using Storage = FlatIndexOptions::Storage;

    explicit FlatIndex(std::size_t dimension, const Options& options = {})
        : dimension_(dimension), padded_(round_up(dimension)), dim4_((dimension + 3) / 4 * 4), options_(options) {
        if (dimension == 0) throw Error(ErrorCode::InvalidArgument, fmt::format("FlatIndex::FlatIndex: dimension must be > 0 (got {})", dimension));
        reserve(options.initial_capacity);
    }

    [[nodiscard]] std::size_t dimension() const noexcept { return dimension_; }
    [[nodiscard]] std::size_t size() const noexcept { return ids_.size(); }
    [[nodiscard]] Storage storage() const noexcept { return options_.storage; }

    void reserve(std::size_t vectors) {
        ids_.reserve(vectors);
        slots_.reserve(vectors);
        if (options_.storage == Storage::Float32) {
            f32_.reserve((vectors + detail::block_rows - 1) / detail::block_rows * detail::block_rows * dim4_);
        } else {
            i8_.reserve(vectors * padded_);
            scales_.reserve(vectors);
        }
    }

    /// Adds `vector` under `id`, replacing the vector already stored under that id. Throws
    /// Error(InvalidArgument) for a wrong size or a non-finite element (the index is then unchanged).
    void add(std::uint64_t id, std::span<const float> vector) {
        check_size(vector.size(), "add");
        detail::require_finite(vector, "FlatIndex", "add");
        std::size_t row = 0;
        if (const auto it = slots_.find(id); it != slots_.end()) {
            row = it->second;
        } else {
            row = ids_.size();
            // Grow every array before recording the id, so an allocation failure leaves the index as it was.
            if (options_.storage == Storage::Float32) {
                if (row % detail::block_rows == 0) f32_.resize(f32_.size() + detail::block_rows * dim4_, 0.0F);
            } else {
                i8_.resize(i8_.size() + padded_, 0);
                scales_.push_back(0);
            }
            try {
                ids_.push_back(id);
                slots_.emplace(id, row);
            } catch (...) {
                shrink_to(row);
                throw;
            }
        }
        if (options_.storage == Storage::Float32) {
            float* lane = f32_lane(row);
            for (std::size_t d = 0; d < dimension_; ++d) lane[d * detail::block_rows] = vector[d];
        } else {
            scales_[row] = detail::quantize_i8(vector, i8_.data() + row * padded_);
        }
    }

    /// Removes `id`; false if it was not present.
    bool remove(std::uint64_t id) {
        const auto it = slots_.find(id);
        if (it == slots_.end()) return false;
        const std::size_t row = it->second;
        const std::size_t last = ids_.size() - 1;
        slots_.erase(it);
        if (row != last) {
            ids_[row] = ids_[last];
            slots_[ids_[row]] = row;
            if (options_.storage == Storage::Float32) {
                const float* from = f32_lane(last);
                float* to = f32_lane(row);
                for (std::size_t d = 0; d < dim4_; ++d) to[d * detail::block_rows] = from[d * detail::block_rows];
            } else {
                std::copy_n(i8_.begin() + static_cast<std::ptrdiff_t>(last * padded_), padded_,
                            i8_.begin() + static_cast<std::ptrdiff_t>(row * padded_));
                scales_[row] = scales_[last];
            }
        }
        ids_.pop_back();
        shrink_to(last);
        return true;
    }

    [[nodiscard]] bool contains(std::uint64_t id) const { return slots_.contains(id); }

    /// Up to `k` ids with the highest inner product with `query`, best first. Throws
    /// Error(InvalidArgument) for a wrong size or a non-finite element.
    [[nodiscard]] std::vector<SearchHit> search(std::span<const float> query, std::size_t k) const {
        check_size(query.size(), "search");
        detail::require_finite(query, "FlatIndex", "search");
        const std::size_t n = ids_.size();
        if (k == 0 || n == 0) return {};
        if (options_.storage == Storage::Float32) {
            std::vector<float> padded_query(dim4_, 0.0F);
            std::copy(query.begin(), query.end(), padded_query.begin());
            const float* q = padded_query.data();
            const std::size_t block_size = detail::block_rows * dim4_;
            float scores[detail::block_rows];
            if (k == 1) {  // the cache's common case: one pass, no bookkeeping
                // As TopK: a score that is not above -inf (an overflowed or NaN product) is no hit.
                std::size_t best = n;
                float best_score = -std::numeric_limits<float>::infinity();
                for (std::size_t first = 0; first < n; first += detail::block_rows) {
                    detail::block_scores(q, f32_.data() + first / detail::block_rows * block_size, dim4_, scores);
                    const std::size_t valid = std::min(detail::block_rows, n - first);  // the last block may be partial
                    for (std::size_t j = 0; j < valid; ++j) {
                        if (scores[j] > best_score) {
                            best_score = scores[j];
                            best = first + j;
                        }
                    }
                }
                if (best == n) return {};
                return {SearchHit{ids_[best], best_score}};
            }
            detail::TopK top(k);
            for (std::size_t first = 0; first < n; first += detail::block_rows) {
                detail::block_scores(q, f32_.data() + first / detail::block_rows * block_size, dim4_, scores);
                const std::size_t valid = std::min(detail::block_rows, n - first);
                for (std::size_t j = 0; j < valid; ++j) {
                    if (scores[j] > top.threshold()) top.push(ids_[first + j], scores[j]);
                }
            }
            return std::move(top).take();
        }
        std::vector<std::int8_t> quantized(padded_, 0);
        const float query_scale = detail::quantize_i8(query, quantized.data());
        detail::TopK top(k);
        const std::int8_t* rows = i8_.data();
        for (std::size_t row = 0; row < n; ++row) {
            const std::int32_t dot = detail::dot_i8(quantized.data(), rows + row * padded_, padded_);
            const float score = static_cast<float>(dot) * query_scale * scales_[row];
            if (score > top.threshold()) top.push(ids_[row], score);
        }
        return std::move(top).take();
    }

    /// Bytes held by the index (vectors, ids, the id map), for the cache's memory statistics.
    [[nodiscard]] std::size_t memory_bytes() const noexcept {
        return f32_.capacity() * sizeof(float) + i8_.capacity() + scales_.capacity() * sizeof(float) +
               ids_.capacity() * sizeof(std::uint64_t) +
               slots_.size() * (sizeof(std::uint64_t) + sizeof(std::size_t) + 2 * sizeof(void*)) +
               slots_.bucket_count() * sizeof(void*);
    }

    /// Bytes one more vector adds (its row, id and map node), for per-entry accounting.
    [[nodiscard]] std::size_t bytes_per_vector() const noexcept {
        const std::size_t row = options_.storage == Storage::Float32 ? dim4_ * sizeof(float) : padded_ + sizeof(float);
        return row + sizeof(std::uint64_t) + (sizeof(std::uint64_t) + sizeof(std::size_t) + 3 * sizeof(void*));
    }

private:
    static constexpr std::size_t round_up(std::size_t dimension) noexcept {
        return (dimension + detail::lanes - 1) / detail::lanes * detail::lanes;
    }

    void check_size(std::size_t size, const char* what) const {
        if (size != dimension_) {
            throw Error(ErrorCode::InvalidArgument,
                        fmt::format("FlatIndex::{}: vector has {} floats, index dimension is {}", what, size, dimension_));
        }
    }

    // Element 0 of `row`'s lane in its block; element d is at [d * block_rows].
    float* f32_lane(std::size_t row) noexcept {
        return f32_.data() + row / detail::block_rows * detail::block_rows * dim4_ + row % detail::block_rows;
    }

    void shrink_to(std::size_t rows) {
        if (options_.storage == Storage::Float32) {
            f32_.resize((rows + detail::block_rows - 1) / detail::block_rows * detail::block_rows * dim4_);
        } else {
            i8_.resize(rows * padded_);
            scales_.resize(rows);
        }
    }

    std::size_t dimension_;
    std::size_t padded_;  // Int8 row stride (a multiple of detail::lanes)
    std::size_t dim4_;    // Float32 dimension rounded up to 4 (the block kernel's step)
    Options options_;
    std::vector<float> f32_;
    std::vector<std::int8_t> i8_;
    std::vector<float> scales_;
    std::vector<std::uint64_t> ids_;                        // row -> id
    std::unordered_map<std::uint64_t, std::size_t> slots_;  // id -> row
};

static_assert(VectorIndex<FlatIndex>);

LLMFAST_END_NAMESPACE
