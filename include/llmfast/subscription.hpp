// llmfast/subscription.hpp — readiness callbacks for executors: the handle `Subscription` that the
// non-blocking forms of llmfast's components return (`TokenChannel::on_ready` / `on_space`,
// `SemanticCache::Follower::on_ready`).
//
// An event loop (Asio, libuv, a thread pool, a test) must never block one of its threads on a
// component. Each component therefore pairs a non-blocking try (`try_pop`, `try_push`,
// `try_result`) with a readiness registration: "call me once when it is worth trying again". The
// registration returns a `Subscription`; destroying it or calling `cancel()` deregisters the
// callback, race-free with a concurrent firing:
//
//     llmfast::Subscription ready = channel.on_ready([&] { post(strand, resume); });  // may run at once
//     ...
//     ready.cancel();   // the client went away: after this returns the callback is not running and
//                       // will never run (unless cancel() is called from inside the callback itself)
//
// The contract every registration in llmfast follows:
// - The callback is invoked at most once per registration, on whichever thread makes the condition
//   true (the producer's `push`, the leader's `complete`, ...), or on the registering thread before
//   the registration call returns when the condition already holds (the returned Subscription is
//   then empty). Never while the component holds one of its own locks: the callback may call back
//   into the component (try again, register again).
// - `cancel()` (and the destructor) resolve the race with a concurrent firing as `std::stop_callback`
//   does: if the callback has not started, it never will (`cancel()` returns true and destroys it);
//   if it is running on another thread, `cancel()` waits for it to return (returns false); called
//   from inside the callback, it returns false at once (no self-deadlock). So a callback may safely
//   capture references to objects the canceller destroys right after `cancel()`. Consequence: a
//   callback must not wait for the thread that cancels it.
// - A readiness callback is a wake-up, not a reservation: with several consumers another one may
//   take the item first, and a try can still come back empty. Try, and register again if so.
// - Callbacks must not throw: the component calls them from noexcept paths (std::terminate).
// - The component holds callbacks it has not fired until they fire or are cancelled; a component
//   destroyed with registrations still armed destroys their callbacks without calling them.
//
// Thread-safety: a `Subscription` is a plain move-only value owned by one thread at a time, but its
// `cancel()` may race freely with the firing on another thread (that is its purpose).
//
// Errors: nothing here throws (registration calls may throw std::bad_alloc).
#pragma once

#include <llmfast/version.hpp>

#include <llmfast/detail/inplace_function.hpp>

#include <atomic>
#include <cstddef>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

LLMFAST_BEGIN_NAMESPACE

class Subscription;

namespace detail {

/// The stored callback of one registration: move-only, inline up to 48 bytes.
using ReadyCallback = InplaceFunction<void(), 48>;

/// One registration: the callback and its state machine Armed -> Running -> Done, or Armed -> Cancelled.
/// Shared between the component's list (which fires it once) and the caller's Subscription (which may
/// cancel it). `fire` is called by at most one thread (the component removes the node from its list
/// under its lock before firing it).
class ReadyNode {
public:
    explicit ReadyNode(ReadyCallback callback) noexcept : callback_(std::move(callback)) {}
    ReadyNode(const ReadyNode&) = delete;
    ReadyNode& operator=(const ReadyNode&) = delete;

    /// Runs the callback unless it was cancelled. The callback is destroyed before the node is Done, so
    /// once a cancel() returns nothing the callback captured is referenced any more.
    void fire() noexcept {
        runner_ = std::this_thread::get_id();  // read by cancel() only after it saw Running (acquire)
        int expected = armed;
        if (!state_.compare_exchange_strong(expected, running, std::memory_order_acq_rel)) return;
        {
            ReadyCallback callback = std::move(callback_);
            callback();  // noexcept context: a throwing callback terminates
        }
        state_.store(done, std::memory_order_release);
        state_.notify_all();
    }

