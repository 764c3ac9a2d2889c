// examples/demo.cpp — llmfast's main demo (`llmfast-demo`): the optimization table of a widely shared
// chapter on LLM latency, measured end to end against a simulated LLM backend.
//
// A workload of Chinese and English prompts (exact repeats, paraphrases, new prompts) is replayed by
// many concurrent clients through a SIMULATED backend (a latency model of a 7-8B model on one GPU; no
// model runs). Each optimization is measured once plainly and once switched on, and the result is
// printed next to what that chapter claimed. `llmfast-demo --help` lists every option and the
// latency model with its sources.
//
// One request, as a client thread serves it (Demo::serve_one):
//
//   prompt ──► PromptCompressor ──► SemanticCache::get_or_compute ──hit──► replay ──┐
//                                        │ miss (concurrent identical misses: once)   │
//                                        ▼                                            │
//                          DynamicBatcher<Job, JobResult> ──► Backend::run_batch      │
//                                                   (the simulated GPU, one batch     │
//                                                    at a time) pushes byte-level     │
//                                                    tokens into a TokenChannel       │
//                          (continuous row: examples::ContinuousEngine instead, a     │
//                           ContinuousScheduler over the same latency model per step) │
//                                        ┌───────────────────────┘                    │
//                                        ▼                                            ▼
//                       utf8_chunks(channel.stream()) ──► OpenAiChunkEncoder (SSE) ──► SseParser: the
//                       whole code points only                                        client reads it back
//
// Time: the backend sleeps for its modelled durations divided by --time-scale, so the run finishes
// quickly; every figure is reported in simulated milliseconds. The GPU keeps its own simulated
// timeline (Backend) and llmfast's own work is counted at its real duration (Demo::serve_one), so the
// scheduling jitter of a busy host, which the time scale magnifies, stays out of the figures.
#include <llmfast/detail/percentile.hpp>
#include <llmfast/llmfast.hpp>
#include <llmfast/sse.hpp>
#include <llmfast/stream.hpp>
#include <llmfast/streaming_generator.hpp>

#include "simulated_model.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#if defined(__linux__)
#include <sys/prctl.h>
#endif
#if defined(__unix__)  // --through-gateway: a child process and HTTP over loopback sockets
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

namespace {

using Json = nlohmann::ordered_json;

#ifndef LLMFAST_EXAMPLES_DIR
#define LLMFAST_EXAMPLES_DIR "examples"
#endif

// ------------------------------------------------------------------------------------------------
// Options

struct Options {
    // workload
    std::string workload = std::string(LLMFAST_EXAMPLES_DIR) + "/data/workload.jsonl";
    std::size_t requests = 240;
    std::size_t clients = 16;
    double repeat_share = 0.25;
    double paraphrase_share = 0.25;
    std::uint64_t seed = 42;
    double output_scale = 1.0;
    // backend model (simulated milliseconds)
    double time_scale = 100.0;
    double overhead_ms = 30.0;
    double prefill_ms_per_token = 0.1;
    double decode_ms_per_token = 13.0;
    double batch_item_ms = 0.4;
    // optimizations
    std::size_t max_batch = 16;
    std::size_t max_batch_tokens = 8192;
    double max_wait_ms = 20.0;
    std::size_t step_tokens = 512;  // continuous batching: the scheduler's max_num_batched_tokens
    double similarity_threshold = 0.0;  // 0: the cache's default
    bool semantic = true;
    double price_in = 1.0;
    double price_out = 1.0;
    // output
    std::string json_path;
    std::vector<std::string> rows = {"streaming", "cache", "batching", "continuous", "compression", "int8", "all"};
    bool progress = true;
    bool quick = false;
    std::string gateway_path;  // --through-gateway: the llmfast-gateway binary ("" = in process)
    std::string dump_gateway_path;  // --dump-gateway-workload: write the requests + gateway settings, run nothing
};

struct OptionSpec {
    const char* name;
    const char* arg;
    const char* help;
    std::function<void(std::string_view)> set;
};

double parse_double(std::string_view name, std::string_view text) {
    try {
        std::size_t used = 0;
        const double value = std::stod(std::string(text), &used);
        if (used != text.size() || !std::isfinite(value)) throw std::invalid_argument("trailing");
        return value;
    } catch (const std::exception&) {
        throw llmfast::Error(llmfast::ErrorCode::InvalidArgument, fmt::format("{}: not a number: '{}'", name, text));
    }
}

std::size_t parse_size(std::string_view name, std::string_view text) {
    std::size_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size())
        throw llmfast::Error(llmfast::ErrorCode::InvalidArgument, fmt::format("{}: not a count: '{}'", name, text));
    return value;
}

std::vector<std::string> split_list(std::string_view text) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        const std::size_t comma = std::min(text.find(',', pos), text.size());
        if (comma > pos) out.emplace_back(text.substr(pos, comma - pos));
        pos = comma + 1;
    }
    return out;
}

std::vector<OptionSpec> option_specs(Options& o) {
    auto d = [](std::string_view name, double& target) {
        return [name, &target](std::string_view v) { target = parse_double(name, v); };
    };
    auto z = [](std::string_view name, std::size_t& target) {
        return [name, &target](std::string_view v) { target = parse_size(name, v); };
    };
    return {
        {"--workload", "PATH", "JSONL workload: one object per line with \"prompt\", \"lang\" (zh/en), \"group\" "
                               "(same group = paraphrases), optional \"output_tokens\" [examples/data/workload.jsonl]",
         [&o](std::string_view v) { o.workload = std::string(v); }},
        {"--requests", "N", "requests replayed per run [240]", z("--requests", o.requests)},
        {"--clients", "N", "concurrent clients; each sends its next request when the last one finished [16]",
         z("--clients", o.clients)},
        {"--repeat", "SHARE", "share of requests that repeat an earlier prompt exactly [0.25]",
         d("--repeat", o.repeat_share)},
        {"--paraphrase", "SHARE", "share of requests that paraphrase an earlier prompt (another prompt of a group "
                                  "already seen); the rest are new prompts [0.25]",
         d("--paraphrase", o.paraphrase_share)},
        {"--seed", "N", "random seed of the request sequence [42]",
         [&o](std::string_view v) { o.seed = parse_size("--seed", v); }},
        {"--output-scale", "F", "multiplies every output length of the workload [1]", d("--output-scale", o.output_scale)},
        {"--time-scale", "F", "simulated time runs F times faster than real time [100]", d("--time-scale", o.time_scale)},
        {"--overhead-ms", "MS", "per backend call: HTTP round trip, tokenization, scheduling; latency, not GPU time [30]",
         d("--overhead-ms", o.overhead_ms)},
        {"--prefill-ms", "MS", "prefill time per prompt token (compute-bound: a batch pays for the sum) [0.1]",
         d("--prefill-ms", o.prefill_ms_per_token)},
        {"--decode-ms", "MS", "decode time per output token of a single sequence [13]", d("--decode-ms", o.decode_ms_per_token)},
        {"--batch-item-ms", "MS", "extra decode-step time per sequence in a batch: one step for n sequences costs "
                                  "(decode-ms - batch-item-ms) + batch-item-ms * n [0.4]",
         d("--batch-item-ms", o.batch_item_ms)},
        {"--max-batch", "N", "batching: largest batch [16]", z("--max-batch", o.max_batch)},
        {"--max-wait-ms", "MS", "batching: longest a request waits for its batch to fill (simulated ms) [20]",
         d("--max-wait-ms", o.max_wait_ms)},
        {"--max-batch-tokens", "N", "batching: most prompt tokens in one batch (the batcher's cost limit) [8192]",
         z("--max-batch-tokens", o.max_batch_tokens)},
        {"--step-tokens", "N", "continuous batching: tokens per engine step, decode tokens and prefill chunks "
                               "together (the scheduler's max_num_batched_tokens; >= --max-batch, which is its "
                               "max_num_seqs) [512]",
         z("--step-tokens", o.step_tokens)},
        {"--semantic", "on|off", "the cache's semantic tier (off: exact matches only) [on]",
         [&o](std::string_view v) {
             if (v != "on" && v != "off")
                 throw llmfast::Error(llmfast::ErrorCode::InvalidArgument, "--semantic takes on or off");
             o.semantic = v == "on";
         }},
        {"--threshold", "F", "semantic cache similarity threshold (0 = the cache's default) [0]",
         d("--threshold", o.similarity_threshold)},
        {"--price-in", "P", "cost per prompt token sent to the backend (any unit) [1]", d("--price-in", o.price_in)},
        {"--price-out", "P", "cost per output token generated by the backend [1]", d("--price-out", o.price_out)},
        {"--rows", "LIST", "comma-separated rows to run: streaming,cache,batching,continuous,compression,int8,all "
                           "[all of them]",
         [&o](std::string_view v) { o.rows = split_list(v); }},
        {"--through-gateway", "PATH",
         "replay the same requests over HTTP through llmfast-gateway (the binary at PATH; a fresh one per run on a "
         "free 127.0.0.1 port, its simulated backend on the same latency model) and print the table as its clients "
         "measured it (scripts/demo.sh --gateway)",
         [&o](std::string_view v) { o.gateway_path = std::string(v); }},
        {"--dump-gateway-workload", "PATH",
         "write the gateway runs' request sequence (each request's kind, HTTP body and expected answer) and the "
         "semantic-cache run's gateway flags and config file as JSON to PATH, and run nothing (other drivers, "
         "e.g. benchmarks/replica_hit_rate.py, replay it)",
         [&o](std::string_view v) { o.dump_gateway_path = std::string(v); }},
        {"--json", "PATH", "also write the results as JSON to PATH", [&o](std::string_view v) { o.json_path = std::string(v); }},
        {"--quick", "", "tiny run for tests: 40 requests, 8 clients, outputs x0.25",
         [&o](std::string_view) {
             o.quick = true;
             o.requests = 40;
             o.clients = 8;
             o.time_scale = 100;
             o.output_scale = 0.25;
         }},
        {"--no-progress", "", "do not print progress to stderr", [&o](std::string_view) { o.progress = false; }},
    };
}

// Prints `text` wrapped at `width` columns, continuation lines indented by `indent` (ASCII text).
void print_wrapped(std::string_view first, std::string_view text, std::size_t indent, std::size_t width = 100) {
    std::string line(first);
    if (line.size() < indent) line.resize(indent, ' ');
    else line += ' ';
    bool empty = true;
    std::size_t pos = 0;
    while (pos < text.size()) {
        const std::size_t space = std::min(text.find(' ', pos), text.size());
        const std::string_view word = text.substr(pos, space - pos);
        if (!empty && line.size() + 1 + word.size() > width) {
            fmt::print("{}\n", line);
            line.assign(indent, ' ');
            empty = true;
        }
        if (!empty) line += ' ';
        line += word;
        empty = false;
        pos = space + 1;
    }
    fmt::print("{}\n", line);
}

void print_help(Options& o) {
    print_wrapped("llmfast-demo:",
                  "replays a workload of Chinese and English prompts (exact repeats, paraphrases, new prompts) "
                  "from many concurrent clients through a SIMULATED LLM backend (a latency model of a 7-8B model "
                  "on one GPU; no model runs), once plainly and once with each llmfast optimization (streaming, "
                  "semantic cache, dynamic batching, continuous batching, prompt compression, int8 cache vectors, all together), and "
                  "prints the measured figures next to the ones that chapter claimed. Figures are in simulated "
                  "milliseconds.",
                  0);
    fmt::print("\nusage: llmfast-demo [options]   (later options override earlier ones: --quick --requests 60)\n\n");
    for (const auto& spec : option_specs(o)) {
        print_wrapped(fmt::format("  {} {}", spec.name, spec.arg), spec.help, 24);
    }
    print_wrapped("  --help", "this text", 24);
    fmt::print("\nThe simulated backend (all times in simulated ms):\n");
    print_wrapped("  call", "= overhead (latency only, not GPU time) + wait in the batcher's queue + the batch's time on the GPU, which runs one batch at a time", 12);
    print_wrapped("  batch", "= prefill-ms x (prompt tokens of the batch) + one decode step per output token of its longest answer; a step for k unfinished sequences takes (decode-ms - batch-item-ms) + batch-item-ms x k", 12);
    print_wrapped("  continuous", "= the same model per iteration on a continuous-batching engine (ContinuousScheduler, examples/simulated_model.hpp): each step runs one decode token for every running sequence plus prefill chunks of newly admitted ones (at most --max-batch sequences and --step-tokens tokens) and takes (decode-ms - batch-item-ms) + batch-item-ms x n + prefill-ms x (prefill tokens); a request joins the next step after it arrives and leaves as soon as its answer is done", 12);
    print_wrapped("  plain", "= the same queue with batches of one request; no streaming (the answer arrives whole), no cache, no compression", 12);
    print_wrapped("  sources",
                  "decode 13 ms per token: Llama-3.1-8B-Instruct (BF16) on one A100 40GB under vLLM decodes about "
                  "75 tokens/s at concurrency 1, and reaches 6.6x that throughput at concurrency 8, i.e. a step for "
                  "8 sequences takes about 15.8 ms, 0.4 ms per extra sequence (John Musgrave, \"vLLM "
                  "throughput-latency sweep on NVIDIA A100\"); prefill 0.1 ms per token: llama.cpp's pp512 "
                  "benchmark of LLaMA-7B F16 on an RTX 4090, about 11,000 tokens/s (llama.cpp PR #4766); overhead "
                  "30 ms: an assumption for an in-region HTTP call with tokenization and scheduling.",
                  12);
    print_wrapped("  time", "the backend sleeps modelled durations divided by --time-scale; the GPU keeps its own simulated timeline, and llmfast's own work (cache, compression, streaming) counts at its real duration, so host jitter stays out of the figures", 12);
}

