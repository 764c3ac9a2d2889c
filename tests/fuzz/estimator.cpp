// Fuzzes EstimatingTokenCounter's documented contract on any bytes and any ratios: 0 only for empty
// text, at least 1 otherwise; monotone (a prefix, and for valid UTF-8 any substring between code-point
// boundaries, never costs more than the text); truncate(text, n) is the longest prefix at a character
// boundary with count(prefix) <= n, and all of the text when count(text) <= n.
#include <llmfast/estimating_token_counter.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

namespace {

void require(bool ok) {
    if (!ok) std::abort();
}

// Character boundaries as the estimator sees them: each decode unit (a code point or an ill-formed
// maximal subpart) is one character.
std::vector<std::size_t> boundaries(std::string_view text) {
    std::vector<std::size_t> out{0};
    for (std::size_t pos = 0; pos < text.size();) {
        const auto d = llmfast::utf8::decode(text, pos);
        pos += d.length == 0 ? 1 : d.length;
        out.push_back(pos > text.size() ? text.size() : pos);
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const unsigned mode = data[0];
    ++data;
    --size;
    llmfast::EstimatorRatios ratios = (mode & 1U) != 0 ? llmfast::EstimatorRatios::o200k() : llmfast::EstimatorRatios{};
    if ((mode & 2U) != 0 && size >= 7) {
        // Ratios from the input: 0 .. 6.3 in steps of 0.1 (and 0 divisors, which are clamped).
        double* fields[] = {&ratios.cjk_ideograph, &ratios.kana_hangul, &ratios.letters_per_token,
                            &ratios.digits_per_token, &ratios.punctuation, &ratios.whitespace_run, &ratios.other_byte};
        for (double* field : fields) {
            *field = static_cast<double>(data[0] & 63U) / 10.0 - ((data[0] & 64U) != 0 ? 1.0 : 0.0);
            ++data;
            --size;
        }
    }
    const llmfast::EstimatingTokenCounter counter(ratios);
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const std::size_t whole = counter.count(text);
    require((whole == 0) == text.empty());

    // Monotone in the prefix, at every character boundary (the truncator relies on it).
    const std::vector<std::size_t> cuts = boundaries(text);
    std::vector<std::size_t> prefix_cost(cuts.size());
    for (std::size_t k = 0; k < cuts.size(); ++k) {
        prefix_cost[k] = counter.count(text.substr(0, cuts[k]));
        require(k == 0 || prefix_cost[k] >= prefix_cost[k - 1]);
    }
    require(prefix_cost.back() == whole);

    // Valid UTF-8: any substring between code-point boundaries costs no more than the text
    // (what `monotone = true` declares); checked for a few substrings.
    if (llmfast::utf8::is_valid(text) && cuts.size() > 2) {
        for (std::size_t k = 0; k < 8; ++k) {
            const std::size_t a = cuts[(k * 7919U + size) % cuts.size()];
            const std::size_t b = cuts[(k * 104729U + 3U * size) % cuts.size()];
            const std::size_t lo = a < b ? a : b, hi = a < b ? b : a;
            require(counter.count(text.substr(lo, hi - lo)) <= whole);
        }
    }

    // truncate: consistent with count, for every budget up to the whole cost (and past it).
    const std::size_t limit = whole + 2 < 64 ? whole + 2 : 64;
    for (std::size_t n = 0; n <= limit; ++n) {
        const std::string_view prefix = counter.truncate(text, n);
        require(prefix.data() == text.data() && prefix.size() <= text.size());
        require(counter.count(prefix) <= n);
        if (whole <= n) {
            require(prefix.size() == text.size());
            continue;
        }
        // The longest at a character boundary: the prefix ends at a boundary, and the next costs more.
        std::size_t k = 0;
        while (k < cuts.size() && cuts[k] < prefix.size()) ++k;
        require(k < cuts.size() && cuts[k] == prefix.size());
        require(k + 1 < cuts.size() && prefix_cost[k + 1] > n);
        require(prefix_cost[k] <= n);
    }
    require(counter.truncate(text, static_cast<std::size_t>(-1)).size() == text.size());
    return 0;
}
