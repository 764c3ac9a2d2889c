// examples/gateway/server.cpp — llmfast-gateway's HTTP server: one io_context on N threads, a
// coroutine per connection (Boost.Beast + Asio C++20 coroutines, a strand each), the OpenAI routes,
// the access log, SIGTERM/SIGINT drain, main(). One of the two Beast/Asio translation units.
#include "admission.hpp"
#include "config.hpp"
#include "metrics.hpp"
#include "playground.hpp"
#include "prompt.hpp"
#include "response_cache.hpp"
#include "simulated_backend.hpp"
#include "sink.hpp"
#include "upstream.hpp"

#include <llmfast/hashing_embedder.hpp>
#include <llmfast/estimating_token_counter.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>

#include <fmt/format.h>
#include <openssl/crypto.h>

#include <cctype>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>

namespace gateway {

using namespace net::experimental::awaitable_operators;

class AccessLog {
public:
    explicit AccessLog(const std::string& where) {
        if (where == "off") return;
        if (where == "-") {
            file_ = stderr;
            return;
        }
        file_ = std::fopen(where.c_str(), "a");
        owned_ = true;
        if (file_ == nullptr) throw ConfigError("--access-log: cannot open " + where);
    }
    ~AccessLog() {
        if (owned_) std::fclose(file_);
    }
    AccessLog(const AccessLog&) = delete;
    AccessLog& operator=(const AccessLog&) = delete;
    void write(const RequestRecord& r, std::string_view method, std::string_view path) {
        if (file_ == nullptr) return;
        const auto now = Clock::now();
        const auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
        std::string line = fmt::format("{{\"time\":{},\"request_id\":", std::time(nullptr));
        append_json_string(line, r.request_id);
        line += ",\"method\":";
        append_json_string(line, method);
        line += ",\"path\":";
        append_json_string(line, path);
        line += fmt::format(",\"status\":{},\"model\":", r.status);
        append_json_string(line, r.model);
        line += ",\"tenant\":";
        append_json_string(line, r.tenant);
        line += ",\"upstream\":";
        append_json_string(line, r.upstream);
        line += fmt::format(",\"attempts\":{},\"stream\":{},\"duration_ms\":{:.3f}", r.attempts, r.streamed, ms(now - r.start));
        if (r.first_content != Clock::time_point{}) line += fmt::format(",\"ttft_ms\":{:.3f}", ms(r.first_content - r.start));
        line += fmt::format(",\"prompt_tokens\":{},\"completion_tokens\":{},\"client_gone\":{}", r.prompt_tokens,
                            r.completion_tokens, r.client_gone);
        if (!r.error.empty()) {
            line += ",\"error\":";
            append_json_string(line, r.error);
        }
        line += "}\n";
        std::lock_guard lock(mutex_);
        std::fwrite(line.data(), 1, line.size(), file_);
        std::fflush(file_);
    }

private:
    std::FILE* file_ = nullptr;
    bool owned_ = false;
    std::mutex mutex_;
};

class Connection;

struct Server {
    explicit Server(Config c)
        : config(std::move(c)), upstream(config, metrics), embedder(llmfast::HashingEmbedderOptions{.dimension = config.embedding_dimension}),
          access_log(config.access_log), pipeline(config), admission(config.admission, config.tenants), cache(config) {
        if (config.batching.enabled) sim_batcher = std::make_unique<SimBatcher>(config);
        // Cache calls that may wait on the embedding server or Redis. Enough threads that concurrent
        // lookups reach the embedder together (it batches them into one request), bounded by its
        // deadline; a Redis call is bounded by --redis-timeout-ms.
        if (cache.remote()) cache_pool.emplace(16);
        metrics.extra = [this](std::string& out) {
            out += "# HELP llmfast_admission_running Requests holding a running slot.\n# TYPE llmfast_admission_running gauge\n";
            out += fmt::format("llmfast_admission_running {}\n", admission.running());
            out += "# HELP llmfast_admission_waiting Requests waiting in the admission queue.\n# TYPE llmfast_admission_waiting gauge\n";
            out += fmt::format("llmfast_admission_waiting {}\n", admission.waiting());
            if (sim_batcher) sim_batcher->render(out);
            cache.render(out);
        };
    }
    /// After the event loop stopped: the batcher drains (its callbacks post to the stopped loop).
    void close_backends() {
        if (sim_batcher) sim_batcher->close();
        if (cache_pool) cache_pool->join();  // the last stores finish (their flights end)
    }
    Config config;
    Metrics metrics;
    UpstreamClient upstream;
    llmfast::HashingEmbedder embedder;
    llmfast::EstimatingTokenCounter counter;
    AccessLog access_log;
    PromptPipeline pipeline;
    AdmissionController admission;
    ResponseCache cache;
    std::unique_ptr<SimBatcher> sim_batcher;
    /// With a remote embedder (--embeddings-url) or the shared tier (--redis): cache lookups, stores
    /// and purges run here, never on an event-loop thread (an embedding or a Redis call is a network
    /// round trip). After `cache`: destroyed first.
    std::optional<net::thread_pool> cache_pool;
    std::atomic<bool> draining{false};
    std::atomic<std::size_t> connections{0};
    std::mutex registry_mutex;
    std::set<std::weak_ptr<Connection>, std::owner_less<std::weak_ptr<Connection>>> registry;

    [[nodiscard]] bool authenticate(std::string_view authorization, std::string& tenant) const {
        if (config.api_keys.empty()) return true;
        constexpr std::string_view bearer = "Bearer ";
        if (!authorization.starts_with(bearer)) return false;
        const auto digest = sha256(authorization.substr(bearer.size()));
        bool found = false;
        for (const ApiKey& key : config.api_keys) {  // every key compared, each in constant time
            const bool match = CRYPTO_memcmp(digest.data(), key.sha256.data(), digest.size()) == 0;
            if (match && !found) tenant = key.tenant;
            found = found || match;
        }
        return found;
    }
    /// The admin key (Authorization: Bearer <key>): 0 ok; 401 missing or invalid; 403 no admin key
    /// configured, or a tenant's API key (authenticated, but not an admin).
    [[nodiscard]] unsigned authenticate_admin(std::string_view authorization) const {
        if (!config.admin_key_sha256) return 403;
        constexpr std::string_view bearer = "Bearer ";
        if (!authorization.starts_with(bearer)) return 401;
        const auto digest = sha256(authorization.substr(bearer.size()));
        if (CRYPTO_memcmp(digest.data(), config.admin_key_sha256->data(), digest.size()) == 0) return 0;
        std::string tenant;
        return authenticate(authorization, tenant) && !config.api_keys.empty() ? 403 : 401;
    }
};

/// Whether a Cache-Control header value carries `directive` (case-insensitive, comma-separated).
bool has_cache_directive(std::string_view value, std::string_view directive) {
    while (!value.empty()) {
        const std::size_t comma = value.find(',');
        std::string_view item = value.substr(0, comma);
        value = comma == std::string_view::npos ? std::string_view{} : value.substr(comma + 1);
        item = item.substr(0, item.find('='));
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
        if (beast::iequals(item, directive)) return true;
    }
    return false;
}

std::string make_request_id(std::string_view given) {
    if (!given.empty() && given.size() <= 128 &&
        std::all_of(given.begin(), given.end(), [](char c) { return c > 0x20 && c < 0x7f && c != '"' && c != '\\'; }))
        return std::string(given);
    thread_local std::mt19937_64 random{std::random_device{}()};
    return fmt::format("{:016x}{:016x}", random(), random());
}

class Connection final : public ClientSink, public std::enable_shared_from_this<Connection> {
public:
    Connection(tcp::socket socket, Server& server) : stream_(std::move(socket)), server_(server) {}

