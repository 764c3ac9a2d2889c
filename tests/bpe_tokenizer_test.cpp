// Tests for llmfast/bpe_tokenizer.hpp.
//
// Always run: synthetic rank files written here (merges, special tokens, malformed files, long
// pieces against a naive tiktoken merge, round trips of arbitrary bytes, threads) and the split
// patterns on hand-checked inputs. Hidden tag [.data] (CTest entry bpe_tokenizer_data_test): the real
// cl100k_base / o200k_base rank files against ids from the npm `tiktoken` package, token for token.
#include "catch.hpp"
#include "test_support.hpp"

#include <llmfast/bpe_tokenizer.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdlib>
#include <new>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

// Counts heap allocations, to check that count() makes none. The whole non-aligned family is
// replaced so that every allocation and deallocation pairs malloc with free (sanitizers check that).
namespace {
std::atomic<std::size_t> allocations{0};
void* counted_malloc(std::size_t size) noexcept {
    allocations.fetch_add(1, std::memory_order_relaxed);
    return std::malloc(size == 0 ? 1 : size);
}
}  // namespace

void* operator new(std::size_t size) {
    if (void* pointer = counted_malloc(size)) return pointer;
    throw std::bad_alloc();
}
void* operator new[](std::size_t size) {
    if (void* pointer = counted_malloc(size)) return pointer;
    throw std::bad_alloc();
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept { return counted_malloc(size); }
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept { return counted_malloc(size); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"  // g++ 12 false positive on replaced operators
#endif
void operator delete(void* pointer) noexcept { std::free(pointer); }
void operator delete[](void* pointer) noexcept { std::free(pointer); }
void operator delete(void* pointer, std::size_t) noexcept { std::free(pointer); }
void operator delete[](void* pointer, std::size_t) noexcept { std::free(pointer); }
void operator delete(void* pointer, const std::nothrow_t&) noexcept { std::free(pointer); }
void operator delete[](void* pointer, const std::nothrow_t&) noexcept { std::free(pointer); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

using llmfast::BpeEncoding;
using llmfast::BpeTokenizer;
using llmfast::EncodeOptions;
using llmfast::ErrorCode;
using llmfast::SplitPattern;
using llmfast::TokenId;

namespace {

// A rank file: the 256 single bytes (rank = byte value), then `merges` in order.
std::string rank_file(const std::vector<std::string>& merges) {
    std::string out;
    TokenId rank = 0;
    for (int b = 0; b < 256; ++b)
        out += llmfast::detail::bpe_base64_encode(std::string(1, static_cast<char>(b))) + " " + std::to_string(rank++) + "\n";
    for (const std::string& token : merges) out += llmfast::detail::bpe_base64_encode(token) + " " + std::to_string(rank++) + "\n";
    return out;
}

BpeEncoding test_encoding(SplitPattern pattern = SplitPattern::Cl100k) {
    return {"test", pattern, {{"<|end|>", 1000}, {"<|endoftext|>", 1001}}, 0, nullptr};
}

const std::vector<std::string> small_merges = {"he", "ll", "hell", "hello", " w", "or", " wor", "ld", " world", "aa", "aaaa"};

BpeTokenizer small_tokenizer() { return BpeTokenizer::from_rank_data(rank_file(small_merges), test_encoding()); }

std::vector<std::string> split(SplitPattern pattern, std::string_view text) {
    std::vector<std::string> pieces;
    for (std::size_t pos = 0; pos < text.size();) {
        const std::size_t end = llmfast::detail::bpe_piece_end(pattern, text, pos);
        REQUIRE(end > pos);
        REQUIRE(end <= text.size());
        pieces.emplace_back(text.substr(pos, end - pos));
        pos = end;
    }
    return pieces;
}

// tiktoken's byte_pair_merge, written the obvious way over a std::map.
std::vector<TokenId> naive_merge(const std::map<std::string, TokenId>& ranks, const std::string& piece) {
    std::vector<std::string> parts;
    for (char ch : piece) parts.emplace_back(1, ch);
    while (parts.size() > 1) {
        TokenId best = std::numeric_limits<TokenId>::max();
        std::size_t best_index = 0;
        for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
            const auto it = ranks.find(parts[i] + parts[i + 1]);
            if (it != ranks.end() && it->second < best) {
                best = it->second;
                best_index = i;
            }
        }
        if (best == std::numeric_limits<TokenId>::max()) break;
        parts[best_index] += parts[best_index + 1];
        parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(best_index) + 1);
    }
    std::vector<TokenId> ids;
    for (const std::string& part : parts) ids.push_back(ranks.at(part));
    return ids;
}

ErrorCode load_error(const std::string& data, BpeEncoding encoding = test_encoding()) {
    try {
        (void)BpeTokenizer::from_rank_data(data, std::move(encoding));
    } catch (const llmfast::Error& error) {
        return error.code();
    }
    return ErrorCode::Ok;
}

std::string load_message(const std::string& data, BpeEncoding encoding = test_encoding()) {
    try {
        (void)BpeTokenizer::from_rank_data(data, std::move(encoding));
    } catch (const llmfast::Error& error) {
        return error.what();
    }
    return "";
}

std::string random_bytes(std::mt19937& rng, std::size_t length) {
    std::string out;
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_int_distribution<int> kind(0, 3);
    for (std::size_t i = 0; i < length; ++i) {
        switch (kind(rng)) {
            case 0: out.push_back(static_cast<char>(byte(rng))); break;                 // anything
            case 1: out.push_back(" \n\r\t'a1!"[static_cast<std::size_t>(byte(rng)) % 8]); break;
            case 2: out += "\xE4\xB8\xAD"; break;                                       // 中
            default: out.push_back(static_cast<char>(0x80 + byte(rng) % 0x40)); break;  // stray continuation
        }
    }
    return out;
}

}  // namespace

TEST_CASE("BpeTokenizer merges by rank and decodes back") {
    const BpeTokenizer tokenizer = small_tokenizer();
    CHECK(tokenizer.rank_count() == 256 + small_merges.size());
    // "hello" is a token (rank 259); " world" is rank 264.
    CHECK(tokenizer.encode("hello world") == std::vector<TokenId>{259, 264});
    CHECK(tokenizer.encode("hello") == std::vector<TokenId>{259});
    // "helo": he(256) + l + o
    CHECK(tokenizer.encode("helo") == std::vector<TokenId>{256, 'l', 'o'});
    // "aaaaa" -> aaaa + a (aa merges first, leftmost, then aaaa)
    CHECK(tokenizer.encode("aaaaa") == std::vector<TokenId>{266, 'a'});
    CHECK(tokenizer.encode("") .empty());
    CHECK(tokenizer.count("") == 0);
    CHECK(tokenizer.decode(tokenizer.encode("hello world, hello!")) == "hello world, hello!");
    CHECK(tokenizer.decode({259, 264}) == "hello world");
    CHECK(tokenizer.token_bytes(264) == std::optional<std::string_view>(" world"));
    CHECK_FALSE(tokenizer.token_bytes(999).has_value());
    try {
        (void)tokenizer.decode({999});
        FAIL("decode accepted an unknown id");
    } catch (const llmfast::Error& error) {
        CHECK(error.code() == ErrorCode::InvalidArgument);
    }
    STATIC_REQUIRE(llmfast::TokenCounter<BpeTokenizer>);
}

TEST_CASE("BpeTokenizer special tokens are ordinary text unless allowed") {
    const BpeTokenizer tokenizer = small_tokenizer();
    const std::string text = "hello<|end|> world<|endoftext|>";
    const std::vector<TokenId> ordinary = tokenizer.encode(text);
    CHECK(std::find(ordinary.begin(), ordinary.end(), TokenId{1000}) == ordinary.end());
    CHECK(tokenizer.decode(ordinary) == text);
    CHECK(tokenizer.count(text) == ordinary.size());

    const std::vector<TokenId> special = tokenizer.encode(text, {.allow_special = true});
    CHECK(special == std::vector<TokenId>{259, 1000, 264, 1001});
    CHECK(tokenizer.count(text, {.allow_special = true}) == 4);
    CHECK(tokenizer.decode(special) == text);
    CHECK(tokenizer.encode("<|end|><|end|>", {.allow_special = true}) == std::vector<TokenId>{1000, 1000});
    CHECK(tokenizer.encode("<|end", {.allow_special = true}) == tokenizer.encode("<|end"));
    CHECK(tokenizer.special_token_id("<|endoftext|>") == std::optional<TokenId>(1001));

    // Many occurrences of one special token and a late one of the other: linear, and in order.
    std::string many;
    std::vector<TokenId> expected;
    for (int i = 0; i < 20000; ++i) {
        many += "a<|end|>";
        expected.push_back('a');
        expected.push_back(1000);
    }
    many += "<|endoftext|>";
    expected.push_back(1001);
    CHECK(tokenizer.encode(many, {.allow_special = true}) == expected);
    CHECK(tokenizer.count(many, {.allow_special = true}) == expected.size());
    CHECK_FALSE(tokenizer.special_token_id("<|nope|>").has_value());
}

TEST_CASE("BpeTokenizer rejects malformed rank files with InvalidFormat") {
    const std::string good = rank_file({"ab"});
    REQUIRE(load_error(good) == ErrorCode::Ok);
    const std::string bytes_only = rank_file({});

    SECTION("bad base64") {
        CHECK(load_error(bytes_only + "!!!! 256\n") == ErrorCode::InvalidFormat);
        CHECK(load_error(bytes_only + "YW= 256\n") == ErrorCode::InvalidFormat);     // length not a multiple of 4
        CHECK(load_error(bytes_only + "Y=Jj 256\n") == ErrorCode::InvalidFormat);    // padding inside
        CHECK(load_message(bytes_only + "!!!! 256\n").find("line 257: invalid base64") != std::string::npos);
    }
    SECTION("missing or non-numeric rank, truncated lines") {
        CHECK(load_error(bytes_only + "YWI=\n") == ErrorCode::InvalidFormat);
        CHECK(load_error(bytes_only + "YWI= \n") == ErrorCode::InvalidFormat);
        CHECK(load_error(bytes_only + "YWI= x\n") == ErrorCode::InvalidFormat);
        CHECK(load_error(bytes_only + "YWI= -1\n") == ErrorCode::InvalidFormat);
        CHECK(load_error(bytes_only + "YWI= 99999999999\n") == ErrorCode::InvalidFormat);
        CHECK(load_error(bytes_only + "YW") == ErrorCode::InvalidFormat);  // cut mid-line
        CHECK(load_error(good.substr(0, good.size() - 2)) == ErrorCode::InvalidFormat);  // cut to "YWI= 25": a rank that repeats
    }
    SECTION("non-contiguous or duplicate ranks") {
        CHECK(load_error(bytes_only + "YWI= 257\n") == ErrorCode::InvalidFormat);
        CHECK(load_message(bytes_only + "YWI= 257\n").find("non-contiguous") != std::string::npos);
        CHECK(load_error(bytes_only + "YWI= 255\n") == ErrorCode::InvalidFormat);
        CHECK(load_message(bytes_only + "YWI= 255\n").find("appears twice") != std::string::npos);
    }
    SECTION("duplicate token bytes, empty file, missing byte") {
        CHECK(load_error(bytes_only + "QQ== 256\n") == ErrorCode::InvalidFormat);  // "A" again
        CHECK(load_error("") == ErrorCode::InvalidFormat);
        CHECK(load_error("\n\n") == ErrorCode::InvalidFormat);
        // Without byte 0xFF: rank file of bytes 0..254 only.
        std::string missing;
        for (int b = 0; b < 255; ++b)
            missing += llmfast::detail::bpe_base64_encode(std::string(1, static_cast<char>(b))) + " " + std::to_string(b) + "\n";
        CHECK(load_error(missing) == ErrorCode::InvalidFormat);
        CHECK(load_message(missing).find("byte 255") != std::string::npos);
    }
    SECTION("a truncated file of a named encoding") {
        BpeEncoding encoding = test_encoding();
        encoding.expected_ranks = 300;
        CHECK(load_error(good, encoding) == ErrorCode::InvalidFormat);
        CHECK(load_message(good, encoding).find("truncated") != std::string::npos);
        // The real cl100k_base description on a tiny file.
        CHECK(load_error(good, BpeEncoding::cl100k_base()) == ErrorCode::InvalidFormat);
    }
    SECTION("special token colliding with a rank") {
        BpeEncoding encoding = test_encoding();
        encoding.special_tokens.push_back({"<|x|>", 5});
        CHECK(load_error(good, encoding) == ErrorCode::InvalidFormat);
    }
    SECTION("CRLF line ends and blank lines are accepted") {
        std::string crlf;
        for (char ch : good) {
            if (ch == '\n') crlf += "\r\n\n";
            else crlf += ch;
        }
        CHECK(load_error(crlf) == ErrorCode::Ok);
        CHECK(load_error(good.substr(0, good.size() - 1)) == ErrorCode::Ok);  // no final newline
    }
}

TEST_CASE("BpeTokenizer reports bad encodings and unreadable files") {
    BpeEncoding empty_special = test_encoding();
    empty_special.special_tokens.push_back({"", 2000});
    CHECK(load_error(rank_file({}), empty_special) == ErrorCode::InvalidArgument);
    BpeEncoding duplicate = test_encoding();
    duplicate.special_tokens.push_back({"<|end|>", 2000});
    CHECK(load_error(rank_file({}), duplicate) == ErrorCode::InvalidArgument);
    try {
        (void)BpeTokenizer::cl100k_base("/nonexistent/llmfast/cl100k_base.tiktoken");
        FAIL("loaded a missing file");
    } catch (const llmfast::Error& error) {
        CHECK(error.code() == ErrorCode::IoError);
    }
}

// Issue 11 #4: a directory (and a read error) escaped as std::ios_base::failure from
// basic_filebuf::underflow, not as Error(IoError); the earlier test only tried a missing file.
TEST_CASE("BpeTokenizer: unreadable rank files throw IoError naming the path, nothing else") {
    const auto io_error_of = [](const std::filesystem::path& path) -> std::string {
        try {
            (void)BpeTokenizer::cl100k_base(path);
        } catch (const llmfast::Error& error) {
            if (error.code() != ErrorCode::IoError) return std::string("wrong code: ") + error.what();
            if (std::string_view(error.what()).find(path.string()) == std::string_view::npos) {
                return std::string("path missing from: ") + error.what();
            }
            return "IoError";
        } catch (const std::exception& other) {
            return std::string("not an llmfast::Error: ") + other.what();
        }
        return "loaded";
    };
    const std::filesystem::path directory = std::filesystem::temp_directory_path();
    CHECK(io_error_of(directory) == "IoError");
    CHECK(io_error_of("/nonexistent/llmfast/cl100k_base.tiktoken") == "IoError");
    CHECK(io_error_of("") == "IoError");
    // A read that fails after a successful open: /proc/self/mem errors (EIO) at offset 0, unmapped.
    if (std::filesystem::exists("/proc/self/mem")) CHECK(io_error_of("/proc/self/mem") == "IoError");
    // The other entry points share the reader.
    CHECK(llmfast::testing::error_code_of([&] { (void)BpeTokenizer::o200k_base(directory); }) == ErrorCode::IoError);
    CHECK(llmfast::testing::error_code_of([&] { (void)BpeTokenizer(directory, test_encoding()); }) == ErrorCode::IoError);
}

TEST_CASE("BpeTokenizer loads a rank file from a path") {
    const std::filesystem::path path = std::filesystem::temp_directory_path() / "llmfast_bpe_tokenizer_test.tiktoken";
    {
        std::ofstream out(path, std::ios::binary);
        out << rank_file(small_merges);
    }
    const BpeTokenizer tokenizer(path, test_encoding());
    CHECK(tokenizer.encode("hello world") == std::vector<TokenId>{259, 264});
    std::filesystem::remove(path);
}

TEST_CASE("BpeTokenizer takes a custom splitter") {
    BpeEncoding encoding = test_encoding();
    // Pieces of at most two bytes: "hello" can no longer merge past "he" + "ll" + "o".
    encoding.custom_split = [](std::string_view text, std::size_t pos) noexcept { return std::min(text.size(), pos + 2); };
    const BpeTokenizer tokenizer = BpeTokenizer::from_rank_data(rank_file(small_merges), encoding);
    CHECK(tokenizer.encode("hello") == std::vector<TokenId>{256, 257, 'o'});
    CHECK(tokenizer.count("hello") == 3);
    // A faulty splitter (no progress) cannot hang the tokenizer: the rest becomes one piece.
    encoding.custom_split = [](std::string_view, std::size_t pos) noexcept { return pos; };
    const BpeTokenizer stuck = BpeTokenizer::from_rank_data(rank_file(small_merges), encoding);
    CHECK(stuck.decode(stuck.encode("hello world")) == "hello world");
}

TEST_CASE("cl100k split pattern") {
    using V = std::vector<std::string>;
    const auto cl = [](std::string_view text) { return split(SplitPattern::Cl100k, text); };
    CHECK(cl("Hello world") == V{"Hello", " world"});
    CHECK(cl("I'm here, they'll go") == V{"I", "'m", " here", ",", " they", "'ll", " go"});
    CHECK(cl("DON'T 'sam ''s") == V{"DON", "'T", " '", "sam", " ''", "s"});
    CHECK(cl("x'ſ") == V{"x", "'ſ"});
    CHECK(cl("12345 6") == V{"123", "45", " ", "6"});
    CHECK(cl("a  b") == V{"a", " ", " b"});
    CHECK(cl("a   ") == V{"a", "   "});
    CHECK(cl("a\n\n  b") == V{"a", "\n\n", " ", " b"});
    CHECK(cl("a\n  ") == V{"a", "\n", "  "});
    CHECK(split(SplitPattern::Cl100kTrailingSpace, "a\n  ") == V{"a", "\n  "});
    CHECK(split(SplitPattern::Cl100kTrailingSpace, "a\n  b") == V{"a", "\n", " ", " b"});
    CHECK(cl(" !?\n\nx") == V{" !?\n\n", "x"});
    CHECK(cl("\thello") == V{"\thello"});
    CHECK(cl("\nhello") == V{"\n", "hello"});
    CHECK(cl("中文，标点") == V{"中文", "，标点"});
    CHECK(cl("e\xCC\x81") == V{"e", "\xCC\x81"});  // a combining mark is not \p{L}
    CHECK(cl("\xFF\xFE" "ab") == V{"\xFF\xFE", "ab"});  // invalid bytes split like symbols
    CHECK(cl("a\xC3") == V{"a", "\xC3"});
}

TEST_CASE("o200k split pattern") {
    using V = std::vector<std::string>;
    const auto o = [](std::string_view text) { return split(SplitPattern::O200k, text); };
    CHECK(o("Hello world") == V{"Hello", " world"});
    CHECK(o("HELLOworld helloWORLD") == V{"HELLOworld", " hello", "WORLD"});
    CHECK(o("I'm DON'T they'LL") == V{"I'm", " DON'T", " they'LL"});
    CHECK(o("e\xCC\x81t\xC3\xA9") == V{"e\xCC\x81t\xC3\xA9"});  // marks join words
    CHECK(o("a/b//\n") == V{"a", "/b", "//\n"});
    CHECK(o("12345") == V{"123", "45"});
    CHECK(o("a\n  ") == V{"a", "\n", "  "});
    CHECK(o("中文，标点") == V{"中文", "，标点"});
}

TEST_CASE("BpeTokenizer long pieces merge exactly like tiktoken's algorithm") {
    // A vocabulary over "abc" grown by random merges of existing tokens.
    std::mt19937 rng(7);
    std::vector<std::string> tokens = {"a", "b", "c"};
    std::set<std::string> seen(tokens.begin(), tokens.end());
    std::vector<std::string> merges;
    while (merges.size() < 300) {
        const std::string token = tokens[rng() % tokens.size()] + tokens[rng() % tokens.size()];
        if (token.size() > 24 || !seen.insert(token).second) continue;
        tokens.push_back(token);
        merges.push_back(token);
    }
    const BpeTokenizer tokenizer = BpeTokenizer::from_rank_data(rank_file(merges), test_encoding());
    std::map<std::string, TokenId> ranks;
    for (int b = 0; b < 256; ++b) ranks[std::string(1, static_cast<char>(b))] = static_cast<TokenId>(b);
    for (std::size_t i = 0; i < merges.size(); ++i) ranks[merges[i]] = static_cast<TokenId>(256 + i);

    for (int round = 0; round < 300; ++round) {
        const std::size_t length = 1 + rng() % (round < 150 ? 90 : 700);  // both merge paths
        std::string piece;
        for (std::size_t i = 0; i < length; ++i) piece.push_back("abc"[rng() % 3]);
        const std::vector<TokenId> expected = naive_merge(ranks, piece);
        INFO("piece: " << piece);
        REQUIRE(tokenizer.encode(piece) == expected);
        REQUIRE(tokenizer.count(piece) == expected.size());
    }
}

TEST_CASE("BpeTokenizer round-trips arbitrary bytes, invalid UTF-8 included") {
    std::mt19937 rng(11);
    for (const SplitPattern pattern : {SplitPattern::Cl100k, SplitPattern::Cl100kTrailingSpace, SplitPattern::O200k}) {
        const BpeTokenizer tokenizer = BpeTokenizer::from_rank_data(rank_file(small_merges), test_encoding(pattern));
        for (int round = 0; round < 300; ++round) {
            const std::string text = random_bytes(rng, rng() % 300);
            const std::vector<TokenId> ids = tokenizer.encode(text);
            REQUIRE(tokenizer.decode(ids) == text);
            REQUIRE(tokenizer.count(text) == ids.size());
        }
    }
}

TEST_CASE("BpeTokenizer count allocates nothing after warm-up") {
    const BpeTokenizer tokenizer = small_tokenizer();
    std::mt19937 rng(9);
    // Short pieces, long pieces (the per-thread scratch), special tokens.
    const std::string text = random_bytes(rng, 2000) + std::string(5000, 'a') + " <|end|> hello world";
    const std::size_t expected = tokenizer.encode(text).size();
    REQUIRE(tokenizer.count(text) == expected);  // warm-up: the scratch grows once per thread
    const std::size_t before = allocations.load();
    std::size_t total = 0;
    for (int i = 0; i < 10; ++i) total += tokenizer.count(text) + tokenizer.count(text, {.allow_special = true});
    CHECK(allocations.load() == before);
    CHECK(total > 10 * expected);
}

TEST_CASE("BpeTokenizer is safe to share between threads") {
    const BpeTokenizer tokenizer = small_tokenizer();
    std::vector<std::string> texts;
    std::mt19937 rng(3);
    for (int i = 0; i < 40; ++i) texts.push_back(random_bytes(rng, 50 + rng() % 400) + std::string(200, 'a'));
    std::vector<std::size_t> expected;
    for (const std::string& text : texts) expected.push_back(tokenizer.encode(text).size());
    std::vector<int> mismatches(4, 0);
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int round = 0; round < 20; ++round)
                for (std::size_t i = 0; i < texts.size(); ++i)
                    if (tokenizer.count(texts[i]) != expected[i]) ++mismatches[t];
        });
    }
    for (std::thread& thread : threads) thread.join();
    for (const int count : mismatches) CHECK(count == 0);
}

