// The llama (SentencePiece-style) vocabulary inside a GGUF file, encoded the
// way llama2.c's run.c encode() and llama.cpp's SPM tokenizer do it: spaces
// become "▁", a dummy "▁" prefix, one symbol per UTF-8 char (bytes as
// <0xXX> when the char is not a token), then repeatedly merge the adjacent
// pair whose concatenation is the highest-scoring token (leftmost on ties).
// Decoding follows HF's LlamaTokenizer (and llama2.c): "▁" -> " ", byte
// tokens -> bytes, the leading space of the text stripped.
// Gemma 3's GGUF (no dummy prefix, add_space_prefix false) is encoded here too: this is
// SentencePiece BPE's encoding, the model's own (tests/tok/test_gguf_gemma3_tok.py checks it
// against the sentencepiece library). HF transformers' GGUF loader reads that vocabulary as
// a Unigram model instead, whose Viterbi over these rank-like scores cuts text into about
// twice as many pieces, on which the model is far worse (3.1 against 0.9 bits per byte).
#include <algorithm>
#include <cstdio>
#include <mutex>
#include <queue>
#include <unordered_map>

#include "sink/io/gguf.hpp"
#include "sink/tok/bpe.hpp"
#include "sink/tok/hf_pipeline.hpp"
#include "sink/tok/tokenizer.hpp"
#include "sink/tok/unicode.hpp"
#include "sink/util/error.hpp"

namespace sink {

namespace {

using tok::StringMap;
constexpr std::string_view kMeta = "\xE2\x96\x81";
enum TokenType { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

bool meta_bool(const GGUFFile& f, const std::string& key, bool def) {
  auto it = f.metadata().find(key);
  if (it == f.metadata().end()) return def;
  if (const bool* b = std::get_if<bool>(&it->second.v)) return *b;
  if (const auto* u = std::get_if<std::uint64_t>(&it->second.v)) return *u != 0;
  if (const auto* i = std::get_if<std::int64_t>(&it->second.v)) return *i != 0;
  throw InputError(f.path(), "metadata key '" + key + "' is not a boolean");
}

int byte_token_value(const std::string& t) {
  if (t.size() != 6 || !t.starts_with("<0x") || t.back() != '>') return -1;
  unsigned v = 0;
  if (std::sscanf(t.c_str() + 3, "%2X", &v) != 1) return -1;
  return static_cast<int>(v);
}

class GgufSpmTokenizer final : public Tokenizer {
 public:
  explicit GgufSpmTokenizer(const GGUFFile& f) : path_(f.path()) {
    tokens_ = f.get_string_array("tokenizer.ggml.tokens");
    const std::size_t n = tokens_.size();
    if (n == 0) throw InputError(path_, "tokenizer.ggml.tokens is empty");
    if (f.has("tokenizer.ggml.scores")) {
      auto s = f.get_float_array("tokenizer.ggml.scores");
      if (s.size() != n) throw InputError(path_, "tokenizer.ggml.scores has " + std::to_string(s.size()) +
                                                     " entries for " + std::to_string(n) + " tokens");
      scores_.assign(s.begin(), s.end());
    } else {
      scores_.assign(n, 0.0f);
    }
    types_.assign(n, kNormal);
    if (f.has("tokenizer.ggml.token_type")) {
      auto t = f.get_int_array("tokenizer.ggml.token_type");
      if (t.size() != n) throw InputError(path_, "tokenizer.ggml.token_type has " + std::to_string(t.size()) +
                                                     " entries for " + std::to_string(n) + " tokens");
      for (std::size_t i = 0; i < n; ++i) types_[i] = static_cast<int>(t[i]);
    }
    auto id_key = [&](const char* key, std::int64_t def) -> std::optional<std::int32_t> {
      std::int64_t v = f.get_int_or(key, def);
      if (v < 0) return std::nullopt;
      if (v >= static_cast<std::int64_t>(n))
        throw InputError(path_, std::string("metadata key '") + key + "' = " + std::to_string(v) +
                                    " is not a token id (vocabulary of " + std::to_string(n) + ")");
      return static_cast<std::int32_t>(v);
    };
    bos_ = id_key("tokenizer.ggml.bos_token_id", 1);
    eos_ = id_key("tokenizer.ggml.eos_token_id", 2);
    unk_ = id_key("tokenizer.ggml.unknown_token_id", 0).value_or(-1);
    adds_bos_ = bos_ && meta_bool(f, "tokenizer.ggml.add_bos_token", true);
    adds_eos_ = eos_ && meta_bool(f, "tokenizer.ggml.add_eos_token", false);
    add_space_prefix_ = meta_bool(f, "tokenizer.ggml.add_space_prefix", true);

    vocab_.reserve(n);
    std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1);
    bool cross = false;
    for (std::size_t i = 0; i < n; ++i) {
      const std::string& t = tokens_[i];
      vocab_.emplace(t, static_cast<std::int32_t>(i));
      int b = byte_token_value(t);
      if (b >= 0 && byte_ids_[b] < 0) byte_ids_[b] = static_cast<std::int32_t>(i);
      if (types_[i] == kControl || types_[i] == kUserDefined) {
        if (!t.empty()) specials_.push_back(static_cast<std::int32_t>(i));
      }
      // A token with "▁" after a non-"▁" char could join text across a word start.
      for (std::size_t p = t.find(kMeta); p != std::string::npos; p = t.find(kMeta, p + 1))
        if (p > 0 && (p < kMeta.size() || t.compare(p - kMeta.size(), kMeta.size(), kMeta) != 0)) cross = true;
    }
    split_words_ = !cross;
    std::sort(specials_.begin(), specials_.end(), [&](std::int32_t a, std::int32_t b) {
      return tokens_[a].size() > tokens_[b].size();
    });
    // By first byte (Gemma 3 has 6 400 of them: trying each at every byte was the cost).
    for (std::int32_t s : specials_) by_first_[static_cast<unsigned char>(tokens_[s][0])].push_back(s);
  }