    /// Drain: a connection waiting for its next request is closed; one answering finishes first.
    void close_if_idle() {
        net::post(stream_.get_executor(), [self = shared_from_this()] {
            if (self->idle_) {
                boost::system::error_code ec;
                self->stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
                self->stream_.socket().close(ec);
            }
        });
    }

    /// Drain grace ran out: a stream still running ends with an OpenAI error event (not a silent
    /// cut), its backend is stopped, and the connection closes once that event is flushed.
    void abort_stream() {
        net::post(stream_.get_executor(), [self = shared_from_this()] {
            if (!self->started_ || self->ended_ || self->gone_.gone) return;
            self->server_.metrics.count_drain_cut();
            self->record_.error = "stream cut: the gateway is shutting down";
            const ApiError error{503, "the gateway is shutting down; the stream was cut", "server_error", "", "shutting_down"};
            self->queue_chunk(error_event(error));
            self->pending_ += "0\r\n\r\n";
            self->ended_ = true;
            self->keep_alive_ = false;
            self->start_writer();
            self->gone_.fire();  // stops the backend (timer / upstream socket); the event still goes out
        });
    }

    // Every coroutine of this file keeps the rule written above UpstreamClient::Impl::exchange
    // (upstream.cpp): objects with destructors at the coroutine's top level, named values built before
    // co_await / co_return, no conditional expression yielding a class temporary (g++ 12).
    net::awaitable<void> run() {
        const Limits& limits = server_.config.limits;
        boost::system::error_code ec;
        std::optional<http::request_parser<http::string_body>> parser_slot;  // one per request, emplaced below
        http::response<http::empty_body> cont{http::status::continue_, 11};
        std::optional<ApiError> error;
        stream_.socket().set_option(tcp::no_delay(true), ec);
        for (;;) {
            idle_ = true;
            if (server_.draining.load()) break;
            if (buffer_.size() == 0) {  // wait for the next request's first byte: the idle timeout
                stream_.expires_after(limits.idle_timeout);
                const std::size_t n = co_await stream_.async_read_some(buffer_.prepare(4096), net::redirect_error(net::use_awaitable, ec));
                buffer_.commit(n);
                if (ec) break;
            }
            idle_ = false;
            // The whole request within request_read_timeout (a client sending a byte a second is dropped).
            auto& parser = parser_slot.emplace();
            parser.header_limit(limits.max_header_bytes);
            parser.body_limit(limits.max_body_bytes);
            stream_.expires_after(limits.request_read_timeout);
            co_await http::async_read_header(stream_, buffer_, parser, net::redirect_error(net::use_awaitable, ec));
            if (!ec && !parser.is_done()) {
                if (beast::iequals(parser.get()[http::field::expect], "100-continue")) {
                    co_await http::async_write(stream_, cont, net::redirect_error(net::use_awaitable, ec));
                }
                if (!ec) co_await http::async_read(stream_, buffer_, parser, net::redirect_error(net::use_awaitable, ec));
            }
            begin_request(parser);
            if (ec) {
                // (g++ 12 miscompiles braced temporaries passed to a coroutine inside co_await in a
                // branch: the error is built in a named variable, then awaited once.)
                keep_alive_ = false;
                error.reset();
                if (ec == http::error::body_limit) {
                    server_.metrics.count_rejection("body_too_large");
                    error = ApiError{413, fmt::format("request body is larger than {} bytes", limits.max_body_bytes),
                                     "invalid_request_error", "", "request_too_large"};
                } else if (ec == http::error::header_limit) {
                    server_.metrics.count_rejection("header_too_large");
                    error = ApiError{431, fmt::format("request header is larger than {} bytes", limits.max_header_bytes),
                                     "invalid_request_error", "", "header_too_large"};
                } else if (ec != beast::error::timeout && ec != http::error::end_of_stream && ec != net::error::eof &&
                           ec != net::error::connection_reset && ec != net::error::operation_aborted &&
                           ec != net::error::bad_descriptor) {
                    server_.metrics.count_rejection("malformed_http");
                    error = ApiError{400, "malformed HTTP request: " + ec.message(), "invalid_request_error", "", "bad_request"};
                } else if (ec == beast::error::timeout) {
                    server_.metrics.count_rejection("client_timeout");
                }
                if (error) {
                    co_await respond_error(std::move(*error));
                    finish_request();
                }
                break;
            }
            request_ = parser.release();
            keep_alive_ = request_.keep_alive() && !server_.draining.load();
            // The request runs while a watcher reads the socket: a client that goes away is seen at
            // once (EOF / reset), not at the next write; bytes it pipelines land in the buffer.
            if (peer_closed_) {
                // The previous request's watcher already read the client's end: this request's client is
                // gone from the start (a second read would not see the end again: it waits).
                keep_alive_ = false;
                gone_.fire();
                co_await handle();
            } else {
                co_await (handle() || watch_client());
            }
            co_await wait_flushed();
            finish_request();
            if (server_.draining.load()) break;
            // A request the client sent just before it closed (already in buffer_, read by the watcher)
            // is still taken and counted (as a disconnect: it starts gone, above), not dropped without
            // a trace in /metrics or the access log.
            if (!keep_alive_ && !(peer_closed_ && buffer_.size() > 0)) break;
        }
        co_await wait_flushed();
        stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
        stream_.socket().close(ec);
    }

