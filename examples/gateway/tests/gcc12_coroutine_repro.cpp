// examples/gateway/tests/gcc12_coroutine_repro.cpp — not built by CMake: the minimal reproduction of
// the double free that llmfast-gateway hit in UpstreamClient::Impl::exchange (0.2, gateway_chain).
//
// g++ 12.2 (Debian 12.2.0-14) destroys the class temporary of a conditional expression twice when
// that expression is an argument of a coroutine call inside co_await (here the callee suspends once):
//     co_await respond(content_type.empty() ? "application/json" : content_type, std::move(body));
// (the conditional's result is a std::string prvalue: a copy of content_type or one built from the
// literal). Every run, -O0 and -O2 alike, inside a branch or not; clang 14 is fine; a named
// std::string is fine.
//   g++ -std=c++20 -O2 -g gcc12_coroutine_repro.cpp -o repro && ./repro   # free(): double free (abort)
//   clang++ -std=c++20 -O2 gcc12_coroutine_repro.cpp -o repro && ./repro   # ok
// In the gateway it showed up about 1 run in 5 (1 in 6 under valgrind), most likely because Asio
// recycles coroutine frames, so what the second destruction frees varies. The gateway's coroutines
// therefore follow the rule written above exchange (upstream.cpp).
#include <coroutine>
#include <cstdio>
#include <string>
#include <string_view>
#include <deque>
#include <exception>
#include <utility>

std::deque<std::coroutine_handle<>> ready;  // a tiny "event loop"

struct task {
    struct promise_type {
        std::coroutine_handle<> cont;
        task get_return_object() { return task{std::coroutine_handle<promise_type>::from_promise(*this)}; }
        std::suspend_always initial_suspend() noexcept { return {}; }
        struct final_awaiter {
            bool await_ready() noexcept { return false; }
            std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> h) noexcept {
                auto c = h.promise().cont;
                return c ? c : std::noop_coroutine();
            }
            void await_resume() noexcept {}
        };
        final_awaiter final_suspend() noexcept { return {}; }
        void return_void() {}
        void unhandled_exception() { std::terminate(); }
    };
    std::coroutine_handle<promise_type> h;
    explicit task(std::coroutine_handle<promise_type> h) : h(h) {}
    task(task&& o) noexcept : h(std::exchange(o.h, {})) {}
    ~task() { if (h) h.destroy(); }
    bool await_ready() { return false; }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<> c) { h.promise().cont = c; return h; }
    void await_resume() {}
};

struct yield_to_loop {  // suspends; the loop resumes it later from another stack depth
    bool await_ready() { return false; }
    void await_suspend(std::coroutine_handle<> h) { ready.push_back(h); }
    void await_resume() {}
};

std::size_t total = 0;
task respond(std::string_view type, std::string body) {
    co_await yield_to_loop{};
    total += type.size() + body.size();
}

task exchange(const std::string& content_type, bool early) {
    if (!early) {
        std::string body(40, 'x');
        co_await respond(content_type.empty() ? "application/json" : content_type, std::move(body));
        co_return;
    }
    co_return;
}

int main(int argc, char**) {
    const std::string content_type = "application/json";  // 16 chars: heap-allocated, like the upstream's header
    {
        task t = exchange(content_type, argc > 5);  // argc: keeps the branch opaque to the optimizer
        t.h.resume();

        while (!ready.empty()) {
            auto h = ready.front();
            ready.pop_front();
            h.resume();
        }
    }
    std::printf("ok %zu\n", total);
}
