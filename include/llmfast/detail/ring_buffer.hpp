// llmfast/detail/ring_buffer.hpp — internal: the one growable FIFO ring buffer, used by the batcher's
// priority levels and by TokenChannel's buffer.
//
// It grows geometrically (doubling, from 16 slots) up to an optional `max_capacity` and never shrinks,
// so a queue in steady state allocates nothing (std::deque allocates and frees a block every few
// elements, and the batcher would do that under its mutex). Slots are raw storage: an element exists
// only while it is queued (no std::optional per slot, no default construction of T).
//
// Thread-safety: none (the owners guard it with their mutex). Errors: push_back / reserve propagate
// std::bad_alloc and what moving (or copying, when its move may throw) a T throws; then the buffer is
// unchanged (strong guarantee) unless T's move may throw and T cannot be copied.
#pragma once

#include <llmfast/version.hpp>

#include <cstddef>
#include <limits>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

LLMFAST_BEGIN_NAMESPACE

namespace detail {

template <class T>
class RingBuffer {
public:
    /// Grows up to `max_capacity` slots (the owner keeps the size below it; push_back past it still grows).
    RingBuffer() noexcept = default;
    explicit RingBuffer(std::size_t max_capacity) noexcept : max_capacity_(max_capacity == 0 ? 1 : max_capacity) {}
    RingBuffer(const RingBuffer&) = delete;
    RingBuffer& operator=(const RingBuffer&) = delete;
    RingBuffer(RingBuffer&& other) noexcept
        : data_(std::exchange(other.data_, nullptr)), capacity_(std::exchange(other.capacity_, 0)),
          head_(std::exchange(other.head_, 0)), size_(std::exchange(other.size_, 0)),
          max_capacity_(other.max_capacity_) {}
    RingBuffer& operator=(RingBuffer&&) = delete;
    ~RingBuffer() {
        clear();
        std::allocator<T>().deallocate(data_, capacity_);
    }

    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    /// Slots allocated now.
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
    [[nodiscard]] T& front() noexcept { return data_[head_]; }
    [[nodiscard]] const T& front() const noexcept { return data_[head_]; }
    /// The i-th queued element (0 = front), i < size().
    [[nodiscard]] T& operator[](std::size_t i) noexcept { return data_[slot(i)]; }
    [[nodiscard]] const T& operator[](std::size_t i) const noexcept { return data_[slot(i)]; }

    /// Allocates room for `capacity` elements now (capped at max_capacity), so later pushes up to
    /// that size do not allocate.
    void reserve(std::size_t capacity) {
        if (capacity > max_capacity_) capacity = max_capacity_;
        if (capacity > capacity_) reallocate(capacity);
    }

    void push_back(T&& value) {
        if (size_ == capacity_) grow();
        ::new (static_cast<void*>(data_ + slot(size_))) T(std::move(value));
        ++size_;
    }
    template <class... Args>
    T& emplace_back(Args&&... args) {
        if (size_ == capacity_) grow();
        T* at = ::new (static_cast<void*>(data_ + slot(size_))) T(std::forward<Args>(args)...);
        ++size_;
        return *at;
    }
    /// Destroys the front element (size() > 0).
    void pop_front() noexcept {
        data_[head_].~T();
        if (++head_ == capacity_) head_ = 0;
        --size_;
    }
    /// Moves the front element out and removes it (size() > 0).
    [[nodiscard]] T take_front() noexcept(std::is_nothrow_move_constructible_v<T>) {
        T value(std::move(data_[head_]));
        pop_front();
        return value;
    }
    /// Destroys every element; keeps the storage.
    void clear() noexcept {
        while (size_ > 0) pop_front();
        head_ = 0;
    }

private:
    // The physical slot of the i-th element (i <= size_ < capacity_ or i < size_): one compare, no
    // modulo, whatever the capacity (the channel's limit need not be a power of two).
    [[nodiscard]] std::size_t slot(std::size_t i) const noexcept {
        const std::size_t at = head_ + i;
        return at >= capacity_ ? at - capacity_ : at;
    }

    void grow() {
        std::size_t capacity = capacity_ == 0 ? initial_capacity : (capacity_ > max_capacity_ / 2 ? max_capacity_ : capacity_ * 2);
        if (capacity > max_capacity_) capacity = max_capacity_;
        if (capacity <= capacity_) capacity = capacity_ + 1;  // pushed past max_capacity: still correct
        reallocate(capacity);
    }

    void reallocate(std::size_t capacity) {
        T* data = std::allocator<T>().allocate(capacity);
        std::size_t moved = 0;
        try {
            for (; moved < size_; ++moved) ::new (static_cast<void*>(data + moved)) T(std::move_if_noexcept((*this)[moved]));
        } catch (...) {
            for (std::size_t i = 0; i < moved; ++i) data[i].~T();
            std::allocator<T>().deallocate(data, capacity);
            throw;
        }
        for (std::size_t i = 0; i < size_; ++i) (*this)[i].~T();
        std::allocator<T>().deallocate(data_, capacity_);
        data_ = data;
        capacity_ = capacity;
        head_ = 0;
    }

    static constexpr std::size_t initial_capacity = 16;

    T* data_ = nullptr;
    std::size_t capacity_ = 0;
    std::size_t head_ = 0;
    std::size_t size_ = 0;
    std::size_t max_capacity_ = std::numeric_limits<std::size_t>::max();
};

}  // namespace detail

LLMFAST_END_NAMESPACE
