// llmfast/llmfast.hpp — the umbrella header: every core component of llmfast.
//
// llmfast takes latency and cost out of the request path to a large language model: streaming with
// deadlines and SSE, dynamic batching, a semantic response cache, prompt compression and token-budget
// truncation. Each component is also usable alone through its own header.
//
// Optional headers that need another dependency (llmfast/hnsw_index.hpp needs hnswlib,
// llmfast/redis_tier.hpp needs hiredis) are not included here: include them yourself. The built-in
// hit verifier (llmfast/pair_verifier.hpp, with its trained weights) is: a cache uses it only when
// named as its verifier type (see docs/verifier.md).
#pragma once

#include <llmfast/version.hpp>
#include <llmfast/error.hpp>
#include <llmfast/clock.hpp>
#include <llmfast/subscription.hpp>
#include <llmfast/utf8.hpp>
#include <llmfast/token_counter.hpp>
#include <llmfast/estimating_token_counter.hpp>
#include <llmfast/streaming_generator.hpp>
#include <llmfast/stream.hpp>
#include <llmfast/sse.hpp>
#include <llmfast/batch_handler.hpp>
#include <llmfast/batcher.hpp>
#include <llmfast/embedder.hpp>
#include <llmfast/hashing_embedder.hpp>
#include <llmfast/vector_index.hpp>
#include <llmfast/flat_index.hpp>
#include <llmfast/hit_guards.hpp>
#include <llmfast/eviction_policy.hpp>
#include <llmfast/hit_verifier.hpp>
#include <llmfast/wrong_hit_monitor.hpp>
#include <llmfast/shared_tier.hpp>
#include <llmfast/semantic_cache.hpp>
#include <llmfast/pair_verifier.hpp>
#include <llmfast/compressor.hpp>
#include <llmfast/truncator.hpp>
#include <llmfast/bpe_tokenizer.hpp>
#include <llmfast/scheduler.hpp>
