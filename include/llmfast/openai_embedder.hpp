// llmfast/openai_embedder.hpp — `OpenAiEmbedder<Transport>`: an `Embedder` (llmfast/embedder.hpp)
// backed by any OpenAI-compatible `POST {base_url}/embeddings` endpoint (OpenAI, llama.cpp server
// `--embedding`, Ollama, vLLM, Hugging Face TEI, llmfast-gateway), batched, bounded and safe to lose.
// Optional component: CMake target `llmfast::http` (with llmfast/curl_transport.hpp, which needs
// libcurl); not part of the umbrella header.
//
//     #include <llmfast/curl_transport.hpp>
//     #include <llmfast/openai_embedder.hpp>
//     using Embedder = llmfast::OpenAiEmbedder<llmfast::CurlTransport>;
//     Embedder embedder({.base_url = "http://127.0.0.1:8080/v1", .model = "bge-m3", .dimension = 1024});
//     llmfast::SemanticCache<Embedder> cache(embedder, {.similarity_threshold = 0.88F});
//
// What one call does:
//   - Inputs are cut to `max_input_tokens` (counted with the TokenCounter `Counter`, at a character
//     boundary; `OpenAiEmbedderStats::inputs_truncated`) rather than failing on the server.
//   - With `batching` on (the default), concurrent `embed` calls from many threads are coalesced by a
//     DynamicBatcher (llmfast/batcher.hpp) into one request with an array `input`: up to
//     `max_batch_size` texts and `max_batch_bytes` of text, waiting at most `max_wait` for company; at
//     most `max_in_flight` requests run at once (the batcher's workers), so a busy server lets the
//     next batch grow. `embed_batch` (the cache uses it on `load`) queues all its texts at once.
//     With batching off every call is its own request, and `max_in_flight` is a semaphore.
//   - Every call has a deadline, `timeout` after it started (on the clock `C`), bounding everything:
//     queueing, every attempt (each also bounded by `attempt_timeout`), and backoff. 429 and 5xx
//     answers and transport failures (refused, reset, timed out) are retried up to `max_retries` times
//     with exponential backoff from `backoff_initial` (doubling, capped at `backoff_max`), or after the
//     server's `Retry-After` when it sent one; a wait longer than what is left of the deadline fails
//     the call at once (DeadlineExceeded) instead of sleeping into certain failure.
//   - A circuit breaker: after `breaker_failures` consecutive failed calls it opens, and calls fail at
//     once (Error(Closed), no request) for `breaker_cooldown`; then one call is let through as a probe
//     (the others still fail fast): its success closes the breaker, its failure opens it again.
//   - The response is parsed strictly (llmfast/detail/embeddings_json.hpp): wrong count, wrong
//     dimension, an out-of-order `index`, NaN/Inf (or a number beyond float), a non-JSON body are
//     Error(InvalidFormat), never a vector. Vectors are L2-normalized (a zero vector stays zero).
//   - `identity()` = model, dimension and the server's host, so a cache snapshot taken with another
//     model, width or server is never loaded as this one's vectors.
// Within SemanticCache, an embedder failure is not a failed request (see semantic_cache.hpp:
// `SemanticCacheOptions::embedder_failure`).
//
// Thread-safety: `embed`, `embed_batch`, `embed_async` and `stats` may be called from any number of
// threads at once on a const object. Copies share one state (one batcher, breaker, stats): the cache
// holds a copy. The last copy's destruction drains the batcher (it blocks until queued calls ended);
// no call may be running on the object being destroyed.
//
// Errors (llmfast::Error codes): the constructor throws InvalidArgument naming the
// OpenAiEmbedderOptions field. `embed` / `embed_batch` throw InvalidArgument (wrong output size, or
// the server rejected the request with a 4xx other than 429 — the message has the status and the
// start of the body), DeadlineExceeded (the deadline passed, or a Retry-After / backoff would pass
// it), IoError (retries exhausted on 5xx / transport failures; the message has the last cause),
// InvalidFormat (a malformed response), Closed (the circuit breaker is open), QueueFull (the batcher's
// queue is full). `embed_async` reports the same errors through its callback.
#pragma once

