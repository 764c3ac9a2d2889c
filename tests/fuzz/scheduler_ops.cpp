// Fuzz target: a random sequence of scheduler operations (submit with random prompt / answer / priority /
// deadline / stop token, the five ways to cancel, steps whose step function sometimes throws, fails one
// entry or finishes early, clock moves, a consumer that reads some channels and not others) against a
// ContinuousScheduler on a ManualClock, with a preempt hook that swaps or recomputes at random. Checks:
//   - every batch: at most max_num_seqs entries, at most max_num_batched_tokens tokens, each id once,
//     count >= 1, begin + count <= context, samples == (begin + count == context), and begin is where the
//     sequence's KV cache is (0 after a recompute preemption, unchanged after a swap);
//   - KV accounting: the blocks the scheduler reports in use equal those of a reference model
//     (ceil(tokens on the device / kv_block_size) summed over the sequences holding KV), never above kv_blocks;
//   - every accepted sequence ends exactly once, a rejected one never; its channel ends accordingly;
//     a sequence that ended Ok delivered exactly generated_tokens tokens 0, 1, 2, ... (none lost or repeated);
//   - liveness: after close(), with every channel drained, all sequences end within a bounded number of
//     steps, and then no KV block, slot or queue entry is left.
#include <llmfast/scheduler.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <stop_token>
#include <vector>

namespace {

struct Input {
    const std::uint8_t* data;
    std::size_t size;
    std::size_t pos = 0;
    std::uint8_t next() { return pos < size ? data[pos++] : 0; }
    bool done() const { return pos >= size; }
};

void check_at(bool ok, int line) {
    if (!ok) {
        std::fprintf(stderr, "scheduler_ops: invariant at line %d violated\n", line);
        std::abort();
    }
}
#define check(ok) check_at((ok), __LINE__)

struct Seq {
    std::size_t local = 0;  // index into the fuzzer's reference table
};

using Sched = llmfast::ContinuousScheduler<Seq, int, llmfast::SchedulerStepFunction<Seq, int>, llmfast::ManualClock>;

struct Ref {
    llmfast::SequenceId id = 0;
    std::size_t answer = 1;
    std::size_t max_new = 0;
    std::size_t context = 0;   // prompt + generated, as the reference sees it
    std::size_t computed = 0;  // tokens in its KV cache (kept across a swap)
    bool on_device = false;    // holds KV blocks
    int finishes = 0;
    llmfast::SequenceResult result{};
    std::optional<Sched::Handle> handle;  // dropped to cancel
    std::optional<std::stop_source> stop;
    std::vector<int> received;
    bool consumer_cancelled = false;
    bool reading = true;  // the consumer drains it every time it reads
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace std::chrono_literals;
    if (size < 10) return 0;
    Input in{data, size};
    llmfast::SchedulerOptions options;
    options.max_num_seqs = 1 + in.next() % 8;
    options.max_num_batched_tokens = options.max_num_seqs + in.next() % 30;
    options.max_prefill_chunk = in.next() % 9;
    options.kv_block_size = 1 + in.next() % 8;
    options.kv_blocks = 1 + in.next() % 40;
    const std::uint8_t aging = in.next();
    options.priority_aging = aging >= 200 ? std::chrono::nanoseconds::max() : std::chrono::milliseconds(1 + aging % 5);
    options.max_priority_preemptions = in.next() % 4;
    options.channel_capacity = 1 + in.next() % 4;
    options.max_queue = 1 + in.next() % 64;
    const std::uint8_t swap_mode = in.next();  // 0..84 never swap, 85..169 always, else alternate

    std::vector<Ref> refs;
    refs.reserve(256);
    llmfast::ManualClock clock;
    std::uint8_t step_mode = 0;
    std::size_t swap_counter = 0;
    const std::size_t block = options.kv_block_size;
    const auto blocks_for = [block](std::size_t tokens) { return (tokens + block - 1) / block; };

