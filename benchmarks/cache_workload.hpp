// benchmarks/cache_workload.hpp — generated prompts and vectors shared by the cache benchmarks.
#pragma once

#include <algorithm>
#include <cmath>
#include <ctime>
#include <cstdint>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <unordered_set>
#include <vector>

#include <fmt/format.h>

namespace llmfast::bench {

/// CPU time of the calling thread in seconds. Latency figures use it: on a shared, oversubscribed
/// machine wall time mostly measures how long the thread waited for a core.
inline double thread_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

/// Realistic-looking prompts: question templates in Chinese and English with slots filled from
/// small vocabularies, numbers and names, so near-duplicates exist but most prompts differ.
class PromptGenerator {
public:
    explicit PromptGenerator(std::uint64_t seed) : rng_(seed) {}

    std::string next() {
        static const std::vector<std::string> zh_topics{"机器学习", "深度学习", "数据库索引", "分布式系统", "量子计算",
                                                        "区块链", "自然语言处理", "操作系统", "编译器", "网络协议",
                                                        "推荐系统", "向量检索", "缓存策略", "负载均衡", "容器编排"};
        static const std::vector<std::string> zh_templates{"什么是{}?", "{}是什么?", "请解释一下{}的基本原理",
                                                           "{}和{}有什么区别?", "如何在第{}个项目中使用{}?",
                                                           "为什么{}比{}更快?", "给我写一篇关于{}的{}字介绍"};
        static const std::vector<std::string> en_topics{"machine learning", "vector search", "garbage collection",
                                                        "consensus protocols", "TLS handshakes", "B-trees", "LSM trees",
                                                        "GPU kernels", "rate limiting", "Kubernetes", "Rust lifetimes",
                                                        "C++ coroutines", "SIMD", "Paxos", "Raft"};
        static const std::vector<std::string> en_templates{"What is {}?", "Explain {} to a beginner.",
                                                           "How does {} compare to {}?", "Give me {} examples of {}.",
                                                           "Why is {} faster than {}?", "Write a {}-word summary of {}."};
        const auto pick = [&](const std::vector<std::string>& v) -> const std::string& {
            return v[std::uniform_int_distribution<std::size_t>(0, v.size() - 1)(rng_)];
        };
        const int number = std::uniform_int_distribution<int>(1, 5000)(rng_);
        if (std::uniform_int_distribution<int>(0, 1)(rng_) == 0) {
            const std::string& t = pick(zh_templates);
            std::string filled = fmt::format(fmt::runtime(t), pick(zh_topics), t.find("第") != std::string::npos || t.find("字") != std::string::npos
                                                                      ? std::to_string(number) : pick(zh_topics));
            return fmt::format("{} (用户 {}: {})", filled, number, pick(en_topics));
        }
        const std::string& t = pick(en_templates);
        const bool numeric = t.find("{} examples") != std::string::npos || t.find("{}-word") != std::string::npos;
        std::string filled = numeric ? fmt::format(fmt::runtime(t), number, pick(en_topics))
                                     : fmt::format(fmt::runtime(t), pick(en_topics), pick(en_topics));
        return fmt::format("{} (ticket {}, 关于{})", filled, number, pick(zh_topics));
    }