#include <llmfast/version.hpp>
#include <llmfast/batcher.hpp>
#include <llmfast/clock.hpp>
#include <llmfast/detail/embeddings_json.hpp>
#include <llmfast/detail/saturating.hpp>
#include <llmfast/embedder.hpp>
#include <llmfast/error.hpp>
#include <llmfast/estimating_token_counter.hpp>
#include <llmfast/http_transport.hpp>
#include <llmfast/token_counter.hpp>
#include <llmfast/utf8.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

LLMFAST_BEGIN_NAMESPACE

struct OpenAiEmbedderOptions {
    std::string base_url{};    ///< e.g. "http://127.0.0.1:8080/v1" ("/embeddings" is appended); required
    std::string model{};       ///< the `model` field of the request; required
    std::size_t dimension = 0; ///< the width the server returns (checked on every response); > 0
    /// Send `"dimensions": dimension` in the request (OpenAI's text-embedding-3 models can shorten their
    /// output; most local servers reject or ignore the field).
    bool send_dimensions = false;
    std::string api_key{};     ///< sent as `Authorization: Bearer <key>` when not empty; never in messages
    std::chrono::nanoseconds timeout = std::chrono::seconds(10);        ///< per call, everything included; > 0
    std::chrono::nanoseconds attempt_timeout = std::chrono::seconds(5); ///< per HTTP attempt; > 0
    std::size_t max_retries = 3;                                        ///< retries after the first attempt
    std::chrono::nanoseconds backoff_initial = std::chrono::milliseconds(50);  ///< >= 0
    std::chrono::nanoseconds backoff_max = std::chrono::seconds(2);            ///< >= backoff_initial
    /// Inputs longer than this many tokens (counted with the embedder's TokenCounter) are cut to it;
    /// 0 = never cut. 8191 is OpenAI's limit; a local model with a 512-token window needs 512.
    std::size_t max_input_tokens = 8191;
    std::size_t max_in_flight = 4;  ///< HTTP requests at once; >= 1
    std::size_t breaker_failures = 5;                                   ///< consecutive failed calls that open it; >= 1
    std::chrono::nanoseconds breaker_cooldown = std::chrono::seconds(5);  ///< open this long, then probe; >= 0
    bool batching = true;                     ///< coalesce concurrent calls (see the header comment)
    std::size_t max_batch_size = 64;          ///< texts per request; >= 1
    std::size_t max_batch_bytes = 1U << 20;   ///< bytes of text per request (a longer text goes alone); >= 1
    std::chrono::nanoseconds max_wait = std::chrono::milliseconds(2);  ///< batching wait for company; >= 0
    std::size_t max_queue = 65536;            ///< texts waiting for a batch (QueueFull beyond); >= 1
};

/// A snapshot of the counters (`OpenAiEmbedder::stats()`).
struct OpenAiEmbedderStats {
    std::uint64_t calls = 0;             ///< embedding calls (a batch of texts is one call)
    std::uint64_t texts = 0;             ///< texts embedded successfully
    std::uint64_t requests = 0;          ///< HTTP requests sent (attempts, retries included)
    std::uint64_t retries = 0;           ///< attempts after the first
    std::uint64_t rate_limited = 0;      ///< 429 answers
    std::uint64_t server_errors = 0;     ///< 5xx answers
    std::uint64_t transport_errors = 0;  ///< attempts that got no answer (refused, reset, timed out)
    std::uint64_t malformed = 0;         ///< 2xx answers the parser rejected
    std::uint64_t failures = 0;          ///< calls that ended with an error (breaker rejections included)
    std::uint64_t inputs_truncated = 0;  ///< texts cut to max_input_tokens
    std::uint64_t breaker_opens = 0;     ///< times the circuit breaker opened
    std::uint64_t breaker_rejections = 0;  ///< calls failed at once because it was open
    bool breaker_open = false;           ///< open (or half-open, probing) now
};

