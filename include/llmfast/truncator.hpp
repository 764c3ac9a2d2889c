// llmfast/truncator.hpp — cut a text or a chat history to a token budget, never over it, never
// through a character.
//
// `Truncator::truncate(text, budget, strategy)` keeps the head, the tail, or both ends (`Middle`) of
// `text`, with a marker ("…" by default) where text was cut; the marker's tokens count toward the
// budget. The result never exceeds `budget` as the `TokenCounter` counts it (it is verified with the
// counter before it is returned), never splits a UTF-8 sequence, and a cut moves back (head) or
// forward (tail) by up to `boundary_window` bytes to land after a line break, else after a sentence
// end (。！？；.!?;), else at a space. The seed estimated 2 characters per token and cut by
// characters; in UTF-8 bytes that splits characters and overshoots budgets.
//
//     llmfast::Truncator truncator;                              // estimating counter
//     auto cut = truncator.truncate(log_text, 2000, llmfast::TruncateStrategy::Tail);
//     // cut.text == "…" + the last lines of log_text; cut.tokens <= 2000
//
//     std::vector<llmfast::ChatMessage> history = {{"system", "..."}, {"user", "..."}, ...};
//     auto fit = truncator.fit_messages(history, 4096);        // fit.messages, fit.dropped, fit.shortened
//
// Cost is proportional to what is kept, not to the input: the text is priced in pieces of about
// `piece_bytes` bytes (split just before a space or line break, where token counts add up) from the
// end that is kept, until the budget is reached; only the last piece is bisected, and the assembled
// result is counted once more to verify it (if the counter disagrees with the piecewise sum, the
// target shrinks by the excess and the cut is redone). Truncating 10 MB to 2 000 tokens prices about
// twice the ~10 KB it keeps. A text that fits is returned unchanged; whether it fits is settled by
// counting it whole only once the pieces priced cover at least half of it. Consequently only the
// bytes it reads are checked for UTF-8 validity, unless `TruncatorOptions::check_whole_input` is set.
//
// `fit_messages(messages, budget, options)` fits a chat history: it keeps every system message,
// drops the oldest whole turns first (a turn is a user message and the replies after it, so an
// assistant reply is never left without its user message), then shortens the oldest kept messages
// if the newest turn alone is too long, and reports what it dropped and shortened. Each message costs
// `per_message_overhead` tokens plus its role and content, and the reply costs `reply_overhead`, as
// the OpenAI chat format does (3 and 3); both are configurable.
//
// Template parameter: any `llmfast::TokenCounter` (default `EstimatingTokenCounter`; the exact
// `BpeTokenizer` works the same way). The counter need not be monotone or additive: the result is
// verified, and shrunk, against the counter itself.
//
// Thread-safety: a `Truncator` is immutable after construction; its const calls may run concurrently.
//
// Errors: the constructor throws `Error(InvalidArgument)` for a marker that is not valid UTF-8,
// `piece_bytes < 16` or `head_share` outside [0, 1]. `truncate` and `fit_messages` throw
// `Error(InvalidUtf8)` when a byte they read is not valid UTF-8, unless `repair_invalid_utf8` is set
// (then the input is repaired with U+FFFD first, which costs a pass over all of it). `truncate` never
// throws for a small budget: when not even one character fits next to the marker it returns an empty
// text. `fit_messages` throws `Error(BudgetTooSmall)` when the system messages, or the newest turn's
// per-message overheads, cannot fit the budget.
#pragma once

#include <llmfast/detail/text_scan.hpp>
#include <llmfast/error.hpp>
#include <llmfast/tokens.hpp>
#include <llmfast/utf8.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace llmfast {

enum class TruncateStrategy : std::uint8_t {
    Head,    ///< keep the beginning: text + marker
    Tail,    ///< keep the end: marker + text
    Middle,  ///< keep both ends: head + marker + tail
};