// Returns false when the program should exit (help printed).
bool parse_options(int argc, char** argv, Options& o) {
    auto specs = option_specs(o);
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            print_help(o);
            return false;
        }
        const auto it = std::find_if(specs.begin(), specs.end(), [&](const OptionSpec& s) { return arg == s.name; });
        if (it == specs.end())
            throw llmfast::Error(llmfast::ErrorCode::InvalidArgument, fmt::format("unknown option '{}' (see --help)", arg));
        if (std::string_view(it->arg).empty()) {
            it->set({});
        } else {
            if (i + 1 >= argc)
                throw llmfast::Error(llmfast::ErrorCode::InvalidArgument, fmt::format("{} needs a value", arg));
            it->set(argv[++i]);
        }
    }
    auto fail = [](std::string what) { throw llmfast::Error(llmfast::ErrorCode::InvalidArgument, std::move(what)); };
    if (o.requests == 0) fail("--requests must be > 0");
    if (o.clients == 0) fail("--clients must be > 0");
    if (o.repeat_share < 0 || o.paraphrase_share < 0 || o.repeat_share + o.paraphrase_share > 1)
        fail("--repeat and --paraphrase must be >= 0 with a sum <= 1");
    if (!(o.time_scale > 0)) fail("--time-scale must be > 0");
    if (!(o.output_scale > 0)) fail("--output-scale must be > 0");
    if (o.overhead_ms < 0 || o.prefill_ms_per_token < 0 || o.decode_ms_per_token <= 0 || o.batch_item_ms < 0 ||
        o.batch_item_ms > o.decode_ms_per_token)
        fail("backend times must be >= 0, --decode-ms > 0 and --batch-item-ms <= --decode-ms");
    if (o.max_batch == 0) fail("--max-batch must be > 0");
    if (o.max_batch_tokens == 0) fail("--max-batch-tokens must be > 0");
    if (o.max_wait_ms < 0) fail("--max-wait-ms must be >= 0");
    if (o.step_tokens < o.max_batch) fail("--step-tokens must be >= --max-batch");
    if (o.similarity_threshold < 0 || o.similarity_threshold > 1) fail("--threshold must be in [0, 1]");
    static const std::unordered_set<std::string> known = {"streaming",   "cache", "batching", "continuous",
                                                          "compression", "int8",  "all"};
    for (const auto& row : o.rows)
        if (!known.contains(row)) fail(fmt::format("--rows: unknown row '{}'", row));
    return true;
}

bool wants(const Options& o, std::string_view row) {
    return std::find(o.rows.begin(), o.rows.end(), row) != o.rows.end();
}

// ------------------------------------------------------------------------------------------------
// Workload

struct Prompt {
    std::string text;
    std::string lang;
    long long group = 0;
    std::size_t output_tokens = 0;
};

enum class Kind { New, Repeat, Paraphrase };
constexpr std::string_view kind_name(Kind k) {
    return k == Kind::New ? "new" : k == Kind::Repeat ? "repeat" : "paraphrase";
}

struct Request {
    std::size_t prompt = 0;  // index into the pool
    Kind kind = Kind::New;
};

std::vector<Prompt> load_workload(const std::string& path, double output_scale) {
    std::ifstream in(path);
    if (!in) throw llmfast::Error(llmfast::ErrorCode::IoError, fmt::format("cannot open workload '{}'", path));
    std::vector<Prompt> pool;
    std::unordered_map<std::string, long long> group_names;  // string groups get negative numbers
    std::string line;
    std::size_t line_no = 0;
    while (std::getline(in, line)) {
        ++line_no;
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        Json j;
        try {
            j = Json::parse(line);
        } catch (const std::exception& e) {
            throw llmfast::Error(llmfast::ErrorCode::InvalidFormat, fmt::format("{}:{}: {}", path, line_no, e.what()));
        }
        if (!j.is_object() || !j.contains("prompt") || !j["prompt"].is_string() || !j.contains("group"))
            throw llmfast::Error(llmfast::ErrorCode::InvalidFormat,
                                 fmt::format("{}:{}: needs \"prompt\" (string) and \"group\"", path, line_no));
        Prompt p;
        p.text = j["prompt"].get<std::string>();
        if (!llmfast::utf8::is_valid(p.text))
            throw llmfast::Error(llmfast::ErrorCode::InvalidUtf8, fmt::format("{}:{}: prompt is not UTF-8", path, line_no));
        p.lang = j.value("lang", "");
        const auto& g = j["group"];
        if (g.is_number_integer()) {
            p.group = g.get<long long>();
        } else if (g.is_string()) {  // string group names: numbered by first appearance
            p.group = group_names.emplace(g.get<std::string>(), -1 - static_cast<long long>(group_names.size())).first->second;
        } else {
            throw llmfast::Error(llmfast::ErrorCode::InvalidFormat, fmt::format("{}:{}: bad \"group\"", path, line_no));
        }
        const double out = j.contains("output_tokens") && j["output_tokens"].is_number() ? j["output_tokens"].get<double>()
                                                                                           : 150.0;
        p.output_tokens = std::max<std::size_t>(1, static_cast<std::size_t>(std::lround(out * output_scale)));
        pool.push_back(std::move(p));
    }
    if (pool.empty()) throw llmfast::Error(llmfast::ErrorCode::InvalidFormat, fmt::format("{}: no prompts", path));
    return pool;
}

// Draws the request sequence: each request is an exact repeat of a prompt already sent, a paraphrase
// (a prompt of a group already seen that was not sent yet), or a prompt of an unseen group, with the
// requested shares; when a kind is impossible (nothing sent yet, no group or paraphrase left) it falls
// back to another kind, and the counts report what was drawn.
std::vector<Request> make_sequence(const std::vector<Prompt>& pool, const Options& o) {
    std::mt19937_64 rng(o.seed);
    std::map<long long, std::vector<std::size_t>> by_group;
    for (std::size_t i = 0; i < pool.size(); ++i) by_group[pool[i].group].push_back(i);
    std::vector<long long> unseen;
    for (const auto& [g, members] : by_group) unseen.push_back(g);
    std::shuffle(unseen.begin(), unseen.end(), rng);

    std::vector<std::size_t> sent;                               // prompts sent, with repetition
    std::unordered_set<std::size_t> sent_set;
    std::vector<long long> seen;                                 // groups seen
    auto uniform = [&](std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng); };

    auto take_new = [&]() -> std::optional<std::size_t> {
        if (unseen.empty()) return std::nullopt;
        const long long g = unseen.back();
        unseen.pop_back();
        seen.push_back(g);
        const auto& members = by_group[g];
        return members[uniform(members.size())];
    };
    auto take_paraphrase = [&]() -> std::optional<std::size_t> {
        std::vector<std::size_t> fresh;  // the prompts of seen groups not sent yet
        for (long long g : seen)
            for (std::size_t m : by_group[g])
                if (!sent_set.contains(m)) fresh.push_back(m);
        if (fresh.empty()) return std::nullopt;
        return fresh[uniform(fresh.size())];
    };
    auto take_repeat = [&]() -> std::optional<std::size_t> {
        if (sent.empty()) return std::nullopt;
        return sent[uniform(sent.size())];
    };

    std::vector<Request> out;
    std::uniform_real_distribution<double> coin(0.0, 1.0);
    for (std::size_t i = 0; i < o.requests; ++i) {
        const double r = coin(rng);
        Kind want = r < o.repeat_share ? Kind::Repeat : r < o.repeat_share + o.paraphrase_share ? Kind::Paraphrase : Kind::New;
        std::optional<std::size_t> pick;
        Kind got = want;
        const Kind order[3][3] = {{Kind::New, Kind::Paraphrase, Kind::Repeat},
                                  {Kind::Repeat, Kind::Paraphrase, Kind::New},
                                  {Kind::Paraphrase, Kind::New, Kind::Repeat}};
        for (Kind k : order[static_cast<int>(want)]) {
            pick = k == Kind::New ? take_new() : k == Kind::Repeat ? take_repeat() : take_paraphrase();
            if (pick) {
                got = k;
                break;
            }
        }
        sent.push_back(*pick);
        sent_set.insert(*pick);
        out.push_back({*pick, got});
    }
    return out;
}

// ------------------------------------------------------------------------------------------------
// Simulated time

// Simulated time as a `llmfast::Clock`: real steady-clock time since the run began, times the scale.
// Components that take a clock (StreamRecorder) then measure in simulated time directly.
class SimClock {
public:
    using Real = std::chrono::steady_clock;
    using duration = std::chrono::nanoseconds;
    using rep = duration::rep;
    using period = duration::period;
    using time_point = std::chrono::time_point<SimClock, duration>;
    [[maybe_unused]] static constexpr bool is_steady = true;

    explicit SimClock(double scale) : origin_(Real::now()), scale_(scale) {}
    [[nodiscard]] time_point now() const {
        const double real_ns = std::chrono::duration<double, std::nano>(Real::now() - origin_).count();
        return time_point(duration(static_cast<rep>(real_ns * scale_)));
    }
    [[nodiscard]] double now_ms() const { return to_ms(now().time_since_epoch()); }
    static double to_ms(duration d) { return std::chrono::duration<double, std::milli>(d).count(); }
    void sleep_until_ms(double sim_ms) const {
        const auto real = origin_ + std::chrono::duration_cast<Real::duration>(
                                        std::chrono::duration<double, std::milli>(sim_ms / scale_));
        std::this_thread::sleep_until(real);
    }
    void sleep_for_ms(double sim_ms) const { sleep_until_ms(now_ms() + sim_ms); }
    /// The real duration that `sim_ms` simulated milliseconds take.
    [[nodiscard]] std::chrono::nanoseconds real_duration(double sim_ms) const {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(
            std::chrono::duration<double, std::milli>(sim_ms / scale_));
    }

private:
    Real::time_point origin_;
    double scale_;
};
static_assert(llmfast::Clock<SimClock>);

// Sleeps of ~100 µs are common here: ask Linux for a tight timer slack on each thread that sleeps.
void tighten_timer_slack() {
#if defined(__linux__)
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
#endif
}

// ------------------------------------------------------------------------------------------------
// The simulated backend

struct BackendParams {
    double overhead_ms;
    double prefill_ms_per_token;
    double decode_ms_per_token;
    double batch_item_ms;
    [[nodiscard]] double step_ms(std::size_t active) const {
        return (decode_ms_per_token - batch_item_ms) + batch_item_ms * static_cast<double>(active);
    }
};

using Channel = llmfast::TokenChannel<std::string>;

struct Job {
    std::string prompt;  // as sent (maybe compressed)
    std::size_t prompt_tokens = 0;
    std::size_t output_tokens = 0;
    long long group = 0;
    std::shared_ptr<Channel> channel;  // set when the client streams
    double submitted_ms = 0;           // when the client handed it to the batcher
};

// Times on the device's simulated timeline (see Backend).
struct JobResult {
    std::string text;
    double service_start_ms = 0;  // the batch started (prefill)
    double first_token_ms = 0;    // this job's first token was generated
    double last_token_ms = 0;     // its last token
    double batch_end_ms = 0;      // the whole batch finished (a non-streaming reply leaves then)
};

// The simulated answer: a tag naming the prompt's group (so a cache hit can be checked against the
// workload's labels), then filler text of the requested length. Chinese answers are cut into byte
// pieces that sometimes split a character, as byte-level BPE models do; the stream reassembles them.
std::vector<std::string> answer_pieces(const Job& job, bool chinese) {
    static constexpr std::string_view zh_filler =
        "大型语言模型的推理延迟主要来自预填充和解码两个阶段输出越长延迟越高缓存批处理和流式响应都能改善用户体验";
    static constexpr std::string_view en_words[] = {" large", " language", " models", " spend", " most", " of",
                                                    " their", " time", " decoding", " one", " token", " at", " a",
                                                    " time,", " so", " longer", " answers", " take", " longer."};
    std::vector<std::string> pieces;
    pieces.reserve(job.output_tokens);
    const std::string tag = fmt::format("[answer for group {}]", job.group);
    if (chinese) {
        std::string text;
        const std::size_t chars = zh_filler.size() / 3;
        for (std::size_t i = 0; i + 1 < job.output_tokens; ++i) text += zh_filler.substr((i % chars) * 3, 3);
        pieces.push_back(tag);
        // n-1 pieces of ~3 bytes; every fifth boundary is moved by one byte to split a character.
        const std::size_t n = job.output_tokens - 1;
        std::size_t start = 0;
        for (std::size_t k = 1; k <= n; ++k) {
            std::size_t end = k == n ? text.size() : k * 3 + (k % 5 == 2 ? 1 : 0);
            end = std::min(std::max(end, start), text.size());
            pieces.push_back(text.substr(start, end - start));
            start = end;
        }
    } else {
        pieces.push_back(tag);
        for (std::size_t i = 0; i + 1 < job.output_tokens; ++i) pieces.emplace_back(en_words[i % std::size(en_words)]);
    }
    return pieces;
}

// How the batcher in front of the GPU forms batches (to place a batch on the device timeline).
struct BatchPolicy {
    std::size_t max_batch = 1;
    std::size_t max_batch_tokens = std::numeric_limits<std::size_t>::max();
    double max_wait_ms = 0;
};

// One GPU: the batch handler runs one batch at a time. A batch of n jobs pays prefill for the sum of
// their prompt tokens, then decode steps until its longest answer is done; a step for k unfinished
// sequences costs step_ms(k). Tokens are pushed to each job's channel as their step completes.
//
// The device keeps its own timeline in simulated time, so that the host's scheduling jitter (a
// thread woken late on a busy machine, which the time scale magnifies) never accumulates: a batch
// starts when the device became free or when the batcher would have formed it, whichever is later,
// and its tokens are due at exact offsets from that start; a late wake-up only delays their delivery.
class Backend {
public:
    Backend(BackendParams params, BatchPolicy policy, const SimClock& clock)
        : params_(params), policy_(policy), clock_(clock) {}

    std::vector<JobResult> run_batch(std::span<Job> jobs) {
        tighten_timer_slack();
        const double now = clock_.now_ms();
        double oldest = std::numeric_limits<double>::max(), newest = 0;
        std::size_t prompt_tokens = 0;
        bool streaming = false;
        for (const Job& job : jobs) {
            oldest = std::min(oldest, job.submitted_ms);
            newest = std::max(newest, job.submitted_ms);
            prompt_tokens += job.prompt_tokens;
            streaming = streaming || job.channel != nullptr;
        }
        // When the batcher would have dispatched this batch on a punctual machine.
        const bool full = jobs.size() >= policy_.max_batch || prompt_tokens >= policy_.max_batch_tokens ||
                          policy_.max_wait_ms <= 0;
        const double formed = full ? newest : std::max(newest, oldest + policy_.max_wait_ms);
        double start = 0;
        {
            std::lock_guard lock(mutex_);
            start = std::max(free_at_ms_, std::min(now, formed));
        }

        std::vector<JobResult> results(jobs.size());
        std::vector<std::vector<std::string>> pieces(jobs.size());
        std::size_t longest = 0;
        for (std::size_t i = 0; i < jobs.size(); ++i) {
            results[i].service_start_ms = start;
            pieces[i] = answer_pieces(jobs[i], is_chinese(jobs[i].prompt));
            longest = std::max(longest, pieces[i].size());
        }
        double t = start + params_.prefill_ms_per_token * static_cast<double>(prompt_tokens);
        for (std::size_t step = 0; step < longest; ++step) {
            std::size_t active = 0;
            for (const auto& p : pieces) active += p.size() > step ? 1 : 0;
            t += params_.step_ms(active);
            if (streaming) clock_.sleep_until_ms(t);  // without streaming nobody sees tokens before the end
            for (std::size_t i = 0; i < jobs.size(); ++i) {
                if (pieces[i].size() <= step) continue;
                if (step == 0) results[i].first_token_ms = t;
                results[i].last_token_ms = t;
                results[i].text += pieces[i][step];
                if (jobs[i].channel) (void)jobs[i].channel->push(std::string(pieces[i][step]));
                if (pieces[i].size() == step + 1 && jobs[i].channel) jobs[i].channel->close();
            }
        }
        clock_.sleep_until_ms(t);
        for (auto& r : results) r.batch_end_ms = t;
        {
            std::lock_guard lock(mutex_);
            free_at_ms_ = t;
            busy_ms_ += t - start;
        }
        return results;
    }