namespace detail {

/// The host[:port] of an http(s) URL ("" when there is none).
inline std::string_view url_host(std::string_view url) noexcept {
    const std::size_t scheme = url.find("://");
    if (scheme != std::string_view::npos) url.remove_prefix(scheme + 3);
    const std::size_t at = url.find('@');
    const std::size_t slash = url.find('/');
    if (at != std::string_view::npos && at < slash) url.remove_prefix(at + 1);  // never keep credentials
    return url.substr(0, url.find('/'));
}

/// The longest prefix of `text` that `counter` prices at most `max_tokens`, cut at a character
/// boundary: the counter's own `truncate` when it has one, else a binary search over boundaries.
template <class Counter>
std::string_view cut_to_tokens(const Counter& counter, std::string_view text, std::size_t max_tokens) {
    if constexpr (requires { { counter.truncate(text, max_tokens) } -> std::convertible_to<std::string_view>; }) {
        return counter.truncate(text, max_tokens);
    } else {
        std::size_t lo = 0, hi = text.size();  // invariant: count(text[0, lo)) <= max_tokens
        while (lo < hi) {
            const std::size_t mid = utf8::ceil_boundary(text, lo + (hi - lo + 1) / 2);
            if (mid > hi || mid <= lo) break;
            if (static_cast<std::size_t>(counter.count(text.substr(0, mid))) <= max_tokens) {
                lo = mid;
            } else {
                hi = utf8::floor_boundary(text, mid - 1);
                if (hi < lo) hi = lo;
            }
        }
        return text.substr(0, lo);
    }
}

}  // namespace detail

/// An `Embedder` over an OpenAI-compatible embeddings endpoint (see the header comment).
/// `Transport` models HttpTransport, `Counter` models TokenCounter, `C` models Clock.
/// Thread-safety: every member may be called concurrently; copies share their state.
template <class Transport, class Counter = EstimatingTokenCounter, class C = SteadyClock>
class OpenAiEmbedder {
    static_assert(HttpTransport<Transport>,
                  "llmfast::OpenAiEmbedder<Transport>: Transport must model llmfast::HttpTransport — it needs a "
                  "const post(const llmfast::HttpRequest&) returning llmfast::HttpResponse");
    static_assert(TokenCounter<Counter>,
                  "llmfast::OpenAiEmbedder<Transport, Counter>: Counter must model llmfast::TokenCounter — it "
                  "needs a const count(std::string_view) convertible to std::size_t");
    static_assert(Clock<C>, "llmfast::OpenAiEmbedder<Transport, Counter, C>: C must model llmfast::Clock — it needs "
                            "nested `duration` and `time_point` and a const now()");

public:
    using Options = OpenAiEmbedderOptions;
    using time_point = typename C::time_point;

    /// With a stateless clock (the default SteadyClock).
    explicit OpenAiEmbedder(Options options = {}, Transport transport = Transport{}, Counter counter = Counter{})
        requires ClockRef<C>::stateless
        : OpenAiEmbedder(C{}, std::move(options), std::move(transport), std::move(counter)) {}

    /// Reads time from `clock` (a stateful one, e.g. ManualClock, must outlive every copy).
    explicit OpenAiEmbedder(const C& clock, Options options = {}, Transport transport = Transport{}, Counter counter = Counter{})
        : state_(std::make_shared<State>(clock, validated(std::move(options)), std::move(transport), std::move(counter))) {}

    [[nodiscard]] std::size_t dimension() const noexcept { return state_->options.dimension; }

    /// "openai-embeddings model=<model> dim=<n> host=<host>": snapshots of another model, width or
    /// server are refused (CorruptSnapshot) rather than mixed in.
    [[nodiscard]] std::string identity() const {
        return fmt::format("openai-embeddings model={} dim={} host={}", state_->options.model, state_->options.dimension,
                           detail::url_host(state_->options.base_url));
    }

