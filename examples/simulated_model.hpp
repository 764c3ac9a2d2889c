// examples/simulated_model.hpp — the latency model of the simulated LLM backend, in one place for the
// programs that simulate a model server: llmfast-gateway's built-in backend (examples/gateway/) and,
// later, the demo (examples/demo.cpp, whose Backend has the same parameters and sources).
//
// A call costs: `overhead_ms` (HTTP round trip, tokenization, scheduling: latency, not GPU time), then
// prefill `prefill_ms_per_token` x prompt tokens (compute-bound: a batch pays for the sum of its
// prompts), then one decode step per output token; a step for k unfinished sequences of a batch
// costs (decode_ms_per_token - batch_item_ms) + batch_item_ms x k. Defaults: decode 13 ms per token
// (Llama-3.1-8B-Instruct BF16 on one A100 40GB under vLLM), prefill 0.1 ms per token (llama.cpp's
// pp512 of LLaMA-7B F16 on an RTX 4090, about 11,000 tokens/s), overhead 30 ms. `time_scale` > 1
// runs the model that many times faster than real time (tests use it).
//
// Thread-safety: `LatencyModel` is a value type; `simulated_answer` is pure.
//
//     examples::LatencyModel model{.time_scale = 10};
//     auto first = model.real(model.first_token_ms(prompt_tokens));  // wait this long, then token 1
//     auto step = model.real(model.step_ms(1));                      // then this long per token
//
// Errors: `LatencyModel::validate` throws std::invalid_argument naming the field.
#pragma once

#include <chrono>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace examples {

struct LatencyModel {
    double overhead_ms = 30.0;
    double prefill_ms_per_token = 0.1;
    double decode_ms_per_token = 13.0;
    double batch_item_ms = 0.4;
    double time_scale = 1.0;  ///< simulated time runs this many times faster than real time

    void validate() const {
        if (!(overhead_ms >= 0)) throw std::invalid_argument("LatencyModel::overhead_ms must be >= 0");
        if (!(prefill_ms_per_token >= 0)) throw std::invalid_argument("LatencyModel::prefill_ms_per_token must be >= 0");
        if (!(decode_ms_per_token > 0)) throw std::invalid_argument("LatencyModel::decode_ms_per_token must be > 0");
        if (!(batch_item_ms >= 0) || batch_item_ms > decode_ms_per_token)
            throw std::invalid_argument("LatencyModel::batch_item_ms must be in [0, decode_ms_per_token]");
        if (!(time_scale > 0)) throw std::invalid_argument("LatencyModel::time_scale must be > 0");
    }
    /// One decode step for `active` unfinished sequences (simulated ms).
    [[nodiscard]] double step_ms(std::size_t active) const {
        return (decode_ms_per_token - batch_item_ms) + batch_item_ms * static_cast<double>(active);
    }
    /// From the call to its first token for a lone request (simulated ms): overhead + prefill + one step.
    [[nodiscard]] double first_token_ms(std::size_t prompt_tokens) const {
        return overhead_ms + prefill_ms_per_token * static_cast<double>(prompt_tokens) + step_ms(1);
    }
    /// The real duration `sim_ms` simulated milliseconds take.
    [[nodiscard]] std::chrono::nanoseconds real(double sim_ms) const {
        return std::chrono::nanoseconds(static_cast<long long>(sim_ms * 1e6 / time_scale));
    }
};

/// The simulated answer as token pieces: filler words (English) of `tokens` pieces, deterministic.
inline std::vector<std::string> simulated_answer(std::size_t tokens) {
    static constexpr std::string_view words[] = {"Large", " language", " models", " spend", " most", " of",
                                                 " their", " time", " decoding", " one", " token", " at", " a",
                                                 " time,", " so", " longer", " answers", " take", " longer."};
    std::vector<std::string> pieces;
    pieces.reserve(tokens);
    for (std::size_t i = 0; i < tokens; ++i) pieces.emplace_back(words[i % std::size(words)]);
    return pieces;
}

}  // namespace examples