    // ---- ClientSink ----
    net::awaitable<void> respond(unsigned status, std::string_view content_type, std::string body) override {
        if (started_ || responded_) co_return;
        responded_ = true;
        record_.status = status;
        if (capture_) capture_->observe_response(status, body);
        store_before_end();  // before the answer goes out: a client that has it and asks again finds it
        http::response<http::string_body> res{static_cast<http::status>(status), 11};
        res.set(http::field::server, "llmfast-gateway");
        res.set(http::field::content_type, content_type);
        res.set("x-request-id", record_.request_id);
        if (!allow_.empty()) res.set(http::field::allow, allow_);
        for (const auto& [name, value] : extra_headers_) res.set(name, value);
        res.keep_alive(keep_alive_);
        res.body() = std::move(body);
        res.prepare_payload();
        stream_.expires_after(server_.config.limits.write_timeout);
        boost::system::error_code ec;
        co_await http::async_write(stream_, res, net::redirect_error(net::use_awaitable, ec));
        if (ec) client_lost();
    }
    net::awaitable<bool> start_stream(std::string_view content_type) override {
        if (started_ || responded_ || gone_.gone) co_return false;
        started_ = true;
        record_.status = 200;
        record_.streamed = true;
        http::response<http::empty_body> res{http::status::ok, 11};
        res.set(http::field::server, "llmfast-gateway");
        res.set(http::field::content_type, content_type);
        res.set(http::field::cache_control, "no-cache");
        res.set("x-request-id", record_.request_id);
        for (const auto& [name, value] : extra_headers_) res.set(name, value);
        res.keep_alive(keep_alive_);
        res.chunked(true);
        http::response_serializer<http::empty_body> serializer{res};
        stream_.expires_after(server_.config.limits.write_timeout);
        boost::system::error_code ec;
        co_await http::async_write_header(stream_, serializer, net::redirect_error(net::use_awaitable, ec));
        if (ec) client_lost();
        co_return !ec;
    }
    net::awaitable<bool> write(std::string_view data) override {
        if (capture_ && started_ && !gone_.gone && !ended_) {
            capture_->observe_stream(data);
            if (capture_->done()) store_before_end();  // before [DONE] goes out (see respond)
        }
        co_return write_now(data);
    }
    net::awaitable<void> end_stream() override {
        if (!started_ || gone_.gone || ended_) co_return;
        ended_ = true;
        pending_ += "0\r\n\r\n";
        start_writer();
        co_await wait_flushed();
    }
    void note_content() override {
        const auto now = Clock::now();
        if (record_.first_content == Clock::time_point{}) {
            record_.first_content = now;
            if (model_metrics_ != nullptr) model_metrics_->ttft.observe(std::chrono::duration<double>(now - record_.start).count());
        } else if (model_metrics_ != nullptr) {
            model_metrics_->inter_token.observe(std::chrono::duration<double>(now - record_.last_content).count());
        }
        record_.last_content = now;
    }
    ClientGone& gone() override { return gone_; }
    RequestRecord& record() override { return record_; }
    [[nodiscard]] bool started() const override { return started_; }

private:
    void client_lost() {
        keep_alive_ = false;
        if (!gone_.gone) gone_.fire();
    }

    // ---- the stream's bounded output buffer ----
    // A chunk is queued and written by one writer coroutine, so a backend never waits for a client;
    // a client whose unsent bytes would exceed Limits::max_client_buffer_bytes is dropped and counted
    // (memory per slow reader is bounded by that, plus one write in flight).
    bool write_now(std::string_view data) {
        if (!started_ || gone_.gone || ended_) return false;
        if (data.empty()) return true;
        if (pending_.size() + inflight_.size() + data.size() + 16 > server_.config.limits.max_client_buffer_bytes) {
            server_.metrics.count_slow_client();
            record_.error = fmt::format("slow client dropped: more than {} bytes unsent", server_.config.limits.max_client_buffer_bytes);
            client_lost();
            boost::system::error_code ec;
            stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
            stream_.socket().close(ec);
            return false;
        }
        queue_chunk(data);
        start_writer();
        return true;
    }
    void queue_chunk(std::string_view data) {
        fmt::format_to(std::back_inserter(pending_), "{:x}\r\n", data.size());
        pending_.append(data);
        pending_ += "\r\n";
    }
    void start_writer() {
        if (writer_running_ || pending_.empty()) return;
        // A chunk almost always fits the socket's send buffer: write it here with one non-blocking
        // send, and start the writer coroutine (and its write timeout) only for what the kernel did
        // not take. Spawning a coroutine per chunk was the largest part of the gateway's CPU per
        // stream (docs/gateway.md#performance). No async write is in flight here (writer_running_).
        boost::system::error_code ec;
        auto& socket = stream_.socket();
        if (!socket.non_blocking()) socket.non_blocking(true, ec);
        const std::size_t sent = ec ? 0 : socket.write_some(net::buffer(pending_), ec);
        if (ec == net::error::would_block || ec == net::error::try_again) ec = {};
        if (ec) {
            pending_.clear();
            client_lost();
            return;
        }
        pending_.erase(0, sent);
        if (pending_.empty()) return;
        writer_running_ = true;
        net::co_spawn(stream_.get_executor(), writer(shared_from_this()), net::detached);
    }
    static net::awaitable<void> writer(std::shared_ptr<Connection> self) {
        while (!self->pending_.empty()) {
            self->inflight_.swap(self->pending_);
            self->pending_.clear();
            self->stream_.expires_after(self->server_.config.limits.write_timeout);
            boost::system::error_code ec;
            co_await net::async_write(self->stream_, net::buffer(self->inflight_), net::redirect_error(net::use_awaitable, ec));
            self->inflight_.clear();
            if (ec) {
                self->pending_.clear();
                self->client_lost();
                break;
            }
        }
        self->writer_running_ = false;
        self->flushed_.cancel();
    }
    net::awaitable<void> wait_flushed() {
        while (writer_running_) {
            flushed_.expires_at(Clock::time_point::max());
            boost::system::error_code ec;
            co_await flushed_.async_wait(net::redirect_error(net::use_awaitable, ec));
        }
    }

    net::awaitable<void> watch_client() {
        for (;;) {
            boost::system::error_code ec;
            const std::size_t n = co_await stream_.socket().async_read_some(buffer_.prepare(4096), net::redirect_error(net::use_awaitable, ec));
            buffer_.commit(n);
            if (ec) {
                if (ec != net::error::operation_aborted) {
                    keep_alive_ = false;
                    peer_closed_ = true;
                    gone_.fire();
                }
                co_return;
            }
            if (buffer_.size() > 65536) {  // a client pipelining this much is not waiting for us
                keep_alive_ = false;
                co_return;
            }
        }
    }

    // (a plain function: the request of a parser whose header is incomplete is an empty one)
    void begin_request(const http::request_parser<http::string_body>& parser) {
        static const http::request<http::string_body> none;
        const http::request<http::string_body>& req = parser.is_header_done() ? parser.get() : none;
        record_ = RequestRecord{};
        record_.start = Clock::now();
        record_.request_id = make_request_id(req["x-request-id"]);
        gone_ = ClientGone{};
        started_ = responded_ = ended_ = false;
        allow_.clear();
        extra_headers_.clear();
        model_metrics_ = nullptr;
        method_ = std::string(req.method_string());
        path_ = std::string(req.target());
    }

    void finish_request() {
        settle_cache();
        if (gone_.gone && !(ended_ || (responded_ && !started_))) {
            record_.client_gone = true;
            server_.metrics.count_client_disconnect();
            // Gone before any response byte: nginx's 499 ("client closed request"), not a status 0.
            if (record_.status == 0) record_.status = 499;
        }
        server_.metrics.count_request(route_label(), record_.status, record_.model);
        if (model_metrics_ != nullptr) {
            model_metrics_->e2e.observe(std::chrono::duration<double>(Clock::now() - record_.start).count());
            model_metrics_->prompt_tokens.fetch_add(record_.prompt_tokens, std::memory_order_relaxed);
            model_metrics_->generation_tokens.fetch_add(record_.completion_tokens, std::memory_order_relaxed);
        }
        server_.access_log.write(record_, method_, path_);
    }

    std::string route_label() const {
        const std::string_view path = std::string_view(path_).substr(0, path_.find('?'));
        for (const std::string_view known : {"/v1/chat/completions", "/v1/embeddings", "/v1/models", "/health", "/metrics", "/admin/cache/purge", "/"})
            if (path == known) return std::string(known);
        return "other";
    }

