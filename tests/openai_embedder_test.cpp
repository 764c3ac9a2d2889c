// Tests of llmfast/openai_embedder.hpp (with llmfast/curl_transport.hpp and llmfast/http_transport.hpp)
// against a scripted stub server on 127.0.0.1 (tests/stub_http_server.hpp), and of the parts that need
// no network (breaker, options) through a fake transport and a ManualClock.
#include "catch.hpp"
#include "stub_http_server.hpp"
#include "test_support.hpp"

#include <llmfast/curl_transport.hpp>
#include <llmfast/hashing_embedder.hpp>
#include <llmfast/openai_embedder.hpp>
#include <llmfast/semantic_cache.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using llmfast::ErrorCode;
using llmfast::testing::error_code_of;
using llmfast::testing::StubHttpServer;
using llmfast::testing::StubReply;
using llmfast::testing::StubRequest;

namespace {

constexpr std::size_t dim = 16;
using HttpEmbedder = llmfast::OpenAiEmbedder<llmfast::CurlTransport>;

// What the stub answers for a text: the HashingEmbedder's vector of it, scaled by 3 (so the adapter's
// normalization is visible).
std::vector<float> reference(const std::string& text) {
    static const llmfast::HashingEmbedder hashing({.dimension = dim});
    std::vector<float> v(dim);
    hashing.embed(text, v);
    return v;
}

StubReply embeddings_for(const StubRequest& request) {
    std::vector<std::vector<float>> rows;
    for (const std::string& text : llmfast::testing::stub_inputs(request.body)) {
        std::vector<float> v = reference(text);
        for (float& x : v) x *= 3.0F;
        rows.push_back(std::move(v));
    }
    return {.status = 200, .body = llmfast::testing::stub_embeddings_body(rows)};
}

llmfast::OpenAiEmbedderOptions options_for(const StubHttpServer& server) {
    return {.base_url = server.base_url(), .model = "stub-model", .dimension = dim, .timeout = 5s,
            .attempt_timeout = 5s, .backoff_initial = 1ms, .backoff_max = 5ms, .max_wait = 0ns};
}

void require_close(std::span<const float> got, const std::vector<float>& want) {
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < got.size(); ++i) REQUIRE(std::fabs(got[i] - want[i]) < 1e-5F);
}

std::string message_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const llmfast::Error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("OpenAiEmbedder: options are validated, naming the field") {
    const auto make = [](llmfast::OpenAiEmbedderOptions o) { HttpEmbedder e(std::move(o)); };
    CHECK(error_code_of([&] { make({.model = "m", .dimension = 4}); }) == ErrorCode::InvalidArgument);
    CHECK(message_of([&] { make({.base_url = "http://x", .dimension = 4}); }).find("OpenAiEmbedderOptions::model") != std::string::npos);
    CHECK(message_of([&] { make({.base_url = "http://x", .model = "m"}); }).find("OpenAiEmbedderOptions::dimension") != std::string::npos);
    CHECK(message_of([&] { make({.base_url = "http://x", .model = "m", .dimension = 4, .timeout = 0s}); })
              .find("OpenAiEmbedderOptions::timeout") != std::string::npos);
    CHECK(message_of([&] { make({.base_url = "http://x", .model = "m", .dimension = 4, .max_in_flight = 0}); })
              .find("OpenAiEmbedderOptions::max_in_flight") != std::string::npos);
    CHECK(message_of([&] { make({.base_url = "http://x", .model = "m", .dimension = 4, .breaker_failures = 0}); })
              .find("OpenAiEmbedderOptions::breaker_failures") != std::string::npos);
}

TEST_CASE("OpenAiEmbedder: identity names model, dimension and host; never the key") {
    HttpEmbedder e({.base_url = "http://user:pw@embed.example:8080/v1/", .model = "bge-m3", .dimension = 1024, .api_key = "sk-secret"});
    CHECK(e.identity() == "openai-embeddings model=bge-m3 dim=1024 host=embed.example:8080");
    CHECK(e.dimension() == 1024);
    static_assert(llmfast::Embedder<HttpEmbedder>);
    static_assert(llmfast::embedder_traits<HttpEmbedder>::has_embed_batch);
    static_assert(!llmfast::embedder_traits<HttpEmbedder>::lexical);
}

