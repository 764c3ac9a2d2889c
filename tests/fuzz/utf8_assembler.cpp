// Fuzzes utf8::Assembler and the validators: any bytes, split anywhere, give valid UTF-8 out, and
// valid input passes through unchanged.
#include <llmfast/utf8.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    namespace utf8 = llmfast::utf8;
    if (size == 0) return 0;
    // The first byte chooses the chunk size, the rest is the stream.
    const std::size_t chunk = static_cast<std::size_t>(data[0] % 7) + 1;
    const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);

    utf8::Assembler assembler;
    std::string joined;
    for (std::size_t pos = 0; pos < input.size(); pos += chunk) {
        const std::string_view out = assembler.push(input.substr(pos, chunk));
        if (!utf8::is_valid(out)) std::abort();
        joined.append(out);
    }
    joined.append(assembler.finish());
    if (!utf8::is_valid(joined)) std::abort();
    if (joined != utf8::repair(input)) std::abort();  // chunking must not change the result
    if (utf8::is_valid(input) && joined != input) std::abort();

    for (std::size_t pos = 0; pos <= input.size(); ++pos) {
        const std::size_t floor = utf8::floor_boundary(input, pos);
        const std::size_t ceil = utf8::ceil_boundary(input, pos);
        if (floor > pos || ceil < pos || ceil > input.size()) std::abort();
    }
    return 0;
}
