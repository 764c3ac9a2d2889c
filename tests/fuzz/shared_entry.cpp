// Fuzz target: the shared tier's value codec (llmfast/detail/shared_entry_codec.hpp), against its
// documented contract.
//   - Arbitrary bytes either decode to an entry that re-encodes to exactly those bytes (the format is
//     canonical), or are rejected with a status and a reason; nothing throws, nothing is UB.
//   - An entry built from the input round-trips: encode → decode gives the same entry, and encoding
//     that again gives the same bytes; the entries encode rejects (bad chunk boundaries, non-finite
//     embedding, ttl <= 0) throw Error(InvalidArgument) and nothing else.
//   - Any single flipped byte of a valid value, and any truncation, is rejected.
// Input: byte 0 picks the mode: even = the rest is a value as is; odd = the rest describes an entry.
// Seeds: tests/fuzz/corpus/shared_entry/ (one valid value, written by tests/shared_tier_test.cpp:
// `LLMFAST_WRITE_FUZZ_SEED=1 shared_tier_test "fuzz seed*"`).
#include <llmfast/detail/shared_entry_codec.hpp>
#include <llmfast/error.hpp>

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

using llmfast::detail::decode_shared_entry;
using llmfast::detail::encode_shared_entry;

class Input {
public:
    Input(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
    std::uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
    std::uint32_t u32() {
        std::uint32_t v = 0;
        for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(byte()) << (8 * i);
        return v;
    }
    std::string str() {
        const std::size_t n = std::min<std::size_t>(byte(), size_ - pos_);
        std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
        pos_ += n;
        return s;
    }

private:
    const std::uint8_t* data_;
    std::size_t size_;
    std::size_t pos_ = 0;
};

void check_value(std::string_view bytes) {
    const llmfast::detail::SharedDecodeResult decoded = decode_shared_entry(bytes);
    if (!decoded.ok()) {
        check(decoded.reason != nullptr && *decoded.reason != '\0');
        return;
    }
    check(encode_shared_entry(decoded.entry) == bytes);
}

void check_entry(Input& in) {
    llmfast::SharedEntry entry;
    entry.scope = in.str();
    entry.key = in.str();
    entry.prompt = in.str();
    entry.response = in.str();
    const std::uint8_t chunks = in.byte() % 8;
    for (std::uint8_t i = 0; i < chunks; ++i) entry.chunk_boundaries.push_back(in.u32() % 300);
    const std::uint8_t dimension = in.byte() % 16;
    for (std::uint8_t i = 0; i < dimension; ++i) entry.embedding.push_back(std::bit_cast<float>(in.u32()));
    entry.embedder = in.str();
    entry.created_ns = static_cast<std::int64_t>(static_cast<std::uint64_t>(in.u32()) << 31) - (std::int64_t{1} << 40);
    entry.ttl = std::chrono::nanoseconds(static_cast<std::int64_t>(in.u32()) - 1000);

    // The reference for what encode must reject.
    bool valid = entry.ttl.count() > 0;
    for (std::size_t i = 0; i < entry.chunk_boundaries.size(); ++i) {
        if (entry.chunk_boundaries[i] > entry.response.size()) valid = false;
        if (i > 0 && entry.chunk_boundaries[i] <= entry.chunk_boundaries[i - 1]) valid = false;
    }
    for (const float x : entry.embedding) valid = valid && std::isfinite(x);

    std::string bytes;
    try {
        bytes = encode_shared_entry(entry);
    } catch (const llmfast::Error& e) {
        check(!valid && e.code() == llmfast::ErrorCode::InvalidArgument);
        return;
    }
    check(valid);
    const llmfast::detail::SharedDecodeResult decoded = decode_shared_entry(bytes);
    check(decoded.ok());
    check(decoded.entry == entry);
    check(encode_shared_entry(decoded.entry) == bytes);

    // Damage: every truncation point the input picks, and one flipped byte.
    const std::size_t cut = in.u32() % bytes.size();
    check(!decode_shared_entry(std::string_view(bytes).substr(0, cut)).ok());
    std::string flipped = bytes;
    const std::size_t at = in.u32() % flipped.size();
    flipped[at] = static_cast<char>(flipped[at] ^ static_cast<char>(1 + in.byte() % 255));
    check(!decode_shared_entry(flipped).ok());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    if (data[0] % 2 == 0) {
        check_value(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
    } else {
        Input in(data + 1, size - 1);
        check_entry(in);
    }
    return 0;
}
