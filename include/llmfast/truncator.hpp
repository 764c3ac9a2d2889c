// llmfast/truncator.hpp — cut a text or a chat history to a token budget, never over it, never
// through a character.
//
// `Truncator::truncate(text, budget, strategy)` keeps the head, the tail, or both ends (`Middle`) of
// `text`, with a marker ("…" by default) where text was cut; the marker's tokens count toward the
// budget. The result never exceeds `budget` as the `TokenCounter` counts it (it is verified with the
// counter before it is returned), never splits a UTF-8 sequence, and a cut moves back (head) or
// forward (tail) by up to `boundary_window` bytes to land after a line break, else after a sentence
// end (。！？；.!?;), else at a space. The chapter's sketch estimated 2 characters per token and cut by
// characters; in UTF-8 bytes that splits characters and overshoots budgets.
//
//     llmfast::Truncator truncator;                              // estimating counter
//     auto cut = truncator.truncate(log_text, 2000, llmfast::TruncateStrategy::Tail);
//     // cut.text == "…" + the last lines of log_text; cut.tokens <= 2000
//
//     std::vector<llmfast::ChatMessage> history = {{"system", "..."}, {"user", "..."}, ...};
//     auto fit = truncator.fit_messages(history, 4096);        // fit.messages, fit.dropped, fit.shortened
//
// A text that fits — its count is <= the budget and it has at most `TruncatorOptions::max_bytes`
// bytes — is returned unchanged (`truncated == false`), under every strategy, whatever its length.
// Otherwise the result is cut: it has at most `max_bytes` bytes, marker included (a token budget
// alone does not bound bytes: the estimator prices any whitespace run at 0.5 token, see estimating_token_counter.hpp,
// so set `max_bytes` for untrusted input), and it is empty only when not even one character fits
// next to the marker (checked with the counter).
//
// Cost is proportional to what is kept, not to the input: the text is priced in pieces of about
// `piece_bytes` bytes (split just before a space or line break, where token counts add up) from the
// end that is kept, until the budget (or the byte cap) is reached; only the last piece is bisected,
// and the assembled result is counted once more to verify it (if the counter disagrees with the
// piecewise sum, the target shrinks by the excess and the cut is redone). Whether the text fits is
// settled exactly: by counting it whole, or — for a counter that declares itself monotone (see
// `TokenCounter` in token_counter.hpp; `EstimatingTokenCounter` does) — by counting a prefix (a suffix for
// Tail) that alone exceeds the budget, grown by doubling from what was priced. So with the estimator
// truncating 10 MB to 2 000 tokens reads a few times the ~10 KB it keeps; with a counter that is not
// monotone (`BpeTokenizer`) a text of at most `max_bytes` bytes is counted whole (O(n)): set
// `max_bytes` to bound that too. Only the bytes read are checked for UTF-8 validity, unless
// `TruncatorOptions::check_whole_input` is set.
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
// throws for a small budget or byte cap: when not even one character fits next to the marker (in
// tokens or in `max_bytes`) it returns an empty text. `fit_messages` throws `Error(BudgetTooSmall)`
// when the system messages, or the newest turn's per-message overheads, cannot fit the budget.
// `fit_messages` also cuts each message content longer than `max_bytes` to that many bytes (with
// `shorten_strategy`; reported in `shortened`), the system messages' included, before it fits the
// budget.
#pragma once

#include <llmfast/version.hpp>

#include <llmfast/detail/text_scan.hpp>
#include <llmfast/error.hpp>
#include <llmfast/estimating_token_counter.hpp>
#include <llmfast/token_counter.hpp>
#include <llmfast/utf8.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

LLMFAST_BEGIN_NAMESPACE

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
    /// The most bytes a result may have, marker included. A token budget alone does not bound bytes
    /// (the estimator prices any whitespace run at 0.5 token: see estimating_token_counter.hpp), so set this for
    /// untrusted input. A text longer than this is cut even when its tokens fit; never splits a
    /// character. fit_messages applies it to each message's content. Default: no limit.
    std::size_t max_bytes = static_cast<std::size_t>(-1);
};

