// Fuzz target: SemanticCache::load_from_string, against its documented contract.
//   - Every input either loads or throws Error(CorruptSnapshot); nothing else escapes.
//   - A rejected input leaves the cache exactly as it was (same snapshot bytes, the sentinel still hits).
//   - An accepted input replaces the content with exactly what a reference model predicts: entries in
//     file order (least recently used first), expired ones dropped, a later entry with the same scope
//     and normalized prompt replacing the earlier, and per shard the least recently used evicted past
//     the shard's capacity — checked for the fuzzer's cache and for one with another shard count and a
//     smaller capacity (issue 11 #6: load evicted recent entries there).
//   - An accepted snapshot round-trips: save, load into a fresh cache, save again gives the same bytes.
// Input: byte 0 picks the mode (bit 7: modes 1 and 2 use the version 2 layout, else version 1): 0 = the rest is a snapshot as is; 1 = the rest is a payload, given a
// valid header (size and checksum), so the entry parser is reached; 2 = the rest describes entries
// that are written as a valid snapshot (so the eviction reference is exercised on every input).
// Seeds: tests/fuzz/corpus/cache_snapshot/valid.snap, written by tests/semantic_cache_test.cpp
// (`LLMFAST_WRITE_FUZZ_SEED=1 semantic_cache_test "fuzz seed*"`), which otherwise checks it still loads.
#include <llmfast/flat_index.hpp>
#include <llmfast/hashing_embedder.hpp>
#include <llmfast/semantic_cache.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <list>
#include <string>
#include <cstring>
#include <string_view>
#include <vector>

namespace {

// The seed snapshot's embedder: small, so the fuzzer spends its time in the parser.
using Cache = llmfast::SemanticCache<llmfast::HashingEmbedder, llmfast::FlatIndex, llmfast::ManualClock>;

llmfast::ManualClock& clock_instance() {
    static llmfast::ManualClock clock(std::chrono::hours(1000));
    return clock;
}

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_instance().now().time_since_epoch()).count();
}

Cache make_cache(std::size_t max_entries = 64, std::size_t shards = 2) {
    return Cache(clock_instance(), llmfast::HashingEmbedder({.dimension = 16}),
                 {.max_entries = max_entries, .ttl = std::chrono::hours(24), .semantic_tier = llmfast::SemanticTier::On,
                  .similarity_threshold = 0.5F, .shards = shards});
}

void check(bool ok) {
    if (!ok) std::abort();
}

// Builds snapshot bytes independently of the cache's writer (the reference for the documented layout).
class Bytes {
public:
    template <class T>
    void pod(T value) {
        char raw[sizeof(T)];
        std::memcpy(raw, &value, sizeof(T));
        out_.append(raw, sizeof(T));
    }
    void str(std::string_view s) {
        pod(static_cast<std::uint32_t>(s.size()));
        out_.append(s);
    }
    std::string& bytes() noexcept { return out_; }

private:
    std::string out_;
};

struct RawEntry {
    std::string scope, prompt, response;
    std::int64_t created = 0, expires = 0;
};

// The entries of a snapshot the cache accepted (so it is well formed), in file order.
std::vector<RawEntry> parse_accepted(std::string_view bytes) {
    std::uint32_t version = 0;
    std::memcpy(&version, bytes.data() + llmfast::detail::snapshot_magic.size(), sizeof version);
    llmfast::detail::SnapshotReader in(bytes.substr(llmfast::detail::snapshot_header_size));
    (void)in.str("identity");
    const auto dimension = in.pod<std::uint64_t>("dimension");
    (void)in.pod<std::int64_t>("saved");
    const auto count = in.pod<std::uint64_t>("count");
    std::vector<RawEntry> entries;
    for (std::uint64_t i = 0; i < count; ++i) {
        RawEntry e;
        e.scope = std::string(in.str("scope"));
        e.prompt = std::string(in.str("prompt"));
        e.response = std::string(in.str("response"));
        e.created = in.pod<std::int64_t>("created");
        e.expires = in.pod<std::int64_t>("expires");
        if (version >= 2 && in.pod<std::uint8_t>("vector flag") == 1) (void)in.raw(static_cast<std::size_t>(dimension) * sizeof(float), "vector");
        entries.push_back(std::move(e));
    }
    return entries;
}

// What load must leave in a cache of `max_entries` over `shards` (both as the cache computes them;
// the byte budget, 1 GiB, is never reached here), least recently used first across all shards.
std::vector<RawEntry> expected_content(const std::vector<RawEntry>& entries, std::size_t max_entries, std::size_t shards) {
    const std::size_t count = std::min(shards, max_entries);
    struct Item {
        llmfast::detail::CacheKey key;
        const RawEntry* entry;
        std::size_t seq;  // position in the file = recency order
    };
    std::vector<std::list<Item>> lru(count);
    const std::int64_t now = now_ns();
    for (std::size_t seq = 0; seq < entries.size(); ++seq) {
        const RawEntry& e = entries[seq];
        if (e.expires <= now) continue;
        const auto key = llmfast::detail::make_cache_key(e.scope, llmfast::detail::normalize_prompt(e.prompt));
        auto& list = lru[key.high % count];
        list.remove_if([&](const Item& item) { return item.key == key; });
        list.push_front(Item{key, &e, seq});
        const std::size_t i = static_cast<std::size_t>(key.high % count);
        const std::size_t capacity = max_entries / count + (i < max_entries % count ? 1 : 0);
        while (list.size() > capacity) list.pop_back();
    }
    std::vector<Item> kept;
    for (const auto& list : lru) kept.insert(kept.end(), list.begin(), list.end());
    std::sort(kept.begin(), kept.end(), [](const Item& a, const Item& b) { return a.seq < b.seq; });
    std::vector<RawEntry> out;
    for (const Item& item : kept) out.push_back(*item.entry);
    return out;
}

