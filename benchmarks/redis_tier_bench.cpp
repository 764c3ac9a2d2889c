// RedisTier (llmfast/redis_tier.hpp) against raw hiredis doing the same round trips, on a
// redis-server this program starts on a free loopback port (no persistence) and stops:
//   - an exact hit: RedisTier::lookup (GET + decode + scope/key check) vs a raw GET of the same value;
//   - inserts/s: RedisTier::insert (encode + pipelined SET PX + XADD MAXLEN ~) vs a raw pipelined
//     SET PX + XADD of the same bytes, one connection each, one round trip per insert;
//   - a Redis outage: what a lookup costs when Redis is stopped (SIGSTOP: the command timeout fires)
//     and when it is gone (killed: refused at once, then the backoff answers without I/O).
//   - through SemanticCache with the tier attached: a shared hit (local miss -> GET -> verified,
//     stored locally) vs RedisTier::lookup alone, and what a lookup / get_or_compute of the cache costs
//     while Redis is stopped.
// Interleaved rounds (ours, baseline, ...); the figure is the ratio, absolute times are context.
// The entry is a realistic one: a 1 KiB response and a 384-dimension embedding (~2.7 KB encoded).
// Without redis-server it says so and exits 0 (CI installs it; scripts/install_deps.sh).
#include <llmfast/hashing_embedder.hpp>
#include <llmfast/redis_tier.hpp>
#include <llmfast/semantic_cache.hpp>

#include "bench_common.hpp"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
    socklen_t length = sizeof address;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
    ::close(fd);
    return ntohs(address.sin_port);
}

// redis-server as a child (dies with this process too), ready when it answers PING.
struct Server {
    pid_t pid = -1;
    int port = 0;
    fs::path dir;
    bool start(const std::string& binary) {
        port = free_port();
        dir = fs::temp_directory_path() / ("llmfast_redis_bench_" + std::to_string(::getpid()));
        fs::create_directories(dir);
        const std::string port_text = std::to_string(port);
        pid = ::fork();
        if (pid == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            const int null = ::open("/dev/null", O_WRONLY);
            ::dup2(null, 1);
            ::dup2(null, 2);
            ::execl(binary.c_str(), binary.c_str(), "--port", port_text.c_str(), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                    "no", "--dir", dir.c_str(), static_cast<char*>(nullptr));
            ::_exit(127);
        }
        for (int i = 0; i < 1000; ++i) {
            if (auto c = llmfast::detail::RedisConnection::open({.host = "127.0.0.1", .port = port}, 100ms, 100ms)) {
                c->append({"PING"});
                if (auto reply = c->read(); reply && reply->type == REDIS_REPLY_STATUS) return true;
            }
            std::this_thread::sleep_for(10ms);
        }
        return false;
    }
    void kill_now() {
        if (pid <= 0) return;
        ::kill(pid, SIGCONT);
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        pid = -1;
    }
    ~Server() {
        kill_now();
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
};

std::string find_redis_server() {
    for (const char* candidate : {"/usr/bin/redis-server", "/usr/local/bin/redis-server"}) {
        if (::access(candidate, X_OK) == 0) return candidate;
    }
    return {};
}

llmfast::SharedEntry sample_entry(const std::string& key) {
    llmfast::SharedEntry e;
    e.scope = "gpt-4o|sys=v3|T=0";
    e.key = key;
    e.prompt = "What is the capital of France, and why did it become the capital?";
    e.response = std::string(1024, 'x');
    e.embedding.assign(384, 0.05F);
    e.embedder = "bench-embedder dim=384";
    e.created_ns = 1'700'000'000'000'000'000;
    e.ttl = std::chrono::hours(1);
    return e;
}

double micros_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
    const llmfast::bench::Options options = llmfast::bench::parse_options(argc, argv);
    const std::string binary = find_redis_server();
    if (binary.empty()) {
        std::puts("redis_tier_bench: redis-server is not installed; nothing measured");
        return 0;
    }
    Server server;
    if (!server.start(binary)) {
        std::puts("redis_tier_bench: redis-server did not start");
        return 1;
    }
    const int lookups = options.quick ? 500 : 20'000;
    const int inserts = options.quick ? 500 : 20'000;