struct TruncatorOptions {
    std::string marker = "\xE2\x80\xA6";  ///< "…", placed where text was cut; its tokens count
    std::size_t boundary_window = 160;    ///< bytes a cut may move to land on a line/sentence/word boundary
    double head_share = 0.5;              ///< Middle: share of the text budget given to the head (0..1)
    std::size_t piece_bytes = 256;        ///< size of the pieces the text is priced in (>= 16)
    bool repair_invalid_utf8 = false;     ///< replace ill-formed bytes with U+FFFD instead of throwing
    bool check_whole_input = false;       ///< validate all of the input, not only the bytes read (O(n))
};

/// The result of `truncate`.
struct Truncation {
    std::string text;
    std::size_t tokens = 0;  ///< `counter.count(text)`, <= the budget
    bool truncated = false;  ///< false when the whole text fit and is returned unchanged
};

struct ChatMessage {
    std::string role;  ///< "system", "user", "assistant", "tool", ...
    std::string content;
};

struct FitOptions {
    std::size_t per_message_overhead = 3;  ///< tokens each message costs beyond its content (OpenAI: 3)
    std::size_t reply_overhead = 3;        ///< tokens priming the reply (OpenAI: 3)
    bool count_role = true;                ///< also count the role's tokens
    TruncateStrategy shorten_strategy = TruncateStrategy::Middle;  ///< how a kept message is shortened
    std::string system_role = "system";
    std::string user_role = "user";  ///< a turn starts at each message with this role
};

/// The result of `fit_messages`.
struct FitResult {
    std::vector<ChatMessage> messages;    ///< kept messages, in their original order
    std::vector<std::size_t> dropped;     ///< indices (into the input) of dropped messages, ascending
    std::vector<std::size_t> shortened;   ///< indices of kept messages whose content was truncated
    std::size_t tokens = 0;               ///< total, overheads included; <= the budget
};

/// Truncation to a token budget; see the header comment.
template <TokenCounter Counter = EstimatingTokenCounter>
class Truncator {
public:
    explicit Truncator(TruncatorOptions options = {}, Counter counter = {})
        : options_(std::move(options)), counter_(std::move(counter)) {
        if (!utf8::is_valid(options_.marker))
            throw Error(ErrorCode::InvalidArgument, "TruncatorOptions::marker is not valid UTF-8");
        if (options_.piece_bytes < 16) throw Error(ErrorCode::InvalidArgument, "TruncatorOptions::piece_bytes must be >= 16");
        if (!(options_.head_share >= 0 && options_.head_share <= 1))
            throw Error(ErrorCode::InvalidArgument, "TruncatorOptions::head_share must be in [0, 1]");
        marker_tokens_ = count(options_.marker);
    }

    [[nodiscard]] const TruncatorOptions& options() const noexcept { return options_; }
    [[nodiscard]] const Counter& counter() const noexcept { return counter_; }

    /// `text` cut to at most `budget` tokens (see the header comment). Throws Error(InvalidUtf8) for
    /// ill-formed bytes it reads unless `repair_invalid_utf8`.
    [[nodiscard]] Truncation truncate(std::string_view text, std::size_t budget,
                                      TruncateStrategy strategy = TruncateStrategy::Head) const {
        if (options_.check_whole_input && !utf8::is_valid(text)) return invalid(text, budget, strategy);
        try {
            return truncate_valid(text, budget, strategy);
        } catch (const InvalidSeen&) {
            return invalid(text, budget, strategy);
        }
    }

