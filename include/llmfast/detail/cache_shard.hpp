// llmfast/detail/cache_shard.hpp — one partition of the semantic cache's storage: entries by key and
// by id, byte and entry accounting against the shard's budget, and the eviction-policy seam.
//
// Not synchronized: the cache guards each shard with its own mutex. Internal: users must not depend
// on anything here.
#pragma once

#include <llmfast/version.hpp>
#include <llmfast/detail/cache_key.hpp>
#include <llmfast/eviction_policy.hpp>

#include <cstddef>
#include <cstdint>
#include <tuple>
#include <unordered_map>
#include <utility>

LLMFAST_BEGIN_NAMESPACE
namespace detail {

/// Bytes a node-based hash container spends per element holding `Value`: the node (the value, the
/// link to the next node, the cached hash) and one bucket slot (at the default load factor of 1).
template <class Value>
inline constexpr std::size_t hash_node_bytes = sizeof(void*) + sizeof(Value) + sizeof(std::size_t) + sizeof(void*);

/// Entries of type `Value` (with members `key` (CacheKey), `id` (std::uint64_t) and `bytes`, the
/// entry's accounted size) under a per-shard budget. Invariant: `by_key_` owns exactly the shard's
/// entries, `by_id_` indexes the same ones, the policy has seen each inserted and not yet removed,
/// and `bytes_` is the sum of their `bytes`. Nodes never move (node-based maps), so the policy's
/// hooks, the id index and callers' pointers stay valid until the entry is erased.
template <class Value, class Policy>
class CacheShard {
    static_assert(EvictionPolicy<Policy>,
                  "llmfast::SemanticCache<E, Index, C, Policy>: Policy must model llmfast::EvictionPolicy — it needs "
                  "a default constructor, a nested default-constructible `Hook`, on_insert(Hook&), noexcept "
                  "on_access(Hook&) and on_remove(Hook&), and victim(const Hook*) returning Hook*");

public:
    using Hook = typename Policy::Hook;

    struct Node : Hook {
        explicit Node(Value&& v) : value(std::move(v)) {}
        Value value;
    };

    /// Accounted bytes of one entry's bookkeeping here: its node in each map and what the policy
    /// keeps outside the node (the value's own heap memory is the caller's to add to `bytes`).
    static constexpr std::size_t node_overhead_bytes = [] {
        std::size_t bytes = hash_node_bytes<std::pair<const CacheKey, Node>> + hash_node_bytes<std::pair<const std::uint64_t, Node*>>;
        if constexpr (requires { Policy::external_bytes_per_entry; }) bytes += Policy::external_bytes_per_entry;
        return bytes;
    }();

    CacheShard() = default;
    CacheShard(const CacheShard&) = delete;
    CacheShard& operator=(const CacheShard&) = delete;

    void set_budget(std::size_t max_entries, std::size_t max_bytes) noexcept {
        max_entries_ = max_entries;
        max_bytes_ = max_bytes;
    }
    [[nodiscard]] std::size_t max_bytes() const noexcept { return max_bytes_; }
    [[nodiscard]] std::size_t size() const noexcept { return by_key_.size(); }
    [[nodiscard]] std::size_t bytes() const noexcept { return bytes_; }
    [[nodiscard]] bool over_budget() const noexcept { return by_key_.size() > max_entries_ || bytes_ > max_bytes_; }

    [[nodiscard]] Node* find(const CacheKey& key) noexcept {
        const auto it = by_key_.find(key);
        return it == by_key_.end() ? nullptr : &it->second;
    }
    [[nodiscard]] Node* find_id(std::uint64_t id) noexcept {
        const auto it = by_id_.find(id);
        return it == by_id_.end() ? nullptr : it->second;
    }

    /// Stores `value` (its key must not be present). On an exception the shard is unchanged.
    Node& emplace(Value&& value) {
        const CacheKey key = value.key;
        const std::uint64_t id = value.id;
        const auto [it, inserted] = by_key_.emplace(std::piecewise_construct, std::forward_as_tuple(key),
                                                    std::forward_as_tuple(std::move(value)));
        Node& node = it->second;
        try {
            by_id_.emplace(id, &node);
            try {
                policy_.on_insert(node);
            } catch (...) {
                by_id_.erase(id);
                throw;
            }
        } catch (...) {
            by_key_.erase(it);
            throw;
        }
        bytes_ += node.value.bytes;
        return node;
    }

    /// A hit: tells the policy.
    void touch(Node& node) noexcept { policy_.on_access(node); }

    /// The entry to evict next, never `keep`; nullptr if there is no other.
    [[nodiscard]] Node* victim(const Node* keep) noexcept {
        Hook* hook = policy_.victim(keep);
        return hook == nullptr ? nullptr : static_cast<Node*>(hook);
    }

    /// Removes `node`'s entry (the caller first undoes what else refers to it).
    void erase(Node& node) noexcept {
        policy_.on_remove(node);
        bytes_ -= node.value.bytes;
        const CacheKey key = node.value.key;  // copies: the node dies in the erase below
        by_id_.erase(node.value.id);
        by_key_.erase(key);
    }

    /// Calls `f(const Value&)` for every entry.
    template <class F>
    void for_each(F&& f) const {
        for (const auto& [key, node] : by_key_) f(node.value);
    }

    /// Removes every entry for which `pred(const Value&)` holds, calling `before(Value&)` first on each;
    /// returns how many.
    template <class Pred, class Before>
    std::size_t erase_if(Pred&& pred, Before&& before) noexcept {
        std::size_t removed = 0;
        for (auto it = by_key_.begin(); it != by_key_.end();) {
            Node& node = it->second;
            if (!pred(static_cast<const Value&>(node.value))) {
                ++it;
                continue;
            }
            before(node.value);
            policy_.on_remove(node);
            bytes_ -= node.value.bytes;
            by_id_.erase(node.value.id);
            it = by_key_.erase(it);
            ++removed;
        }
        return removed;
    }

private:
    std::unordered_map<CacheKey, Node, CacheKeyHash> by_key_;
    std::unordered_map<std::uint64_t, Node*> by_id_;
    Policy policy_;
    std::size_t bytes_ = 0;
    std::size_t max_entries_ = 0;
    std::size_t max_bytes_ = 0;
};

}  // namespace detail
LLMFAST_END_NAMESPACE
