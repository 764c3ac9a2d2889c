// Runs the built demo (`llmfast-demo`, path in $LLMFAST_DEMO, set by tests/demo_test.cmake) on tiny
// workloads and checks the shape and the sanity of its JSON: every row present, counts that add up,
// rates in range, the cache's own statistics agreeing with the demo's count, the continuous-batching
// engine ending every request exactly once within its limits. No timing is asserted, not even
// "continuous beats static": the runs are simulated time, but client threads issue requests in real
// time, so which requests meet in a batch or a step depends on the host; only what holds on any machine.
#include "catch.hpp"

#if __has_include(<nlohmann/json.hpp>)
#include <nlohmann/json.hpp>
#define LLMFAST_DEMO_TEST_HAVE_JSON 1
#endif

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#ifdef LLMFAST_DEMO_TEST_HAVE_JSON

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

std::string demo_path() {
    const char* path = std::getenv("LLMFAST_DEMO");
    if (path == nullptr || *path == '\0' || !fs::exists(path)) {
        LLMFAST_SKIP_TEST("llmfast-demo is not built in this configuration (LLMFAST_BUILD_EXAMPLES=OFF)");
    }
    return path;
}

std::string quoted(const std::string& s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\'') out += "'\\''";
        else out += c;
    }
    return out + "'";
}

struct Run {
    int exit_code = -1;
    std::string output;  // stdout and stderr
};

Run run_demo(const std::string& args) {
    const fs::path log = fs::temp_directory_path() / fs::path("llmfast_demo_test_" + std::to_string(::getpid()) + ".log");
    const std::string command = quoted(demo_path()) + " " + args + " >" + quoted(log.string()) + " 2>&1";
    const int status = std::system(command.c_str());
    Run run;
    run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::ifstream in(log);
    std::stringstream buffer;
    buffer << in.rdbuf();
    run.output = buffer.str();
    fs::remove(log);
    return run;
}

struct TempDir {
    fs::path path = fs::temp_directory_path() / fs::path("llmfast_demo_test_" + std::to_string(::getpid()));
    TempDir() { fs::create_directories(path); }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

Json run_json(const std::string& args, const TempDir& dir) {
    const fs::path json = dir.path / "out.json";
    const Run run = run_demo(args + " --no-progress --json " + quoted(json.string()));
    INFO(run.output);
    REQUIRE(run.exit_code == 0);
    std::ifstream in(json);
    REQUIRE(in.good());
    return Json::parse(in);
}

// Every run's figures: present, finite, non-negative, and internally consistent.
void check_run(const Json& run, std::size_t requests) {
    REQUIRE(run.contains("ttft_ms"));
    REQUIRE(run.contains("latency_ms"));
    CHECK(run["requests"].get<std::size_t>() == requests);
    for (const char* key : {"p50", "p95", "p99"}) {
        const double ttft = run["ttft_ms"][key].get<double>();
        CHECK(std::isfinite(ttft));
        CHECK(ttft >= 0);
        // The first token never arrives after the last one.
        CHECK(ttft <= run["latency_ms"][key].get<double>() + 1e-6);
    }
    CHECK(run["ttft_ms"]["p50"].get<double>() <= run["ttft_ms"]["p95"].get<double>());
    CHECK(run["ttft_ms"]["p95"].get<double>() <= run["ttft_ms"]["p99"].get<double>());
    CHECK(run["latency_ms"]["p50"].get<double>() <= run["latency_ms"]["p95"].get<double>());
    CHECK(run["latency_ms"]["p95"].get<double>() <= run["latency_ms"]["p99"].get<double>());
    CHECK(run["throughput"]["requests_per_s"].get<double>() > 0);
    const auto& backend = run["backend"];
    CHECK(backend["gpu_busy_ms"].get<double>() >= 0);
    CHECK(backend["batches"].get<std::size_t>() <= requests);
    if (backend["batches"].get<std::size_t>() > 0) CHECK(backend["mean_batch_size"].get<double>() >= 1.0);
    // The stream hands the client whole code points only, and the whole answer.
    CHECK(run["invalid_utf8_responses"].get<std::size_t>() == 0);
}

}  // namespace

