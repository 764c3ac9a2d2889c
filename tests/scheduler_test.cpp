// Tests of ContinuousScheduler: a fake step function (each sampling entry produces the index of the token
// it generates; a sequence finishes after its `answer` tokens) on a ManualClock the step advances by 1 ms.
// No test waits on a timer; the threaded test at the end runs under TSan in CI.
#include <llmfast/scheduler.hpp>

#include "catch.hpp"
#include "test_support.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using llmfast::ErrorCode;
using llmfast::FinishReason;
using llmfast::ManualClock;
using llmfast::Preemption;
using llmfast::SchedulerOptions;
using llmfast::SequenceId;
using llmfast::SequenceResult;
using llmfast::StreamStatus;
using llmfast::testing::error_code_of;

namespace {

struct Seq {
    std::size_t answer = 1;  // tokens to generate before finishing
    int tag = 0;
};

using Sched = llmfast::ContinuousScheduler<Seq, int, llmfast::SchedulerStepFunction<Seq, int>, ManualClock>;
using Handle = Sched::Handle;

struct Item {
    SequenceId id;
    std::size_t begin, count, context;
    bool prefill, samples;
};

struct Harness {
    ManualClock clock;
    std::vector<std::vector<Item>> batches;
    std::map<SequenceId, SequenceResult> results;
    int duplicate_finishes = 0;
    std::function<void(Sched::Batch)> before;  // runs first in the step (to throw, cancel, ...)
    std::unique_ptr<Sched> scheduler;

    explicit Harness(SchedulerOptions options, llmfast::SchedulerHooks<Seq> hooks = {}) {
        auto user_finish = hooks.on_finish;
        hooks.on_finish = [this, user_finish](Seq& seq, const SequenceResult& result) {
            if (!results.emplace(result.id, result).second) ++duplicate_finishes;
            if (user_finish) user_finish(seq, result);
        };
        scheduler = std::make_unique<Sched>(
            clock,
            [this](Sched::Batch batch) {
                clock.advance(1ms);
                std::vector<Item>& record = batches.emplace_back();
                for (auto& item : batch) {
                    record.push_back({item.id, item.begin, item.count, item.context, item.prefill, item.samples});
                }
                if (before) before(batch);
                for (auto& item : batch) {
                    if (!item.samples) continue;
                    item.token = static_cast<int>(item.generated);
                    item.finished = item.generated + 1 >= item.seq().answer;
                }
            },
            options, std::move(hooks));
    }

    Sched& s() { return *scheduler; }
    Handle submit(std::size_t prompt, std::size_t answer, Sched::RequestOptions options = {}) {
        return scheduler->submit(Seq{answer, 0}, prompt, std::move(options));
    }
    void steps(int n) {
        for (int i = 0; i < n; ++i) (void)scheduler->step();
    }
    /// Steps until nothing is pending (bounded).
    void run_all(int limit = 10000) {
        for (int i = 0; i < limit && scheduler->pending() > 0; ++i) (void)scheduler->step();
        REQUIRE(scheduler->pending() == 0);
    }
    const std::vector<Item>& last() const { return batches.back(); }
    std::optional<Item> find(std::size_t batch, SequenceId id) const {
        for (const Item& item : batches.at(batch))
            if (item.id == id) return item;
        return std::nullopt;
    }
};

struct Drained {
    std::vector<int> tokens;
    StreamStatus end = StreamStatus::Timeout;  // Timeout: not ended yet
    ErrorCode code = ErrorCode::Ok;
};

Drained drain(const Handle& handle) {
    Drained out;
    for (;;) {
        auto got = handle.channel().try_pop();
        if (got.status == StreamStatus::Ok) {
            out.tokens.push_back(*got.value);
            continue;
        }
        out.end = got.status;
        if (got.status == StreamStatus::Failed) {
            try {
                std::rethrow_exception(got.error);
            } catch (const llmfast::Error& e) {
                out.code = e.code();
            }
        }
        return out;
    }
}

std::vector<int> iota_tokens(std::size_t n) {
    std::vector<int> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<int>(i);
    return v;
}

}  // namespace

