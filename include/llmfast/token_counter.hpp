// llmfast/token_counter.hpp — the `TokenCounter` concept: what the truncator, the compressor and the
// demo need of a tokenizer (how many tokens a text costs), and nothing else.
//
// Budgets in llmfast are in tokens, as a model bills and limits them. Models of the concept: the
// exact tiktoken-compatible `BpeTokenizer` (bpe_tokenizer.hpp), the vocabulary-free
// `EstimatingTokenCounter` (estimating_token_counter.hpp), or a wrapper around your model's own
// tokenizer:
//
//     struct MyCounter {
//         std::size_t count(std::string_view text) const { return my_model_tokenize(text).size(); }
//         static constexpr bool monotone = false;  // optional, see below
//     };
//     static_assert(llmfast::TokenCounter<MyCounter>);
//     llmfast::Truncator<MyCounter> truncator;
//
// Required: `count(std::string_view)` callable on a const object, returning something convertible to
// `std::size_t` (counters are shared between threads, so `count` must not mutate).
//
// Optional: `static constexpr bool monotone` (detected by `is_monotone_token_counter<C>`; absent
// means false). Declare it true only when a substring never costs more than the text it is taken
// from: `count(s) <= count(t)` for valid UTF-8 `t` and every substring `s` of it that starts and ends
// at code-point boundaries. The truncator then proves that a long text does not fit by counting a
// prefix of it instead of the whole text. A wrong claim makes the truncator cut a text that fits.
// `EstimatingTokenCounter` declares it; `BpeTokenizer` does not (BPE counts are not monotone).
//
// Thread-safety: the concept requires `count` to be a const call; a model should make it safe to call
// concurrently. Nothing here throws.
#pragma once

#include <llmfast/version.hpp>

#include <concepts>
#include <cstddef>
#include <string_view>

LLMFAST_BEGIN_NAMESPACE

/// Anything with a const `count(std::string_view)` convertible to `std::size_t` (see the header comment;
/// optional: `static constexpr bool monotone`).
template <class Counter>
concept TokenCounter = requires(const Counter& counter, std::string_view text) {
    { counter.count(text) } -> std::convertible_to<std::size_t>;
};

/// True when `Counter` declares `static constexpr bool monotone = true` (the optional part of
/// `TokenCounter`); false when it declares false or nothing.
template <class Counter>
inline constexpr bool is_monotone_token_counter = [] {
    if constexpr (requires { Counter::monotone; }) {
        return static_cast<bool>(Counter::monotone);
    } else {
        return false;
    }
}();

LLMFAST_END_NAMESPACE
