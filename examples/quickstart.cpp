// examples/quickstart.cpp — the shared pieces in ten lines: token estimates and UTF-8-safe streaming.
#include <llmfast/llmfast.hpp>

#include <fmt/format.h>

#include <string>
#include <string_view>
#include <vector>

int main() {
    const llmfast::EstimatingTokenCounter counter;
    const std::string prompt = "Summarize this article in three bullet points: 大型语言模型的推理延迟。";
    fmt::print("prompt: {} bytes, {} code points, ~{} tokens\n", prompt.size(),
               llmfast::utf8::count_code_points(prompt), counter.count(prompt));

    // A byte-level model may emit half a character per token; the assembler only hands on whole ones.
    const std::vector<std::string_view> tokens = {"\xE4\xBD", "\xA0\xE5\xA5", "\xBD", "!"};  // 你好!
    llmfast::utf8::Assembler assembler;
    for (std::string_view token : tokens) fmt::print("chunk: '{}'\n", assembler.push(token));
    fmt::print("tail: '{}'\n", assembler.finish());
}