    /// A prompt of exactly `bytes` bytes (ASCII), for latency tests that must not depend on content.
    std::string ascii(std::size_t bytes) {
        std::string s;
        while (s.size() < bytes) s += next_ascii_word() + " ";
        s.resize(bytes);
        return s;
    }

private:
    std::string next_ascii_word() {
        static const char* words[] = {"How", "do", "I", "configure", "the", "cache", "for", "Kubernetes", "pods",
                                      "with", "TLS", "and", "rate", "limiting", "in", "production", "?", "please"};
        return words[std::uniform_int_distribution<std::size_t>(0, std::size(words) - 1)(rng_)];
    }
    std::mt19937_64 rng_;
};

/// `n` random unit vectors of dimension `dim`, row-major (the hardest case for graph indexes).
inline std::vector<float> random_unit_vectors(std::size_t n, std::size_t dim, std::uint64_t seed) {
    std::vector<float> out(n * dim);
    std::uint64_t state = seed * 0x9E3779B97F4A7C15ULL + 1;
    const auto next = [&] {  // xorshift: generating 384M floats with <random> would take longer than the benchmark
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return static_cast<float>(static_cast<double>(state >> 11) * 0x1.0p-53 - 0.5);
    };
    for (std::size_t i = 0; i < n; ++i) {
        float* row = out.data() + i * dim;
        double norm = 0;
        for (std::size_t j = 0; j < dim; ++j) {
            row[j] = next() + next() + next();  // roughly normal
            norm += static_cast<double>(row[j]) * static_cast<double>(row[j]);
        }
        const auto inv = static_cast<float>(1.0 / std::sqrt(norm));
        for (std::size_t j = 0; j < dim; ++j) row[j] *= inv;
    }
    return out;
}

/// One prompt of the demo workload (examples/data/workload.jsonl): its text and paraphrase group.
struct WorkloadPrompt {
    std::string text;
    long long group = 0;
};

/// The string value of `"key": "..."` in one JSON line (the workload's flat objects; \" \\ \n \t and
/// \uXXXX below U+0800 are decoded), or nullopt.
inline std::optional<std::string> json_string_field(const std::string& line, const std::string& key) {
    const std::size_t at = line.find("\"" + key + "\"");
    if (at == std::string::npos) return std::nullopt;
    std::size_t pos = line.find('"', line.find(':', at + key.size() + 2));
    if (pos == std::string::npos) return std::nullopt;
    std::string out;
    for (++pos; pos < line.size() && line[pos] != '"'; ++pos) {
        if (line[pos] != '\\' || pos + 1 >= line.size()) {
            out += line[pos];
            continue;
        }
        const char c = line[++pos];
        if (c == 'n') out += '\n';
        else if (c == 't') out += '\t';
        else if (c == 'u' && pos + 4 < line.size()) {
            const auto cp = static_cast<unsigned>(std::stoul(line.substr(pos + 1, 4), nullptr, 16));
            pos += 4;
            if (cp < 0x80) out += static_cast<char>(cp);
            else if (cp < 0x800) { out += static_cast<char>(0xC0 | (cp >> 6)); out += static_cast<char>(0x80 | (cp & 0x3F)); }
        } else out += c;
    }
    return out;
}

/// The demo workload's prompts (`"prompt"` and a numeric `"group"` per line).
inline std::vector<WorkloadPrompt> load_workload(const std::string& path) {
    std::ifstream in(path);
    std::vector<WorkloadPrompt> pool;
    std::string line;
    while (std::getline(in, line)) {
        const auto prompt = json_string_field(line, "prompt");
        const std::size_t g = line.find("\"group\"");
        if (!prompt || g == std::string::npos) continue;
        pool.push_back({*prompt, std::stoll(line.substr(line.find(':', g) + 1))});
    }
    return pool;
}

/// The demo's request sequence (examples/demo.cpp make_sequence, same draws for the same seed): each
/// request repeats a prompt already sent (chosen among all requests so far, so popular prompts come
/// back more often), paraphrases a seen group, or opens an unseen group, with the given shares.
inline std::vector<std::size_t> workload_sequence(const std::vector<WorkloadPrompt>& pool, std::size_t requests,
                                                  double repeat_share = 0.25, double paraphrase_share = 0.25,
                                                  std::uint64_t seed = 42) {
    enum Kind { New, Repeat, Paraphrase };
    std::mt19937_64 rng(seed);
    std::map<long long, std::vector<std::size_t>> by_group;
    for (std::size_t i = 0; i < pool.size(); ++i) by_group[pool[i].group].push_back(i);
    std::vector<long long> unseen;
    for (const auto& [g, members] : by_group) unseen.push_back(g);
    std::shuffle(unseen.begin(), unseen.end(), rng);
    std::vector<std::size_t> sent;
    std::unordered_set<std::size_t> sent_set;
    std::vector<long long> seen;
    auto uniform = [&](std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng); };
    auto take_new = [&]() -> std::optional<std::size_t> {
        if (unseen.empty()) return std::nullopt;
        const long long g = unseen.back();
        unseen.pop_back();
        seen.push_back(g);
        const auto& members = by_group[g];
        return members[uniform(members.size())];
    };
    auto take_paraphrase = [&]() -> std::optional<std::size_t> {
        std::vector<std::size_t> fresh;
        for (long long g : seen)
            for (std::size_t m : by_group[g])
                if (!sent_set.contains(m)) fresh.push_back(m);
        if (fresh.empty()) return std::nullopt;
        return fresh[uniform(fresh.size())];
    };
    auto take_repeat = [&]() -> std::optional<std::size_t> {
        if (sent.empty()) return std::nullopt;
        return sent[uniform(sent.size())];
    };
    std::uniform_real_distribution<double> coin(0.0, 1.0);
    for (std::size_t i = 0; i < requests; ++i) {
        const double r = coin(rng);
        const Kind want = r < repeat_share ? Repeat : r < repeat_share + paraphrase_share ? Paraphrase : New;
        const Kind order[3][3] = {{New, Paraphrase, Repeat}, {Repeat, Paraphrase, New}, {Paraphrase, New, Repeat}};
        std::optional<std::size_t> pick;
        for (Kind k : order[want]) {
            pick = k == New ? take_new() : k == Repeat ? take_repeat() : take_paraphrase();
            if (pick) break;
        }
        if (!pick) break;
        sent.push_back(*pick);
        sent_set.insert(*pick);
    }
    return sent;
}

}  // namespace llmfast::bench
