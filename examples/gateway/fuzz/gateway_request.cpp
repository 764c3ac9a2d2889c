// fuzz_gateway_request — llmfast-gateway's request-body parsers (parse_chat_request,
// parse_embeddings_request in examples/gateway/parsing.cpp) and the "messages" splicing of prompt.cpp,
// against their documented contract (config.hpp):
//   - they never throw and never crash, whatever the bytes;
//   - valid input gives a request whose fields satisfy the limits (a non-empty model, 1..max_messages
//     messages with a known role, max_tokens in [1, limit]); the body is valid JSON within the depth;
//     the byte range of "model" holds exactly the model's JSON string; the scanner prompt.cpp splices
//     with finds exactly as many message elements, and each element's "content" range is a JSON value;
//   - invalid input gives a 400 ApiError with a message and a code, whose `param` names a request
//     field (or is empty for a body-level error: invalid_json, json_too_deep, a non-object body).
// Input: byte 0 picks the limits (and chat or embeddings), the rest is the body.
#include "../config.hpp"
#include "../prompt.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
    std::fprintf(stderr, "contract violated: %s %.*s\n", what, static_cast<int>(detail.size()), detail.data());
    std::abort();
}

bool known_param(std::string_view param) {
    static constexpr std::string_view roots[] = {"model", "messages", "stream", "stream_options", "max_tokens",
                                                 "max_completion_tokens", "temperature", "top_p", "n", "input",
                                                 "encoding_format", "dimensions", "seed"};
    for (const std::string_view root : roots)
        if (param == root || (param.starts_with(root) && (param[root.size()] == '.' || param[root.size()] == '[')))
            return true;
    return false;
}

void check_error(const gateway::ApiError& error) {
    if (error.status != 400) fail("status is not 400", error.message);
    if (error.message.empty() || error.code.empty()) fail("error without message or code");
    if (error.param.empty()) {
        if (error.code != "invalid_json" && error.code != "json_too_deep" && error.code != "invalid_type")
            fail("body-level error with an unexpected code", error.code);
    } else if (!known_param(error.param)) {
        fail("param does not name a field", error.param);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    gateway::Limits limits;
    const std::uint8_t mode = data[0];
    if (mode & 1) {
        limits.max_messages = 4;
        limits.max_tokens = 100;
        limits.max_json_depth = 8;
    }
    const std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
    try {
        if (mode & 2) {
            const auto parsed = gateway::parse_embeddings_request(body, limits);
            if (const auto* error = std::get_if<gateway::ApiError>(&parsed)) {
                check_error(*error);
                return 0;
            }
            const auto& request = std::get<gateway::EmbeddingsRequest>(parsed);
            if (request.model.empty() || request.inputs.empty() || request.inputs.size() > 2048) fail("embeddings request out of limits");
            return 0;
        }
        const auto parsed = gateway::parse_chat_request(body, limits);
        if (const auto* error = std::get_if<gateway::ApiError>(&parsed)) {
            check_error(*error);
            return 0;
        }
        const auto& request = std::get<gateway::ChatRequest>(parsed);
        if (request.model.empty()) fail("empty model accepted");
        if (request.messages.empty() || request.messages.size() > limits.max_messages) fail("message count out of limits");
        if (request.max_tokens && (*request.max_tokens == 0 || *request.max_tokens > limits.max_tokens)) fail("max_tokens out of limits");
        for (const auto& message : request.messages) {
            const std::string_view role = message.role;
            if (role != "system" && role != "user" && role != "assistant" && role != "tool" && role != "developer" && role != "function")
                fail("unknown role accepted", role);
        }
        // "model"'s byte range holds its JSON string (the upstream splice relies on it).
        const auto [model_begin, model_end] = gateway::find_top_level_value(body, "model");
        if (model_begin >= model_end || body[model_begin] != '"' || body[model_end - 1] != '"') fail("model range is not a string");
        simdjson::dom::parser parser;
        simdjson::dom::element element;
        const std::string model_json = body.substr(model_begin, model_end - model_begin);
        std::string_view model;
        if (parser.parse(model_json).get(element) != simdjson::SUCCESS || element.get(model) != simdjson::SUCCESS || model != request.model)
            fail("model range does not hold the model", model_json);
        // The splicing scanner sees the same messages simdjson saw.
        const auto [messages_begin, ignored] = gateway::find_top_level_value(body, "messages");
        (void)ignored;
        std::size_t messages_end = 0;
        const auto elements = gateway::json_array_elements(body, messages_begin, messages_end);
        if (elements.size() != request.messages.size()) fail("scanner found a different number of messages");
        for (const auto& [begin, end] : elements) {
            const std::string element_text = body.substr(begin, end - begin);
            simdjson::dom::element message;
            if (parser.parse(element_text).get(message) != simdjson::SUCCESS) fail("a message element is not a JSON value", element_text);
            const auto [content_begin, content_end] = gateway::json_member_value(element_text, "content");
            if (content_begin != content_end) {
                const std::string content = element_text.substr(content_begin, content_end - content_begin);
                if (parser.parse(content).get(element) != simdjson::SUCCESS) fail("a content range is not a JSON value", content);
            }
        }
    } catch (const std::exception& e) {
        fail("exception escaped", e.what());
    }
    return 0;
}
