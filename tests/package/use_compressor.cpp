// Package consume test: the compressor and the truncator through the installed umbrella header.
#include <llmfast/llmfast.hpp>

#include <cstdio>
#include <vector>

int main() {
    const llmfast::PromptCompressor compressor;
    const auto compressed = compressor.compress("请你帮我分析以下是一段代码。Please note that in order to win, we play.");
    if (compressed.text != "帮我分析一段代码。To win, we play.") return 1;
    if (compressed.report.tokens_after >= compressed.report.tokens_before) return 2;

    const llmfast::Truncator truncator;
    const auto cut = truncator.truncate("line one\nline two\nline three\n", 5, llmfast::TruncateStrategy::Head);
    if (cut.tokens > 5 || !llmfast::utf8::is_valid(cut.text)) return 3;

    const std::vector<llmfast::ChatMessage> history = {{"system", "be brief"}, {"user", "hi"}, {"assistant", "hello"},
                                                       {"user", "what is 2+2?"}};
    const auto fit = truncator.fit_messages(history, 25);
    if (fit.tokens > 25 || fit.messages.front().role != "system") return 4;
    std::printf("compressor/truncator: ok (%zu -> %zu tokens)\n", compressed.report.tokens_before,
                compressed.report.tokens_after);
    return 0;
}