    /// Embeds `text` into `out` (dimension() floats, L2-normalized). Throws as the header comment says.
    void embed(std::string_view text, std::span<float> out) const {
        State& s = *state_;
        if (out.size() != s.options.dimension)
            throw Error(ErrorCode::InvalidArgument,
                        fmt::format("OpenAiEmbedder::embed: output has {} floats, dimension is {}", out.size(), s.options.dimension));
        const std::string_view one[1] = {text};
        if (!s.batcher) {
            s.request(one, s.deadline(), out);
            return;
        }
        Outcome outcome = s.batcher->submit(Item{std::string(text), s.deadline()}, {.deadline = s.deadline()}).get();
        if (outcome.error) std::rethrow_exception(outcome.error);
        std::copy(outcome.vector.begin(), outcome.vector.end(), out.begin());
    }

    /// Embeds `texts` into `out` (row i = texts[i]). With batching, all texts are queued at once (and
    /// share requests with concurrent callers); without, they go in requests of max_batch_size texts.
    /// The first failure is thrown (after every queued text ended).
    void embed_batch(std::span<const std::string_view> texts, std::span<float> out) const {
        State& s = *state_;
        const std::size_t dim = s.options.dimension;
        if (out.size() != texts.size() * dim)
            throw Error(ErrorCode::InvalidArgument,
                        fmt::format("OpenAiEmbedder::embed_batch: output has {} floats, texts.size() * dimension() is {}",
                                    out.size(), texts.size() * dim));
        const time_point deadline = s.deadline();
        if (!s.batcher) {
            for (std::size_t first = 0; first < texts.size(); first += s.options.max_batch_size) {
                const std::size_t n = std::min(s.options.max_batch_size, texts.size() - first);
                s.request(texts.subspan(first, n), deadline, out.subspan(first * dim, n * dim));
            }
            return;
        }
        std::vector<std::future<Outcome>> futures;
        futures.reserve(texts.size());
        std::exception_ptr first_error;
        for (const std::string_view text : texts) {
            try {
                futures.push_back(s.batcher->submit(Item{std::string(text), deadline}, {.deadline = deadline}));
            } catch (...) {
                first_error = std::current_exception();
                break;
            }
        }
        for (std::size_t i = 0; i < futures.size(); ++i) {
            Outcome outcome = futures[i].get();
            if (outcome.error) {
                if (!first_error) first_error = outcome.error;
            } else if (!first_error) {
                std::copy(outcome.vector.begin(), outcome.vector.end(), out.begin() + static_cast<std::ptrdiff_t>(i * dim));
            }
        }
        if (first_error) std::rethrow_exception(first_error);
    }

    /// The non-blocking form: `done(std::vector<float>&& vector, std::exception_ptr error)` runs exactly
    /// once — on a batcher thread with batching on (never on this thread, unless the submission itself
    /// fails, e.g. QueueFull: then on this thread before returning), on this thread after a blocking
    /// call with batching off. `vector` is empty when `error` is set. `done` must not throw.
    template <class F>
        requires std::invocable<std::decay_t<F>&, std::vector<float>&&, std::exception_ptr>
    void embed_async(std::string_view text, F&& done) const {
        State& s = *state_;
        std::decay_t<F> callback(std::forward<F>(done));
        if (!s.batcher) {
            std::vector<float> vector(s.options.dimension);
            std::exception_ptr error;
            try {
                const std::string_view one[1] = {text};
                s.request(one, s.deadline(), vector);
            } catch (...) {
                error = std::current_exception();
                vector.clear();
            }
            callback(std::move(vector), std::move(error));
            return;
        }
        // The batcher's inline callback storage is small: the user's callable lives on the heap.
        auto holder = std::make_shared<std::decay_t<F>>(std::move(callback));
        const time_point deadline = s.deadline();
        try {
            s.batcher->submit(Item{std::string(text), deadline}, {.deadline = deadline},
                              [holder](BatchResult<Outcome>&& result) {
                                  if (!result.ok()) {
                                      (*holder)(std::vector<float>{}, result.exception());
                                      return;
                                  }
                                  Outcome outcome = std::move(result).value();
                                  (*holder)(std::move(outcome.vector), std::move(outcome.error));
                              });
        } catch (...) {
            (*holder)(std::vector<float>{}, std::current_exception());
        }
    }