TEST_CASE("scheduler: options are validated, naming the field") {
    ManualClock clock;
    const auto make = [&](SchedulerOptions o) { Sched s(clock, [](Sched::Batch) {}, o); };
    const auto message = [&](SchedulerOptions o) -> std::string {
        try {
            make(o);
        } catch (const llmfast::Error& e) {
            CHECK(e.code() == ErrorCode::InvalidArgument);
            return e.what();
        }
        return "";
    };
    CHECK(message({.max_num_seqs = 0}).find("SchedulerOptions::max_num_seqs") != std::string::npos);
    CHECK(message({.max_num_seqs = 8, .max_num_batched_tokens = 4}).find("SchedulerOptions::max_num_batched_tokens") != std::string::npos);
    CHECK(message({.kv_block_size = 0}).find("SchedulerOptions::kv_block_size") != std::string::npos);
    CHECK(message({.kv_blocks = 0}).find("SchedulerOptions::kv_blocks") != std::string::npos);
    CHECK(message({.max_queue = 0}).find("SchedulerOptions::max_queue") != std::string::npos);
    CHECK(message({.priority_aging = 0ns}).find("SchedulerOptions::priority_aging") != std::string::npos);
    CHECK(message({.channel_capacity = 0}).find("SchedulerOptions::channel_capacity") != std::string::npos);
    CHECK(message({.idle_poll = -1ns}).find("SchedulerOptions::idle_poll") != std::string::npos);
    CHECK(message({}).empty());
}

TEST_CASE("scheduler: submit refuses what it cannot accept, and nothing is enqueued then") {
    Harness h({.max_num_seqs = 1, .max_num_batched_tokens = 8, .kv_block_size = 4, .kv_blocks = 4, .max_queue = 2});
    CHECK(error_code_of([&] { (void)h.submit(0, 1); }) == ErrorCode::InvalidArgument);
    CHECK(error_code_of([&] { (void)h.submit(1, 1, {.max_new_tokens = 0}); }) == ErrorCode::InvalidArgument);
    CHECK(error_code_of([&] { (void)h.submit(17, 1); }) == ErrorCode::BudgetTooSmall);  // 5 blocks > 4
    std::stop_source stopped;
    stopped.request_stop();
    CHECK(error_code_of([&] { (void)h.submit(1, 1, {.stop_token = stopped.get_token()}); }) == ErrorCode::Cancelled);
    CHECK(error_code_of([&] { (void)h.submit(1, 1, {.timeout = 0ns}); }) == ErrorCode::DeadlineExceeded);
    Handle a = h.submit(1, 1);
    Handle b = h.submit(1, 1);
    CHECK(error_code_of([&] { (void)h.submit(1, 1); }) == ErrorCode::QueueFull);
    const auto tried = h.s().try_submit(Seq{}, 1);
    CHECK(tried.status == ErrorCode::QueueFull);
    CHECK_FALSE(tried.handle.valid());
    h.s().close();
    CHECK(h.s().try_submit(Seq{}, 1).status == ErrorCode::Closed);
    CHECK(h.s().stats().rejected == 8);
    CHECK(h.s().stats().submitted == 2);
    h.run_all();
    CHECK(h.results.size() == 2);
    CHECK(drain(a).end == StreamStatus::Closed);
    CHECK(drain(b).end == StreamStatus::Closed);
}

TEST_CASE("scheduler: admission under max_num_seqs") {
    Harness h({.max_num_seqs = 2, .max_num_batched_tokens = 64});
    std::vector<Handle> handles;
    for (int i = 0; i < 5; ++i) handles.push_back(h.submit(4, 3));
    h.steps(1);
    REQUIRE(h.last().size() == 2);
    CHECK(h.last()[0].id == handles[0].id());
    CHECK(h.last()[1].id == handles[1].id());
    CHECK(h.s().stats().running == 2);
    CHECK(h.s().stats().waiting == 3);
    h.steps(2);  // both decode their 2nd and 3rd tokens and finish
    CHECK(h.results.size() == 2);
    h.steps(1);  // the next two join at once
    REQUIRE(h.last().size() == 2);
    CHECK(h.last()[0].id == handles[2].id());
    h.run_all();
    for (const Handle& handle : handles) CHECK(drain(handle).tokens == iota_tokens(3));
    CHECK(h.duplicate_finishes == 0);
}