// ------------------------------------------------------------------------------------------------
// Real rank files and reference ids (hidden tests; CTest entry bpe_tokenizer_data_test).

namespace {

std::string data_path(const char* variable, const char* fallback) {
    if (const char* value = std::getenv(variable); value != nullptr && *value != '\0') return value;
    return fallback;
}

#ifndef LLMFAST_CL100K_RANKS_DEFAULT
#define LLMFAST_CL100K_RANKS_DEFAULT ""
#define LLMFAST_O200K_RANKS_DEFAULT ""
#define LLMFAST_TOKENIZER_REFERENCE_DEFAULT ""
#endif

struct DataFiles {
    std::string cl100k = data_path("LLMFAST_CL100K_RANKS", LLMFAST_CL100K_RANKS_DEFAULT);
    std::string o200k = data_path("LLMFAST_O200K_RANKS", LLMFAST_O200K_RANKS_DEFAULT);
    std::string reference = data_path("LLMFAST_TOKENIZER_REFERENCE", LLMFAST_TOKENIZER_REFERENCE_DEFAULT);
};

// Skips the program when a file is missing, except under CI (CI=true), where that is a failure.
void require_data(const DataFiles& files) {
    for (const std::string* path : {&files.cl100k, &files.o200k, &files.reference}) {
        if (!path->empty() && std::filesystem::exists(*path)) continue;
        const std::string message = "tokenizer data file missing: '" + *path +
                                    "' (run .ci/steps.d/20-tokenizer-data.sh, or set LLMFAST_CL100K_RANKS, "
                                    "LLMFAST_O200K_RANKS, LLMFAST_TOKENIZER_REFERENCE)";
        const char* ci = std::getenv("CI");
        if (ci != nullptr && std::string_view(ci) == "true") FAIL(message + "; CI=true, so this is a failure");
        LLMFAST_SKIP_TEST(message.c_str());
    }
}

nlohmann::json load_reference(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in);
    return nlohmann::json::parse(in);
}

