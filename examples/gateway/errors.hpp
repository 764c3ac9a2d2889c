// examples/gateway/errors.hpp — the OpenAI error object every failing request is answered with:
// {"error":{"message":…,"type":…,"param":…|null,"code":…|null}} and its HTTP status.
// Thread-safety: value types and pure functions.
#pragma once

#include "json_util.hpp"

#include <string>
#include <string_view>

namespace gateway {

struct ApiError {
    int status = 400;
    std::string message;
    std::string type = "invalid_request_error";
    std::string param;  ///< the offending field ("" = null)
    std::string code;   ///< machine-readable code ("" = null)

    static ApiError invalid(std::string param, std::string message, std::string code = "invalid_value") {
        return {400, std::move(message), "invalid_request_error", std::move(param), std::move(code)};
    }
    static ApiError unauthorized(std::string message) {
        return {401, std::move(message), "invalid_request_error", "", "invalid_api_key"};
    }
    static ApiError not_found(std::string message, std::string code = "not_found") {
        return {404, std::move(message), "invalid_request_error", "", std::move(code)};
    }
    static ApiError upstream(std::string message, int status = 502) {
        return {status, std::move(message), "upstream_error", "", status == 504 ? "timeout" : "upstream_failed"};
    }
};

/// The error object as JSON (no trailing newline).
inline std::string error_json(const ApiError& error) {
    std::string out = "{\"error\":{\"message\":";
    append_json_string(out, error.message);
    out += ",\"type\":";
    append_json_string(out, error.type);
    out += ",\"param\":";
    if (error.param.empty()) out += "null"; else append_json_string(out, error.param);
    out += ",\"code\":";
    if (error.code.empty()) out += "null"; else append_json_string(out, error.code);
    out += "}}";
    return out;
}

/// The error as one SSE event (`data: {...}\n\n`): how a stream that already sent content ends.
inline std::string error_event(const ApiError& error) { return "data: " + error_json(error) + "\n\n"; }

}  // namespace gateway