    [[nodiscard]] OpenAiEmbedderStats stats() const {
        const State& s = *state_;
        OpenAiEmbedderStats out;
        out.calls = s.calls.load(std::memory_order_relaxed);
        out.texts = s.texts_ok.load(std::memory_order_relaxed);
        out.requests = s.requests.load(std::memory_order_relaxed);
        out.retries = s.retries.load(std::memory_order_relaxed);
        out.rate_limited = s.rate_limited.load(std::memory_order_relaxed);
        out.server_errors = s.server_errors.load(std::memory_order_relaxed);
        out.transport_errors = s.transport_errors.load(std::memory_order_relaxed);
        out.malformed = s.malformed.load(std::memory_order_relaxed);
        out.failures = s.failures.load(std::memory_order_relaxed);
        out.inputs_truncated = s.inputs_truncated.load(std::memory_order_relaxed);
        std::lock_guard lock(s.mutex);
        out.breaker_opens = s.breaker_opens;
        out.breaker_rejections = s.breaker_rejections;
        out.breaker_open = s.breaker != Breaker::Closed;
        return out;
    }

    [[nodiscard]] const Options& options() const noexcept { return state_->options; }

private:
    struct Item {
        std::string text;
        time_point deadline;
    };
    /// One text's result; the handler never throws, so an error keeps its own code (a batcher
    /// HandlerFailed would hide DeadlineExceeded / InvalidFormat behind one code).
    struct Outcome {
        std::vector<float> vector;
        std::exception_ptr error;
    };
    enum class Breaker : std::uint8_t { Closed, Open, HalfOpen };
    using Batcher = DynamicBatcher<Item, Outcome, BatchFunction<Item, Outcome>, C>;

    static Options validated(Options o) {
        const auto fail = [](std::string message) { throw Error(ErrorCode::InvalidArgument, std::move(message)); };
        while (!o.base_url.empty() && o.base_url.back() == '/') o.base_url.pop_back();
        if (o.base_url.empty()) fail("OpenAiEmbedderOptions::base_url must not be empty (e.g. \"http://127.0.0.1:8080/v1\")");
        if (o.model.empty()) fail("OpenAiEmbedderOptions::model must not be empty");
        if (o.dimension == 0) fail(fmt::format("OpenAiEmbedderOptions::dimension must be > 0 (got {})", o.dimension));
        if (o.timeout <= std::chrono::nanoseconds::zero())
            fail(fmt::format("OpenAiEmbedderOptions::timeout must be > 0 (got {} ns)", o.timeout.count()));
        if (o.attempt_timeout <= std::chrono::nanoseconds::zero())
            fail(fmt::format("OpenAiEmbedderOptions::attempt_timeout must be > 0 (got {} ns)", o.attempt_timeout.count()));
        if (o.backoff_initial < std::chrono::nanoseconds::zero())
            fail(fmt::format("OpenAiEmbedderOptions::backoff_initial must be >= 0 (got {} ns)", o.backoff_initial.count()));
        if (o.backoff_max < o.backoff_initial)
            fail(fmt::format("OpenAiEmbedderOptions::backoff_max must be >= backoff_initial (got {} ns < {} ns)",
                             o.backoff_max.count(), o.backoff_initial.count()));
        if (o.max_in_flight == 0) fail(fmt::format("OpenAiEmbedderOptions::max_in_flight must be >= 1 (got {})", o.max_in_flight));
        if (o.breaker_failures == 0)
            fail(fmt::format("OpenAiEmbedderOptions::breaker_failures must be >= 1 (got {})", o.breaker_failures));
        if (o.breaker_cooldown < std::chrono::nanoseconds::zero())
            fail(fmt::format("OpenAiEmbedderOptions::breaker_cooldown must be >= 0 (got {} ns)", o.breaker_cooldown.count()));
        if (o.max_batch_size == 0) fail(fmt::format("OpenAiEmbedderOptions::max_batch_size must be >= 1 (got {})", o.max_batch_size));
        if (o.max_batch_bytes == 0) fail(fmt::format("OpenAiEmbedderOptions::max_batch_bytes must be >= 1 (got {})", o.max_batch_bytes));
        if (o.max_wait < std::chrono::nanoseconds::zero())
            fail(fmt::format("OpenAiEmbedderOptions::max_wait must be >= 0 (got {} ns)", o.max_wait.count()));
        if (o.max_queue == 0) fail(fmt::format("OpenAiEmbedderOptions::max_queue must be >= 1 (got {})", o.max_queue));
        return o;
    }