    /// A chat history fitted to `budget` tokens (see the header comment).
    [[nodiscard]] FitResult fit_messages(std::span<const ChatMessage> messages, std::size_t budget,
                                         const FitOptions& fit = {}) const {
        FitResult result;
        if (messages.empty()) return result;
        std::vector<ChatMessage> repaired;
        if (options_.repair_invalid_utf8) {
            repaired.reserve(messages.size());
            for (const ChatMessage& m : messages) repaired.push_back({utf8::repair(m.role), utf8::repair(m.content)});
            messages = repaired;
        } else {
            for (std::size_t i = 0; i < messages.size(); ++i)
                if (!utf8::is_valid(messages[i].role) || !utf8::is_valid(messages[i].content))
                    throw Error(ErrorCode::InvalidUtf8, "fit_messages: message " + std::to_string(i) + " is not valid UTF-8");
        }

        const std::size_t n = messages.size();
        std::vector<std::size_t> content_tokens(n), cost(n);
        std::vector<std::size_t> turn(n, 0);  // turn number of each non-system message
        std::size_t mandatory = fit.reply_overhead;
        std::size_t total = fit.reply_overhead;
        std::size_t turns = 0;
        bool any_turn = false;
        for (std::size_t i = 0; i < n; ++i) {
            content_tokens[i] = count(messages[i].content);
            cost[i] = fit.per_message_overhead + (fit.count_role ? count(messages[i].role) : 0) + content_tokens[i];
            total += cost[i];
            if (messages[i].role == fit.system_role) {
                mandatory += cost[i];
                continue;
            }
            if (messages[i].role == fit.user_role && any_turn) ++turns;
            any_turn = true;
            turn[i] = turns;
        }
        if (mandatory > budget)
            throw Error(ErrorCode::BudgetTooSmall, "fit_messages: the system messages alone need " +
                                                       std::to_string(mandatory) + " tokens, the budget is " +
                                                       std::to_string(budget));

        // Drop the oldest whole turns while over budget, always keeping the newest turn.
        std::vector<bool> keep(n, true);
        std::size_t first_turn = 0;
        while (total > budget && first_turn < turns) {
            for (std::size_t i = 0; i < n; ++i)
                if (keep[i] && messages[i].role != fit.system_role && turn[i] == first_turn) {
                    keep[i] = false;
                    total -= cost[i];
                }
            ++first_turn;
        }

        // Still over: shorten kept messages, oldest first, each by what is still in excess.
        std::vector<std::string> new_content(n);
        std::vector<bool> shortened(n, false);
        for (std::size_t i = 0; i < n && total > budget; ++i) {
            if (!keep[i] || messages[i].role == fit.system_role || content_tokens[i] == 0) continue;
            const std::size_t excess = total - budget;
            const std::size_t allowed = content_tokens[i] > excess ? content_tokens[i] - excess : 0;
            Truncation cut = truncate(messages[i].content, allowed, fit.shorten_strategy);
            total = total - content_tokens[i] + cut.tokens;
            new_content[i] = std::move(cut.text);
            shortened[i] = true;
        }
        if (total > budget)
            throw Error(ErrorCode::BudgetTooSmall, "fit_messages: the newest turn's message overheads need more than the budget of " +
                                                       std::to_string(budget) + " tokens");

        for (std::size_t i = 0; i < n; ++i) {
            if (!keep[i]) {
                result.dropped.push_back(i);
                continue;
            }
            if (shortened[i]) {
                result.messages.push_back({messages[i].role, std::move(new_content[i])});
                result.shortened.push_back(i);
            } else {
                result.messages.push_back(messages[i]);
            }
        }
        result.tokens = total;
        return result;
    }

private:
    struct InvalidSeen {};  // internal signal: a byte read was ill-formed

    // A priced piece boundary: the text in [0, pos) (forward) or [pos, n) (backward) costs `used`
    // tokens by the piecewise sum.
    struct Checkpoint {
        std::size_t pos = 0;
        std::size_t used = 0;
    };

    std::size_t count(std::string_view text) const { return static_cast<std::size_t>(counter_.count(text)); }

    static void validate(std::string_view piece) {
        if (!detail::is_valid_utf8_fast(piece)) throw InvalidSeen{};
    }

    Truncation invalid(std::string_view text, std::size_t budget, TruncateStrategy strategy) const {
        if (!options_.repair_invalid_utf8)
            throw Error(ErrorCode::InvalidUtf8, "Truncator: input is not valid UTF-8 at byte " +
                                                    std::to_string(utf8::find_invalid(text)));
        const std::string repaired = utf8::repair(text);
        return truncate_valid(repaired, budget, strategy);
    }

    static bool is_break(char c) noexcept { return c == ' ' || c == '\n' || c == '\t'; }