    llmfast::RedisTier tier({.port = server.port, .key_prefix = "bench"});
    auto raw = llmfast::detail::RedisConnection::open({.host = "127.0.0.1", .port = server.port}, 1s, 1s);
    if (!raw) return 1;
    const llmfast::SharedEntry entry = sample_entry("hit");
    if (tier.insert(entry) != llmfast::SharedStatus::Ok) return 1;
    const std::string hit_key = tier.entry_key(entry.scope, entry.key);

    std::size_t unanswered = 0;  // request-path calls of ours answered Unavailable while Redis ran

    // ---- exact hit ----
    std::vector<double> ours_p50, ours_p99, raw_p50, raw_p99;
    const auto run_ours = [&] {
        std::vector<double> t;
        t.reserve(static_cast<std::size_t>(lookups));
        for (int i = 0; i < lookups; ++i) {
            const auto start = std::chrono::steady_clock::now();
            const llmfast::SharedLookup found = tier.lookup(entry.scope, entry.key);
            t.push_back(micros_since(start));
            if (!found.found()) ++unanswered;  // a reply slower than command_timeout (4 ms): Unavailable
        }
        ours_p50.push_back(llmfast::bench::percentile(t, 50));
        ours_p99.push_back(llmfast::bench::percentile(t, 99));
        return 0;
    };
    const auto run_raw = [&] {
        std::vector<double> t;
        t.reserve(static_cast<std::size_t>(lookups));
        for (int i = 0; i < lookups; ++i) {
            const auto start = std::chrono::steady_clock::now();
            raw->append({"GET", hit_key});
            const auto reply = raw->read();
            t.push_back(micros_since(start));
            if (!reply || reply->type != REDIS_REPLY_STRING) std::abort();
        }
        raw_p50.push_back(llmfast::bench::percentile(t, 50));
        raw_p99.push_back(llmfast::bench::percentile(t, 99));
        return 0;
    };
    llmfast::bench::interleave(options.rounds, run_ours, run_raw);

    // ---- inserts/s ----
    const std::string value = llmfast::detail::encode_shared_entry(entry);
    const std::string stream = "{bench-raw:0}:s";
    const auto insert_ours = [&] {
        const auto start = std::chrono::steady_clock::now();
        for (int i = 0; i < inserts; ++i) {
            llmfast::SharedEntry e = entry;
            e.key = std::to_string(i);
            if (tier.insert(e) != llmfast::SharedStatus::Ok) ++unanswered;
        }
        return inserts / (micros_since(start) / 1e6);
    };
    const auto insert_raw = [&] {
        const auto start = std::chrono::steady_clock::now();
        for (int i = 0; i < inserts; ++i) {
            const std::string key = "{bench-raw:0}:e:" + std::to_string(i);
            raw->append({"SET", key, value, "PX", "3600000"});
            raw->append({"XADD", stream, "MAXLEN", "~", "100000", "*", "t", "i", "v", value});
            const auto set = raw->read();
            const auto add = raw->read();
            if (!set || !add) std::abort();
        }
        return inserts / (micros_since(start) / 1e6);
    };
    const auto [ours_rate, raw_rate] = llmfast::bench::interleave(options.rounds, insert_ours, insert_raw);

    llmfast::bench::Table table("RedisTier vs raw hiredis (same round trips, loopback)");
    table.add("exact hit p50 (lookup vs GET)", llmfast::bench::median(ours_p50), llmfast::bench::median(raw_p50), "us",
              llmfast::bench::Better::Lower);
    table.add("exact hit p99 (lookup vs GET)", llmfast::bench::median(ours_p99), llmfast::bench::median(raw_p99), "us",
              llmfast::bench::Better::Lower);
    table.add("inserts/s (insert vs pipelined SET PX + XADD)", ours_rate, raw_rate, "1/s", llmfast::bench::Better::Higher);