    net::awaitable<void> respond_error(ApiError error) {
        if (record_.error.empty()) record_.error = error.message;
        co_await respond(static_cast<unsigned>(error.status), "application/json", error_json(error));
    }

    net::awaitable<void> handle() {
        std::string failure;
        ApiError error;
        try {
            co_await route();
        } catch (const std::exception& e) {
            failure = e.what();
            if (failure.empty()) failure = "unknown";
        }
        if (!failure.empty()) {
            error = ApiError{500, "internal error: " + failure, "server_error", "", "internal_error"};
            if (!started_ && !responded_) co_await respond_error(std::move(error));
            keep_alive_ = false;
        }
        if (!started_ && !responded_ && !gone_.gone) {
            error = ApiError{500, "internal error: no response", "server_error", "", "internal_error"};
            co_await respond_error(std::move(error));
        }
    }

    net::awaitable<void> route() {
        const std::string_view target = request_.target();
        const std::string_view path = target.substr(0, target.find('?'));
        const http::verb method = request_.method();
        record_.route = route_label();
        ApiError error;
        std::string reply;
        const auto only = [&](http::verb allowed, std::string_view name) {
            if (method == allowed) return true;
            allow_ = std::string(name);
            return false;
        };
        const auto method_not_allowed = [&]() {  // a plain lambda: it fills the frame's `error`
            error = ApiError{405, fmt::format("{} is not allowed on {} (allowed: {})", request_.method_string(), path, allow_),
                             "invalid_request_error", "", "method_not_allowed"};
            return respond_error(std::move(error));
        };
        if (path == "/") {  // the playground: no key needed for the page, its API calls carry one
            if (!only(http::verb::get, "GET")) co_return co_await method_not_allowed();
            co_return co_await serve_playground();
        }
        if (path == "/health") {
            if (!only(http::verb::get, "GET")) co_return co_await method_not_allowed();
            const bool draining = server_.draining;
            reply = draining ? R"({"status":"draining"})" : R"({"status":"ok"})";
            co_return co_await respond(draining ? 503 : 200, "application/json", std::move(reply));
        }
        if (path == "/metrics") {
            if (!only(http::verb::get, "GET")) co_return co_await method_not_allowed();
            reply = server_.metrics.render();
            co_return co_await respond(200, "text/plain; version=0.0.4; charset=utf-8", std::move(reply));
        }
        const bool known = path == "/v1/models" || path == "/v1/chat/completions" || path == "/v1/embeddings";
        if (path == "/admin/cache/purge") {
            if (!only(http::verb::post, "POST")) co_return co_await method_not_allowed();
            co_return co_await purge_cache();
        }
        if (!known) {
            error = ApiError::not_found(fmt::format("no route for {}", path), "unknown_url");
            co_return co_await respond_error(std::move(error));
        }
        if (!server_.authenticate(request_[http::field::authorization], record_.tenant)) {
            server_.metrics.count_rejection("unauthorized");
            error = ApiError::unauthorized(request_[http::field::authorization].empty() ? "missing API key (Authorization: Bearer <key>)"
                                                                                        : "invalid API key");
            co_return co_await respond_error(std::move(error));
        }
        if (path == "/v1/models") {
            if (!only(http::verb::get, "GET")) co_return co_await method_not_allowed();
            reply = models_json();
            co_return co_await respond(200, "application/json", std::move(reply));
        }
        if (!only(http::verb::post, "POST")) co_return co_await method_not_allowed();
        if (path == "/v1/chat/completions") co_return co_await chat();
        co_return co_await embeddings();
    }

    // GET /: the playground page. no-cache + ETag: a browser revalidates each load (304, no body) and
    // so never runs a page older than the binary that serves it.
    net::awaitable<void> serve_playground() {
        const PlaygroundPage& page = playground_page();
        extra_headers_.emplace_back("Content-Security-Policy", page.csp);
        extra_headers_.emplace_back("ETag", page.etag);
        extra_headers_.emplace_back("Cache-Control", "no-cache");
        extra_headers_.emplace_back("X-Content-Type-Options", "nosniff");
        extra_headers_.emplace_back("Referrer-Policy", "no-referrer");
        const bool fresh = etag_matches(request_[http::field::if_none_match], page.etag);
        const unsigned status = fresh ? 304U : 200U;
        std::string body = fresh ? std::string() : std::string(page.body);
        co_await respond(status, "text/html; charset=utf-8", std::move(body));
    }

    std::string models_json() const {
        std::string out = R"({"object":"list","data":[)";
        bool first = true;
        const auto add = [&](const std::string& name) {
            if (!first) out.push_back(',');
            first = false;
            out += "{\"id\":";
            append_json_string(out, name);
            out += R"(,"object":"model","created":0,"owned_by":"llmfast"})";
        };
        for (const auto& name : server_.config.sim_models) add(name);
        for (const auto& model : server_.config.models) add(model.name);
        add(server_.config.embedding_model);
        out += "]}";
        return out;
    }

    // The answer to a request admission refused (a plain function: see run()); false when the client
    // left the queue and there is nobody to answer.
    bool admission_error(const AdmissionController::Outcome& outcome, ApiError& error) {
        switch (outcome.verdict) {
            case AdmissionController::Verdict::QueueFull:
            case AdmissionController::Verdict::QueueTokensFull: {
                const bool tokens = outcome.verdict == AdmissionController::Verdict::QueueTokensFull;
                server_.metrics.count_rejection(tokens ? "queue_tokens_full" : "queue_full");
                error = ApiError{429, tokens ? "the gateway's queue is full (prompt tokens); retry later" : "the gateway's queue is full; retry later",
                                 "server_overloaded", "", "queue_full"};
                break;
            }
            case AdmissionController::Verdict::TenantRequests:
            case AdmissionController::Verdict::TenantTokens: {
                const bool tokens = outcome.verdict == AdmissionController::Verdict::TenantTokens;
                server_.metrics.count_rejection(tokens ? "tenant_tokens" : "tenant_requests");
                error = ApiError{429,
                                 fmt::format("rate limit reached for tenant '{}': {} per minute", record_.tenant,
                                             tokens ? "prompt tokens" : "requests"),
                                 tokens ? "tokens" : "requests", "", "rate_limit_exceeded"};
                break;
            }
            case AdmissionController::Verdict::DeadlineInQueue:
                server_.metrics.count_rejection("deadline_in_queue");
                error = ApiError{504, "the request's deadline passed while it waited in the queue", "timeout_error", "", "deadline_exceeded"};
                break;
            default:
                server_.metrics.count_rejection("client_gone_in_queue");
                return false;
        }
        if (error.status == 429) extra_headers_.emplace_back("Retry-After", std::to_string(std::max<long long>(1, outcome.retry_after.count())));
        return true;
    }

