// Fuzzes the pre-tokenization splitters and merges of llmfast/bpe_tokenizer.hpp on arbitrary bytes
// (invalid UTF-8 included) with a small synthetic vocabulary: every piece ends after it starts,
// decode(encode(s)) == s, and count == encode().size(), for each split pattern.
#include <llmfast/bpe_tokenizer.hpp>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

const std::vector<llmfast::BpeTokenizer>& tokenizers() {
    static const std::vector<llmfast::BpeTokenizer> instances = [] {
        std::string file;
        llmfast::TokenId rank = 0;
        for (int b = 0; b < 256; ++b)
            file += llmfast::detail::bpe_base64_encode(std::string(1, static_cast<char>(b))) + " " + std::to_string(rank++) + "\n";
        for (const char* token : {"  ", "    ", "th", "the", " the", "in", "ing", "aa", "aaaa", "aaaaaaaa", "\xE4\xB8", "\xE4\xB8\xAD", "\n\n", "12", "123"})
            file += llmfast::detail::bpe_base64_encode(token) + " " + std::to_string(rank++) + "\n";
        std::vector<llmfast::BpeTokenizer> list;
        for (const auto pattern : {llmfast::SplitPattern::Cl100k, llmfast::SplitPattern::Cl100kTrailingSpace, llmfast::SplitPattern::O200k})
            list.push_back(llmfast::BpeTokenizer::from_rank_data(file, {"fuzz", pattern, {{"<|endoftext|>", 5000}}, 0, nullptr}));
        return list;
    }();
    return instances;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    for (const llmfast::BpeTokenizer& tokenizer : tokenizers()) {
        for (std::size_t pos = 0; pos < text.size();) {
            const std::size_t end = llmfast::detail::bpe_piece_end(tokenizer.encoding().pattern, text, pos);
            if (end <= pos || end > text.size()) std::abort();
            pos = end;
        }
        const std::vector<llmfast::TokenId> ids = tokenizer.encode(text);
        if (tokenizer.decode(ids) != text || tokenizer.count(text) != ids.size()) std::abort();
        const std::vector<llmfast::TokenId> special = tokenizer.encode(text, {.allow_special = true});
        if (tokenizer.decode(special) != text || tokenizer.count(text, {.allow_special = true}) != special.size()) std::abort();
    }
    return 0;
}