TEST_CASE("scheduler: admission under max_num_batched_tokens, with the last prompt chunked") {
    Harness h({.max_num_seqs = 8, .max_num_batched_tokens = 16});
    const Handle a = h.submit(10, 4);
    const Handle b = h.submit(10, 4);
    const Handle c = h.submit(10, 4);
    h.steps(1);
    REQUIRE(h.last().size() == 2);
    CHECK(h.find(0, a.id())->count == 10);
    CHECK(h.find(0, a.id())->samples);
    CHECK(h.find(0, b.id())->count == 6);  // what is left of the budget
    CHECK_FALSE(h.find(0, b.id())->samples);
    CHECK_FALSE(h.find(0, c.id()));
    h.steps(1);  // a decodes (1), b finishes its prompt (4), c gets 11 of... its 10 tokens fit in 11
    std::size_t total = 0;
    for (const Item& item : h.last()) total += item.count;
    CHECK(total <= 16);
    CHECK(h.find(1, a.id())->count == 1);
    CHECK(h.find(1, b.id())->count == 4);
    CHECK(h.find(1, b.id())->begin == 6);
    CHECK(h.find(1, c.id())->count == 10);
    h.run_all();
    for (const auto& batch : h.batches) {
        std::size_t tokens = 0;
        for (const Item& item : batch) tokens += item.count;
        CHECK(tokens <= 16);
    }
}

TEST_CASE("scheduler: a long prompt is prefilled in chunks and samples only at the last one") {
    Harness h({.max_num_seqs = 4, .max_num_batched_tokens = 32, .max_prefill_chunk = 24});
    const Handle a = h.submit(100, 2);
    h.steps(5);
    const std::vector<std::size_t> begins{0, 24, 48, 72, 96};
    const std::vector<std::size_t> counts{24, 24, 24, 24, 4};
    for (std::size_t i = 0; i < 5; ++i) {
        const auto item = h.find(i, a.id());
        REQUIRE(item);
        CHECK(item->begin == begins[i]);
        CHECK(item->count == counts[i]);
        CHECK(item->prefill);
        CHECK(item->samples == (i == 4));
    }
    h.steps(1);
    CHECK_FALSE(h.find(5, a.id())->prefill);
    CHECK(h.find(5, a.id())->begin == 100);
    CHECK(h.find(5, a.id())->count == 1);
    CHECK(h.results.at(a.id()).status == ErrorCode::Ok);
    CHECK(h.results.at(a.id()).reason == FinishReason::Stop);
    CHECK(drain(a).tokens == iota_tokens(2));
    const auto stats = h.s().stats();
    CHECK(stats.prefill_tokens == 100);
    CHECK(stats.decode_tokens == 1);
}

TEST_CASE("scheduler: decodes go first and take their budget before any prefill chunk") {
    Harness h({.max_num_seqs = 4, .max_num_batched_tokens = 8});
    const Handle a = h.submit(2, 10);
    const Handle b = h.submit(2, 10);
    h.steps(1);  // both prefill and sample
    const Handle big = h.submit(50, 1);
    h.steps(1);
    const auto& batch = h.last();
    REQUIRE(batch.size() == 3);
    CHECK((batch[0].id == a.id() && !batch[0].prefill));
    CHECK((batch[1].id == b.id() && !batch[1].prefill));
    CHECK((batch[2].id == big.id() && batch[2].prefill && batch[2].count == 6));
    // A prefill in progress never takes a running decode's place either.
    h.steps(1);
    CHECK(h.last().size() == 3);
    CHECK(!h.last()[0].prefill);
    CHECK(!h.last()[1].prefill);
    CHECK(h.last()[2].count == 6);
}