void check_content(Cache& cache, const std::vector<RawEntry>& expected) {
    check(cache.size() == expected.size());
    for (const RawEntry& e : expected) {
        const llmfast::LookupResult hit = cache.lookup(e.prompt, e.scope);
        check(hit.match == llmfast::MatchKind::Exact);
        check(hit.response() == e.response);
    }
}

std::string with_header(std::string_view payload, std::uint32_t version) {
    Bytes out;
    out.bytes().append(llmfast::detail::snapshot_magic);
    out.pod(version);
    out.pod(std::uint32_t{0});
    out.pod(static_cast<std::uint64_t>(payload.size()));
    out.pod(llmfast::detail::xxh3_64(payload, 0));
    out.bytes().append(payload);
    return std::move(out.bytes());
}

// Mode 2: entries from the input bytes, as a valid snapshot of this embedder. Small alphabets so that
// scopes and normalized prompts collide (replacement) and shards overflow (eviction). `version` 1 (no
// vectors) or 2 (some entries with a vector of finite values, which load must use as is).
std::string structured_snapshot(std::string_view in, std::uint32_t version) {
    const std::string empty = make_cache().save_to_string();
    const std::string_view empty_payload = std::string_view(empty).substr(llmfast::detail::snapshot_header_size);
    // The payload's prefix (identity, dimension, saved-at) is the empty cache's, minus its count.
    const std::string_view prefix = empty_payload.substr(0, empty_payload.size() - sizeof(std::uint64_t));
    std::vector<RawEntry> entries;
    static constexpr std::string_view words[] = {"alpha", "Beta", "  gamma ", "delta", "ＡＬＰＨＡ", "3 tickets", "not", "?"};
    std::size_t pos = 0;
    const auto next = [&]() -> std::uint8_t { return pos < in.size() ? static_cast<std::uint8_t>(in[pos++]) : 0; };
    const std::int64_t now = now_ns();
    while (pos < in.size() && entries.size() < 200) {
        const std::uint8_t a = next(), b = next(), c = next();
        RawEntry e;
        e.scope = std::string(1, static_cast<char>('a' + a % 3));
        e.prompt = std::string(words[b % 8]) + " " + std::string(words[(b / 8) % 8]);
        e.response = std::to_string(entries.size());
        const std::int64_t hour = 3'600'000'000'000;
        e.created = now - static_cast<std::int64_t>(c % 4) * hour;
        e.expires = e.created + static_cast<std::int64_t>(1 + (c / 4) % 8) * hour;  // some already expired
        entries.push_back(std::move(e));
    }
    Bytes payload;
    payload.bytes().append(prefix);
    payload.pod(static_cast<std::uint64_t>(entries.size()));
    for (const RawEntry& e : entries) {
        payload.str(e.scope);
        payload.str(e.prompt);
        payload.str(e.response);
        payload.pod(e.created);
        payload.pod(e.expires);
        if (version >= 2) {
            const bool has_vector = e.response.size() % 2 == 0;
            payload.pod(static_cast<std::uint8_t>(has_vector ? 1 : 0));
            for (std::size_t k = 0; has_vector && k < 16; ++k) payload.pod(static_cast<float>((k * 7 + e.prompt.size()) % 5) - 2.0F);
        }
    }
    return with_header(payload.bytes(), version);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
    std::string input;
    switch (data[0] % 3) {
        case 0: input = std::string(rest); break;
        case 1: input = with_header(rest, data[0] & 0x80U ? llmfast::detail::snapshot_version : llmfast::detail::snapshot_version_oldest); break;
        default: input = structured_snapshot(rest, data[0] & 0x80U ? llmfast::detail::snapshot_version : llmfast::detail::snapshot_version_oldest); break;
    }

    Cache cache = make_cache();
    cache.insert("sentinel prompt", "scope", "sentinel response");
    const std::string before = cache.save_to_string();
    try {
        cache.load_from_string(input);
    } catch (const llmfast::Error& e) {
        check(e.code() == llmfast::ErrorCode::CorruptSnapshot);
        check(data[0] % 3 != 2);  // a structured snapshot is valid
        // Rejected: the cache must be unchanged.
        check(cache.size() == 1 && cache.save_to_string() == before);  // the clock does not move
        check(cache.lookup("sentinel prompt", "scope").response() == "sentinel response");
        return 0;
    }
    // Accepted: exactly the reference content, here and in a cache with another shard count.
    const std::vector<RawEntry> entries = parse_accepted(input);
    const std::string again = cache.save_to_string();
    const std::vector<RawEntry> content = expected_content(entries, 64, 2);
    check_content(cache, content);
    Cache narrow = make_cache(8, 1);
    narrow.load_from_string(input);
    check_content(narrow, expected_content(entries, 8, 1));
    Cache wide = make_cache(24, 5);
    wide.load_from_string(input);
    check_content(wide, expected_content(entries, 24, 5));
    // Round trip: what the cache saves loads into the same content and saves to the same bytes.
    Cache other = make_cache();
    other.load_from_string(again);
    check(other.save_to_string() == again);
    check_content(other, content);
    // What a 2-shard cache saved is in one recency order: a cache with another shard count and a
    // smaller capacity keeps the most recently used of it (issue 11 #6).
    Cache narrow_again = make_cache(8, 1);
    narrow_again.load_from_string(again);
    check_content(narrow_again, expected_content(content, 8, 1));
    Cache odd_again = make_cache(9, 3);
    odd_again.load_from_string(again);
    check_content(odd_again, expected_content(content, 9, 3));
    return 0;
}
