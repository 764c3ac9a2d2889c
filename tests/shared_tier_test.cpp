// Tests of llmfast/shared_tier.hpp: the concept (required and optional parts) and the value codec a
// shared tier stores entries with (llmfast/detail/shared_entry_codec.hpp).
#include <llmfast/shared_tier.hpp>

#include "catch.hpp"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <string>
#include <string_view>

namespace {

struct MinimalStore {
    llmfast::SharedLookup lookup(std::string_view, std::string_view) { return {}; }
    llmfast::SharedStatus insert(const llmfast::SharedEntry&) { return llmfast::SharedStatus::Ok; }
    llmfast::SharedStatus erase(std::string_view, std::string_view) { return llmfast::SharedStatus::NotFound; }
    llmfast::SharedStatus purge_scope(std::string_view) { return llmfast::SharedStatus::Ok; }
};

struct FullStore : MinimalStore {
    void lookup_async(std::string_view, std::string_view, std::function<void(llmfast::SharedLookup)> done) { done({}); }
    void insert_async(const llmfast::SharedEntry&, std::function<void(llmfast::SharedStatus)> done) { done(llmfast::SharedStatus::Ok); }
    struct Feed {};
    Feed follow(llmfast::SharedFollowCallback) { return {}; }
    llmfast::SharedLock try_lock(std::string_view, std::string_view, std::chrono::milliseconds) { return {}; }
    void unlock(const llmfast::SharedLock&) {}
};

struct NoPurge {
    llmfast::SharedLookup lookup(std::string_view, std::string_view) { return {}; }
    llmfast::SharedStatus insert(const llmfast::SharedEntry&) { return llmfast::SharedStatus::Ok; }
    llmfast::SharedStatus erase(std::string_view, std::string_view) { return llmfast::SharedStatus::Ok; }
};

static_assert(llmfast::SharedTier<MinimalStore>);
static_assert(llmfast::SharedTier<FullStore>);
static_assert(!llmfast::SharedTier<NoPurge>);
static_assert(!llmfast::shared_tier_traits<MinimalStore>::has_lookup_async);
static_assert(!llmfast::shared_tier_traits<MinimalStore>::has_insert_async);
static_assert(!llmfast::shared_tier_traits<MinimalStore>::has_change_feed);
static_assert(!llmfast::shared_tier_traits<MinimalStore>::has_lock);
static_assert(llmfast::shared_tier_traits<FullStore>::has_lookup_async);
static_assert(llmfast::shared_tier_traits<FullStore>::has_insert_async);
static_assert(llmfast::shared_tier_traits<FullStore>::has_change_feed);
static_assert(llmfast::shared_tier_traits<FullStore>::has_lock);

}  // namespace

TEST_CASE("shared tier: status names") {
    CHECK(llmfast::to_string(llmfast::SharedStatus::Ok) == "Ok");
    CHECK(llmfast::to_string(llmfast::SharedStatus::Unavailable) == "Unavailable");
    CHECK_FALSE(llmfast::SharedLookup{}.found());
}

// The codec is a detail header outside the single header's umbrella; the single-header build tests
// the concept only.
#if __has_include(<llmfast/detail/shared_entry_codec.hpp>)
#include <llmfast/detail/shared_entry_codec.hpp>

namespace {

llmfast::SharedEntry sample_entry() {
    llmfast::SharedEntry e;
    e.scope = "gpt-4o|sys=v3|T=0";
    e.key = "0123456789abcdef0123456789abcdef";
    e.prompt = "什么是机器学习？";
    e.response = "Machine learning is ...";
    e.chunk_boundaries = {3, 10, 23};
    e.embedding = {0.5F, -0.25F, 0.0F, 1e-30F};
    e.embedder = "llmfast.HashingEmbedder/1 dim=4 seed=0";
    e.created_ns = 1'700'000'000'123'456'789;
    e.ttl = std::chrono::hours(1);
    return e;
}

using llmfast::detail::decode_shared_entry;
using llmfast::detail::encode_shared_entry;
using llmfast::detail::SharedDecodeStatus;

}  // namespace

