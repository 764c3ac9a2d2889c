// Package consume test: the optional HTTP embedder (needs libcurl and llmfast::http). No server: it
// checks that the headers compile and link against libcurl, and that a refused connection is an
// llmfast::Error, not a hang.
#include <llmfast/curl_transport.hpp>
#include <llmfast/openai_embedder.hpp>

#include <chrono>
#include <cstdio>
#include <vector>

int main() {
    using Embedder = llmfast::OpenAiEmbedder<llmfast::CurlTransport>;
    static_assert(llmfast::Embedder<Embedder>);
    // Port 1 on loopback: nothing listens there, so the connect is refused at once.
    Embedder embedder({.base_url = "http://127.0.0.1:1/v1", .model = "m", .dimension = 4,
                       .timeout = std::chrono::seconds(2), .max_retries = 0});
    std::vector<float> v(4);
    try {
        embedder.embed("hello", v);
    } catch (const llmfast::Error& e) {
        std::printf("http ok (%s)\n", e.what());
        return 0;
    }
    std::printf("http: expected an error\n");
    return 1;
}
