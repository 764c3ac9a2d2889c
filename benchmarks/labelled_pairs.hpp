// benchmarks/labelled_pairs.hpp — labelled sentence pairs for the semantic tier's quality programs
// (cache_quality, verifier_quality, verifier_features): one reader of the pairs file and one built-in
// sample for --quick.
//
// The file is UTF-8 TSV with one header line and the columns `lang  label  source  text_a  text_b`;
// `label` is 1 when a cached answer for text_a is a right answer for text_b.
#pragma once

#include <array>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace llmfast::bench {

struct LabelledPair {
    std::string source;
    int label = 0;
    std::string a, b;
};

/// What read_labelled_pairs does with a line that has fewer than five fields.
enum class MalformedLine { Skip, Fail };

/// Reads a pairs file; exits with status 2 (and a message) when it cannot be opened, or on a malformed
/// line under MalformedLine::Fail. Tabs inside the last field are kept.
inline std::vector<LabelledPair> read_labelled_pairs(const std::string& path,
                                                     MalformedLine malformed = MalformedLine::Skip) {
    std::ifstream in(path);
    if (!in) {
        std::fprintf(stderr, "cannot open %s\n", path.c_str());
        std::exit(2);
    }
    std::vector<LabelledPair> pairs;
    std::string line;
    bool header = true;
    while (std::getline(in, line)) {
        if (header) {
            header = false;
            continue;
        }
        std::array<std::string, 5> fields;
        std::size_t field = 0, start = 0;
        for (std::size_t i = 0; i <= line.size() && field < 5; ++i) {
            if (i == line.size() || (line[i] == '\t' && field < 4)) {
                fields[field++] = line.substr(start, i - start);
                start = i + 1;
            }
        }
        if (field != 5) {
            if (malformed == MalformedLine::Skip) continue;
            std::fprintf(stderr, "%s: malformed line\n", path.c_str());
            std::exit(2);
        }
        pairs.push_back({fields[2], fields[1] == "1" ? 1 : 0, fields[3], fields[4]});
    }
    return pairs;
}

/// A few hand-written pairs (paraphrases, and the near misses the guards exist for) for --quick runs.
inline std::vector<LabelledPair> builtin_pairs_sample() {
    return {
        {"sample-zh", 1, "什么是机器学习?", "机器学习是什么?"},
        {"sample-zh", 0, "第一季比第二季好看吗", "第二季比第一季好看吗"},
        {"sample-zh", 1, "今天北京天气怎么样", "北京今天天气如何"},
        {"sample-zh", 0, "这个问题很难", "这个问题不难"},
        {"sample-zh", 0, "Alice 比 Bob 高吗", "Bob 比 Alice 高吗"},
        {"sample-en", 1, "How do I reset my password?", "how can I reset my password"},
        {"sample-en", 0, "How do I book 3 tickets to Paris?", "How do I book 4 tickets to Paris?"},
        {"sample-en", 0, "Is it safe to eat raw eggs?", "Is it not safe to eat raw eggs?"},
        {"sample-en", 1, "What is the capital of France?", "what's the capital of France"},
        {"sample-en", 0, "Does Alice earn more than Bob?", "Does Bob earn more than Alice?"},
    };
}

}  // namespace llmfast::bench