    [[nodiscard]] double busy_ms() const {
        std::lock_guard lock(mutex_);
        return busy_ms_;
    }
    [[nodiscard]] const BackendParams& params() const { return params_; }

    static bool is_chinese(std::string_view text) {
        for (std::size_t i = 0; i < text.size();) {
            const auto d = llmfast::utf8::decode(text, i);
            if (d.status == llmfast::utf8::DecodeStatus::Valid && d.code_point >= 0x4E00 && d.code_point <= 0x9FFF)
                return true;
            i += std::max<std::size_t>(1, d.length);
        }
        return false;
    }

private:
    BackendParams params_;
    BatchPolicy policy_;
    const SimClock& clock_;
    mutable std::mutex mutex_;
    double free_at_ms_ = 0;
    double busy_ms_ = 0;
};

long long group_of_answer(std::string_view text) {
    constexpr std::string_view prefix = "[answer for group ";
    if (!text.starts_with(prefix)) return 0;
    text.remove_prefix(prefix.size());
    long long g = 0;
    std::from_chars(text.data(), text.data() + text.size(), g);
    return g;
}

// ------------------------------------------------------------------------------------------------
// One run: the workload through one configuration

struct Config {
    std::string name;
    bool streaming = false;
    bool cache = false;
    bool batching = false;
    bool continuous = false;  // the continuous-batching engine instead of DynamicBatcher + a static GPU
    bool compression = false;
    bool int8 = false;
};

// Miss: this request called the backend. Coalesced: an identical request was in flight; the cache's
// single-flight made this one wait for that answer instead of calling the backend again.
enum class CacheOutcome { None, Miss, Exact, Semantic, Coalesced };

struct Record {
    Kind kind = Kind::New;
    std::size_t prompt = 0;  // index into the pool
    long long group = 0;
    double issue_ms = 0;
    double first_ms = 0;  // first token visible to the client
    double done_ms = 0;
    double service_start_ms = -1;  // -1: served from cache
    std::size_t prompt_tokens_original = 0;
    std::size_t prompt_tokens_sent = 0;  // to the backend (0 on a cache hit)
    std::size_t output_tokens = 0;       // generated by the backend (0 on a cache hit)
    bool prompt_changed = false;         // the compressor changed it
    CacheOutcome cache = CacheOutcome::None;
    bool wrong_hit = false;
    bool valid_utf8 = true;
    double delivery_lag_ms = 0;  // streaming: the first chunk reached the client this late (host jitter)
    std::size_t sse_bytes = 0;   // streaming: bytes of SSE sent to the client
    int backend_completions = 0; // continuous: on_done calls for this request (exactly one)
};

struct RunResult {
    Config config;
    std::vector<Record> records;
    double span_ms = 0;  // first issue to last completion
    double busy_ms = 0;  // backend (GPU) busy time
    std::size_t batches = 0;
    std::size_t batched_jobs = 0;
    std::size_t cache_entries = 0;
    std::size_t cache_memory_bytes = 0;
    llmfast::SemanticCacheStats cache_stats{};  // as the cache counted them
    std::optional<examples::ContinuousEngineStats> engine;  // continuous runs
    double real_seconds = 0;
};

class Progress {
public:
    Progress(bool enabled, std::string label, std::size_t total)
        : enabled_(enabled), label_(std::move(label)), total_(total), tty_(is_tty()) {
        if (enabled_) thread_ = std::thread([this] { loop(); });
    }
    ~Progress() {
        if (!enabled_) return;
        {
            std::lock_guard lock(mutex_);
            stop_ = true;
        }
        cv_.notify_all();
        thread_.join();
        print(true);
    }
    void tick() { done_.fetch_add(1, std::memory_order_relaxed); }

private:
    static bool is_tty() {
#if defined(__linux__)
        return isatty(2) != 0;
#else
        return false;
#endif
    }
    void loop() {
        std::unique_lock lock(mutex_);
        while (!cv_.wait_for(lock, std::chrono::milliseconds(tty_ ? 200 : 2000), [&] { return stop_; })) print(false);
    }
    void print(bool final) {
        const std::size_t done = done_.load(std::memory_order_relaxed);
        const std::size_t width = 30;
        const std::size_t filled = total_ ? done * width / total_ : width;
        const std::string bar = std::string(filled, '#') + std::string(width - filled, '.');
        if (tty_)
            fmt::print(stderr, "\r  {:<28} [{}] {:>4}/{}{}", label_, bar, done, total_, final ? "\n" : "");
        else
            fmt::print(stderr, "  {:<28} {:>4}/{} requests{}\n", label_, done, total_, final ? " (done)" : "");
        std::fflush(stderr);
    }
    bool enabled_;
    std::string label_;
    std::size_t total_;
    bool tty_;
    std::atomic<std::size_t> done_{0};
    std::mutex mutex_;
    std::condition_variable cv_;
    bool stop_ = false;
    std::thread thread_;
};

// The connection to the user, when streaming: the gateway writes OpenAI-style SSE chunks; the "browser"
// at the other end parses them back (fed in small arbitrary pieces, as a socket delivers them).
class SseConnection {
public:
    explicit SseConnection(const llmfast::OpenAiChunkEncoder& encoder) : encoder_(encoder) { encoder_.append_role(wire_); }
    void send(std::string_view text) { encoder_.append_content(wire_, text); }
    void finish() {
        encoder_.append_finish(wire_, "stop");
        llmfast::OpenAiChunkEncoder::append_done(wire_);
    }
    [[nodiscard]] std::size_t bytes() const noexcept { return wire_.size(); }

    // What the client reads: the concatenated `delta.content` of every chunk up to [DONE].
    [[nodiscard]] std::optional<std::string> client_text() const {
        llmfast::SseParser parser;
        std::string text;
        bool done = false, ok = true;
        constexpr std::size_t piece = 61;  // a prime, so pieces end anywhere in a frame
        for (std::size_t pos = 0; pos < wire_.size(); pos += piece) {
            parser.feed(std::string_view(wire_).substr(pos, piece), [&](const llmfast::SseEventView& event) {
                if (event.status != llmfast::ErrorCode::Ok || done) return void(ok = false);
                if (event.data == "[DONE]") return void(done = true);
                const Json chunk = Json::parse(event.data, nullptr, false);
                if (chunk.is_discarded()) return void(ok = false);
                const auto& delta = chunk["choices"][0]["delta"];
                if (delta.contains("content")) text += delta["content"].get<std::string>();
            });
        }
        if (!ok || !done) return std::nullopt;
        return text;
    }

private:
    const llmfast::OpenAiChunkEncoder& encoder_;
    std::string wire_;
};

using Cache = llmfast::SemanticCache<llmfast::HashingEmbedder>;
using Server = llmfast::DynamicBatcher<Job, JobResult>;
using Compressor = llmfast::PromptCompressor<llmfast::EstimatingTokenCounter>;

// Every entry of the demo's cache lives in one scope: the (simulated) model and its sampling settings.
constexpr std::string_view cache_scope = "sim-llama-3.1-8b|temperature=0";

std::unique_ptr<Cache> make_cache(const Options& o, bool int8, double threshold = 0) {
    llmfast::SemanticCacheOptions options;
    // The cache leaves its semantic tier off for the lexical HashingEmbedder unless asked: the demo
    // opts in (--semantic off to compare) and counts the wrong hits that costs.
    options.semantic_tier = o.semantic ? llmfast::SemanticTier::On : llmfast::SemanticTier::Off;
    if (threshold <= 0) threshold = o.similarity_threshold;
    if (threshold > 0) options.similarity_threshold = static_cast<float>(threshold);
    llmfast::FlatIndexOptions index;
    index.storage = int8 ? llmfast::FlatIndexOptions::Storage::Int8 : llmfast::FlatIndexOptions::Storage::Float32;
    return std::make_unique<Cache>(llmfast::HashingEmbedder{}, options, index);
}

// The full simulated answer to a prompt of `group` (what a cache stores).
std::string answer_text(const Prompt& prompt) {
    Job job;
    job.group = prompt.group;
    job.output_tokens = prompt.output_tokens;
    std::string text;
    for (const auto& piece : answer_pieces(job, prompt.lang == "zh" || Backend::is_chinese(prompt.text))) text += piece;
    return text;
}

class Demo {
public:
    Demo(const Options& o, std::vector<Prompt> pool, std::vector<Request> sequence)
        : o_(o), pool_(std::move(pool)), sequence_(std::move(sequence)) {}

    RunResult run(const Config& config) {
        const auto real_start = std::chrono::steady_clock::now();
        SimClock clock(o_.time_scale);
        BatchPolicy policy;
        if (config.batching) policy = {o_.max_batch, o_.max_batch_tokens, o_.max_wait_ms};
        Backend backend({o_.overhead_ms, o_.prefill_ms_per_token, o_.decode_ms_per_token, o_.batch_item_ms}, policy,
                        clock);
        // The GPU is fed through a DynamicBatcher with one worker (one batch runs at a time). Without
        // batching the same queue hands it one request at a time: a FIFO server, the plain setup.
        llmfast::BatcherOptions batching;
        batching.max_batch_size = config.batching ? o_.max_batch : 1;
        batching.max_batch_cost = config.batching ? o_.max_batch_tokens : std::numeric_limits<std::size_t>::max();
        batching.max_wait = config.batching ? clock.real_duration(o_.max_wait_ms) : std::chrono::nanoseconds(0);
        batching.workers = 1;
        Server server([&backend](std::span<Job> jobs) { return backend.run_batch(jobs); }, batching,
                      [](const Job& job) { return std::max<std::size_t>(1, job.prompt_tokens); });
        // Continuous batching: the engine runs on its own thread, on the same simulated timeline.
        std::unique_ptr<examples::ContinuousEngine> engine;
        if (config.continuous) {
            examples::LatencyModel model{.overhead_ms = o_.overhead_ms, .prefill_ms_per_token = o_.prefill_ms_per_token,
                                         .decode_ms_per_token = o_.decode_ms_per_token,
                                         .batch_item_ms = o_.batch_item_ms, .time_scale = o_.time_scale};
            engine = std::make_unique<examples::ContinuousEngine>(
                model, examples::ContinuousEngineOptions{.max_num_seqs = o_.max_batch, .max_num_batched_tokens = o_.step_tokens},
                [&clock](double ms) {
                    thread_local const bool slack = (tighten_timer_slack(), true);
                    (void)slack;
                    clock.sleep_until_ms(ms);
                });
            engine->start();
        }
        engine_ = engine.get();
        std::unique_ptr<Cache> cache = config.cache ? make_cache(o_, config.int8) : nullptr;
        flights_.clear();

        RunResult result;
        result.config = config;
        result.records.resize(sequence_.size());
        std::atomic<std::size_t> next{0};
        std::mutex error_mutex;
        std::exception_ptr error;
        {
            Progress progress(o_.progress, config.name, sequence_.size());
            auto client = [&] {
                tighten_timer_slack();
                try {
                    for (;;) {
                        const std::size_t i = next.fetch_add(1);
                        if (i >= sequence_.size()) return;
                        serve_one(config, clock, backend, server, cache.get(), sequence_[i], result.records[i]);
                        progress.tick();
                    }
                } catch (...) {
                    std::lock_guard lock(error_mutex);
                    if (!error) error = std::current_exception();
                    next.store(sequence_.size());
                }
            };
            std::vector<std::thread> clients;
            for (std::size_t c = 0; c < o_.clients; ++c) clients.emplace_back(client);
            for (auto& t : clients) t.join();
        }
        if (engine) engine->stop();  // every request ended already: joins the engine's thread
        engine_ = nullptr;
        if (error) std::rethrow_exception(error);

        double first = std::numeric_limits<double>::max(), last = 0;
        for (const auto& r : result.records) {
            first = std::min(first, r.issue_ms);
            last = std::max(last, r.done_ms);
        }
        result.span_ms = last - first;
        result.busy_ms = backend.busy_ms();
        const llmfast::BatcherStats metrics = server.stats();
        result.batches = static_cast<std::size_t>(metrics.batches);
        result.batched_jobs = static_cast<std::size_t>(metrics.dispatched);
        if (engine) {  // no batches: sequences join and leave the running batch at every step
            result.engine = engine->stats();
            result.busy_ms = result.engine->busy_ms;
        }
        if (cache) {
            const llmfast::SemanticCacheStats stats = cache->stats();
            result.cache_entries = stats.entries;
            result.cache_memory_bytes = stats.memory_bytes;
            result.cache_stats = stats;
        }
        result.real_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - real_start).count();
        return result;
    }

    [[nodiscard]] const std::vector<Prompt>& pool() const { return pool_; }
    [[nodiscard]] const std::vector<Request>& sequence() const { return sequence_; }