void check_reference(const BpeTokenizer& tokenizer, const nlohmann::json& reference, const std::string& name) {
    std::size_t compared_tokens = 0;
    std::size_t mismatched_cases = 0;
    for (const nlohmann::json& entry : reference.at("cases")) {
        const std::string text = entry.at("text").get<std::string>();
        const auto expected = entry.at(name).get<std::vector<TokenId>>();
        const auto expected_special = entry.at(name + "_special").get<std::vector<TokenId>>();
        const std::vector<TokenId> ids = tokenizer.encode(text);
        const std::vector<TokenId> special = tokenizer.encode(text, {.allow_special = true});
        if (ids != expected || special != expected_special) ++mismatched_cases;
        INFO(name << " text: \"" << text << "\"");
        CHECK(ids == expected);
        CHECK(special == expected_special);
        CHECK(tokenizer.count(text) == ids.size());
        CHECK(tokenizer.count(text, {.allow_special = true}) == special.size());
        CHECK(tokenizer.decode(ids) == text);
        compared_tokens += expected.size() + expected_special.size();
    }
    CHECK(mismatched_cases == 0);
    CHECK(compared_tokens > 10000);
}

}  // namespace

TEST_CASE("cl100k_base matches tiktoken token for token", "[.data]") {
    const DataFiles files;
    require_data(files);
    const BpeTokenizer tokenizer = BpeTokenizer::cl100k_base(files.cl100k);
    CHECK(tokenizer.rank_count() == 100256);
    CHECK(tokenizer.encode("hello world") == std::vector<TokenId>{15339, 1917});
    CHECK(tokenizer.encode("<|endoftext|>", {.allow_special = true}) == std::vector<TokenId>{100257});
    check_reference(tokenizer, load_reference(files.reference), "cl100k_base");
}

