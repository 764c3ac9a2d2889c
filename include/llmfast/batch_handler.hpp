// llmfast/batch_handler.hpp — the `BatchHandler` concept: what DynamicBatcher (llmfast/batcher.hpp)
// needs from the backend it batches for.
//
// Required: `H&` is callable with a `std::span<Req>` (the batch, in submission order within a
// priority level; the handler may move from the requests) and returns something convertible to
// `std::vector<Resp>`, one response per request, in the same order. Optional: nothing. Returning a
// wrong number of responses or throwing is allowed: the batcher completes that batch's requests with
// HandlerFailed.
//
//     struct Echo {
//         std::vector<std::string> operator()(std::span<std::string> batch) const {
//             return {batch.begin(), batch.end()};
//         }
//     };
//     static_assert(llmfast::BatchHandler<Echo, std::string, std::string>);
//
// Thread-safety: with `BatcherOptions::workers > 1` the batcher calls one handler object from
// several threads at once; a handler that keeps state must synchronise it.
//
// Errors: nothing here throws (a concept).
#pragma once

#include <llmfast/version.hpp>

#include <concepts>
#include <span>
#include <type_traits>
#include <vector>

LLMFAST_BEGIN_NAMESPACE

/// A model of BatchHandler<H, Req, Resp> is called with a batch of requests (a span it may move from)
/// and returns one response per request, in the same order.
template <class H, class Req, class Resp>
concept BatchHandler = std::invocable<H&, std::span<Req>> &&
                       std::convertible_to<std::invoke_result_t<H&, std::span<Req>>, std::vector<Resp>>;

LLMFAST_END_NAMESPACE