    net::awaitable<void> chat() {
        ApiError error;  // the one answer of a rejected request (frame-level: see run())
        const auto parsed = parse_chat_request(request_.body(), server_.config.limits);
        if (const auto* invalid = std::get_if<ApiError>(&parsed)) {
            server_.metrics.count_rejection("invalid_request");
            error = *invalid;
            co_return co_await respond_error(std::move(error));
        }
        const ChatRequest& request = std::get<ChatRequest>(parsed);
        record_.model = request.model;
        const bool simulated = std::find(server_.config.sim_models.begin(), server_.config.sim_models.end(), request.model) !=
                               server_.config.sim_models.end();
        const std::vector<UpstreamConfig>* group = simulated ? nullptr : server_.upstream.group_for(request.model);
        if (!simulated && group == nullptr) {
            error = ApiError::not_found(fmt::format("model '{}' does not exist", request.model), "model_not_found");
            co_return co_await respond_error(std::move(error));
        }
        model_metrics_ = &server_.metrics.model(request.model);

        // x-llmfast-priority (higher first) and x-llmfast-deadline-ms (from arrival, within the default deadline).
        int priority = 0;
        if (const std::string_view text = request_["x-llmfast-priority"]; !text.empty()) {
            const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), priority);
            if (ec != std::errc{} || end != text.data() + text.size() || priority < 0 || priority > server_.config.admission.max_priority) {
                server_.metrics.count_rejection("invalid_request");
                error = ApiError::invalid("x-llmfast-priority",
                                                   fmt::format("header x-llmfast-priority must be an integer in [0, {}]", server_.config.admission.max_priority),
                                                   "invalid_header");
                co_return co_await respond_error(std::move(error));
            }
        }
        auto deadline = record_.start + server_.config.limits.request_deadline;
        if (const std::string_view text = request_["x-llmfast-deadline-ms"]; !text.empty()) {
            std::uint64_t ms = 0;
            const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
            if (ec != std::errc{} || end != text.data() + text.size() || ms == 0) {
                server_.metrics.count_rejection("invalid_request");
                error = ApiError::invalid("x-llmfast-deadline-ms", "header x-llmfast-deadline-ms must be an integer >= 1 (milliseconds)",
                                                   "invalid_header");
                co_return co_await respond_error(std::move(error));
            }
            if (ms < static_cast<std::uint64_t>(server_.config.limits.request_deadline.count()))
                deadline = record_.start + std::chrono::milliseconds(ms);
        }
        if (simulated && !request.unsupported_by_sim.empty()) {
            error = ApiError::invalid(request.unsupported_by_sim,
                                               fmt::format("the simulated backend does not support '{}'", request.unsupported_by_sim),
                                               "unsupported_parameter");
            co_return co_await respond_error(std::move(error));
        }

        // The response cache (response_cache.hpp): a hit is answered here, before fitting, admission
        // and the backend; a follower waits for the leader on this strand without blocking a thread.
        // With a remote embedder each step runs on the cache pool (see Server::cache_pool).
        std::function<CacheStep()> start_step = [this, &request] { return cache_start(request); };
        std::function<CacheStep()> again_step = [this, &request] { return cache_again(request); };
        CacheStep step = co_await cache_step(start_step);
        for (int round = 0; step == CacheStep::Follow; ++round) {
            if (!co_await wait_ready(*follower_, gone_)) co_return;  // the client went away while it waited
            if (follower_result()) {
                step = CacheStep::Hit;
            } else if (round >= 2) {  // leaders kept abandoning: answer it ourselves, uncached
                step = CacheStep::Bypass;
            } else {
                step = co_await cache_step(again_step);  // the leader abandoned: look up / lead / follow again
            }
        }
        if (step == CacheStep::WaitReplica) {  // another replica computes this prompt (--redis)
            step = co_await wait_replica(request, deadline);
            if (gone_.gone) co_return;
        }
        if (step == CacheStep::Hit) co_return co_await replay_cached(request);
        extra_headers_.emplace_back("x-llmfast-cache", "miss");
        model_metrics_->cache_misses.fetch_add(1, std::memory_order_relaxed);

        // Fit the history into the context window, compress (the model's rules), count the prompt.
        auto prepared_or = server_.pipeline.prepare(request, simulated ? std::string_view{} : std::string_view(request_.body()));
        if (auto* too_long = std::get_if<ApiError>(&prepared_or)) {
            server_.metrics.count_rejection("context_length");
            error = std::move(*too_long);
            co_return co_await respond_error(std::move(error));
        }
        PreparedPrompt& prepared = std::get<PreparedPrompt>(prepared_or);
        server_.metrics.count_prompt_change(prepared.dropped, prepared.shortened, prepared.compressed);
        const std::uint64_t prompt_tokens = prepared.prompt_tokens;
        record_.prompt_tokens = prompt_tokens;
        ChatRequest fitted = request;
        fitted.messages = std::move(prepared.messages);