    // ---- through SemanticCache ----
    using SharedCache = llmfast::SemanticCache<llmfast::HashingEmbedder, llmfast::FlatIndex, llmfast::WallClock,
                                               llmfast::LruPolicy, llmfast::RedisTier>;
    auto cache_tier = std::make_shared<llmfast::RedisTier>(llmfast::RedisTierOptions{.port = server.port, .key_prefix = "bench-cache"});
    // The semantic tier on (dimension 384, the default of HashingEmbedder): a shared hit carries the
    // embedding into the local index without embedding the prompt again.
    const llmfast::SemanticCacheOptions cache_options{.semantic_tier = llmfast::SemanticTier::On};
    SharedCache writer({}, cache_options);
    SharedCache reader({}, cache_options);
    writer.attach_shared(cache_tier);
    const std::string cache_scope = entry.scope;
    writer.insert(entry.prompt, cache_scope, entry.response);
    const std::string cache_key = llmfast::detail::cache_key_hex(llmfast::detail::prompt_cache_key(cache_scope, entry.prompt));
    for (int i = 0; i < 2000 && cache_tier->lookup(cache_scope, cache_key).status != llmfast::SharedStatus::Ok; ++i) {
        std::this_thread::sleep_for(1ms);  // the write-through is asynchronous
    }
    // The reader (its own tier object, as another replica would have) follows the stream too; its local
    // copy is dropped (`clear`: local only) before each timed call, so every lookup goes to Redis.
    reader.attach_shared(std::make_shared<llmfast::RedisTier>(llmfast::RedisTierOptions{.port = server.port, .key_prefix = "bench-cache"}));
    std::vector<double> shared_p50, shared_p99, tier_p50, tier_p99;
    std::size_t shared_missed = 0;
    const auto run_cache = [&] {
        std::vector<double> t;
        t.reserve(static_cast<std::size_t>(lookups));
        for (int i = 0; i < lookups; ++i) {
            reader.clear();  // local only: the next lookup must go to Redis
            const auto start = std::chrono::steady_clock::now();
            const llmfast::LookupResult found = reader.lookup(entry.prompt, cache_scope);
            t.push_back(micros_since(start));
            if (!found) ++shared_missed;
        }
        shared_p50.push_back(llmfast::bench::percentile(t, 50));
        shared_p99.push_back(llmfast::bench::percentile(t, 99));
        return 0;
    };
    const auto run_tier = [&] {
        std::vector<double> t;
        t.reserve(static_cast<std::size_t>(lookups));
        for (int i = 0; i < lookups; ++i) {
            reader.clear();  // the same work outside the timed part on both sides
            const auto start = std::chrono::steady_clock::now();
            const llmfast::SharedLookup found = cache_tier->lookup(cache_scope, cache_key);
            t.push_back(micros_since(start));
            if (!found.found()) ++shared_missed;
        }
        tier_p50.push_back(llmfast::bench::percentile(t, 50));
        tier_p99.push_back(llmfast::bench::percentile(t, 99));
        return 0;
    };
    llmfast::bench::interleave(options.rounds, run_cache, run_tier);
    table.add("cache shared hit p50 (SemanticCache::lookup vs RedisTier::lookup)", llmfast::bench::median(shared_p50),
              llmfast::bench::median(tier_p50), "us", llmfast::bench::Better::Lower);
    table.add("cache shared hit p99 (SemanticCache::lookup vs RedisTier::lookup)", llmfast::bench::median(shared_p99),
              llmfast::bench::median(tier_p99), "us", llmfast::bench::Better::Lower);

