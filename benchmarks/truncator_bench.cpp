// benchmarks/truncator_bench.cpp — truncating a 10 MB text to 2 000 tokens, each strategy.
//
// Baseline: the simplest correct truncation a competent user would write with a token counter — a
// binary search on the cut position, counting the candidate text each time (it meets the budget, but
// each probe counts up to the whole input). The chapter's own truncator ("2 characters per token", cut
// by characters) is shown too: it is fast, but its output overshoots the budget.
#include <llmfast/truncator.hpp>

#include "bench_common.hpp"

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace {

using llmfast::TruncateStrategy;

std::string make_log(std::size_t bytes) {
    static const char* const lines[] = {
        "2026-11-25T10:00:00Z INFO  gateway request id=%u path=/v1/chat status=200 latency_ms=%u\n",
        "2026-11-25T10:00:01Z WARN  batcher queue depth %u above soft limit, flushing early (%u ms)\n",
        "2026-11-25T10:00:02Z INFO  缓存命中 key=%u 相似度=0.9%u 用户请求已直接返回\n",
        "2026-11-25T10:00:03Z ERROR upstream timeout after %u ms, retry %u 😀 scheduled\n"};
    std::string text;
    text.reserve(bytes + 256);
    std::uint32_t state = 12345;
    char buffer[256];
    while (text.size() < bytes) {
        state = state * 1103515245U + 12345U;
        const int n = std::snprintf(buffer, sizeof buffer, lines[(state >> 16) % 4], state % 100000U, (state >> 8) % 1000U);
        text.append(buffer, static_cast<std::size_t>(n));
    }
    return text;
}

// Correct but input-proportional: the largest cut whose result fits, by binary search with the counter.
std::string binary_search_truncate(std::string_view text, std::size_t budget, TruncateStrategy strategy,
                                   const llmfast::EstimatingTokenCounter& counter) {
    const std::string marker = "\xE2\x80\xA6";
    if (counter.count(text) <= budget) return std::string(text);
    const auto build = [&](std::size_t keep) {
        switch (strategy) {
            case TruncateStrategy::Head:
                return std::string(text.substr(0, llmfast::utf8::floor_boundary(text, keep))) + marker;
            case TruncateStrategy::Tail:
                return marker + std::string(text.substr(llmfast::utf8::ceil_boundary(text, text.size() - keep)));
            case TruncateStrategy::Middle: {
                const std::size_t half = keep / 2;
                return std::string(text.substr(0, llmfast::utf8::floor_boundary(text, half))) + marker +
                       std::string(text.substr(llmfast::utf8::ceil_boundary(text, text.size() - (keep - half))));
            }
        }
        return std::string();
    };
    std::size_t lo = 0, hi = text.size();
    while (lo < hi) {
        const std::size_t mid = lo + (hi - lo + 1) / 2;
        if (counter.count(build(mid)) <= budget) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    return build(lo);
}

// The chapter's truncate_context, ported: 2 characters per token, cut by code points.
std::string chapter_truncate(std::string_view text, std::size_t max_tokens, TruncateStrategy strategy) {
    const std::size_t chars = max_tokens * 2;
    const auto forward = [&](std::size_t n) {  // byte offset after n code points
        std::size_t pos = 0;
        for (std::size_t i = 0; i < n && pos < text.size(); ++i) pos = llmfast::utf8::ceil_boundary(text, pos + 1);
        return pos;
    };
    const auto backward = [&](std::size_t n) {  // byte offset of the n-th code point from the end
        std::size_t pos = text.size();
        for (std::size_t i = 0; i < n && pos > 0; ++i) pos = llmfast::utf8::floor_boundary(text, pos - 1);
        return pos;
    };
    switch (strategy) {
        case TruncateStrategy::Head: return std::string(text.substr(0, forward(chars))) + "...";
        case TruncateStrategy::Tail: return "..." + std::string(text.substr(backward(chars)));
        case TruncateStrategy::Middle:
            return std::string(text.substr(0, forward(chars / 2))) + "\n...\n" + std::string(text.substr(backward(chars / 2)));
    }
    return {};
}

const char* name(TruncateStrategy strategy) {
    switch (strategy) {
        case TruncateStrategy::Head: return "head";
        case TruncateStrategy::Tail: return "tail";
        case TruncateStrategy::Middle: return "middle";
    }
    return "?";
}

}  // namespace

int main(int argc, char** argv) {
    const llmfast::bench::Options options = llmfast::bench::parse_options(argc, argv);
    const std::size_t bytes = options.quick ? 1024 * 1024 : 10 * 1024 * 1024;
    const std::size_t budget = 2000;
    const std::string text = make_log(bytes);
    const llmfast::EstimatingTokenCounter counter;
    const llmfast::Truncator truncator;
    const int calls = options.quick ? 20 : 200;

    llmfast::bench::Table table("Truncator: " + std::to_string(bytes / (1024 * 1024)) + " MB log -> " +
                                std::to_string(budget) + " tokens (us per call)");
    llmfast::bench::Table chapter("The chapter's truncate_context (2 chars/token, cut by characters)");
    for (const TruncateStrategy strategy : {TruncateStrategy::Head, TruncateStrategy::Tail, TruncateStrategy::Middle}) {
        std::size_t ours_tokens = 0;
        const auto ours = [&] {
            const double start = llmfast::bench::now_seconds();
            for (int i = 0; i < calls; ++i) {
                auto cut = truncator.truncate(text, budget, strategy);
                ours_tokens = cut.tokens;
                llmfast::bench::keep(cut);
            }
            return (llmfast::bench::now_seconds() - start) / calls * 1e6;
        };
        const auto baseline = [&] {
            const double start = llmfast::bench::now_seconds();
            auto cut = binary_search_truncate(text, budget, strategy, counter);
            llmfast::bench::keep(cut);
            return (llmfast::bench::now_seconds() - start) * 1e6;
        };
        const auto [ours_us, base_us] = llmfast::bench::interleave(std::min(options.rounds, 3), ours, baseline);
        table.add(std::string(name(strategy)) + " (" + std::to_string(ours_tokens) + " tokens kept)", ours_us, base_us,
                  "us", llmfast::bench::Better::Lower);

        std::vector<double> chapter_us;
        std::size_t chapter_tokens = 0;
        for (int round = 0; round < options.rounds; ++round) {
            const double start = llmfast::bench::now_seconds();
            for (int i = 0; i < calls; ++i) {
                auto cut = chapter_truncate(text, budget, strategy);
                chapter_tokens = counter.count(cut);
                llmfast::bench::keep(cut);
            }
            chapter_us.push_back((llmfast::bench::now_seconds() - start) / calls * 1e6);
        }
        chapter.add_absolute(std::string(name(strategy)) + ": time (incl. counting its output)", llmfast::bench::median(chapter_us), "us");
        chapter.add_absolute(std::string(name(strategy)) + ": tokens for a budget of 2000", static_cast<double>(chapter_tokens), "tokens");
    }
    // On Chinese prose, "2 characters per token" overshoots: a character is about one token.
    std::string chinese;
    while (chinese.size() < 256 * 1024) chinese += "大语言模型的推理延迟是生产环境中最大的痛点之一，流式响应可以显著降低首字延迟。\n";
    chapter.add_absolute("zh prose, head: chapter's tokens for a budget of 2000",
                      static_cast<double>(counter.count(chapter_truncate(chinese, budget, TruncateStrategy::Head))), "tokens");
    chapter.add_absolute("zh prose, head: ours", static_cast<double>(truncator.truncate(chinese, budget).tokens), "tokens");
    table.print();
    chapter.print();
    return 0;
}
