// benchmarks/bench_common.hpp — what every llmfast benchmark shares.
//
// The machines are shared and noisy, so a figure is a ratio: ours against a baseline measured in
// the same process, interleaved (A B A B ...), with fixed seeds; the absolute median is context.
//
//     llmfast::bench::Options options = llmfast::bench::parse_options(argc, argv);
//     llmfast::bench::Table table("batcher throughput");
//     auto [ours, base] = llmfast::bench::interleave(options.rounds,
//         [&] { return measure_ours(); },     // each call returns one sample (e.g. requests/s)
//         [&] { return measure_baseline(); });
//     table.add("no-op handler, 1 producer", ours, base, "req/s", llmfast::bench::Better::Higher);
//     table.print();
#pragma once

#include <llmfast/detail/percentile.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace llmfast::bench {

struct Options {
    bool quick = false;  ///< --quick: tiny sizes and few rounds, so CI can check the program still runs
    int rounds = 7;      ///< --rounds N: interleaved samples per side
    std::vector<std::string> positional;  ///< other arguments (e.g. a data file path)
};

/// Parses --quick, --rounds N and --help; the rest is kept in `positional`. `usage` is printed by --help.
inline Options parse_options(int argc, char** argv, std::string_view usage = {}) {
    Options options;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--quick") {
            options.quick = true;
        } else if (arg == "--rounds" && i + 1 < argc) {
            options.rounds = std::max(1, std::atoi(argv[++i]));
        } else if (arg == "--help" || arg == "-h") {
            std::printf("usage: %s [--quick] [--rounds N] %.*s\n", argv[0], static_cast<int>(usage.size()), usage.data());
            std::exit(0);
        } else {
            options.positional.emplace_back(arg);
        }
    }
    if (options.quick) options.rounds = std::min(options.rounds, 2);
    return options;
}

/// Median of the samples (the mean of the middle two for an even count); 0 for none.
inline double median(std::vector<double> samples) {
    if (samples.empty()) return 0;
    std::sort(samples.begin(), samples.end());
    const std::size_t mid = samples.size() / 2;
    return samples.size() % 2 ? samples[mid] : (samples[mid - 1] + samples[mid]) / 2;
}

/// The p-th percentile (0..100) by nearest rank (the library's definition); 0 for no samples.
inline double percentile(std::vector<double> samples, double p) {
    std::sort(samples.begin(), samples.end());
    return llmfast::detail::nearest_rank(std::span<const double>(samples), p);
}

/// Seconds since an arbitrary start, as a double.
inline double now_seconds() {
    using clock = std::chrono::steady_clock;
    return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

/// Runs `ours` and `baseline` alternately `rounds` times each (ours first in even rounds, baseline
/// first in odd ones, so neither always runs on a warmer cache) and returns the medians of the
/// samples they return.
template <class Ours, class Baseline>
std::pair<double, double> interleave(int rounds, Ours&& ours, Baseline&& baseline) {
    std::vector<double> ours_samples, baseline_samples;
    for (int round = 0; round < rounds; ++round) {
        if (round % 2 == 0) {
            ours_samples.push_back(static_cast<double>(ours()));
            baseline_samples.push_back(static_cast<double>(baseline()));
        } else {
            baseline_samples.push_back(static_cast<double>(baseline()));
            ours_samples.push_back(static_cast<double>(ours()));
        }
    }
    return {median(std::move(ours_samples)), median(std::move(baseline_samples))};
}

enum class Better { Higher, Lower };

/// The comparison table every benchmark prints: what, ours, baseline, and the ratio, oriented so
/// that a ratio above 1 always means "ours is better".
class Table {
public:
    explicit Table(std::string title) : title_(std::move(title)) {}

    void add(std::string what, double ours, double baseline, std::string unit, Better better) {
        rows_.push_back({std::move(what), ours, baseline, std::move(unit), better});
    }
    /// A row with no baseline (an absolute figure, e.g. a latency goal); printed with "-" as ratio.
    void add_absolute(std::string what, double value, std::string unit) {
        rows_.push_back({std::move(what), value, -1, std::move(unit), Better::Higher});
    }

    void print() const {
        std::printf("\n== %s ==\n%-48s %16s %16s %-10s %9s\n", title_.c_str(), "what", "ours (median)",
                    "baseline", "unit", "ratio");
        for (const Row& row : rows_) {
            if (row.baseline < 0) {
                std::printf("%-48s %16.4g %16s %-10s %9s\n", row.what.c_str(), row.ours, "-", row.unit.c_str(), "-");
                continue;
            }
            double ratio = 0;
            if (row.better == Better::Higher && row.baseline > 0) ratio = row.ours / row.baseline;
            if (row.better == Better::Lower && row.ours > 0) ratio = row.baseline / row.ours;
            std::printf("%-48s %16.4g %16.4g %-10s %8.2fx\n", row.what.c_str(), row.ours, row.baseline,
                        row.unit.c_str(), ratio);
        }
        std::fflush(stdout);
    }

private:
    struct Row {
        std::string what;
        double ours;
        double baseline;
        std::string unit;
        Better better;
    };
    std::string title_;
    std::vector<Row> rows_;
};

/// Keeps the compiler from discarding a computed value.
template <class T>
inline void keep(T&& value) {
    asm volatile("" : : "g"(&value) : "memory");
}

}  // namespace llmfast::bench