    llmfast::SchedulerHooks<Seq> hooks;
    hooks.preempt = [&](Seq& seq) {
        Ref& r = refs[seq.local];
        check(r.on_device);
        r.on_device = false;
        const bool swap = swap_mode >= 170 ? (swap_counter++ % 2 == 0) : swap_mode >= 85;
        if (!swap) r.computed = 0;
        return swap ? llmfast::Preemption::Swap : llmfast::Preemption::Recompute;
    };
    hooks.on_finish = [&](Seq& seq, const llmfast::SequenceResult& result) {
        Ref& r = refs[seq.local];
        check(r.id == result.id);
        ++r.finishes;
        r.result = result;
        r.on_device = false;
        check((result.status == llmfast::ErrorCode::Ok) == (result.reason != llmfast::FinishReason::None));
        check((result.status == llmfast::ErrorCode::Ok) == (result.error == nullptr));
    };

    const auto step_fn = [&](Sched::Batch batch) {
        check(!batch.empty());
        check(batch.size() <= options.max_num_seqs);
        std::size_t tokens = 0;
        std::set<llmfast::SequenceId> ids;
        for (std::size_t i = 0; i < batch.size(); ++i) {
            auto& item = batch[i];
            Ref& r = refs[item.seq().local];
            check(ids.insert(item.id).second);
            check(item.id == r.id);
            check(item.count >= 1);
            check(item.context == r.context);
            check(item.begin == r.computed);
            check(item.begin + item.count <= item.context);
            check(item.samples == (item.begin + item.count == item.context));
            check(item.generated + item.prompt_tokens == item.context);
            tokens += item.count;
            r.on_device = true;
            r.computed = item.begin + item.count;
        }
        check(tokens <= options.max_num_batched_tokens);
        clock.advance(std::chrono::microseconds(100 + step_mode % 4 * 500));
        if (step_mode % 17 == 5) throw std::runtime_error("step failed");
        for (std::size_t i = 0; i < batch.size(); ++i) {
            auto& item = batch[i];
            Ref& r = refs[item.seq().local];
            if (step_mode % 13 == 3 && i == 0) {
                item.error = std::make_exception_ptr(std::runtime_error("entry failed"));
                continue;
            }
            if (!item.samples) continue;
            item.token = static_cast<int>(item.generated);
            ++r.context;
            item.finished = item.generated + 1 >= r.answer || (step_mode % 11 == 7 && i == batch.size() - 1);
            // The model is done with it (it may still wait for its reader): its blocks are freed now.
            if (item.finished || item.generated + 1 >= r.max_new) r.on_device = false;
        }
    };

    std::optional<Sched> scheduler;
    scheduler.emplace(clock, step_fn, options, hooks);

    const auto consume = [&](Ref& r) {
        if (!r.handle) return;
        for (;;) {
            auto got = r.handle->channel().try_pop();
            if (got.status != llmfast::StreamStatus::Ok) return;
            r.received.push_back(*got.value);
        }
    };
    const auto check_kv = [&] {
        std::size_t used = 0;
        for (const Ref& r : refs)
            if (r.on_device && r.finishes == 0) used += blocks_for(r.computed);
        const llmfast::SchedulerStats stats = scheduler->stats();
        check(stats.kv_blocks_used == used);
        check(stats.kv_blocks_used <= options.kv_blocks);
        check(stats.running <= options.max_num_seqs);
    };