TEST_CASE("scheduler: capacity preemption takes the lowest-ranked running sequence, which recomputes") {
    // 4 blocks of 4 tokens = 16 tokens of KV. Three sequences of prompt 4 need 1 block each, then grow.
    Harness h({.max_num_seqs = 4, .max_num_batched_tokens = 16, .kv_block_size = 4, .kv_blocks = 4});
    const Handle a = h.submit(4, 8);
    const Handle b = h.submit(4, 8);
    const Handle c = h.submit(4, 8);
    h.steps(1);  // 3 prefills, 3 blocks; each sampled 1 token (context 5)
    CHECK(h.s().stats().kv_blocks_used == 3);
    h.steps(1);  // decodes need a 2nd block each: a gets the last free one, b preempts c
    CHECK(h.s().stats().preemptions == 1);
    CHECK(h.s().stats().preempted == 1);
    CHECK(h.s().stats().kv_blocks_used == 4);
    CHECK(h.find(1, a.id()));
    CHECK(h.find(1, b.id()));
    CHECK_FALSE(h.find(1, c.id()));
    h.run_all();
    // c came back with a recompute: begin 0, its prompt plus the token it had generated.
    bool recomputed = false;
    for (std::size_t i = 2; i < h.batches.size(); ++i) {
        if (const auto item = h.find(i, c.id()); item && item->prefill) {
            recomputed = true;
            CHECK(item->begin == 0);
            CHECK(item->context == 5);
            break;
        }
    }
    CHECK(recomputed);
    for (const Handle* handle : {&a, &b, &c}) {
        const Drained d = drain(*handle);
        CHECK(d.tokens == iota_tokens(8));  // no token lost or repeated by the preemption
        CHECK(d.end == StreamStatus::Closed);
    }
    CHECK(h.results.at(c.id()).preemptions >= 1);
    CHECK(h.s().stats().kv_blocks_used == 0);
}

TEST_CASE("scheduler: the preempt hook can swap instead; the sequence resumes where it was") {
    std::vector<std::pair<int, Preemption>> resumed;
    int swapped_out = 0;
    llmfast::SchedulerHooks<Seq> hooks;
    hooks.preempt = [&](Seq&) {
        ++swapped_out;
        return Preemption::Swap;
    };
    hooks.resume = [&](Seq& seq, Preemption mode) { resumed.emplace_back(seq.tag, mode); };
    Harness h({.max_num_seqs = 4, .max_num_batched_tokens = 16, .kv_block_size = 4, .kv_blocks = 4}, hooks);
    const Handle a = h.submit(4, 8);
    const Handle b = h.submit(4, 8);
    const Handle c = h.submit(4, 8);
    h.run_all();
    CHECK(swapped_out >= 1);
    REQUIRE(resumed.size() == static_cast<std::size_t>(swapped_out));
    CHECK(resumed[0].second == Preemption::Swap);
    CHECK(h.s().stats().swaps == static_cast<std::uint64_t>(swapped_out));
    // No recompute: c is never prefilled again after its first prompt.
    std::size_t prefills = 0;
    for (std::size_t i = 0; i < h.batches.size(); ++i)
        if (const auto item = h.find(i, c.id()); item && item->prefill) ++prefills;
    CHECK(prefills == 1);
    for (const Handle* handle : {&a, &b, &c}) CHECK(drain(*handle).tokens == iota_tokens(8));
}

TEST_CASE("scheduler: a waiting sequence of higher priority preempts a running one of lower priority") {
    Harness h({.max_num_seqs = 1, .max_num_batched_tokens = 16, .priority_aging = std::chrono::nanoseconds::max()});
    const Handle low = h.submit(4, 10);
    h.steps(3);
    const Handle high = h.submit(4, 2, {.priority = 5});
    h.steps(1);
    REQUIRE(h.last().size() == 1);
    CHECK(h.last()[0].id == high.id());
    CHECK(h.s().stats().priority_preemptions == 1);
    h.steps(1);  // high finishes
    CHECK(h.results.at(high.id()).status == ErrorCode::Ok);
    h.steps(1);  // low is recomputed: prompt + the 3 tokens it had
    CHECK(h.last()[0].id == low.id());
    CHECK(h.last()[0].begin == 0);
    CHECK(h.last()[0].context == 7);
    h.run_all();
    CHECK(drain(low).tokens == iota_tokens(10));
    // An equal priority never preempts (FIFO within a level).
    Harness fifo({.max_num_seqs = 1, .max_num_batched_tokens = 16});
    const Handle first = fifo.submit(4, 5);
    fifo.steps(1);
    const Handle second = fifo.submit(4, 5);
    fifo.steps(1);
    CHECK(fifo.last()[0].id == first.id());
    CHECK(fifo.s().stats().preemptions == 0);
    (void)second;
}

