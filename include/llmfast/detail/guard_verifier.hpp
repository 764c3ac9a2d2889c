// llmfast/detail/guard_verifier.hpp — the semantic tier's verifier step as the hit guards implement
// it: after the index proposes a candidate above the similarity threshold, the verifier decides
// whether its answer may be served for the new prompt.
//
// The step's shape (what a later `HitVerifier` plugs into): per cached entry the verifier keeps
// `EntryData` (computed once, at insertion, outside locks); per lookup it keeps a `Query` (computed
// lazily, on the first candidate, outside locks); `accept(query, entry_data, similarity)` decides.
// Internal: users must not depend on anything here.
#pragma once

#include <llmfast/version.hpp>
#include <llmfast/hit_guards.hpp>

#include <optional>
#include <string_view>

LLMFAST_BEGIN_NAMESPACE
namespace detail {

class GuardVerifier {
public:
    using EntryData = GuardSignature;

    struct Query {
        std::string_view prompt;
        std::optional<GuardSignature> signature;
    };

    explicit GuardVerifier(const HitGuards& guards) noexcept : guards_(guards) {}

    [[nodiscard]] EntryData entry_data(std::string_view prompt) const { return make_guard_signature(prompt); }
    [[nodiscard]] static Query query(std::string_view prompt) noexcept { return Query{prompt, std::nullopt}; }
    /// Completes `query` before a candidate is checked (outside every lock).
    static void prepare(Query& query) {
        if (!query.signature) query.signature = make_guard_signature(query.prompt);
    }
    /// True if the candidate may be served (no enabled guard vetoes it). `prepare` must have run.
    [[nodiscard]] bool accept(const Query& query, const EntryData& entry, float /*similarity*/) const {
        return check_hit_guards(*query.signature, entry, guards_) == GuardVeto::None;
    }
    [[nodiscard]] static std::size_t entry_bytes(const EntryData& entry) noexcept { return entry.memory_bytes(); }

private:
    HitGuards guards_;
};

}  // namespace detail
LLMFAST_END_NAMESPACE
