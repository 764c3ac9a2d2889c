// tests/stub_http_server.hpp — a scripted HTTP/1.1 server on 127.0.0.1 (a free port) for the HTTP
// embedder's tests and benchmark. Each request is answered by a user function returning a
// StubReply: status, body, extra headers, a delay before answering, or a connection reset. Keep-alive
// connections are served (curl reuses them); `serial` serves one request at a time across all
// connections (as a GPU-backed embedding server does). The destructor stops it and joins every
// thread, also when a test failed: every wait polls a stop flag every 20 ms.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <list>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace llmfast::testing {

struct StubRequest {
    std::string method;
    std::string path;
    std::string body;
    std::string headers;  ///< the raw header block (lower-case it to search)
};

struct StubReply {
    int status = 200;
    std::string body{};
    std::vector<std::pair<std::string, std::string>> headers{};
    std::chrono::nanoseconds delay{0};  ///< before answering (bounded by the server's stop)
    bool reset = false;                 ///< close the connection with a RST instead of answering
};

class StubHttpServer {
public:
    using Handler = std::function<StubReply(const StubRequest&)>;

    explicit StubHttpServer(Handler handler, bool serial = false) : handler_(std::move(handler)), serial_(serial) {
        listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        if (listen_fd_ < 0) throw std::runtime_error("StubHttpServer: socket failed");
        const int one = 1;
        ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = 0;
        if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 128) != 0) {
            ::close(listen_fd_);
            throw std::runtime_error("StubHttpServer: bind/listen failed");
        }
        socklen_t len = sizeof addr;
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
        port_ = ntohs(addr.sin_port);
        acceptor_ = std::thread([this] { accept_loop(); });
    }
    StubHttpServer(const StubHttpServer&) = delete;
    StubHttpServer& operator=(const StubHttpServer&) = delete;
    ~StubHttpServer() {
        stop_.store(true);
        if (acceptor_.joinable()) acceptor_.join();
        std::lock_guard lock(connections_mutex_);
        for (std::thread& t : connections_)
            if (t.joinable()) t.join();
        ::close(listen_fd_);
    }

    [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
    [[nodiscard]] std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
    [[nodiscard]] std::uint64_t requests() const noexcept { return requests_.load(); }

private:
    bool wait_readable(int fd) const {
        pollfd p{fd, POLLIN, 0};
        while (!stop_.load()) {
            const int rc = ::poll(&p, 1, 20);
            if (rc > 0) return true;
            if (rc < 0 && errno != EINTR) return false;
        }
        return false;
    }

    void accept_loop() {
        while (wait_readable(listen_fd_)) {
            const int fd = ::accept(listen_fd_, nullptr, nullptr);
            if (fd < 0) continue;
            std::lock_guard lock(connections_mutex_);
            connections_.emplace_back([this, fd] { serve(fd); });
        }
    }

    static std::string lower(std::string_view s) {
        std::string out(s);
        for (char& c : out) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
        return out;
    }

    void serve(int fd) {
        std::string buffer;
        char chunk[65536];
        for (;;) {
            // Read one request: headers, then Content-Length bytes of body.
            std::size_t header_end;
            while ((header_end = buffer.find("\r\n\r\n")) == std::string::npos) {
                if (!wait_readable(fd)) return close_fd(fd);
                const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
                if (n <= 0) return close_fd(fd);
                buffer.append(chunk, static_cast<std::size_t>(n));
            }
            StubRequest request;
            const std::string head = buffer.substr(0, header_end);
            request.headers = head;
            const std::size_t sp1 = head.find(' ');
            const std::size_t sp2 = head.find(' ', sp1 + 1);
            request.method = head.substr(0, sp1);
            request.path = head.substr(sp1 + 1, sp2 - sp1 - 1);
            std::size_t length = 0;
            const std::string low = lower(head);
            if (const std::size_t at = low.find("content-length:"); at != std::string::npos)
                length = static_cast<std::size_t>(std::stoull(low.substr(at + 15)));
            while (buffer.size() < header_end + 4 + length) {
                if (!wait_readable(fd)) return close_fd(fd);
                const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
                if (n <= 0) return close_fd(fd);
                buffer.append(chunk, static_cast<std::size_t>(n));
            }
            request.body = buffer.substr(header_end + 4, length);
            buffer.erase(0, header_end + 4 + length);
            requests_.fetch_add(1);

            StubReply reply;
            {
                std::unique_lock<std::mutex> serial_lock(serial_mutex_, std::defer_lock);
                if (serial_) serial_lock.lock();
                reply = handler_(request);
                const auto until = std::chrono::steady_clock::now() + reply.delay;
                while (!stop_.load() && std::chrono::steady_clock::now() < until)
                    std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(until - std::chrono::steady_clock::now(),
                                                                                    std::chrono::milliseconds(20)));
            }
            if (stop_.load()) return close_fd(fd);
            if (reply.reset) {
                linger l{1, 0};  // RST on close
                ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
                return close_fd(fd);
            }
            std::string out = "HTTP/1.1 " + std::to_string(reply.status) + " Stub\r\nContent-Type: application/json\r\n";
            for (const auto& [name, value] : reply.headers) out += name + ": " + value + "\r\n";
            out += "Content-Length: " + std::to_string(reply.body.size()) + "\r\n\r\n" + reply.body;
            std::size_t sent = 0;
            while (sent < out.size()) {
                const ssize_t n = ::send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
                if (n <= 0) return close_fd(fd);
                sent += static_cast<std::size_t>(n);
            }
        }
    }

    static void close_fd(int fd) { ::close(fd); }

    Handler handler_;
    bool serial_;
    int listen_fd_ = -1;
    std::uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::atomic<std::uint64_t> requests_{0};
    std::mutex serial_mutex_;
    std::mutex connections_mutex_;
    std::list<std::thread> connections_;
    std::thread acceptor_;
};