TEST_CASE("parse_retry_after reads delay-seconds only") {
    CHECK(llmfast::parse_retry_after(" 3\r\n") == std::chrono::nanoseconds(3s));
    CHECK(llmfast::parse_retry_after("0") == std::chrono::nanoseconds(0s));
    CHECK(!llmfast::parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"));
    CHECK(!llmfast::parse_retry_after(""));
    CHECK(!llmfast::parse_retry_after("-1"));
    CHECK(llmfast::parse_retry_after("99999999999999999999") == std::nullopt);
}

TEST_CASE("OpenAiEmbedder: a request with the model, the inputs, the key; normalized vectors") {
    std::mutex mutex;
    std::vector<StubRequest> seen;
    StubHttpServer server([&](const StubRequest& r) {
        std::lock_guard lock(mutex);
        seen.push_back(r);
        return embeddings_for(r);
    });
    auto options = options_for(server);
    options.api_key = "sk-test";
    options.batching = false;
    HttpEmbedder embedder(options);
    std::vector<float> v(dim);
    embedder.embed("什么是机器学习?", v);
    require_close(v, reference("什么是机器学习?"));
    std::vector<std::string_view> texts = {"a \"quoted\" text", "second\nline", "third"};
    std::vector<float> rows(texts.size() * dim);
    embedder.embed_batch(texts, rows);
    for (std::size_t i = 0; i < texts.size(); ++i) require_close(std::span<const float>(rows).subspan(i * dim, dim), reference(std::string(texts[i])));
    std::lock_guard lock(mutex);
    REQUIRE(seen.size() == 2);
    CHECK(seen[0].path == "/v1/embeddings");
    CHECK(seen[0].method == "POST");
    CHECK(seen[0].body.find("\"model\":\"stub-model\"") != std::string::npos);
    CHECK(seen[0].headers.find("Authorization: Bearer sk-test") != std::string::npos);
    CHECK(seen[1].body.find("\"input\":[\"a \\\"quoted\\\" text\",\"second\\nline\",\"third\"]") != std::string::npos);
    CHECK(embedder.stats().texts == 4);
    CHECK(embedder.stats().requests == 2);
}

TEST_CASE("OpenAiEmbedder: failures of the server are clear errors, never a hang") {
    std::atomic<int> mode{0};
    std::atomic<int> calls{0};
    StubHttpServer server([&](const StubRequest& r) -> StubReply {
        const int n = calls.fetch_add(1);
        switch (mode.load()) {
            case 1: return {.delay = 10s};  // stall past every deadline (the stub stops it at shutdown)
            case 2: return {.status = 200, .body = R"({"data":[{"index":0,"embedding":[1,2,3]}]})"};  // wrong dimension
            case 3: {  // wrong count: two embeddings for one input
                std::vector<std::vector<float>> rows(2, std::vector<float>(dim, 1.0F));
                return {.status = 200, .body = llmfast::testing::stub_embeddings_body(rows)};
            }
            case 4: return {.status = 200, .body = "<html>502 Bad Gateway</html>"};  // garbage
            case 5: return {.reset = true};                                          // connection reset
            case 6: return {.status = 401, .body = R"({"error":{"message":"bad key"}})"};
            case 7: return {.status = 500, .body = "boom"};
            case 8: return n % 2 == 0 ? StubReply{.status = 500, .body = "once"} : embeddings_for(r);  // 500 then success
            case 9: return n % 2 == 0 ? StubReply{.reset = true} : embeddings_for(r);                   // reset then success
            default: return embeddings_for(r);
        }
    });
    auto options = options_for(server);
    options.batching = false;
    options.breaker_failures = 1000;  // this test looks at each failure, not at the breaker
    std::vector<float> v(dim);

    SECTION("stall past the deadline: DeadlineExceeded") {
        mode = 1;
        options.timeout = 300ms;
        options.attempt_timeout = 300ms;
        HttpEmbedder embedder(options);
        const std::string what = message_of([&] { embedder.embed("x", v); });
        CHECK(what.rfind("DeadlineExceeded", 0) == 0);
        CHECK(embedder.stats().failures == 1);
    }
    SECTION("wrong dimension, wrong count, garbage: InvalidFormat, not retried") {
        HttpEmbedder embedder(options);
        mode = 2;
        CHECK(message_of([&] { embedder.embed("x", v); }).find("embedding has 3 dimensions, expected 16") != std::string::npos);
        mode = 3;
        CHECK(message_of([&] { embedder.embed("x", v); }).find("more than the 1 embeddings requested") != std::string::npos);
        mode = 4;
        CHECK(error_code_of([&] { embedder.embed("x", v); }) == ErrorCode::InvalidFormat);
        CHECK(embedder.stats().malformed == 3);
        CHECK(embedder.stats().requests == 3);
    }
    SECTION("connection reset: IoError after the retries") {
        mode = 5;
        options.max_retries = 2;
        HttpEmbedder embedder(options);
        const std::string what = message_of([&] { embedder.embed("x", v); });
        CHECK(what.rfind("IoError", 0) == 0);
        CHECK(what.find("gave up after 3 attempts") != std::string::npos);
        CHECK(embedder.stats().transport_errors == 3);
    }
    SECTION("401: InvalidArgument with the status, not retried") {
        mode = 6;
        HttpEmbedder embedder(options);
        const std::string what = message_of([&] { embedder.embed("x", v); });
        CHECK(what.find("HTTP 401") != std::string::npos);
        CHECK(what.find("bad key") != std::string::npos);
        CHECK(embedder.stats().requests == 1);
    }
    SECTION("500 every time: IoError naming the status") {
        mode = 7;
        options.max_retries = 1;
        HttpEmbedder embedder(options);
        CHECK(message_of([&] { embedder.embed("x", v); }).find("HTTP 500: boom") != std::string::npos);
        CHECK(embedder.stats().server_errors == 2);
    }
    SECTION("500 then success; reset then success: retried") {
        HttpEmbedder embedder(options);
        mode = 8;
        calls = 0;
        embedder.embed("hello", v);
        require_close(v, reference("hello"));
        mode = 9;
        calls = 0;
        embedder.embed("world", v);
        require_close(v, reference("world"));
        // The 500 is retried by the embedder; a reset on a reused keep-alive connection may be
        // retried by curl itself on a fresh one (invisible here), so only the 500's retry is certain.
        CHECK(embedder.stats().retries >= 1);
        CHECK(embedder.stats().server_errors == 1);
        CHECK(embedder.stats().failures == 0);
    }
}

TEST_CASE("OpenAiEmbedder: Retry-After is honoured, or gives up at once when it is past the deadline") {
    std::atomic<int> calls{0};
    std::atomic<int> retry_after{1};
    StubHttpServer server([&](const StubRequest& r) -> StubReply {
        if (calls.fetch_add(1) == 0)
            return {.status = 429, .body = "slow down", .headers = {{"Retry-After", std::to_string(retry_after.load())}}};
        return embeddings_for(r);
    });
    auto options = options_for(server);
    options.batching = false;
    std::vector<float> v(dim);
    SECTION("within the deadline: waits, then succeeds") {
        HttpEmbedder embedder(options);
        embedder.embed("hello", v);
        require_close(v, reference("hello"));
        CHECK(embedder.stats().rate_limited == 1);
        CHECK(calls == 2);
    }
    SECTION("past the deadline: DeadlineExceeded without waiting") {
        retry_after = 30;
        options.timeout = 2s;
        HttpEmbedder embedder(options);
        const std::string what = message_of([&] { embedder.embed("hello", v); });
        CHECK(what.rfind("DeadlineExceeded", 0) == 0);
        CHECK(what.find("asks to wait 30000 ms") != std::string::npos);
        CHECK(calls == 1);
    }
}

TEST_CASE("OpenAiEmbedder: inputs over max_input_tokens are cut and counted") {
    std::mutex mutex;
    std::vector<std::string> inputs;
    StubHttpServer server([&](const StubRequest& r) {
        std::lock_guard lock(mutex);
        for (auto& s : llmfast::testing::stub_inputs(r.body)) inputs.push_back(s);
        return embeddings_for(r);
    });
    auto options = options_for(server);
    options.max_input_tokens = 8;
    HttpEmbedder embedder(options);
    std::string long_text;
    for (int i = 0; i < 200; ++i) long_text += "word ";
    std::vector<float> v(dim);
    embedder.embed(long_text, v);
    embedder.embed("short", v);
    std::lock_guard lock(mutex);
    REQUIRE(inputs.size() == 2);
    CHECK(inputs[0].size() < long_text.size());
    CHECK(llmfast::EstimatingTokenCounter{}.count(inputs[0]) <= 8);
    CHECK(long_text.rfind(inputs[0], 0) == 0);  // a prefix
    CHECK(inputs[1] == "short");
    CHECK(embedder.stats().inputs_truncated == 1);
}

TEST_CASE("OpenAiEmbedder batching: many threads, few requests, each caller its own vector") {
    std::atomic<std::size_t> texts_seen{0};
    StubHttpServer server(
        [&](const StubRequest& r) {
            StubReply reply = embeddings_for(r);
            texts_seen += llmfast::testing::stub_input_count(r.body);
            reply.delay = 20ms;  // a busy server: the next batch grows meanwhile
            return reply;
        },
        /*serial=*/true);
    auto options = options_for(server);
    options.max_in_flight = 1;
    options.max_batch_size = 64;
    options.max_wait = 2ms;
    HttpEmbedder embedder(options);
    constexpr int threads = 16, per_thread = 8;
    std::atomic<int> wrong{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            std::vector<float> v(dim);
            for (int i = 0; i < per_thread; ++i) {
                const std::string text = "thread " + std::to_string(t) + " item " + std::to_string(i);
                embedder.embed(text, v);
                const std::vector<float> want = reference(text);
                for (std::size_t k = 0; k < dim; ++k)
                    if (std::fabs(v[k] - want[k]) > 1e-5F) {
                        ++wrong;
                        break;
                    }
            }
        });
    }
    for (auto& t : pool) t.join();
    CHECK(wrong == 0);
    CHECK(texts_seen == threads * per_thread);
    const auto stats = embedder.stats();
    INFO("requests " << stats.requests);
    CHECK(stats.requests <= static_cast<std::uint64_t>(threads * per_thread / 4));
    CHECK(stats.texts == threads * per_thread);
}