TEST_CASE("scheduler: priority preemption is capped per sequence (max_priority_preemptions)") {
    Harness h({.max_num_seqs = 1, .max_num_batched_tokens = 16, .priority_aging = std::chrono::nanoseconds::max(),
               .max_priority_preemptions = 2});
    const Handle low = h.submit(2, 6);
    std::vector<Handle> highs;
    for (int round = 0; round < 5; ++round) {
        h.steps(1);                                       // low (re)admitted and runs
        highs.push_back(h.submit(2, 1, {.priority = 9}));  // a high one arrives
        h.steps(1);
    }
    CHECK(h.results.count(low.id()) == 1);  // not preempted a 3rd time: it ran to its end
    CHECK(h.results.at(low.id()).preemptions == 2);
    h.run_all();
    CHECK(drain(low).tokens == iota_tokens(6));
    CHECK(h.results.size() == 6);
}

TEST_CASE("scheduler: no starvation under a steady flood of high-priority work (aging)") {
    // One slot; every step (1 ms) a new priority-3 sequence arrives; a priority-0 one waits. The documented
    // rule: a sequence submitted d later with a priority higher by 3 ranks before it only if d < 3 * aging.
    // So only the flood submitted less than 15 ms after it may finish before it, and it does finish.
    Harness h({.max_num_seqs = 1, .max_num_batched_tokens = 16, .priority_aging = 5ms});
    std::vector<SequenceId> finish_order;
    std::map<SequenceId, std::chrono::nanoseconds> submitted_at;
    const auto submit = [&](int priority) {
        const Handle handle = h.submit(2, 2, {.priority = priority});
        submitted_at[handle.id()] = h.clock.now().time_since_epoch();
        return handle;
    };
    std::vector<Handle> flood{submit(3)};
    const Handle low = submit(0);
    int steps = 0;
    while (h.results.count(low.id()) == 0 && steps < 500) {
        flood.push_back(submit(3));
        const std::size_t before = h.results.size();
        h.steps(1);
        ++steps;
        if (h.results.size() > before) {
            for (const Handle& f : flood)
                if (h.results.count(f.id()) && std::find(finish_order.begin(), finish_order.end(), f.id()) == finish_order.end())
                    finish_order.push_back(f.id());
        }
    }
    REQUIRE(h.results.count(low.id()) == 1);
    for (const SequenceId id : finish_order) CHECK(submitted_at[id] - submitted_at[low.id()] < 15ms);
    CHECK(h.results.at(low.id()).status == ErrorCode::Ok);
    // Without aging the flood starves it (the documented contrast).
    Harness no_aging({.max_num_seqs = 1, .max_num_batched_tokens = 16, .priority_aging = std::chrono::nanoseconds::max()});
    std::vector<Handle> flood2{no_aging.submit(2, 2, {.priority = 3})};
    const Handle starved = no_aging.submit(2, 2);
    for (int i = 0; i < 100; ++i) {
        flood2.push_back(no_aging.submit(2, 2, {.priority = 3}));
        no_aging.steps(1);
    }
    CHECK(no_aging.results.count(starved.id()) == 0);
}

TEST_CASE("scheduler: ranks never change over time (virtual submission time)") {
    // Regression (fuzz_scheduler_ops, corpus file regression_rank_flip): with a floored aging boost,
    // priority 0 submitted at 0 ms and priority 1 submitted at 0.5 ms tied (the older won) whenever the
    // clock's fraction of a millisecond was below 0.5, and ranked the other way otherwise; sequences that
    // did not fit together then preempted each other by recompute without end. The rank is now
    // submitted - priority * aging, fixed at submit: b (-0.5 ms) ranks before a (0 ms) at every instant.
    Harness h({.max_num_seqs = 1, .max_num_batched_tokens = 16, .priority_aging = 1ms});
    const Handle blocker = h.submit(2, 3, {.priority = 9});
    const Handle a = h.submit(2, 2);
    h.clock.advance(500us);
    const Handle b = h.submit(2, 2, {.priority = 1});
    h.clock.advance(700us);  // steps start at x.2 ms: where the floored ranks tied and a won
    h.run_all();
    const auto first_step_of = [&](SequenceId id) {
        for (std::size_t i = 0; i < h.batches.size(); ++i)
            if (h.find(i, id)) return i;
        return h.batches.size();
    };
    CHECK(first_step_of(blocker.id()) == 0);
    CHECK(first_step_of(b.id()) < first_step_of(a.id()));
}