    // End of the forward piece starting at `pos`: just before a space or line break near
    // pos + piece_bytes (where counts add up), else a code-point boundary.
    std::size_t piece_end(std::string_view text, std::size_t pos) const noexcept {
        const std::size_t target = pos + options_.piece_bytes;
        if (target >= text.size()) return text.size();
        const std::size_t limit = std::min(text.size(), target + 64);
        for (std::size_t j = target; j < limit; ++j)
            if (is_break(text[j])) return j;
        return utf8::ceil_boundary(text, target);
    }

    // Start of the backward piece ending at `end`, the mirror of piece_end.
    std::size_t piece_start(std::string_view text, std::size_t end, std::size_t floor) const noexcept {
        if (end <= floor + options_.piece_bytes) return floor;
        const std::size_t target = end - options_.piece_bytes;
        const std::size_t limit = target > floor + 64 ? target - 64 : floor;
        for (std::size_t j = target; j > limit; --j)
            if (is_break(text[j])) return j;
        const std::size_t b = utf8::floor_boundary(text, target);
        return b > floor ? b : floor;
    }

    // Pieces priced from one end while the running sum stays <= a limit. Forward: checkpoints ascend
    // from {0, 0}; backward: they descend from {n, 0}. `over` is the far end of the first piece that
    // did not fit (forward: its end, backward: its start), or npos when the scan reached the other end.
    struct Scan {
        std::vector<Checkpoint> checkpoints;
        std::size_t over = std::string_view::npos;
        [[nodiscard]] bool complete() const noexcept { return over == std::string_view::npos; }
    };

    Scan scan_forward(std::string_view text, std::size_t limit) const {
        Scan scan;
        scan.checkpoints.push_back({0, 0});
        std::size_t pos = 0, used = 0;
        while (pos < text.size()) {
            const std::size_t end = piece_end(text, pos);
            const std::string_view piece = text.substr(pos, end - pos);
            validate(piece);
            const std::size_t c = count(piece);
            if (used + c > limit) {
                scan.over = end;
                return scan;
            }
            used += c;
            pos = end;
            scan.checkpoints.push_back({pos, used});
        }
        return scan;
    }

    Scan scan_backward(std::string_view text, std::size_t limit) const {
        Scan scan;
        scan.checkpoints.push_back({text.size(), 0});
        std::size_t pos = text.size(), used = 0;
        while (pos > 0) {
            const std::size_t begin = piece_start(text, pos, 0);
            const std::string_view piece = text.substr(begin, pos - begin);
            validate(piece);
            const std::size_t c = count(piece);
            if (used + c > limit) {
                scan.over = begin;
                return scan;
            }
            used += c;
            pos = begin;
            scan.checkpoints.push_back({pos, used});
        }
        return scan;
    }

    // The largest prefix length (piecewise-priced) whose cost is <= target, from a forward scan
    // whose limit was >= target. Only the piece where the target falls is bisected.
    std::size_t prefix_for(std::string_view text, const Scan& scan, std::size_t target) const {
        std::size_t k = 0;
        while (k + 1 < scan.checkpoints.size() && scan.checkpoints[k + 1].used <= target) ++k;
        const Checkpoint base = scan.checkpoints[k];
        if (base.pos == text.size()) return base.pos;
        const std::size_t end = k + 1 < scan.checkpoints.size() ? scan.checkpoints[k + 1].pos : scan.over;
        // Bisect inside the piece [base.pos, end): lo fits, hi does not. Each probe prices only the
        // bytes beyond lo (piecewise, like the scan), so the bisection costs about one piece.
        std::size_t lo = base.pos, hi = end, used = base.used;
        while (true) {
            std::size_t mid = utf8::floor_boundary(text, lo + (hi - lo) / 2);
            if (mid <= lo) mid = utf8::ceil_boundary(text, lo + 1);
            if (mid >= hi) break;
            const std::size_t c = count(text.substr(lo, mid - lo));
            if (used + c <= target) {
                lo = mid;
                used += c;
            } else {
                hi = mid;
            }
        }
        return lo;
    }