        // Admission: a running slot, or a wait in the queue that never blocks this thread.
        model_metrics_->waiting.fetch_add(1);
        AdmissionController::Outcome outcome =
            co_await server_.admission.admit(record_.tenant, prompt_tokens, priority, deadline, gone_);
        model_metrics_->waiting.fetch_sub(1);
        if (outcome.verdict != AdmissionController::Verdict::Admitted) {
            if (!admission_error(outcome, error)) co_return;  // the client left the queue: nobody to answer
            co_return co_await respond_error(std::move(error));
        }
        model_metrics_->queue.observe(std::chrono::duration<double>(Clock::now() - record_.start).count());
        model_metrics_->running.fetch_add(1);
        struct Running {
            ModelMetrics& m;
            ~Running() { m.running.fetch_sub(1); }
        } running{*model_metrics_};
        if (simulated) {
            co_await simulate_chat(*this, server_.config, fitted, prompt_tokens, server_.sim_batcher.get());
            store_cached(request);
            co_return;
        }
        const std::string& body = prepared.body.empty() ? request_.body() : prepared.body;
        const std::string model_name = request.model;
        // (a named std::function, not a temporary converted inside the co_await: see the g++ 12 note above)
        std::function<std::size_t(std::string_view)> count_tokens = [this, model_name](std::string_view text) {
            return server_.pipeline.count(model_name, text);
        };
        co_await server_.upstream.chat(*this, *group, fitted, body, deadline, std::move(count_tokens));
        store_cached(request);
    }

    // ---- the response cache (response_cache.hpp); plain functions but replay_cached / purge_cache ----
    enum class CacheStep { Bypass, Hit, Lead, Follow, WaitReplica };

    /// Runs `step` here (in-process embedder: bounded CPU work) or, with a remote embedder, on the
    /// cache pool, resuming this coroutine on its own executor when it is done: the event loop never
    /// waits for the embedding server. The coroutine is suspended meanwhile, so `step` may use the
    /// connection's members.
    net::awaitable<CacheStep> cache_step(std::function<CacheStep()>& step) {
        if (!server_.cache_pool) co_return step();
        net::thread_pool::executor_type pool = server_.cache_pool->get_executor();
        auto task = [&step]() -> net::awaitable<CacheStep> { co_return step(); };
        const CacheStep result = co_await net::co_spawn(pool, task, net::use_awaitable);
        co_return result;
    }

    /// Decides the cache's part in this request: not cacheable / no-cache (Bypass, maybe storing
    /// the answer afterwards), a hit to replay, this request leads the flight, or it follows one.
    CacheStep cache_start(const ChatRequest& request) {
        cache_insert_ = false;
        cache_request_ = &request;
        if (!server_.cache.applies(request)) return CacheStep::Bypass;
        const std::string_view cache_control = request_[http::field::cache_control];
        const bool no_cache = has_cache_directive(cache_control, "no-cache");
        const bool no_store = has_cache_directive(cache_control, "no-store");
        cache_scope_ = ResponseCache::scope_of(record_.tenant, request);
        if (no_cache) {  // no lookup; the answer is stored unless no-store (no flight: nobody waits on it)
            cache_insert_ = !no_store;
            if (cache_insert_) capture_.emplace();
            return CacheStep::Bypass;
        }
        if (no_store) {  // a plain lookup: a miss leads no flight (nothing would be stored for followers)
            llmfast::LookupResult found = server_.cache.cache().lookup(request.cache_prompt, cache_scope_);
            return found.hit() && take_hit(found) ? CacheStep::Hit : CacheStep::Bypass;
        }
        return cache_again(request);
    }
    CacheStep cache_again(const ChatRequest& request) {
        ResponseCache::Cache::Flight flight = server_.cache.cache().begin(request.cache_prompt, cache_scope_);
        if (auto* found = std::get_if<llmfast::LookupResult>(&flight)) return take_hit(*found) ? CacheStep::Hit : CacheStep::Bypass;
        if (auto* leader = std::get_if<ResponseCache::Cache::Leader>(&flight)) {
            leader_.emplace(std::move(*leader));
            capture_.emplace();
            // With the shared tier: is another replica computing this prompt? (A Redis call: this
            // step runs on the cache pool then. Without the tier: Unavailable at once, no I/O.)
            replica_lock_ = server_.cache.lock_across_replicas(cache_scope_, request.cache_prompt);
            return replica_lock_.state == llmfast::SharedLock::State::Held ? CacheStep::WaitReplica : CacheStep::Lead;
        }
        follower_.emplace(std::move(std::get<ResponseCache::Cache::Follower>(flight)));
        return CacheStep::Follow;
    }
    /// Another replica holds the lock for this prompt: polls the cache (the other replica's entry
    /// arrives through the change feed or a GET) until it is there — Hit, replayed as `coalesced`,
    /// and this replica's flight is abandoned so that its local followers look up again and find it —
    /// or until `replica_wait()` or the request's deadline passed or the client went away (Lead:
    /// compute it here). A timer on this strand between polls (2 ms doubling to 50 ms); each lookup
    /// on the cache pool.
    net::awaitable<CacheStep> wait_replica(const ChatRequest& request, Clock::time_point deadline) {
        net::steady_timer timer(co_await net::this_coro::executor);
        std::function<CacheStep()> peek_step = [this, &request] { return replica_peek(request); };
        const Clock::time_point until = std::min(deadline, Clock::now() + server_.cache.replica_wait());
        std::chrono::milliseconds poll{2};
        boost::system::error_code ec;
        while (!gone_.gone && Clock::now() + poll < until) {
            timer.expires_after(poll);
            co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
            if (gone_.gone) break;
            const CacheStep peeked = co_await cache_step(peek_step);
            if (peeked == CacheStep::Hit) co_return CacheStep::Hit;
            poll = std::min(poll * 2, std::chrono::milliseconds(50));
        }
        co_return CacheStep::Lead;
    }
    CacheStep replica_peek(const ChatRequest& request) {
        const llmfast::LookupResult found = server_.cache.cache().lookup(request.cache_prompt, cache_scope_);
        if (!found.hit() || !take_hit(found, true)) return CacheStep::Lead;
        if (leader_ && leader_->active()) leader_->abandon();
        leader_.reset();
        capture_.reset();
        return CacheStep::Hit;
    }
    /// A cached (or coalesced) answer to replay; false if it does not decode (then: no cache).
    /// `other_replica`: the answer another replica computed while this request waited (coalesced).
    bool take_hit(const llmfast::LookupResult& found, bool other_replica = false) {
        if (!CachedAnswer::decode(found.response(), cached_)) return false;
        std::string_view kind = "exact";
        std::atomic<std::uint64_t>* counter = &model_metrics_->cache_exact;
        if (other_replica) {
            kind = "coalesced";
            counter = &model_metrics_->cache_coalesced;
        } else if (found.match == llmfast::MatchKind::Semantic) {
            kind = "semantic";
            counter = &model_metrics_->cache_semantic;
        } else if (found.match == llmfast::MatchKind::Coalesced) {
            kind = "coalesced";
            counter = &model_metrics_->cache_coalesced;
        }
        counter->fetch_add(1, std::memory_order_relaxed);
        extra_headers_.emplace_back("x-llmfast-cache", std::string(kind));
        return true;
    }
    /// After the follower's wait: true with a coalesced answer; false when the leader abandoned.
    bool follower_result() {
        std::optional<llmfast::LookupResult> result;
        try {
            result = follower_->try_result();
        } catch (const std::exception&) {  // the leader failed (the gateway never calls fail(); defensive)
            result.reset();
        }
        follower_.reset();
        return result && result->hit() && take_hit(*result);
    }
    /// After the backend: a stream that completed normally (finish seen, no error, client still
    /// there) is stored (the leader's complete, or an insert after no-cache); anything else is not.
    void store_cached(const ChatRequest& request) {
        if (capture_ && capture_->complete() && !gone_.gone && record_.status == 200 && record_.error.empty() &&
            (record_.streamed ? ended_ : responded_))
            store_answer(request);
        settle_cache();
    }
    /// Called just before the bytes that end an answer are written (a whole response, or the stream's
    /// `[DONE]`): stores it now if it is complete, so the entry exists before the client can have read
    /// the end and asked again (storing after the last write raced with that next request).
    void store_before_end() {
        if (cache_request_ == nullptr || cache_stored_ || !capture_ || !capture_->complete() || gone_.gone ||
            record_.status != 200 || !record_.error.empty())
            return;
        store_answer(*cache_request_);
    }
    void store_answer(const ChatRequest& request) {
        if (cache_stored_) return;
        cache_stored_ = true;
        {
            CachedAnswer& answer = capture_->answer();
            answer.prompt_tokens = record_.prompt_tokens;
            answer.completion_tokens = record_.completion_tokens;
            std::string value = answer.encode();
            if (server_.cache_pool) {
                // Storing embeds the prompt (a network round trip): on the cache pool. A request that
                // arrives meanwhile joins the still-open flight and gets the answer when it is stored.
                std::shared_ptr<ResponseCache::Cache::Leader> leader;
                if (leader_ && leader_->active()) leader = std::make_shared<ResponseCache::Cache::Leader>(std::move(*leader_));
                if (!leader && !cache_insert_) return;
                net::post(*server_.cache_pool, [server = &server_, leader, value = std::move(value), prompt = request.cache_prompt,
                                                scope = cache_scope_, tenant = record_.tenant, model = request.model,
                                                metrics = model_metrics_]() mutable {
                    bool stored = false;
                    try {
                        if (leader) {
                            leader->complete(std::move(value));
                            stored = true;
                        } else {
                            stored = server->cache.cache().insert(prompt, scope, std::move(value));
                        }
                    } catch (const std::exception&) {
                        stored = false;
                    }
                    if (stored) {
                        server->cache.note_scope(tenant, model, scope);
                        if (metrics != nullptr) metrics->cache_stores.fetch_add(1, std::memory_order_relaxed);
                    }
                });
                return;
            }
            bool stored = false;
            try {
                if (leader_ && leader_->active()) {
                    leader_->complete(std::move(value));
                    stored = true;
                } else if (cache_insert_) {
                    stored = server_.cache.cache().insert(request.cache_prompt, cache_scope_, std::move(value));
                }
            } catch (const std::exception&) {
                stored = false;
            }
            if (stored) {
                server_.cache.note_scope(record_.tenant, request.model, cache_scope_);
                model_metrics_->cache_stores.fetch_add(1, std::memory_order_relaxed);
            }
        }
    }
    /// The end of a request: a flight still led is abandoned (followers compute themselves).
    void settle_cache() {
        if (replica_lock_.acquired()) {  // the other replicas stop waiting for this one (a Redis call: on the pool)
            if (server_.cache_pool)
                net::post(*server_.cache_pool, [server = &server_, lock = std::move(replica_lock_)] { server->cache.unlock_across_replicas(lock); });
        }
        replica_lock_ = {};
        if (leader_ && leader_->active()) leader_->abandon();
        leader_.reset();
        follower_.reset();
        capture_.reset();
        cache_insert_ = false;
        cache_stored_ = false;
        cache_request_ = nullptr;
    }

    /// A hit, replayed at once: a stream with the original chunk boundaries, or a chat.completion.
    net::awaitable<void> replay_cached(const ChatRequest& request) {
        const std::string id = new_completion_id();
        const auto created = static_cast<std::int64_t>(std::time(nullptr));
        std::string body;
        std::vector<std::string> events;
        record_.prompt_tokens = cached_.prompt_tokens;
        record_.completion_tokens = cached_.completion_tokens;
        if (!request.stream) {
            body = cached_.completion_json(id, request.model, created);
            record_.first_content = record_.last_content = Clock::now();  // as the simulated backend's stream=false
            co_await respond(200, "application/json", std::move(body));
            co_return;
        }
        events = cached_.sse_events(id, request.model, created, request.include_usage);
        const bool started = co_await start_stream("text/event-stream");
        if (!started) co_return;
        bool first = true;
        for (const std::string& event : events) {
            if (!write_now(event)) co_return;
            if (first) note_content();
            first = false;
        }
        co_await end_stream();
    }

    /// POST /admin/cache/purge with {} (everything), {"model": M}, {"tenant": T} or both.
    net::awaitable<void> purge_cache() {
        ApiError error;
        std::string reply, model, tenant;
        const unsigned verdict = server_.authenticate_admin(request_[http::field::authorization]);
        if (verdict != 0) {
            server_.metrics.count_rejection("unauthorized");
            // (if/else, not a conditional expression yielding a class temporary: the g++ 12 rule)
            if (verdict == 401) {
                error = ApiError::unauthorized("missing or invalid admin key (Authorization: Bearer <admin key>)");
            } else {
                error = ApiError{403, "this key may not use admin endpoints (admin key: --admin-key-file or $LLMFAST_ADMIN_KEY)",
                                 "permission_error", "", "forbidden"};
            }
            co_return co_await respond_error(std::move(error));
        }
        if (!parse_purge(request_.body(), model, tenant, error)) co_return co_await respond_error(std::move(error));
        std::size_t removed = 0;
        if (server_.cache_pool) {  // with the shared tier a purge scans Redis: never on the event loop
            net::thread_pool::executor_type pool = server_.cache_pool->get_executor();
            auto task = [this, &model, &tenant]() -> net::awaitable<std::size_t> { co_return server_.cache.purge(model, tenant); };
            removed = co_await net::co_spawn(pool, task, net::use_awaitable);
        } else {
            removed = server_.cache.purge(model, tenant);
        }
        reply = fmt::format(R"({{"purged":{}}})", removed);
        co_await respond(200, "application/json", std::move(reply));
    }
    static bool parse_purge(std::string_view body, std::string& model, std::string& tenant, ApiError& error) {
        std::size_t i = 0;
        while (i < body.size() && std::isspace(static_cast<unsigned char>(body[i]))) ++i;
        if (i == body.size()) return true;  // no body: everything
        auto& parser = thread_parser(std::max<std::size_t>(body.size() + 64, 1 << 16), 64);
        simdjson::dom::object obj;
        if (parser.parse(body.data(), body.size()).get(obj) != simdjson::SUCCESS) {
            error = ApiError::invalid("", "the body must be a JSON object: {}, {\"model\": ...}, {\"tenant\": ...}", "invalid_json");
            return false;
        }
        for (auto [key, value] : obj) {
            std::string_view text;
            if ((key != "model" && key != "tenant") || value.get(text) != simdjson::SUCCESS || text.empty()) {
                error = ApiError::invalid(std::string(key), "only \"model\" and \"tenant\" (non-empty strings) may be given", "invalid_value");
                return false;
            }
            (key == "model" ? model : tenant) = std::string(text);
        }
        return true;
    }

    net::awaitable<void> embeddings() {
        ApiError error;
        const auto parsed = parse_embeddings_request(request_.body(), server_.config.limits);
        if (const auto* invalid = std::get_if<ApiError>(&parsed)) {
            server_.metrics.count_rejection("invalid_request");
            error = *invalid;
            co_return co_await respond_error(std::move(error));
        }
        const EmbeddingsRequest& request = std::get<EmbeddingsRequest>(parsed);
        record_.model = request.model;
        if (request.model != server_.config.embedding_model) {
            error = ApiError::not_found(fmt::format("model '{}' does not exist (embeddings: '{}')", request.model, server_.config.embedding_model),
                                        "model_not_found");
            co_return co_await respond_error(std::move(error));
        }
        model_metrics_ = &server_.metrics.model(request.model);
        const std::size_t dim = server_.embedder.dimension();
        std::vector<float> vector(dim);
        std::uint64_t tokens = 0;
        std::string out = R"({"object":"list","data":[)";
        for (std::size_t i = 0; i < request.inputs.size(); ++i) {
            server_.embedder.embed(request.inputs[i], vector);
            tokens += server_.counter.count(request.inputs[i]);
            if (i > 0) out.push_back(',');
            out += fmt::format(R"({{"object":"embedding","index":{},"embedding":)", i);
            if (request.base64) {
                static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
                std::string bytes(dim * sizeof(float), '\0');
                std::memcpy(bytes.data(), vector.data(), bytes.size());  // little-endian float32, as OpenAI sends
                out.push_back('"');
                for (std::size_t j = 0; j < bytes.size(); j += 3) {
                    const auto b0 = static_cast<unsigned char>(bytes[j]);
                    const auto b1 = j + 1 < bytes.size() ? static_cast<unsigned char>(bytes[j + 1]) : 0U;
                    const auto b2 = j + 2 < bytes.size() ? static_cast<unsigned char>(bytes[j + 2]) : 0U;
                    out.push_back(alphabet[b0 >> 2]);
                    out.push_back(alphabet[((b0 & 3U) << 4) | (b1 >> 4)]);
                    out.push_back(j + 1 < bytes.size() ? alphabet[((b1 & 15U) << 2) | (b2 >> 6)] : '=');
                    out.push_back(j + 2 < bytes.size() ? alphabet[b2 & 63U] : '=');
                }
                out.push_back('"');
            } else {
                out.push_back('[');
                for (std::size_t j = 0; j < dim; ++j) {
                    if (j > 0) out.push_back(',');
                    fmt::format_to(std::back_inserter(out), "{}", vector[j]);
                }
                out.push_back(']');
            }
            out.push_back('}');
        }
        out += "],\"model\":";
        append_json_string(out, request.model);
        out += fmt::format(R"(,"usage":{{"prompt_tokens":{},"total_tokens":{}}}}})", tokens, tokens);
        record_.prompt_tokens = tokens;
        co_await respond(200, "application/json", std::move(out));
    }

    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    Server& server_;
    http::request<http::string_body> request_;
    RequestRecord record_;
    ClientGone gone_;
    ModelMetrics* model_metrics_ = nullptr;
    std::string allow_, method_, path_;
    std::vector<std::pair<std::string, std::string>> extra_headers_;
    // the response cache's state of the current request (settle_cache ends it)
    std::optional<ResponseCache::Cache::Leader> leader_;
    std::optional<ResponseCache::Cache::Follower> follower_;
    llmfast::SharedLock replica_lock_;  // the cross-replica lock this request's flight holds (--redis)
    std::optional<ResponseCapture> capture_;
    CachedAnswer cached_;
    std::string cache_scope_;
    bool cache_insert_ = false;
    bool cache_stored_ = false;                       // this request's answer is in the cache already
    const ChatRequest* cache_request_ = nullptr;      // the request being answered (lives across the handler)
    std::string pending_, inflight_;  // the stream's unsent bytes (chunk-framed), the write in flight
    net::steady_timer flushed_{stream_.get_executor()};
    bool writer_running_ = false;
    bool idle_ = true, keep_alive_ = true, started_ = false, responded_ = false, ended_ = false;
    bool peer_closed_ = false;  ///< the watcher saw the client's end (EOF / reset)
};