TEST_CASE("scheduler: deadlines expire while waiting and while running") {
    Harness h({.max_num_seqs = 1, .max_num_batched_tokens = 16});
    const Handle running = h.submit(2, 100, {.timeout = 10ms});
    const Handle waiting = h.submit(2, 5, {.timeout = 3ms});
    h.steps(4);  // the clock is at 4 ms: waiting has expired at the start of the 4th step
    CHECK(h.results.at(waiting.id()).status == ErrorCode::DeadlineExceeded);
    const Drained w = drain(waiting);
    CHECK(w.tokens.empty());
    CHECK(w.end == StreamStatus::Failed);
    CHECK(w.code == ErrorCode::DeadlineExceeded);
    h.steps(7);  // 11 ms
    REQUIRE(h.results.count(running.id()) == 1);
    CHECK(h.results.at(running.id()).status == ErrorCode::DeadlineExceeded);
    const Drained r = drain(running);
    CHECK(r.tokens == iota_tokens(10));  // what was produced in time was delivered
    CHECK(r.code == ErrorCode::DeadlineExceeded);
    CHECK(h.s().stats().expired == 2);
    CHECK(h.s().stats().kv_blocks_used == 0);
    CHECK(h.s().pending() == 0);
}

TEST_CASE("scheduler: cancellation mid-decode frees capacity at the next step") {
    // 3 blocks of 4 tokens. a (prompt 4) holds 2 blocks after 3 steps; b's prompt of 12 needs all 3.
    Harness h({.max_num_seqs = 4, .max_num_batched_tokens = 16, .kv_block_size = 4, .kv_blocks = 3});
    std::stop_source stop;
    std::optional<Handle> a = h.submit(4, 100, {.stop_token = stop.get_token()});
    const Handle b = h.submit(12, 2);
    h.steps(3);
    CHECK(h.s().stats().kv_blocks_used == 2);
    CHECK_FALSE(h.find(2, b.id()));
    const std::size_t batches_before = h.batches.size();

    SECTION("stop token") { stop.request_stop(); }
    SECTION("the receiver cancels the channel") { a->channel().cancel(); }
    SECTION("every copy of the handle dropped") { a.reset(); }
    SECTION("cancel(id)") { h.s().cancel(a->id()); }

    h.steps(1);
    CHECK(h.s().stats().cancelled >= 1);
    REQUIRE(h.batches.size() == batches_before + 1);
    REQUIRE(h.last().size() == 1);
    CHECK(h.last()[0].id == b.id());  // admitted in the very step that removed the cancelled one
    h.run_all();
    CHECK(h.s().stats().kv_blocks_used == 0);
    CHECK(h.duplicate_finishes == 0);
}

TEST_CASE("scheduler: cancel_all ends everything submitted before it, not what comes after") {
    Harness h({.max_num_seqs = 1, .max_num_batched_tokens = 16});
    const Handle a = h.submit(2, 50);
    const Handle b = h.submit(2, 50);
    h.steps(2);
    h.s().cancel_all();
    const Handle c = h.submit(2, 2);
    h.steps(1);
    CHECK(h.results.at(a.id()).status == ErrorCode::Cancelled);
    CHECK(h.results.at(b.id()).status == ErrorCode::Cancelled);
    REQUIRE(h.last().size() == 1);
    CHECK(h.last()[0].id == c.id());
    h.run_all();
    CHECK(drain(c).tokens == iota_tokens(2));
    CHECK(drain(a).code == ErrorCode::Cancelled);
    CHECK(drain(b).code == ErrorCode::Cancelled);
}

