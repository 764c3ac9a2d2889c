// llmfast/detail/inplace_function.hpp — a move-only, small-buffer callable (internal).
//
// C++20 has no std::move_only_function, and std::function needs copyable targets and allocates for
// anything bigger than two pointers. `InplaceFunction<R(Args...), Capacity>` stores a target of up to
// `Capacity` bytes (max_align_t alignment, nothrow-movable) inside the object, so wrapping a lambda that
// captures a pointer and an index, or a std::promise, never touches the heap. Larger targets still work:
// they are boxed on the heap (one allocation), so callers never have to care, only hot paths do.
//
// Thread-safety: a plain value; one object must not be used from two threads at once.
#pragma once

#include <llmfast/version.hpp>

#include <cstddef>
#include <functional>
#include <new>
#include <type_traits>
#include <utility>

LLMFAST_BEGIN_NAMESPACE

namespace detail {

template <class Signature, std::size_t Capacity = 48>
class InplaceFunction;

template <class R, class... Args, std::size_t Capacity>
class InplaceFunction<R(Args...), Capacity> {
public:
    static constexpr std::size_t capacity = Capacity;

    /// True when a target of type F is stored inline (no allocation).
    template <class F>
    static constexpr bool stores_inline = sizeof(F) <= Capacity && alignof(F) <= alignof(std::max_align_t) &&
                                          std::is_nothrow_move_constructible_v<F>;

    InplaceFunction() noexcept = default;
    InplaceFunction(std::nullptr_t) noexcept {}  // NOLINT(google-explicit-constructor)

    template <class F>
        requires(!std::is_same_v<std::remove_cvref_t<F>, InplaceFunction> &&
                 std::is_constructible_v<std::decay_t<F>, F> && std::is_invocable_r_v<R, std::decay_t<F>&, Args...>)
    InplaceFunction(F&& f) {  // NOLINT(google-explicit-constructor): a callable converts like std::function
        using D = std::decay_t<F>;
        if constexpr (stores_inline<D>) {
            ::new (static_cast<void*>(storage_)) D(std::forward<F>(f));
            ops_ = &inline_ops<D>;
        } else {
            D* boxed = new D(std::forward<F>(f));
            ::new (static_cast<void*>(storage_)) D*(boxed);
            ops_ = &boxed_ops<D>;
        }
    }

    InplaceFunction(InplaceFunction&& other) noexcept : ops_(other.ops_) {
        if (ops_) {
            ops_->relocate(other.storage_, storage_);
            other.ops_ = nullptr;
        }
    }

    InplaceFunction& operator=(InplaceFunction&& other) noexcept {
        if (this != &other) {
            reset();
            if (other.ops_) {
                other.ops_->relocate(other.storage_, storage_);
                ops_ = other.ops_;
                other.ops_ = nullptr;
            }
        }
        return *this;
    }

    InplaceFunction(const InplaceFunction&) = delete;
    InplaceFunction& operator=(const InplaceFunction&) = delete;

    ~InplaceFunction() { reset(); }

    void reset() noexcept {
        if (ops_) {
            ops_->destroy(storage_);
            ops_ = nullptr;
        }
    }

    explicit operator bool() const noexcept { return ops_ != nullptr; }

    /// Calls the target. Throws std::bad_function_call when empty.
    R operator()(Args... args) {
        if (!ops_) throw std::bad_function_call();
        return ops_->invoke(storage_, std::forward<Args>(args)...);
    }

private:
    struct Ops {
        R (*invoke)(void*, Args&&...);
        void (*relocate)(void* from, void* to) noexcept;  // move-construct into `to`, destroy `from`
        void (*destroy)(void*) noexcept;
    };

    template <class D>
    static constexpr Ops inline_ops{
        [](void* self, Args&&... args) -> R { return std::invoke(*static_cast<D*>(self), std::forward<Args>(args)...); },
        [](void* from, void* to) noexcept {
            D* source = static_cast<D*>(from);
            ::new (to) D(std::move(*source));
            source->~D();
        },
        [](void* self) noexcept { static_cast<D*>(self)->~D(); },
    };

    template <class D>
    static constexpr Ops boxed_ops{
        [](void* self, Args&&... args) -> R { return std::invoke(**static_cast<D**>(self), std::forward<Args>(args)...); },
        [](void* from, void* to) noexcept { ::new (to) D*(*static_cast<D**>(from)); },
        [](void* self) noexcept { delete *static_cast<D**>(self); },
    };

    alignas(std::max_align_t) unsigned char storage_[Capacity];
    const Ops* ops_ = nullptr;
};

}  // namespace detail

LLMFAST_END_NAMESPACE