    /// True when this call prevented the callback from running; false when it ran, is running (waited
    /// for unless on the running thread), or was already cancelled.
    bool cancel() noexcept {
        int expected = armed;
        if (state_.compare_exchange_strong(expected, cancelled, std::memory_order_acq_rel)) {
            ReadyCallback dropped = std::move(callback_);  // destroyed here, by the canceller
            return true;
        }
        if (expected == running && runner_ != std::this_thread::get_id()) {
            int now = running;
            while (now == running) {
                state_.wait(running, std::memory_order_acquire);
                now = state_.load(std::memory_order_acquire);
            }
        }
        return false;
    }

    [[nodiscard]] bool armed_now() const noexcept { return state_.load(std::memory_order_acquire) == armed; }

private:
    static constexpr int armed = 0, running = 1, done = 2, cancelled = 3;
    std::atomic<int> state_{armed};
    std::thread::id runner_{};
    ReadyCallback callback_;
};

/// The component's side: the armed registrations of one condition. Not synchronized: `add` and `take`
/// are called under the component's lock; firing what `take` returned happens after releasing it.
class ReadyList {
public:
    using Nodes = std::vector<std::shared_ptr<ReadyNode>>;

    /// Builds a node (call outside the component's lock: it allocates).
    static std::shared_ptr<ReadyNode> make(ReadyCallback callback) {
        return std::make_shared<ReadyNode>(std::move(callback));
    }

    /// Stores `node` (lock held) and returns the caller's handle. Cancelled registrations left behind
    /// by earlier subscribers are dropped first, so the list never holds more than the live ones plus
    /// those cancelled since the last add or take.
    Subscription add(std::shared_ptr<ReadyNode> node);

    [[nodiscard]] bool empty() const noexcept { return nodes_.empty(); }
    [[nodiscard]] std::size_t size() const noexcept { return nodes_.size(); }

    /// Moves every registration out (lock held); fire them with `fire_all` after unlocking.
    [[nodiscard]] Nodes take() noexcept {
        Nodes out;
        out.swap(nodes_);
        return out;
    }

    /// Fires what `take` returned (no lock held).
    static void fire_all(Nodes& nodes) noexcept {
        for (const std::shared_ptr<ReadyNode>& node : nodes) node->fire();
        nodes.clear();
    }

private:
    Nodes nodes_;
};

}  // namespace detail

/// The handle of one readiness registration (see the file comment). Empty when default-constructed,
/// moved from, or returned by a registration whose callback already ran before it returned.
/// Destroying it cancels the registration (as `cancel()`).
class Subscription {
public:
    Subscription() noexcept = default;
    Subscription(Subscription&& other) noexcept = default;
    Subscription& operator=(Subscription&& other) noexcept {
        if (this != &other) {
            cancel();
            node_ = std::move(other.node_);
        }
        return *this;
    }
    Subscription(const Subscription&) = delete;
    Subscription& operator=(const Subscription&) = delete;
    ~Subscription() { cancel(); }

    /// Deregisters the callback. Returns true when this prevented it from ever running (it is then
    /// destroyed, on this thread); false when it already ran, is running on another thread (this
    /// waits until it returned), is running on this thread (returns at once), or the handle is empty.
    /// After it returns, the handle is empty. Never throws.
    bool cancel() noexcept {
        if (!node_) return false;
        const bool prevented = node_->cancel();
        node_.reset();
        return prevented;
    }

    /// True while the callback is registered and has neither started nor been cancelled.
    [[nodiscard]] bool pending() const noexcept { return node_ && node_->armed_now(); }

    /// Gives up the handle without cancelling: the callback stays registered (fire and forget).
    void release() noexcept { node_.reset(); }

private:
    friend class detail::ReadyList;
    explicit Subscription(std::shared_ptr<detail::ReadyNode> node) noexcept : node_(std::move(node)) {}

    std::shared_ptr<detail::ReadyNode> node_;
};

inline Subscription detail::ReadyList::add(std::shared_ptr<ReadyNode> node) {
    std::erase_if(nodes_, [](const std::shared_ptr<ReadyNode>& n) { return !n->armed_now(); });
    nodes_.push_back(node);
    return Subscription(std::move(node));
}

LLMFAST_END_NAMESPACE