TEST_CASE("scheduler: the step function's failures end only the sequences they concern") {
    Harness h({.max_num_seqs = 4, .max_num_batched_tokens = 16});
    const Handle a = h.submit(2, 3);
    const Handle b = h.submit(2, 3);
    h.steps(1);
    h.before = [&](Sched::Batch batch) {
        for (auto& item : batch)
            if (item.id == a.id()) item.error = std::make_exception_ptr(std::runtime_error("bad logits"));
    };
    h.steps(1);
    CHECK(h.results.at(a.id()).status == ErrorCode::HandlerFailed);
    const Handle c = h.submit(2, 3);
    h.before = [](Sched::Batch) { throw std::runtime_error("device lost"); };
    h.steps(1);  // the whole batch (b, c) fails
    CHECK(h.results.at(b.id()).status == ErrorCode::HandlerFailed);
    CHECK(h.results.at(c.id()).status == ErrorCode::HandlerFailed);
    const Drained d = drain(b);
    CHECK(d.code == ErrorCode::HandlerFailed);
    try {
        std::rethrow_exception(h.results.at(c.id()).error);
    } catch (const llmfast::Error& e) {
        CHECK(std::string(e.what()).find("device lost") != std::string::npos);
    }
    CHECK(h.s().stats().failed == 3);
    // Contract breaks: a sampling entry without token nor finished; a token on a non-sampling chunk.
    std::map<SequenceId, ErrorCode> ended;
    ManualClock clock;
    Sched k(clock,
            [](Sched::Batch batch) {
                for (auto& item : batch)
                    if (!item.samples) item.token = 1;
            },
            {.max_num_batched_tokens = 256, .max_prefill_chunk = 2},
            {.on_finish = [&](Seq&, const SequenceResult& r) { ended[r.id] = r.status; }});
    const Handle x = k.submit(Seq{}, 1);
    const Handle y = k.submit(Seq{}, 5);
    (void)k.step();
    CHECK(ended.at(x.id()) == ErrorCode::HandlerFailed);
    CHECK(ended.at(y.id()) == ErrorCode::HandlerFailed);
    CHECK(drain(y).code == ErrorCode::HandlerFailed);
}

TEST_CASE("scheduler: a full channel holds its sequence back without blocking the step (backpressure)") {
    Harness h({.max_num_seqs = 4, .max_num_batched_tokens = 16, .channel_capacity = 2});
    const Handle slow = h.submit(2, 6);
    const Handle fast = h.submit(2, 6);
    std::vector<int> fast_tokens;
    for (int i = 0; i < 8; ++i) {
        (void)h.s().step();
        while (auto got = fast.channel().try_pop()) fast_tokens.push_back(*got.value);
    }
    CHECK(fast_tokens == iota_tokens(6));
    CHECK(h.results.count(slow.id()) == 0);  // 2 in the channel, 1 held: not scheduled any further
    CHECK(h.s().stats().stalled == 1);
    std::size_t slow_entries = 0;
    for (std::size_t i = 0; i < h.batches.size(); ++i) slow_entries += h.find(i, slow.id()) ? 1 : 0;
    CHECK(slow_entries == 3);
    std::vector<int> slow_tokens;
    for (int i = 0; i < 20 && h.results.count(slow.id()) == 0; ++i) {
        while (auto got = slow.channel().try_pop()) slow_tokens.push_back(*got.value);
        (void)h.s().step();
    }
    const Drained rest = drain(slow);
    slow_tokens.insert(slow_tokens.end(), rest.tokens.begin(), rest.tokens.end());
    CHECK(slow_tokens == iota_tokens(6));
    CHECK(rest.end == StreamStatus::Closed);
}

TEST_CASE("scheduler: a context that outgrows the whole KV capacity ends with BudgetTooSmall") {
    Harness h({.max_num_seqs = 2, .max_num_batched_tokens = 16, .kv_block_size = 4, .kv_blocks = 2});
    const Handle a = h.submit(6, 100);
    h.run_all();
    CHECK(h.results.at(a.id()).status == ErrorCode::BudgetTooSmall);
    const Drained d = drain(a);
    CHECK(d.tokens == iota_tokens(3));  // context 6 + 3 = 9 > 8 tokens of KV: the 4th decode cannot fit
    CHECK(d.code == ErrorCode::BudgetTooSmall);
    CHECK(h.s().stats().too_large == 1);
}

TEST_CASE("scheduler: max_new_tokens ends with FinishReason::Length") {
    Harness h({});
    const Handle a = h.submit(3, 1000, {.max_new_tokens = 4});
    h.run_all();
    CHECK(h.results.at(a.id()).reason == FinishReason::Length);
    CHECK(h.results.at(a.id()).generated_tokens == 4);
    CHECK(drain(a).tokens == iota_tokens(4));
}

TEST_CASE("scheduler: the destructor ends whatever nobody drove with Closed, exactly once") {
    std::map<SequenceId, ErrorCode> ended;
    int calls = 0;
    Handle a, b;
    {
        ManualClock clock;
        Sched s(clock, [](Sched::Batch) {}, {}, {.on_finish = [&](Seq&, const SequenceResult& r) {
                                                     ++calls;
                                                     ended[r.id] = r.status;
                                                 }});
        a = s.submit(Seq{}, 3);
        b = s.submit(Seq{}, 3);
    }
    CHECK(calls == 2);
    CHECK(ended[a.id()] == ErrorCode::Closed);
    CHECK(drain(b).code == ErrorCode::Closed);
}

