// examples/gateway/upstream.cpp — see upstream.hpp. One of the gateway's two Beast/Asio translation
// units (the TLS one).
#include "upstream.hpp"

#include <llmfast/sse.hpp>

#include <boost/asio/ssl.hpp>
#include <boost/beast/ssl.hpp>

#include <atomic>
#include <charconv>
#include <optional>

namespace gateway {

namespace ssl = net::ssl;

namespace {

enum class Outcome {
    Done,               // the answer went to the client
    RetryableFailure,   // failed before content: the next upstream may answer
    ClientGone,         // the client went away: stop
    Answered,           // the upstream answered something final (a 4xx, or a failure after content)
};

struct Attempt {
    Outcome outcome = Outcome::RetryableFailure;
    std::string error;       // for the client's 502 and the log
    bool timed_out = false;  // the failure was a timeout (504 when it was the last)
};

// Built by a plain function and assigned to the coroutine's one frame-level Attempt (`out`), so no
// Attempt is created in a branch that ends in co_return. The double free found in 0.2's exchange was
// g++ 12 destroying a conditional expression's class temporary inside a co_await twice (see the
// rule above exchange); these coroutines avoid every such shape, not only that one.
Attempt make_attempt(Outcome outcome, std::string error, bool timed_out) {
    Attempt a;
    a.outcome = outcome;
    a.error = std::move(error);
    a.timed_out = timed_out;
    return a;
}

struct UpstreamState {
    std::atomic<std::size_t> consecutive_failures{0};
    std::atomic<std::int64_t> cooldown_until_ns{0};
};

std::string target_of(const UpstreamConfig& up, std::string_view path) { return up.url.base_path + std::string(path); }

// The body for this upstream: the client's, with "model" replaced when the upstream's name differs.
std::string body_for(const UpstreamConfig& up, const ChatRequest& request, const std::string& body) {
    if (up.model.empty() || up.model == request.model) return body;
    const auto [begin, end] = find_top_level_value(body, "model");
    if (begin == end) return body;
    std::string out;
    out.reserve(body.size() + up.model.size());
    out.append(body, 0, begin);
    append_json_string(out, up.model);
    out.append(body, end, std::string::npos);
    return out;
}

using TokenCount = std::function<std::size_t(std::string_view)>;

bool sse_data_has_content(std::string_view data, const TokenCount& count_tokens, std::uint64_t& tokens) {
    // Observed, never re-encoded: a chunk counts as content when its delta carries text, a tool call,
    // a refusal, or a finish reason (a stream may legitimately end without text).
    auto& parser = thread_parser(1 << 16, 64);
    simdjson::dom::element doc;
    if (parser.parse(data.data(), data.size()).get(doc) != simdjson::SUCCESS) return false;
    simdjson::dom::array choices;
    if (doc["choices"].get(choices) != simdjson::SUCCESS) return false;
    for (simdjson::dom::element choice : choices) {
        std::string_view finish;
        if (choice["finish_reason"].get(finish) == simdjson::SUCCESS && !finish.empty()) return true;
        simdjson::dom::object delta;
        if (choice["delta"].get(delta) != simdjson::SUCCESS) continue;
        std::string_view content;
        if (delta["content"].get(content) == simdjson::SUCCESS && !content.empty()) {
            if (count_tokens) tokens += count_tokens(content);
            return true;
        }
        if (delta["tool_calls"].error() == simdjson::SUCCESS) return true;
        if (delta["refusal"].get(content) == simdjson::SUCCESS && !content.empty()) return true;
        if (delta["reasoning_content"].get(content) == simdjson::SUCCESS && !content.empty()) return true;
    }
    return false;
}

bool observe_usage(std::string_view data, RequestRecord& record) {
    if (data.find("\"usage\"") == std::string_view::npos) return false;
    auto& parser = thread_parser(1 << 16, 64);
    simdjson::dom::element doc;
    if (parser.parse(data.data(), data.size()).get(doc) != simdjson::SUCCESS) return false;
    simdjson::dom::object usage;
    if (doc["usage"].get(usage) != simdjson::SUCCESS) return false;
    std::uint64_t n = 0;
    if (usage["prompt_tokens"].get(n) == simdjson::SUCCESS) record.prompt_tokens = n;
    if (usage["completion_tokens"].get(n) == simdjson::SUCCESS) record.completion_tokens = n;
    return true;
}

// The "choices" array of a completion object (parsed into this thread's parser: use before the next parse).
bool doc_choices(std::string_view answer, simdjson::dom::array& choices) {
    auto& parser = thread_parser(answer.size() + 1, 64);
    simdjson::dom::element doc;
    if (parser.parse(answer.data(), answer.size()).get(doc) != simdjson::SUCCESS) return false;
    return doc["choices"].get(choices) == simdjson::SUCCESS;
}

// A completion object: a JSON object with "choices".
bool is_completion(std::string_view answer) {
    auto& json = thread_parser(answer.size() + 1, 64);
    simdjson::dom::element doc;
    return json.parse(answer.data(), answer.size()).get(doc) == simdjson::SUCCESS && doc["choices"].error() == simdjson::SUCCESS;
}

// The tokens of a completion's message texts, counted with `count_tokens` (when the upstream sent no usage).
std::uint64_t count_completion_tokens(std::string_view answer, const TokenCount& count_tokens) {
    std::uint64_t tokens = 0;
    simdjson::dom::array choices;
    if (!doc_choices(answer, choices)) return 0;
    for (simdjson::dom::element choice : choices) {
        std::string_view text;
        if (choice["message"]["content"].get(text) == simdjson::SUCCESS) tokens += count_tokens(text);
    }
    return tokens;
}

bool is_error_event(std::string_view data) {
    if (data.find("\"error\"") == std::string_view::npos) return false;
    auto& parser = thread_parser(1 << 16, 64);
    simdjson::dom::element doc;
    if (parser.parse(data.data(), data.size()).get(doc) != simdjson::SUCCESS) return false;
    return doc["error"].error() == simdjson::SUCCESS;
}

// The body's read timeouts (first_byte_timeout before content, read_timeout between two chunks)
// without timer work per read. beast::tcp_stream arms its timer before every read and cancels it
// after (a timer-queue insert, a cancelled handler run, often a timerfd_settime), which was a large
// part of the gateway's CPU per chunk (docs/gateway.md#performance). Here a read only records its
// deadline; one timer waits for the earliest deadline it may have to enforce and, when it fires,
// closes the socket if the read pending then is past its own deadline (what beast's timeout does),
// or else waits again until that read's deadline. Each read keeps its exact bound.
struct ReadWatchdog {
    explicit ReadWatchdog(const net::any_io_executor& executor) : timer(executor) {}
    net::steady_timer timer;
    Clock::time_point deadline = Clock::time_point::max();  // of the read pending now
    Clock::time_point armed = Clock::time_point::max();     // when the timer fires (max: not waiting)
    bool reading = false;
    bool fired = false;             // it closed the socket: the read failed by timeout
    tcp::socket* socket = nullptr;  // null once the exchange is over
};

void watchdog_wait(const std::shared_ptr<ReadWatchdog>& w) {
    w->timer.expires_at(w->armed);
    w->timer.async_wait([w](const boost::system::error_code& ec) {
        if (ec || w->socket == nullptr) return;  // re-armed earlier (aborted), or the exchange is over
        w->armed = Clock::time_point::max();
        if (!w->reading) return;  // the next read arms it again
        if (Clock::now() >= w->deadline) {
            w->fired = true;
            boost::system::error_code ignored;
            w->socket->close(ignored);
            return;
        }
        w->armed = w->deadline;
        watchdog_wait(w);
    });
}

void watchdog_begin_read(const std::shared_ptr<ReadWatchdog>& w, Clock::time_point deadline) {
    w->reading = true;
    w->deadline = deadline;
    if (deadline < w->armed) {
        w->armed = deadline;
        watchdog_wait(w);
    }
}

}  // namespace

struct UpstreamClient::Impl {
    const Config& config;
    Metrics& metrics;
    std::map<const UpstreamConfig*, std::unique_ptr<UpstreamState>> state;
    std::map<const UpstreamConfig*, std::unique_ptr<ssl::context>> tls;