TEST_CASE("OpenAiEmbedder batching: a stalled server ends every queued caller at its deadline") {
    StubHttpServer server([](const StubRequest&) { return StubReply{.delay = 10s}; });
    auto options = options_for(server);
    options.timeout = 300ms;
    options.attempt_timeout = 300ms;
    options.max_in_flight = 1;
    HttpEmbedder embedder(options);
    std::atomic<int> deadline_errors{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < 6; ++t) {
        pool.emplace_back([&, t] {
            std::vector<float> v(dim);
            if (error_code_of([&] { embedder.embed("caller " + std::to_string(t), v); }) == ErrorCode::DeadlineExceeded) ++deadline_errors;
        });
    }
    for (auto& t : pool) t.join();
    CHECK(deadline_errors == 6);
    CHECK(embedder.stats().failures >= 1);
}

TEST_CASE("OpenAiEmbedder: embed_async completes on a batcher thread") {
    StubHttpServer server(embeddings_for);
    HttpEmbedder embedder(options_for(server));
    std::promise<std::vector<float>> done;
    const auto caller = std::this_thread::get_id();
    std::atomic<bool> other_thread{false};
    embedder.embed_async("hello", [&](std::vector<float>&& v, std::exception_ptr error) {
        other_thread = std::this_thread::get_id() != caller;
        if (error) done.set_exception(error);
        else done.set_value(std::move(v));
    });
    std::vector<float> v = done.get_future().get();
    require_close(v, reference("hello"));
    CHECK(other_thread);
}

