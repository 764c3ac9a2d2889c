#include <llmfast/streaming_generator.hpp>

#include "catch.hpp"

#include <memory>
#include <ranges>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

using llmfast::elements_of;
using llmfast::StreamingGenerator;

static_assert(std::ranges::input_range<StreamingGenerator<int>>);
static_assert(std::ranges::view<StreamingGenerator<int>>);
static_assert(!std::ranges::forward_range<StreamingGenerator<int>>);
static_assert(std::is_nothrow_move_constructible_v<StreamingGenerator<int>>);
static_assert(!std::is_copy_constructible_v<StreamingGenerator<int>>);
static_assert(!std::is_copy_assignable_v<StreamingGenerator<int>>);
static_assert(std::same_as<std::ranges::range_reference_t<StreamingGenerator<int>>, int&&>);
static_assert(std::same_as<std::ranges::range_reference_t<StreamingGenerator<const std::string&>>, const std::string&>);
static_assert(std::same_as<std::ranges::range_value_t<StreamingGenerator<const std::string&>>, std::string>);

namespace {

StreamingGenerator<int> count_to(int n) {
    for (int i = 1; i <= n; ++i) co_yield i;
}

std::vector<int> collect(StreamingGenerator<int> gen) {
    std::vector<int> out;
    for (int value : gen) out.push_back(value);
    return out;
}

// Counts copies and moves so tests can prove that yielding does neither.
struct Tracked {
    explicit Tracked(int v, int* copies, int* moves) : value(v), copies_(copies), moves_(moves) {}
    Tracked(const Tracked& other) : value(other.value), copies_(other.copies_), moves_(other.moves_) { ++*copies_; }
    Tracked(Tracked&& other) noexcept : value(other.value), copies_(other.copies_), moves_(other.moves_) { ++*moves_; }
    Tracked& operator=(const Tracked&) = delete;
    Tracked& operator=(Tracked&&) = delete;
    ~Tracked() = default;
    int value;
    int* copies_;
    int* moves_;
};

}  // namespace

TEST_CASE("a generator yields its values lazily, in order", "[generator]") {
    int started = 0;
    auto gen = [](int* flag) -> StreamingGenerator<int> {
        ++*flag;
        co_yield 10;
        co_yield 20;
    }(&started);
    CHECK(started == 0);  // nothing runs before begin()
    auto it = gen.begin();
    CHECK(started == 1);
    REQUIRE(it != gen.end());
    CHECK(*it == 10);
    ++it;
    CHECK(*it == 20);
    it++;
    CHECK(it == gen.end());
    CHECK(collect(count_to(0)).empty());
    CHECK(collect(count_to(5)) == std::vector<int>{1, 2, 3, 4, 5});
}

TEST_CASE("a default-constructed or moved-from generator is empty", "[generator]") {
    StreamingGenerator<int> empty;
    CHECK(empty.begin() == empty.end());
    auto gen = count_to(3);
    StreamingGenerator<int> moved = std::move(gen);
    CHECK(gen.begin() == gen.end());  // NOLINT(bugprone-use-after-move): defined empty state
    CHECK(collect(std::move(moved)) == std::vector<int>{1, 2, 3});
    StreamingGenerator<int> assigned;
    assigned = count_to(2);
    CHECK(collect(std::move(assigned)) == std::vector<int>{1, 2});
}

TEST_CASE("generators compose with <ranges> views", "[generator]") {
    std::vector<int> out;
    for (int v : count_to(10) | std::views::filter([](int i) { return i % 2 == 0; }) |
                     std::views::transform([](int i) { return i * i; }) | std::views::take(3)) {
        out.push_back(v);
    }
    CHECK(out == std::vector<int>{4, 16, 36});

    auto gen = count_to(4);
    std::vector<int> dropped;
    for (int v : std::ranges::ref_view(gen) | std::views::drop(2)) dropped.push_back(v);  // an lvalue generator: ref_view
    CHECK(dropped == std::vector<int>{3, 4});
}

TEST_CASE("yielding by reference or rvalue does not copy", "[generator]") {
    int copies = 0;
    int moves = 0;
    SECTION("const T& generator hands out lvalues in the frame") {
        auto gen = [](int* c, int* m) -> StreamingGenerator<const Tracked&> {
            Tracked local(1, c, m);
            co_yield local;
            co_yield Tracked(2, c, m);  // a temporary: alive until the next resumption
        }(&copies, &moves);
        std::vector<int> seen;
        for (const Tracked& t : gen) seen.push_back(t.value);
        CHECK(seen == std::vector<int>{1, 2});
        CHECK(copies == 0);
        CHECK(moves == 0);
    }
    SECTION("T generator gives T&& so the consumer can move out, rvalues are not copied") {
        auto gen = [](int* c, int* m) -> StreamingGenerator<Tracked> { co_yield Tracked(3, c, m); }(&copies, &moves);
        auto it = gen.begin();
        Tracked taken = *it;  // a move from the yielded temporary
        CHECK(taken.value == 3);
        CHECK(copies == 0);
        CHECK(moves == 1);
    }
    SECTION("T generator copies an lvalue once (the consumer may move from it)") {
        auto gen = [](int* c, int* m) -> StreamingGenerator<Tracked> {
            Tracked local(4, c, m);
            co_yield local;
            CHECK(local.value == 4);
        }(&copies, &moves);
        for (Tracked&& t : gen) CHECK(t.value == 4);
        CHECK(copies == 1);
    }
    SECTION("move-only types") {
        auto gen = []() -> StreamingGenerator<std::unique_ptr<int>> {
            co_yield std::make_unique<int>(5);
            co_yield std::make_unique<int>(6);
        }();
        int sum = 0;
        for (std::unique_ptr<int> p : gen) sum += *p;
        CHECK(sum == 11);
    }
}

