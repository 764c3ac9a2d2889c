// benchmarks/compressor_bench.cpp — PromptCompressor throughput against the chapter's algorithm, and
// token reduction on the chapter's example prompt and on a longer realistic prompt.
//
// Baseline (the chapter's design, ported faithfully): one full `str.replace` pass per rule, in order,
// then the chapter's two whitespace rules ("\n\n\n"->"\n\n", "  "->" ") and `strip()`. Ours: one
// Aho-Corasick pass for all rules plus the full whitespace normalization (more work, not less).
#include <llmfast/compressor.hpp>

#include "bench_common.hpp"

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace {

using llmfast::CompressionRule;

// Python's str.replace: every non-overlapping occurrence, left to right.
void replace_all(std::string& text, std::string_view pattern, std::string_view replacement) {
    std::size_t pos = text.find(pattern);
    if (pos == std::string::npos) return;
    std::string out;
    out.reserve(text.size());
    std::size_t copied = 0;
    while (pos != std::string::npos) {
        out.append(text, copied, pos - copied);
        out.append(replacement);
        copied = pos + pattern.size();
        pos = text.find(pattern, copied);
    }
    out.append(text, copied, std::string::npos);
    text.swap(out);
}

// The chapter's PromptCompressor.compress, ported: sequential replace per rule, then strip().
std::string chapter_compress(std::string text, const std::vector<CompressionRule>& rules) {
    for (const CompressionRule& rule : rules) replace_all(text, rule.pattern, rule.replacement);
    replace_all(text, "\n\n\n", "\n\n");
    replace_all(text, "  ", " ");
    const std::size_t begin = text.find_first_not_of(" \t\n\r");
    if (begin == std::string::npos) return {};
    const std::size_t end = text.find_last_not_of(" \t\n\r");
    return text.substr(begin, end - begin + 1);
}

struct Rng {
    std::uint64_t state;
    std::uint64_t next() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return state;
    }
    std::size_t below(std::size_t n) { return static_cast<std::size_t>(next() % n); }
};

const std::vector<std::string> zh_sentences = {
    "请你帮我分析以下是一段代码，你需要首先，理解代码的功能，其次，找出潜在的问题，最后，给出改进建议。",
    "请注意代码的性能和可读性。", "大语言模型的推理延迟是生产环境中最大的痛点之一。",
    "流式响应可以显著降低首字延迟，用户感知的等待时间大幅缩短。", "语义缓存能够减少重复请求，从而同时降低成本和延迟。",
    "批处理在高并发场景下可以提升吞吐量，但会略微增加单个请求的等待时间。",
    "以下是一些常见的优化手段，它们的实现难度和收益各不相同。"};
const std::vector<std::string> en_sentences = {
    "Please note that the service must stay available during the migration.",
    "In order to reduce latency, the gateway streams tokens as soon as they are produced.",
    "The cache stores responses keyed by the meaning of the question, not its exact wording.",
    "Due to the fact that batching adds queueing delay, the batch size is capped.",
    "I would like you to summarize the following report in three bullet points.",
    "Throughput grows with the batch size until the accelerator is saturated.",
    "It is important to note that prompts longer than the context window are rejected."};

std::string make_text(std::size_t bytes, std::uint64_t seed) {
    Rng rng{seed};
    std::string text;
    while (text.size() < bytes) {
        const auto& pool = rng.below(2) == 0 ? zh_sentences : en_sentences;
        text += pool[rng.below(pool.size())];
        const std::size_t r = rng.below(10);
        text += r == 0 ? "\n\n\n" : r < 3 ? "\n" : r < 4 ? "  " : " ";
    }
    return text;
}