TEST_CASE("demo: --help explains every option and exits 0") {
    const Run run = run_demo("--help");
    INFO(run.output);
    REQUIRE(run.exit_code == 0);
    for (const char* option : {"--workload", "--requests", "--clients", "--repeat", "--paraphrase", "--seed",
                               "--time-scale", "--overhead-ms", "--prefill-ms", "--decode-ms", "--batch-item-ms",
                               "--max-batch", "--max-wait-ms", "--step-tokens", "--threshold", "--json", "--quick", "--rows",
                               "--through-gateway"}) {
        CHECK(run.output.find(option) != std::string::npos);
    }
    CHECK(run.output.find("SIMULATED") != std::string::npos);
}

TEST_CASE("demo: invalid options are refused with a message") {
    for (const char* args : {"--no-such-option", "--requests 0", "--repeat 0.8 --paraphrase 0.5", "--time-scale -1",
                             "--rows streaming,nonsense", "--requests", "--step-tokens 4"}) {
        const Run run = run_demo(args);
        INFO(args << ": " << run.output);
        CHECK(run.exit_code != 0);
        CHECK(run.output.find("llmfast-demo:") != std::string::npos);
    }
    const Run missing = run_demo("--workload /nonexistent/workload.jsonl");
    CHECK(missing.exit_code != 0);
}

