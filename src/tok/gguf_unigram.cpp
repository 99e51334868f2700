// The Gemma vocabulary inside a GGUF file (tokenizer.ggml.model = llama, architecture
// gemma3) as HF transformers builds it when it loads the file (integrations/ggml.py,
// GGUFGemmaConverter), the reference for these files:
//
//   vocabulary  the file's tokens and scores, "<0x09>" renamed "\t" and tokens made only of
//               whitespace that contain a space renamed to as many "▁" (a later duplicate
//               wins, as tokenizers' token_to_ids map)
//   added       <pad> <eos> <bos> <unk> <mask> (GemmaTokenizer's named tokens), special, matched
//               in the raw text; nothing else (the file's control tokens are plain pieces)
//   normalizer  Replace(" ", "▁"); the Split(" ") pre-tokenizer after it splits nothing
//   model       Unigram (tokenizers' encode_optimized: Viterbi over the scores in double,
//               unknown chars at min_score − 10 fused, then byte fallback <0xXX>)
//   decoder     Replace("▁", " "), ByteFallback, Fuse
//
// One difference on purpose: HF's tokenizer for this file adds nothing, although the file
// says tokenizer.ggml.add_bos_token; sink follows the file (the model needs its BOS), so
// encode(text, add_special = true) is [BOS] + HF's ids.
#include <algorithm>
#include <array>
#include <cstdio>
#include <deque>
#include <limits>
#include <numeric>

#include "sink/io/gguf.hpp"
#include "sink/tok/bpe.hpp"
#include "sink/tok/hf_pipeline.hpp"
#include "sink/tok/unicode.hpp"
#include "sink/util/error.hpp"

namespace sink::tok {

namespace {

constexpr std::string_view kMeta = "\xE2\x96\x81";  // ▁
constexpr double kUnkPenalty = 10.0;                // tokenizers' K_UNK_PENALTY

bool meta_bool(const GGUFFile& f, const std::string& key, bool def) {
  auto it = f.metadata().find(key);
  if (it == f.metadata().end()) return def;
  if (const bool* b = std::get_if<bool>(&it->second.v)) return *b;
  if (const auto* u = std::get_if<std::uint64_t>(&it->second.v)) return *u != 0;
  if (const auto* i = std::get_if<std::int64_t>(&it->second.v)) return *i != 0;
  throw InputError(f.path(), "metadata key '" + key + "' is not a boolean");
}

// Python's str.isspace() for one code point.
bool py_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// GGUFGemmaConverter.vocab: "<0x09>" -> "\t"; whitespace-only tokens with a space -> "▁" × len.
std::string converted_piece(const std::string& t) {
  if (t == "<0x09>") return "\t";
  if (t.find(' ') == std::string::npos) return t;
  std::size_t n = 0;
  for (std::size_t i = 0; i < t.size(); ++n)
    if (!py_space(next_cp(t, i))) return t;
  std::string out;
  for (std::size_t k = 0; k < n; ++k) out += kMeta;
  return out;
}

// A byte trie over the pieces, built from the sorted list so that each node's children are
// contiguous: walking it from a position gives every piece that starts there, shortest first
// (tokenizers' common_prefix_search).
class Trie {
 public:
  void build(const std::vector<std::string>& pieces, const std::vector<std::int32_t>& ids) {
    std::vector<std::int32_t> order(pieces.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) { return pieces[a] < pieces[b]; });
    struct Job {
      std::uint32_t node, lo, hi, depth;
    };
    nodes_.assign(1, Node{});
    std::deque<Job> q{{0, 0, static_cast<std::uint32_t>(order.size()), 0}};
    while (!q.empty()) {
      Job j = q.front();
      q.pop_front();
      std::uint32_t lo = j.lo;
      while (lo < j.hi && pieces[order[lo]].size() == j.depth) nodes_[j.node].id = ids[order[lo++]];
      nodes_[j.node].first = static_cast<std::uint32_t>(child_byte_.size());
      while (lo < j.hi) {
        const unsigned char b = static_cast<unsigned char>(pieces[order[lo]][j.depth]);
        std::uint32_t hi = lo;
        while (hi < j.hi && static_cast<unsigned char>(pieces[order[hi]][j.depth]) == b) ++hi;
        const auto child = static_cast<std::uint32_t>(nodes_.size());
        nodes_.push_back(Node{});
        child_byte_.push_back(b);
        child_node_.push_back(child);
        ++nodes_[j.node].count;
        q.push_back({child, lo, hi, j.depth + 1});
        lo = hi;
      }
    }
  }
  // Calls f(length, id) for each piece that `s` starts with, shortest first.
  template <class F>
  void prefixes(std::string_view s, F&& f) const {
    std::uint32_t n = 0;
    for (std::size_t k = 0; k < s.size(); ++k) {
      const Node& nd = nodes_[n];
      auto b = child_byte_.begin() + nd.first, e = b + nd.count;
      auto it = std::lower_bound(b, e, static_cast<unsigned char>(s[k]));
      if (it == e || *it != static_cast<unsigned char>(s[k])) return;
      n = child_node_[it - child_byte_.begin()];
      if (nodes_[n].id >= 0) f(k + 1, nodes_[n].id);
    }
  }

