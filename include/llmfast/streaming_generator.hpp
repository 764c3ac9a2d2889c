// llmfast/streaming_generator.hpp — a C++20 coroutine generator: the shape of every token stream.
//
// `StreamingGenerator<Ref>` is what `std::generator` (C++23) is, for compilers that lack it (g++ 12):
// a lazy, move-only `std::ranges::input_range` (and view) whose coroutine body `co_yield`s elements.
//
//     llmfast::StreamingGenerator<int> count_to(int n) {
//         for (int i = 1; i <= n; ++i) co_yield i;
//     }
//     llmfast::StreamingGenerator<int> twice(int n) {
//         co_yield llmfast::elements_of(count_to(n));        // a whole nested generator
//         co_yield llmfast::elements_of(std::vector{7, 8});  // or any input range
//     }
//     for (int i : twice(3)) use(i);                         // 1 2 3 7 8
//     auto evens = count_to(10) | std::views::filter([](int i) { return i % 2 == 0; });
//
// Element types (as std::generator): for a non-reference `Ref = T` the iterator's reference is `T&&`;
// for a reference `Ref` (`const T&`, `T&`, `T&&`) it is `Ref` itself. Nothing is copied on the way
// out: `co_yield` stores the address of the yielded object (a temporary lives until the coroutine is
// resumed again). The single exception is `co_yield lvalue` into a `StreamingGenerator<T>`: the
// consumer may move from a `T&&`, so the lvalue is copied once; use `StreamingGenerator<const T&>` to
// hand out lvalues without copying.
//
// Lifetime: the coroutine frame belongs to the generator object and is destroyed in its destructor
// (also when the consumer stops early), which destroys every local and every nested generator in
// the body — RAII in the body (a lock, a stop_callback) ends when the consumer is done.
//
// Exceptions: an exception leaving the coroutine body (or a nested generator, when the enclosing body
// does not catch it at its `co_yield elements_of(...)`) propagates out of `begin()` or `++it`, after
// which the generator is finished (`it == end()`).
//
// Thread-safety: none; a generator is used by one thread at a time (it may be moved between threads
// while suspended). `begin()` may be called once. llmfast itself throws nothing here; the
// coroutine body's exceptions are rethrown as they are.
#pragma once

#include <llmfast/version.hpp>

#include <coroutine>
#include <cstddef>
#include <exception>
#include <iterator>
#include <memory>
#include <ranges>
#include <type_traits>
#include <utility>

LLMFAST_BEGIN_NAMESPACE

/// Wraps a range to be yielded element by element by `co_yield elements_of(range)` (the C++23
/// `std::ranges::elements_of`). Yielding a `StreamingGenerator` of the same type transfers control
/// into it directly (symmetric transfer, no per-element overhead); any other input range is iterated.
template <class Range>
struct elements_of {
    constexpr explicit elements_of(Range&& r) noexcept : range(std::forward<Range>(r)) {}
    Range range;  // a reference (see the deduction guide): the range lives in the co_yield expression
};
template <class Range>
elements_of(Range&&) -> elements_of<Range&&>;

template <class Ref>
class StreamingGenerator;

namespace detail {
template <class T>
struct is_streaming_generator : std::false_type {};
template <class Ref>
struct is_streaming_generator<StreamingGenerator<Ref>> : std::true_type {};
}  // namespace detail

template <class Ref>
class StreamingGenerator : public std::ranges::view_interface<StreamingGenerator<Ref>> {
public:
    using value_type = std::remove_cvref_t<Ref>;
    using reference = std::conditional_t<std::is_reference_v<Ref>, Ref, Ref&&>;
    using yielded = reference;  // always a reference type

    static_assert(!std::is_void_v<Ref> && std::is_object_v<value_type>,
                  "llmfast::StreamingGenerator<Ref>: Ref must be an object type or a reference to one");

    class promise_type;
    using handle_type = std::coroutine_handle<promise_type>;

    class promise_type {
    public:
        StreamingGenerator get_return_object() noexcept {
            return StreamingGenerator(handle_type::from_promise(*this));
        }
        std::suspend_always initial_suspend() const noexcept { return {}; }

        struct FinalAwaiter {
            bool await_ready() const noexcept { return false; }
            std::coroutine_handle<> await_suspend(handle_type self) noexcept {
                promise_type& promise = self.promise();
                if (promise.parent_) {  // a nested generator ended: continue its parent
                    promise.root_->active_ = promise.parent_;
                    return promise.parent_;
                }
                return std::noop_coroutine();  // the root ended: back to the iterator
            }
            void await_resume() const noexcept {}
        };
        FinalAwaiter final_suspend() noexcept { return {}; }

        /// `co_yield value`: no copy, the consumer reads the object through its address.
        std::suspend_always yield_value(yielded value) noexcept {
            root_->value_ = std::addressof(value);
            return {};
        }

        /// `co_yield lvalue` where the consumer gets `T&&`: copy it once into the awaiter, which lives
        /// in the frame until the next resumption.
        struct CopyAwaiter {
            value_type value;
            promise_type* root;
            bool await_ready() const noexcept { return false; }
            void await_suspend(std::coroutine_handle<>) noexcept { root->value_ = std::addressof(value); }
            void await_resume() const noexcept {}
        };
        CopyAwaiter yield_value(const std::remove_reference_t<yielded>& lvalue)
            requires std::is_rvalue_reference_v<yielded> &&
                     std::constructible_from<value_type, const std::remove_reference_t<yielded>&>
        {
            return CopyAwaiter{value_type(lvalue), root_};
        }

