// tests/test_support.hpp — small helpers shared by the test programs.
#pragma once

#include <llmfast/error.hpp>

#include <chrono>
#include <cmath>
#include <cstddef>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <random>
#include <utility>
#include <vector>

namespace llmfast::testing {

/// Runs `f` and returns the code of the `llmfast::Error` it throws, or `ErrorCode::Ok` if it returns.
/// Any other exception propagates (and fails the test).
template <class F>
ErrorCode error_code_of(F&& f) {
    try {
        std::forward<F>(f)();
    } catch (const Error& error) {
        return error.code();
    }
    return ErrorCode::Ok;
}

/// A vector of `dim` floats drawn uniformly from the unit sphere (normal samples, normalized): the
/// vector-index tests' data.
inline std::vector<float> random_unit(std::mt19937_64& rng, std::size_t dim) {
    std::normal_distribution<float> normal;
    std::vector<float> v(dim);
    double norm = 0;
    for (float& x : v) {
        x = normal(rng);
        norm += static_cast<double>(x) * static_cast<double>(x);
    }
    for (float& x : v) x = static_cast<float>(x / std::sqrt(norm));
    return v;
}

/// A minimal executor for the async-seam tests: `post` from any thread (what a readiness callback
/// does), `run_until` drains the tasks on the calling thread (the "event loop") until `done()` holds or
/// `limit` passes. No task ever blocks.
class TaskQueue {
public:
    void post(std::function<void()> task) {
        {
            std::lock_guard lock(mutex_);
            tasks_.push_back(std::move(task));
            ++posted_;
        }
        cv_.notify_one();
    }
    /// Runs tasks until `done()` (checked between tasks) or `limit` of real time; true when done.
    template <class Done>
    bool run_until(Done done, std::chrono::milliseconds limit = std::chrono::milliseconds(20000)) {
        const auto until = std::chrono::steady_clock::now() + limit;
        while (!done()) {
            std::function<void()> task;
            {
                std::unique_lock lock(mutex_);
                if (!cv_.wait_until(lock, until, [&] { return !tasks_.empty(); })) return done();
                task = std::move(tasks_.front());
                tasks_.pop_front();
            }
            task();
        }
        return true;
    }
    [[nodiscard]] std::size_t posted() const {
        std::lock_guard lock(mutex_);
        return posted_;
    }

private:
    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> tasks_;
    std::size_t posted_ = 0;
};

}  // namespace llmfast::testing