  std::vector<std::int32_t> encode(std::string_view text, bool add_special) const override {
    std::vector<std::int32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    if (add_special && adds_bos_) ids.push_back(*bos_);
    // Control / user-defined token strings in the text are those tokens.
    std::size_t start = 0;
    for (std::size_t i = 0; i < text.size();) {
      std::int32_t hit = -1;
      for (std::int32_t s : by_first_[static_cast<unsigned char>(text[i])])
        if (text.compare(i, tokens_[s].size(), tokens_[s]) == 0) { hit = s; break; }
      if (hit < 0) { ++i; continue; }
      encode_text(text.substr(start, i - start), start == 0, ids);
      ids.push_back(hit);
      i += tokens_[hit].size();
      start = i;
    }
    encode_text(text.substr(start), start == 0, ids);
    if (add_special && adds_eos_) ids.push_back(*eos_);
    return ids;
  }

  std::string decode(std::span<const std::int32_t> ids, bool skip_special) const override {
    std::string out, pending;
    auto flush = [&] {
      if (pending.empty()) return;
      if (tok::is_valid_utf8(pending)) out += pending;
      else
        for (std::size_t k = 0; k < pending.size(); ++k) out += "\xEF\xBF\xBD";
      pending.clear();
    };
    for (std::int32_t id : ids) {
      if (id < 0 || static_cast<std::size_t>(id) >= tokens_.size()) continue;
      if (skip_special && is_special(id)) continue;
      const std::string& t = tokens_[id];
      int b = byte_token_value(t);
      if (b >= 0) {
        pending.push_back(static_cast<char>(b));
        continue;
      }
      flush();
      for (std::size_t i = 0; i < t.size();) {
        if (t.compare(i, kMeta.size(), kMeta) == 0) { out += ' '; i += kMeta.size(); }
        else out += t[i++];
      }
    }
    flush();
    if (add_space_prefix_ && !out.empty() && out[0] == ' ') out.erase(0, 1);
    return tok::is_valid_utf8(out) ? out : tok::utf8_lossy(out);
  }

  std::int32_t vocab_size() const override { return static_cast<std::int32_t>(tokens_.size()); }
  std::optional<std::int32_t> token_to_id(std::string_view token) const override {
    auto it = vocab_.find(token);
    if (it == vocab_.end()) return std::nullopt;
    return it->second;
  }
  std::string id_to_token(std::int32_t id) const override {
    return id >= 0 && static_cast<std::size_t>(id) < tokens_.size() ? tokens_[id] : std::string();
  }
  bool is_special(std::int32_t id) const override {
    if (id < 0 || static_cast<std::size_t>(id) >= types_.size()) return false;
    return types_[id] == kControl || types_[id] == kUnknown;
  }
  std::string describe() const override {
    return "GGUF llama vocabulary (" + std::to_string(tokens_.size()) + " tokens, score merges)";
  }