private:
    using Real = std::chrono::steady_clock;
    static double real_ms(Real::time_point from) {
        return std::chrono::duration<double, std::milli>(Real::now() - from).count();
    }

    // One request of one client, end to end: compress, look up the cache, else call the backend
    // (streaming or not), then cache the answer.
    //
    // Timekeeping: the request's clock starts at its (simulated) issue time; llmfast's own work
    // (compression, cache lookup, replaying a hit) is added at its real, unscaled duration, since that
    // is what it costs in production; the backend call adds the modelled overhead and then the device
    // timeline's times (see Backend). Host jitter, which the time scale magnifies, therefore stays out
    // of the figures; `delivery_lag_ms` records how late the stream delivered tokens in real time.
    void serve_one(const Config& config, const SimClock& clock, Backend& backend, Server& server, Cache* cache,
                   const Request& request, Record& rec) {
        const Prompt& prompt = pool_[request.prompt];
        rec.kind = request.kind;
        rec.prompt = request.prompt;
        rec.group = prompt.group;
        rec.issue_ms = clock.now_ms();
        const Real::time_point real_issue = Real::now();
        rec.prompt_tokens_original = counter_.count(prompt.text);

        std::string sent = prompt.text;
        rec.prompt_tokens_sent = rec.prompt_tokens_original;
        if (config.compression) {
            llmfast::CompressionResult compressed = compressor_.compress(prompt.text);
            rec.prompt_changed = compressed.text != prompt.text;
            sent = std::move(compressed.text);
            rec.prompt_tokens_sent = compressed.report.tokens_after;
        }
        if (!cache) {
            call_backend(config, clock, backend, server, prompt, sent, real_issue, rec);
            return;
        }

        // Exact tier, semantic tier, else the backend; concurrent identical misses call it once.
        const llmfast::LookupResult result = cache->get_or_compute(sent, cache_scope, [&] {
            return call_backend(config, clock, backend, server, prompt, sent, real_issue, rec);
        });
        if (result.match == llmfast::MatchKind::Computed) {
            rec.cache = CacheOutcome::Miss;
            std::lock_guard lock(flights_mutex_);
            flights_[sent] = rec.done_ms;
            return;
        }
        rec.cache = result.match == llmfast::MatchKind::Exact      ? CacheOutcome::Exact
                    : result.match == llmfast::MatchKind::Semantic ? CacheOutcome::Semantic
                                                                   : CacheOutcome::Coalesced;
        rec.wrong_hit = group_of_answer(result.response()) != prompt.group;
        rec.prompt_tokens_sent = 0;
        rec.output_tokens = 0;
        // A coalesced request got its answer when the request it waited for did (device timeline).
        double ready = rec.issue_ms;
        if (rec.cache == CacheOutcome::Coalesced) {
            std::lock_guard lock(flights_mutex_);
            const auto it = flights_.find(sent);
            ready = it != flights_.end() ? std::max(it->second, rec.issue_ms) : clock.now_ms();
        }
        double first = -1;
        if (config.streaming) {
            // A hit is replayed as a stream, like a generated answer: the same client code path.
            Channel channel;
            const std::string& cached = result.response();
            for (std::size_t pos = 0; pos < cached.size(); pos += replay_piece_bytes)
                (void)channel.push(cached.substr(pos, replay_piece_bytes));
            channel.close();
            SseConnection connection(encoder_);
            for (std::string_view chunk : llmfast::utf8_chunks(channel.stream())) {
                if (first < 0) first = real_ms(real_issue);
                connection.send(chunk);
            }
            connection.finish();
            rec.sse_bytes = connection.bytes();
            rec.valid_utf8 = connection.client_text() == cached;
        }
        const double own = real_ms(real_issue);  // llmfast's own work, at its real duration
        rec.done_ms = std::max(ready, rec.issue_ms + own);
        rec.first_ms = first >= 0 ? std::max(ready, rec.issue_ms + first) : rec.done_ms;
    }

    // A backend call: the modelled overhead, then the batcher and the device. Returns the answer.
    std::string call_backend(const Config& config, const SimClock& clock, Backend& backend, Server& server,
                             const Prompt& prompt, const std::string& sent, Real::time_point real_issue, Record& rec) {
        // Overhead (network, tokenization, scheduling) is latency, not GPU time.
        const double submitted = rec.issue_ms + real_ms(real_issue) + backend.params().overhead_ms;
        clock.sleep_until_ms(submitted);
        if (engine_ != nullptr) return call_engine(config, clock, prompt, sent, submitted, rec);
        Job job;
        job.prompt = sent;
        job.prompt_tokens = rec.prompt_tokens_sent;
        job.output_tokens = prompt.output_tokens;
        job.group = prompt.group;
        job.submitted_ms = submitted;
        if (config.streaming) job.channel = std::make_shared<Channel>();
        const std::shared_ptr<Channel> channel = job.channel;
        std::future<JobResult> future = server.submit(std::move(job));
        double first_seen = -1;
        std::optional<SseConnection> connection;
        if (channel) relay(*channel, clock, rec, connection.emplace(encoder_), first_seen);
        JobResult res = future.get();
        rec.service_start_ms = res.service_start_ms;
        rec.output_tokens = prompt.output_tokens;
        if (channel) {
            rec.first_ms = res.first_token_ms;
            rec.done_ms = res.last_token_ms;
            rec.delivery_lag_ms = std::max(0.0, first_seen - res.first_token_ms);
            rec.sse_bytes = connection->bytes();
            if (connection->client_text() != res.text) rec.valid_utf8 = false;
        } else {
            rec.done_ms = res.batch_end_ms;  // the reply leaves when the batch is done
            rec.first_ms = rec.done_ms;      // without streaming the first token arrives with the last
        }
        return std::move(res.text);
    }

    // Relays a backend's token stream to the client's SSE connection as it arrives, noting when the first
    // piece was seen. Whole code points only: the backend's byte-level pieces split Chinese characters.
    static void relay(Channel& channel, const SimClock& clock, Record& rec, SseConnection& connection, double& first_seen) {
        for (std::string_view chunk : llmfast::utf8_chunks(channel.stream())) {
            if (first_seen < 0) first_seen = clock.now_ms();
            if (!llmfast::utf8::is_valid(chunk)) rec.valid_utf8 = false;
            connection.send(chunk);
        }
        connection.finish();
    }

    // The continuous-batching engine's side of call_backend: the request joins the running batch at the
    // engine's next step after `submitted`; its tokens go out as their steps end.
    std::string call_engine(const Config& config, const SimClock& clock, const Prompt& prompt, const std::string& sent,
                            double submitted, Record& rec) {
        Job job;
        job.prompt = sent;
        job.output_tokens = prompt.output_tokens;
        job.group = prompt.group;
        const std::vector<std::string> pieces = answer_pieces(job, Backend::is_chinese(sent));
        const std::shared_ptr<Channel> channel = config.streaming ? std::make_shared<Channel>() : nullptr;
        auto text = std::make_shared<std::string>();
        std::promise<examples::SimCompletion> done;
        std::future<examples::SimCompletion> future = done.get_future();
        engine_->submit({.prompt_tokens = std::max<std::size_t>(1, rec.prompt_tokens_sent),
                         .output_tokens = pieces.size(), .arrival_ms = submitted},
                        {.on_token =
                             [&pieces, channel, text](std::size_t index, double) {
                                 *text += pieces[index];
                                 if (channel) (void)channel->push(std::string(pieces[index]));
                             },
                         .on_done =
                             [&done, &rec, channel](const examples::SimCompletion& c) {
                                 if (channel) channel->close();
                                 if (++rec.backend_completions == 1) done.set_value(c);
                             }});
        double first_seen = -1;
        std::optional<SseConnection> connection;
        if (channel) relay(*channel, clock, rec, connection.emplace(encoder_), first_seen);
        const examples::SimCompletion c = future.get();
        if (c.status != llmfast::ErrorCode::Ok)
            throw llmfast::Error(c.status, fmt::format("continuous engine: request ended with {}", llmfast::to_string(c.status)));
        rec.service_start_ms = c.admitted_ms;
        rec.output_tokens = c.generated;
        rec.first_ms = config.streaming ? c.first_token_ms : c.last_token_ms;  // without streaming: with the last
        rec.done_ms = c.last_token_ms;  // the reply leaves when this sequence is done, not a whole batch
        if (channel) {
            rec.delivery_lag_ms = std::max(0.0, first_seen - c.first_token_ms);
            rec.sse_bytes = connection->bytes();
            if (connection->client_text() != *text) rec.valid_utf8 = false;
        }
        return std::move(*text);
    }

    static constexpr std::size_t replay_piece_bytes = 16;
    examples::ContinuousEngine* engine_ = nullptr;  // set while a continuous run runs

    const Options& o_;
    std::vector<Prompt> pool_;
    std::vector<Request> sequence_;
    llmfast::EstimatingTokenCounter counter_;
    Compressor compressor_;
    llmfast::OpenAiChunkEncoder encoder_{{.id = "chatcmpl-llmfast-demo", .model = "sim-llama-3.1-8b", .created = 1700000000}};
    std::mutex flights_mutex_;
    std::unordered_map<std::string, double> flights_;  // prompt sent -> when its backend answer was done
};

// The int8 row needs no timing: the request sequence goes through a float32 and an int8 cache
// (insert on miss), and the vector index of the distinct prompts is built both ways.
struct CacheReplay {
    std::size_t exact_hits = 0, semantic_hits = 0, wrong_hits = 0, entries = 0, memory_bytes = 0;
};
struct Int8Comparison {
    CacheReplay f32, i8;
    std::size_t vectors = 0, dimension = 0;
    std::size_t f32_index_bytes = 0, i8_index_bytes = 0, f32_bytes_per_vector = 0, i8_bytes_per_vector = 0;
    double nearest_neighbour_agreement = 1.0;
};

// The request sequence through a cache one request at a time (insert on miss): no timing, no
// in-flight misses, so the hits depend on the cache alone.
CacheReplay replay_cache(const Options& o, const std::vector<Prompt>& pool, const std::vector<Request>& sequence,
                         bool int8, double threshold = 0) {
    auto cache = make_cache(o, int8, threshold);
    CacheReplay r;
    for (const auto& request : sequence) {
        const Prompt& prompt = pool[request.prompt];
        const llmfast::LookupResult hit = cache->lookup(prompt.text, cache_scope);
        if (!hit) {
            cache->insert(prompt.text, cache_scope, answer_text(prompt));
            continue;
        }
        if (hit.match == llmfast::MatchKind::Exact) ++r.exact_hits;
        if (hit.match == llmfast::MatchKind::Semantic) ++r.semantic_hits;
        if (group_of_answer(hit.response()) != prompt.group) ++r.wrong_hits;
    }
    const llmfast::SemanticCacheStats stats = cache->stats();
    r.entries = stats.entries;
    r.memory_bytes = stats.memory_bytes;
    return r;
}

Int8Comparison int8_comparison(const Options& o, const std::vector<Prompt>& pool, const std::vector<Request>& sequence) {
    Int8Comparison c;
    c.f32 = replay_cache(o, pool, sequence, false);
    c.i8 = replay_cache(o, pool, sequence, true);
    // The index alone, over every prompt of the workload.
    const llmfast::HashingEmbedder embedder;
    llmfast::FlatIndex f32(embedder.dimension());
    llmfast::FlatIndex i8(embedder.dimension(), {.storage = llmfast::FlatIndexOptions::Storage::Int8});
    std::vector<float> vec(embedder.dimension());
    for (std::size_t i = 0; i < pool.size(); ++i) {
        embedder.embed(pool[i].text, vec);
        f32.add(i, vec);
        i8.add(i, vec);
    }
    // How often the int8 index finds the same nearest other prompt as float32 (rank 0 is the prompt itself).
    std::size_t same = 0;
    for (std::size_t i = 0; i < pool.size(); ++i) {
        embedder.embed(pool[i].text, vec);
        const auto a = f32.search(vec, 2), b = i8.search(vec, 2);
        if (a.size() > 1 && b.size() > 1 && a[1].id == b[1].id) ++same;
    }
    c.vectors = pool.size();
    c.dimension = embedder.dimension();
    c.f32_index_bytes = f32.memory_bytes();
    c.i8_index_bytes = i8.memory_bytes();
    c.f32_bytes_per_vector = f32.bytes_per_vector();
    c.i8_bytes_per_vector = i8.bytes_per_vector();
    c.nearest_neighbour_agreement = pool.empty() ? 1.0 : static_cast<double>(same) / static_cast<double>(pool.size());
    return c;
}

Json replay_json(const CacheReplay& r) {
    return {{"exact_hits", r.exact_hits}, {"semantic_hits", r.semantic_hits}, {"wrong_hits", r.wrong_hits},
            {"entries", r.entries}, {"cache_memory_bytes", r.memory_bytes}};
}

// ------------------------------------------------------------------------------------------------
// Statistics and the table

