// examples/scheduler.cpp — ContinuousScheduler: iteration-level (continuous) batching for code that
// runs a model one step at a time. Sequences join the running batch at the next step and leave as soon
// as they finish; long prompts are prefilled in chunks; each token is streamed through the sequence's
// TokenChannel. The "model" here is a toy step function that echoes the prompt's letters.
#include <llmfast/scheduler.hpp>

#include <fmt/format.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace {

struct Sequence {           // the user's own per-sequence state
    std::string name;
    std::string prompt;     // one "token" per character in this toy
    std::string generated;
};

}  // namespace

int main() {
    using Scheduler = llmfast::ContinuousScheduler<Sequence, char>;
    std::vector<std::string> log;
    int steps = 0;

    // One model iteration over the batch: run tokens [begin, begin + count) of each context and, where
    // `samples`, produce the next token. Here: the next token repeats the prompt, '.' ends the answer.
    auto step = [&](std::span<llmfast::ScheduledSequence<Sequence, char>> batch) {
        std::string line = fmt::format("step {:2}:", ++steps);
        for (auto& item : batch) {
            Sequence& seq = item.seq();
            line += fmt::format(" {}[{}{}]", seq.name, item.prefill ? "prefill " : "decode ", item.count);
            if (!item.samples) continue;
            const char next = seq.prompt[seq.generated.size() % seq.prompt.size()];
            item.token = next;
            seq.generated += next;
            item.finished = seq.generated.size() >= 3 * seq.name.size();  // a toy end-of-sequence rule
        }
        log.push_back(line);
    };

    Scheduler scheduler(step,
                        {.max_num_seqs = 3, .max_num_batched_tokens = 8, .kv_block_size = 4, .kv_blocks = 32},
                        {.on_finish = [&](Sequence& seq, const llmfast::SequenceResult& result) {
                            log.push_back(fmt::format("         {} ended: {}, {} tokens, {} preemption(s)", seq.name,
                                                      to_string(result.status), result.generated_tokens,
                                                      result.preemptions));
                        }});

    std::vector<Scheduler::Handle> handles;
    handles.push_back(scheduler.submit({"a", "abc", {}}, 3));
    handles.push_back(scheduler.submit({"bb", "a long prompt of 20 t", {}}, 20));  // prefilled in chunks
    handles.push_back(scheduler.submit({"ccc", "xyz", {}}, 3, {.priority = 1}));   // ranks first
    handles.push_back(scheduler.submit({"d", "pq", {}}, 2, {.max_new_tokens = 2}));  // stops at 2 tokens

    // Drive it on this thread (or call scheduler.start() to give it a thread of its own).
    while (scheduler.pending() > 0) (void)scheduler.step();
    for (const std::string& line : log) fmt::print("{}\n", line);

    // Each sequence's tokens, in order, from its channel (closed at the end).
    for (Scheduler::Handle& handle : handles) {
        std::string tokens;
        for (auto received = handle.channel().try_pop(); received.status == llmfast::StreamStatus::Ok;
             received = handle.channel().try_pop())
            tokens += *received.value;
        fmt::print("sequence {}: '{}'\n", handle.id(), tokens);
    }
    const llmfast::SchedulerStats s = scheduler.stats();
    fmt::print("stats: {} steps, {} prefill + {} decode tokens (mean {:.1f} per step), {} finished\n", s.steps,
               s.prefill_tokens, s.decode_tokens, s.mean_step_tokens(), s.finished);
    return s.finished == 4 ? 0 : 1;
}
