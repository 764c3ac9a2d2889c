// llmfast/eviction_policy.hpp — the `EvictionPolicy` concept: how a SemanticCache shard picks the
// entry to evict when it is over its entry or byte budget, and two models: `LruPolicy` (the default:
// least recently used) and `LfuPolicy` (least frequently used, with aging).
//
// A policy is per shard (each shard of the cache owns one, under the shard's lock) and sees entries
// only through its `Hook`: every cache entry inherits from `P::Hook`, so a policy keeps its per-entry
// state (links, counters) inside the entry, with no allocation of its own for LRU. Required of `P`:
//   - default-constructible; `typename P::Hook`, default-constructible;
//   - `on_insert(Hook&)`: a new entry (may throw, e.g. std::bad_alloc: the insertion is then undone);
//   - `on_access(Hook&) noexcept`: a hit on the entry;
//   - `on_remove(Hook&) noexcept`: the entry leaves the shard (erased, expired or evicted);
//   - `victim(const Hook* keep)` → `Hook*`: the entry to evict next, never `keep` (the entry being
//     inserted), nullptr when there is no other entry. The shard evicts it and asks again while over
//     budget.
// Optional: `static constexpr std::size_t external_bytes_per_entry` — bytes the policy holds per entry
// outside the hook (counted in the cache's memory figure).
//
//     llmfast::SemanticCache<MyEmbedder, llmfast::FlatIndex, llmfast::WallClock, llmfast::LfuPolicy> cache;
//
// Snapshots do not depend on the policy: they are written in one recency order across the whole
// cache (the cache keeps its own use stamps), so loading into a smaller cache keeps the most recently
// used, whatever the policy. A frequency policy starts again from the loaded order.
//
// Thread-safety: not synchronized; the cache calls a shard's policy under that shard's lock.
//
// Errors: `LfuPolicy::on_insert` may throw std::bad_alloc; nothing else here throws.
#pragma once

#include <llmfast/version.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <vector>

LLMFAST_BEGIN_NAMESPACE

/// A shard's eviction order (see the header comment for the contract).
template <class P>
concept EvictionPolicy = std::default_initializable<P> && requires(P& policy, typename P::Hook& hook,
                                                                   const typename P::Hook* keep) {
    requires std::default_initializable<typename P::Hook>;
    policy.on_insert(hook);
    { policy.on_access(hook) } noexcept;
    { policy.on_remove(hook) } noexcept;
    { policy.victim(keep) } -> std::same_as<typename P::Hook*>;
};

/// Least recently used first: an intrusive list through the entries (two pointers per entry, O(1)
/// everything, no allocation). Thread-safety: not synchronized (the cache calls it under a shard lock).
class LruPolicy {
public:
    struct Hook {
        Hook* prev = nullptr;
        Hook* next = nullptr;
    };

    LruPolicy() noexcept { head_.prev = head_.next = &head_; }
    LruPolicy(const LruPolicy&) = delete;  // the sentinel points at itself
    LruPolicy& operator=(const LruPolicy&) = delete;

    void on_insert(Hook& hook) noexcept { link_front(hook); }
    void on_access(Hook& hook) noexcept {
        if (head_.next == &hook) return;
        unlink(hook);
        link_front(hook);
    }
    void on_remove(Hook& hook) noexcept { unlink(hook); }
    [[nodiscard]] Hook* victim(const Hook* keep) noexcept {
        Hook* last = head_.prev;
        if (last == keep) last = last->prev;
        return last == &head_ ? nullptr : last;
    }

private:
    void link_front(Hook& hook) noexcept {
        hook.prev = &head_;
        hook.next = head_.next;
        head_.next->prev = &hook;
        head_.next = &hook;
    }
    static void unlink(Hook& hook) noexcept {
        hook.prev->next = hook.next;
        hook.next->prev = hook.prev;
        hook.prev = hook.next = nullptr;
    }

    Hook head_;  // sentinel: head_.next = most recent, head_.prev = least recent
};

/// Least frequently used first, with aging, as Redis's `allkeys-lfu` approximates it: each entry
/// counts its hits; the victim is the entry with the lowest count among `samples` entries drawn at
/// random (all of them in a shard that small), so eviction is O(1). Every `aging_factor` × entries
/// inserts and hits all counts are halved, so entries that were popular once and are no longer
/// lose their protection. An entry that is hit keeps beating one that was inserted and never reused,
/// which is where it does better than LRU (see docs/cache.md for the figures on the demo workload).
/// Deterministic: the sampling generator has a fixed seed per shard. Thread-safety: not synchronized
/// (the cache calls it under a shard lock).
class LfuPolicy {
public:
    static constexpr std::size_t samples = 8;
    static constexpr std::size_t aging_factor = 8;
    static constexpr std::uint32_t max_count = 0xFFFF;
    static constexpr std::size_t external_bytes_per_entry = sizeof(void*);  // its slot in `hooks_`

    struct Hook {
        std::uint32_t count = 0;
        std::size_t slot = 0;  // index in hooks_
    };

    void on_insert(Hook& hook) {
        hooks_.push_back(&hook);  // may throw: nothing changed yet
        hook.count = 1;
        hook.slot = hooks_.size() - 1;
        tick();
    }
    void on_access(Hook& hook) noexcept {
        if (hook.count < max_count) ++hook.count;
        tick();
    }
    void on_remove(Hook& hook) noexcept {
        Hook* last = hooks_.back();
        hooks_[hook.slot] = last;
        last->slot = hook.slot;
        hooks_.pop_back();
    }
    [[nodiscard]] Hook* victim(const Hook* keep) noexcept {
        const std::size_t n = hooks_.size();
        Hook* best = nullptr;
        const auto consider = [&](Hook* hook) {
            if (hook != keep && (best == nullptr || hook->count < best->count)) best = hook;
        };
        if (n <= samples + 1) {
            for (Hook* hook : hooks_) consider(hook);
        } else {
            for (std::size_t i = 0; i < samples; ++i) consider(hooks_[next_random() % n]);
            if (best == nullptr) consider(hooks_[keep->slot == 0 ? 1 : 0]);  // every draw was `keep`
        }
        return best;
    }

private:
    void tick() noexcept {
        if (++events_ < aging_factor * hooks_.size()) return;
        events_ = 0;
        for (Hook* hook : hooks_) hook->count >>= 1U;
    }
    std::uint64_t next_random() noexcept {  // xorshift64
        state_ ^= state_ << 13U;
        state_ ^= state_ >> 7U;
        state_ ^= state_ << 17U;
        return state_;
    }

    std::vector<Hook*> hooks_;
    std::size_t events_ = 0;
    std::uint64_t state_ = 0x9E3779B97F4A7C15ULL;
};

static_assert(EvictionPolicy<LruPolicy>);
static_assert(EvictionPolicy<LfuPolicy>);

LLMFAST_END_NAMESPACE
