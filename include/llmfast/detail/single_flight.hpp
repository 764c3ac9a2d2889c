// llmfast/detail/single_flight.hpp — the semantic cache's single-flight table: concurrent misses on one
// key run the computation once; the others wait for its result or its exception.
//
// Not synchronized: the cache keeps one table per shard, guarded by the shard's mutex (`join`,
// `start` and `finish` are called under it; waiting on a future and completing a flight are not).
// Internal: users must not depend on anything here.
#pragma once

#include <llmfast/version.hpp>
#include <llmfast/detail/cache_key.hpp>

#include <future>
#include <memory>
#include <optional>
#include <unordered_map>

LLMFAST_BEGIN_NAMESPACE
namespace detail {

template <class Value>
class SingleFlight {
public:
    /// One computation in progress: its owner completes it with `succeed` or `fail` after `finish`.
    class Flight {
    public:
        Flight() : future_(promise_.get_future().share()) {}
        void succeed(Value value) { promise_.set_value(std::move(value)); }
        void fail(std::exception_ptr error) { promise_.set_exception(std::move(error)); }
        [[nodiscard]] const std::shared_future<Value>& future() const noexcept { return future_; }

    private:
        std::promise<Value> promise_;
        std::shared_future<Value> future_;
    };

    /// The future of the flight in progress for `key`, if any (wait on it after unlocking).
    [[nodiscard]] std::optional<std::shared_future<Value>> join(const CacheKey& key) const {
        const auto it = flights_.find(key);
        if (it == flights_.end()) return std::nullopt;
        return it->second->future();
    }
    /// Starts the flight for `key` (none may be in progress); the caller owns it.
    std::shared_ptr<Flight> start(const CacheKey& key) {
        auto flight = std::make_shared<Flight>();
        flights_.emplace(key, flight);
        return flight;
    }
    /// Ends the flight for `key`: later callers no longer join it.
    void finish(const CacheKey& key) noexcept { flights_.erase(key); }

private:
    std::unordered_map<CacheKey, std::shared_ptr<Flight>, CacheKeyHash> flights_;
};

}  // namespace detail
LLMFAST_END_NAMESPACE
