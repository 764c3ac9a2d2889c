// Fuzzes Truncator: any bytes and budgets give valid UTF-8 within the budget (or InvalidUtf8 when
// repair is off), in the right shape; fit_messages keeps its promises.
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

template <class Counter>
void check(const llmfast::Truncator<Counter>& truncator, std::string_view text, std::size_t budget,
           llmfast::TruncateStrategy strategy, bool repair) {
    const bool valid = llmfast::utf8::is_valid(text);
    try {
        const auto cut = truncator.truncate(text, budget, strategy);
        if (!llmfast::utf8::is_valid(cut.text)) std::abort();
        if (truncator.counter().count(cut.text) > budget || cut.tokens != truncator.counter().count(cut.text)) std::abort();
        if (!cut.truncated && cut.text != (valid ? std::string(text) : llmfast::utf8::repair(text))) std::abort();
        if (valid && cut.truncated && !cut.text.empty()) {
            const std::string_view marker = truncator.options().marker;
            const std::string_view out = cut.text;
            const auto split_ok = [&](std::size_t at) {
                return out.substr(at, marker.size()) == marker && starts_with(text, out.substr(0, at)) &&
                       ends_with(text, out.substr(at + marker.size()));
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
            if (!ok) std::abort();
        }
    } catch (const llmfast::Error& e) {
        if (e.code() != llmfast::ErrorCode::InvalidUtf8 || repair || valid) std::abort();
    }
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
    try {
        const auto fit = truncator.fit_messages(messages, budget);
        if (fit.tokens > budget) std::abort();
        if (fit.messages.size() + fit.dropped.size() != messages.size()) std::abort();
        for (const auto& m : fit.messages)
            if (!llmfast::utf8::is_valid(m.content)) std::abort();
        if (fit.messages.empty() || fit.messages[0].role != "system") std::abort();
    } catch (const llmfast::Error& e) {
        if (e.code() != llmfast::ErrorCode::InvalidUtf8 && e.code() != llmfast::ErrorCode::BudgetTooSmall) std::abort();
    }
    return 0;
}