net::awaitable<void> serve_connection(tcp::socket socket, Server& server) {
    auto connection = std::make_shared<Connection>(std::move(socket), server);
    {
        std::lock_guard lock(server.registry_mutex);
        server.registry.insert(connection);
    }
    server.connections.fetch_add(1);
    try {
        co_await connection->run();
    } catch (const std::exception&) {  // a connection's failure never ends the server
    }
    {
        std::lock_guard lock(server.registry_mutex);
        server.registry.erase(connection);
    }
    server.connections.fetch_sub(1);
}

void spawn_connection(tcp::socket socket, Server& server) {
    auto executor = socket.get_executor();
    net::co_spawn(executor, serve_connection(std::move(socket), server), net::detached);
}

// A connection's executor: a strand when several threads run the loop; with one thread (--threads
// 1) the plain executor, which serializes a connection's handlers as well and saves the strand's
// lock and extra dispatch on every completion (docs/gateway.md#performance). Every other thread
// (resolver, batcher) only posts to it.
net::any_io_executor connection_executor(net::io_context& ioc, unsigned threads) {
    if (threads > 1) return net::make_strand(ioc);
    return ioc.get_executor();
}

net::awaitable<void> accept_loop(tcp::acceptor& acceptor, Server& server, net::io_context& ioc) {
    boost::system::error_code ec;
    std::optional<tcp::socket> socket;  // frame-level (see Connection::run)
    net::any_io_executor executor;
    for (;;) {
        executor = connection_executor(ioc, server.config.threads);
        socket.emplace(co_await acceptor.async_accept(executor, net::redirect_error(net::use_awaitable, ec)));
        if (ec) {
            if (!acceptor.is_open() || server.draining) co_return;
            continue;  // e.g. EMFILE: keep serving the others
        }
        spawn_connection(std::move(*socket), server);
    }
}