 private:
  struct Node {
    std::int32_t id = -1;
    std::uint32_t first = 0, count = 0;
  };
  std::vector<Node> nodes_;
  std::vector<unsigned char> child_byte_;
  std::vector<std::uint32_t> child_node_;
};

class GgufGemmaTokenizer final : public Tokenizer {
 public:
  explicit GgufGemmaTokenizer(const GGUFFile& f) : path_(f.path()) {
    const auto raw = f.get_string_array("tokenizer.ggml.tokens");
    const std::size_t n = raw.size();
    if (n == 0) throw InputError(path_, "tokenizer.ggml.tokens is empty");
    if (!f.has("tokenizer.ggml.scores")) throw InputError(path_, "tokenizer.ggml.scores missing (Gemma vocabulary)");
    const auto s = f.get_float_array("tokenizer.ggml.scores");
    if (s.size() != n)
      throw InputError(path_, "tokenizer.ggml.scores has " + std::to_string(s.size()) + " entries for " +
                                  std::to_string(n) + " tokens");
    pieces_.resize(n);
    scores_.resize(n);
    min_score_ = std::numeric_limits<double>::infinity();
    std::vector<std::int32_t> ids(n);
    for (std::size_t i = 0; i < n; ++i) {
      pieces_[i] = converted_piece(raw[i]);
      scores_[i] = static_cast<double>(static_cast<float>(s[i]));
      min_score_ = std::min(min_score_, scores_[i]);
      vocab_[pieces_[i]] = static_cast<std::int32_t>(i);  // a later duplicate wins
    }
    // The trie yields strings; tokenizers maps each back through token_to_ids.
    for (std::size_t i = 0; i < n; ++i) ids[i] = vocab_.at(pieces_[i]);
    std::vector<std::string> uniq;
    std::vector<std::int32_t> uniq_ids;
    for (std::size_t i = 0; i < n; ++i)
      if (!pieces_[i].empty() && ids[i] == static_cast<std::int32_t>(i))
        uniq.push_back(pieces_[i]), uniq_ids.push_back(ids[i]);
    trie_.build(uniq, uniq_ids);
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      auto it = vocab_.find(std::string_view(name));
      byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
    }
    auto id_key = [&](const char* key) -> std::optional<std::int32_t> {
      if (!f.has(key)) return std::nullopt;
      const std::int64_t v = f.get_int(key);
      if (v < 0 || v >= static_cast<std::int64_t>(n))
        throw InputError(path_, std::string("metadata key '") + key + "' = " + std::to_string(v) +
                                    " is not a token id (vocabulary of " + std::to_string(n) + ")");
      return static_cast<std::int32_t>(v);
    };
    bos_ = id_key("tokenizer.ggml.bos_token_id");
    eos_ = id_key("tokenizer.ggml.eos_token_id");
    unk_ = id_key("tokenizer.ggml.unknown_token_id");
    adds_bos_ = bos_ && meta_bool(f, "tokenizer.ggml.add_bos_token", true);
    adds_eos_ = eos_ && meta_bool(f, "tokenizer.ggml.add_eos_token", false);
    // GemmaTokenizer's named tokens, where the vocabulary has them.
    for (const char* t : {"<pad>", "<eos>", "<bos>", "<unk>", "<mask>"}) {
      auto it = vocab_.find(std::string_view(t));
      if (it != vocab_.end()) specials_.push_back(it->second);
    }
    std::sort(specials_.begin(), specials_.end(),
              [&](std::int32_t a, std::int32_t b) { return pieces_[a].size() > pieces_[b].size(); });
  }

  std::vector<std::int32_t> encode(std::string_view input, bool add_special) const override {
    const std::string text = is_valid_utf8(input) ? std::string(input) : utf8_lossy(input);
    std::vector<std::int32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    if (add_special && adds_bos_) ids.push_back(*bos_);
    std::size_t start = 0;
    for (std::size_t i = 0; i < text.size();) {  // leftmost-longest over the added tokens
      std::int32_t hit = -1;
      for (std::int32_t s : specials_)
        if (text.compare(i, pieces_[s].size(), pieces_[s]) == 0) {
          hit = s;
          break;
        }
      if (hit < 0) {
        ++i;
        continue;
      }
      encode_segment(std::string_view(text).substr(start, i - start), ids);
      ids.push_back(hit);
      i += pieces_[hit].size();
      start = i;
    }
    encode_segment(std::string_view(text).substr(start), ids);
    if (add_special && adds_eos_) ids.push_back(*eos_);
    return ids;
  }

