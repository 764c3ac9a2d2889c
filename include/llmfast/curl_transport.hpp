// llmfast/curl_transport.hpp — `CurlTransport`, the libcurl model of `HttpTransport`
// (llmfast/http_transport.hpp). Optional component: CMake target `llmfast::http` (links libcurl;
// Debian: libcurl4-openssl-dev); not part of the umbrella header.
//
//     llmfast::CurlTransport transport({.connect_timeout = std::chrono::seconds(2)});
//     llmfast::HttpResponse r = transport.post({.url = "http://127.0.0.1:8080/v1/embeddings",
//                                               .headers = {{"Content-Type", "application/json"}},
//                                               .body = R"({"model":"m","input":["hi"]})"});
//
// Each thread reuses one easy handle (shared by the CurlTransports it calls; curl keeps the connection
// alive across calls on it), so steady traffic pays no TCP handshake per request.
//
// Thread-safety: `post` may be called from any number of threads at once (each thread uses its own
// handle). libcurl's global initialisation runs once, the first time a CurlTransport is constructed.
//
// Errors: the constructor throws Error(IoError) if libcurl cannot be initialised and
// Error(InvalidArgument) for a negative connect_timeout; `post` throws Error(DeadlineExceeded) when
// `request.timeout` passes, Error(IoError) (naming the URL and curl's message) for every other
// transport failure. HTTP error statuses are returned, not thrown.
#pragma once

#include <llmfast/version.hpp>
#include <llmfast/error.hpp>
#include <llmfast/http_transport.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include <curl/curl.h>
#include <fmt/format.h>

LLMFAST_BEGIN_NAMESPACE

struct CurlTransportOptions {
    /// Bound of the TCP (and TLS) connect, within the request's own timeout. >= 0; 0 = only the request's.
    std::chrono::nanoseconds connect_timeout = std::chrono::seconds(5);
    bool verify_tls = true;  ///< verify the server certificate and host name (https)
};

/// `HttpTransport` over libcurl (see the header comment).
/// Thread-safety: `post` may be called concurrently.
class CurlTransport {
public:
    using Options = CurlTransportOptions;

    CurlTransport() : CurlTransport(Options{}) {}
    explicit CurlTransport(Options options) : options_(options) {
        if (options_.connect_timeout < std::chrono::nanoseconds::zero())
            throw Error(ErrorCode::InvalidArgument,
                        fmt::format("CurlTransportOptions::connect_timeout must be >= 0 (got {} ns)", options_.connect_timeout.count()));
        static const CURLcode init = curl_global_init(CURL_GLOBAL_DEFAULT);
        if (init != CURLE_OK)
            throw Error(ErrorCode::IoError, fmt::format("CurlTransport: curl_global_init failed ({})", curl_easy_strerror(init)));
    }

    [[nodiscard]] HttpResponse post(const HttpRequest& request) const {
        CURL* curl = thread_handle();
        curl_easy_reset(curl);
        HttpResponse response;
        struct HeaderList {
            curl_slist* list = nullptr;
            ~HeaderList() { curl_slist_free_all(list); }
        } headers;
        for (const auto& [name, value] : request.headers) {
            const std::string line = fmt::format("{}: {}", name, value);
            curl_slist* next = curl_slist_append(headers.list, line.c_str());
            if (next == nullptr) throw Error(ErrorCode::IoError, "CurlTransport::post: out of memory building headers");
            headers.list = next;
        }
        // Never 0 (curl's "no limit"): a request always ends.
        const long timeout_ms = static_cast<long>(std::max<std::int64_t>(
            1, std::chrono::duration_cast<std::chrono::milliseconds>(request.timeout).count()));
        long connect_ms = static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(options_.connect_timeout).count());
        connect_ms = connect_ms <= 0 ? timeout_ms : std::min(connect_ms, timeout_ms);
        curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
        curl_easy_setopt(curl, CURLOPT_POST, 1L);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.body.data());
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers.list);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM-based DNS timeouts
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, options_.verify_tls ? 1L : 0L);
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, options_.verify_tls ? 2L : 0L);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &CurlTransport::on_body);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response.body);
        curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, &CurlTransport::on_header);
        curl_easy_setopt(curl, CURLOPT_HEADERDATA, &response);
        const CURLcode rc = curl_easy_perform(curl);
        if (rc == CURLE_OPERATION_TIMEDOUT)
            throw Error(ErrorCode::DeadlineExceeded,
                        fmt::format("CurlTransport::post: {} did not answer within {} ms", request.url, timeout_ms));
        if (rc != CURLE_OK)
            throw Error(ErrorCode::IoError, fmt::format("CurlTransport::post: {}: {}", request.url, curl_easy_strerror(rc)));
        long status = 0;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        response.status = static_cast<int>(status);
        return response;
    }

    [[nodiscard]] const Options& options() const noexcept { return options_; }

private:
    struct HandleDeleter {
        void operator()(CURL* curl) const noexcept { curl_easy_cleanup(curl); }
    };

    static CURL* thread_handle() {
        thread_local std::unique_ptr<CURL, HandleDeleter> handle{curl_easy_init()};
        if (!handle) throw Error(ErrorCode::IoError, "CurlTransport::post: curl_easy_init failed");
        return handle.get();
    }

    static std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) noexcept {
        try {
            static_cast<std::string*>(user)->append(data, size * count);
            return size * count;
        } catch (...) {
            return 0;  // curl then fails the transfer (CURLE_WRITE_ERROR)
        }
    }

    static std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user) noexcept {
        const std::string_view line(data, size * count);
        constexpr std::string_view name = "retry-after:";
        if (line.size() > name.size()) {
            bool match = true;
            for (std::size_t i = 0; i < name.size() && match; ++i) {
                const char c = line[i];
                match = (c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c) == name[i];
            }
            if (match) static_cast<HttpResponse*>(user)->retry_after = parse_retry_after(line.substr(name.size()));
        }
        return size * count;
    }

    Options options_;
};

static_assert(HttpTransport<CurlTransport>);

LLMFAST_END_NAMESPACE