TEST_CASE("demo: --quick on the default workload writes sane JSON for every row") {
    TempDir dir;
    const Json j = run_json("--quick", dir);

    CHECK(j["simulated"].get<bool>());
    const std::size_t requests = j["workload"]["requests"].get<std::size_t>();
    REQUIRE(requests == j["options"]["requests"].get<std::size_t>());
    CHECK(j["workload"]["new"].get<std::size_t>() + j["workload"]["repeat"].get<std::size_t>() +
              j["workload"]["paraphrase"].get<std::size_t>() ==
          requests);
    CHECK(j["workload"]["prompts"].get<std::size_t>() >= 200);  // the default workload: a few hundred prompts

    for (const char* name : {"plain", "streaming", "cache", "batching", "static_streamed", "continuous", "compression", "all"}) {
        INFO(name);
        REQUIRE(j["runs"].contains(name));
        check_run(j["runs"][name], requests);
    }
    for (const char* row : {"streaming", "cache", "batching", "continuous", "compression", "int8", "all"}) {
        INFO(row);
        CHECK(j["rows"].contains(row));
    }

    SECTION("streaming: once on the GPU, the first token comes before the whole answer") {
        const auto& s = j["rows"]["streaming"];
        CHECK(s["ttft_in_service_p50_ms"]["optimized"].get<double>() <
              s["ttft_in_service_p50_ms"]["plain"].get<double>());
        CHECK(s["invalid_utf8_chunks"].get<std::size_t>() == 0);
    }

    SECTION("cache: hit rate in [0, 1], equal to hits / lookups, and the cache's own counters agree") {
        const auto& c = j["rows"]["cache"];
        const auto lookups = c["lookups"].get<std::size_t>();
        const auto hits = c["hits"].get<std::size_t>();
        const double hit_rate = c["hit_rate"].get<double>();
        CHECK(lookups == requests);
        CHECK(hits == c["exact_hits"].get<std::size_t>() + c["semantic_hits"].get<std::size_t>());
        // Every lookup is a hit, waited for an identical request in flight (single-flight), or called the backend.
        CHECK(hits + c["coalesced"].get<std::size_t>() + c["misses"].get<std::size_t>() == lookups);
        CHECK(hit_rate >= 0.0);
        CHECK(hit_rate <= 1.0);
        CHECK(hit_rate == Approx(static_cast<double>(hits) / static_cast<double>(lookups)));
        const auto& stats = c["cache_stats"];
        CHECK(stats["exact_hits"].get<std::size_t>() == c["exact_hits"].get<std::size_t>());
        CHECK(stats["semantic_hits"].get<std::size_t>() == c["semantic_hits"].get<std::size_t>());
        CHECK(stats["computations"].get<std::size_t>() == c["misses"].get<std::size_t>());
        CHECK(stats["entries"].get<std::size_t>() <= c["misses"].get<std::size_t>());
        const double stats_rate = stats["hit_rate"].get<double>();
        CHECK(stats_rate >= 0.0);
        CHECK(stats_rate <= hit_rate + 1e-12);  // the cache counts a single-flight waiter as a miss
        CHECK(c["wrong_hits"].get<std::size_t>() <= c["semantic_hits"].get<std::size_t>());  // exact hits are never wrong
        CHECK(c["paraphrase_opportunities_hit"].get<std::size_t>() <= c["paraphrase_opportunities"].get<std::size_t>());
        // Every hit saves backend tokens: the cached run never sends more than the plain one.
        CHECK(c["backend_tokens"]["optimized"].get<std::size_t>() <= c["backend_tokens"]["plain"].get<std::size_t>());
        CHECK((hits == 0 || c["backend_tokens"]["optimized"].get<std::size_t>() < c["backend_tokens"]["plain"].get<std::size_t>()));
    }

    SECTION("batching: batches of one without it, never bigger than --max-batch with it") {
        CHECK(j["runs"]["plain"]["backend"]["mean_batch_size"].get<double>() == Approx(1.0));
        const double mean = j["rows"]["batching"]["mean_batch_size"].get<double>();
        CHECK(mean >= 1.0);
        CHECK(mean <= static_cast<double>(j["options"]["max_batch"].get<std::size_t>()));
        CHECK(j["rows"]["batching"]["throughput_ratio"].get<double>() > 0);
    }

    SECTION("continuous batching: every request ends exactly once, Ok, within the scheduler's limits") {
        const auto& run = j["runs"]["continuous"];
        REQUIRE(run.contains("engine"));
        const auto& e = run["engine"];
        CHECK(run["config"]["continuous"].get<bool>());
        CHECK_FALSE(run["config"]["batching"].get<bool>());
        CHECK(e["submitted"].get<std::size_t>() == requests);  // no cache in this row: every request calls it
        CHECK(e["completed"].get<std::size_t>() == requests);
        CHECK(e["requests_completed_once"].get<std::size_t>() == requests);
        CHECK(e["finished_ok"].get<std::size_t>() == requests);
        CHECK(e["not_ok"].get<std::size_t>() == 0);
        CHECK(e["preemptions"].get<std::size_t>() == 0);  // unbounded KV capacity: nothing to preempt for
        // Every answer is generated in full, once: the same tokens as the plain and the static runs.
        const auto output = j["runs"]["plain"]["backend"]["output_tokens"].get<std::size_t>();
        CHECK(run["backend"]["output_tokens"].get<std::size_t>() == output);
        CHECK(j["runs"]["static_streamed"]["backend"]["output_tokens"].get<std::size_t>() == output);
        CHECK(e["decode_tokens"].get<std::size_t>() + requests == output);  // each first token comes with its prefill
        CHECK(e["prefill_tokens"].get<std::size_t>() == run["backend"]["prompt_tokens"].get<std::size_t>());
        // The scheduler's limits: at most --max-batch sequences and --step-tokens tokens per step.
        CHECK(e["max_step_sequences"].get<std::size_t>() <= j["options"]["max_batch"].get<std::size_t>());
        CHECK(e["max_step_sequences"].get<std::size_t>() <= j["options"]["clients"].get<std::size_t>());
        CHECK(e["max_step_tokens"].get<std::size_t>() <= j["options"]["step_tokens"].get<std::size_t>());
        CHECK(e["mean_step_sequences"].get<double>() >= 1.0);
        // Steps: at least one per token of the longest answer, at most one per token generated.
        CHECK(e["steps"].get<std::size_t>() <= output);
        CHECK(e["busy_ms"].get<double>() == Approx(run["backend"]["gpu_busy_ms"].get<double>()));
        // Both sides of the comparison streamed every answer intact.
        CHECK(j["runs"]["static_streamed"]["config"]["streaming"].get<bool>());
        CHECK(run["config"]["streaming"].get<bool>());
        const auto& c = j["rows"]["continuous"];
        CHECK(c["throughput_ratio_vs_static"].get<double>() > 0);
        CHECK(c["throughput_ratio"].get<double>() > 0);
    }

    SECTION("compression never adds prompt tokens; output tokens are untouched") {
        const auto& c = j["rows"]["compression"];
        CHECK(c["prompt_tokens"]["optimized"].get<std::size_t>() <= c["prompt_tokens"]["plain"].get<std::size_t>());
        CHECK(j["runs"]["compression"]["backend"]["output_tokens"] == j["runs"]["plain"]["backend"]["output_tokens"]);
    }

    SECTION("int8 vectors take less memory than float32, for the same entries") {
        const auto& q = j["rows"]["int8"];
        CHECK(q["index"]["bytes"]["optimized"].get<std::size_t>() < q["index"]["bytes"]["plain"].get<std::size_t>());
        CHECK(q["index"]["bytes_per_vector"]["optimized"].get<std::size_t>() <
              q["index"]["bytes_per_vector"]["plain"].get<std::size_t>());
        CHECK(q["index"]["memory_change_pct"].get<double>() < 0);
        const double agreement = q["index"]["nearest_neighbour_agreement"].get<double>();
        CHECK(agreement >= 0.0);
        CHECK(agreement <= 1.0);
        // One request at a time: every request is an exact hit, a semantic hit, or a miss that was inserted.
        for (const char* side : {"plain", "optimized"}) {
            const auto& r = q["cache"][side];
            CHECK(r["exact_hits"].get<std::size_t>() + r["semantic_hits"].get<std::size_t>() +
                      r["entries"].get<std::size_t>() ==
                  requests);
            CHECK(r["wrong_hits"].get<std::size_t>() <= r["semantic_hits"].get<std::size_t>());
        }
    }
}