    Impl(const Config& c, Metrics& m) : config(c), metrics(m) {
        const auto add = [&](const UpstreamConfig& up) {
            state[&up] = std::make_unique<UpstreamState>();
            if (!up.url.tls) return;
            auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
            ctx->set_default_verify_paths();
            if (!up.ca_file.empty()) {
                boost::system::error_code ec;
                ctx->load_verify_file(up.ca_file, ec);
                if (ec) throw ConfigError("upstream " + up.name + ": ca_file " + up.ca_file + ": " + ec.message());
            }
            ctx->set_verify_mode(up.tls_verify ? ssl::verify_peer : ssl::verify_none);
            tls[&up] = std::move(ctx);
        };
        for (const auto& model : config.models)
            for (const auto& up : model.upstreams) add(up);
        for (const auto& up : config.default_upstreams) add(up);
    }

    // The coroutines below follow one rule, for g++ 12 (see the note at make_attempt and
    // docs/gateway.md): every object with a destructor is declared at the coroutine's top level (none
    // is scoped to a branch or loop body), no class temporary is created inside a co_await
    // expression (a named value is built first, then awaited), and no conditional expression yields a
    // class temporary in a coroutine. Checks that need locals are plain functions (above).
    template <class Stream>
    net::awaitable<Attempt> exchange(Stream& stream, ClientSink& sink, const UpstreamConfig& up, const ChatRequest& request,
                                     const std::string& body, Clock::time_point deadline, const TokenCount& count_tokens) {
        auto& tcp_layer = beast::get_lowest_layer(stream);
        RequestRecord& record = sink.record();
        const auto bounded = [&](std::chrono::milliseconds limit) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            return std::max(std::chrono::milliseconds(1), std::min(limit, left));
        };
        Attempt out;
        boost::system::error_code ec;
        std::string error_body, answer, reply_type, event, held, why;
        std::optional<std::string_view> bytes;

