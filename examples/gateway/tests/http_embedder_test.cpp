// A SemanticCache whose embedder is llmfast::OpenAiEmbedder against llmfast-gateway's own
// /v1/embeddings (the built-in HashingEmbedder behind HTTP) gives the same hits as a cache with the
// in-process HashingEmbedder on the same prompts. Starts the gateway ($LLMFAST_GATEWAY) on a free
// 127.0.0.1 port (--port 0; it prints the port), and always stops it. Built with the gateway and the
// http component; a missing gateway binary skips (77) locally and fails under CI=true.
#include <llmfast/curl_transport.hpp>
#include <llmfast/hashing_embedder.hpp>
#include <llmfast/openai_embedder.hpp>
#include <llmfast/semantic_cache.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

int failures = 0;
void check(bool ok, const std::string& what) {
    if (!ok) {
        std::fprintf(stderr, "FAILED: %s\n", what.c_str());
        ++failures;
    }
}

// The gateway process: started in the constructor, SIGTERM then SIGKILL in the destructor.
class Gateway {
public:
    explicit Gateway(const char* path) {
        int out[2];
        if (::pipe(out) != 0) throw std::runtime_error("pipe");
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, out[1], 1);
        posix_spawn_file_actions_addclose(&actions, out[0]);
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
        std::vector<std::string> args = {path, "--port", "0", "--threads", "2", "--access-log", "off"};
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        const int rc = posix_spawn(&pid_, path, &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        ::close(out[1]);
        if (rc != 0) {
            ::close(out[0]);
            throw std::runtime_error("posix_spawn failed");
        }
        // The first stdout line: "listening on 127.0.0.1:<port>", within 20 s.
        std::string line;
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (line.find('\n') == std::string::npos && std::chrono::steady_clock::now() < until) {
            pollfd p{out[0], POLLIN, 0};
            if (::poll(&p, 1, 100) <= 0) continue;
            char buffer[256];
            const ssize_t n = ::read(out[0], buffer, sizeof buffer);
            if (n <= 0) break;
            line.append(buffer, static_cast<std::size_t>(n));
        }
        ::close(out[0]);
        const std::size_t colon = line.rfind(':', line.find('\n'));
        if (line.rfind("listening on 127.0.0.1:", 0) != 0 || colon == std::string::npos) {
            stop();
            throw std::runtime_error("the gateway did not print its listening line: " + line);
        }
        port_ = std::atoi(line.c_str() + colon + 1);
    }
    ~Gateway() { stop(); }
    [[nodiscard]] int port() const { return port_; }

private:
    void stop() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGTERM);
        for (int i = 0; i < 150; ++i) {  // 15 s
            if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
                pid_ = 0;
                return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        pid_ = 0;
    }
    pid_t pid_ = 0;
    int port_ = 0;
};

}  // namespace

int main() {
    const char* path = std::getenv("LLMFAST_GATEWAY");
    if (path == nullptr || ::access(path, X_OK) != 0) {
        std::fprintf(stderr, "llmfast-gateway not built ($LLMFAST_GATEWAY)\n");
        const char* ci = std::getenv("CI");
        return ci != nullptr && std::string(ci) == "true" ? 1 : 77;
    }
    Gateway gateway(path);
    using HttpEmbedder = llmfast::OpenAiEmbedder<llmfast::CurlTransport>;
    const HttpEmbedder http({.base_url = "http://127.0.0.1:" + std::to_string(gateway.port()) + "/v1",
                             .model = "llmfast-hashing", .dimension = 384, .timeout = std::chrono::seconds(20)});
    const llmfast::SemanticCacheOptions options{.semantic_tier = llmfast::SemanticTier::On, .similarity_threshold = 0.8F};
    llmfast::SemanticCache<HttpEmbedder> remote(http, options);
    llmfast::SemanticCache<llmfast::HashingEmbedder> local(llmfast::HashingEmbedder{}, options);
    const std::vector<std::string> cached = {
        "什么是机器学习?", "How do I reset my password?", "What is the capital of France?",
        "Explain quantum computing in simple terms", "推荐几本好看的科幻小说", "How many tickets can I book at once?"};
    const std::vector<std::string> asked = {
        "机器学习是什么?",  "how do i reset my password please?", "What's the capital city of France?",
        "Explain quantum computing simply", "推荐几本科幻小说", "How many tickets can I book at one time?",
        "What is deep learning?", "第一季比第二季好", "reset my password", "capital of Germany?"};
    for (const auto& prompt : cached) {
        remote.insert(prompt, "scope", "answer: " + prompt);
        local.insert(prompt, "scope", "answer: " + prompt);
    }
    int hits = 0;
    for (const auto& prompt : asked) {
        const llmfast::LookupResult a = remote.lookup(prompt, "scope");
        const llmfast::LookupResult b = local.lookup(prompt, "scope");
        check(a.match == b.match, "match differs for '" + prompt + "': " + std::string(llmfast::to_string(a.match)) + " vs " +
                                      std::string(llmfast::to_string(b.match)));
        check(a.response() == b.response(), "response differs for '" + prompt + "'");
        if (b.hit()) {
            ++hits;
            check(std::abs(a.similarity - b.similarity) < 1e-4F, "similarity differs for '" + prompt + "'");
        }
    }
    check(hits >= 3, "the comparison needs some semantic hits to mean anything (got " + std::to_string(hits) + ")");
    check(remote.stats().embedder_failures == 0, "the HTTP embedder failed");
    check(http.stats().requests > 0, "no request reached the gateway");
    std::printf("%zu prompts, %d hits, same results: %s\n", asked.size(), hits, failures == 0 ? "yes" : "no");
    return failures == 0 ? 0 : 1;
}