namespace {

// A transport whose answers the test scripts; it counts calls. Shared state: copies share it.
struct FakeTransport {
    struct Script {
        std::atomic<bool> fail{true};
        std::atomic<int> calls{0};
    };
    std::shared_ptr<Script> script = std::make_shared<Script>();
    llmfast::HttpResponse post(const llmfast::HttpRequest& request) const {
        script->calls.fetch_add(1);
        if (script->fail.load()) return {.status = 503, .body = "down"};
        std::vector<std::vector<float>> rows(llmfast::testing::stub_input_count(request.body), std::vector<float>(4, 0.5F));
        return {.status = 200, .body = llmfast::testing::stub_embeddings_body(rows)};
    }
};
static_assert(llmfast::HttpTransport<FakeTransport>);

}  // namespace

TEST_CASE("OpenAiEmbedder circuit breaker: opens, fails fast, probes after the cooldown (ManualClock)") {
    llmfast::ManualClock clock;
    FakeTransport transport;
    llmfast::OpenAiEmbedder<FakeTransport, llmfast::EstimatingTokenCounter, llmfast::ManualClock> embedder(
        clock,
        {.base_url = "http://fake/v1", .model = "m", .dimension = 4, .max_retries = 0, .breaker_failures = 3,
         .breaker_cooldown = 10s, .batching = false},
        transport);
    std::vector<float> v(4);
    for (int i = 0; i < 3; ++i) CHECK(error_code_of([&] { embedder.embed("x", v); }) == ErrorCode::IoError);
    CHECK(transport.script->calls == 3);
    CHECK(embedder.stats().breaker_open);
    CHECK(embedder.stats().breaker_opens == 1);
    // Open: no request reaches the server.
    const std::string what = message_of([&] { embedder.embed("x", v); });
    CHECK(what.rfind("Closed", 0) == 0);
    CHECK(what.find("circuit open after 3 consecutive failures") != std::string::npos);
    CHECK(transport.script->calls == 3);
    // After the cooldown one probe goes through; it fails: open again.
    clock.advance(10s);
    CHECK(error_code_of([&] { embedder.embed("x", v); }) == ErrorCode::IoError);
    CHECK(transport.script->calls == 4);
    CHECK(error_code_of([&] { embedder.embed("x", v); }) == ErrorCode::Closed);
    CHECK(embedder.stats().breaker_opens == 2);
    // The server recovers: the next probe closes the breaker.
    transport.script->fail = false;
    clock.advance(10s);
    embedder.embed("x", v);
    CHECK(std::fabs(v[0] - 0.5F) < 1e-6F);
    CHECK(!embedder.stats().breaker_open);
    embedder.embed("y", v);
    CHECK(transport.script->calls == 6);
    CHECK(embedder.stats().breaker_rejections == 2);
}