// The chapter's Chinese rules (10 with both commas) plus `extra` synthetic rules built from phrases that
// partly occur in the text (so they fire) and partly do not (so they only cost matching).
std::vector<CompressionRule> make_rules(std::size_t total) {
    std::vector<CompressionRule> rules = llmfast::chinese_rules();
    const std::vector<std::string> zh = {"大语言模型", "推理延迟", "生产环境", "流式响应", "首字延迟", "语义缓存",
                                         "重复请求", "批处理", "高并发", "吞吐量", "优化手段", "实现难度"};
    const std::vector<std::string> en = {"the service", "the gateway", "the cache", "the batch size",
                                         "the accelerator", "the context window", "three bullet points",
                                         "queueing delay", "exact wording", "the migration"};
    Rng rng{42};
    std::size_t i = 0;
    while (rules.size() < total) {
        CompressionRule rule;
        if (i % 2 == 0) {
            rule.pattern = zh[rng.below(zh.size())] + zh[rng.below(zh.size())];
            if (i % 8 == 0) rule.pattern = zh[i / 8 % zh.size()];
            rule.replacement = "X";
        } else {
            rule.pattern = en[rng.below(en.size())] + " " + std::to_string(i);
            if (i % 8 == 1) rule.pattern = en[i / 8 % en.size()];
            rule.replacement = "Y";
        }
        ++i;
        bool duplicate = false;
        for (const CompressionRule& r : rules) duplicate = duplicate || r.pattern == rule.pattern;
        if (!duplicate) rules.push_back(rule);
    }
    return rules;
}

const std::string chapter_prompt =
    "\n请你帮我分析以下是一段代码,你需要首先,理解代码的功能,其次,找出潜在的问题,最后,给出改进建议。\n"
    "请注意代码的性能和可读性。\n";

const std::string long_prompt =
    "You are a helpful assistant for our internal operations team.  \n\n\n"
    "I would like you to read the retrieved documents below and answer the question at the end. "
    "Please note that the answer must be based only on the documents. In order to keep the answer short, "
    "use at most five sentences.  It is important to note that the documents may repeat each other.\n\n\n"
    "Document 1:\n"
    "The API gateway rotates its signing keys every 30 days. Old keys stop working one hour after rotation. "
    "Due to the fact that clients cache keys, a rotation is announced one day in advance.\n"
    "Document 2:\n"
    "The API gateway rotates its signing keys every 30 days. Old keys stop working one hour after rotation. "
    "To rotate a key manually, open the admin console and click Rotate.    Make sure that the new key is "
    "distributed prior to the deadline.\n"
    "Document 3:\n"
    "请你注意：以下是运维手册的摘录。网关每三十天轮换一次签名密钥。旧密钥在轮换一小时后失效。"
    "网关每三十天轮换一次签名密钥。你需要首先，确认新密钥已经分发；其次，观察错误率；最后，删除旧密钥。\n"
    "\xE3\x80\x80\xE3\x80\x80请注意：手动轮换需要管理员权限。\n\n\n\n"
    "```bash\n"
    "curl -X POST https://gateway.internal/admin/keys/rotate    -H 'Authorization: Bearer $TOKEN'\n"
    "```\n\n"
    "Question: With regard to key rotation, what do I need to do in the event that a client still uses an old key?\n";

double mb_per_second(std::size_t bytes, double seconds) { return static_cast<double>(bytes) / 1e6 / seconds; }

}  // namespace

