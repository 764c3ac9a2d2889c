// tests/compressor_reference.hpp — the obviously-correct rule application the compressor's test and
// fuzz target compare the Aho-Corasick automaton against.
#pragma once

#include <llmfast/compressor.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace llmfast::testing {

/// At each position the longest matching pattern wins (the first rule on ties); replacements are
/// never re-scanned. Quadratic, and meant to be.
inline std::string reference_replace(std::string_view text, const std::vector<CompressionRule>& rules) {
    std::string out;
    std::size_t pos = 0;
    while (pos < text.size()) {
        const CompressionRule* best = nullptr;
        for (const CompressionRule& rule : rules)
            if (text.substr(pos, rule.pattern.size()) == rule.pattern &&
                (best == nullptr || rule.pattern.size() > best->pattern.size()))
                best = &rule;
        if (best != nullptr) {
            out += best->replacement;
            pos += best->pattern.size();
        } else {
            out += text[pos++];
        }
    }
    return out;
}

}  // namespace llmfast::testing
