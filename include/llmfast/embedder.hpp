// llmfast/embedder.hpp — the `Embedder` concept: what the semantic cache needs from a model that turns
// text into vectors, what it uses when a model offers more, and the helpers that pick it up.
//
// Required: `dimension()` (the output width) and a const `embed(std::string_view, std::span<float>)`
// that writes `dimension()` floats. Optional, detected through `embedder_traits<E>`:
//   - `identity()` → a string naming the model and its parameters. Snapshots store it, so a cache
//     never loads vectors of another model (`embedder_identity` falls back to a name built from the
//     dimension alone, which cannot tell two models of one width apart — give yours an identity()).
//   - `embed_batch(std::span<const std::string_view>, std::span<float>)` (row-major output): a model
//     runs a batch faster than single calls; `embed_batch(embedder, texts, out)` uses it when present.
//   - `embed_async(std::string_view, F&& done)` calling `done(std::vector<float>&&, std::exception_ptr)`
//     exactly once, possibly later on another thread (a network embedder: llmfast/openai_embedder.hpp).
//     The cache's `lookup_async` then completes on that thread instead of blocking the caller.
//   - `static constexpr bool lexical`: true for an embedder that measures shared characters and words
//     rather than meaning (HashingEmbedder). `SemanticTier::Auto` keeps the cache's semantic tier off
//     for a lexical embedder; absent means false.
//
//     struct MyEmbedder {
//         std::size_t dimension() const { return 768; }
//         void embed(std::string_view text, std::span<float> out) const;  // your model
//         std::string identity() const { return "my-model/3"; }           // optional
//     };
//     static_assert(llmfast::Embedder<MyEmbedder>);
//
// Thread-safety: the cache calls `embed` concurrently on a const object, from the calling threads and
// outside its locks; a model of Embedder must allow that.
//
// Errors: `embed_batch` throws Error(InvalidArgument) when `out.size() != texts.size() * dimension()`;
// what the embedder itself throws propagates. The built-in model is `HashingEmbedder`
// (llmfast/hashing_embedder.hpp).
#pragma once

#include <llmfast/version.hpp>
#include <llmfast/error.hpp>

#include <concepts>
#include <cstddef>
#include <exception>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

LLMFAST_BEGIN_NAMESPACE

/// A type that maps text to a vector of `dimension()` floats, written into a caller-provided span.
/// See the header comment for the optional members (`identity`, `embed_batch`, `lexical`).
template <class E>
concept Embedder = requires(const E& embedder, std::string_view text, std::span<float> out) {
    { embedder.dimension() } -> std::convertible_to<std::size_t>;
    embedder.embed(text, out);
};

/// What an embedder optionally provides, detected from its members. Specialize it for a type you
/// cannot change (e.g. to declare a third-party embedder lexical).
template <class E>
struct embedder_traits {
    /// `identity()` returning something convertible to std::string.
    static constexpr bool has_identity = requires(const E& e) {
        { e.identity() } -> std::convertible_to<std::string>;
    };
    /// `embed_batch(std::span<const std::string_view>, std::span<float>)`.
    static constexpr bool has_embed_batch = requires(const E& e, std::span<const std::string_view> texts,
                                                     std::span<float> out) { e.embed_batch(texts, out); };
    /// `embed_async(std::string_view, F)` with F callable as `(std::vector<float>&&, std::exception_ptr)`.
    static constexpr bool has_embed_async = requires(const E& e, std::string_view text) {
        e.embed_async(text, [](std::vector<float>&&, std::exception_ptr) noexcept {});
    };
    /// `E::lexical`: similarity of characters and words, not of meaning (false when absent).
    static constexpr bool lexical = [] {
        if constexpr (requires { { E::lexical } -> std::convertible_to<bool>; }) {
            return static_cast<bool>(E::lexical);
        } else {
            return false;
        }
    }();
};

/// The embedder's identity for snapshots: `identity()` if it has one, otherwise a name built from its
/// dimension alone.
template <class E>
    requires Embedder<E>
std::string embedder_identity(const E& embedder) {
    if constexpr (embedder_traits<E>::has_identity) {
        return std::string(embedder.identity());
    } else {
        return fmt::format("anonymous-embedder dim={}", static_cast<std::size_t>(embedder.dimension()));
    }
}

/// Embeds `texts` into `out` (row i = texts[i], `dimension()` floats each), through the embedder's own
/// `embed_batch` when it has one, else one by one.
template <class E>
    requires Embedder<E>
void embed_batch(const E& embedder, std::span<const std::string_view> texts, std::span<float> out) {
    const auto dim = static_cast<std::size_t>(embedder.dimension());
    if (out.size() != texts.size() * dim) {
        throw Error(ErrorCode::InvalidArgument,
                    fmt::format("embed_batch: output has {} floats, texts.size() * dimension() is {}", out.size(),
                                texts.size() * dim));
    }
    if constexpr (embedder_traits<E>::has_embed_batch) {
        embedder.embed_batch(texts, out);
    } else {
        for (std::size_t i = 0; i < texts.size(); ++i) embedder.embed(texts[i], out.subspan(i * dim, dim));
    }
}

LLMFAST_END_NAMESPACE
