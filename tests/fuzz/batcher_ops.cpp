// Fuzz target: a random sequence of batcher operations (submit in both forms, try_submit, priorities,
// costs, timeouts, stop tokens, clock moves, close) against a DynamicBatcher on a ManualClock, with a
// handler that sometimes throws or returns too few responses. Checks the invariants:
//   - every accepted request completes exactly once (all by the time close() returns), rejected never;
//   - a batch holds 1..max_batch_size requests, and at most max_batch_cost unless it is a single request;
//   - within a batch, priorities never increase and, within a priority, submission order is kept;
//   - a request never reaches the handler twice, and a request cancelled before submission never does.
#include <llmfast/batcher.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <mutex>
#include <span>
#include <stop_token>
#include <vector>

namespace {

struct Request {
    int id;
    int priority;
    std::size_t cost;
};

struct Input {
    const std::uint8_t* data;
    std::size_t size;
    std::size_t pos = 0;
    std::uint8_t next() { return pos < size ? data[pos++] : 0; }
    bool done() const { return pos >= size; }
};

void check_at(bool ok, int line) {
    if (!ok) {
        std::fprintf(stderr, "batcher_ops: invariant at line %d violated\n", line);
        std::abort();
    }
}
#define check(ok) check_at((ok), __LINE__)

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace std::chrono_literals;
    if (size < 6) return 0;
    Input in{data, size};
    llmfast::BatcherOptions options;
    options.max_batch_size = 1 + in.next() % 8;
    const std::uint8_t cost_byte = in.next();
    options.max_batch_cost = cost_byte >= 200 ? std::numeric_limits<std::size_t>::max() : 1 + cost_byte % 20;
    options.max_wait = std::chrono::milliseconds(in.next() % 4);
    options.max_queue = 1 + in.next() % 32;
    options.workers = 1 + in.next() % 2;
    options.priority_levels = 1 + in.next() % 4;

    constexpr int max_requests = 256;
    std::vector<std::atomic<int>> completions(max_requests);
    std::vector<std::atomic<int>> handled(max_requests);
    std::vector<char> accepted(max_requests, 0);
    std::vector<char> cancelled_before(max_requests, 0);
    std::vector<std::pair<int, std::future<int>>> futures;
    std::vector<std::stop_source> sources;
    int next_id = 0;

    llmfast::ManualClock clock;
    {
        using Batcher = llmfast::DynamicBatcher<Request, int, llmfast::BatchFunction<Request, int>, llmfast::ManualClock>;
        const std::size_t max_size = options.max_batch_size;
        const std::size_t max_cost = options.max_batch_cost;
        Batcher batcher(
            [&](std::span<Request> batch) -> std::vector<int> {
                check(!batch.empty() && batch.size() <= max_size);
                std::size_t cost = 0;
                for (std::size_t i = 0; i < batch.size(); ++i) {
                    const Request& r = batch[i];
                    check(handled[static_cast<std::size_t>(r.id)].fetch_add(1) == 0);
                    check(!cancelled_before[static_cast<std::size_t>(r.id)]);
                    cost += r.cost;
                    if (i > 0) {
                        const Request& prev = batch[i - 1];
                        check(prev.priority >= r.priority);
                        if (prev.priority == r.priority) check(prev.id < r.id);
                    }
                }
                check(batch.size() == 1 || cost <= max_cost);
                if (batch[0].id % 17 == 5) throw std::runtime_error("injected");
                std::vector<int> out;
                for (const Request& r : batch) out.push_back(r.id);
                if (batch[0].id % 19 == 7) out.pop_back();
                return out;
            },
            options, [](const Request& r) { return r.cost; }, clock);

        while (!in.done() && next_id < max_requests) {
            const std::uint8_t op = in.next();
            switch (op % 8) {
                case 0:
                case 1:
                case 2:
                case 5: {
                    const int id = next_id++;
                    const auto index = static_cast<std::size_t>(id);
                    Request request{id, in.next() % 5, std::size_t{in.next()} % 12};  // priority 4 may be invalid
                    llmfast::SubmitOptions<llmfast::ManualClock> submit_options;
                    submit_options.priority = request.priority;
                    const std::uint8_t timeout = in.next();
                    if (timeout < 64) submit_options.timeout = std::chrono::microseconds(timeout * 100);
                    if (op % 8 == 2) {
                        sources.emplace_back();
                        submit_options.stop_token = sources.back().get_token();
                        if (in.next() % 4 == 0) {
                            sources.back().request_stop();
                            cancelled_before[index] = 1;
                        }
                    }
                    auto callback = [&completions, index](llmfast::BatchResult<int>&& r) {
                        completions[index].fetch_add(1);
                        if (r.ok()) check(r.value() == static_cast<int>(index));
                    };
                    if (op % 8 == 1) {
                        try {
                            futures.emplace_back(id, batcher.submit(request, submit_options));
                            accepted[index] = 1;
                        } catch (const llmfast::Error&) {
                        }
                    } else if (op % 8 == 5) {
                        accepted[index] = batcher.try_submit(std::move(request), submit_options, callback) == llmfast::ErrorCode::Ok;
                    } else {
                        try {
                            batcher.submit(request, submit_options, callback);
                            accepted[index] = 1;
                        } catch (const llmfast::Error&) {
                        }
                    }
                    break;
                }
                case 3:
                    if (!sources.empty()) sources[in.next() % sources.size()].request_stop();
                    break;
                case 4: clock.advance(std::chrono::microseconds(in.next() * 50)); break;
                case 6: std::this_thread::yield(); break;
                case 7:
                    if (in.next() % 8 == 0) batcher.close();
                    break;
            }
        }
        batcher.close();
        for (auto& [id, future] : futures) {
            check(future.wait_for(0s) == std::future_status::ready);
            completions[static_cast<std::size_t>(id)].fetch_add(1);
            try {
                check(future.get() == id);
            } catch (const llmfast::Error&) {
            }
        }
    }
    for (int id = 0; id < next_id; ++id) {
        const auto index = static_cast<std::size_t>(id);
        check(completions[index].load() == (accepted[index] ? 1 : 0));
        check(handled[index].load() <= (accepted[index] ? 1 : 0));
    }
    return 0;
}