int main(int argc, char** argv) {
    const llmfast::bench::Options options = llmfast::bench::parse_options(argc, argv);
    const std::size_t bytes = options.quick ? 64 * 1024 : 1024 * 1024;
    const std::string text = make_text(bytes, 7);
    const int reps = options.quick ? 1 : 5;

    llmfast::bench::Table table("PromptCompressor: one Aho-Corasick pass vs the chapter's replace-per-rule");
    for (const std::size_t rule_count : {std::size_t{10}, std::size_t{200}}) {
        const std::vector<CompressionRule> rules = make_rules(rule_count);
        llmfast::CompressorOptions compressor_options;
        compressor_options.rules = rules;
        compressor_options.chinese_rules = false;
        compressor_options.english_rules = false;
        const llmfast::PromptCompressor compressor(compressor_options);
        const auto ours = [&] {
            const double start = llmfast::bench::now_seconds();
            for (int i = 0; i < reps; ++i) {
                auto result = compressor.compress(text);
                llmfast::bench::keep(result);
            }
            return mb_per_second(text.size() * static_cast<std::size_t>(reps), llmfast::bench::now_seconds() - start);
        };
        const auto baseline = [&] {
            const double start = llmfast::bench::now_seconds();
            for (int i = 0; i < reps; ++i) {
                auto result = chapter_compress(text, rules);
                llmfast::bench::keep(result);
            }
            return mb_per_second(text.size() * static_cast<std::size_t>(reps), llmfast::bench::now_seconds() - start);
        };
        const auto [ours_mbs, base_mbs] = llmfast::bench::interleave(options.rounds, ours, baseline);
        table.add(std::to_string(bytes / 1024) + " KiB mixed zh/en, " + std::to_string(rules.size()) + " rules",
                  ours_mbs, base_mbs, "MB/s", llmfast::bench::Better::Higher);

        // The same without token statistics (two estimator passes over 1 MB are most of the cost).
        compressor_options.count_tokens = false;
        const llmfast::PromptCompressor no_stats(compressor_options);
        const auto ours_no_stats = [&] {
            const double start = llmfast::bench::now_seconds();
            for (int i = 0; i < reps; ++i) {
                auto result = no_stats.compress(text);
                llmfast::bench::keep(result);
            }
            return mb_per_second(text.size() * static_cast<std::size_t>(reps), llmfast::bench::now_seconds() - start);
        };
        const auto [fast_mbs, base2_mbs] = llmfast::bench::interleave(options.rounds, ours_no_stats, baseline);
        table.add(std::to_string(rules.size()) + " rules, count_tokens=false", fast_mbs, base2_mbs, "MB/s",
                  llmfast::bench::Better::Higher);
    }

    table.print();

    // Token reduction (estimating counter, cl100k ratios): ours vs the chapter's compress, same input.
    const llmfast::EstimatingTokenCounter counter;
    llmfast::bench::Table reduction("Token reduction (estimating counter), % of tokens saved");
    const auto percent = [&](std::string_view before, std::string_view after) {
        const auto b = static_cast<double>(counter.count(before));
        return b == 0 ? 0.0 : 100.0 * (1.0 - static_cast<double>(counter.count(after)) / b);
    };
    const llmfast::PromptCompressor defaults;
    {
        const auto ours = defaults.compress(chapter_prompt);
        reduction.add("the chapter's example prompt (" + std::to_string(ours.report.tokens_before) + " -> " +
                          std::to_string(ours.report.tokens_after) + " tokens)",
                      percent(chapter_prompt, ours.text),
                      percent(chapter_prompt, chapter_compress(chapter_prompt, llmfast::chinese_rules())), "%",
                      llmfast::bench::Better::Higher);
    }
    {
        const auto ours = defaults.compress(long_prompt);
        reduction.add("long zh/en RAG prompt, default (" + std::to_string(ours.report.tokens_before) + " -> " +
                          std::to_string(ours.report.tokens_after) + ")",
                      percent(long_prompt, ours.text),
                      percent(long_prompt, chapter_compress(long_prompt, llmfast::chinese_rules())), "%",
                      llmfast::bench::Better::Higher);
        llmfast::CompressorOptions dedupe;
        dedupe.remove_repeated_sentences = true;
        const llmfast::PromptCompressor deduping(dedupe);
        const auto deduped = deduping.compress(long_prompt);
        reduction.add("long prompt, + repeated sentences (" + std::to_string(deduped.report.tokens_after) + ")",
                      percent(long_prompt, deduped.text),
                      percent(long_prompt, chapter_compress(long_prompt, llmfast::chinese_rules())), "%",
                      llmfast::bench::Better::Higher);
        if (!options.quick) std::printf("\n--- long prompt, compressed with repeated-sentence removal ---\n%s\n", deduped.text.c_str());
    }
    reduction.print();
    return 0;
}