    int rejected = 0;
    while (!in.done() && refs.size() < 200) {
        const std::uint8_t op = in.next();
        switch (op % 10) {
            case 0:
            case 1: {  // submit
                const std::size_t prompt = 1 + in.next() % 40;
                const std::size_t answer = 1 + in.next() % 30;
                const std::uint8_t flags = in.next();
                Sched::RequestOptions request;
                request.priority = flags % 4;
                if (flags & 0x10) request.timeout = std::chrono::milliseconds(1 + in.next() % 20);
                if (flags & 0x20) request.max_new_tokens = 1 + in.next() % 10;
                std::optional<std::stop_source> stop;
                if (flags & 0x40) {
                    stop.emplace();
                    request.stop_token = stop->get_token();
                }
                const std::size_t local = refs.size();
                auto result = scheduler->try_submit(Seq{local}, prompt, request);
                if (result.status != llmfast::ErrorCode::Ok) {
                    check(!result.handle.valid());
                    ++rejected;
                    check(result.status != llmfast::ErrorCode::BudgetTooSmall || blocks_for(prompt) > options.kv_blocks);
                    break;
                }
                check(blocks_for(prompt) <= options.kv_blocks);
                Ref& r = refs.emplace_back();
                r.id = result.handle.id();
                r.answer = answer;
                r.max_new = request.max_new_tokens;
                r.context = prompt;
                r.handle = std::move(result.handle);
                r.stop = std::move(stop);
                r.reading = (flags & 0x80) == 0;
                break;
            }
            case 2:
            case 3:
            case 4: {  // step
                step_mode = in.next();
                (void)scheduler->step();
                check_kv();
                break;
            }
            case 5: clock.advance(std::chrono::milliseconds(in.next() % 8)); break;
            case 6: {  // cancel one, one of five ways
                if (refs.empty()) break;
                Ref& r = refs[in.next() % refs.size()];
                switch (in.next() % 5) {
                    case 0:
                        if (r.stop) r.stop->request_stop();
                        break;
                    case 1:
                        if (r.handle) {
                            r.handle->cancel();
                            r.consumer_cancelled = true;
                        }
                        break;
                    case 2:
                        consume(r);
                        r.handle.reset();
                        break;
                    case 3: scheduler->cancel(r.id); break;
                    default: scheduler->cancel_all(); break;
                }
                break;
            }
            case 7: {  // the consumer reads
                for (Ref& r : refs)
                    if (r.reading) consume(r);
                break;
            }
            case 8: {  // a slow reader catches up
                if (refs.empty()) break;
                Ref& r = refs[in.next() % refs.size()];
                consume(r);
                r.reading = true;
                break;
            }
            default: {
                const llmfast::SchedulerStats stats = scheduler->stats();
                check(stats.submitted == refs.size());
                check(stats.rejected == static_cast<std::uint64_t>(rejected));
                break;
            }
        }
    }

    // Drain: close, read every channel, step until nothing is pending.
    scheduler->close();
    check(scheduler->try_submit(Seq{0}, 1).status == llmfast::ErrorCode::Closed);
    step_mode = 0;
    std::size_t total_tokens = 0;
    for (const Ref& r : refs) total_tokens += r.context + r.answer;
    const std::size_t limit = 64 + 8 * total_tokens * (refs.size() + 1);
    std::size_t steps = 0;
    while (scheduler->pending() > 0) {
        for (Ref& r : refs) consume(r);
        (void)scheduler->step();
        check_kv();
        check(++steps <= limit);  // no livelock, no deadlock
    }
    for (Ref& r : refs) consume(r);
    const llmfast::SchedulerStats stats = scheduler->stats();
    check(stats.kv_blocks_used == 0 && stats.running == 0 && stats.waiting == 0 && stats.stalled == 0);
    check(stats.finished + stats.cancelled + stats.expired + stats.failed + stats.too_large + stats.closed == refs.size());
    scheduler.reset();

    for (const Ref& r : refs) {
        check(r.finishes == 1);
        const llmfast::SequenceResult& result = r.result;
        if (result.status == llmfast::ErrorCode::Ok) {
            check(result.generated_tokens >= 1);
            check(result.generated_tokens <= r.answer);
            if (r.handle && !r.consumer_cancelled) {
                check(r.received.size() == result.generated_tokens);
            }
        }
        for (std::size_t i = 0; i < r.received.size(); ++i) check(r.received[i] == static_cast<int>(i));
        check(r.received.size() <= result.generated_tokens);
        if (r.handle) {
            auto end = r.handle->channel().try_pop();
            check(end.status != llmfast::StreamStatus::Ok && end.status != llmfast::StreamStatus::Timeout);
            if (!r.consumer_cancelled) {
                check((end.status == llmfast::StreamStatus::Closed) == (result.status == llmfast::ErrorCode::Ok));
            }
        }
    }
    return 0;
}