/// The number of strings in the request's "input" array (the stub's own tiny reader: it counts the
/// top-level string elements of the array after "input":).
inline std::size_t stub_input_count(const std::string& body) {
    const std::size_t at = body.find("\"input\":[");
    if (at == std::string::npos) return 0;
    std::size_t count = 0;
    bool in_string = false;
    for (std::size_t i = at + 9; i < body.size(); ++i) {
        const char c = body[i];
        if (in_string) {
            if (c == '\\') ++i;
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
            ++count;
        } else if (c == ']') {
            break;
        }
    }
    return count;
}

/// The input strings themselves (JSON escapes \" \\ \n kept decoded; enough for the tests' ASCII).
inline std::vector<std::string> stub_inputs(const std::string& body) {
    std::vector<std::string> out;
    const std::size_t at = body.find("\"input\":[");
    if (at == std::string::npos) return out;
    bool in_string = false;
    std::string current;
    for (std::size_t i = at + 9; i < body.size(); ++i) {
        const char c = body[i];
        if (in_string) {
            if (c == '\\' && i + 1 < body.size()) {
                const char e = body[++i];
                current.push_back(e == 'n' ? '\n' : e == 't' ? '\t' : e);
            } else if (c == '"') {
                in_string = false;
                out.push_back(current);
                current.clear();
            } else {
                current.push_back(c);
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == ']') {
            break;
        }
    }
    return out;
}

/// An OpenAI-style embeddings body for `rows` (each a vector of floats).
inline std::string stub_embeddings_body(const std::vector<std::vector<float>>& rows) {
    std::string out = "{\"object\":\"list\",\"data\":[";
    for (std::size_t i = 0; i < rows.size(); ++i) {
        if (i) out += ',';
        out += "{\"object\":\"embedding\",\"index\":" + std::to_string(i) + ",\"embedding\":[";
        for (std::size_t j = 0; j < rows[i].size(); ++j) {
            if (j) out += ',';
            char number[32];
            std::snprintf(number, sizeof number, "%.9g", static_cast<double>(rows[i][j]));
            out += number;
        }
        out += "]}";
    }
    out += "],\"model\":\"stub\",\"usage\":{\"prompt_tokens\":1,\"total_tokens\":1}}";
    return out;
}

}  // namespace llmfast::testing