        http::request<http::string_body> req{http::verb::post, target_of(up, "/chat/completions"), 11};
        req.set(http::field::host, up.url.host);
        req.set(http::field::user_agent, "llmfast-gateway");
        req.set(http::field::content_type, "application/json");
        req.set(http::field::accept, request.stream ? "text/event-stream" : "application/json");
        req.set("x-request-id", record.request_id);
        if (!up.api_key.empty()) req.set(http::field::authorization, "Bearer " + up.api_key);
        req.body() = body_for(up, request, body);
        req.prepare_payload();
        tcp_layer.expires_after(bounded(config.limits.first_byte_timeout));
        co_await http::async_write(stream, req, net::redirect_error(net::use_awaitable, ec));
        if (sink.gone().gone) { out = make_attempt(Outcome::ClientGone, "client went away", false); co_return out; }
        if (ec) { out = make_attempt(Outcome::RetryableFailure, "sending the request: " + ec.message(), ec == beast::error::timeout); co_return out; }

        beast::flat_buffer buffer;
        http::response_parser<http::buffer_body> parser;
        parser.body_limit(boost::none);
        co_await http::async_read_header(stream, buffer, parser, net::redirect_error(net::use_awaitable, ec));
        if (sink.gone().gone) { out = make_attempt(Outcome::ClientGone, "client went away", false); co_return out; }
        if (ec) { out = make_attempt(Outcome::RetryableFailure, "reading the response header: " + ec.message(), ec == beast::error::timeout); co_return out; }
        const unsigned status = parser.get().result_int();
        const std::string content_type(parser.get()[http::field::content_type]);