double percentile(std::vector<double> v, double p) {
    std::sort(v.begin(), v.end());
    return llmfast::detail::nearest_rank(std::span<const double>(v), p);  // 0 for no samples
}
double mean(const std::vector<double>& v) {
    return v.empty() ? 0 : std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

// The time figures every summary reports: percentiles of the time to first token and of the latency.
struct LatencyFigures {
    double ttft_p50, ttft_p95, ttft_p99, latency_p50, latency_p95, latency_p99, latency_mean;

    void set(const std::vector<double>& ttft, const std::vector<double>& latency) {
        ttft_p50 = percentile(ttft, 50);
        ttft_p95 = percentile(ttft, 95);
        ttft_p99 = percentile(ttft, 99);
        latency_p50 = percentile(latency, 50);
        latency_p95 = percentile(latency, 95);
        latency_p99 = percentile(latency, 99);
        latency_mean = mean(latency);
    }
};

struct Summary : LatencyFigures {
    double ttft_service_p50;
    double throughput_rps, output_tps;
    std::size_t prompt_tokens, output_tokens, prompt_tokens_original;
    double cost, busy_ms, span_ms;
    std::size_t lookups, exact_hits, semantic_hits, wrong_hits, misses, coalesced;
    std::size_t prompts_changed;
    std::size_t changed_tokens_before, changed_tokens_after;  // over the prompts the compressor changed
    std::size_t invalid_utf8;
    std::size_t sse_bytes;
    double delivery_lag_p50, delivery_lag_p95;
    // Cache opportunities, from the workload's labels and the run's timing: a request whose exact
    // prompt was answered (and cached) before it was issued, and one for which only a paraphrase was.
    std::size_t exact_opportunities, semantic_opportunities, semantic_opportunities_hit;
    // Cache outcomes by the request's kind in the workload: [kind][miss, exact, semantic, wrong].
    std::size_t by_kind[3][4];
};

Summary summarize(const RunResult& r, const Options& o) {
    std::vector<double> ttft, ttft_service, latency, lag;
    Summary s{};
    for (const auto& rec : r.records) {
        ttft.push_back(rec.first_ms - rec.issue_ms);
        latency.push_back(rec.done_ms - rec.issue_ms);
        if (rec.service_start_ms >= 0) ttft_service.push_back(rec.first_ms - rec.service_start_ms);
        if (r.config.streaming && rec.service_start_ms >= 0) lag.push_back(rec.delivery_lag_ms);
        s.prompt_tokens += rec.prompt_tokens_sent;
        s.output_tokens += rec.output_tokens;
        s.prompt_tokens_original += rec.prompt_tokens_original;
        if (rec.cache != CacheOutcome::None) ++s.lookups;
        if (rec.cache == CacheOutcome::Exact) ++s.exact_hits;
        if (rec.cache == CacheOutcome::Semantic) ++s.semantic_hits;
        if (rec.cache == CacheOutcome::Miss) ++s.misses;
        if (rec.cache == CacheOutcome::Coalesced) ++s.coalesced;
        if (rec.wrong_hit) ++s.wrong_hits;
        if (rec.cache != CacheOutcome::None) {
            const int outcome = rec.cache == CacheOutcome::Exact ? 1 : rec.cache == CacheOutcome::Semantic ? 2 : 0;
            ++s.by_kind[static_cast<int>(rec.kind)][outcome];
            if (rec.wrong_hit) ++s.by_kind[static_cast<int>(rec.kind)][3];
        }
        if (rec.prompt_changed) {
            ++s.prompts_changed;
            s.changed_tokens_before += rec.prompt_tokens_original;
            s.changed_tokens_after += rec.prompt_tokens_sent;
        }
        if (!rec.valid_utf8) ++s.invalid_utf8;
        s.sse_bytes += rec.sse_bytes;
    }
    s.set(ttft, latency);
    s.ttft_service_p50 = percentile(ttft_service, 50);
    for (const auto& rec : r.records) {
        if (rec.cache == CacheOutcome::None) continue;
        bool same = false, paraphrase = false;
        for (const auto& other : r.records) {
            if (other.cache != CacheOutcome::Miss || other.done_ms > rec.issue_ms || &other == &rec) continue;
            if (other.prompt == rec.prompt) same = true;
            else if (other.group == rec.group) paraphrase = true;
        }
        if (same) {
            ++s.exact_opportunities;
        } else if (paraphrase) {
            ++s.semantic_opportunities;
            if (rec.cache == CacheOutcome::Semantic) ++s.semantic_opportunities_hit;
        }
    }
    s.delivery_lag_p50 = percentile(lag, 50);
    s.delivery_lag_p95 = percentile(lag, 95);
    s.span_ms = r.span_ms;
    s.busy_ms = r.busy_ms;
    s.throughput_rps = r.span_ms > 0 ? static_cast<double>(r.records.size()) / (r.span_ms / 1000.0) : 0;
    s.output_tps = r.span_ms > 0 ? static_cast<double>(s.output_tokens) / (r.span_ms / 1000.0) : 0;
    s.cost = static_cast<double>(s.prompt_tokens) * o.price_in + static_cast<double>(s.output_tokens) * o.price_out;
    return s;
}

Json summary_json(const Summary& s, const RunResult& r) {
    Json j;
    j["config"] = {{"streaming", r.config.streaming}, {"cache", r.config.cache}, {"batching", r.config.batching},
                   {"continuous", r.config.continuous}, {"compression", r.config.compression}, {"int8", r.config.int8}};
    j["requests"] = r.records.size();
    j["ttft_ms"] = {{"p50", s.ttft_p50}, {"p95", s.ttft_p95}, {"p99", s.ttft_p99}, {"in_service_p50", s.ttft_service_p50}};
    j["latency_ms"] = {{"p50", s.latency_p50}, {"p95", s.latency_p95}, {"p99", s.latency_p99}, {"mean", s.latency_mean}};
    j["throughput"] = {{"requests_per_s", s.throughput_rps}, {"output_tokens_per_s", s.output_tps}, {"span_ms", s.span_ms}};
    j["backend"] = {{"prompt_tokens", s.prompt_tokens}, {"output_tokens", s.output_tokens}, {"cost", s.cost},
                    {"gpu_busy_ms", s.busy_ms}, {"batches", r.batches},
                    {"mean_batch_size", r.batches ? static_cast<double>(r.batched_jobs) / static_cast<double>(r.batches) : 0.0}};
    // Streamed answers the client did not read back intact (SSE parsed, JSON decoded, compared).
    j["invalid_utf8_responses"] = s.invalid_utf8;
    j["sse_bytes"] = s.sse_bytes;
    // How late (simulated ms, i.e. real lateness x time scale) the stream delivered first tokens.
    j["stream_delivery_lag_ms"] = {{"p50", s.delivery_lag_p50}, {"p95", s.delivery_lag_p95}};
    if (r.engine) {
        const examples::ContinuousEngineStats& e = *r.engine;
        std::size_t once = 0;
        for (const auto& rec : r.records) once += rec.backend_completions == 1 ? 1 : 0;
        j["engine"] = {{"submitted", e.submitted}, {"completed", e.completed}, {"requests_completed_once", once},
                       {"finished_ok", e.scheduler.finished},
                       {"not_ok", e.scheduler.cancelled + e.scheduler.expired + e.scheduler.failed + e.scheduler.too_large +
                                      e.scheduler.closed},
                       {"steps", e.steps}, {"mean_step_sequences", e.mean_step_sequences()},
                       {"max_step_sequences", e.max_step_sequences}, {"max_step_tokens", e.max_step_tokens},
                       {"prefill_tokens", e.scheduler.prefill_tokens}, {"decode_tokens", e.scheduler.decode_tokens},
                       {"preemptions", e.scheduler.preemptions}, {"busy_ms", e.busy_ms}};
    }
    j["real_seconds"] = r.real_seconds;
    return j;
}

Json by_kind_json(const Summary& s) {
    Json j = Json::object();
    for (const Kind kind : {Kind::New, Kind::Repeat, Kind::Paraphrase}) {
        const auto& k = s.by_kind[static_cast<int>(kind)];
        j[std::string(kind_name(kind))] = {{"not_hits", k[0]}, {"exact_hits", k[1]}, {"semantic_hits", k[2]}, {"wrong_hits", k[3]}};
    }
    return j;
}

double change_pct(double plain, double optimized) { return plain != 0 ? (optimized - plain) / plain * 100.0 : 0.0; }

std::string pct(double v) { return fmt::format("{:+.1f} %", v); }

struct TableRow {
    std::string optimization, metric, plain, optimized, change, claim;
};

void print_table(const std::vector<TableRow>& rows) {
    using Cells = std::array<std::string, 6>;
    auto width = [](const std::string& s) { return llmfast::utf8::count_code_points(s); };
    std::vector<Cells> lines = {{"optimization", "metric", "plain", "optimized", "change", "chapter claims"}};
    std::string last;
    for (const auto& r : rows) {
        lines.push_back({r.optimization == last ? std::string() : r.optimization, r.metric, r.plain, r.optimized,
                         r.change, r.claim});
        last = r.optimization;
    }
    std::array<std::size_t, 6> w{};
    for (const auto& l : lines)
        for (std::size_t c = 0; c < 6; ++c) w[c] = std::max(w[c], width(l[c]));
    for (std::size_t i = 0; i < lines.size(); ++i) {
        std::string out = "|";
        for (std::size_t c = 0; c < 6; ++c) {
            const std::size_t pad = w[c] - width(lines[i][c]);
            const bool right = i > 0 && c >= 2 && c <= 4;
            out += ' ';
            if (right) out.append(pad, ' ');
            out += lines[i][c];
            if (!right) out.append(pad, ' ');
            out += " |";
        }
        fmt::print("{}\n", out);
        if (i == 0) {
            std::string sep = "|";
            for (std::size_t c = 0; c < 6; ++c) sep += std::string(w[c] + 2, '-') + "|";
            fmt::print("{}\n", sep);
        }
    }
}

std::string ms(double v) { return v >= 10000 ? fmt::format("{:.1f} s", v / 1000) : fmt::format("{:.0f} ms", v); }

// ------------------------------------------------------------------------------------------------
// Through llmfast-gateway (--through-gateway PATH): the same request sequence, sent over HTTP by
// concurrent clients on real sockets to a fresh llmfast-gateway per run, its built-in simulated
// backend configured with the same latency model. Everything is measured at the client.

#if defined(__unix__)

// One llmfast-gateway process on a free 127.0.0.1 port (`--port 0`; it prints "listening on
// ADDR:PORT"), stopped (SIGTERM, then SIGKILL) when this object goes, also on an exception.
class GatewayProcess {
public:
    GatewayProcess(const std::string& binary, const std::vector<std::string>& args)
        : log_path_((std::filesystem::temp_directory_path() / fmt::format("llmfast-demo-gateway-{}.log", ::getpid())).string()) {
        std::vector<std::string> all{binary};
        all.insert(all.end(), args.begin(), args.end());
        std::vector<char*> argv;
        for (auto& a : all) argv.push_back(a.data());
        argv.push_back(nullptr);
        int out[2];
        if (::pipe(out) != 0) throw llmfast::Error(llmfast::ErrorCode::IoError, "--through-gateway: pipe() failed");
        // Its stderr goes to a file, shown only when it fails to start (it says "stopped" on SIGTERM).
        const int log = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        pid_ = ::fork();
        if (pid_ < 0) {
            ::close(out[0]);
            ::close(out[1]);
            throw llmfast::Error(llmfast::ErrorCode::IoError, "--through-gateway: fork() failed");
        }
        if (pid_ == 0) {  // the child: only async-signal-safe calls until exec
#if defined(__linux__)
            ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // a demo killed mid-run takes its gateway along
#endif
            ::dup2(out[1], 1);
            if (log >= 0) ::dup2(log, 2);
            ::close(out[0]);
            ::close(out[1]);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        ::close(out[1]);
        if (log >= 0) ::close(log);
        stdout_ = out[0];
        // Its first line on stdout names the port; bounded: a gateway that never listens is an error.
        std::string text;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
        while (text.find('\n') == std::string::npos) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            pollfd p{stdout_, POLLIN, 0};
            char buf[256];
            const ssize_t n = left.count() > 0 && ::poll(&p, 1, static_cast<int>(left.count())) > 0
                                  ? ::read(stdout_, buf, sizeof buf) : -1;
            if (n <= 0)
                fail_start(fmt::format("'{}' did not start listening (flags: {})", binary, fmt::join(args, " ")));
            text.append(buf, static_cast<std::size_t>(n));
        }
        const std::size_t colon = text.rfind(':', text.find('\n'));
        if (!text.starts_with("listening on ") || colon == std::string::npos)
            fail_start(fmt::format("unexpected output '{}'", text));
        port_ = static_cast<std::uint16_t>(std::strtoul(text.c_str() + colon + 1, nullptr, 10));
    }
    GatewayProcess(const GatewayProcess&) = delete;
    GatewayProcess& operator=(const GatewayProcess&) = delete;
    ~GatewayProcess() { stop(); }
    [[nodiscard]] std::uint16_t port() const { return port_; }

    void stop(bool remove_log = true) {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            int status = 0;
            const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
            while (::waitpid(pid_, &status, WNOHANG) == 0) {
                if (std::chrono::steady_clock::now() > deadline) {
                    ::kill(pid_, SIGKILL);
                    ::waitpid(pid_, &status, 0);
                    break;
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
            }
            pid_ = -1;
        }
        if (stdout_ >= 0) ::close(stdout_);
        stdout_ = -1;
        std::error_code ignored;
        if (remove_log) std::filesystem::remove(log_path_, ignored);
    }

private:
    // The constructor's failure: stops the child, then reports what it said on stderr.
    [[noreturn]] void fail_start(const std::string& what) {
        stop(false);
        std::string said;
        {
            std::ifstream in(log_path_);
            said.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        }
        std::error_code ignored;
        std::filesystem::remove(log_path_, ignored);
        throw llmfast::Error(llmfast::ErrorCode::IoError, fmt::format("--through-gateway: {}: {}", what, said.substr(0, 2000)));
    }

    std::string log_path_;
    pid_t pid_ = -1;
    int stdout_ = -1;
    std::uint16_t port_ = 0;
};

// A keep-alive HTTP/1.1 client connection (blocking socket, one per client thread): what a client
// library does, small enough to see what is measured. Every read is bounded (SO_RCVTIMEO).
class HttpConnection {
public:
    struct Response {
        int status = 0;
        std::map<std::string, std::string> headers;  // names in lower case
    };

    explicit HttpConnection(std::uint16_t port) : port_(port) {}
    HttpConnection(const HttpConnection&) = delete;
    HttpConnection& operator=(const HttpConnection&) = delete;
    ~HttpConnection() { close(); }

    // POSTs `body` (JSON) to `path`; `on_data` gets the response body as it arrives (de-chunked).
    Response post(std::string_view path, std::string_view body, const std::function<void(std::string_view)>& on_data) {
        if (fd_ < 0) open();
        std::string request = fmt::format("POST {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n"
                                          "Content-Length: {}\r\n\r\n",
                                          path, port_, body.size());
        request += body;
        for (std::size_t sent = 0; sent < request.size();) {
            const ssize_t n = ::send(fd_, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
            if (n <= 0) fail("send");
            sent += static_cast<std::size_t>(n);
        }
        Response response;
        const std::string status_line = read_line();
        if (!status_line.starts_with("HTTP/1.1 ") || status_line.size() < 12) fail("bad status line");
        response.status = std::atoi(status_line.c_str() + 9);
        for (std::string line = read_line(); !line.empty(); line = read_line()) {
            const std::size_t colon = line.find(':');
            if (colon == std::string::npos) fail("bad header");
            std::string name = line.substr(0, colon);
            for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            std::size_t v = colon + 1;
            while (v < line.size() && line[v] == ' ') ++v;
            response.headers[name] = line.substr(v);
        }
        const auto header = [&](const std::string& name) {
            const auto it = response.headers.find(name);
            return it == response.headers.end() ? std::string() : it->second;
        };
        if (header("transfer-encoding").find("chunked") != std::string::npos) {
            for (;;) {
                const std::size_t size = std::strtoul(read_line().c_str(), nullptr, 16);
                if (size == 0) {
                    while (!read_line().empty()) {}  // trailers
                    break;
                }
                read_exactly(size, on_data);
                if (!read_line().empty()) fail("bad chunk");
            }
        } else if (const std::string length = header("content-length"); !length.empty()) {
            read_exactly(std::strtoull(length.c_str(), nullptr, 10), on_data);
        } else {
            fail("a response without a length");
        }
        if (header("connection") == "close") close();
        return response;
    }

private:
    [[noreturn]] void fail(std::string_view what) {
        close();
        throw llmfast::Error(llmfast::ErrorCode::IoError, fmt::format("HTTP client (127.0.0.1:{}): {}", port_, what));
    }
    void open() {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        if (fd_ < 0) fail("socket");
        const int one = 1;
        ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        const timeval bound{120, 0};  // no read waits longer than this (a hung gateway fails the run)
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound);
        ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &bound, sizeof bound);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(port_);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) fail("connect");
        buf_.clear();
        pos_ = 0;
    }
    void close() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }
    void fill() {
        if (pos_ > 0 && pos_ == buf_.size()) {
            buf_.clear();
            pos_ = 0;
        }
        char chunk[16384];
        const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
        if (n <= 0) fail(n == 0 ? "connection closed" : "recv (timed out?)");
        buf_.append(chunk, static_cast<std::size_t>(n));
    }
    std::string read_line() {
        for (;;) {
            const std::size_t end = buf_.find("\r\n", pos_);
            if (end != std::string::npos) {
                std::string line = buf_.substr(pos_, end - pos_);
                pos_ = end + 2;
                return line;
            }
            if (buf_.size() - pos_ > 65536) fail("line too long");
            fill();
        }
    }
    void read_exactly(std::size_t size, const std::function<void(std::string_view)>& on_data) {
        while (size > 0) {
            if (pos_ == buf_.size()) fill();
            const std::size_t take = std::min(size, buf_.size() - pos_);
            on_data(std::string_view(buf_).substr(pos_, take));
            pos_ += take;
            size -= take;
        }
    }

    std::uint16_t port_;
    int fd_ = -1;
    std::string buf_;
    std::size_t pos_ = 0;
};

// One configuration of the gateway, switched on by its own flags and config file.
struct GatewayRow {
    std::string key, name;
    bool streaming = false, cache = false, batching = false, compression = false;
};

// What one client saw of one request (simulated ms: real time since the run began x time scale).
struct GatewayRecord {
    double issue_ms = 0, first_ms = 0, done_ms = 0;
    int status = 0;
    bool intact = false;                  // 200 and the exact simulated answer, parsed back
    std::string cache;                    // x-llmfast-cache: miss | exact | semantic | coalesced
    std::uint64_t prompt_tokens = 0;      // usage, as the gateway reports it
    std::uint64_t completion_tokens = 0;
    std::string error;                    // the client's exception, if any
};