TEST_CASE("SemanticCache with the HTTP embedder: async lookups complete off the caller; a dead server is a counted miss") {
    std::atomic<bool> down{false};
    StubHttpServer server([&](const StubRequest& r) -> StubReply {
        if (down.load()) return {.status = 503, .body = "down"};
        return embeddings_for(r);
    });
    auto options = options_for(server);
    options.max_retries = 0;
    HttpEmbedder embedder(options);
    llmfast::SemanticCache<HttpEmbedder> cache(embedder, {.similarity_threshold = 0.5F});
    REQUIRE(cache.semantic_enabled());
    cache.insert("What is machine learning?", "s", "ML");
    const auto lookup = [&](const std::string& prompt) {
        std::promise<llmfast::LookupResult> done;
        cache.lookup_async(prompt, "s", [&](llmfast::LookupResult r) { done.set_value(std::move(r)); });
        return done.get_future().get();
    };
    CHECK(lookup("what is machine learning?").match == llmfast::MatchKind::Exact);
    CHECK(lookup("What is machine learning exactly?").match == llmfast::MatchKind::Semantic);
    down = true;
    CHECK(lookup("What is machine learning, really?").match == llmfast::MatchKind::Miss);
    CHECK(cache.stats().embedder_failures == 1);
    CHECK(!cache.lookup("What is machine learning, honestly?", "s"));  // the blocking form too
    CHECK(cache.stats().embedder_failures == 2);
    CHECK(cache.insert("Define deep learning", "s", "DL"));             // stored exact-only
    CHECK(cache.lookup("define deep learning", "s").match == llmfast::MatchKind::Exact);
    // A snapshot keeps the vectors: loading it needs no server at all.
    const std::string bytes = cache.save_to_string();
    llmfast::SemanticCache<HttpEmbedder> loaded(HttpEmbedder(options), {.similarity_threshold = 0.5F});
    loaded.load_from_string(bytes);
    CHECK(loaded.stats().vectors_loaded == 1);
    CHECK(loaded.stats().embedder_failures == 1);  // the exact-only entry could not be embedded now
    CHECK(loaded.size() == 2);
}