 private:
  void encode_text(std::string_view text, bool at_start, std::vector<std::int32_t>& ids) const {
    if (text.empty()) return;
    std::string s;
    s.reserve(text.size() + 16);
    if (at_start && add_space_prefix_) s += kMeta;
    for (char c : text) {
      if (c == ' ') s += kMeta;
      else s += c;
    }
    if (!split_words_) return encode_word(s, ids);
    // Cut before each "▁" that follows a non-"▁" char: no token spans such a cut.
    std::size_t start = 0;
    bool prev_meta = false;
    for (std::size_t i = 0; i < s.size();) {
      bool meta = s.compare(i, kMeta.size(), kMeta) == 0;
      if (meta && !prev_meta && i > start) {
        encode_word(std::string_view(s).substr(start, i - start), ids);
        start = i;
      }
      prev_meta = meta;
      i += meta ? kMeta.size() : 1;
    }
    encode_word(std::string_view(s).substr(start), ids);
  }

  void encode_word(std::string_view w, std::vector<std::int32_t>& ids) const {
    if (w.size() <= 256) {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto it = cache_.find(w); it != cache_.end()) {
        ids.insert(ids.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    // Symbols as llama2.c forms them: a lead byte and up to 3 continuation bytes.
    struct Sym { std::int32_t id; std::size_t a, len; int prev, next; };
    std::vector<Sym> sym;
    for (std::size_t i = 0; i < w.size();) {
      std::size_t len = 1;
      while (i + len < w.size() && len < 4 && (static_cast<unsigned char>(w[i + len]) & 0xC0) == 0x80) ++len;
      auto it = vocab_.find(w.substr(i, len));
      if (it != vocab_.end()) {
        sym.push_back({it->second, i, len, 0, 0});
      } else {
        for (std::size_t k = 0; k < len; ++k) {
          std::int32_t b = byte_ids_[static_cast<unsigned char>(w[i + k])];
          sym.push_back({b >= 0 ? b : unk_, i + k, 1, 0, 0});
        }
      }
      i += len;
    }
    const int n = static_cast<int>(sym.size());
    for (int i = 0; i < n; ++i) {
      sym[i].prev = i - 1;
      sym[i].next = i + 1 < n ? i + 1 : -1;
    }
    // The merged text of two adjacent symbols is the text of their tokens.
    struct Cand { float score; int left, right; std::int32_t lid, rid, id; };
    auto worse = [](const Cand& x, const Cand& y) {
      return x.score != y.score ? x.score < y.score : x.left > y.left;
    };
    std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse);
    std::string buf;
    auto try_pair = [&](int l, int r) {
      if (l < 0 || r < 0 || sym[l].id < 0 || sym[r].id < 0) return;
      buf = tokens_[sym[l].id];
      buf += tokens_[sym[r].id];
      auto it = vocab_.find(buf);
      if (it == vocab_.end()) return;
      heap.push({scores_[it->second], l, r, sym[l].id, sym[r].id, it->second});
    };
    for (int i = 0; i + 1 < n; ++i) try_pair(i, i + 1);
    while (!heap.empty()) {
      Cand c = heap.top();
      heap.pop();
      Sym& l = sym[c.left];
      if (l.next != c.right || l.id != c.lid || sym[c.right].id != c.rid) continue;  // stale
      Sym& r = sym[c.right];
      l.id = c.id;
      l.len += r.len;
      l.next = r.next;
      r.id = -2;  // dead
      r.next = -1;
      if (l.next >= 0) sym[l.next].prev = c.left;
      try_pair(l.prev, c.left);
      try_pair(c.left, l.next);
    }
    std::vector<std::int32_t> out;
    for (int i = n ? 0 : -1; i >= 0; i = sym[i].next)
      if (sym[i].id >= 0) out.push_back(sym[i].id);
    ids.insert(ids.end(), out.begin(), out.end());
    if (w.size() <= 256) {
      std::lock_guard<std::mutex> lock(mu_);
      if (cache_.size() < (1u << 20)) cache_.emplace(std::string(w), std::move(out));
    }
  }

  std::string path_;
  std::vector<std::string> tokens_;
  std::vector<float> scores_;
  std::vector<int> types_;
  StringMap<std::int32_t> vocab_;
  std::int32_t byte_ids_[256];
  std::int32_t unk_ = -1;
  std::vector<std::int32_t> specials_;  // longest first
  std::vector<std::int32_t> by_first_[256];  // specials_ by their first byte, longest first
  bool add_space_prefix_ = true;
  bool split_words_ = false;
  mutable std::mutex mu_;
  mutable StringMap<std::vector<std::int32_t>> cache_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GGUFFile& f) {
  std::string model = f.has("tokenizer.ggml.model") ? f.get_string("tokenizer.ggml.model") : "";
  if (model == "gpt2") return tok::make_gguf_bpe_tokenizer(f);
  if (model != "llama")
    throw InputError(f.path(), "tokenizer.ggml.model '" + model +
                                   "' is not supported (only llama SentencePiece and gpt2 byte-level BPE vocabularies)");
  return std::make_unique<GgufSpmTokenizer>(f);
}

}  // namespace sink
