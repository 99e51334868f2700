// SentencePiece tokenizer.model (a ModelProto protobuf) -> the pipeline HF's
// Llama conversion builds from it: BPE over the pieces with merges generated
// from the vocabulary (transformers' generate_merges), byte fallback, the
// "▁" normalizer (Prepend + Replace, as in Llama 2's own tokenizer.json) and
// BOS. The protobuf is read by hand: we need four messages' worth of fields.
#include <algorithm>
#include <cstring>

#include "sink/tok/hf_pipeline.hpp"
#include "sink/tok/unicode.hpp"
#include "sink/util/error.hpp"

namespace sink::tok {

namespace {

constexpr std::string_view kMeta = "\xE2\x96\x81";

// A bounds-checked reader of protobuf wire format.
class Wire {
 public:
  Wire(std::string_view buf, const std::string& path) : b_(buf), path_(path) {}
  bool done() const { return i_ >= b_.size(); }
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (i_ >= b_.size()) fail("truncated varint");
      auto c = static_cast<unsigned char>(b_[i_++]);
      v |= static_cast<std::uint64_t>(c & 0x7F) << shift;
      if (!(c & 0x80)) return v;
    }
    fail("varint too long");
  }
  std::string_view bytes() {
    std::uint64_t n = varint();
    if (n > b_.size() - i_) fail("length-delimited field runs past the end");
    std::string_view s = b_.substr(i_, n);
    i_ += n;
    return s;
  }
  float f32() {
    if (b_.size() - i_ < 4) fail("truncated fixed32");
    float f;
    std::memcpy(&f, b_.data() + i_, 4);
    i_ += 4;
    return f;
  }
  void skip(int wt) {
    switch (wt) {
      case 0: varint(); break;
      case 1: if (b_.size() - i_ < 8) fail("truncated fixed64"); i_ += 8; break;
      case 2: bytes(); break;
      case 5: f32(); break;
      default: fail("unknown wire type " + std::to_string(wt));
    }
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw InputError(path_, "not a SentencePiece model: " + what);
  }

 private:
  std::string_view b_;
  std::size_t i_ = 0;
  const std::string& path_;
};

struct SpPiece {
  std::string piece;
  float score = 0;
  int type = 1;  // NORMAL=1 UNKNOWN=2 CONTROL=3 USER_DEFINED=4 UNUSED=5 BYTE=6
};

struct SpModel {
  std::vector<SpPiece> pieces;
  int model_type = 1;  // UNIGRAM=1 BPE=2 WORD=3 CHAR=4
  bool byte_fallback = false;
  std::int64_t unk_id = 0, bos_id = 1, eos_id = 2;
  bool add_dummy_prefix = true, remove_extra_whitespaces = true, escape_whitespaces = true;
  std::string charsmap, norm_name;
};

SpModel parse_proto(std::string_view buf, const std::string& path) {
  SpModel m;
  Wire w(buf, path);
  while (!w.done()) {
    std::uint64_t key = w.varint();
    int field = static_cast<int>(key >> 3), wt = static_cast<int>(key & 7);
    if (field == 1 && wt == 2) {
      Wire p(w.bytes(), path);
      SpPiece sp;
      while (!p.done()) {
        std::uint64_t k = p.varint();
        int f = static_cast<int>(k >> 3), t = static_cast<int>(k & 7);
        if (f == 1 && t == 2) sp.piece = std::string(p.bytes());
        else if (f == 2 && t == 5) sp.score = p.f32();
        else if (f == 3 && t == 0) sp.type = static_cast<int>(p.varint());
        else p.skip(t);
      }
      m.pieces.push_back(std::move(sp));
    } else if (field == 2 && wt == 2) {
      Wire t(w.bytes(), path);
      while (!t.done()) {
        std::uint64_t k = t.varint();
        int f = static_cast<int>(k >> 3), ty = static_cast<int>(k & 7);
        if (ty != 0) { t.skip(ty); continue; }
        auto v = t.varint();
        auto sv = static_cast<std::int64_t>(static_cast<std::int32_t>(v));
        if (f == 3) m.model_type = static_cast<int>(v);
        else if (f == 35) m.byte_fallback = v != 0;
        else if (f == 40) m.unk_id = sv;
        else if (f == 41) m.bos_id = sv;
        else if (f == 42) m.eos_id = sv;
      }
    } else if (field == 3 && wt == 2) {
      Wire n(w.bytes(), path);
      while (!n.done()) {
        std::uint64_t k = n.varint();
        int f = static_cast<int>(k >> 3), ty = static_cast<int>(k & 7);
        if (f == 1 && ty == 2) m.norm_name = std::string(n.bytes());
        else if (f == 2 && ty == 2) m.charsmap = std::string(n.bytes());
        else if (f == 3 && ty == 0) m.add_dummy_prefix = n.varint() != 0;
        else if (f == 4 && ty == 0) m.remove_extra_whitespaces = n.varint() != 0;
        else if (f == 5 && ty == 0) m.escape_whitespaces = n.varint() != 0;
        else n.skip(ty);
      }
    } else {
      w.skip(wt);
    }
  }
  if (m.pieces.empty()) w.fail("no pieces");
  return m;
}

