// From an evaluation set to token ids: tokenization as HF does, the sink
// policy (SPEC §4), truncation, and the deterministic split of documents into
// buckets — the unit of work, checkpointing and reduction. Sums over a bucket
// run in document order and buckets merge in bucket order, so the results do
// not depend on how many ranks there are.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sink/config/config.hpp"
#include "sink/config/eval_set.hpp"

namespace sink {

class Tokenizer;
struct ModelSpec;

struct PreparedDoc {
  std::string id;
  std::vector<std::int64_t> ids;
  bool truncated = false;
  std::vector<std::pair<std::string, std::string>> fields;  // the eval set's other fields (EvalDoc::fields)
  std::vector<std::string> tokens;  // the first max_tokens_to_calc tokens decoded one by one (valid UTF-8)
};

struct SinkPolicy {
  std::string name;            // bos | prepend | first
  std::int64_t position = 0;   // s
  std::int64_t prepended = -1; // the token prepended under `prepend`
};

// Resolves `auto`: bos when the tokenizer adds BOS, else prepend.
SinkPolicy resolve_sink_policy(const std::string& requested, const Tokenizer& tok, const ModelSpec& spec,
                               const std::string& config_path);

std::vector<PreparedDoc> prepare_documents(const std::vector<EvalDoc>& docs, const Tokenizer& tok,
                                           const SinkPolicy& policy, const RunConfig& rc,
                                           const std::string& config_path);

// Every token id in [0, vocab): checked when the documents are tokenised, before any
// weights load (an id the embedding has no row for is otherwise found minutes later, on
// one rank). The error names the tokenizer file, the document, and the model.
void check_token_ids(const std::vector<PreparedDoc>& docs, std::int64_t vocab, const std::string& tokenizer_file,
                     const std::string& eval_file, const std::string& model_path);

struct Bucket {
  std::int64_t first = 0, count = 0;  // documents [first, first + count)
  std::int64_t tokens = 0;
};
// Consecutive buckets of `size` documents.
std::vector<Bucket> make_buckets(const std::vector<PreparedDoc>& docs, std::int64_t size);
// Buckets for `rank` of `ranks`: longest-processing-time-first by token count,
// ties broken by bucket index, so ranks finish together; deterministic.
std::vector<std::int64_t> assign_buckets(const std::vector<Bucket>& buckets, int rank, int ranks);

// The tokenizer that belongs to a model path (snapshot folder or .gguf).
std::unique_ptr<Tokenizer> tokenizer_for_model(const std::string& model_path);

}  // namespace sink
