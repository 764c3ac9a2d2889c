// examples/gateway/admission.hpp — admission control of llmfast-gateway: at most
// AdmissionConfig::max_running requests are answered at once; the others wait in a queue bounded by
// requests (max_queue) and by prompt tokens (max_queue_tokens, counted before sending), served by
// priority (x-llmfast-priority, higher first) and FIFO within a priority. A full queue is refused at
// once (429 + Retry-After); a waiter whose deadline (x-llmfast-deadline-ms) passes leaves the queue
// (504); a client that goes away leaves it too. Per-tenant limits (requests and prompt tokens per
// minute, a token bucket refilled continuously with a minute's worth of burst; the tenant is named by
// the API key) are checked first (429 + Retry-After).
//
// Never blocks a thread: a waiter is an Asio timer on its connection's strand set to its deadline;
// the controller grants a slot under its mutex and wakes the waiter by posting a cancel of that
// timer to the waiter's executor, so the wake-up always runs on the waiter's own strand. Whether a
// waiter was granted or expired is decided under the mutex (a grant racing a deadline is one or the
// other, never both: a granted slot is always released by the Slot the waiter receives).
//
// Thread-safety: every member function may be called from any thread.
#pragma once

#include "config.hpp"
#include "sink.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace gateway {

class AdmissionController {
public:
    enum class Verdict { Admitted, QueueFull, QueueTokensFull, TenantRequests, TenantTokens, DeadlineInQueue, ClientGone };

    /// Holds one running slot; releasing it (destruction) admits the next waiter(s).
    class Slot {
    public:
        Slot() = default;
        Slot(AdmissionController* owner, Clock::time_point since) : owner_(owner), since_(since) {}
        Slot(Slot&& other) noexcept : owner_(std::exchange(other.owner_, nullptr)), since_(other.since_) {}
        Slot& operator=(Slot&& other) noexcept {
            if (this != &other) {
                release();
                owner_ = std::exchange(other.owner_, nullptr);
                since_ = other.since_;
            }
            return *this;
        }
        ~Slot() { release(); }
        void release() {
            if (auto* owner = std::exchange(owner_, nullptr)) owner->release(Clock::now() - since_);
        }
        explicit operator bool() const noexcept { return owner_ != nullptr; }

    private:
        AdmissionController* owner_ = nullptr;
        Clock::time_point since_{};
    };

    struct Outcome {
        Verdict verdict = Verdict::Admitted;
        std::chrono::seconds retry_after{0};  ///< for the 429s
        Slot slot;                             ///< held while the request runs (Admitted only)
    };

    AdmissionController(const AdmissionConfig& config, std::map<std::string, TenantLimits> tenants)
        : config_(config), tenant_limits_(std::move(tenants)) {}

    /// Waits (without blocking a thread) for a running slot; see the file comment.
    net::awaitable<Outcome> admit(const std::string& tenant, std::uint64_t tokens, int priority, Clock::time_point deadline,
                                  ClientGone& gone) {
        // (No lock_guard or other object with a destructor in a branch that ends in co_return: the
        // locked parts are plain functions. See the rule above UpstreamClient::Impl::exchange.)
        auto waiter = std::make_shared<Waiter>(co_await net::this_coro::executor);
        Outcome outcome;
        if (decide_now(tenant, tokens, priority, waiter, outcome)) co_return outcome;
        waiter->timer.expires_at(deadline);
        gone.on_gone = [waiter] { waiter->timer.cancel(); };
        if (!is_granted(*waiter)) {
            boost::system::error_code ec;
            co_await waiter->timer.async_wait(net::redirect_error(net::use_awaitable, ec));
        }
        gone.on_gone = nullptr;
        finish_wait(*waiter, gone.gone, outcome);
        co_return outcome;
    }

    [[nodiscard]] std::size_t running() const {
        std::lock_guard lock(mutex_);
        return running_;
    }
    [[nodiscard]] std::size_t waiting() const {
        std::lock_guard lock(mutex_);
        return queue_.size();
    }

private:
    struct Waiter {
        explicit Waiter(const net::any_io_executor& executor) : timer(executor) {}
        net::steady_timer timer;
        std::pair<int, std::uint64_t> key{};
        std::uint64_t tokens = 0;
        bool granted = false;  // under mutex_
    };

    // admit's first step under the lock: true when `outcome` is final (a tenant limit, a full queue,
    // or a free slot); false when the waiter was queued.
    bool decide_now(const std::string& tenant, std::uint64_t tokens, int priority, const std::shared_ptr<Waiter>& waiter,
                    Outcome& outcome) {
        std::lock_guard lock(mutex_);
        const auto now = Clock::now();
        if (const auto limit = check_tenant(tenant, tokens, now); limit.verdict != Verdict::Admitted) {
            outcome.verdict = limit.verdict;
            outcome.retry_after = limit.retry_after;
            return true;
        }
        if (running_ < config_.max_running && queue_.empty()) {
            charge_tenant(tenant, tokens);
            ++running_;
            outcome.slot = Slot(this, now);
            return true;
        }
        if (queue_.size() >= config_.max_queue || waiting_tokens_ + tokens > config_.max_queue_tokens) {
            outcome.verdict = queue_.size() >= config_.max_queue ? Verdict::QueueFull : Verdict::QueueTokensFull;
            outcome.retry_after = queue_retry_after();
            return true;
        }
        charge_tenant(tenant, tokens);
        waiter->tokens = tokens;
        waiter->key = {-priority, next_seq_++};
        queue_.emplace(waiter->key, waiter);
        waiting_tokens_ += tokens;
        return false;
    }
    bool is_granted(const Waiter& waiter) const {
        std::lock_guard lock(mutex_);
        return waiter.granted;
    }
    // After the wait: the granted slot, or out of the queue (client gone or deadline).
    void finish_wait(Waiter& waiter, bool client_gone, Outcome& outcome) {
        std::lock_guard lock(mutex_);
        if (waiter.granted) {
            outcome.slot = Slot(this, Clock::now());
            return;
        }
        queue_.erase(waiter.key);
        waiting_tokens_ -= waiter.tokens;
        outcome.verdict = client_gone ? Verdict::ClientGone : Verdict::DeadlineInQueue;
    }