int run(int argc, char** argv) {
    Config config;
    try {
        config = parse_command_line(argc, argv);
        config.latency.validate();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "llmfast-gateway: %s\n", e.what());
        return 2;
    }
    std::unique_ptr<Server> server;
    try {
        server = std::make_unique<Server>(std::move(config));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "llmfast-gateway: %s\n", e.what());
        return 2;
    }
    const Config& cfg = server->config;
    net::io_context ioc(static_cast<int>(cfg.threads));
    tcp::acceptor acceptor(ioc);
    try {
        const tcp::endpoint endpoint(net::ip::make_address(cfg.host), cfg.port);
        acceptor.open(endpoint.protocol());
        acceptor.set_option(net::socket_base::reuse_address(true));
        acceptor.bind(endpoint);
        acceptor.listen(net::socket_base::max_listen_connections);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "llmfast-gateway: cannot listen on %s:%u: %s\n", cfg.host.c_str(), cfg.port, e.what());
        return 1;
    }
    const auto local = acceptor.local_endpoint();
    std::printf("listening on %s:%u\n", local.address().to_string().c_str(), static_cast<unsigned>(local.port()));
    std::fflush(stdout);

    net::co_spawn(ioc, accept_loop(acceptor, *server, ioc), net::detached);

    // SIGTERM/SIGINT: stop accepting, close idle connections, let in-flight requests finish within
    // the grace period, then stop.
    net::signal_set signals(ioc, SIGINT, SIGTERM);
    net::steady_timer drain_timer(ioc);
    Clock::time_point drain_until{};
    bool cut = false;
    std::function<void()> check_drained = [&] {
        if (server->connections.load() == 0) {
            ioc.stop();
            return;
        }
        if (Clock::now() >= drain_until) {
            if (cut) {
                ioc.stop();
                return;
            }
            // Grace is over: streams still running end with an error event; then a short flush.
            cut = true;
            {
                std::lock_guard lock(server->registry_mutex);
                for (const auto& weak : server->registry)
                    if (auto connection = weak.lock()) connection->abort_stream();
            }
            drain_until = Clock::now() + std::chrono::milliseconds(500);
        }
        {
            std::lock_guard lock(server->registry_mutex);
            for (const auto& weak : server->registry)
                if (auto connection = weak.lock()) connection->close_if_idle();
        }
        drain_timer.expires_after(std::chrono::milliseconds(20));
        drain_timer.async_wait([&](boost::system::error_code) { check_drained(); });
    };
    signals.async_wait([&](boost::system::error_code ec, int) {
        if (ec) return;
        server->draining = true;
        boost::system::error_code ignored;
        acceptor.close(ignored);
        drain_until = Clock::now() + cfg.limits.drain_grace;
        check_drained();
    });

    std::vector<std::thread> threads;
    for (unsigned i = 1; i < cfg.threads; ++i) threads.emplace_back([&ioc] { ioc.run(); });
    ioc.run();
    for (auto& thread : threads) thread.join();
    server->close_backends();
    std::fprintf(stderr, "llmfast-gateway: stopped\n");
    return 0;
}

}  // namespace gateway

int main(int argc, char** argv) { return gateway::run(argc, argv); }
