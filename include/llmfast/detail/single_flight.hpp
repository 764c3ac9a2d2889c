// llmfast/detail/single_flight.hpp — the semantic cache's single-flight table: concurrent misses on one
// key run the computation once; the others wait for its end, without blocking when they want:
// a flight ends exactly once, by `complete` (a value), `fail` (an exception) or `abandon` (no value:
// "compute it yourself"), and wakes its blocking waiters and its readiness registrations
// (llmfast/subscription.hpp) after releasing its own lock.
//
// The table is not synchronized: the cache keeps one per shard, guarded by the shard's mutex (`join`,
// `start` and `finish` are called under it). A `Flight` has its own small mutex: ending it, waiting
// on it and registering on it happen with no shard lock held.
// Internal: users must not depend on anything here.
#pragma once

#include <llmfast/version.hpp>
#include <llmfast/detail/cache_key.hpp>
#include <llmfast/subscription.hpp>

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>

LLMFAST_BEGIN_NAMESPACE
namespace detail {

/// Where a flight is: running, or how it ended.
enum class FlightEnd : std::uint8_t { Pending, Completed, Failed, Abandoned };

template <class Value>
class SingleFlight {
public:
    /// One computation in progress. Its owner (the leader) ends it once; anyone holding it may wait.
    class Flight {
    public:
        /// Ends the flight with a value / an exception / nothing. Only the first end counts (false after).
        bool complete(Value value) { return end(FlightEnd::Completed, std::move(value), nullptr); }
        bool fail(std::exception_ptr error) { return end(FlightEnd::Failed, Value{}, std::move(error)); }
        bool abandon() { return end(FlightEnd::Abandoned, Value{}, nullptr); }

        [[nodiscard]] FlightEnd state() const {
            std::lock_guard lock(mutex_);
            return state_;
        }
        /// Blocks until the flight ended.
        FlightEnd wait() const {
            std::unique_lock lock(mutex_);
            cv_.wait(lock, [&] { return state_ != FlightEnd::Pending; });
            return state_;
        }
        /// The value (Completed) / the exception (Failed). Call after the flight ended.
        [[nodiscard]] Value value() const {
            std::lock_guard lock(mutex_);
            return value_;
        }
        [[nodiscard]] std::exception_ptr error() const {
            std::lock_guard lock(mutex_);
            return error_;
        }

        /// Registers `node` to fire when the flight ends; fires it now (on this thread, no lock held)
        /// if it already ended, and returns an empty Subscription then.
        Subscription on_end(std::shared_ptr<ReadyNode> node) {
            {
                std::lock_guard lock(mutex_);
                if (state_ == FlightEnd::Pending) return waiters_.add(std::move(node));
            }
            node->fire();
            return {};
        }

    private:
        bool end(FlightEnd how, Value value, std::exception_ptr error) {
            ReadyList::Nodes wake;
            {
                std::lock_guard lock(mutex_);
                if (state_ != FlightEnd::Pending) return false;
                state_ = how;
                value_ = std::move(value);
                error_ = std::move(error);
                wake = waiters_.take();
            }
            cv_.notify_all();
            ReadyList::fire_all(wake);
            return true;
        }

        mutable std::mutex mutex_;
        mutable std::condition_variable cv_;
        FlightEnd state_ = FlightEnd::Pending;
        Value value_{};
        std::exception_ptr error_;
        ReadyList waiters_;
    };

    /// The flight in progress for `key`, if any.
    [[nodiscard]] std::shared_ptr<Flight> join(const CacheKey& key) const {
        const auto it = flights_.find(key);
        if (it == flights_.end()) return nullptr;
        return it->second;
    }
    /// Starts the flight for `key` (none may be in progress); the caller owns it.
    std::shared_ptr<Flight> start(const CacheKey& key) {
        auto flight = std::make_shared<Flight>();
        flights_.emplace(key, flight);
        return flight;
    }
    /// Ends the flight for `key` in the table if it is `flight`: later callers no longer join it.
    void finish(const CacheKey& key, const Flight* flight) noexcept {
        const auto it = flights_.find(key);
        if (it != flights_.end() && it->second.get() == flight) flights_.erase(it);
    }

private:
    std::unordered_map<CacheKey, std::shared_ptr<Flight>, CacheKeyHash> flights_;
};

}  // namespace detail
LLMFAST_END_NAMESPACE