        // Reads the body piece by piece: an empty view is a chunk header or the end, nullopt a failure (ec).
        std::array<char, 16384> piece{};
        std::chrono::milliseconds piece_timeout = config.limits.first_byte_timeout;
        tcp_layer.expires_never();  // the body's reads are bounded by the watchdog
        const auto watchdog = std::make_shared<ReadWatchdog>(tcp_layer.get_executor());
        watchdog->socket = &tcp_layer.socket();
        struct Disarm {
            std::shared_ptr<ReadWatchdog> w;
            ~Disarm() {
                w->socket = nullptr;
                w->timer.cancel();
            }
        } disarm{watchdog};
        const auto read_piece = [&]() -> net::awaitable<std::optional<std::string_view>> {
            std::optional<std::string_view> result;
            if (parser.is_done()) {
                result.emplace();
                co_return result;
            }
            parser.get().body().data = piece.data();
            parser.get().body().size = piece.size();
            // Bytes already buffered (a chunk's data after its header, the next chunk) are parsed
            // here, without an async read: one read operation per upstream chunk, not one per chunk
            // header and one per chunk body. Not eager: each chunk's data goes out as it arrives.
            while (buffer.size() > 0 && !parser.is_done()) {
                const std::size_t used = parser.put(buffer.data(), ec);
                buffer.consume(used);
                if (ec == http::error::need_more) {
                    ec = {};
                    break;  // the rest of this chunk header is still on the wire
                }
                if (ec == http::error::need_buffer) ec = {};
                if (ec) co_return result;
                if (parser.get().body().size != piece.size() || parser.is_done()) {
                    result.emplace(piece.data(), piece.size() - parser.get().body().size);
                    co_return result;
                }
                if (used == 0) break;
            }
            if (parser.is_done()) {
                result.emplace();
                co_return result;
            }
            watchdog_begin_read(watchdog, Clock::now() + bounded(piece_timeout));
            co_await http::async_read_some(stream, buffer, parser, net::redirect_error(net::use_awaitable, ec));
            watchdog->reading = false;
            if (watchdog->fired) ec = beast::error::timeout;
            if (ec == http::error::need_buffer) ec = {};
            if (!ec) result.emplace(piece.data(), piece.size() - parser.get().body().size);
            co_return result;
        };

        if (status != 200) {
            while (!parser.is_done() && error_body.size() < 65536) {
                bytes = co_await read_piece();
                if (!bytes) break;
                error_body.append(*bytes);
            }
            if (status >= 500 || status == 429) {
                out = make_attempt(Outcome::RetryableFailure, "upstream answered HTTP " + std::to_string(status), false);
                co_return out;
            }
            // A client error the upstream judged: pass it through as the upstream said it. (The type
            // is a named string, not `empty() ? "application/json" : content_type` inside the
            // co_await: g++ 12 destroyed that conditional temporary twice, the double free of 0.2.)
            record.status = status;
            reply_type = content_type;
            if (reply_type.empty()) reply_type = "application/json";
            co_await sink.respond(status, reply_type, std::move(error_body));
            out = make_attempt(Outcome::Answered, {}, false);
            co_return out;
        }

        if (!request.stream) {
            piece_timeout = config.limits.read_timeout;
            while (!parser.is_done()) {
                bytes = co_await read_piece();
                if (bytes && bytes->empty()) continue;
                if (sink.gone().gone) { out = make_attempt(Outcome::ClientGone, "client went away", false); co_return out; }
                if (!bytes) { out = make_attempt(Outcome::RetryableFailure, "reading the response: " + ec.message(), ec == beast::error::timeout); co_return out; }
                answer.append(*bytes);
                if (answer.size() > (64U << 20)) { out = make_attempt(Outcome::RetryableFailure, "response over 64 MiB", false); co_return out; }
            }
            // A 200 that is not a completion (an error object, an SSE body, garbage) fails over.
            if (!is_completion(answer)) { out = make_attempt(Outcome::RetryableFailure, "upstream answered HTTP 200 without a completion", false); co_return out; }
            record.completion_tokens = 0;
            observe_usage(answer, record);
            if (record.completion_tokens == 0 && count_tokens) record.completion_tokens = count_completion_tokens(answer, count_tokens);
            record.status = 200;
            record.first_content = record.last_content = Clock::now();
            co_await sink.respond(200, "application/json", std::move(answer));
            out = make_attempt(Outcome::Done, {}, false);
            co_return out;
        }

