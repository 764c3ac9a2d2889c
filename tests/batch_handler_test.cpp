#include <llmfast/batch_handler.hpp>

#include "catch.hpp"

#include <functional>
#include <span>
#include <string>
#include <vector>

namespace {

struct Echo {
    std::vector<std::string> operator()(std::span<std::string> batch) const { return {batch.begin(), batch.end()}; }
};
struct Mutating {  // a handler that keeps state is called as a non-const lvalue
    int calls = 0;
    std::vector<int> operator()(std::span<int> batch) {
        ++calls;
        return std::vector<int>(batch.size(), calls);
    }
};
struct WrongResult {
    int operator()(std::span<int>) const { return 0; }
};
struct WrongArgument {
    std::vector<int> operator()(const std::vector<int>&) const { return {}; }
};

}  // namespace

TEST_CASE("BatchHandler: callable with span<Req>, returning vector<Resp>", "[batcher][concept]") {
    STATIC_REQUIRE(llmfast::BatchHandler<Echo, std::string, std::string>);
    STATIC_REQUIRE(llmfast::BatchHandler<Mutating, int, int>);
    STATIC_REQUIRE(llmfast::BatchHandler<std::function<std::vector<int>(std::span<int>)>, int, int>);
    auto lambda = [](std::span<int> batch) { return std::vector<long>(batch.begin(), batch.end()); };
    STATIC_REQUIRE(llmfast::BatchHandler<decltype(lambda), int, long>);
    STATIC_REQUIRE(!llmfast::BatchHandler<WrongResult, int, int>);
    STATIC_REQUIRE(!llmfast::BatchHandler<WrongArgument, int, int>);
    STATIC_REQUIRE(!llmfast::BatchHandler<Echo, int, int>);
    std::vector<int> requests = {1, 2, 3};
    Mutating handler;
    CHECK(handler(std::span<int>(requests)) == std::vector<int>{1, 1, 1});
}
