// examples/gateway/prompt.cpp — see prompt.hpp. No Beast/Asio here (a fast translation unit).
#include "prompt.hpp"

#include <llmfast/bpe_tokenizer.hpp>
#include <llmfast/compressor.hpp>
#include <llmfast/estimating_token_counter.hpp>
#include <llmfast/truncator.hpp>

#include <fmt/format.h>

#include <map>
#include <optional>

namespace gateway {

namespace {

/// The model's tokenizer: exact BPE when a rank file is configured, the estimator otherwise.
struct ModelCounter {
    const llmfast::BpeTokenizer* bpe = nullptr;
    llmfast::EstimatingTokenCounter estimator{};
    [[nodiscard]] std::size_t count(std::string_view text) const { return bpe != nullptr ? bpe->count(text) : estimator.count(text); }
};

// ---- a scanner over JSON already validated by simdjson (so it need not check anything) -----------

std::size_t skip_ws(std::string_view s, std::size_t i) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
    return i;
}

std::size_t skip_string(std::string_view s, std::size_t i) {  // s[i] == '"'
    for (++i; i < s.size(); ++i) {
        if (s[i] == '\\') ++i;
        else if (s[i] == '"') return i + 1;
    }
    return s.size();
}

std::size_t skip_value(std::string_view s, std::size_t i) {
    if (i >= s.size()) return s.size();
    if (s[i] == '"') return skip_string(s, i);
    if (s[i] == '{' || s[i] == '[') {
        std::size_t depth = 0;
        for (; i < s.size(); ++i) {
            const char c = s[i];
            if (c == '"') { i = skip_string(s, i) - 1; continue; }
            if (c == '{' || c == '[') ++depth;
            else if (c == '}' || c == ']') {
                if (--depth == 0) return i + 1;
            }
        }
        return s.size();
    }
    while (i < s.size() && s[i] != ',' && s[i] != ']' && s[i] != '}' && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') ++i;
    return i;
}

}  // namespace

std::vector<std::pair<std::size_t, std::size_t>> json_array_elements(std::string_view s, std::size_t begin, std::size_t& end) {
    std::vector<std::pair<std::size_t, std::size_t>> out;
    end = begin;
    if (begin >= s.size() || s[begin] != '[') return out;
    std::size_t i = skip_ws(s, begin + 1);
    while (i < s.size() && s[i] != ']') {
        const std::size_t value_end = skip_value(s, i);
        out.emplace_back(i, value_end);
        i = skip_ws(s, value_end);
        if (i < s.size() && s[i] == ',') i = skip_ws(s, i + 1);
    }
    end = i < s.size() ? i + 1 : s.size();
    return out;
}

std::pair<std::size_t, std::size_t> json_member_value(std::string_view s, std::string_view key) {
    std::size_t i = skip_ws(s, 0);
    if (i >= s.size() || s[i] != '{') return {0, 0};
    i = skip_ws(s, i + 1);
    while (i < s.size() && s[i] == '"') {
        const std::size_t key_end = skip_string(s, i);
        const std::string_view raw_key = s.substr(i + 1, key_end - i - 2);
        i = skip_ws(s, key_end);
        if (i < s.size() && s[i] == ':') i = skip_ws(s, i + 1);
        const std::size_t value_end = skip_value(s, i);
        if (raw_key == key) return {i, value_end};
        i = skip_ws(s, value_end);
        if (i < s.size() && s[i] == ',') i = skip_ws(s, i + 1);
    }
    return {0, 0};
}

struct ModelPrompt {
    PromptConfig config;
    std::shared_ptr<const llmfast::BpeTokenizer> bpe;
    ModelCounter counter;
    std::optional<llmfast::Truncator<ModelCounter>> truncator;
    std::optional<llmfast::PromptCompressor<ModelCounter>> compressor;
};

struct PromptPipeline::Impl {
    std::map<std::string, ModelPrompt> models;
    ModelPrompt fallback;
    std::size_t default_reply_tokens = 16;