        // Streaming: hold the bytes until the first content chunk (failover stays possible until
        // then), then forward every piece as it arrives.
        llmfast::SseParser sse({.max_event_size = 1 << 20});
        bool content_seen = false, done_seen = false, error_seen = false, bad_event = false;
        std::uint64_t counted_tokens = 0;
        bool usage_seen = false;
        bool had_content = false;
        std::size_t new_content = 0;
        const auto on_event = [&](const llmfast::SseEventView& e) {
            if (e.status != llmfast::ErrorCode::Ok) { bad_event = true; return; }
            if (e.data == "[DONE]") { done_seen = true; return; }
            if (sse_data_has_content(e.data, count_tokens, counted_tokens)) {
                content_seen = true;
                ++new_content;
            } else if (is_error_event(e.data)) {
                error_seen = true;
            }
            if (observe_usage(e.data, record)) usage_seen = true;
        };
        for (;;) {
            bytes = co_await read_piece();
            if (sink.gone().gone) { out = make_attempt(Outcome::ClientGone, "client went away", false); co_return out; }
            if (!bytes) {
                why = "reading the stream: " + ec.message();
                if (!content_seen) { out = make_attempt(Outcome::RetryableFailure, why, ec == beast::error::timeout); co_return out; }
                record.error = why;
                event = error_event(ApiError::upstream("upstream stream failed after content: " + ec.message()));
                co_await sink.write(event);
                co_await sink.end_stream();
                out = make_attempt(Outcome::Answered, why, false);
                co_return out;
            }
            if (bytes->empty()) {  // a chunk header, or the end of the body
                if (parser.is_done()) break;
                continue;
            }
            had_content = content_seen;
            new_content = 0;
            sse.feed(*bytes, on_event);
            if (!had_content) {
                if (bad_event || (error_seen && !content_seen)) {
                    out = make_attempt(Outcome::RetryableFailure,
                                       error_seen ? "upstream sent an error event before content" : "upstream sent an oversized event", false);
                    co_return out;
                }
                held.append(*bytes);
                if (!content_seen) {
                    if (done_seen) { out = make_attempt(Outcome::RetryableFailure, "upstream ended the stream without content", false); co_return out; }
                    if (held.size() > (1U << 20)) { out = make_attempt(Outcome::RetryableFailure, "upstream sent 1 MiB without content", false); co_return out; }
                    continue;
                }
                if (!co_await sink.start_stream("text/event-stream")) { out = make_attempt(Outcome::ClientGone, "client went away", false); co_return out; }
                record.status = 200;
                piece_timeout = config.limits.read_timeout;
                if (!co_await sink.write(held)) { out = make_attempt(Outcome::ClientGone, "client went away", false); co_return out; }
                held.clear();
            } else {
                if (!co_await sink.write(*bytes)) { out = make_attempt(Outcome::ClientGone, "client went away", false); co_return out; }
            }
            for (std::size_t i = 0; i < new_content; ++i) sink.note_content();
            if (done_seen) break;
        }
        if (!content_seen) { out = make_attempt(Outcome::RetryableFailure, "upstream ended the stream without content", false); co_return out; }
        if (!done_seen) {
            record.error = "upstream stream ended without [DONE]";
            event = error_event(ApiError::upstream("upstream stream ended before [DONE]"));
            co_await sink.write(event);
        }
        if (!usage_seen) record.completion_tokens = counted_tokens;  // the configured tokenizer's count
        co_await sink.end_stream();
        out = make_attempt(done_seen ? Outcome::Done : Outcome::Answered, {}, false);
        co_return out;
    }