struct GatewayRun {
    GatewayRow row;
    std::vector<GatewayRecord> records;
    std::vector<std::string> flags;
    double real_seconds = 0;
};

std::string gateway_request_body(const Prompt& prompt, bool stream) {
    Json body = {{"model", std::string(cache_scope.substr(0, cache_scope.find('|')))},
                 {"messages", Json::array({{{"role", "user"}, {"content", prompt.text}}})},
                 {"max_tokens", prompt.output_tokens},
                 {"temperature", 0},
                 {"stream", stream}};
    if (stream) body["stream_options"] = {{"include_usage", true}};
    return body.dump();
}

// Sends one request and reads the whole answer, timing it at the client.
void gateway_send(HttpConnection& connection, const Prompt& prompt, bool stream, double scale,
                  std::chrono::steady_clock::time_point origin, GatewayRecord& rec) {
    const auto sim_ms = [&] {
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - origin).count() * scale;
    };
    const std::string body = gateway_request_body(prompt, stream);
    std::string expected;
    for (const auto& piece : examples::simulated_answer(prompt.output_tokens, examples::asks_in_chinese(prompt.text)))
        expected += piece;
    std::string text, raw;
    bool done = false, ok = true;
    double first = -1;
    llmfast::SseParser parser;
    const auto take_usage = [&rec](const Json& j) {
        if (!j.contains("usage") || !j["usage"].is_object()) return;
        rec.prompt_tokens = j["usage"].value("prompt_tokens", std::uint64_t{0});
        rec.completion_tokens = j["usage"].value("completion_tokens", std::uint64_t{0});
    };
    rec.issue_ms = sim_ms();
    const HttpConnection::Response response = connection.post("/v1/chat/completions", body, [&](std::string_view data) {
        if (!stream) return void(raw.append(data));
        parser.feed(data, [&](const llmfast::SseEventView& event) {
            if (event.status != llmfast::ErrorCode::Ok || done) return void(ok = false);
            if (event.data == "[DONE]") return void(done = true);
            const Json chunk = Json::parse(event.data, nullptr, false);
            if (chunk.is_discarded() || chunk.contains("error")) return void(ok = false);
            take_usage(chunk);
            if (!chunk.contains("choices") || chunk["choices"].empty()) return;
            const auto& delta = chunk["choices"][0]["delta"];
            if (delta.contains("content") && delta["content"].is_string()) {
                const std::string content = delta["content"].get<std::string>();
                if (!content.empty() && first < 0) first = sim_ms();
                text += content;
            }
        });
    });
    rec.done_ms = sim_ms();
    rec.status = response.status;
    if (const auto it = response.headers.find("x-llmfast-cache"); it != response.headers.end()) rec.cache = it->second;
    if (!stream) {
        const Json j = Json::parse(raw, nullptr, false);
        if (!j.is_discarded() && j.contains("choices") && !j["choices"].empty() &&
            j["choices"][0]["message"]["content"].is_string())
            text = j["choices"][0]["message"]["content"].get<std::string>();
        else
            ok = false;
        if (!j.is_discarded()) take_usage(j);
        done = true;
    }
    rec.first_ms = first >= 0 ? first : rec.done_ms;  // without streaming the first token comes with the last
    rec.intact = ok && done && response.status == 200 && text == expected;
}

// The gateway's flags and config file for a row. Every row gets the demo's latency model, one
// simulated GPU (the gateway's continuous engine: with --sim-max-batch 1 it serves one request at a
// time, as the demo's plain run does), and its response cache, prompt compression and batching
// switched on only where the row says.
Json gateway_config(const Options& o, const GatewayRow& row) {
    const std::string model(cache_scope.substr(0, cache_scope.find('|')));
    Json config = {{"simulated", {{"overhead_ms", o.overhead_ms}, {"prefill_ms_per_token", o.prefill_ms_per_token},
                                  {"decode_ms_per_token", o.decode_ms_per_token}, {"batch_item_ms", o.batch_item_ms},
                                  {"time_scale", o.time_scale}}},
                   {"cache", {{"enabled", row.cache}, {"semantic", o.semantic},
                              {"similarity_threshold", make_cache(o, false)->options().similarity_threshold}}}};
    config["models"][model] = {{"backend", "simulated"}};
    if (row.compression) config["models"][model]["compression"] = {{"builtin", {"english", "chinese"}}};
    return config;
}

std::vector<std::string> gateway_flags(const Options& o, const GatewayRow& row, const std::string& config_path) {
    const Json config = gateway_config(o, row);
    {
        std::ofstream file(config_path);
        file << config.dump(2) << "\n";
        if (!file) throw llmfast::Error(llmfast::ErrorCode::IoError, fmt::format("cannot write '{}'", config_path));
    }
    return {"--config", config_path, "--host", "127.0.0.1", "--port", "0", "--access-log", "off",
            "--sim-batching", "continuous",
            "--sim-max-batch", fmt::format("{}", row.batching ? o.max_batch : std::size_t{1}),
            "--sim-step-tokens", fmt::format("{}", o.step_tokens),
            "--max-running", fmt::format("{}", std::max<std::size_t>(256, o.clients)),
            "--drain-grace-ms", "1000"};
}

GatewayRun run_gateway_row(const Options& o, const Demo& demo, const GatewayRow& row) {
    const auto real_start = std::chrono::steady_clock::now();
    GatewayRun run;
    run.row = row;
    const std::string config_path =
        (std::filesystem::temp_directory_path() / fmt::format("llmfast-demo-gateway-{}.json", ::getpid())).string();
    struct RemoveFile {  // also when the gateway does not start
        const std::string& path;
        ~RemoveFile() {
            std::error_code ignored;
            std::filesystem::remove(path, ignored);
        }
    } remove_config{config_path};
    run.flags = gateway_flags(o, row, config_path);
    run.records.resize(demo.sequence().size());
    {
        GatewayProcess gateway(o.gateway_path, run.flags);  // fresh for every run: a cold cache
        const auto origin = std::chrono::steady_clock::now();
        std::atomic<std::size_t> next{0};
        Progress progress(o.progress, row.name + " (gateway)", demo.sequence().size());
        auto client = [&] {
            HttpConnection connection(gateway.port());
            for (;;) {
                const std::size_t i = next.fetch_add(1);
                if (i >= demo.sequence().size()) return;
                GatewayRecord& rec = run.records[i];
                try {
                    gateway_send(connection, demo.pool()[demo.sequence()[i].prompt], row.streaming, o.time_scale, origin, rec);
                } catch (const std::exception& e) {  // counted, the run goes on (a new connection next time)
                    rec.error = e.what();
                    rec.intact = false;
                }
                progress.tick();
            }
        };
        std::vector<std::thread> clients;
        for (std::size_t c = 0; c < o.clients; ++c) clients.emplace_back(client);
        for (auto& t : clients) t.join();
    }
    run.real_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - real_start).count();
    return run;
}

struct GatewaySummary : LatencyFigures {
    double throughput_rps, span_ms;
    std::size_t answered, intact, errors, exact_hits, semantic_hits, coalesced, misses;
    std::uint64_t prompt_tokens, completion_tokens;  // of the answers the backend computed (not cache hits)
    double cost;
};

// Figures over the answered requests (status 200); `errors` counts the rest. Cost: the usage the
// gateway reports, for the answers its backend computed; a cache hit (exact, semantic, or a
// coalesced wait for an identical request in flight) costs the backend nothing.
GatewaySummary summarize_gateway(const GatewayRun& r, const Options& o) {
    GatewaySummary s{};
    std::vector<double> ttft, latency;
    double first = std::numeric_limits<double>::max(), last = 0;
    for (const auto& rec : r.records) {
        if (rec.status != 200 || !rec.error.empty()) {
            ++s.errors;
            continue;
        }
        ++s.answered;
        s.intact += rec.intact ? 1 : 0;
        ttft.push_back(rec.first_ms - rec.issue_ms);
        latency.push_back(rec.done_ms - rec.issue_ms);
        first = std::min(first, rec.issue_ms);
        last = std::max(last, rec.done_ms);
        const bool hit = rec.cache == "exact" || rec.cache == "semantic" || rec.cache == "coalesced";
        s.exact_hits += rec.cache == "exact" ? 1 : 0;
        s.semantic_hits += rec.cache == "semantic" ? 1 : 0;
        s.coalesced += rec.cache == "coalesced" ? 1 : 0;
        s.misses += hit ? 0 : 1;
        if (!hit) {
            s.prompt_tokens += rec.prompt_tokens;
            s.completion_tokens += rec.completion_tokens;
        }
    }
    s.set(ttft, latency);
    s.span_ms = s.answered ? last - first : 0;
    s.throughput_rps = s.span_ms > 0 ? static_cast<double>(s.answered) / (s.span_ms / 1000.0) : 0;
    s.cost = static_cast<double>(s.prompt_tokens) * o.price_in + static_cast<double>(s.completion_tokens) * o.price_out;
    return s;
}

Json gateway_summary_json(const GatewaySummary& s, const GatewayRun& r) {
    Json j;
    j["config"] = {{"streaming", r.row.streaming}, {"cache", r.row.cache}, {"batching", r.row.batching},
                   {"compression", r.row.compression}};
    j["gateway_flags"] = r.flags;
    j["requests"] = r.records.size();
    j["answered"] = s.answered;
    j["intact"] = s.intact;
    j["errors"] = s.errors;
    j["ttft_ms"] = {{"p50", s.ttft_p50}, {"p95", s.ttft_p95}, {"p99", s.ttft_p99}};
    j["latency_ms"] = {{"p50", s.latency_p50}, {"p95", s.latency_p95}, {"p99", s.latency_p99}, {"mean", s.latency_mean}};
    j["throughput"] = {{"requests_per_s", s.throughput_rps}, {"span_ms", s.span_ms}};
    j["cache"] = {{"exact_hits", s.exact_hits}, {"semantic_hits", s.semantic_hits}, {"coalesced", s.coalesced},
                  {"misses", s.misses}};
    j["backend"] = {{"prompt_tokens", s.prompt_tokens}, {"completion_tokens", s.completion_tokens}, {"cost", s.cost}};
    std::string first_error;
    for (const auto& rec : r.records)
        if (first_error.empty() && (!rec.error.empty() || rec.status != 200))
            first_error = rec.error.empty() ? fmt::format("HTTP {}", rec.status) : rec.error;
    if (!first_error.empty()) j["first_error"] = first_error;
    j["real_seconds"] = r.real_seconds;
    return j;
}

// --dump-gateway-workload: what the semantic-cache run sends and how its gateway is configured, for
// drivers that replay it another way (several replicas: benchmarks/replica_hit_rate.py).
void dump_gateway_workload(const Options& o, const Demo& demo) {
    const GatewayRow row{.key = "cache", .name = "semantic cache", .cache = true};
    const std::string placeholder = "@CONFIG@";
    Json out = {{"config", gateway_config(o, row)}, {"flags", Json::array()}, {"config_placeholder", placeholder},
                {"clients", o.clients}, {"time_scale", o.time_scale}, {"requests", Json::array()}};
    const std::string config_path =
        (std::filesystem::temp_directory_path() / fmt::format("llmfast-demo-dump-{}.json", ::getpid())).string();
    for (const std::string& flag : gateway_flags(o, row, config_path)) out["flags"].push_back(flag == config_path ? placeholder : flag);
    std::error_code ignored;
    std::filesystem::remove(config_path, ignored);
    for (const Request& r : demo.sequence()) {
        const Prompt& prompt = demo.pool()[r.prompt];
        std::string expected;
        for (const auto& piece : examples::simulated_answer(prompt.output_tokens, examples::asks_in_chinese(prompt.text)))
            expected += piece;
        out["requests"].push_back({{"kind", std::string(kind_name(r.kind))}, {"prompt", r.prompt},
                                   {"body", gateway_request_body(prompt, false)}, {"expected", expected}});
    }
    std::ofstream file(o.dump_gateway_path);
    file << out.dump(1) << "\n";
    if (!file) throw llmfast::Error(llmfast::ErrorCode::IoError, fmt::format("cannot write '{}'", o.dump_gateway_path));
}

