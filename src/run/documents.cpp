#include "sink/run/documents.hpp"

#include <algorithm>
#include <memory>
#include <filesystem>
#include <numeric>
#include <queue>
#include <span>

#include "sink/io/gguf.hpp"
#include "sink/model/spec.hpp"
#include "sink/tok/tokenizer.hpp"
#include "sink/util/error.hpp"
#include "sink/util/log.hpp"

namespace sink {
namespace fs = std::filesystem;

std::unique_ptr<Tokenizer> tokenizer_for_model(const std::string& path) {
  if (fs::is_regular_file(path) && fs::path(path).extension() == ".gguf") return load_gguf_tokenizer(GGUFFile(path));
  const fs::path dir = fs::is_directory(path) ? fs::path(path) : fs::path(path).parent_path();
  return load_tokenizer(dir.string());
}

SinkPolicy resolve_sink_policy(const std::string& requested, const Tokenizer& tok, const ModelSpec& spec,
                               const std::string& cfg) {
  SinkPolicy p;
  const auto probe = tok.encode("a", /*add_special=*/true);
  const bool adds_bos = tok.bos_id() && !probe.empty() && probe.front() == *tok.bos_id();
  p.name = requested == "auto" ? (adds_bos ? "bos" : "prepend") : requested;
  if (p.name == "bos" && !adds_bos)
    throw InputError(cfg, "key 'sink_policy': 'bos' but this model's tokenizer adds no BOS (use prepend or first)");
  if (p.name == "prepend") {
    // The model's BOS, else its end-of-text token (Qwen, Pythia, GPT-OSS use <|endoftext|> this way).
    if (tok.bos_id()) p.prepended = *tok.bos_id();
    else if (spec.bos_id) p.prepended = *spec.bos_id;
    else if (tok.eos_id()) p.prepended = *tok.eos_id();
    else if (spec.eos_id) p.prepended = *spec.eos_id;
    else throw InputError(cfg, "key 'sink_policy': 'prepend' but the model has neither a BOS nor an EOS token");
  }
  p.position = 0;
  return p;
}

// One token as text: decoded alone (" the"), or, where that is not valid UTF-8 on its own
// (a byte-fallback piece of a character), its vocabulary entry, or its id.
static std::string token_text(const Tokenizer& tok, std::int32_t id) {
  const std::int32_t one[1] = {id};
  std::string s = tok.decode(std::span<const std::int32_t>(one, 1), false);
  if (utf8_error_offset(s) == std::string::npos) return s;
  s = tok.id_to_token(id);
  if (utf8_error_offset(s) == std::string::npos) return s;
  return "<" + std::to_string(id) + ">";
}

std::vector<PreparedDoc> prepare_documents(const std::vector<EvalDoc>& docs, const Tokenizer& tok,
                                           const SinkPolicy& policy, const RunConfig& rc, const std::string& cfg) {
  std::vector<PreparedDoc> out;
  out.reserve(docs.size());
  std::int64_t n_trunc = 0;
  for (const auto& d : docs) {
    PreparedDoc p;
    p.id = d.id;
    std::vector<std::int32_t> ids;
    if (policy.name == "bos") {
      ids = tok.encode(d.text, true);
    } else {
      ids = tok.encode(d.text, false);
      if (policy.name == "prepend") ids.insert(ids.begin(), static_cast<std::int32_t>(policy.prepended));
    }
    p.ids.assign(ids.begin(), ids.end());
    if (static_cast<std::int64_t>(p.ids.size()) > rc.max_total_tokens) {
      if (rc.long_documents == "error")
        throw InputError(rc.eval_jsonl, "document '" + d.id + "' has " + std::to_string(p.ids.size()) +
                                            " tokens, more than max_total_tokens " +
                                            std::to_string(rc.max_total_tokens) + " (long_documents: error)");
      p.ids.resize(rc.max_total_tokens);
      p.truncated = true;
      ++n_trunc;
    }
    if (p.ids.size() < 2)
      throw InputError(rc.eval_jsonl, "document '" + d.id + "' has fewer than 2 tokens after tokenization");
    p.fields = d.fields;
    const auto n_show = std::min<std::size_t>(p.ids.size(), static_cast<std::size_t>(rc.max_tokens_to_calc));
    for (std::size_t i = 0; i < n_show; ++i) p.tokens.push_back(token_text(tok, static_cast<std::int32_t>(p.ids[i])));
    out.push_back(std::move(p));
  }
  if (n_trunc)
    log::info(rc.name + ": " + std::to_string(n_trunc) + " of " + std::to_string(docs.size()) +
              " documents truncated to max_total_tokens = " + std::to_string(rc.max_total_tokens));
  (void)cfg;
  return out;
}

void check_token_ids(const std::vector<PreparedDoc>& docs, std::int64_t vocab, const std::string& tokenizer,
                     const std::string& eval, const std::string& model) {
  for (const auto& d : docs)
    for (std::size_t i = 0; i < d.ids.size(); ++i)
      if (d.ids[i] < 0 || d.ids[i] >= vocab)
        throw InputError(tokenizer.empty() ? model : tokenizer,
                         "token id " + std::to_string(d.ids[i]) + " (position " + std::to_string(i) + " of document '" +
                             d.id + "' of " + eval + ") is outside the model's vocabulary of " + std::to_string(vocab) +
                             " (" + model + "): tokenizer and model do not match");
}

std::vector<Bucket> make_buckets(const std::vector<PreparedDoc>& docs, std::int64_t size) {
  std::vector<Bucket> b;
  for (std::int64_t i = 0; i < static_cast<std::int64_t>(docs.size()); i += size) {
    Bucket k;
    k.first = i;
    k.count = std::min<std::int64_t>(size, docs.size() - i);
    for (std::int64_t j = i; j < i + k.count; ++j) k.tokens += static_cast<std::int64_t>(docs[j].ids.size());
    b.push_back(k);
  }
  return b;
}

std::vector<std::int64_t> assign_buckets(const std::vector<Bucket>& buckets, int rank, int ranks) {
  std::vector<std::int64_t> order(buckets.size());
  std::iota(order.begin(), order.end(), 0);
  // Cost ~ tokens² for attention-heavy long documents, tokens for the rest: tokens is a fine proxy.
  std::stable_sort(order.begin(), order.end(),
                   [&](std::int64_t a, std::int64_t b) { return buckets[a].tokens > buckets[b].tokens; });
  using Load = std::pair<std::int64_t, int>;  // (tokens so far, rank): the least loaded, lowest rank first
  std::priority_queue<Load, std::vector<Load>, std::greater<Load>> q;
  for (int r = 0; r < ranks; ++r) q.push({0, r});
  std::vector<std::int64_t> mine;
  for (auto b : order) {
    auto [load, r] = q.top();
    q.pop();
    if (r == rank) mine.push_back(b);
    q.push({load + buckets[b].tokens, r});
  }
  std::sort(mine.begin(), mine.end());
  return mine;
}

}  // namespace sink