    const int cache_outage_calls = options.quick ? 20 : 200;
    ::kill(server.pid, SIGSTOP);
    std::vector<double> cache_stopped, compute_stopped;
    std::size_t cache_failed = 0;
    for (int i = 0; i < cache_outage_calls; ++i) {
        const std::string prompt = "outage prompt " + std::to_string(i);
        auto start = std::chrono::steady_clock::now();
        try {
            if (reader.lookup(prompt, cache_scope)) ++cache_failed;  // nothing to find: a hit would be wrong
        } catch (...) {
            ++cache_failed;
        }
        cache_stopped.push_back(micros_since(start) / 1000.0);
        start = std::chrono::steady_clock::now();
        try {
            if (reader.get_or_compute(prompt + "?", cache_scope, [] { return std::string("computed"); }).response() != "computed")
                ++cache_failed;
        } catch (...) {
            ++cache_failed;
        }
        compute_stopped.push_back(micros_since(start) / 1000.0);
        std::this_thread::sleep_for(1ms);
    }
    ::kill(server.pid, SIGCONT);
    for (int i = 0; i < 2000 && cache_tier->lookup(cache_scope, cache_key).status == llmfast::SharedStatus::Unavailable; ++i) {
        std::this_thread::sleep_for(1ms);  // Redis answers again (after the tier's backoff)
    }
    table.add_absolute("outage: SemanticCache::lookup vs stopped Redis, max", *std::max_element(cache_stopped.begin(), cache_stopped.end()), "ms");
    table.add_absolute("outage: SemanticCache::lookup vs stopped Redis, p50", llmfast::bench::percentile(cache_stopped, 50), "ms");
    table.add_absolute("outage: SemanticCache::get_or_compute (miss) vs stopped Redis, max",
                       *std::max_element(compute_stopped.begin(), compute_stopped.end()), "ms");
    const llmfast::SemanticCacheStats rs = reader.stats();

    // ---- outage ----
    const int outage_calls = options.quick ? 20 : 200;
    ::kill(server.pid, SIGSTOP);
    std::vector<double> stopped;
    for (int i = 0; i < outage_calls; ++i) {
        const auto start = std::chrono::steady_clock::now();
        const llmfast::SharedLookup found = tier.lookup(entry.scope, entry.key);
        stopped.push_back(micros_since(start) / 1000.0);
        if (found.status != llmfast::SharedStatus::Unavailable) std::abort();
        std::this_thread::sleep_for(1ms);  // requests keep arriving; some land after a backoff ends and try again
    }
    server.kill_now();
    std::vector<double> killed;
    for (int i = 0; i < outage_calls; ++i) {
        const auto start = std::chrono::steady_clock::now();
        const llmfast::SharedLookup found = tier.lookup(entry.scope, entry.key);
        killed.push_back(micros_since(start) / 1000.0);
        if (found.status != llmfast::SharedStatus::Unavailable) std::abort();
        std::this_thread::sleep_for(1ms);  // requests keep arriving; some land after a backoff ends
    }
    table.add_absolute("outage: lookup vs stopped Redis, max", *std::max_element(stopped.begin(), stopped.end()), "ms");
    table.add_absolute("outage: lookup vs stopped Redis, p50", llmfast::bench::percentile(stopped, 50), "ms");
    table.add_absolute("outage: lookup vs killed Redis, max", *std::max_element(killed.begin(), killed.end()), "ms");
    table.add_absolute("outage: lookup vs killed Redis, p50", llmfast::bench::percentile(killed, 50), "ms");
    table.print();
    std::printf("calls answered Unavailable while Redis was up (slower than the 4 ms bound): %zu\n", unanswered);
    const llmfast::RedisTierStats s = tier.stats();
    std::printf("stats: lookups %llu, hits %llu, unavailable %llu, dropped connections %llu, connect failures %llu\n",
                static_cast<unsigned long long>(s.lookups), static_cast<unsigned long long>(s.hits),
                static_cast<unsigned long long>(s.unavailable), static_cast<unsigned long long>(s.dropped_connections),
                static_cast<unsigned long long>(s.connect_failures));
    std::printf("through SemanticCache: shared hits %llu, unavailable %llu; lookups that missed while Redis ran %zu; "
                "failed or wrong calls while Redis was stopped %zu\n",
                static_cast<unsigned long long>(rs.shared_hits), static_cast<unsigned long long>(rs.shared_unavailable),
                shared_missed, cache_failed);
    std::puts("goals: exact-hit p99 <= 1.5x raw GET (ratio >= 0.67), inserts/s >= 0.6x raw, outage <= 5 ms, 0 failed requests");
    return 0;
}