/// The result of `truncate`.
struct Truncation {
    std::string text;
    std::size_t tokens = 0;  ///< `counter.count(text)`, <= the budget
    bool truncated = false;  ///< false exactly when the whole text fit (tokens and max_bytes) and is returned unchanged
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
template <class Counter = EstimatingTokenCounter>
class Truncator {
    static_assert(TokenCounter<Counter>,
                  "llmfast::Truncator<Counter>: Counter must model llmfast::TokenCounter — it needs "
                  "`count(std::string_view) const` returning something convertible to std::size_t");

public:
    using Options = TruncatorOptions;

    explicit Truncator(TruncatorOptions options = {}, Counter counter = {})
        : options_(std::move(options)), counter_(std::move(counter)) {
        if (!utf8::is_valid(options_.marker))
            throw Error(ErrorCode::InvalidArgument,
                        fmt::format("TruncatorOptions::marker is not valid UTF-8 (at byte {})",
                                    utf8::find_invalid(options_.marker)));
        if (options_.piece_bytes < 16)
            throw Error(ErrorCode::InvalidArgument,
                        fmt::format("TruncatorOptions::piece_bytes must be >= 16 (got {})", options_.piece_bytes));
        if (!(options_.head_share >= 0 && options_.head_share <= 1))
            throw Error(ErrorCode::InvalidArgument,
                        fmt::format("TruncatorOptions::head_share must be in [0, 1] (got {})", options_.head_share));
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
                    throw Error(ErrorCode::InvalidUtf8,
                                fmt::format("Truncator::fit_messages: message {} is not valid UTF-8", i));
        }

