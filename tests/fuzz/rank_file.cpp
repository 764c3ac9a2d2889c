// Fuzzes the rank-file loader of llmfast/bpe_tokenizer.hpp: any bytes either load or throw
// llmfast::Error(InvalidFormat); a file that loads must encode and decode consistently.
// Input: byte 0 picks the split pattern, the rest is the rank file.
#include <llmfast/bpe_tokenizer.hpp>

#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const auto pattern = static_cast<llmfast::SplitPattern>(data[0] % 3);
    const std::string_view file(reinterpret_cast<const char*>(data + 1), size - 1);
    llmfast::BpeEncoding encoding{"fuzz", pattern, {{"<|endoftext|>", 1000000}}, 0, nullptr};
    try {
        const llmfast::BpeTokenizer tokenizer = llmfast::BpeTokenizer::from_rank_data(file, encoding);
        // A loaded tokenizer must round-trip any text, here the file itself and a fixed mix.
        for (const std::string_view text : {file.substr(0, 512), std::string_view("Hello, world! 123 <|endoftext|> \xE4\xB8\xAD\xFF\n  ")}) {
            const std::vector<llmfast::TokenId> ids = tokenizer.encode(text);
            if (tokenizer.decode(ids) != text) std::abort();
            if (tokenizer.count(text) != ids.size()) std::abort();
            const std::vector<llmfast::TokenId> special = tokenizer.encode(text, {.allow_special = true});
            if (tokenizer.decode(special) != text) std::abort();
        }
    } catch (const llmfast::Error& error) {
        if (error.code() != llmfast::ErrorCode::InvalidFormat) std::abort();
    }
    return 0;
}
