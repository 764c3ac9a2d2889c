// llmfast/detail/scope_registry.hpp — the semantic cache's scopes: one per name, each with its own
// vector index (when the semantic tier is on) behind its own reader/writer lock.
//
// Thread-safety: the registry is synchronized (a shared mutex; lookups take it shared). A scope's
// `index` is guarded by the scope's `mutex`. Lock order (the cache's): shard mutex, then the
// registry's mutex, then a scope's mutex; never the reverse. Internal: users must not depend on
// anything here.
#pragma once

#include <llmfast/version.hpp>

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

LLMFAST_BEGIN_NAMESPACE
namespace detail {

template <class Index>
struct CacheScope {
    CacheScope(std::string scope_name, std::optional<Index> scope_index)
        : name(std::move(scope_name)), index(std::move(scope_index)) {}
    const std::string name;
    std::shared_mutex mutex;     // guards `index`
    std::optional<Index> index;  // present when the semantic tier is on
    /// Set (before its entries are removed) when the scope leaves the registry: an insertion that sees
    /// it under the shard lock retries with a fresh scope.
    std::atomic<bool> erased{false};
};

struct ScopeNameHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view name) const noexcept { return std::hash<std::string_view>{}(name); }
};

template <class Index>
class ScopeRegistry {
public:
    using Scope = CacheScope<Index>;
    using IndexOptions = typename Index::Options;

    /// `dimension` and `index_options` build each scope's index when `with_index`.
    ScopeRegistry(bool with_index, std::size_t dimension, IndexOptions index_options)
        : with_index_(with_index), dimension_(dimension), index_options_(std::move(index_options)) {}

    [[nodiscard]] std::shared_ptr<Scope> find(std::string_view name) const {
        std::shared_lock lock(mutex_);
        const auto it = scopes_.find(name);
        return it == scopes_.end() ? nullptr : it->second;
    }

    std::shared_ptr<Scope> find_or_create(std::string_view name) {
        if (auto scope = find(name)) return scope;
        std::unique_lock lock(mutex_);
        auto it = scopes_.find(name);
        if (it == scopes_.end()) {
            auto scope = std::make_shared<Scope>(std::string(name), with_index_ ? std::optional<Index>(std::in_place, dimension_, index_options_)
                                                                                : std::optional<Index>());
            it = scopes_.emplace(std::string(name), std::move(scope)).first;
        }
        return it->second;
    }

    /// Takes `name` out of the registry and marks it erased; nullptr if there was none.
    std::shared_ptr<Scope> detach(std::string_view name) {
        std::unique_lock lock(mutex_);
        const auto it = scopes_.find(name);
        if (it == scopes_.end()) return nullptr;
        std::shared_ptr<Scope> scope = std::move(it->second);
        scope->erased.store(true, std::memory_order_release);
        scopes_.erase(it);
        return scope;
    }

    /// Takes every scope out of the registry and marks it erased.
    void detach_all() {
        std::unique_lock lock(mutex_);
        for (auto& [name, scope] : scopes_) scope->erased.store(true, std::memory_order_release);
        scopes_.clear();
    }

private:
    bool with_index_;
    std::size_t dimension_;
    IndexOptions index_options_;
    mutable std::shared_mutex mutex_;
    std::unordered_map<std::string, std::shared_ptr<Scope>, ScopeNameHash, std::equal_to<>> scopes_;
};

}  // namespace detail
LLMFAST_END_NAMESPACE