  std::string decode(std::span<const std::int32_t> ids, bool skip_special) const override {
    std::string out, pending;
    auto flush = [&] {
      if (pending.empty()) return;
      if (is_valid_utf8(pending)) {
        out += pending;
      } else {
        for (std::size_t k = 0; k < pending.size(); ++k) out += "\xEF\xBF\xBD";
      }
      pending.clear();
    };
    for (std::int32_t id : ids) {
      if (id < 0 || static_cast<std::size_t>(id) >= pieces_.size()) continue;
      if (skip_special && is_special(id)) continue;
      const std::string& t = pieces_[id];
      if (t.size() == 6 && t.starts_with("<0x") && t.back() == '>') {
        unsigned v = 0;
        if (std::sscanf(t.c_str() + 3, "%2X", &v) == 1) {
          pending.push_back(static_cast<char>(v));
          continue;
        }
      }
      flush();
      for (std::size_t i = 0; i < t.size();) {
        if (t.compare(i, kMeta.size(), kMeta) == 0) {
          out += ' ';
          i += kMeta.size();
        } else {
          out += t[i++];
        }
      }
    }
    flush();
    return out;
  }

  std::int32_t vocab_size() const override { return static_cast<std::int32_t>(pieces_.size()); }
  std::optional<std::int32_t> token_to_id(std::string_view token) const override {
    auto it = vocab_.find(token);
    if (it == vocab_.end()) return std::nullopt;
    return it->second;
  }
  std::string id_to_token(std::int32_t id) const override {
    return id >= 0 && static_cast<std::size_t>(id) < pieces_.size() ? pieces_[id] : std::string();
  }
  bool is_special(std::int32_t id) const override {
    return std::find(specials_.begin(), specials_.end(), id) != specials_.end();
  }
  std::string describe() const override {
    return "GGUF Gemma vocabulary (" + std::to_string(pieces_.size()) +
           " tokens) as HF's GGUFGemmaConverter: Unigram over the scores, byte fallback";
  }

 private:
  // Normalise (" " -> "▁") and run tokenizers' Unigram encode_optimized, then tokenize().
  void encode_segment(std::string_view text, std::vector<std::int32_t>& ids) const {
    if (text.empty()) return;
    std::string s;
    s.reserve(text.size() + 16);
    for (char c : text) {
      if (c == ' ')
        s += kMeta;
      else
        s += c;
    }
    struct Best {
      double score = 0.0;
      std::int64_t start = -1;  // -1: not reached yet
      std::int32_t id = 0;
    };
    const std::size_t size = s.size();
    std::vector<Best> best(size + 1);
    const double unk_score = min_score_ - kUnkPenalty;
    for (std::size_t at = 0; at < size;) {
      const double here = best[at].score;
      const std::size_t mblen = std::min(utf8_len(static_cast<unsigned char>(s[at])), size - at);
      bool single = false;
      trie_.prefixes(std::string_view(s).substr(at), [&](std::size_t len, std::int32_t id) {
        Best& t = best[at + len];
        const double cand = scores_[id] + here;
        if (t.start < 0 || cand > t.score) t = {cand, static_cast<std::int64_t>(at), id};
        if (len == mblen) single = true;
      });
      if (!single) {
        if (!unk_) throw InputError(path_, "no unknown token for a character outside the vocabulary");
        Best& t = best[at + mblen];
        const double cand = unk_score + here;
        if (t.start < 0 || cand > t.score) t = {cand, static_cast<std::int64_t>(at), *unk_};
      }
      at += mblen;
    }
    // Back from the end; consecutive unknowns fuse into one string.
    std::vector<std::pair<std::size_t, std::size_t>> spans;  // [a, b) of each result string, reversed
    std::vector<bool> is_unk;
    for (std::size_t end = size; end > 0;) {
      const Best& b = best[end];
      const auto a = static_cast<std::size_t>(b.start);
      const bool u = unk_ && b.id == *unk_;
      if (u && !is_unk.empty() && is_unk.back())
        spans.back().first = a;
      else
        spans.emplace_back(a, end), is_unk.push_back(u);
      end = a;
    }
    for (std::size_t k = spans.size(); k-- > 0;) {
      const auto [a, b] = spans[k];
      const std::string_view piece = std::string_view(s).substr(a, b - a);
      if (auto it = vocab_.find(piece); it != vocab_.end()) {
        ids.push_back(it->second);
        continue;
      }
      bool all = true;  // byte fallback: every byte must have its <0xXX> token
      for (unsigned char c : piece) all = all && byte_ids_[c] >= 0;
      if (all) {
        for (unsigned char c : piece) ids.push_back(byte_ids_[c]);
      } else {
        ids.push_back(*unk_);
      }
    }
  }

  std::string path_;
  std::vector<std::string> pieces_;
  std::vector<double> scores_;
  double min_score_ = 0.0;
  StringMap<std::int32_t> vocab_;
  Trie trie_;
  std::array<std::int32_t, 256> byte_ids_{};
  std::optional<std::int32_t> unk_;
  std::vector<std::int32_t> specials_;  // longest first
};

}  // namespace

std::unique_ptr<Tokenizer> make_gguf_gemma_tokenizer(const GGUFFile& f) {
  return std::make_unique<GgufGemmaTokenizer>(f);
}

}  // namespace sink::tok
