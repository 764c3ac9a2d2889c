// examples/compress_and_truncate.cpp — fewer tokens for the same request (PromptCompressor), any text
// cut to a token budget without splitting a character (Truncator), and a chat history fitted to a
// context window (fit_messages).
#include <llmfast/compressor.hpp>
#include <llmfast/truncator.hpp>

#include <fmt/format.h>

#include <string>
#include <vector>

int main() {
    // 1. Rule-based compression (Chinese and English built-in rules, one pass, whitespace normalized).
    const llmfast::PromptCompressor compressor;
    for (const char* prompt : {"请你帮我分析以下是一段代码。首先，找出错误；其次，给出修改建议。",
                               "Please note that I would like you to summarize   the text below in order to save time.  "}) {
        const llmfast::CompressionResult result = compressor.compress(prompt);
        fmt::print("compressed: {}\n  tokens {} -> {} (-{:.0f} %), {} rule(s) fired\n", result.text,
                   result.report.tokens_before, result.report.tokens_after, 100 * result.report.token_reduction(),
                   result.report.rules_fired.size());
    }
    // Budget mode for retrieved context: keeps the sentences most relevant to the query, in order.
    const std::string context =
        "Our office is closed on public holidays. To rotate an API key, open Settings, choose Keys and "
        "press Rotate. The cafeteria serves lunch from noon. A rotated key stops working after 24 hours. "
        "Parking is free for visitors.";
    const auto relevant = compressor.compress_to_budget(context, "rotate API key", 25);
    fmt::print("budget mode (25 tokens, query \"rotate API key\"): {} [{} of {} sentences]\n", relevant.text, relevant.report.chunks_kept,
               relevant.report.chunks_total);

    // 2. Truncation: never over the budget as the counter counts it, never through a character.
    // For untrusted input also cap the bytes: the estimator prices a whitespace run of any length at
    // 0.5 token, so a token budget alone does not bound the size.
    const llmfast::Truncator truncator({.max_bytes = 4096});
    std::string log;
    for (int i = 1; i <= 400; ++i) log += fmt::format("[{:03}] 请求完成 request done in {} ms\n", i, 10 + i % 7);
    const llmfast::Truncation tail = truncator.truncate(log, 60, llmfast::TruncateStrategy::Tail);
    fmt::print("log of {} bytes, tail within 60 tokens ({} tokens, {} bytes, cut at a line):\n{}\n", log.size(),
               tail.tokens, tail.text.size(), tail.text);
    const auto middle = truncator.truncate(log, 40, llmfast::TruncateStrategy::Middle);
    fmt::print("middle within 40 tokens: {} tokens, truncated={}\n", middle.tokens, middle.truncated);
    const std::string spaces(5'000'000, ' ');
    fmt::print("5 MB of spaces: the estimator says {} token(s); with max_bytes the result has {} bytes\n",
               truncator.counter().count(spaces), truncator.truncate(spaces, 1000).text.size());

    // 3. A chat history fitted to a budget: system kept, oldest whole turns dropped first.
    std::vector<llmfast::ChatMessage> history = {{"system", "You are a concise assistant."}};
    for (int turn = 1; turn <= 20; ++turn) {
        history.push_back({"user", fmt::format("Question {}: what happened in year {}?", turn, 1900 + turn)});
        history.push_back({"assistant", fmt::format("In {} several things happened; here is a long answer. ", 1900 + turn) +
                                            std::string(200, '.')});
    }
    const llmfast::FitResult fit = truncator.fit_messages(history, 300);
    fmt::print("history: {} messages -> {} kept, {} dropped, {} shortened, {} tokens (budget 300); first kept "
               "after the system message: \"{}\"\n",
               history.size(), fit.messages.size(), fit.dropped.size(), fit.shortened.size(), fit.tokens,
               fit.messages.size() > 1 ? fit.messages[1].content : "");
    return tail.tokens <= 60 && fit.tokens <= 300 ? 0 : 1;
}
