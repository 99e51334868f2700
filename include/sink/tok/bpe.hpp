// The BPE model of HF tokenizers (models/bpe): vocabulary, ranked merges,
// byte fallback, unk fusing and ignore_merges, with HF's merge order (lowest
// rank first, leftmost on ties). Words are cached.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sink::tok {

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    // FNV-1a: short keys dominate, and it is cheap.
    std::uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return static_cast<std::size_t>(h ^ (h >> 32));
  }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

// Token ids must lie below this (2^24, the bound config.json's vocab_size has
// too). Tables indexed by id are sized by the largest id, so a file naming id
// 2^31 - 1 would otherwise make us allocate 64 GB; real vocabularies are < 2^18.
inline constexpr std::int64_t kMaxTokenId = (std::int64_t{1} << 24) - 1;

// (left id, right id) -> (rank, merged id), open addressing.
class PairTable {
 public:
  struct Entry {
    std::uint64_t key = kEmpty;
    std::int32_t rank = 0;
    std::int32_t id = 0;
  };
  static constexpr std::uint64_t kEmpty = ~0ull;

  void reserve(std::size_t n);
  // Inserts or overwrites (a later duplicate merge wins, as in HF's HashMap).
  void put(std::int32_t a, std::int32_t b, std::int32_t rank, std::int32_t id);
  const Entry* find(std::int32_t a, std::int32_t b) const {
    if (slots_.empty()) return nullptr;
    std::uint64_t key = pack(a, b);
    for (std::size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
      const Entry& e = slots_[i];
      if (e.key == key) return &e;
      if (e.key == kEmpty) return nullptr;
    }
  }
  std::size_t size() const { return size_; }

 private:
  static std::uint64_t pack(std::int32_t a, std::int32_t b) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) |
           static_cast<std::uint32_t>(b);
  }
  static std::size_t hash(std::uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return static_cast<std::size_t>(k);
  }
  std::vector<Entry> slots_;
  std::size_t mask_ = 0, size_ = 0;
};

struct BpeConfig {
  StringMap<std::int32_t> vocab;                          // token -> id
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  bool byte_level = false;  // words are raw bytes; vocab is in GPT-2's byte->char form
  bool byte_fallback = false;
  std::optional<std::string> unk_token;
  bool fuse_unk = false;
  bool ignore_merges = false;
};

class Bpe {
 public:
  // Throws std::invalid_argument naming a merge whose parts are not in the vocab.
  explicit Bpe(BpeConfig cfg);

  // Appends the ids of one pre-tokenized word (raw bytes in byte-level mode,
  // else the normalized text).
  void encode_word(std::string_view word, std::vector<std::int32_t>& out) const;

  const StringMap<std::int32_t>& vocab() const { return vocab_; }
  // Token text by id ("" when the id is not in the vocab).
  const std::string& token(std::int32_t id) const;
  std::int32_t max_id() const { return static_cast<std::int32_t>(id_to_token_.size()) - 1; }
  bool byte_level() const { return byte_level_; }

 private:
  void encode_uncached(std::string_view word, std::vector<std::int32_t>& out) const;
  void initial_symbols(std::string_view word, std::vector<std::int32_t>& syms) const;
  void merge(std::vector<std::int32_t>& syms) const;
  void merge_heap(std::vector<std::int32_t>& syms) const;

  StringMap<std::int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  PairTable merges_;
  bool byte_level_ = false, byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false;
  std::int32_t unk_id_ = -1;
  std::int32_t byte_ids_[256];      // byte-level: id of each byte's char; SPM: id of <0xXX>
  std::int32_t ascii_ids_[128];     // SPM: id of each ASCII char (-1 if none)
  StringMap<std::int32_t> raw_vocab_;  // byte-level + ignore_merges: vocab keyed by raw bytes
  // SentencePiece-style models see the whole normalized text as one word; when
  // no merge can join a symbol to a following "▁..." symbol, the word can be
  // cut before each "▁" that follows a non-"▁" char without changing the result.
  bool split_at_metaspace_ = false;

  mutable std::mutex cache_mu_;
  mutable StringMap<std::vector<std::int32_t>> cache_;
};

}  // namespace sink::tok
