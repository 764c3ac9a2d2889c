// examples/gateway/sink.hpp — what a backend (the simulated model, the upstream client) sees of the
// client connection: respond once, or start a stream and write chunks as they arrive; whether the
// client went away; the request's record (for metrics and the access log).
//
// Thread-safety: a sink belongs to one request and is used on its connection's strand only; every
// callback (ClientGone::on_gone) runs on that strand too.
#pragma once

#include "metrics.hpp"

#include <boost/asio.hpp>
#include <boost/beast.hpp>

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gateway {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

/// The client closed its connection (or reset it). `fire` runs the current waiter's hook once, so a
/// backend blocked on a timer or an upstream read is woken at once, not at its next write.
struct ClientGone {
    bool gone = false;
    std::function<void()> on_gone;
    void fire() {
        gone = true;
        if (on_gone) {
            auto hook = std::move(on_gone);
            on_gone = nullptr;
            hook();
        }
    }
};

/// One request's facts, for the access log and the metrics.
struct RequestRecord {
    std::string request_id;
    std::string route;
    std::string model;
    std::string tenant;
    std::string upstream;
    unsigned status = 0;
    std::size_t attempts = 0;
    std::uint64_t prompt_tokens = 0, completion_tokens = 0;
    Clock::time_point start{}, first_content{}, last_content{};
    bool streamed = false;
    bool client_gone = false;
    std::string error;
};

class ClientSink {
public:
    virtual ~ClientSink() = default;
    /// A whole response (status, content type, body). At most once, and not after start_stream.
    virtual net::awaitable<void> respond(unsigned status, std::string_view content_type, std::string body) = 0;
    /// The header of a chunked response (status 200); false when the client is gone.
    virtual net::awaitable<bool> start_stream(std::string_view content_type) = 0;
    /// One chunk of a started stream, written as is; false when the client is gone or too slow.
    virtual net::awaitable<bool> write(std::string_view data) = 0;
    /// The end of a started stream.
    virtual net::awaitable<void> end_stream() = 0;
    /// A content chunk went out now (TTFT, inter-token latency).
    virtual void note_content() = 0;
    virtual ClientGone& gone() = 0;
    virtual RequestRecord& record() = 0;
    [[nodiscard]] virtual bool started() const = 0;
};

}  // namespace gateway