// The gateway table: the demo's rows that a client of the gateway can see. The in-process demo's
// static-batching, continuous and int8 rows have no counterpart here (see docs/demo.md): the
// gateway's one batching that models a whole GPU is its continuous engine, which is its batching row.
int run_through_gateway(const Options& o, Demo& demo, Json& out) {
    auto d = [](std::uint64_t v) { return static_cast<double>(v); };
    std::vector<GatewayRow> rows;
    if (wants(o, "streaming")) rows.push_back({.key = "streaming", .name = "streaming", .streaming = true});
    if (wants(o, "cache")) rows.push_back({.key = "cache", .name = "semantic cache", .cache = true});
    if (wants(o, "batching") || wants(o, "continuous"))
        rows.push_back({.key = "batching", .name = "continuous batching", .batching = true});
    if (wants(o, "compression")) rows.push_back({.key = "compression", .name = "prompt compression", .compression = true});
    if (wants(o, "all"))
        rows.push_back({.key = "all", .name = "all together", .streaming = true, .cache = true, .batching = true,
                        .compression = true});
    out["through_gateway"] = {{"gateway", o.gateway_path}};
    Json& g = out["through_gateway"];
    const GatewayRun plain_run = run_gateway_row(o, demo, {.key = "plain", .name = "plain"});
    const GatewaySummary plain = summarize_gateway(plain_run, o);
    g["runs"]["plain"] = gateway_summary_json(plain, plain_run);
    std::vector<TableRow> table;
    std::vector<std::string> checks{fmt::format("plain: {} of {} answers intact, {} errors", plain.intact,
                                                plain_run.records.size(), plain.errors)};
    std::size_t failures = plain.errors + (plain.answered - plain.intact);
    for (const GatewayRow& row : rows) {
        const GatewayRun r = run_gateway_row(o, demo, row);
        const GatewaySummary s = summarize_gateway(r, o);
        g["runs"][row.key] = gateway_summary_json(s, r);
        checks.push_back(fmt::format("{}: {} of {} answers intact, {} errors", row.key, s.intact, r.records.size(), s.errors));
        failures += s.errors + (s.answered - s.intact);
        const std::string& n = row.name;
        const auto ratio = plain.throughput_rps > 0 ? s.throughput_rps / plain.throughput_rps : 0.0;
        if (row.key == "streaming") {
            table.push_back({n, "TTFT p50", ms(plain.ttft_p50), ms(s.ttft_p50), pct(change_pct(plain.ttft_p50, s.ttft_p50)), "TTFT -80 %"});
            table.push_back({n, "TTFT p95", ms(plain.ttft_p95), ms(s.ttft_p95), pct(change_pct(plain.ttft_p95, s.ttft_p95)), ""});
        } else if (row.key == "cache") {
            const std::size_t hits = s.exact_hits + s.semantic_hits;
            table.push_back({n, "hit rate (exact + semantic)", "-",
                             fmt::format("{:.1f} % ({} + {})", s.answered ? 100.0 * d(hits) / d(s.answered) : 0.0,
                                         s.exact_hits, s.semantic_hits), "", ""});
            table.push_back({n, "waited for an identical request in flight", "-", fmt::format("{}", s.coalesced), "", ""});
            table.push_back({n, "latency p50", ms(plain.latency_p50), ms(s.latency_p50),
                             pct(change_pct(plain.latency_p50, s.latency_p50)), "latency -40...70 %"});
            table.push_back({n, "latency mean", ms(plain.latency_mean), ms(s.latency_mean),
                             pct(change_pct(plain.latency_mean, s.latency_mean)), ""});
            table.push_back({n, "backend tokens (cost)", fmt::format("{:.0f}", plain.cost), fmt::format("{:.0f}", s.cost),
                             pct(change_pct(plain.cost, s.cost)), "cost -40...70 %"});
        } else if (row.key == "batching") {
            table.push_back({n, "throughput (requests/s)", fmt::format("{:.2f}", plain.throughput_rps),
                             fmt::format("{:.2f}", s.throughput_rps), fmt::format("x{:.2f}", ratio), "throughput +3x"});
            table.push_back({n, "latency p50", ms(plain.latency_p50), ms(s.latency_p50),
                             pct(change_pct(plain.latency_p50, s.latency_p50)), ""});
            table.push_back({n, "latency p99", ms(plain.latency_p99), ms(s.latency_p99),
                             pct(change_pct(plain.latency_p99, s.latency_p99)), ""});
        } else if (row.key == "compression") {
            table.push_back({n, "prompt tokens (usage)", fmt::format("{}", plain.prompt_tokens), fmt::format("{}", s.prompt_tokens),
                             pct(change_pct(d(plain.prompt_tokens), d(s.prompt_tokens))), "cost -10...30 %"});
            table.push_back({n, "cost (prompt + output tokens)", fmt::format("{:.0f}", plain.cost), fmt::format("{:.0f}", s.cost),
                             pct(change_pct(plain.cost, s.cost)), ""});
            table.push_back({n, "latency mean", ms(plain.latency_mean), ms(s.latency_mean),
                             pct(change_pct(plain.latency_mean, s.latency_mean)), "latency -10...20 %"});
        } else if (row.key == "all") {
            table.push_back({n, "TTFT p50", ms(plain.ttft_p50), ms(s.ttft_p50), pct(change_pct(plain.ttft_p50, s.ttft_p50)), ""});
            table.push_back({n, "latency p50", ms(plain.latency_p50), ms(s.latency_p50),
                             pct(change_pct(plain.latency_p50, s.latency_p50)), ""});
            table.push_back({n, "throughput (requests/s)", fmt::format("{:.2f}", plain.throughput_rps),
                             fmt::format("{:.2f}", s.throughput_rps), fmt::format("x{:.2f}", ratio), ""});
            table.push_back({n, "cost (tokens)", fmt::format("{:.0f}", plain.cost), fmt::format("{:.0f}", s.cost),
                             pct(change_pct(plain.cost, s.cost)), ""});
        }
    }
    fmt::print("\n");
    print_table(table);
    fmt::print("\nMeasured at the clients ({} threads, one keep-alive connection each) through llmfast-gateway's "
               "simulated backend; a fresh gateway per run (cold cache). Times are real time x {} (simulated ms), so "
               "the gateway's and the client's own time counts {}x too.\n",
               o.clients, o.time_scale, o.time_scale);
    fmt::print("- cost: prompt + completion tokens from the usage the gateway reports (its estimator, with OpenAI's "
               "chat overheads), summed over the answers its backend computed; a cache hit costs nothing.\n");
    fmt::print("- batching: the gateway's continuous engine (at most {} sequences, {} tokens per step); the plain "
               "run is the same engine with one sequence at a time.\n",
               o.max_batch, o.step_tokens);
    for (const auto& c : checks) fmt::print("- {}\n", c);
    g["failures"] = failures;
    return failures == 0 ? 0 : 3;
}

#endif  // __unix__

}  // namespace

