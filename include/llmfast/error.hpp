// llmfast/error.hpp — the one error type of the library, and the codes callers branch on.
//
// Every exception llmfast throws is an `llmfast::Error` (a `std::runtime_error`) carrying an
// `ErrorCode`, so a caller can write
//
//     try { auto response = batcher.submit(request).get(); }
//     catch (const llmfast::Error& e) {
//         if (e.code() == llmfast::ErrorCode::QueueFull) return http_503();
//         throw;
//     }
//
// Calls for which failure is an ordinary outcome on a hot path (`try_submit`, a parser fed half a line)
// return an `ErrorCode` (or a small status struct holding one) instead of throwing; `ErrorCode::Ok`
// is the success value there. Each header documents which of its calls throw which codes.
//
// Thread-safety: the types here are plain values.
#pragma once

#include <llmfast/version.hpp>

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <string_view>

LLMFAST_BEGIN_NAMESPACE

enum class ErrorCode : int {
    Ok = 0,            ///< success (only used where a status is returned instead of thrown)
    InvalidArgument,   ///< an option or argument is out of range (reported at construction when possible)
    QueueFull,         ///< a bounded queue is at capacity; nothing was enqueued
    DeadlineExceeded,  ///< the request's or stream's deadline passed before it completed
    IdleTimeout,       ///< a stream produced nothing for longer than its idle timeout
    Cancelled,         ///< a stop token fired or the consumer went away
    Closed,            ///< the component is closed (or closing) and accepts no more work
    InvalidUtf8,       ///< input that must be UTF-8 is not
    CorruptSnapshot,   ///< a snapshot failed validation (truncated, bad checksum, wrong version or embedder)
    BudgetTooSmall,    ///< a token budget cannot hold even the mandatory part of the result
    HandlerFailed,     ///< user code (a batch handler, a compute function) threw or broke its contract
    IoError,           ///< reading or writing a file failed
    InvalidFormat,     ///< outside input (a rank file, an SSE field, a workload file) is malformed
    EventTooLarge,     ///< an incoming event exceeded the configured size bound
};

/// The enumerator's name, e.g. "QueueFull". Never throws; unknown values give "Unknown".
constexpr std::string_view to_string(ErrorCode code) noexcept {
    switch (code) {
        case ErrorCode::Ok: return "Ok";
        case ErrorCode::InvalidArgument: return "InvalidArgument";
        case ErrorCode::QueueFull: return "QueueFull";
        case ErrorCode::DeadlineExceeded: return "DeadlineExceeded";
        case ErrorCode::IdleTimeout: return "IdleTimeout";
        case ErrorCode::Cancelled: return "Cancelled";
        case ErrorCode::Closed: return "Closed";
        case ErrorCode::InvalidUtf8: return "InvalidUtf8";
        case ErrorCode::CorruptSnapshot: return "CorruptSnapshot";
        case ErrorCode::BudgetTooSmall: return "BudgetTooSmall";
        case ErrorCode::HandlerFailed: return "HandlerFailed";
        case ErrorCode::IoError: return "IoError";
        case ErrorCode::InvalidFormat: return "InvalidFormat";
        case ErrorCode::EventTooLarge: return "EventTooLarge";
    }
    return "Unknown";
}

/// The exception type of the library. `what()` reads "<CodeName>: <message>".
class Error : public std::runtime_error {
public:
    Error(ErrorCode code, std::string_view message)
        : std::runtime_error(fmt::format("{}: {}", to_string(code), message)), code_(code) {}

    [[nodiscard]] ErrorCode code() const noexcept { return code_; }

private:
    ErrorCode code_;
};

LLMFAST_END_NAMESPACE