    /// The endpoint of a URL whose host is an IP address (empty for a name, or a port that is not a number).
    static tcp::resolver::results_type numeric_endpoints(const Url& url) {
        boost::system::error_code ec;
        const auto address = net::ip::make_address(url.host, ec);
        unsigned long port = 0;
        const auto [end, err] = std::from_chars(url.port.data(), url.port.data() + url.port.size(), port);
        if (ec || err != std::errc{} || end != url.port.data() + url.port.size() || port > 65535) return {};
        return tcp::resolver::results_type::create(tcp::endpoint(address, static_cast<unsigned short>(port)), url.host, url.port);
    }

    net::awaitable<Attempt> try_upstream(ClientSink& sink, const UpstreamConfig& up, const ChatRequest& request,
                                         const std::string& body, Clock::time_point deadline, const TokenCount& count_tokens) {
        auto executor = co_await net::this_coro::executor;
        Attempt out;
        boost::system::error_code ec;
        const auto bounded = [&](std::chrono::milliseconds limit) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            return std::max(std::chrono::milliseconds(1), std::min(limit, left));
        };
        tcp::resolver resolver(executor);
        // An IP address needs no resolver: async_resolve hops to Asio's resolver thread and back
        // (two thread switches per request, serialized on that one thread under load).
        tcp::resolver::results_type endpoints = numeric_endpoints(up.url);
        if (endpoints.empty()) {
            sink.gone().on_gone = [&resolver] { resolver.cancel(); };
            endpoints = co_await resolver.async_resolve(up.url.host, up.url.port, net::redirect_error(net::use_awaitable, ec));
            sink.gone().on_gone = nullptr;
        }
        if (sink.gone().gone) { out = make_attempt(Outcome::ClientGone, "client went away", false); co_return out; }
        if (ec) { out = make_attempt(Outcome::RetryableFailure, "resolving " + up.url.host + ": " + ec.message(), false); co_return out; }

        beast::tcp_stream tcp_stream(executor);
        sink.gone().on_gone = [&tcp_stream] { tcp_stream.socket().close(); };
        struct Unhook {
            ClientGone& gone;
            ~Unhook() { gone.on_gone = nullptr; }
        } unhook{sink.gone()};
        tcp_stream.expires_after(bounded(config.limits.connect_timeout));
        co_await tcp_stream.async_connect(endpoints, net::redirect_error(net::use_awaitable, ec));
        if (sink.gone().gone) { out = make_attempt(Outcome::ClientGone, "client went away", false); co_return out; }
        if (ec) { out = make_attempt(Outcome::RetryableFailure, "connecting: " + ec.message(), ec == beast::error::timeout); co_return out; }
        tcp_stream.socket().set_option(tcp::no_delay(true), ec);

        if (!up.url.tls) {
            out = co_await exchange(tcp_stream, sink, up, request, body, deadline, count_tokens);
            tcp_stream.socket().close(ec);
            co_return out;
        }
        beast::ssl_stream<beast::tcp_stream&> tls_stream(tcp_stream, *tls.at(&up));
        if (!SSL_set_tlsext_host_name(tls_stream.native_handle(), up.url.host.c_str()))
            { out = make_attempt(Outcome::RetryableFailure, "TLS: cannot set SNI", false); co_return out; }
        if (up.tls_verify) tls_stream.set_verify_callback(ssl::host_name_verification(up.url.host));
        tcp_stream.expires_after(bounded(config.limits.connect_timeout));
        co_await tls_stream.async_handshake(ssl::stream_base::client, net::redirect_error(net::use_awaitable, ec));
        if (sink.gone().gone) { out = make_attempt(Outcome::ClientGone, "client went away", false); co_return out; }
        if (ec) { out = make_attempt(Outcome::RetryableFailure, "TLS handshake: " + ec.message(), ec == beast::error::timeout); co_return out; }
        out = co_await exchange(tls_stream, sink, up, request, body, deadline, count_tokens);
        tcp_stream.socket().close(ec);  // no TLS close_notify round trip: the exchange is over
        co_return out;
    }
};

