#include "sink/tok/bpe.hpp"

#include <climits>
#include <cstdio>
#include <queue>
#include <stdexcept>

#include "sink/tok/unicode.hpp"

namespace sink::tok {

namespace {
constexpr std::string_view kMeta = "\xE2\x96\x81";  // U+2581, SentencePiece's space
constexpr std::size_t kMaxCachedWord = 256;            // bytes; longer words are not cached
constexpr std::size_t kMaxCacheEntries = 1u << 20;
constexpr std::size_t kSimpleMergeLimit = 48;          // symbols; above this use the heap
}  // namespace

void PairTable::reserve(std::size_t n) {
  std::size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  slots_.assign(cap, Entry{});
  mask_ = cap - 1;
  size_ = 0;
}

void PairTable::put(std::int32_t a, std::int32_t b, std::int32_t rank, std::int32_t id) {
  if (slots_.empty() || (size_ + 1) * 2 > slots_.size()) {
    std::vector<Entry> old = std::move(slots_);
    reserve(std::max<std::size_t>(size_ + 1, old.size()));
    for (const Entry& e : old)
      if (e.key != kEmpty) put(static_cast<std::int32_t>(e.key >> 32),
                               static_cast<std::int32_t>(e.key & 0xffffffffu), e.rank, e.id);
  }
  std::uint64_t key = pack(a, b);
  for (std::size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
    Entry& e = slots_[i];
    if (e.key == key) { e.rank = rank; e.id = id; return; }
    if (e.key == kEmpty) { e = Entry{key, rank, id}; ++size_; return; }
  }
}

Bpe::Bpe(BpeConfig cfg)
    : vocab_(std::move(cfg.vocab)),
      byte_level_(cfg.byte_level),
      byte_fallback_(cfg.byte_fallback),
      fuse_unk_(cfg.fuse_unk),
      ignore_merges_(cfg.ignore_merges) {
  std::int32_t max_id = -1;
  for (const auto& [tok, id] : vocab_) {
    if (id < 0) throw std::invalid_argument("negative id for token '" + tok + "'");
    if (id > kMaxTokenId)
      throw std::invalid_argument("id " + std::to_string(id) + " of token '" + tok + "' exceeds the limit of " +
                                  std::to_string(kMaxTokenId) + " (2^24 - 1)");
    max_id = std::max(max_id, id);
  }
  id_to_token_.assign(static_cast<std::size_t>(max_id + 1), std::string());
  for (const auto& [tok, id] : vocab_) id_to_token_[id] = tok;

  auto lookup = [&](std::string_view s) -> std::int32_t {
    auto it = vocab_.find(s);
    return it == vocab_.end() ? -1 : it->second;
  };
  if (cfg.unk_token) unk_id_ = lookup(*cfg.unk_token);
  for (int b = 0; b < 256; ++b) {
    if (byte_level_) {
      std::string c;
      append_utf8(c, byte_to_char(static_cast<std::uint8_t>(b)));
      byte_ids_[b] = lookup(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "<0x%02X>", b);
      byte_ids_[b] = lookup(buf);
    }
  }
  for (int c = 0; c < 128; ++c) ascii_ids_[c] = lookup(std::string(1, static_cast<char>(c)));

  merges_.reserve(cfg.merges.size());
  bool cross_meta = false;
  std::string joined;
  for (std::size_t r = 0; r < cfg.merges.size(); ++r) {
    const auto& [a, b] = cfg.merges[r];
    joined = a + b;
    std::int32_t ia = lookup(a), ib = lookup(b), im = lookup(joined);
    const std::string* missing = ia < 0 ? &a : ib < 0 ? &b : im < 0 ? &joined : nullptr;
    if (missing)
      throw std::invalid_argument("merge " + std::to_string(r + 1) + " ('" + a + "' '" + b +
                                  "'): '" + *missing + "' is not in the vocabulary");
    merges_.put(ia, ib, static_cast<std::int32_t>(r), im);
    if (b.starts_with(kMeta) && !a.ends_with(kMeta)) cross_meta = true;
  }
  split_at_metaspace_ = !byte_level_ && !ignore_merges_ && !cross_meta && lookup(kMeta) >= 0;

  if (byte_level_ && ignore_merges_) {
    for (const auto& [tok, id] : vocab_) {
      std::string raw;
      bool ok = true;
      for (std::size_t i = 0; i < tok.size() && ok;) {
        int b = char_to_byte(next_cp(tok, i));
        if (b < 0) ok = false;
        else raw.push_back(static_cast<char>(b));
      }
      if (ok) raw_vocab_.emplace(std::move(raw), id);
    }
  }
}

const std::string& Bpe::token(std::int32_t id) const {
  static const std::string kNone;
  return id >= 0 && static_cast<std::size_t>(id) < id_to_token_.size() ? id_to_token_[id] : kNone;
}

void Bpe::encode_word(std::string_view word, std::vector<std::int32_t>& out) const {
  if (word.empty()) return;
  if (!split_at_metaspace_) return encode_uncached(word, out);
  std::size_t start = 0;
  bool prev_meta = false;
  for (std::size_t i = 0; i < word.size();) {
    bool meta = word.compare(i, kMeta.size(), kMeta) == 0;
    if (meta && !prev_meta && i > start) {
      encode_uncached(word.substr(start, i - start), out);
      start = i;
    }
    prev_meta = meta;
    i += meta ? kMeta.size() : utf8_len(static_cast<unsigned char>(word[i]));
  }
  encode_uncached(word.substr(start), out);
}

void Bpe::encode_uncached(std::string_view word, std::vector<std::int32_t>& out) const {
  if (ignore_merges_) {
    const auto& v = byte_level_ ? raw_vocab_ : vocab_;
    if (auto it = v.find(word); it != v.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() <= kMaxCachedWord;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (auto it = cache_.find(word); it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  thread_local std::vector<std::int32_t> syms;
  syms.clear();
  initial_symbols(word, syms);
  merge(syms);
  out.insert(out.end(), syms.begin(), syms.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() < kMaxCacheEntries) cache_.emplace(std::string(word), syms);
  }
}

void Bpe::initial_symbols(std::string_view w, std::vector<std::int32_t>& syms) const {
  // Unknown chars become <unk> (fused into one when fuse_unk) or, without an
  // unk token, are dropped, as HF's BPE::merge_word does.
  bool pending_unk = false;
  auto unknown = [&] {
    if (unk_id_ < 0) return;
    if (pending_unk && fuse_unk_) return;
    if (pending_unk) syms.push_back(unk_id_);
    pending_unk = true;
  };
  auto known = [&](std::int32_t id) {
    if (pending_unk) { syms.push_back(unk_id_); pending_unk = false; }
    syms.push_back(id);
  };
  if (byte_level_) {
    for (unsigned char b : w) {
      if (byte_ids_[b] >= 0) known(byte_ids_[b]);
      else unknown();
    }
  } else {
    for (std::size_t i = 0; i < w.size();) {
      auto b = static_cast<unsigned char>(w[i]);
      std::size_t n = utf8_len(b);
      std::int32_t id = -1;
      if (b < 0x80) {
        id = ascii_ids_[b];
      } else if (auto it = vocab_.find(w.substr(i, n)); it != vocab_.end()) {
        id = it->second;
      }
      if (id >= 0) {
        known(id);
      } else {
        bool all = byte_fallback_;
        for (std::size_t k = 0; all && k < n; ++k)
          all = byte_ids_[static_cast<unsigned char>(w[i + k])] >= 0;
        if (all) {
          for (std::size_t k = 0; k < n; ++k) known(byte_ids_[static_cast<unsigned char>(w[i + k])]);
        } else {
          unknown();
        }
      }
      i += n;
    }
  }
  if (pending_unk) syms.push_back(unk_id_);
}

void Bpe::merge(std::vector<std::int32_t>& s) const {
  std::size_t n = s.size();
  if (n < 2) return;
  if (n > kSimpleMergeLimit) return merge_heap(s);
  // Lowest rank first, leftmost on ties: the order HF's heap produces.
  std::int32_t rank[kSimpleMergeLimit], nid[kSimpleMergeLimit];
  auto score = [&](std::size_t i) {
    const PairTable::Entry* e = merges_.find(s[i], s[i + 1]);
    rank[i] = e ? e->rank : INT_MAX;
    nid[i] = e ? e->id : -1;
  };
  for (std::size_t i = 0; i + 1 < n; ++i) score(i);
  while (n > 1) {
    std::size_t best = 0;
    for (std::size_t i = 1; i + 1 < n; ++i)
      if (rank[i] < rank[best]) best = i;
    if (rank[best] == INT_MAX) break;
    s[best] = nid[best];
    for (std::size_t i = best + 1; i + 1 < n; ++i) s[i] = s[i + 1];
    for (std::size_t i = best + 1; i + 2 < n; ++i) {
      rank[i] = rank[i + 1];
      nid[i] = nid[i + 1];
    }
    --n;
    if (best > 0) score(best - 1);
    if (best + 1 < n) score(best);
  }
  s.resize(n);
}

void Bpe::merge_heap(std::vector<std::int32_t>& s) const {
  // HF's word.rs merge_all: a heap of candidate merges with lazy invalidation.
  struct Sym { std::int32_t id, prev, next; bool alive; };
  struct Cand { std::int32_t rank, pos, id; };
  auto worse = [](const Cand& x, const Cand& y) {
    return x.rank != y.rank ? x.rank > y.rank : x.pos > y.pos;
  };
  const auto n = static_cast<std::int32_t>(s.size());
  std::vector<Sym> sym(n);
  for (std::int32_t i = 0; i < n; ++i) sym[i] = {s[i], i - 1, i + 1 < n ? i + 1 : -1, true};
  std::vector<Cand> heap_store;
  heap_store.reserve(n);
  std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse, std::move(heap_store));
  for (std::int32_t i = 0; i + 1 < n; ++i)
    if (const auto* e = merges_.find(s[i], s[i + 1])) heap.push({e->rank, i, e->id});
  while (!heap.empty()) {
    Cand top = heap.top();
    heap.pop();
    Sym& cur = sym[top.pos];
    if (!cur.alive || cur.next < 0) continue;
    Sym& right = sym[cur.next];
    const auto* e = merges_.find(cur.id, right.id);
    if (!e || e->id != top.id) continue;  // stale candidate
    cur.id = top.id;
    right.alive = false;
    cur.next = right.next;
    if (cur.next >= 0) sym[cur.next].prev = top.pos;
    if (cur.prev >= 0)
      if (const auto* p = merges_.find(sym[cur.prev].id, cur.id)) heap.push({p->rank, cur.prev, p->id});
    if (cur.next >= 0)
      if (const auto* q = merges_.find(cur.id, sym[cur.next].id)) heap.push({q->rank, top.pos, q->id});
  }
  s.clear();
  for (std::int32_t i = 0; i >= 0 && i < n; i = sym[i].next) s.push_back(sym[i].id);
}

}  // namespace sink::tok