    struct State {
        State(const C& clock_in, Options options_in, Transport transport_in, Counter counter_in)
            : options(std::move(options_in)), transport(std::move(transport_in)), counter(std::move(counter_in)),
              clock(clock_in), url(options.base_url + "/embeddings") {
            headers.emplace_back("Content-Type", "application/json");
            headers.emplace_back("Accept", "application/json");
            if (!options.api_key.empty()) headers.emplace_back("Authorization", "Bearer " + options.api_key);
            if (options.batching) {
                // One worker per request in flight: the cap is the batcher's concurrency.
                batcher = std::make_unique<Batcher>(
                    clock_in, [this](std::span<Item> items) { return run_batch(items); },
                    BatcherOptions{.max_batch_size = options.max_batch_size,
                                   .max_batch_cost = options.max_batch_bytes,
                                   .max_wait = options.max_wait,
                                   .max_queue = options.max_queue,
                                   .workers = options.max_in_flight,
                                   .priority_levels = 1},
                    [](const Item& item) { return std::max<std::size_t>(1, item.text.size()); });
            }
        }
        State(const State&) = delete;
        State& operator=(const State&) = delete;
        ~State() {
            if (batcher) batcher->close();  // drain before the members the handler uses go
        }

        time_point deadline() const { return detail::saturating_add(clock.now(), options.timeout); }

        std::vector<Outcome> run_batch(std::span<Item> items) {
            std::vector<Outcome> outcomes(items.size());
            time_point deadline_all = time_point::max();
            std::vector<std::string_view> batch;
            batch.reserve(items.size());
            for (const Item& item : items) {
                deadline_all = std::min(deadline_all, item.deadline);
                batch.push_back(item.text);
            }
            const std::size_t dim = options.dimension;
            std::vector<float> rows;
            try {
                rows.resize(items.size() * dim);
                request(batch, deadline_all, rows);
                for (std::size_t i = 0; i < items.size(); ++i)
                    outcomes[i].vector.assign(rows.begin() + static_cast<std::ptrdiff_t>(i * dim),
                                              rows.begin() + static_cast<std::ptrdiff_t>((i + 1) * dim));
            } catch (const Error& e) {
                fail_all(outcomes, e);
            } catch (const std::exception& e) {
                fail_all(outcomes, Error(ErrorCode::IoError, fmt::format("OpenAiEmbedder: {}", e.what())));
            } catch (...) {
                fail_all(outcomes, Error(ErrorCode::IoError, "OpenAiEmbedder: a non-std exception"));
            }
            return outcomes;
        }

        // One exception object per caller: each rethrows it on its own thread, and a shared object's
        // reference count lives in the (uninstrumented) runtime, which ThreadSanitizer cannot follow.
        static void fail_all(std::vector<Outcome>& outcomes, const Error& error) {
            for (Outcome& outcome : outcomes) {
                outcome.vector.clear();
                outcome.error = std::make_exception_ptr(error);
            }
        }

