// fuzz_gateway_config — llmfast-gateway's config-file parser (load_config_text in
// examples/gateway/parsing.cpp) against its documented contract (config.hpp):
//   - it throws ConfigError and nothing else, whatever the bytes, and its message names where
//     (the file, or a field path such as `models.m.upstreams[1].url`);
//   - when it accepts the text, every value satisfies the documented limits (durations at most a day,
//     max_attempts 1..100, batching 1..1024, admission max_running >= 1, a context window 0 or >= 16,
//     a known encoding, upstream URLs with a host and a port in 1..65535, the latency model valid,
//     sim models without duplicates).
// Files named by the input (api_key_file) are read only when they are regular files of <= 64 MiB.
#include "../config.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

[[noreturn]] void fail(const char* what, std::string_view detail = {}) {
    std::fprintf(stderr, "contract violated: %s %.*s\n", what, static_cast<int>(detail.size()), detail.data());
    std::abort();
}

void check_ms(std::chrono::milliseconds d, bool zero_ok) {
    if (d.count() > 86'400'000 || d.count() < (zero_ok ? 0 : 1)) fail("a duration out of [0/1 ms, 1 day]");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    gateway::Config config;
    try {
        gateway::load_config_text(text, "fuzz.json", config);
    } catch (const gateway::ConfigError& e) {
        if (std::string_view(e.what()).empty()) fail("ConfigError without a message");
        return 0;
    } catch (const std::exception& e) {
        fail("an exception other than ConfigError", e.what());
    }
    const gateway::Limits& l = config.limits;
    for (const auto d : {l.idle_timeout, l.request_read_timeout, l.write_timeout, l.request_deadline, l.connect_timeout,
                         l.first_byte_timeout, l.read_timeout, l.drain_grace})
        check_ms(d, false);
    check_ms(l.backoff, true);
    check_ms(l.cooldown, true);
    if (l.max_attempts < 1 || l.max_attempts > 100) fail("max_attempts out of [1, 100]");
    if (l.max_body_bytes < 1 || l.max_json_depth < 2 || l.max_messages < 1 || l.max_tokens < 1 || l.max_header_bytes < 256)
        fail("a size limit out of range");
    if (l.max_client_buffer_bytes < 1024) fail("max_client_buffer_bytes < 1024");
    if (config.batching.max_batch_size < 1 || config.batching.max_batch_size > 1024) fail("batching.max_batch_size");
    check_ms(config.batching.max_wait, true);
    if (config.admission.max_running < 1 || config.admission.max_queue_tokens < 1) fail("admission limits");
    try {
        config.latency.validate();
    } catch (const std::exception& e) {
        fail("an invalid latency model accepted", e.what());
    }
    for (const auto& [name, prompt] : config.prompt) {
        if (name.empty()) fail("an empty model name");
        if (prompt.context_window != 0 && prompt.context_window < 16) fail("context_window in [1, 15]");
        if (prompt.encoding != "cl100k_base" && prompt.encoding != "o200k_base") fail("unknown encoding", prompt.encoding);
        for (const auto& rule : prompt.rules)
            if (rule.pattern.empty()) fail("an empty compression pattern");
    }
    for (const auto& model : config.models) {
        if (model.upstreams.empty()) fail("a model without upstreams");
        for (const auto& up : model.upstreams) {
            unsigned port = 0;
            const auto [end, ec] = std::from_chars(up.url.port.data(), up.url.port.data() + up.url.port.size(), port);
            if (up.url.host.empty() || ec != std::errc{} || port < 1 || port > 65535) fail("an upstream URL without host or port");
        }
    }
    auto sims = config.sim_models;
    std::sort(sims.begin(), sims.end());
    if (std::adjacent_find(sims.begin(), sims.end()) != sims.end()) fail("duplicate sim models");
    return 0;
}
