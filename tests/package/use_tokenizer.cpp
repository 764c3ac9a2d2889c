// Package consume test for llmfast/bpe_tokenizer.hpp: builds a tiny rank file itself (no OpenAI data
// needed), loads it from disk, and checks encode/decode/count and the TokenCounter concept.
#include <llmfast/llmfast.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace {

template <llmfast::TokenCounter Counter>
std::size_t budget_used(const Counter& counter, std::string_view text) {
    return counter.count(text);
}

}  // namespace

int main() {
    // The 256 single bytes, then two merges: "ab" (rank 256) and "abab" (rank 257).
    std::string ranks;
    llmfast::TokenId rank = 0;
    for (int b = 0; b < 256; ++b)
        ranks += llmfast::detail::bpe_base64_encode(std::string(1, static_cast<char>(b))) + " " + std::to_string(rank++) + "\n";
    ranks += llmfast::detail::bpe_base64_encode("ab") + " 256\n";
    ranks += llmfast::detail::bpe_base64_encode("abab") + " 257\n";

    const std::filesystem::path path = std::filesystem::temp_directory_path() / "llmfast_use_tokenizer.tiktoken";
    {
        std::ofstream out(path, std::ios::binary);
        out << ranks;
    }
    const llmfast::BpeEncoding encoding{"tiny", llmfast::SplitPattern::Cl100k, {{"<|endoftext|>", 300}}, 258, nullptr};
    const llmfast::BpeTokenizer tokenizer(path, encoding);
    std::filesystem::remove(path);

    const std::vector<llmfast::TokenId> ids = tokenizer.encode("ababab");
    if (ids != std::vector<llmfast::TokenId>{257, 256}) return 1;
    if (tokenizer.decode(ids) != "ababab") return 2;
    if (budget_used(tokenizer, "ababab x") != 4) return 3;  // abab ab " " x
    if (tokenizer.encode("<|endoftext|>", {.allow_special = true}) != std::vector<llmfast::TokenId>{300}) return 4;
    try {
        (void)llmfast::BpeTokenizer::from_rank_data("not a rank file", encoding);
        return 5;
    } catch (const llmfast::Error& error) {
        if (error.code() != llmfast::ErrorCode::InvalidFormat) return 6;
    }
    std::puts("use_tokenizer: ok");
    return 0;
}