    // The smallest suffix start >= floor whose piecewise cost is <= target, from a backward scan
    // whose limit was >= target.
    std::size_t suffix_for(std::string_view text, const Scan& scan, std::size_t floor, std::size_t target) const {
        std::size_t k = 0;
        while (k + 1 < scan.checkpoints.size() && scan.checkpoints[k + 1].used <= target &&
               scan.checkpoints[k + 1].pos >= floor)
            ++k;
        const Checkpoint base = scan.checkpoints[k];
        if (base.pos <= floor) return base.pos;
        std::size_t begin = k + 1 < scan.checkpoints.size() ? scan.checkpoints[k + 1].pos
                                                            : (scan.complete() ? 0 : scan.over);
        begin = std::max(begin, floor);
        if (base.used + count(text.substr(begin, base.pos - begin)) <= target) return begin;
        // Bisect inside [begin, base.pos): a suffix from hi fits, from lo it does not; each probe
        // prices only the bytes before hi.
        std::size_t lo = begin, hi = base.pos, used = base.used;
        while (true) {
            std::size_t mid = utf8::ceil_boundary(text, lo + (hi - lo + 1) / 2);
            if (mid >= hi) mid = utf8::floor_boundary(text, hi - 1);
            if (mid <= lo) break;
            const std::size_t c = count(text.substr(mid, hi - mid));
            if (used + c <= target) {
                hi = mid;
                used += c;
            } else {
                lo = mid;
            }
        }
        return hi;
    }

    // Moves a head cut back to a boundary within the window: after a line break, else after a
    // sentence end, else before a space. `floor` is the lowest allowed cut.
    std::size_t head_boundary(std::string_view text, std::size_t cut, std::size_t floor) const {
        if (cut >= text.size() || cut <= floor) return cut;
        // The window never takes more than half of what is kept.
        const std::size_t low = cut - std::min({cut - floor, options_.boundary_window, (cut - floor) / 2});
        const std::string_view view = text.substr(0, cut);
        for (std::size_t j = cut; j > low; --j)
            if (view[j - 1] == '\n') return j;
        for (std::size_t j = cut; j > low; --j) {
            const std::size_t e = detail::sentence_end_at(view, j - 1);
            if (e != 0 && e <= cut) return e;
        }
        for (std::size_t j = cut; j > low; --j)
            if (view[j - 1] == ' ') return j - 1 > low ? j - 1 : cut;
        return cut;
    }

    // Moves a tail cut forward to a boundary within the window: after a line break, else after a
    // sentence end (and its spaces), else after a space. `ceil` is the highest allowed start.
    std::size_t tail_boundary(std::string_view text, std::size_t start, std::size_t ceil) const {
        if (start == 0 || start >= ceil) return start;
        if (text[start - 1] == '\n') return start;  // already at a line start
        const std::size_t high = start + std::min({ceil - start, options_.boundary_window, (ceil - start) / 2});
        for (std::size_t j = start; j < high; ++j)
            if (text[j] == '\n') return j + 1;
        for (std::size_t j = start; j < high; ++j) {
            const std::size_t e = detail::sentence_end_at(text, j);
            if (e != 0 && e <= high) {
                std::size_t s = e;
                while (s < high && (text[s] == ' ' || text[s] == '\t')) ++s;
                return s;
            }
        }
        for (std::size_t j = start; j < high; ++j)
            if (text[j] == ' ') return j + 1;
        return start;
    }