    const ModelPrompt& of(const std::string& model) const {
        const auto it = models.find(model);
        return it == models.end() ? fallback : it->second;
    }
};

PromptPipeline::PromptPipeline(const Config& config) : impl_(std::make_unique<Impl>()) {
    impl_->default_reply_tokens = config.sim_default_tokens;
    std::map<std::string, std::shared_ptr<const llmfast::BpeTokenizer>> loaded;  // one tokenizer per (file, encoding)
    for (const auto& [name, prompt] : config.prompt) {
        const std::string where = "models." + name;
        ModelPrompt& m = impl_->models[name];
        m.config = prompt;
        if (!prompt.rank_file.empty()) {
            auto& slot = loaded[prompt.rank_file + "\n" + prompt.encoding];
            if (!slot) {
                try {
                    slot = std::make_shared<const llmfast::BpeTokenizer>(
                        prompt.rank_file, prompt.encoding == "o200k_base" ? llmfast::BpeEncoding::o200k_base() : llmfast::BpeEncoding::cl100k_base());
                } catch (const std::exception& e) {
                    throw ConfigError(where + ".rank_file: " + prompt.rank_file + ": " + e.what());
                }
            }
            m.bpe = slot;
            m.counter.bpe = m.bpe.get();
        }
        try {
            m.truncator.emplace(llmfast::TruncatorOptions{.max_bytes = prompt.max_message_bytes}, m.counter);
            if (prompt.compress) {
                llmfast::CompressorOptions options;
                for (const RuleConfig& rule : prompt.rules)
                    options.rules.push_back({rule.pattern, rule.replacement, rule.ignore_case, rule.whole_word});
                options.chinese_rules = prompt.builtin_chinese;
                options.english_rules = prompt.builtin_english;
                options.normalize_whitespace = prompt.normalize_whitespace;
                options.remove_repeated_lines = prompt.remove_repeated_lines;
                options.repair_invalid_utf8 = true;
                options.count_tokens = false;
                m.compressor.emplace(std::move(options), m.counter);
            }
        } catch (const std::exception& e) {
            throw ConfigError(where + ".compression: " + e.what());
        }
    }
}

PromptPipeline::~PromptPipeline() = default;

std::size_t PromptPipeline::count(const std::string& model, std::string_view text) const { return impl_->of(model).counter.count(text); }

std::string PromptPipeline::tokenizer_name(const std::string& model) const {
    const ModelPrompt& m = impl_->of(model);
    return m.bpe ? "bpe:" + m.config.encoding : "estimator";
}

std::variant<PreparedPrompt, ApiError> PromptPipeline::prepare(const ChatRequest& request, std::string_view body) const {
    const ModelPrompt& m = impl_->of(request.model);
    const llmfast::FitOptions fit_options{};
    PreparedPrompt out;
    const std::size_t n = request.messages.size();
    std::vector<bool> kept(n, true), changed(n, false);
    std::vector<std::string> texts(n);
    for (std::size_t i = 0; i < n; ++i) texts[i] = request.messages[i].text;

    // 1. Fit the history into the context window minus the reply's tokens.
    if (m.config.context_window > 0 && m.truncator) {
        const std::uint64_t reply = request.max_tokens.value_or(0);
        if (reply >= m.config.context_window)
            return ApiError::invalid(request.max_tokens ? "max_tokens" : "messages",
                                     fmt::format("max_tokens ({}) leaves no room for the prompt in the context window of {} tokens of model '{}'",
                                                 reply, m.config.context_window, request.model),
                                     "context_length_exceeded");
        const auto budget = static_cast<std::size_t>(m.config.context_window - reply);
        std::vector<llmfast::ChatMessage> history;
        history.reserve(n);
        for (const ChatMessage& message : request.messages) history.push_back({message.role, message.text});
        try {
            llmfast::FitResult fit = m.truncator->fit_messages(history, budget, fit_options);
            for (const std::size_t i : fit.dropped) kept[i] = false;
            std::size_t k = 0;
            for (std::size_t i = 0; i < n; ++i) {
                if (!kept[i]) continue;
                if (std::find(fit.shortened.begin(), fit.shortened.end(), i) != fit.shortened.end()) {
                    texts[i] = std::move(fit.messages[k].content);
                    changed[i] = true;
                }
                ++k;
            }
            out.dropped = fit.dropped.size();
            out.shortened = fit.shortened.size();
        } catch (const llmfast::Error& e) {
            return ApiError::invalid("messages",
                                     fmt::format("the prompt does not fit the context window of {} tokens of model '{}' with max_tokens {}: {}",
                                                 m.config.context_window, request.model, reply, e.what()),
                                     "context_length_exceeded");
        }
    }

    // 2. The model's compression rules, over each kept text message.
    if (m.compressor) {
        for (std::size_t i = 0; i < n; ++i) {
            if (!kept[i] || !request.messages[i].plain || texts[i].empty()) continue;
            std::string compressed = m.compressor->compress(texts[i]).text;
            if (compressed != texts[i]) {
                texts[i] = std::move(compressed);
                changed[i] = true;
                ++out.compressed;
            }
        }
    }

    // 3. What the backend sees, and its token count (OpenAI's chat overheads: 3 per message + 3).
    out.prompt_tokens = fit_options.reply_overhead;
    for (std::size_t i = 0; i < n; ++i) {
        if (!kept[i]) continue;
        out.prompt_tokens += fit_options.per_message_overhead + m.counter.count(request.messages[i].role) + m.counter.count(texts[i]);
        out.messages.push_back({request.messages[i].role, std::move(texts[i]), request.messages[i].plain});
    }

    // 4. The upstream body, rewritten only when something changed.
    const bool any_change = out.dropped > 0 || std::find(changed.begin(), changed.end(), true) != changed.end();
    if (!any_change || body.empty()) return out;
    const auto [array_begin, ignored] = find_top_level_value(body, "messages");
    (void)ignored;
    std::size_t array_end = 0;
    const auto elements = json_array_elements(body, array_begin, array_end);
    if (elements.size() != n) return out;  // cannot happen for a validated body; send it unchanged
    std::string rewritten;
    rewritten.reserve(body.size());
    rewritten.append(body.substr(0, array_begin));
    rewritten.push_back('[');
    bool first = true;
    std::size_t k = 0;
    for (std::size_t i = 0; i < n; ++i) {
        if (!kept[i]) continue;
        const ChatMessage& message = out.messages[k++];
        if (!first) rewritten.push_back(',');
        first = false;
        const std::string_view element = body.substr(elements[i].first, elements[i].second - elements[i].first);
        const auto [content_begin, content_end] = changed[i] && message.plain ? json_member_value(element, "content") : std::pair<std::size_t, std::size_t>{0, 0};
        if (content_begin == content_end) {
            rewritten.append(element);
            continue;
        }
        rewritten.append(element.substr(0, content_begin));
        append_json_string(rewritten, message.text);
        rewritten.append(element.substr(content_end));
    }
    rewritten.push_back(']');
    rewritten.append(body.substr(array_end));
    out.body = std::move(rewritten);
    return out;
}

}  // namespace gateway