        /// `co_yield elements_of(generator)`: run the nested generator's frame in place of ours until
        /// it ends; its elements go straight to our consumer.
        struct NestedAwaiter {
            StreamingGenerator nested;
            bool await_ready() const noexcept { return !nested.handle_; }
            std::coroutine_handle<> await_suspend(handle_type parent) noexcept {
                promise_type& child = nested.handle_.promise();
                promise_type& parent_promise = parent.promise();
                child.root_ = parent_promise.root_;
                child.parent_ = parent;
                parent_promise.root_->active_ = nested.handle_;
                return nested.handle_;
            }
            void await_resume() {
                if (nested.handle_ && nested.handle_.promise().exception_) {
                    std::rethrow_exception(std::exchange(nested.handle_.promise().exception_, nullptr));
                }
            }
        };
        // Only an rvalue generator is taken over; an lvalue one is iterated as a range (the caller
        // keeps it, as with std::generator).
        template <class R>
            requires std::same_as<std::remove_cvref_t<R>, StreamingGenerator> && (!std::is_lvalue_reference_v<R>)
        NestedAwaiter yield_value(elements_of<R> nested) noexcept {
            return NestedAwaiter{std::move(nested.range)};
        }

        /// `co_yield elements_of(range)` for any other input range: yields each element in turn.
        template <class R>
            requires((!std::same_as<std::remove_cvref_t<R>, StreamingGenerator> || std::is_lvalue_reference_v<R>) &&
                     std::ranges::input_range<std::remove_cvref_t<R>>)
        NestedAwaiter yield_value(elements_of<R> nested) {
            auto each = [](std::ranges::iterator_t<std::remove_reference_t<R>> it,
                           std::ranges::sentinel_t<std::remove_reference_t<R>> end) -> StreamingGenerator {
                for (; it != end; ++it) co_yield *it;
            };
            auto& range = nested.range;
            return NestedAwaiter{each(std::ranges::begin(range), std::ranges::end(range))};
        }

        void await_transform() = delete;  // a generator body must not co_await
        void return_void() const noexcept {}

        // Stored, not rethrown here: the root's iterator rethrows it after resume() returns, and a
        // nested generator's parent rethrows it at its co_yield (so the parent body may catch it).
        void unhandled_exception() noexcept { exception_ = std::current_exception(); }

    private:
        friend class StreamingGenerator;
        std::add_pointer_t<yielded> value_ = nullptr;  // root only: the current element
        std::exception_ptr exception_;
        promise_type* root_ = this;           // the outermost generator's promise
        handle_type parent_;                  // nested only: whom to continue when we end
        handle_type active_ = handle_type::from_promise(*this);  // root only: the innermost running frame
    };

    /// The generator's iterator: move-only, single pass.
    class iterator {
    public:
        using value_type = StreamingGenerator::value_type;
        using difference_type = std::ptrdiff_t;

        iterator(iterator&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
        iterator& operator=(iterator&& other) noexcept {
            handle_ = std::exchange(other.handle_, nullptr);
            return *this;
        }

        /// The current element. Precondition: `*this != end()`.
        reference operator*() const noexcept { return static_cast<reference>(*handle_.promise().value_); }

        /// Runs the body to the next `co_yield` (or its end); rethrows what the body threw.
        iterator& operator++() {
            resume(handle_);
            return *this;
        }
        void operator++(int) { ++*this; }

        friend bool operator==(const iterator& it, std::default_sentinel_t) noexcept {
            return !it.handle_ || it.handle_.done();
        }

    private:
        friend class StreamingGenerator;
        explicit iterator(handle_type handle) noexcept : handle_(handle) {}
        handle_type handle_;
    };

    StreamingGenerator() noexcept = default;
    StreamingGenerator(StreamingGenerator&& other) noexcept
        : handle_(std::exchange(other.handle_, nullptr)), started_(std::exchange(other.started_, false)) {}
    StreamingGenerator& operator=(StreamingGenerator other) noexcept {
        std::swap(handle_, other.handle_);
        std::swap(started_, other.started_);
        return *this;
    }
    ~StreamingGenerator() {
        if (handle_) handle_.destroy();
    }

    /// Starts the body and runs it to its first `co_yield`. Call once; rethrows what the body threw.
    iterator begin() {
        if (handle_ && !started_) {
            started_ = true;
            resume(handle_);
        }
        return iterator(handle_);
    }
    std::default_sentinel_t end() const noexcept { return {}; }

private:
    explicit StreamingGenerator(handle_type handle) noexcept : handle_(handle) {}

    // Invariant: `root` is suspended (initially or at a co_yield of some frame in its nest);
    // `active_` is the innermost frame, which is what must run next.
    static void resume(handle_type root) {
        promise_type& promise = root.promise();
        promise.active_.resume();
        if (promise.exception_) std::rethrow_exception(std::exchange(promise.exception_, nullptr));
    }

    handle_type handle_;
    bool started_ = false;
};

// What the design promises, checked where it is defined.
static_assert(std::ranges::input_range<StreamingGenerator<int>>);
static_assert(std::ranges::view<StreamingGenerator<int>>);
static_assert(std::movable<StreamingGenerator<int>> && !std::copyable<StreamingGenerator<int>>);

LLMFAST_END_NAMESPACE
