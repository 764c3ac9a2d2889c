// tests/support/redis_server.hpp — the tests' redis-server harness (one copy, used by every test that
// needs a real Redis): a child redis-server on a free 127.0.0.1 port, no persistence, a temporary
// directory, started ready (answers PING, bounded) and always stopped (the destructor; the server
// also dies with the test process: PR_SET_PDEATHSIG). A missing redis-server skips the test (exit
// 77) on a developer's machine and fails it under CI=true. Plus `eventually`, the bounded wait on a
// condition that replaces timed assertions.
#pragma once

#include <llmfast/redis_tier.hpp>

#include "catch.hpp"

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace llmfast_test {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

inline std::string find_redis_server() {
    if (const char* path = std::getenv("PATH")) {
        std::string_view rest(path);
        while (!rest.empty()) {
            const std::size_t colon = rest.find(':');
            const fs::path candidate = fs::path(std::string(rest.substr(0, colon))) / "redis-server";
            if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
            if (colon == std::string_view::npos) break;
            rest = rest.substr(colon + 1);
        }
    }
    for (const char* fallback : {"/usr/bin/redis-server", "/usr/local/bin/redis-server"}) {
        if (::access(fallback, X_OK) == 0) return fallback;
    }
    return {};
}

inline int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    socklen_t length = sizeof address;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0);
    ::close(fd);
    return ntohs(address.sin_port);
}

// A redis-server child process on 127.0.0.1:port.
class RedisServer {
public:
    explicit RedisServer(std::vector<std::string> extra_args = {}) : binary_(find_redis_server()), port_(0), extra_(std::move(extra_args)) {
        if (binary_.empty()) {
            const char* ci = std::getenv("CI");
            if (ci != nullptr && std::string(ci) == "true") FAIL("redis-server is not installed, and CI must install it (scripts/install_deps.sh)");
            LLMFAST_SKIP_TEST("redis-server is not installed");
        }
        dir_ = fs::temp_directory_path() / ("llmfast_redis_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
        fs::create_directories(dir_);
        port_ = free_port();
        start();
    }
    ~RedisServer() {
        stop();
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }
    RedisServer(const RedisServer&) = delete;
    RedisServer& operator=(const RedisServer&) = delete;

    [[nodiscard]] int port() const { return port_; }

    void start() {
        const std::string port = std::to_string(port_);
        const std::string dir = dir_.string();
        std::vector<std::string> args{binary_, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                      "--dir", dir, "--daemonize", "no"};
        args.insert(args.end(), extra_.begin(), extra_.end());
        std::vector<char*> argv;
        for (std::string& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        pid_ = ::fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            const int null = ::open("/dev/null", O_WRONLY);
            if (null >= 0) {
                ::dup2(null, 1);
                ::dup2(null, 2);
            }
            ::execv(binary_.c_str(), argv.data());
            ::_exit(127);
        }
        // Ready when it answers PING (bounded).
        const auto until = std::chrono::steady_clock::now() + 20s;
        while (std::chrono::steady_clock::now() < until) {
            auto connection = llmfast::detail::RedisConnection::open({.host = "127.0.0.1", .port = port_}, 200ms, 200ms);
            if (connection) {
                connection->append({"PING"});
                // PONG, or NOAUTH from a server that requires a password: either way it is up.
                if (auto reply = connection->read(); reply && (reply->type == REDIS_REPLY_STATUS || reply->type == REDIS_REPLY_ERROR)) return;
            }
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                FAIL("redis-server exited at start");
            }
            std::this_thread::sleep_for(20ms);
        }
        FAIL("redis-server did not answer PING within 20 s");
    }

    /// SIGKILL (Redis gone, nothing saved) and reap.
    void kill() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGCONT);
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }
    void pause() const { ::kill(pid_, SIGSTOP); }
    void resume() const { ::kill(pid_, SIGCONT); }

    void stop() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGCONT);
        ::kill(pid_, SIGTERM);
        for (int i = 0; i < 500; ++i) {
            if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
                pid_ = -1;
                return;
            }
            std::this_thread::sleep_for(10ms);
        }
        kill();
    }

    /// A raw connection (the tests' own client, for foreign values).
    std::unique_ptr<llmfast::detail::RedisConnection> raw() const {
        auto connection = llmfast::detail::RedisConnection::open({.host = "127.0.0.1", .port = port_}, 1s, 1s);
        REQUIRE(connection);
        return connection;
    }

private:
    static int& counter() {
        static int n = 0;
        return n;
    }
    std::string binary_;
    fs::path dir_;
    int port_;
    std::vector<std::string> extra_;
    pid_t pid_ = -1;
};

/// Polls `pred` every 5 ms until it holds or `limit` passed; returns its last value.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 20s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
        if (pred()) return true;
        std::this_thread::sleep_for(5ms);
    }
    return pred();
}

/// Runs this test program again in a child process (`/proc/self/exe`, no arguments) with the
/// environment variable `env` set to `value` — the child's side of a two-process test reads it —
/// and waits for it. Its exit code, or nullopt when it could not start or did not exit normally.
inline std::optional<int> run_self_child(const char* env, const std::string& value) {
    const pid_t child = ::fork();
    if (child < 0) return std::nullopt;
    if (child == 0) {
        ::setenv(env, value.c_str(), 1);
        ::execl("/proc/self/exe", "child", static_cast<char*>(nullptr));
        ::_exit(127);
    }
    int status = 0;
    if (::waitpid(child, &status, 0) != child || !WIFEXITED(status)) return std::nullopt;
    return WEXITSTATUS(status);
}

}  // namespace llmfast_test