TEST_CASE("shared entry codec: round trip, also without optional parts") {
    const llmfast::SharedEntry full = sample_entry();
    const std::string bytes = encode_shared_entry(full);
    const auto decoded = decode_shared_entry(bytes);
    REQUIRE(decoded.ok());
    CHECK(decoded.entry == full);
    CHECK(encode_shared_entry(decoded.entry) == bytes);

    llmfast::SharedEntry bare;
    bare.ttl = std::chrono::nanoseconds(1);
    const auto bare_decoded = decode_shared_entry(encode_shared_entry(bare));
    REQUIRE(bare_decoded.ok());
    CHECK(bare_decoded.entry == bare);
}

TEST_CASE("shared entry codec: the layout is little-endian and starts with the magic and version") {
    const std::string bytes = encode_shared_entry(sample_entry());
    CHECK(bytes.substr(0, 4) == "LFSE");
    CHECK(bytes[4] == 1);
    const auto body = static_cast<std::size_t>(static_cast<unsigned char>(bytes[8])) |
                      static_cast<std::size_t>(static_cast<unsigned char>(bytes[9])) << 8;
    CHECK(body == bytes.size() - 12 - 8);
}

TEST_CASE("shared entry codec: foreign, other-version, damaged and truncated values are rejected") {
    const std::string bytes = encode_shared_entry(sample_entry());
    CHECK(decode_shared_entry("").status == SharedDecodeStatus::Foreign);
    CHECK(decode_shared_entry("{\"response\": \"a JSON value of another client\"}").status == SharedDecodeStatus::Foreign);
    std::string other_version = bytes;
    other_version[4] = 2;
    const auto v2 = decode_shared_entry(other_version);
    CHECK(v2.status == SharedDecodeStatus::UnsupportedVersion);
    CHECK(std::string_view(v2.reason).find("version") != std::string_view::npos);
    for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
        INFO(cut);
        CHECK_FALSE(decode_shared_entry(std::string_view(bytes).substr(0, cut)).ok());
    }
    for (std::size_t at = 0; at < bytes.size(); ++at) {
        std::string flipped = bytes;
        flipped[at] = static_cast<char>(flipped[at] ^ 0x40);
        INFO(at);
        CHECK_FALSE(decode_shared_entry(flipped).ok());
    }
    CHECK(decode_shared_entry(bytes + "x").status != SharedDecodeStatus::Ok);
}

TEST_CASE("shared entry codec: encode refuses what decode would reject") {
    const auto code_of = [](const llmfast::SharedEntry& e) {
        try {
            (void)encode_shared_entry(e);
        } catch (const llmfast::Error& error) {
            return error.code();
        }
        return llmfast::ErrorCode::Ok;
    };
    llmfast::SharedEntry e = sample_entry();
    e.ttl = std::chrono::nanoseconds(0);
    CHECK(code_of(e) == llmfast::ErrorCode::InvalidArgument);
    e = sample_entry();
    e.chunk_boundaries = {5, 5};
    CHECK(code_of(e) == llmfast::ErrorCode::InvalidArgument);
    e.chunk_boundaries = {1000};
    CHECK(code_of(e) == llmfast::ErrorCode::InvalidArgument);
    e = sample_entry();
    e.embedding[1] = std::numeric_limits<float>::quiet_NaN();
    CHECK(code_of(e) == llmfast::ErrorCode::InvalidArgument);
}

// The fuzzer's seed (tests/fuzz/corpus/shared_entry/valid.bin): mode byte 0 (a value as is) + a valid
// value. LLMFAST_WRITE_FUZZ_SEED=1 rewrites it; otherwise the committed seed must still decode.
TEST_CASE("shared entry codec: fuzz seed") {
    const std::filesystem::path seed = std::filesystem::path(LLMFAST_SOURCE_DIR) / "tests/fuzz/corpus/shared_entry/valid.bin";
    const std::string bytes = std::string(1, '\0') + encode_shared_entry(sample_entry());
    if (std::getenv("LLMFAST_WRITE_FUZZ_SEED") != nullptr) {
        std::ofstream out(seed, std::ios::binary);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
    std::ifstream in(seed, std::ios::binary);
    REQUIRE(in);
    const std::string committed((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE(committed.size() > 1);
    const auto decoded = decode_shared_entry(std::string_view(committed).substr(1));
    REQUIRE(decoded.ok());
    CHECK(decoded.entry == sample_entry());
}
#endif