std::size_t cp_count(std::string_view s) {
  std::size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace

Pipeline parse_sentencepiece_model(const std::string& path, const std::string& bytes) {
  SpModel m = parse_proto(bytes, path);
  if (m.model_type != 2)
    throw InputError(path, "SentencePiece model type " + std::to_string(m.model_type) +
                               " is not supported (only BPE, type 2)");
  if (!m.charsmap.empty() && m.norm_name != "identity")
    throw InputError(path, "SentencePiece normalization '" + m.norm_name + "' is not supported");
  if (!m.escape_whitespaces) throw InputError(path, "escape_whitespaces=false is not supported");
  const auto n = static_cast<std::int64_t>(m.pieces.size());
  for (auto id : {m.unk_id, m.bos_id, m.eos_id})
    if (id >= n) throw InputError(path, "special token id " + std::to_string(id) + " out of range");

  BpeConfig cfg;
  cfg.vocab.reserve(m.pieces.size());
  for (std::size_t i = 0; i < m.pieces.size(); ++i)
    cfg.vocab.emplace(m.pieces[i].piece, static_cast<std::int32_t>(i));
  // transformers' generate_merges(vocab): every split of every piece into two
  // pieces, ordered by (merged id, left length, right length), ties by
  // (left id, right id).
  struct M { std::int32_t merged, l, r; std::size_t ll, rl; };
  std::vector<M> ms;
  for (std::size_t id = 0; id < m.pieces.size(); ++id) {
    const std::string& p = m.pieces[id].piece;
    for (std::size_t i = utf8_len(static_cast<unsigned char>(p[0])); i < p.size();
         i += utf8_len(static_cast<unsigned char>(p[i]))) {
      auto l = cfg.vocab.find(std::string_view(p).substr(0, i));
      auto r = cfg.vocab.find(std::string_view(p).substr(i));
      if (l != cfg.vocab.end() && r != cfg.vocab.end())
        ms.push_back({static_cast<std::int32_t>(id), l->second, r->second,
                      cp_count(std::string_view(p).substr(0, i)), cp_count(std::string_view(p).substr(i))});
    }
  }
  std::stable_sort(ms.begin(), ms.end(), [](const M& a, const M& b) {
    if (a.merged != b.merged) return a.merged < b.merged;
    if (a.ll != b.ll) return a.ll < b.ll;
    if (a.rl != b.rl) return a.rl < b.rl;
    return a.l != b.l ? a.l < b.l : a.r < b.r;
  });
  cfg.merges.reserve(ms.size());
  for (const M& x : ms) cfg.merges.emplace_back(m.pieces[x.l].piece, m.pieces[x.r].piece);
  cfg.byte_fallback = m.byte_fallback;
  cfg.fuse_unk = true;
  if (m.unk_id >= 0) cfg.unk_token = m.pieces[m.unk_id].piece;

  Pipeline p;
  p.source = path;
  if (m.remove_extra_whitespaces) p.normalizer.push_back(NormStep::make(NormStep::kCollapseSpaces));
  if (m.add_dummy_prefix) p.normalizer.push_back(NormStep::make(NormStep::kPrepend, std::string(kMeta)));
  p.normalizer.push_back(NormStep::make(NormStep::kReplace, " ", std::string(kMeta)));
  try {
    p.model = std::make_unique<Bpe>(std::move(cfg));
  } catch (const std::invalid_argument& e) {
    throw InputError(path, e.what());
  }
  for (std::size_t i = 0; i < m.pieces.size(); ++i) {
    int t = m.pieces[i].type;
    if (t == 2 || t == 3 || t == 4) {
      AddedToken a;
      a.content = m.pieces[i].piece;
      a.id = static_cast<std::int32_t>(i);
      a.special = t != 4;
      p.added.push_back(std::move(a));
    }
  }
  if (m.bos_id >= 0) p.bos_name = m.pieces[m.bos_id].piece;
  if (m.eos_id >= 0) p.eos_name = m.pieces[m.eos_id].piece;
  if (m.bos_id >= 0) p.prefix.push_back(static_cast<std::int32_t>(m.bos_id));
  p.has_decoder = true;
  p.decoder.push_back(DecStep::make(DecStep::kReplace, std::string(kMeta), " "));
  p.decoder.push_back(DecStep::make(DecStep::kByteFallback));
  p.decoder.push_back(DecStep::make(DecStep::kFuse));
  if (m.add_dummy_prefix) {
    DecStep strip = DecStep::make(DecStep::kStrip);
    strip.content = U' ';
    strip.start = 1;
    p.decoder.push_back(strip);
  }
  p.describe = "tokenizer.model: SentencePiece BPE (" + std::to_string(m.pieces.size()) +
               " pieces) as HF's Llama conversion";
  return p;
}

}  // namespace sink::tok