TEST_CASE("demo: a user's workload file, with repeats and paraphrases only where possible") {
    TempDir dir;
    const fs::path workload = dir.path / "tiny.jsonl";
    {
        std::ofstream out(workload);
        out << R"({"prompt": "什么是机器学习？", "lang": "zh", "group": 1, "output_tokens": 12})" << "\n"
            << R"({"prompt": "机器学习是什么？", "lang": "zh", "group": 1, "output_tokens": 12})" << "\n"
            << "\n"  // blank lines are allowed
            << R"({"prompt": "How do I learn Python?", "lang": "en", "group": "python"})" << "\n"
            << R"({"prompt": "What's the best way to learn Python?", "lang": "en", "group": "python"})" << "\n"
            << R"({"prompt": "Convert 5 km to miles.", "lang": "en", "group": 3, "output_tokens": 8})" << "\n";
    }
    const Json j = run_json("--quick --requests 12 --clients 3 --repeat 0.5 --paraphrase 0.3 --rows cache,all --workload " +
                                quoted(workload.string()),
                            dir);
    CHECK(j["workload"]["prompts"].get<std::size_t>() == 5);
    CHECK(j["workload"]["requests"].get<std::size_t>() == 12);
    CHECK(j["workload"]["new"].get<std::size_t>() <= 3);  // three groups: at most three new prompts
    CHECK(j["rows"].contains("cache"));
    CHECK(j["rows"].contains("all"));
    CHECK_FALSE(j["rows"].contains("batching"));
    CHECK_FALSE(j["rows"].contains("continuous"));
    const auto& c = j["rows"]["cache"];
    CHECK(c["hit_rate"].get<double>() == Approx(static_cast<double>(c["hits"].get<std::size_t>()) / 12.0));
    check_run(j["runs"]["cache"], 12);
    check_run(j["runs"]["all"], 12);
}