        // ---- the breaker (under mutex) ----
        void admit(time_point now) {
            std::lock_guard lock(mutex);
            if (breaker == Breaker::Closed) return;
            if (breaker == Breaker::Open && now >= open_until) {
                breaker = Breaker::HalfOpen;  // this call is the probe
                return;
            }
            ++breaker_rejections;
            failures.fetch_add(1, std::memory_order_relaxed);
            const auto wait = breaker == Breaker::Open ? std::chrono::duration_cast<std::chrono::milliseconds>(open_until - now).count() : 0;
            throw Error(ErrorCode::Closed,
                        breaker == Breaker::Open
                            ? fmt::format("OpenAiEmbedder: circuit open after {} consecutive failures (last: {}); next probe in {} ms",
                                          consecutive_failures, last_failure, wait)
                            : fmt::format("OpenAiEmbedder: circuit half-open, a probe request is running (last failure: {})", last_failure));
        }
        void succeeded() {
            std::lock_guard lock(mutex);
            consecutive_failures = 0;
            breaker = Breaker::Closed;
        }
        void failed(const std::string& what, time_point now) {
            failures.fetch_add(1, std::memory_order_relaxed);
            std::lock_guard lock(mutex);
            last_failure = what;
            ++consecutive_failures;
            if (breaker == Breaker::HalfOpen || (breaker == Breaker::Closed && consecutive_failures >= options.breaker_failures)) {
                breaker = Breaker::Open;
                open_until = detail::saturating_add(now, options.breaker_cooldown);
                ++breaker_opens;
            }
        }

        // ---- the in-flight cap without batching (with batching the workers are the cap) ----
        bool acquire(time_point deadline_at) {
            if (batcher) return true;
            std::unique_lock lock(mutex);
            while (in_flight >= options.max_in_flight) {
                const time_point now = clock.now();
                if (now >= deadline_at) return false;
                slot_cv.wait_for(lock, std::min<std::chrono::nanoseconds>(deadline_at - now, std::chrono::milliseconds(1)));
            }
            ++in_flight;
            return true;
        }
        void release() {
            if (batcher) return;
            {
                std::lock_guard lock(mutex);
                --in_flight;
            }
            slot_cv.notify_one();
        }

        [[noreturn]] void give_up(ErrorCode code, const std::string& what, time_point now) {
            failed(what, now);
            throw Error(code, fmt::format("OpenAiEmbedder: {}", what));
        }

        // One call: `texts` -> `out` (texts.size() * dimension floats), by `deadline_at`.
        void request(std::span<const std::string_view> batch, time_point deadline_at, std::span<float> out) {
            calls.fetch_add(1, std::memory_order_relaxed);
            admit(clock.now());
            std::vector<std::string_view> inputs(batch.begin(), batch.end());
            if (options.max_input_tokens != 0) {
                for (std::string_view& text : inputs) {
                    if (static_cast<std::size_t>(counter.count(text)) <= options.max_input_tokens) continue;
                    text = detail::cut_to_tokens(counter, text, options.max_input_tokens);
                    inputs_truncated.fetch_add(1, std::memory_order_relaxed);
                }
            }
            HttpRequest http{url, headers, detail::embeddings_request_body(options.model, inputs, options.send_dimensions ? options.dimension : 0), {}};
            std::chrono::nanoseconds backoff = options.backoff_initial;
            std::string last = "no attempt";
            for (std::size_t attempt = 0;; ++attempt) {
                time_point now = clock.now();
                if (now >= deadline_at)
                    give_up(ErrorCode::DeadlineExceeded, fmt::format("{}: deadline passed after {} attempts (last: {})", url, attempt, last), now);
                if (!acquire(deadline_at))
                    give_up(ErrorCode::DeadlineExceeded,
                            fmt::format("{}: deadline passed waiting for one of {} requests in flight", url, options.max_in_flight), clock.now());
                if (attempt > 0) retries.fetch_add(1, std::memory_order_relaxed);
                requests.fetch_add(1, std::memory_order_relaxed);
                http.timeout = std::min<std::chrono::nanoseconds>(
                    options.attempt_timeout, std::chrono::duration_cast<std::chrono::nanoseconds>(deadline_at - clock.now()));
                if (http.timeout <= std::chrono::nanoseconds::zero()) http.timeout = std::chrono::nanoseconds(1);
                std::optional<HttpResponse> response;
                try {
                    response = HttpResponse(transport.post(http));
                } catch (const std::exception& e) {
                    last = e.what();
                    transport_errors.fetch_add(1, std::memory_order_relaxed);
                } catch (...) {
                    last = "the transport threw a non-std exception";
                    transport_errors.fetch_add(1, std::memory_order_relaxed);
                }
                release();
                now = clock.now();
                std::optional<std::chrono::nanoseconds> wait;
                if (response) {
                    const int status = response->status;
                    if (status >= 200 && status < 300) {
                        try {
                            detail::parse_embeddings_response(response->body, inputs.size(), options.dimension, out);
                        } catch (const Error& e) {
                            malformed.fetch_add(1, std::memory_order_relaxed);
                            give_up(ErrorCode::InvalidFormat, fmt::format("{}: {}", url, e.what()), now);
                        }
                        normalize(out);
                        texts_done(inputs.size());
                        succeeded();
                        return;
                    }
                    last = fmt::format("HTTP {}: {}", status, excerpt(response->body));
                    if (status == 429) {
                        rate_limited.fetch_add(1, std::memory_order_relaxed);
                        wait = response->retry_after;
                    } else if (status >= 500) {
                        server_errors.fetch_add(1, std::memory_order_relaxed);
                        wait = response->retry_after;
                    } else {
                        give_up(ErrorCode::InvalidArgument, fmt::format("{} rejected the request: {}", url, last), now);
                    }
                }
                if (attempt >= options.max_retries)
                    give_up(ErrorCode::IoError, fmt::format("{}: gave up after {} attempts (last: {})", url, attempt + 1, last), now);
                const std::chrono::nanoseconds pause = wait.value_or(backoff);
                backoff = std::min(options.backoff_max, detail::saturating_add(backoff, backoff));
                const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline_at - now);
                if (pause >= left)
                    give_up(ErrorCode::DeadlineExceeded,
                            fmt::format("{}: {} asks to wait {} ms before retrying, only {} ms left of the deadline", url, last,
                                        std::chrono::duration_cast<std::chrono::milliseconds>(pause).count(),
                                        std::chrono::duration_cast<std::chrono::milliseconds>(left).count()),
                            now);
                if (pause > std::chrono::nanoseconds::zero()) std::this_thread::sleep_for(pause);
            }
        }

