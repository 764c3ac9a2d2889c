// Fuzzes Truncator's documented contract: for every strategy, two counters (the monotone estimator and
// a non-additive, non-monotone greedy one), any bytes, budgets and byte caps: the result costs <= the
// budget as the counter counts it, is valid UTF-8 and at most max_bytes; a text that fits (tokens and
// bytes) comes back unchanged with truncated == false, and only then; a cut is head + marker, marker +
// tail or head + marker + tail of the input; empty only when no one-character result fits; InvalidUtf8
// only for ill-formed input with repair off. fit_messages: within budget, contents within max_bytes,
// BudgetTooSmall only when the system messages or the newest turn's overheads cannot fit.
#include <llmfast/truncator.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

// Non-additive on purpose: a greedy tokenizer over a tiny vocabulary, bytes otherwise.
struct GreedyCounter {
    std::size_t count(std::string_view text) const {
        static constexpr std::string_view vocab[] = {" the", "ab", "  ", "\n\n", "\xE4\xBD\xA0\xE5\xA5\xBD", "..."};
        std::size_t tokens = 0;
        for (std::size_t pos = 0; pos < text.size(); ++tokens) {
            std::size_t best = 1;
            for (const std::string_view word : vocab)
                if (word.size() > best && text.substr(pos, word.size()) == word) best = word.size();
            pos += best;
        }
        return tokens;
    }
};