    Truncation truncate_valid(std::string_view text, std::size_t budget, TruncateStrategy strategy) const {
        const Truncation nothing{{}, 0, true};  // not even one character fits next to the marker
        if (text.empty()) return {};
        if (budget == 0) return nothing;
        // Price the text from the end(s) that will be kept, up to the budget. If a scan reaches the
        // other end, or what is left unpriced is no larger than what was priced (a piecewise sum can
        // overestimate: a word split between pieces), count the whole text once to know whether it
        // fits. Cost ~ what is kept.
        Scan forward, backward;
        bool whole_scanned = false;
        switch (strategy) {
            case TruncateStrategy::Head:
                forward = scan_forward(text, budget);
                whole_scanned = forward.complete();
                break;
            case TruncateStrategy::Tail:
                backward = scan_backward(text, budget);
                whole_scanned = backward.complete();
                break;
            case TruncateStrategy::Middle:
                // Each end priced up to its share; if the two scans meet, all of the text was priced.
                forward = scan_forward(text, head_tokens(budget));
                backward = scan_backward(text, budget - head_tokens(budget));
                whole_scanned = forward.complete() || backward.complete() ||
                                backward.checkpoints.back().pos <= forward.checkpoints.back().pos;
                break;
        }
        if (!whole_scanned) {
            // A piecewise sum can overestimate a lot (a counter whose tokens span piece borders): if
            // what was not priced is no larger than what was, counting all of it stays ~ kept.
            const std::size_t head_end = forward.checkpoints.empty() ? 0 : forward.checkpoints.back().pos;
            const std::size_t tail_begin = backward.checkpoints.empty() ? text.size() : backward.checkpoints.back().pos;
            const std::size_t unpriced = tail_begin > head_end ? tail_begin - head_end : 0;
            whole_scanned = unpriced <= text.size() - unpriced;
        }
        if (whole_scanned) {
            const std::size_t whole = count(text);
            if (whole <= budget) return {std::string(text), whole, false};
        }
        if (marker_tokens_ >= budget) return nothing;

        std::size_t target = budget - marker_tokens_;
        for (int attempt = 0; attempt < 24 && target > 0; ++attempt) {
            std::string out = assemble(text, forward, backward, target, strategy);
            if (out.empty()) return nothing;
            const std::size_t tokens = count(out);
            if (tokens <= budget) return {std::move(out), tokens, true};
            // The counter disagrees with the piecewise sum: shrink by the excess (at least 1, and
            // faster after a few attempts so a pathological counter still terminates quickly).
            const std::size_t excess = std::max<std::size_t>(tokens - budget, attempt < 4 ? 1 : target / 2);
            target = target > excess ? target - excess : 0;
        }
        return nothing;
    }

    std::size_t head_tokens(std::size_t target) const noexcept {
        const double share = static_cast<double>(target) * options_.head_share;
        return share >= static_cast<double>(target) ? target : static_cast<std::size_t>(share);
    }

    // head/tail/middle text for a text budget of `target` tokens; empty when no character fits.
    std::string assemble(std::string_view text, const Scan& forward, const Scan& backward, std::size_t target,
                         TruncateStrategy strategy) const {
        const std::string& marker = options_.marker;
        std::string out;
        switch (strategy) {
            case TruncateStrategy::Head: {
                std::size_t cut = prefix_for(text, forward, target);
                if (cut == 0) return {};
                cut = head_boundary(text, cut, 0);
                out.reserve(cut + marker.size());
                out.append(text.substr(0, cut));
                out.append(marker);
                return out;
            }
            case TruncateStrategy::Tail: {
                std::size_t start = suffix_for(text, backward, 0, target);
                if (start >= text.size()) return {};
                start = tail_boundary(text, start, text.size());
                out.reserve(text.size() - start + marker.size());
                out.append(marker);
                out.append(text.substr(start));
                return out;
            }
            case TruncateStrategy::Middle: {
                const std::size_t head_target = head_tokens(target);
                std::size_t cut = head_target == 0 ? 0 : prefix_for(text, forward, head_target);
                std::size_t start = suffix_for(text, backward, cut, target - head_target);
                if (cut == 0 && start >= text.size()) return {};
                cut = head_boundary(text, cut, 0);
                start = tail_boundary(text, start, text.size());
                if (start < cut) start = cut;
                out.reserve(cut + marker.size() + text.size() - start);
                out.append(text.substr(0, cut));
                out.append(marker);
                out.append(text.substr(start));
                return out;
            }
        }
        return out;
    }

    TruncatorOptions options_;
    Counter counter_;
    std::size_t marker_tokens_ = 0;
};

}  // namespace llmfast