// --through-gateway: the same requests over HTTP through a fresh llmfast-gateway per run. Checked:
// every row ran, every request got the exact simulated answer, the figures are positive and ordered,
// and the token counts that do not depend on timing hold (a cache hit costs nothing, compression
// never adds prompt tokens). No speed is asserted.
TEST_CASE("demo: --through-gateway --quick prints the table as the gateway's clients measured it") {
    // $LLMFAST_GATEWAY is set exactly when this configuration builds the gateway (demo_test.cmake):
    // unset is a configuration without it (skipped); set but missing is a broken build (fails in CI).
    const char* gateway = std::getenv("LLMFAST_GATEWAY");
    // (Not LLMFAST_SKIP_TEST: that would skip the whole program, and the other cases still run here.)
    if (gateway == nullptr || *gateway == '\0') {
        WARN("not run: llmfast-gateway is not part of this configuration (LLMFAST_BUILD_GATEWAY=OFF)");
        return;
    }
    if (!fs::exists(gateway)) {
        const char* ci = std::getenv("CI");
        if (ci != nullptr && std::string(ci) == "true") FAIL("llmfast-gateway is configured but not built: " << gateway);
        WARN("not run: llmfast-gateway is configured but not built: " << gateway);
        return;
    }
    TempDir dir;
    const fs::path json = dir.path / "gateway.json";
    const Run run = run_demo("--through-gateway " + quoted(gateway) + " --quick --no-progress --json " + quoted(json.string()));
    INFO(run.output);
    REQUIRE(run.exit_code == 0);
    for (const char* line : {"TTFT p50", "hit rate", "throughput (requests/s)", "prompt tokens (usage)", "all together"})
        CHECK(run.output.find(line) != std::string::npos);
    std::ifstream in(json);
    REQUIRE(in.good());
    const Json j = Json::parse(in);
    const auto& runs = j["through_gateway"]["runs"];
    CHECK(j["through_gateway"]["failures"].get<std::size_t>() == 0);
    for (const char* key : {"plain", "streaming", "cache", "batching", "compression", "all"}) {
        INFO(key);
        REQUIRE(runs.contains(key));
        const auto& r = runs[key];
        CHECK(r["requests"].get<std::size_t>() == 40);
        CHECK(r["answered"].get<std::size_t>() == 40);
        CHECK(r["intact"].get<std::size_t>() == 40);
        CHECK(r["errors"].get<std::size_t>() == 0);
        for (const char* p : {"p50", "p95", "p99"}) {
            CHECK(r["ttft_ms"][p].get<double>() > 0);
            CHECK(r["ttft_ms"][p].get<double>() <= r["latency_ms"][p].get<double>() + 1e-6);
        }
        CHECK(r["latency_ms"]["p50"].get<double>() <= r["latency_ms"]["p99"].get<double>());
        CHECK(r["throughput"]["requests_per_s"].get<double>() > 0);
        const auto& c = r["cache"];
        CHECK(c["exact_hits"].get<std::size_t>() + c["semantic_hits"].get<std::size_t>() +
                  c["coalesced"].get<std::size_t>() + c["misses"].get<std::size_t>() == 40);
        CHECK(r["backend"]["cost"].get<double>() > 0);
    }
    // Without a cache every request is computed; with it, hits cost nothing and misses the same.
    CHECK(runs["plain"]["cache"]["misses"].get<std::size_t>() == 40);
    const auto cost = [&](const char* key) { return runs[key]["backend"]["cost"].get<double>(); };
    CHECK(cost("cache") <= cost("plain"));
    CHECK(cost("streaming") == cost("plain"));
    CHECK(runs["compression"]["backend"]["prompt_tokens"].get<double>() <= runs["plain"]["backend"]["prompt_tokens"].get<double>());
    // The quick workload repeats prompts (25 % exact repeats): the cache answers some of them.
    const auto& cache = runs["cache"]["cache"];
    CHECK(cache["exact_hits"].get<std::size_t>() + cache["coalesced"].get<std::size_t>() > 0);
}

TEST_CASE("demo: a malformed workload line is reported with its line number") {
    TempDir dir;
    const fs::path workload = dir.path / "bad.jsonl";
    {
        std::ofstream out(workload);
        out << R"({"prompt": "ok", "group": 1})" << "\n" << R"({"prompt": "no group"})" << "\n";
    }
    const Run run = run_demo("--quick --no-progress --workload " + quoted(workload.string()));
    INFO(run.output);
    CHECK(run.exit_code != 0);
    CHECK(run.output.find(":2:") != std::string::npos);
}

#else

TEST_CASE("demo: needs nlohmann/json to read the demo's output") {
    LLMFAST_SKIP_TEST("nlohmann/json.hpp is not installed (Debian: nlohmann-json3-dev)");
}

#endif