        const std::size_t n = messages.size();
        // The byte cap first: a content longer than max_bytes is cut to it (tokens alone do not bound
        // bytes), and counts as shortened.
        std::vector<std::string> new_content(n);
        std::vector<bool> shortened(n, false);
        const auto content = [&](std::size_t i) -> std::string_view {
            return shortened[i] ? std::string_view(new_content[i]) : std::string_view(messages[i].content);
        };
        for (std::size_t i = 0; i < n; ++i) {
            if (messages[i].content.size() <= options_.max_bytes) continue;
            new_content[i] = truncate(messages[i].content, static_cast<std::size_t>(-1), fit.shorten_strategy).text;
            shortened[i] = true;
        }
        std::vector<std::size_t> content_tokens(n), cost(n);
        std::vector<std::size_t> turn(n, 0);  // turn number of each non-system message
        std::size_t mandatory = fit.reply_overhead;
        std::size_t total = fit.reply_overhead;
        std::size_t turns = 0;
        bool any_turn = false;
        for (std::size_t i = 0; i < n; ++i) {
            content_tokens[i] = count(content(i));
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
            throw Error(ErrorCode::BudgetTooSmall,
                        fmt::format("Truncator::fit_messages: the system messages alone need {} tokens, the "
                                    "budget is {}",
                                    mandatory, budget));

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
        for (std::size_t i = 0; i < n && total > budget; ++i) {
            if (!keep[i] || messages[i].role == fit.system_role || content_tokens[i] == 0) continue;
            const std::size_t excess = total - budget;
            const std::size_t allowed = content_tokens[i] > excess ? content_tokens[i] - excess : 0;
            Truncation cut = truncate(content(i), allowed, fit.shorten_strategy);
            total = total - content_tokens[i] + cut.tokens;
            new_content[i] = std::move(cut.text);
            shortened[i] = true;
        }
        if (total > budget)
            throw Error(ErrorCode::BudgetTooSmall,
                        fmt::format("Truncator::fit_messages: the newest turn's message overheads need more than "
                                    "the budget of {} tokens",
                                    budget));

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
            throw Error(ErrorCode::InvalidUtf8,
                        fmt::format("Truncator::truncate: input is not valid UTF-8 (at byte {})", utf8::find_invalid(text)));
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

    // Prices `text` piece by piece from its start (forward) or its end (backward) until `limit`
    // tokens are used. `byte_limit`: the scan also stops (as if over) at the first piece that would
    // keep more than that many bytes.
    template <bool Backward>
    Scan scan_pieces(std::string_view text, std::size_t limit, std::size_t byte_limit) const {
        Scan scan;
        std::size_t pos = Backward ? text.size() : 0, used = 0;
        scan.checkpoints.push_back({pos, 0});
        while (Backward ? pos > 0 : pos < text.size()) {
            const std::size_t next = Backward ? piece_start(text, pos, 0) : piece_end(text, pos);
            const std::size_t begin = Backward ? next : pos;
            const std::size_t end = Backward ? pos : next;
            const std::string_view piece = text.substr(begin, end - begin);
            validate(piece);
            const std::size_t c = count(piece);
            if (used + c > limit || (Backward ? text.size() - begin : end) > byte_limit) {
                scan.over = next;
                return scan;
            }
            used += c;
            pos = next;
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
        // Bisect inside the piece [base.pos, end): lo fits, hi does not. Each probe prices the bytes
        // from the checkpoint to mid in one count (pricing only the bytes beyond lo would round up
        // once per probe and lose up to a token each time), so the bisection costs a few pieces.
        std::size_t lo = base.pos, hi = end;
        while (true) {
            std::size_t mid = utf8::floor_boundary(text, lo + (hi - lo) / 2);
            if (mid <= lo) mid = utf8::ceil_boundary(text, lo + 1);
            if (mid >= hi) break;
            if (base.used + count(text.substr(base.pos, mid - base.pos)) <= target) {
                lo = mid;
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
        // prices the bytes from mid to the checkpoint in one count (see prefix_for).
        std::size_t lo = begin, hi = base.pos;
        while (true) {
            std::size_t mid = utf8::ceil_boundary(text, lo + (hi - lo + 1) / 2);
            if (mid >= hi) mid = utf8::floor_boundary(text, hi - 1);
            if (mid <= lo) break;
            if (base.used + count(text.substr(mid, base.pos - mid)) <= target) {
                hi = mid;
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

    // Bytes of text a cut result may keep next to the marker.
    std::size_t text_byte_cap() const noexcept {
        return options_.max_bytes > options_.marker.size() ? options_.max_bytes - options_.marker.size() : 0;
    }

    Truncation truncate_valid(std::string_view text, std::size_t budget, TruncateStrategy strategy) const {
        const Truncation nothing{{}, 0, true};  // not even one character fits next to the marker
        if (text.empty()) return {};
        // Price the text from the end(s) that will be kept, up to the budget (and the byte cap).
        const std::size_t byte_cap = text_byte_cap();
        Scan forward, backward;
        bool whole_scanned = false;
        switch (strategy) {
            case TruncateStrategy::Head:
                forward = scan_pieces<false>(text, budget, byte_cap);
                whole_scanned = forward.complete();
                break;
            case TruncateStrategy::Tail:
                backward = scan_pieces<true>(text, budget, byte_cap);
                whole_scanned = backward.complete();
                break;
            case TruncateStrategy::Middle:
                // Each end priced up to its share; if the two scans meet, all of the text was priced.
                forward = scan_pieces<false>(text, head_tokens(budget), byte_cap);
                backward = scan_pieces<true>(text, budget - head_tokens(budget), byte_cap);
                whole_scanned = forward.complete() || backward.complete() ||
                                backward.checkpoints.back().pos <= forward.checkpoints.back().pos;
                break;
        }
        // A text that fits (tokens and bytes) is returned unchanged, whatever the scans found: a
        // piecewise sum can overestimate without bound (a long whitespace run costs 0.5 token whole
        // but 1 per piece), so only a count of the whole text, or for a monotone counter a prefix or
        // suffix that alone exceeds the budget, settles it.
        if (text.size() <= options_.max_bytes) {
            std::size_t whole = 0;
            if (whole_fits(text, budget, strategy, forward, backward, whole_scanned, whole))
                return {std::string(text), whole, false};
        }

        if (marker_tokens_ < budget) {
            std::size_t target = budget - marker_tokens_;
            for (int attempt = 0; attempt < 24 && target > 0; ++attempt) {
                std::string out = assemble(text, forward, backward, target, strategy);
                if (out.empty()) break;
                const std::size_t tokens = count(out);
                if (tokens <= budget) return {std::move(out), tokens, true};
                // The counter disagrees with the piecewise sum: shrink by the excess (at least 1, and
                // faster after a few attempts so a pathological counter still terminates quickly).
                const std::size_t excess = std::max<std::size_t>(tokens - budget, attempt < 4 ? 1 : target / 2);
                target = target > excess ? target - excess : 0;
            }
        }
        // The pieces are priced one by one, each rounded up: one character may still fit next to the
        // marker although the sums say not ("字" and "…" cost 2 each alone, "字…" costs 3). Try it.
        return smallest(text, budget, strategy);
    }

    // Whether all of `text` costs <= budget (its count in `whole` then). Exact for every counter.
    bool whole_fits(std::string_view text, std::size_t budget, TruncateStrategy strategy, const Scan& forward,
                    const Scan& backward, bool whole_scanned, std::size_t& whole) const {
        if (!whole_scanned) {
            if constexpr (is_monotone_token_counter<Counter>) {
                // A part that alone exceeds the budget proves the whole does too; grow the part from
                // the kept end (what the scans priced) by doubling until it exceeds or is everything.
                const bool from_tail = strategy == TruncateStrategy::Tail;
                // Start with what the scan priced up to the end of the first piece that went over.
                const std::size_t over = from_tail ? backward.over : forward.over;
                std::size_t length = over == std::string_view::npos ? text.size()
                                     : from_tail                    ? text.size() - over
                                                                    : over;
                length = std::max(length, options_.piece_bytes);
                while (length < text.size()) {
                    const std::string_view part =
                        from_tail ? text.substr(utf8::floor_boundary(text, text.size() - length))
                                  : text.substr(0, utf8::ceil_boundary(text, length));
                    validate(part);
                    if (count(part) > budget) return false;
                    length = length > text.size() / 2 ? text.size() : length * 2;
                }
            }
            validate(text);  // every byte is about to be read
        }
        whole = count(text);
        return whole <= budget;
    }

    // The one-character results (first character + marker, marker + last character), if one fits.
    Truncation smallest(std::string_view text, std::size_t budget, TruncateStrategy strategy) const {
        const std::string& marker = options_.marker;
        const std::size_t first = utf8::ceil_boundary(text, 1);
        const std::size_t last = utf8::floor_boundary(text, text.size() - 1);
        std::string candidates[2];
        if (strategy != TruncateStrategy::Tail && first <= text_byte_cap()) {
            validate(text.substr(0, first));
            candidates[0] = std::string(text.substr(0, first)) + marker;
        }
        if (strategy != TruncateStrategy::Head && text.size() - last <= text_byte_cap()) {
            validate(text.substr(last));
            candidates[1] = marker + std::string(text.substr(last));
        }
        for (std::string& candidate : candidates) {
            if (candidate.empty()) continue;
            const std::size_t tokens = count(candidate);
            if (tokens <= budget) return {std::move(candidate), tokens, true};
        }
        return {{}, 0, true};
    }

    std::size_t head_tokens(std::size_t target) const noexcept {
        const double share = static_cast<double>(target) * options_.head_share;
        return share >= static_cast<double>(target) ? target : static_cast<std::size_t>(share);
    }

    // head/tail/middle text for a text budget of `target` tokens; empty when no character fits.
    std::string assemble(std::string_view text, const Scan& forward, const Scan& backward, std::size_t target,
                         TruncateStrategy strategy) const {
        const std::string& marker = options_.marker;
        const std::size_t byte_cap = text_byte_cap();
        std::string out;
        switch (strategy) {
            case TruncateStrategy::Head: {
                std::size_t cut = std::min(prefix_for(text, forward, target), utf8::floor_boundary(text, byte_cap));
                if (cut == 0) return {};
                cut = head_boundary(text, cut, 0);
                out.reserve(cut + marker.size());
                out.append(text.substr(0, cut));
                out.append(marker);
                return out;
            }
            case TruncateStrategy::Tail: {
                std::size_t start = suffix_for(text, backward, 0, target);
                if (byte_cap < text.size()) start = std::max(start, utf8::ceil_boundary(text, text.size() - byte_cap));
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
                // The byte cap is shared like the tokens: the head gets its share, the tail the rest.
                const auto head_bytes = static_cast<std::size_t>(static_cast<double>(byte_cap) * options_.head_share);
                cut = std::min(cut, utf8::floor_boundary(text, std::min(head_bytes, byte_cap)));
                std::size_t start = suffix_for(text, backward, cut, target - head_target);
                cut = head_boundary(text, cut, 0);
                start = tail_boundary(text, start, text.size());
                if (start < cut) start = cut;
                if (byte_cap - cut < text.size() - start)
                    start = std::max(start, utf8::ceil_boundary(text, text.size() - (byte_cap - cut)));
                if (cut == 0 && start >= text.size()) return {};
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

LLMFAST_END_NAMESPACE