    struct Bucket {
        double requests = 0, tokens = 0;  // what is left
        Clock::time_point refilled{};
        bool initialized = false;
    };

    struct Limit {
        Verdict verdict = Verdict::Admitted;
        std::chrono::seconds retry_after{0};
    };

    const TenantLimits* limits_of(const std::string& tenant) const {
        if (const auto it = tenant_limits_.find(tenant); it != tenant_limits_.end()) return &it->second;
        if (const auto it = tenant_limits_.find("*"); it != tenant_limits_.end()) return &it->second;
        return nullptr;
    }

    static std::chrono::seconds seconds_until(double missing, double per_minute) {
        const double s = std::ceil(missing * 60.0 / per_minute);
        return std::chrono::seconds(static_cast<long long>(std::clamp(s, 1.0, 60.0)));
    }

    // Refills the tenant's bucket to `now` and checks it (under mutex_).
    Limit check_tenant(const std::string& tenant, std::uint64_t tokens, Clock::time_point now) {
        const TenantLimits* limits = limits_of(tenant);
        if (limits == nullptr || (limits->requests_per_minute == 0 && limits->tokens_per_minute == 0)) return {};
        Bucket& b = buckets_[tenant];
        const auto rpm = static_cast<double>(limits->requests_per_minute), tpm = static_cast<double>(limits->tokens_per_minute);
        if (!b.initialized) {
            b = {rpm, tpm, now, true};
        } else {
            const double minutes = std::chrono::duration<double>(now - b.refilled).count() / 60.0;
            b.requests = std::min(rpm, b.requests + minutes * rpm);
            b.tokens = std::min(tpm, b.tokens + minutes * tpm);
            b.refilled = now;
        }
        if (limits->requests_per_minute > 0 && b.requests < 1.0)
            return {Verdict::TenantRequests, seconds_until(1.0 - b.requests, rpm)};
        if (limits->tokens_per_minute > 0 && static_cast<double>(tokens) > b.tokens)
            return {Verdict::TenantTokens, static_cast<double>(tokens) > tpm ? std::chrono::seconds(60)
                                                                              : seconds_until(static_cast<double>(tokens) - b.tokens, tpm)};
        return {};
    }
    void charge_tenant(const std::string& tenant, std::uint64_t tokens) {
        const TenantLimits* limits = limits_of(tenant);
        if (limits == nullptr || (limits->requests_per_minute == 0 && limits->tokens_per_minute == 0)) return;
        Bucket& b = buckets_[tenant];
        if (limits->requests_per_minute > 0) b.requests -= 1.0;
        if (limits->tokens_per_minute > 0) b.tokens -= static_cast<double>(tokens);
    }

    // How long until a queued request would likely run: the mean slot time x the queue ahead / slots.
    std::chrono::seconds queue_retry_after() const {
        const double ahead = static_cast<double>(queue_.size() + 1) / static_cast<double>(std::max<std::size_t>(1, config_.max_running));
        const double s = std::ceil(mean_hold_seconds_ * ahead);
        return std::chrono::seconds(static_cast<long long>(std::clamp(s, 1.0, 60.0)));
    }

    void release(Clock::duration held) {
        std::vector<std::shared_ptr<Waiter>> wake;
        {
            std::lock_guard lock(mutex_);
            mean_hold_seconds_ = 0.9 * mean_hold_seconds_ + 0.1 * std::chrono::duration<double>(held).count();
            --running_;
            while (running_ < config_.max_running && !queue_.empty()) {
                auto first = queue_.begin();
                std::shared_ptr<Waiter> waiter = std::move(first->second);
                queue_.erase(first);
                waiting_tokens_ -= waiter->tokens;
                waiter->tokens = 0;
                waiter->granted = true;
                ++running_;
                wake.push_back(std::move(waiter));
            }
        }
        for (auto& waiter : wake) {
            auto executor = waiter->timer.get_executor();
            net::post(executor, [waiter = std::move(waiter)] { waiter->timer.cancel(); });
        }
    }

    const AdmissionConfig config_;
    const std::map<std::string, TenantLimits> tenant_limits_;
    mutable std::mutex mutex_;
    std::size_t running_ = 0;
    std::uint64_t waiting_tokens_ = 0, next_seq_ = 0;
    std::map<std::pair<int, std::uint64_t>, std::shared_ptr<Waiter>> queue_;
    std::map<std::string, Bucket> buckets_;
    double mean_hold_seconds_ = 1.0;
};

}  // namespace gateway