TEST_CASE("elements_of yields a nested generator or range in place", "[generator]") {
    auto outer = []() -> StreamingGenerator<int> {
        co_yield 0;
        co_yield elements_of(count_to(3));
        co_yield elements_of(count_to(0));  // an empty nest
        co_yield elements_of(StreamingGenerator<int>{});  // an empty generator object
        std::vector<int> tail{7, 8};
        co_yield elements_of(tail);  // an lvalue range: elements copied out
        // (not std::vector<int>{9}: g++ 12 rejects an initializer_list temporary in a co_yield expression)
        co_yield elements_of(std::vector<int>(1, 9));
        co_yield 99;
    };
    CHECK(collect(outer()) == std::vector<int>{0, 1, 2, 3, 7, 8, 9, 99});

    // Deep recursion through nested generators (a tree walk).
    struct Walk {
        static StreamingGenerator<int> depth(int level) {
            co_yield level;
            if (level < 200) co_yield elements_of(depth(level + 1));
            co_yield -level;
        }
    };
    std::vector<int> seen = collect(Walk::depth(0));
    REQUIRE(seen.size() == 402);
    CHECK(seen[0] == 0);
    CHECK(seen[200] == 200);
    CHECK(seen[201] == -200);
    CHECK(seen.back() == 0);

    // An lvalue generator is iterated (not taken over): the caller keeps it, and its rest.
    auto partial = []() -> StreamingGenerator<int> {
        auto source = count_to(5);
        auto it = source.begin();  // already started: iteration continues at the current element
        (void)it;
        co_yield elements_of(source);
        co_yield -1;
    };
    CHECK(collect(partial()) == std::vector<int>{1, 2, 3, 4, 5, -1});

    // A generator of another reference type is iterated as a range.
    auto strings = []() -> StreamingGenerator<const std::string&> {
        const std::string a = "a";
        co_yield a;
        co_yield std::string("b");
    };
    auto joined = [&]() -> StreamingGenerator<std::string> { co_yield elements_of(strings()); };
    std::string out;
    for (std::string s : joined()) out += s;
    CHECK(out == "ab");
}

TEST_CASE("an exception in the body reaches the consumer, then the generator is done", "[generator]") {
    SECTION("thrown before the first yield: from begin()") {
        auto gen = []() -> StreamingGenerator<int> {
            throw std::runtime_error("boom at start");
            co_return;
        }();
        CHECK_THROWS_AS(gen.begin(), std::runtime_error);
    }
    SECTION("thrown after a yield: from operator++, then it == end") {
        auto gen = []() -> StreamingGenerator<int> {
            co_yield 1;
            throw std::logic_error("boom");
        }();
        auto it = gen.begin();
        CHECK(*it == 1);
        CHECK_THROWS_AS(++it, std::logic_error);
        CHECK(it == gen.end());
    }
    SECTION("thrown in a nested generator: reaches the consumer through the parent") {
        auto inner = []() -> StreamingGenerator<int> {
            co_yield 1;
            throw std::out_of_range("inner");
        };
        bool parent_continued = false;
        // A coroutine lambda with captures must outlive its generator: keep the lambda in a variable.
        auto make_outer = [&](bool* flag) -> StreamingGenerator<int> {
            co_yield elements_of(inner());
            *flag = true;
        };
        auto outer = make_outer(&parent_continued);
        auto it = outer.begin();
        CHECK(*it == 1);
        CHECK_THROWS_AS(++it, std::out_of_range);
        CHECK_FALSE(parent_continued);
        CHECK(it == outer.end());
    }
    SECTION("a nested generator's exception can be caught by the parent body") {
        auto inner = []() -> StreamingGenerator<int> {
            co_yield 1;
            throw std::runtime_error("inner");
        };
        auto outer = [&]() -> StreamingGenerator<int> {
            bool caught = false;
            try {
                co_yield elements_of(inner());
            } catch (const std::runtime_error&) {
                caught = true;  // co_yield is not allowed inside a handler
            }
            if (caught) co_yield -1;
            co_yield 2;
        };
        CHECK(collect(outer()) == std::vector<int>{1, -1, 2});
    }
}

TEST_CASE("destroying a suspended generator destroys its frame and nested frames", "[generator]") {
    int alive = 0;
    struct Guard {
        explicit Guard(int* counter) : counter_(counter) { ++*counter_; }
        Guard(const Guard&) = delete;
        Guard& operator=(const Guard&) = delete;
        ~Guard() { --*counter_; }
        int* counter_;
    };
    auto inner = [](int* counter) -> StreamingGenerator<int> {
        Guard guard(counter);
        for (int i = 0;; ++i) co_yield i;  // never ends on its own
    };
    {
        auto make_outer = [&](int* counter) -> StreamingGenerator<int> {
            Guard guard(counter);
            co_yield elements_of(inner(counter));
        };
        auto outer = make_outer(&alive);
        auto it = outer.begin();
        ++it;
        CHECK(*it == 1);
        CHECK(alive == 2);
    }
    CHECK(alive == 0);

    {
        auto gen = inner(&alive);
        CHECK(alive == 0);  // not started: the body has not run
    }
    CHECK(alive == 0);
}