bool starts_with(std::string_view text, std::string_view prefix) { return text.substr(0, prefix.size()) == prefix; }
bool ends_with(std::string_view text, std::string_view suffix) {
    return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

void require(bool ok) {
    if (!ok) std::abort();
}

// The documented contract of truncate, on every input and strategy.
template <class Counter>
void check(const llmfast::Truncator<Counter>& truncator, std::string_view text, std::size_t budget,
           llmfast::TruncateStrategy strategy, bool repair) {
    const bool valid = llmfast::utf8::is_valid(text);
    const auto& counter = truncator.counter();
    const std::size_t cap = truncator.options().max_bytes;
    const std::string_view marker = truncator.options().marker;
    llmfast::Truncation cut;
    try {
        cut = truncator.truncate(text, budget, strategy);
    } catch (const llmfast::Error& e) {
        require(e.code() == llmfast::ErrorCode::InvalidUtf8 && !repair && !valid);
        return;
    }
    require(llmfast::utf8::is_valid(cut.text));  // valid out, whatever came in
    require(cut.tokens == counter.count(cut.text) && cut.tokens <= budget);
    require(cut.text.size() <= cap);
    if (!valid && !repair) {  // not every byte was read; what was returned cannot be all of it
        require(cut.truncated);
    }
    const std::string input = valid || !repair ? std::string(text) : llmfast::utf8::repair(text);
    if (valid || repair) {
        // Fits (tokens and bytes) <=> returned unchanged.
        const bool fits = counter.count(input) <= budget && input.size() <= cap;
        require(cut.truncated == !fits);
        if (!fits) require(cut.text != input || input.empty());
        if (fits) require(cut.text == input);
    }
    if (!cut.truncated) return;
    const std::string_view out = cut.text;
    const std::size_t first = llmfast::utf8::ceil_boundary(input, 1);
    const std::size_t last = llmfast::utf8::floor_boundary(input, input.size() - 1);
    const auto fits_result = [&](const std::string& candidate) {
        return candidate.size() <= cap && counter.count(candidate) <= budget;
    };
    if (out.empty()) {
        // Empty only when not even one character fits next to the marker.
        if (valid || repair) {
            if (strategy != llmfast::TruncateStrategy::Tail)
                require(!fits_result(input.substr(0, first) + std::string(marker)));
            if (strategy != llmfast::TruncateStrategy::Head)
                require(!fits_result(std::string(marker) + input.substr(last)));
        }
        return;
    }
    // Shape: head + marker (Head), marker + tail (Tail), head + marker + tail (Middle).
    const auto split_ok = [&](std::size_t at) {
        return out.substr(at, marker.size()) == marker && starts_with(input, out.substr(0, at)) &&
               ends_with(input, out.substr(at + marker.size()));
    };
    bool ok = false;
    if (strategy == llmfast::TruncateStrategy::Head) {
        ok = out.size() >= marker.size() && split_ok(out.size() - marker.size());
    } else if (strategy == llmfast::TruncateStrategy::Tail) {
        ok = split_ok(0);
    } else {  // the text itself may contain the marker: some occurrence must split it right
        for (std::size_t at = out.find(marker); at != std::string_view::npos && !ok; at = out.find(marker, at + 1))
            ok = split_ok(at);
    }
    require(ok);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 4) return 0;
    const std::size_t budget = data[0] | (static_cast<std::size_t>(data[1] & 0x3U) << 8);
    const auto strategy = static_cast<llmfast::TruncateStrategy>(data[2] % 3);
    const unsigned flags = data[3];
    const std::string_view text(reinterpret_cast<const char*>(data + 4), size - 4);
    const bool repair = (flags & 1U) != 0;

    llmfast::TruncatorOptions options;
    options.repair_invalid_utf8 = repair;
    options.piece_bytes = 16 + (flags >> 4) * 8;
    options.boundary_window = (flags >> 1) & 7U;
    options.marker = (flags & 8U) != 0 ? "\n..." : "\xE2\x80\xA6";
    // A byte cap on a quarter of the inputs (from the budget's spare bits): 0 .. 252 bytes.
    if ((data[1] & 0x4U) != 0) options.max_bytes = static_cast<std::size_t>(data[1] >> 3) * 8;
    check(llmfast::Truncator<>(options), text, budget, strategy, repair);
    check(llmfast::Truncator<GreedyCounter>(options), text, budget, strategy, repair);

    // Chat fitting: split the text into messages at '|'; roles cycle user/assistant, first is system.
    std::vector<llmfast::ChatMessage> messages;
    std::size_t start = 0, index = 0;
    static constexpr const char* roles[] = {"user", "assistant", "tool", "user"};
    for (std::size_t pos = 0; pos <= text.size(); ++pos) {
        if (pos < text.size() && text[pos] != '|') continue;
        messages.push_back({index == 0 ? "system" : roles[index % 4], std::string(text.substr(start, pos - start))});
        ++index;
        start = pos + 1;
    }
    const llmfast::Truncator<> truncator(options);
    const llmfast::EstimatingTokenCounter counter;
    try {
        const auto fit = truncator.fit_messages(messages, budget);
        require(fit.tokens <= budget);
        require(fit.messages.size() + fit.dropped.size() == messages.size());
        for (const auto& m : fit.messages) require(llmfast::utf8::is_valid(m.content) && m.content.size() <= options.max_bytes);
        require(!fit.messages.empty() && fit.messages[0].role == "system");
        std::size_t total = 3;  // reply overhead
        for (const auto& m : fit.messages) total += 3 + counter.count(m.role) + counter.count(m.content);
        require(total == fit.tokens);
    } catch (const llmfast::Error& e) {
        require(e.code() == llmfast::ErrorCode::InvalidUtf8 || e.code() == llmfast::ErrorCode::BudgetTooSmall);
        if (e.code() == llmfast::ErrorCode::InvalidUtf8) {
            bool all_valid = true;
            for (const auto& m : messages) all_valid = all_valid && llmfast::utf8::is_valid(m.content);
            require(!all_valid && !repair);
        } else {
            // The mandatory part: reply + system messages (content cut to max_bytes) + the newest
            // turn's per-message overheads and roles (their contents can shrink to nothing).
            std::size_t mandatory = 3, newest_turn_start = 1;
            for (std::size_t i = 1; i < messages.size(); ++i)
                if (messages[i].role == "user") newest_turn_start = i;
            for (std::size_t i = 0; i < messages.size(); ++i) {
                const auto& m = messages[i];
                const std::string content =
                    repair ? llmfast::utf8::repair(m.content) : m.content;
                if (m.role == "system") {
                    const std::string kept = content.size() <= options.max_bytes
                                                 ? content
                                                 : truncator.truncate(content, static_cast<std::size_t>(-1),
                                                                      llmfast::TruncateStrategy::Middle).text;
                    mandatory += 3 + counter.count(m.role) + counter.count(kept);
                } else if (i >= newest_turn_start) {
                    mandatory += 3 + counter.count(m.role);
                }
            }
            require(mandatory > budget);
        }
    }
    return 0;
}