UpstreamClient::UpstreamClient(const Config& config, Metrics& metrics) : impl_(std::make_unique<Impl>(config, metrics)) {}
UpstreamClient::~UpstreamClient() = default;

const std::vector<UpstreamConfig>* UpstreamClient::group_for(const std::string& model) const {
    for (const auto& m : impl_->config.models)
        if (m.name == model) return &m.upstreams;
    return impl_->config.default_upstreams.empty() ? nullptr : &impl_->config.default_upstreams;
}

net::awaitable<void> UpstreamClient::chat(ClientSink& sink, const std::vector<UpstreamConfig>& group,
                                          const ChatRequest& request, const std::string& body, Clock::time_point deadline,
                                          std::function<std::size_t(std::string_view)> count_tokens) {
    Impl& impl = *impl_;
    const Limits& limits = impl.config.limits;
    RequestRecord& record = sink.record();
    ModelMetrics& model_metrics = impl.metrics.model(request.model);

    // The order: the group's, cooled-down upstreams last.
    const auto now_ns = Clock::now().time_since_epoch().count();
    std::vector<const UpstreamConfig*> order, cooling;
    for (const auto& up : group)
        (impl.state.at(&up)->cooldown_until_ns.load() > now_ns ? cooling : order).push_back(&up);
    order.insert(order.end(), cooling.begin(), cooling.end());

    std::string last_error = "no upstream attempted";
    bool last_timed_out = false;
    auto backoff = limits.backoff;
    // Frame-level, not scoped to the loop body (the rule above exchange).
    net::steady_timer timer(co_await net::this_coro::executor);
    boost::system::error_code ec;
    Attempt attempt;
    std::string reply;
    for (std::size_t attempt_no = 0; attempt_no < limits.max_attempts; ++attempt_no) {
        if (Clock::now() >= deadline) {
            last_timed_out = true;
            last_error = "request deadline passed";
            break;
        }
        const UpstreamConfig& up = *order[attempt_no % order.size()];
        if (attempt_no > 0) {
            model_metrics.failovers.fetch_add(1, std::memory_order_relaxed);
            if (backoff.count() > 0) {
                timer.expires_at(std::min(Clock::now() + backoff, deadline));
                sink.gone().on_gone = [&timer] { timer.cancel(); };
                co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
                sink.gone().on_gone = nullptr;
                backoff *= 2;
            }
            if (sink.gone().gone) co_return;
        }
        ++record.attempts;
        record.upstream = up.name;
        attempt = co_await impl.try_upstream(sink, up, request, body, deadline, count_tokens);
        UpstreamState& state = *impl.state.at(&up);
        switch (attempt.outcome) {
            case Outcome::Done:
            case Outcome::Answered:
                state.consecutive_failures.store(0);
                impl.metrics.count_attempt(request.model, up.name, attempt.outcome == Outcome::Done ? "ok" : "answered");
                co_return;
            case Outcome::ClientGone:
                impl.metrics.count_attempt(request.model, up.name, "client_gone");
                co_return;
            case Outcome::RetryableFailure:
                impl.metrics.count_attempt(request.model, up.name, attempt.timed_out ? "timeout" : "failed");
                if (state.consecutive_failures.fetch_add(1) + 1 >= limits.cooldown_failures)
                    state.cooldown_until_ns.store((Clock::now() + limits.cooldown).time_since_epoch().count());
                last_error = up.name + ": " + attempt.error;
                last_timed_out = attempt.timed_out;
                break;
        }
        if (sink.started()) co_return;  // cannot happen before content; defensive
    }
    record.error = last_error;
    const unsigned status = last_timed_out && Clock::now() >= deadline ? 504 : (last_timed_out ? 504 : 502);
    record.status = status;
    reply = error_json(ApiError::upstream("no upstream could answer: " + last_error, static_cast<int>(status)));
    co_await sink.respond(status, "application/json", std::move(reply));
}

}  // namespace gateway
