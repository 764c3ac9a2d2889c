// TEMPORARY stand-ins for llmfast components that are not merged yet. Replaced by the real headers.
#pragma once

#include <llmfast/error.hpp>
#include <llmfast/tokens.hpp>
#include <llmfast/utf8.hpp>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

namespace standin {

class Channel {
public:
    void push(std::string token) {
        std::lock_guard lock(mutex_);
        queue_.push_back(std::move(token));
        cv_.notify_one();
    }
    void close() {
        std::lock_guard lock(mutex_);
        closed_ = true;
        cv_.notify_one();
    }
    // Whole code points only.
    std::optional<std::string> pop() {
        std::unique_lock lock(mutex_);
        for (;;) {
            cv_.wait(lock, [&] { return !queue_.empty() || closed_; });
            if (queue_.empty()) {
                std::string tail(assembler_.finish());
                if (!tail.empty() || !done_) {
                    done_ = true;
                    if (!tail.empty()) return tail;
                }
                return std::nullopt;
            }
            std::string token = std::move(queue_.front());
            queue_.pop_front();
            std::string chunk(assembler_.push(token));
            if (!chunk.empty()) return chunk;
        }
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<std::string> queue_;
    bool closed_ = false;
    bool done_ = false;
    llmfast::utf8::Assembler assembler_;
};

template <class Req, class Resp>
class Batcher {
public:
    using Handler = std::function<std::vector<Resp>(std::span<Req>)>;
    Batcher(Handler handler, std::size_t max_batch, std::chrono::nanoseconds max_wait)
        : handler_(std::move(handler)), max_batch_(max_batch), max_wait_(max_wait), worker_([this] { run(); }) {}
    ~Batcher() {
        {
            std::lock_guard lock(mutex_);
            closed_ = true;
        }
        cv_.notify_all();
        worker_.join();
    }
    std::future<Resp> submit(Req req) {
        std::promise<Resp> promise;
        auto future = promise.get_future();
        std::lock_guard lock(mutex_);
        queue_.push_back({std::move(req), std::move(promise), std::chrono::steady_clock::now()});
        cv_.notify_all();
        return future;
    }

private:
    struct Item {
        Req req;
        std::promise<Resp> promise;
        std::chrono::steady_clock::time_point at;
    };
    void run() {
        std::unique_lock lock(mutex_);
        for (;;) {
            cv_.wait(lock, [&] { return !queue_.empty() || closed_; });
            if (queue_.empty()) return;
            const auto deadline = queue_.front().at + max_wait_;
            cv_.wait_until(lock, deadline, [&] { return queue_.size() >= max_batch_ || closed_; });
            std::vector<Item> batch;
            while (!queue_.empty() && batch.size() < max_batch_) {
                batch.push_back(std::move(queue_.front()));
                queue_.pop_front();
            }
            lock.unlock();
            std::vector<Req> reqs;
            for (auto& item : batch) reqs.push_back(std::move(item.req));
            auto resps = handler_(std::span<Req>(reqs));
            for (std::size_t i = 0; i < batch.size(); ++i) batch[i].promise.set_value(std::move(resps[i]));
            lock.lock();
        }
    }
    Handler handler_;
    std::size_t max_batch_;
    std::chrono::nanoseconds max_wait_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<Item> queue_;
    bool closed_ = false;
    std::thread worker_;
};

enum class Match { Exact, Semantic };
struct Hit {
    std::string response;
    Match match;
    float similarity;
};

class Cache {
public:
    explicit Cache(float threshold, bool int8) : threshold_(threshold), int8_(int8) {}
    std::optional<Hit> lookup(const std::string& prompt) {
        std::lock_guard lock(mutex_);
        auto it = exact_.find(prompt);
        if (it != exact_.end()) return Hit{it->second, Match::Exact, 1.0f};
        auto v = embed(prompt);
        float best = -1;
        std::size_t best_i = 0;
        for (std::size_t i = 0; i < vectors_.size(); ++i) {
            float s = 0;
            for (std::size_t d = 0; d < dim; ++d) s += v[d] * vectors_[i][d];
            if (s > best) best = s, best_i = i;
        }
        if (best >= threshold_) return Hit{responses_[best_i], Match::Semantic, best};
        return std::nullopt;
    }
    void insert(const std::string& prompt, const std::string& response) {
        std::lock_guard lock(mutex_);
        if (exact_.count(prompt)) return;
        exact_[prompt] = response;
        vectors_.push_back(embed(prompt));
        responses_.push_back(response);
    }
    std::size_t vector_bytes() const { return vectors_.size() * (int8_ ? dim + 4 : dim * 4); }
    std::size_t size() const { return vectors_.size(); }

private:
    static constexpr std::size_t dim = 256;
    static std::vector<float> embed(const std::string& s) {
        std::vector<float> v(dim, 0.0f);
        for (std::size_t i = 0; i + 1 < s.size(); ++i)
            v[(static_cast<unsigned char>(s[i]) * 31U + static_cast<unsigned char>(s[i + 1])) % dim] += 1.0f;
        float n = 0;
        for (float x : v) n += x * x;
        n = std::sqrt(n);
        if (n > 0)
            for (float& x : v) x /= n;
        return v;
    }
    float threshold_;
    bool int8_;
    std::mutex mutex_;
    std::unordered_map<std::string, std::string> exact_;
    std::vector<std::vector<float>> vectors_;
    std::vector<std::string> responses_;
};

struct Compressed {
    std::string text;
    std::size_t tokens_before;
    std::size_t tokens_after;
};
class Compressor {
public:
    Compressed compress(std::string_view prompt) const {
        std::string s(prompt);
        const std::pair<const char*, const char*> rules[] = {
            {"请你", ""}, {"请注意", "注意"}, {"你需要", ""}, {"以下是", ""}, {"首先，", "1."}, {"其次，", "2."},
            {"最后，", "3."}, {"I would like you to ", ""}, {"Please note that ", ""}, {"In order to", "To"},
            {"in order to", "to"}};
        for (auto [from, to] : rules) {
            std::string f(from);
            for (std::size_t p = s.find(f); p != std::string::npos; p = s.find(f, p)) {
                s.replace(p, f.size(), to);
                p += std::string_view(to).size();
            }
        }
        return {s, counter_.count(prompt), counter_.count(s)};
    }

private:
    llmfast::EstimatingTokenCounter counter_;
};

}  // namespace standin