int main(int argc, char** argv) {
    Options o;
    try {
        if (!parse_options(argc, argv, o)) return 0;
        auto pool = load_workload(o.workload, o.output_scale);
        auto sequence = make_sequence(pool, o);
        std::size_t kinds[3] = {};
        for (const auto& r : sequence) ++kinds[static_cast<int>(r.kind)];
        std::size_t zh = 0;
        for (const auto& p : pool) zh += p.lang == "zh" ? 1 : 0;

        fmt::print("llmfast demo: a SIMULATED LLM backend (latency model of a 7-8B model on one GPU; no model runs)\n");
        fmt::print("  backend: overhead {} ms/call, prefill {} ms/prompt token, decode {} ms/output token, "
                   "batch step = {:.2f} + {} x n ms; time scale {}x\n",
                   o.overhead_ms, o.prefill_ms_per_token, o.decode_ms_per_token, o.decode_ms_per_token - o.batch_item_ms,
                   o.batch_item_ms, o.time_scale);
        fmt::print("  workload: {} ({} prompts, {} zh); {} requests from {} clients: {} new, {} exact repeats, "
                   "{} paraphrases\n\n",
                   o.workload, pool.size(), zh, sequence.size(), o.clients, kinds[0], kinds[1], kinds[2]);
        if (!o.gateway_path.empty())
            fmt::print("  through llmfast-gateway ({}): a fresh gateway per run on a free 127.0.0.1 port, its simulated "
                       "backend on this latency model; {} HTTP clients\n\n",
                       o.gateway_path, o.clients);
        std::fflush(stdout);  // before the progress lines on stderr

        Demo demo(o, std::move(pool), std::move(sequence));
        Json out;
        out["simulated"] = true;
        out["options"] = {{"requests", o.requests}, {"clients", o.clients}, {"repeat", o.repeat_share},
                          {"paraphrase", o.paraphrase_share}, {"seed", o.seed}, {"time_scale", o.time_scale},
                          {"overhead_ms", o.overhead_ms}, {"prefill_ms_per_token", o.prefill_ms_per_token},
                          {"decode_ms_per_token", o.decode_ms_per_token}, {"batch_item_ms", o.batch_item_ms},
                          {"max_batch", o.max_batch}, {"max_wait_ms", o.max_wait_ms},
                          {"max_batch_tokens", o.max_batch_tokens}, {"step_tokens", o.step_tokens},
                          {"output_scale", o.output_scale},
                          {"semantic", o.semantic}, {"similarity_threshold", std::round(static_cast<double>(make_cache(o, false)->options().similarity_threshold) * 1e6) / 1e6},
                          {"price_in", o.price_in}, {"price_out", o.price_out}, {"rows", o.rows}, {"quick", o.quick}};
        out["workload"] = {{"path", o.workload}, {"prompts", demo.pool().size()}, {"zh_prompts", zh},
                           {"requests", demo.sequence().size()},
                           {"new", kinds[0]}, {"repeat", kinds[1]}, {"paraphrase", kinds[2]}};

        if (!o.dump_gateway_path.empty()) {
#if defined(__unix__)
            dump_gateway_workload(o, demo);
            fmt::print("gateway workload written to {}\n", o.dump_gateway_path);
            return 0;
#else
            throw llmfast::Error(llmfast::ErrorCode::InvalidArgument, "--dump-gateway-workload needs a POSIX system");
#endif
        }
        if (!o.gateway_path.empty()) {
#if defined(__unix__)
            const int code = run_through_gateway(o, demo, out);
            if (!o.json_path.empty()) {
                std::ofstream file(o.json_path);
                file << out.dump(2) << "\n";
                if (!file) throw llmfast::Error(llmfast::ErrorCode::IoError, fmt::format("cannot write '{}'", o.json_path));
                fmt::print("results written to {}\n", o.json_path);
            }
            return code;
#else
            throw llmfast::Error(llmfast::ErrorCode::InvalidArgument, "--through-gateway needs a POSIX system");
#endif
        }

        std::vector<TableRow> table;
        std::vector<std::string> notes;
        const bool need_plain = wants(o, "streaming") || wants(o, "cache") || wants(o, "batching") ||
                                wants(o, "continuous") || wants(o, "compression") || wants(o, "all");
        std::optional<RunResult> plain_run;
        std::optional<Summary> plain;
        if (need_plain) {
            plain_run = demo.run({.name = "plain"});
            plain = summarize(*plain_run, o);
            out["runs"]["plain"] = summary_json(*plain, *plain_run);
        }

        if (wants(o, "streaming")) {
            auto r = demo.run({.name = "streaming", .streaming = true});
            auto s = summarize(r, o);
            out["runs"]["streaming"] = summary_json(s, r);
            out["rows"]["streaming"] = {{"ttft_p50_ms", {{"plain", plain->ttft_p50}, {"optimized", s.ttft_p50}}},
                                        {"ttft_p95_ms", {{"plain", plain->ttft_p95}, {"optimized", s.ttft_p95}}},
                                        {"ttft_change_pct", change_pct(plain->ttft_p50, s.ttft_p50)},
                                        {"ttft_in_service_p50_ms", {{"plain", plain->ttft_service_p50}, {"optimized", s.ttft_service_p50}}},
                                        {"invalid_utf8_chunks", s.invalid_utf8}};
            table.push_back({"streaming", "TTFT p50", ms(plain->ttft_p50), ms(s.ttft_p50),
                             pct(change_pct(plain->ttft_p50, s.ttft_p50)), "TTFT -80 %"});
            table.push_back({"streaming", "TTFT p95", ms(plain->ttft_p95), ms(s.ttft_p95),
                             pct(change_pct(plain->ttft_p95, s.ttft_p95)), ""});
            table.push_back({"streaming", "TTFT p50 once served (excl. queue)", ms(plain->ttft_service_p50),
                             ms(s.ttft_service_p50), pct(change_pct(plain->ttft_service_p50, s.ttft_service_p50)), ""});
            notes.push_back(fmt::format(
                "streaming: {} clients share one GPU that serves one request at a time, so TTFT is mostly queueing, "
                "the same with or without streaming; once served, the first token comes after prefill and one decode "
                "step instead of with the whole answer. Where queues are short (with batching, see 'all together') "
                "that gain shows end to end. Every streamed answer went out as OpenAI SSE chunks and was parsed "
                "back intact by the client.",
                o.clients));
        }
        if (wants(o, "cache")) {
            auto r = demo.run({.name = "semantic cache", .cache = true});
            auto s = summarize(r, o);
            out["runs"]["cache"] = summary_json(s, r);
            const std::size_t hits = s.exact_hits + s.semantic_hits;
            const double hit_rate = s.lookups ? static_cast<double>(hits) / static_cast<double>(s.lookups) : 0.0;
            const std::size_t plain_tokens = plain->prompt_tokens + plain->output_tokens;
            const std::size_t tokens = s.prompt_tokens + s.output_tokens;
            out["rows"]["cache"] = {{"lookups", s.lookups}, {"hits", hits}, {"exact_hits", s.exact_hits},
                                    {"semantic_hits", s.semantic_hits}, {"coalesced", s.coalesced}, {"misses", s.misses},
                                    {"hit_rate", hit_rate}, {"wrong_hits", s.wrong_hits},
                                    {"cache_stats", {{"exact_hits", r.cache_stats.exact_hits},
                                                     {"semantic_hits", r.cache_stats.semantic_hits},
                                                     {"misses", r.cache_stats.misses},
                                                     {"computations", r.cache_stats.computations},
                                                     {"guard_vetoes", r.cache_stats.guard_vetoes},
                                                     {"hit_rate", r.cache_stats.hit_rate()},
                                                     {"entries", r.cache_entries}, {"memory_bytes", r.cache_memory_bytes}}},
                                    {"by_kind", by_kind_json(s)},
                                    {"exact_opportunities", s.exact_opportunities},
                                    {"paraphrase_opportunities", s.semantic_opportunities},
                                    {"paraphrase_opportunities_hit", s.semantic_opportunities_hit},
                                    {"latency_p50_ms", {{"plain", plain->latency_p50}, {"optimized", s.latency_p50}}},
                                    {"latency_mean_ms", {{"plain", plain->latency_mean}, {"optimized", s.latency_mean}}},
                                    {"backend_tokens", {{"plain", plain_tokens}, {"optimized", tokens}}},
                                    {"cost", {{"plain", plain->cost}, {"optimized", s.cost}}}};
            table.push_back({"semantic cache", "hit rate (exact + semantic)", "-",
                             fmt::format("{:.1f} % ({} + {})", hit_rate * 100, s.exact_hits, s.semantic_hits), "", ""});
            table.push_back({"semantic cache", "waited for an identical request in flight", "-",
                             fmt::format("{}", s.coalesced), "", ""});
            // The semantic tier's trade-off on this workload, without timing: sequential replays.
            Json sweep = Json::array();
            std::string sweep_line;
            for (const double threshold : {0.6, 0.7, 0.8, 0.85, 0.9, 0.95}) {
                const CacheReplay rr = replay_cache(o, demo.pool(), demo.sequence(), false, threshold);
                sweep.push_back({{"threshold", threshold}, {"exact_hits", rr.exact_hits},
                                 {"semantic_hits", rr.semantic_hits}, {"wrong_hits", rr.wrong_hits}});
                sweep_line += fmt::format("{}{:.2f}: {} ({})", sweep_line.empty() ? "" : ", ", threshold,
                                          rr.semantic_hits, rr.wrong_hits);
            }
            out["rows"]["cache"]["threshold_sweep"] = sweep;
            notes.push_back(fmt::format(
                "semantic cache: exact tier plus the semantic tier (HashingEmbedder, threshold {:.2f}, hit guards on; "
                "off by default for a lexical embedder; the demo turns it on, --semantic off compares). A wrong "
                "hit is one whose cached prompt is in another paraphrase group of the workload. Repeats of a request "
                "still in flight wait for it (get_or_compute's single-flight) instead of calling the backend. Semantic "
                "hits (wrong ones) by threshold, replaying the same requests one at a time: {}.",
                make_cache(o, false)->options().similarity_threshold, sweep_line));
            table.push_back({"semantic cache", "paraphrases of answered prompts served", "-",
                             fmt::format("{} of {}", s.semantic_opportunities_hit, s.semantic_opportunities), "", ""});
            table.push_back({"semantic cache", "wrong hits (not a paraphrase)", "-", fmt::format("{}", s.wrong_hits), "", ""});
            table.push_back({"semantic cache", "latency p50", ms(plain->latency_p50), ms(s.latency_p50),
                             pct(change_pct(plain->latency_p50, s.latency_p50)), "latency -40...70 %"});
            table.push_back({"semantic cache", "latency mean", ms(plain->latency_mean), ms(s.latency_mean),
                             pct(change_pct(plain->latency_mean, s.latency_mean)), ""});
            table.push_back({"semantic cache", "backend tokens (cost)", fmt::format("{}", plain_tokens),
                             fmt::format("{}", tokens),
                             pct(change_pct(static_cast<double>(plain_tokens), static_cast<double>(tokens))),
                             "cost -40...70 %"});
        }
        if (wants(o, "batching")) {
            auto r = demo.run({.name = "batching", .batching = true});
            auto s = summarize(r, o);
            out["runs"]["batching"] = summary_json(s, r);
            out["rows"]["batching"] = {
                {"throughput_rps", {{"plain", plain->throughput_rps}, {"optimized", s.throughput_rps}}},
                {"throughput_ratio", plain->throughput_rps > 0 ? s.throughput_rps / plain->throughput_rps : 0.0},
                {"latency_p50_ms", {{"plain", plain->latency_p50}, {"optimized", s.latency_p50}}},
                {"latency_p99_ms", {{"plain", plain->latency_p99}, {"optimized", s.latency_p99}}},
                {"gpu_busy_ms", {{"plain", plain->busy_ms}, {"optimized", s.busy_ms}}},
                {"mean_batch_size", r.batches ? static_cast<double>(r.batched_jobs) / static_cast<double>(r.batches) : 0.0}};
            table.push_back({"batching", "throughput (requests/s)", fmt::format("{:.2f}", plain->throughput_rps),
                             fmt::format("{:.2f}", s.throughput_rps),
                             fmt::format("x{:.2f}", plain->throughput_rps > 0 ? s.throughput_rps / plain->throughput_rps : 0.0),
                             "throughput +3x"});
            table.push_back({"batching", "latency p50", ms(plain->latency_p50), ms(s.latency_p50),
                             pct(change_pct(plain->latency_p50, s.latency_p50)), ""});
            table.push_back({"batching", "latency p99", ms(plain->latency_p99), ms(s.latency_p99),
                             pct(change_pct(plain->latency_p99, s.latency_p99)), ""});
            table.push_back({"batching", "GPU busy time (cost)", ms(plain->busy_ms), ms(s.busy_ms),
                             pct(change_pct(plain->busy_ms, s.busy_ms)), "cost -30 %"});
            notes.push_back(fmt::format(
                "batching: DynamicBatcher (max {} requests or {} prompt tokens, max wait {} ms) in front of a GPU that "
                "runs one batch at a time; mean batch {:.1f}. A batch runs until its longest answer is done (static "
                "batching), so its replies wait for the slowest; the continuous batching row schedules per step instead.",
                o.max_batch, o.max_batch_tokens, o.max_wait_ms,
                r.batches ? static_cast<double>(r.batched_jobs) / static_cast<double>(r.batches) : 0.0));
        }
        if (wants(o, "continuous")) {
            // Static vs continuous on the same latency model, both streamed (so TTFT means the first token).
            auto rs = demo.run({.name = "static batching, streamed", .streaming = true, .batching = true});
            auto st = summarize(rs, o);
            out["runs"]["static_streamed"] = summary_json(st, rs);
            auto r = demo.run({.name = "continuous batching", .streaming = true, .continuous = true});
            auto s = summarize(r, o);
            out["runs"]["continuous"] = summary_json(s, r);
            const double vs_plain = plain->throughput_rps > 0 ? s.throughput_rps / plain->throughput_rps : 0.0;
            const double vs_static = st.throughput_rps > 0 ? s.throughput_rps / st.throughput_rps : 0.0;
            const double static_batch = rs.batches ? static_cast<double>(rs.batched_jobs) / static_cast<double>(rs.batches) : 0.0;
            const double step_seqs = r.engine ? r.engine->mean_step_sequences() : 0.0;
            out["rows"]["continuous"] = {
                {"throughput_rps", {{"plain", plain->throughput_rps}, {"static", st.throughput_rps}, {"optimized", s.throughput_rps}}},
                {"output_tokens_per_s", {{"plain", plain->output_tps}, {"static", st.output_tps}, {"optimized", s.output_tps}}},
                {"throughput_ratio", vs_plain},
                {"throughput_ratio_vs_static", vs_static},
                {"ttft_p50_ms", {{"static", st.ttft_p50}, {"optimized", s.ttft_p50}}},
                {"ttft_p99_ms", {{"static", st.ttft_p99}, {"optimized", s.ttft_p99}}},
                {"latency_p50_ms", {{"static", st.latency_p50}, {"optimized", s.latency_p50}}},
                {"latency_p99_ms", {{"static", st.latency_p99}, {"optimized", s.latency_p99}}},
                {"gpu_busy_ms", {{"static", st.busy_ms}, {"optimized", s.busy_ms}}},
                {"output_tokens", {{"plain", plain->output_tokens}, {"static", st.output_tokens}, {"optimized", s.output_tokens}}},
                {"mean_static_batch_size", static_batch},
                {"mean_step_sequences", step_seqs},
                {"step_tokens", o.step_tokens}};
            auto ratio = [](double v) { return fmt::format("x{:.2f}", v); };
            table.push_back({"continuous batching", "throughput (requests/s)", fmt::format("{:.2f}", plain->throughput_rps),
                             fmt::format("{:.2f}", s.throughput_rps), ratio(vs_plain), "throughput +3x"});
            table.push_back({"continuous batching", "vs static: throughput (requests/s)", fmt::format("{:.2f}", st.throughput_rps),
                             fmt::format("{:.2f}", s.throughput_rps), ratio(vs_static), ""});
            table.push_back({"continuous batching", "vs static: TTFT p50", ms(st.ttft_p50), ms(s.ttft_p50),
                             pct(change_pct(st.ttft_p50, s.ttft_p50)), ""});
            table.push_back({"continuous batching", "vs static: TTFT p99", ms(st.ttft_p99), ms(s.ttft_p99),
                             pct(change_pct(st.ttft_p99, s.ttft_p99)), ""});
            table.push_back({"continuous batching", "vs static: latency p50", ms(st.latency_p50), ms(s.latency_p50),
                             pct(change_pct(st.latency_p50, s.latency_p50)), ""});
            table.push_back({"continuous batching", "vs static: latency p99", ms(st.latency_p99), ms(s.latency_p99),
                             pct(change_pct(st.latency_p99, s.latency_p99)), ""});
            table.push_back({"continuous batching", "vs static: GPU busy time", ms(st.busy_ms), ms(s.busy_ms),
                             pct(change_pct(st.busy_ms, s.busy_ms)), ""});
            notes.push_back(fmt::format(
                "continuous batching: the same latency model per iteration on a continuous-batching engine "
                "(ContinuousScheduler; at most {} sequences and {} tokens per step, chunked prefill); a request "
                "joins the running batch at the next step and leaves when its own answer is done. 'vs static' "
                "rows compare it with static batching (DynamicBatcher as in the batching row, mean batch {:.1f}), "
                "both streamed, in the 'plain' column; the continuous engine ran {:.1f} sequences per step on average.",
                o.max_batch, o.step_tokens, static_batch, step_seqs));
        }
        if (wants(o, "compression")) {
            auto r = demo.run({.name = "prompt compression", .compression = true});
            auto s = summarize(r, o);
            out["runs"]["compression"] = summary_json(s, r);
            out["rows"]["compression"] = {
                {"prompt_tokens", {{"plain", plain->prompt_tokens}, {"optimized", s.prompt_tokens}}},
                {"prompts_changed", s.prompts_changed},
                {"changed_prompts_tokens", {{"plain", s.changed_tokens_before}, {"optimized", s.changed_tokens_after}}},
                {"latency_mean_ms", {{"plain", plain->latency_mean}, {"optimized", s.latency_mean}}},
                {"cost", {{"plain", plain->cost}, {"optimized", s.cost}}}};
            table.push_back({"prompt compression", "prompt tokens", fmt::format("{}", plain->prompt_tokens),
                             fmt::format("{}", s.prompt_tokens),
                             pct(change_pct(static_cast<double>(plain->prompt_tokens), static_cast<double>(s.prompt_tokens))),
                             "cost -10...30 %"});
            table.push_back({"prompt compression", fmt::format("  on the {} verbose prompts", s.prompts_changed),
                             fmt::format("{}", s.changed_tokens_before), fmt::format("{}", s.changed_tokens_after),
                             pct(change_pct(static_cast<double>(s.changed_tokens_before), static_cast<double>(s.changed_tokens_after))),
                             ""});
            table.push_back({"prompt compression", "cost (prompt + output tokens)", fmt::format("{:.0f}", plain->cost),
                             fmt::format("{:.0f}", s.cost), pct(change_pct(plain->cost, s.cost)), ""});
            table.push_back({"prompt compression", "latency mean", ms(plain->latency_mean), ms(s.latency_mean),
                             pct(change_pct(plain->latency_mean, s.latency_mean)), "latency -10...20 %"});
            const double prefill_share =
                plain->busy_ms > 0 ? static_cast<double>(plain->prompt_tokens) * o.prefill_ms_per_token / plain->busy_ms : 0.0;
            out["rows"]["compression"]["prefill_share_of_gpu_time"] = prefill_share;
            notes.push_back(fmt::format(
                "prompt compression: the rules changed {} of {} prompts (the verbose ones); only prefill shrinks, and "
                "prefill is {:.1f} % of the GPU time here (decode dominates: {} output vs {} prompt tokens), which "
                "bounds the latency gain. Long prompts (retrieved context) gain more.",
                s.prompts_changed, r.records.size(), prefill_share * 100, plain->output_tokens, plain->prompt_tokens));
        }
        if (wants(o, "int8")) {
            if (o.progress)
                fmt::print(stderr, "  {:<28} (no timing: the request sequence through both caches)\n", "int8 cache vectors");
            const Int8Comparison q = int8_comparison(o, demo.pool(), demo.sequence());
            auto d = [](std::size_t v) { return static_cast<double>(v); };
            out["rows"]["int8"] = {
                {"index", {{"vectors", q.vectors}, {"dimension", q.dimension},
                           {"bytes", {{"plain", q.f32_index_bytes}, {"optimized", q.i8_index_bytes}}},
                           {"bytes_per_vector", {{"plain", q.f32_bytes_per_vector}, {"optimized", q.i8_bytes_per_vector}}},
                           {"memory_change_pct", change_pct(d(q.f32_index_bytes), d(q.i8_index_bytes))},
                           {"nearest_neighbour_agreement", q.nearest_neighbour_agreement}}},
                {"cache", {{"plain", replay_json(q.f32)}, {"optimized", replay_json(q.i8)},
                           {"memory_change_pct", change_pct(d(q.f32.memory_bytes), d(q.i8.memory_bytes))}}}};
            table.push_back({"int8 cache vectors", fmt::format("vector index, {} prompts", q.vectors),
                             fmt::format("{:.0f} KiB", d(q.f32_index_bytes) / 1024), fmt::format("{:.0f} KiB", d(q.i8_index_bytes) / 1024),
                             pct(change_pct(d(q.f32_index_bytes), d(q.i8_index_bytes))), "quantization: memory -50 %"});
            table.push_back({"int8 cache vectors", "bytes per vector (with id)", fmt::format("{}", q.f32_bytes_per_vector),
                             fmt::format("{}", q.i8_bytes_per_vector), pct(change_pct(d(q.f32_bytes_per_vector), d(q.i8_bytes_per_vector))), ""});
            table.push_back({"int8 cache vectors", "whole cache (answers included)", fmt::format("{:.0f} KiB", d(q.f32.memory_bytes) / 1024),
                             fmt::format("{:.0f} KiB", d(q.i8.memory_bytes) / 1024), pct(change_pct(d(q.f32.memory_bytes), d(q.i8.memory_bytes))), ""});
            table.push_back({"int8 cache vectors", "semantic hits (wrong ones)",
                             fmt::format("{} ({})", q.f32.semantic_hits, q.f32.wrong_hits),
                             fmt::format("{} ({})", q.i8.semantic_hits, q.i8.wrong_hits), "", ""});
            table.push_back({"int8 cache vectors", "same nearest prompt as float32", "-",
                             fmt::format("{:.1f} %", q.nearest_neighbour_agreement * 100), "", ""});
            notes.push_back("int8: the chapter's row is about model weights (int8 instead of fp16: -50 %), which is the "
                            "serving engine's business; what llmfast quantizes is the semantic cache's vectors "
                            "(float32 to int8 with a scale per vector).");
        }
        if (wants(o, "all")) {
            auto r = demo.run({.name = "all together", .streaming = true, .cache = true, .batching = true,
                               .compression = true, .int8 = true});
            auto s = summarize(r, o);
            out["runs"]["all"] = summary_json(s, r);
            out["rows"]["all"] = {{"ttft_p50_ms", {{"plain", plain->ttft_p50}, {"optimized", s.ttft_p50}}},
                                  {"latency_p50_ms", {{"plain", plain->latency_p50}, {"optimized", s.latency_p50}}},
                                  {"throughput_rps", {{"plain", plain->throughput_rps}, {"optimized", s.throughput_rps}}},
                                  {"cost", {{"plain", plain->cost}, {"optimized", s.cost}}},
                                  {"wrong_hits", s.wrong_hits}};
            table.push_back({"all together", "TTFT p50", ms(plain->ttft_p50), ms(s.ttft_p50),
                             pct(change_pct(plain->ttft_p50, s.ttft_p50)), ""});
            table.push_back({"all together", "latency p50", ms(plain->latency_p50), ms(s.latency_p50),
                             pct(change_pct(plain->latency_p50, s.latency_p50)), ""});
            table.push_back({"all together", "throughput (requests/s)", fmt::format("{:.2f}", plain->throughput_rps),
                             fmt::format("{:.2f}", s.throughput_rps),
                             fmt::format("x{:.2f}", plain->throughput_rps > 0 ? s.throughput_rps / plain->throughput_rps : 0.0), ""});
            table.push_back({"all together", "cost (tokens)", fmt::format("{:.0f}", plain->cost), fmt::format("{:.0f}", s.cost),
                             pct(change_pct(plain->cost, s.cost)), ""});
        }

        fmt::print("\n");
        print_table(table);
        fmt::print("\nAll figures are from a simulation (simulated ms); see --help for the latency model.\n");
        for (const auto& note : notes) fmt::print("- {}\n", note);
        if (!o.json_path.empty()) {
            std::ofstream file(o.json_path);
            if (!file) throw llmfast::Error(llmfast::ErrorCode::IoError, fmt::format("cannot write '{}'", o.json_path));
            file << out.dump(2) << "\n";
            if (!file) throw llmfast::Error(llmfast::ErrorCode::IoError, fmt::format("cannot write '{}'", o.json_path));
            fmt::print("results written to {}\n", o.json_path);
        }
        return 0;
    } catch (const llmfast::Error& e) {
        fmt::print(stderr, "llmfast-demo: {}\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        fmt::print(stderr, "llmfast-demo: {}\n", e.what());
        return 1;
    }
}