TEST_CASE("o200k_base matches tiktoken token for token", "[.data]") {
    const DataFiles files;
    require_data(files);
    const BpeTokenizer tokenizer = BpeTokenizer::o200k_base(files.o200k);
    CHECK(tokenizer.rank_count() == 199998);
    CHECK(tokenizer.encode("<|endoftext|>", {.allow_special = true}) == std::vector<TokenId>{199999});
    check_reference(tokenizer, load_reference(files.reference), "o200k_base");
}

TEST_CASE("split patterns match the regexes piece for piece", "[.data]") {
    // The reference pieces come from the patterns run as JavaScript regexes (tokenizer_reference.mjs);
    // this also covers SplitPattern::Cl100kTrailingSpace, which no tiktoken build at hand uses.
    const DataFiles files;
    require_data(files);
    const nlohmann::json reference = load_reference(files.reference);
    std::size_t compared = 0;
    for (const nlohmann::json& entry : reference.at("cases")) {
        const std::string text = entry.at("text").get<std::string>();
        const nlohmann::json& pieces = entry.at("pieces");
        INFO("text: \"" << text << "\"");
        CHECK(split(SplitPattern::Cl100k, text) == pieces.at("cl100k").get<std::vector<std::string>>());
        CHECK(split(SplitPattern::Cl100kTrailingSpace, text) ==
              pieces.at("cl100k_trailing_space").get<std::vector<std::string>>());
        CHECK(split(SplitPattern::O200k, text) == pieces.at("o200k").get<std::vector<std::string>>());
        compared += pieces.at("cl100k").size();
    }
    CHECK(compared > 10000);
}

TEST_CASE("real encodings round-trip arbitrary bytes", "[.data]") {
    const DataFiles files;
    require_data(files);
    std::mt19937 rng(5);
    for (const BpeTokenizer& tokenizer : {BpeTokenizer::cl100k_base(files.cl100k), BpeTokenizer::o200k_base(files.o200k)}) {
        for (int round = 0; round < 500; ++round) {
            const std::string text = random_bytes(rng, rng() % 400);
            const std::vector<TokenId> ids = tokenizer.encode(text);
            REQUIRE(tokenizer.decode(ids) == text);
            REQUIRE(tokenizer.count(text) == ids.size());
        }
    }
}