TEST_CASE("scheduler: a second driver is refused") {
    Harness h({});
    const Handle a = h.submit(2, 2);
    ErrorCode nested = ErrorCode::Ok;
    h.before = [&](Sched::Batch) { nested = error_code_of([&] { (void)h.s().step(); }); };
    h.steps(1);
    CHECK(nested == ErrorCode::InvalidArgument);
    h.before = {};
    h.run_all();
    CHECK(drain(a).tokens == iota_tokens(2));
}

TEST_CASE("scheduler: stats report running, waiting, capacity use and step figures") {
    Harness h({.max_num_seqs = 2, .max_num_batched_tokens = 16, .kv_block_size = 4, .kv_blocks = 10});
    const Handle a = h.submit(8, 4);
    const Handle b = h.submit(8, 4);
    const Handle c = h.submit(8, 4);
    h.steps(1);
    const auto s = h.s().stats();
    CHECK(s.running == 2);
    CHECK(s.waiting == 1);
    CHECK(s.kv_blocks_used == 4);
    CHECK(s.kv_blocks_total == 10);
    CHECK(s.kv_use() == Approx(0.4));
    CHECK(s.steps == 1);
    CHECK(s.last_step_tokens == 16);
    CHECK(s.last_step_sequences == 2);
    CHECK(s.last_step_time == 1ms);
    h.run_all();
    CHECK(h.s().stats().finished == 3);
    (void)a;
    (void)b;
    (void)c;
}

TEST_CASE("scheduler: run() on the owned thread; submit and cancel from many threads") {
    std::atomic<int> finished{0};
    std::atomic<int> duplicate{0};
    std::vector<std::atomic<int>> seen(4096);
    llmfast::SchedulerHooks<Seq> hooks;
    hooks.on_finish = [&](Seq&, const SequenceResult& r) {
        if (seen[r.id].fetch_add(1) != 0) duplicate.fetch_add(1);
        finished.fetch_add(1);
    };
    llmfast::ContinuousScheduler<Seq, int> scheduler(
        [](std::span<llmfast::ScheduledSequence<Seq, int>> batch) {
            for (auto& item : batch) {
                if (!item.samples) continue;
                item.token = static_cast<int>(item.generated);
                item.finished = item.generated + 1 >= item.seq().answer;
            }
        },
        {.max_num_seqs = 16, .max_num_batched_tokens = 64, .kv_block_size = 4, .kv_blocks = 64}, hooks);
    scheduler.start();
    constexpr int threads = 4;
    constexpr int per_thread = 200;
    std::atomic<int> complete_streams{0};
    {
        std::vector<std::jthread> producers;
        for (int t = 0; t < threads; ++t) {
            producers.emplace_back([&, t] {
                for (int i = 0; i < per_thread; ++i) {
                    Handle handle = scheduler.submit(Seq{static_cast<std::size_t>(1 + (i * 7 + t) % 12), t},
                                                     static_cast<std::size_t>(1 + i % 9), {.priority = i % 3});
                    if (i % 5 == 0) scheduler.cancel(handle.id());
                    if (i % 7 == 0) continue;  // drop the handle: cancelled at the next step
                    int count = 0;
                    for (;;) {
                        auto got = handle.channel().pop_for(std::chrono::seconds(30));
                        if (got.status != StreamStatus::Ok) {
                            if (got.status == StreamStatus::Closed) complete_streams.fetch_add(1);
                            break;
                        }
                        ++count;
                    }
                    (void)count;
                }
            });
        }
    }
    scheduler.close();
    while (scheduler.pending() > 0) std::this_thread::sleep_for(1ms);
    CHECK(finished.load() == threads * per_thread);
    CHECK(duplicate.load() == 0);
    const auto s = scheduler.stats();
    CHECK(s.finished + s.cancelled == static_cast<std::uint64_t>(threads * per_thread));
    CHECK(s.finished >= static_cast<std::uint64_t>(complete_streams.load()));  // dropped handles may finish first
    CHECK(s.kv_blocks_used == 0);
}