        void texts_done(std::size_t n) noexcept { texts_ok.fetch_add(n, std::memory_order_relaxed); }

        void normalize(std::span<float> out) const noexcept {
            const std::size_t dim = options.dimension;
            for (std::size_t row = 0; row + dim <= out.size(); row += dim) {
                double norm = 0;
                for (std::size_t i = row; i < row + dim; ++i) norm += static_cast<double>(out[i]) * static_cast<double>(out[i]);
                if (!(norm > 0) || !std::isfinite(norm)) continue;
                const double inv = 1.0 / std::sqrt(norm);
                for (std::size_t i = row; i < row + dim; ++i) out[i] = static_cast<float>(static_cast<double>(out[i]) * inv);
            }
        }

        static std::string excerpt(std::string_view body) {
            constexpr std::size_t limit = 200;
            std::string cut = utf8::repair(body.substr(0, utf8::floor_boundary(body, std::min(body.size(), limit))));
            for (char& ch : cut)
                if (static_cast<unsigned char>(ch) < 0x20U) ch = ' ';
            if (body.size() > limit) cut += "...";
            return cut;
        }

        const Options options;
        const Transport transport;
        const Counter counter;
        ClockRef<C> clock;
        const std::string url;
        std::vector<std::pair<std::string, std::string>> headers;

        mutable std::mutex mutex;
        std::condition_variable slot_cv;
        // --- guarded by mutex ---
        std::size_t in_flight = 0;
        Breaker breaker = Breaker::Closed;
        std::size_t consecutive_failures = 0;
        time_point open_until{};
        std::string last_failure;
        std::uint64_t breaker_opens = 0, breaker_rejections = 0;
        // --- end guarded ---
        std::atomic<std::uint64_t> calls{0}, texts_ok{0}, requests{0}, retries{0}, rate_limited{0}, server_errors{0},
            transport_errors{0}, malformed{0}, failures{0}, inputs_truncated{0};
        std::unique_ptr<Batcher> batcher;  // last: destroyed (drained) first
    };

    std::shared_ptr<State> state_;
};

LLMFAST_END_NAMESPACE
