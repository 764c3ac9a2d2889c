// examples/gateway/prompt.hpp — what the gateway does to a chat prompt on a miss, before admission
// and the backend: count its tokens with the model's tokenizer (llmfast::BpeTokenizer when the model
// has a rank file, llmfast::EstimatingTokenCounter otherwise), fit the history into the model's
// context window minus max_tokens with llmfast::Truncator::fit_messages (whole turns dropped oldest
// first, system messages kept, the truncator's byte cap per message set), then apply the model's
// compression rules (llmfast::PromptCompressor). When that changed anything, the upstream body is
// rewritten: the "messages" array is spliced by byte range, a dropped message leaves, a changed text
// message gets its new "content" string, every other byte (tool calls, names, unknown fields) stays.
//
// Thread-safety: a PromptPipeline is immutable after construction; prepare/count may run on any thread.
// Errors: the constructor throws ConfigError (an unreadable rank file, a bad rule, naming the field);
// prepare returns an ApiError (400 context_length_exceeded) and throws nothing else.
#pragma once

#include "config.hpp"

#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace gateway {

struct PreparedPrompt {
    std::vector<ChatMessage> messages;  ///< what the backend answers
    std::string body;                   ///< the body for an upstream when rewritten ("" = the client's, unchanged)
    std::uint64_t prompt_tokens = 0;    ///< as the model's tokenizer counts the messages, OpenAI chat overheads included
    std::size_t dropped = 0, shortened = 0, compressed = 0;  ///< messages dropped / cut / changed by compression
};

class PromptPipeline {
public:
    explicit PromptPipeline(const Config& config);
    ~PromptPipeline();
    PromptPipeline(const PromptPipeline&) = delete;
    PromptPipeline& operator=(const PromptPipeline&) = delete;

    [[nodiscard]] std::variant<PreparedPrompt, ApiError> prepare(const ChatRequest& request, std::string_view body) const;
    /// Tokens of `text` as `model`'s tokenizer counts them.
    [[nodiscard]] std::size_t count(const std::string& model, std::string_view text) const;
    /// "bpe:cl100k_base" or "estimator": which tokenizer `model` uses (for logs and tests).
    [[nodiscard]] std::string tokenizer_name(const std::string& model) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// Byte ranges [begin, end) of the elements of the JSON array starting at `body[begin]` (valid JSON),
/// and the array's end in `end`. Empty when `body[begin]` is not '['.
std::vector<std::pair<std::size_t, std::size_t>> json_array_elements(std::string_view body, std::size_t begin, std::size_t& end);
/// The byte range of the member `key` of the JSON object `object_text` (valid JSON), or {0, 0}.
std::pair<std::size_t, std::size_t> json_member_value(std::string_view object_text, std::string_view key);

}  // namespace gateway
