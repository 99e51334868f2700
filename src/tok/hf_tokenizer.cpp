// The HF `tokenizers` pipeline: added-token extraction, normalizer,
// pre-tokenizer, BPE, post-processor and decoder, step for step as
// tokenizers' Tokenizer::encode / decode run them (ids only, no offsets).
#include <algorithm>
#include <array>
#include <deque>
#include <string_view>
#include <unordered_map>

#include "sink/tok/hf_pipeline.hpp"
#include "sink/tok/unicode.hpp"
#include "sink/util/error.hpp"

namespace sink::tok {

namespace {

constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

bool is_white_space(char32_t c) {
  return (c >= 0x9 && c <= 0xD) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

const Regex& alnum_regex() {
  static const Regex re(R"(^[\p{L}\p{N}])");
  return re;
}

// Last / first char of s is alphanumeric (for single_word added tokens).
bool ends_with_word(std::string_view s) {
  if (s.empty()) return false;
  std::size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  std::size_t a, b;
  return alnum_regex().match(s.substr(i), 0, &a, &b);
}
bool starts_with_word(std::string_view s) {
  std::size_t a, b;
  return !s.empty() && alnum_regex().match(s, 0, &a, &b);
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  std::size_t pos = s.find(from);
  if (pos == std::string::npos) return;
  std::string out;
  out.reserve(s.size() + 16);
  std::size_t prev = 0;
  for (; pos != std::string::npos; pos = s.find(from, prev)) {
    out.append(s, prev, pos - prev);
    out += to;
    prev = pos + from.size();
  }
  out.append(s, prev, std::string::npos);
  s = std::move(out);
}

// Leftmost-longest matching of added tokens (HF uses an Aho-Corasick
// automaton with MatchKind::LeftmostLongest; added tokens are few, so a
// first-byte bucket per position is as fast here).
class AddedMatcher {
 public:
  void add(std::string pattern, std::size_t token_index) {
    if (pattern.empty()) return;
    auto b = static_cast<unsigned char>(pattern[0]);
    buckets_[b].push_back({std::move(pattern), token_index});
    any_ = true;
  }
  void finish() {
    for (auto& v : buckets_)
      std::stable_sort(v.begin(), v.end(),
                       [](const auto& x, const auto& y) { return x.first.size() > y.first.size(); });
  }
  bool empty() const { return !any_; }

  // fn(segment, token index or -1, offset of the segment in text) for each
  // non-empty segment, as AddedVocabulary::find_matches splits.
  template <class Fn>
  void split(std::string_view text, const std::vector<AddedToken>& toks, Fn&& fn) const {
    if (!any_) {
      if (!text.empty()) fn(text, -1, 0);
      return;
    }
    std::size_t start_offset = 0;
    for (std::size_t i = 0; i < text.size();) {
      const auto& bucket = buckets_[static_cast<unsigned char>(text[i])];
      const std::pair<std::string, std::size_t>* hit = nullptr;
      for (const auto& cand : bucket)
        if (text.compare(i, cand.first.size(), cand.first) == 0) { hit = &cand; break; }
      if (!hit) { ++i; continue; }
      std::size_t start = i, stop = i + hit->first.size();
      i = stop;  // matches never overlap
      const AddedToken& t = toks[hit->second];
      if (t.single_word) {
        bool start_space = start == 0 || !ends_with_word(text.substr(0, start));
        bool stop_space = stop == text.size() || !starts_with_word(text.substr(stop));
        if (!start_space || !stop_space) continue;
      }
      if (t.lstrip) {
        std::size_t s = start;
        while (s > 0) {
          std::size_t k = s - 1;
          while (k > 0 && (static_cast<unsigned char>(text[k]) & 0xC0) == 0x80) --k;
          std::size_t kk = k;
          if (!is_white_space(next_cp(text, kk))) break;
          s = k;
        }
        start = std::max(s, start_offset);
      }
      if (t.rstrip) {
        while (stop < text.size()) {
          std::size_t k = stop;
          if (!is_white_space(next_cp(text, k))) break;
          stop = k;
        }
        i = stop;
      }
      if (start_offset < start) fn(text.substr(start_offset, start - start_offset), -1, start_offset);
      fn(text.substr(start, stop - start), static_cast<int>(hit->second), start);
      start_offset = stop;
    }
    if (start_offset < text.size()) fn(text.substr(start_offset), -1, start_offset);
  }

 private:
  std::array<std::vector<std::pair<std::string, std::size_t>>, 256> buckets_;
  bool any_ = false;
};

struct Piece {
  std::string_view s;
  bool at_start;  // starts at offset 0 of the original text (Metaspace "first")
};

class HfTokenizer final : public Tokenizer {
 public:
  HfTokenizer(Pipeline p, const std::string& bos, const std::string& eos) : p_(std::move(p)) {
    for (std::size_t i = 0; i < p_.added.size(); ++i) {
      const AddedToken& t = p_.added[i];
      if (t.normalized) {
        std::string n = normalize(t.content);
        norm_matcher_.add(std::move(n), i);
      } else {
        raw_matcher_.add(t.content, i);
      }
      added_by_id_[t.id] = i;
      added_by_content_.emplace(t.content, t.id);
      max_id_ = std::max(max_id_, t.id);
    }
    raw_matcher_.finish();
    norm_matcher_.finish();
    max_id_ = std::max(max_id_, p_.model->max_id());
    for (const PreStep& st : p_.pre)
      if (st.kind == PreStep::kByteLevel && st.use_regex) gpt2_ = std::make_unique<Regex>(kGpt2Pattern);

    if (!bos.empty()) bos_ = token_to_id(bos);
    else if (!p_.bos_name.empty()) bos_ = token_to_id(p_.bos_name);
    if (!eos.empty()) eos_ = token_to_id(eos);
    else if (!p_.eos_name.empty()) eos_ = token_to_id(p_.eos_name);
    if (!p_.prefix.empty()) {
      if (!bos_) bos_ = p_.prefix.front();
      adds_bos_ = p_.prefix.front() == *bos_;
    }
    if (!p_.suffix.empty()) {
      if (!eos_) eos_ = p_.suffix.back();
      adds_eos_ = p_.suffix.back() == *eos_;
    }
  }

  std::vector<std::int32_t> encode(std::string_view text, bool add_special) const override {
    try {
      return encode_checked(text, add_special);
    } catch (const RegexMatchError& e) {
      throw InputError(p_.source, e.what());
    }
  }

  std::vector<std::int32_t> encode_checked(std::string_view text, bool add_special) const {
    std::string fixed;
    if (!is_valid_utf8(text)) {
      fixed = utf8_lossy(text);
      text = fixed;
    }
    std::vector<std::int32_t> ids;
    ids.reserve(text.size() / 3 + 8);
    if (add_special) ids.insert(ids.end(), p_.prefix.begin(), p_.prefix.end());
    raw_matcher_.split(text, p_.added, [&](std::string_view seg, int tok, std::size_t off) {
      if (tok >= 0) ids.push_back(p_.added[tok].id);
      else encode_segment(seg, off == 0, ids);
    });
    if (add_special) ids.insert(ids.end(), p_.suffix.begin(), p_.suffix.end());
    return ids;
  }

  std::string decode(std::span<const std::int32_t> ids, bool skip_special) const override {
    std::vector<std::string> toks;
    toks.reserve(ids.size());
    for (std::int32_t id : ids) {
      if (auto it = added_by_id_.find(id); it != added_by_id_.end()) {
        const AddedToken& t = p_.added[it->second];
        if (skip_special && t.special) continue;
        toks.push_back(t.content);
      } else if (id >= 0 && id <= p_.model->max_id() && !p_.model->token(id).empty()) {
        toks.push_back(p_.model->token(id));
      }
    }
    if (!p_.has_decoder) {
      std::string out;
      for (std::size_t i = 0; i < toks.size(); ++i) {
        if (i) out += ' ';
        out += toks[i];
      }
      return out;
    }
    for (const DecStep& st : p_.decoder) apply_decoder(st, toks);
    std::string out;
    for (const auto& t : toks) out += t;
    return out;
  }

  std::int32_t vocab_size() const override { return max_id_ + 1; }

  std::optional<std::int32_t> token_to_id(std::string_view token) const override {
    if (auto it = added_by_content_.find(token); it != added_by_content_.end()) return it->second;
    if (auto it = p_.model->vocab().find(token); it != p_.model->vocab().end()) return it->second;
    return std::nullopt;
  }
  std::string id_to_token(std::int32_t id) const override {
    if (auto it = added_by_id_.find(id); it != added_by_id_.end()) return p_.added[it->second].content;
    return p_.model->token(id);
  }
  bool is_special(std::int32_t id) const override {
    auto it = added_by_id_.find(id);
    return it != added_by_id_.end() && p_.added[it->second].special;
  }
  std::string describe() const override { return p_.describe; }

 private:
  std::string normalize(std::string_view in) const {
    std::string s(in);
    // Real normalizers grow a text a few times at most (NFD, "▁" for " "); a chain of
    // Replace steps can double it at each step. Capped, and checked after every step.
    const std::size_t cap = 32 * in.size() + 4096;
    std::size_t step = 0;
    for (const NormStep& st : p_.normalizer) {
      if (s.size() > cap)
        throw InputError(p_.source, "the normalizer makes a text of " + std::to_string(in.size()) +
                                        " bytes longer than " + std::to_string(cap) + " bytes (by step " +
                                        std::to_string(step) + "); refusing it");
      ++step;
      switch (st.kind) {
        case NormStep::kNFC: s = nfc(s); break;
        case NormStep::kNFD: s = nfd(s); break;
        case NormStep::kPrepend:
          if (!s.empty()) s.insert(0, st.a);
          break;
        case NormStep::kReplace: replace_all(s, st.a, st.b); break;
        case NormStep::kReplaceRegex: {
          std::string out;
          std::size_t prev = 0;
          st.re->for_each_match(s, [&](std::size_t a, std::size_t b) {
            out.append(s, prev, a - prev);
            out += st.b;
            prev = b;
          });
          out.append(s, prev, std::string::npos);
          s = std::move(out);
          break;
        }
        case NormStep::kCollapseSpaces: {
          // SentencePiece's remove_extra_whitespaces: trim, and squeeze runs of ' '.
          std::string out;
          for (char c : s)
            if (c != ' ' || (!out.empty() && out.back() != ' ')) out += c;
          while (!out.empty() && out.back() == ' ') out.pop_back();
          s = std::move(out);
          break;
        }
      }
    }
    if (s.size() > cap)
      throw InputError(p_.source, "the normalizer makes a text of " + std::to_string(in.size()) +
                                      " bytes longer than " + std::to_string(cap) + " bytes; refusing it");
    return s;
  }

  void encode_segment(std::string_view seg, bool at_start, std::vector<std::int32_t>& ids) const {
    if (p_.normalizer.empty()) {
      norm_matcher_.split(seg, p_.added, [&](std::string_view s, int tok, std::size_t off) {
        if (tok >= 0) ids.push_back(p_.added[tok].id);
        else pre_tokenize(s, at_start && off == 0, ids);
      });
      return;
    }
    std::string norm = normalize(seg);
    norm_matcher_.split(norm, p_.added, [&](std::string_view s, int tok, std::size_t off) {
      if (tok >= 0) ids.push_back(p_.added[tok].id);
      else pre_tokenize(s, at_start && off == 0, ids);
    });
  }

  // Applies a split's matches with HF's SplitDelimiterBehavior and invert.
  static void apply_split(const Piece& p, std::vector<std::pair<std::size_t, std::size_t>>& matches,
                          SplitBehavior behavior, bool invert, std::vector<Piece>& out) {
    struct Part { std::size_t a, b; bool m; };
    std::vector<Part> parts;
    parts.reserve(matches.size() * 2 + 1);
    std::size_t prev = 0;
    for (auto [a, b] : matches) {
      if (prev != a) parts.push_back({prev, a, false});
      parts.push_back({a, b, true});
      prev = b;
    }
    if (prev != p.s.size()) parts.push_back({prev, p.s.size(), false});
    if (invert)
      for (auto& x : parts) x.m = !x.m;
    std::vector<std::pair<std::size_t, std::size_t>> res;
    res.reserve(parts.size());
    switch (behavior) {
      case SplitBehavior::kRemoved:
        for (auto& x : parts)
          if (!x.m) res.push_back({x.a, x.b});
        break;
      case SplitBehavior::kIsolated:
        for (auto& x : parts) res.push_back({x.a, x.b});
        break;
      case SplitBehavior::kMergedWithPrevious: {
        bool prev_match = false;
        for (auto& x : parts) {
          if (x.m && !prev_match && !res.empty()) res.back().second = x.b;
          else res.push_back({x.a, x.b});
          prev_match = x.m;
        }
        break;
      }
      case SplitBehavior::kMergedWithNext: {
        bool prev_match = false;
        for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
          if (it->m && !prev_match && !res.empty()) res.back().first = it->a;
          else res.push_back({it->a, it->b});
          prev_match = it->m;
        }
        std::reverse(res.begin(), res.end());
        break;
      }
      case SplitBehavior::kContiguous: {
        bool prev_match = false;
        bool first = true;
        for (auto& x : parts) {
          if (!first && x.m == prev_match) res.back().second = x.b;
          else res.push_back({x.a, x.b});
          prev_match = x.m;
          first = false;
        }
        break;
      }
    }
    for (auto [a, b] : res)
      if (b > a) out.push_back({p.s.substr(a, b - a), p.at_start && a == 0});
  }

  void pre_tokenize(std::string_view s, bool at_start, std::vector<std::int32_t>& ids) const {
    if (s.empty()) return;
    if (p_.pre.empty()) {
      p_.model->encode_word(s, ids);
      return;
    }
    std::deque<std::string> arena;  // strings the steps create; pieces view into them
    std::vector<Piece> pieces{{s, at_start}}, next;
    std::vector<std::pair<std::size_t, std::size_t>> matches;
    for (const PreStep& st : p_.pre) {
      next.clear();
      next.reserve(pieces.size() * 2);
      for (const Piece& p : pieces) {
        switch (st.kind) {
          case PreStep::kSplit: {
            matches.clear();
            if (st.re) {
              st.re->for_each_match(p.s, [&](std::size_t a, std::size_t b) { matches.push_back({a, b}); });
            } else if (!st.literal.empty()) {
              for (std::size_t pos = p.s.find(st.literal); pos != std::string_view::npos;
                   pos = p.s.find(st.literal, pos + st.literal.size()))
                matches.push_back({pos, pos + st.literal.size()});
            }
            apply_split(p, matches, st.behavior, st.invert, next);
            break;
          }
          case PreStep::kByteLevel: {
            Piece q = p;
            if (st.add_prefix_space && !q.s.starts_with(' ')) {
              std::string t;
              t.reserve(q.s.size() + 1);
              t += ' ';
              t += q.s;
              arena.push_back(std::move(t));
              q.s = arena.back();
            }
            if (st.use_regex) {
              matches.clear();
              gpt2_->for_each_match(q.s, [&](std::size_t a, std::size_t b) { matches.push_back({a, b}); });
              apply_split(q, matches, SplitBehavior::kIsolated, false, next);
            } else {
              next.push_back(q);
            }
            break;
          }
          case PreStep::kMetaspace: {
            std::string t(p.s);
            replace_all(t, " ", st.replacement);
            bool prepend = st.prepend == PreStep::kAlways || (st.prepend == PreStep::kFirst && p.at_start);
            if (prepend && !t.starts_with(st.replacement)) t.insert(0, st.replacement);
            arena.push_back(std::move(t));
            Piece q{arena.back(), p.at_start};
            if (st.split) {
              matches.clear();
              for (std::size_t pos = q.s.find(st.replacement); pos != std::string_view::npos;
                   pos = q.s.find(st.replacement, pos + st.replacement.size()))
                matches.push_back({pos, pos + st.replacement.size()});
              apply_split(q, matches, SplitBehavior::kMergedWithNext, false, next);
            } else {
              next.push_back(q);
            }
            break;
          }
        }
      }
      pieces.swap(next);
    }
    for (const Piece& p : pieces) p_.model->encode_word(p.s, ids);
  }

  static void apply_decoder(const DecStep& st, std::vector<std::string>& toks) {
    switch (st.kind) {
      case DecStep::kByteLevel: {
        std::string bytes;
        for (const auto& t : toks) {
          std::size_t mark = bytes.size();
          bool ok = true;
          for (std::size_t i = 0; i < t.size() && ok;) {
            int b = char_to_byte(next_cp(t, i));
            if (b < 0) ok = false;
            else bytes.push_back(static_cast<char>(b));
          }
          if (!ok) {
            bytes.resize(mark);
            bytes += t;
          }
        }
        toks.assign(1, utf8_lossy(bytes));
        break;
      }
      case DecStep::kReplace:
        for (auto& t : toks) replace_all(t, st.a, st.b);
        break;
      case DecStep::kByteFallback: {
        std::vector<std::string> out;
        out.reserve(toks.size());
        std::string pending;
        auto flush = [&] {
          if (pending.empty()) return;
          if (is_valid_utf8(pending)) out.push_back(pending);
          else
            for (std::size_t k = 0; k < pending.size(); ++k) out.push_back("\xEF\xBF\xBD");
          pending.clear();
        };
        for (auto& t : toks) {
          int byte = -1;
          if (t.size() == 6 && t.starts_with("<0x") && t.back() == '>') {
            auto hex = [](char c) {
              return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                     : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            };
            int h = hex(t[3]), l = hex(t[4]);
            if (h >= 0 && l >= 0) byte = h * 16 + l;
          }
          if (byte >= 0) {
            pending.push_back(static_cast<char>(byte));
          } else {
            flush();
            out.push_back(std::move(t));
          }
        }
        flush();
        toks = std::move(out);
        break;
      }
      case DecStep::kFuse: {
        std::string all;
        for (const auto& t : toks) all += t;
        toks.assign(1, std::move(all));
        break;
      }
      case DecStep::kStrip:
        for (auto& t : toks) {
          std::vector<std::pair<std::size_t, char32_t>> cps;  // (byte offset, cp)
          for (std::size_t i = 0; i < t.size();) {
            std::size_t at = i;
            cps.push_back({at, next_cp(t, i)});
          }
          std::size_t a = 0, b = cps.size();
          for (int k = 0; k < st.start && a < cps.size() && cps[a].second == st.content; ++k) ++a;
          for (int k = 0; k < st.stop && b > a && cps[b - 1].second == st.content; ++k) --b;
          std::size_t from = a < cps.size() ? cps[a].first : t.size();
          std::size_t to = b < cps.size() ? cps[b].first : t.size();
          t = t.substr(from, to - from);
        }
        break;
      case DecStep::kMetaspace:
        for (std::size_t i = 0; i < toks.size(); ++i) {
          std::string out;
          std::string_view t = toks[i];
          for (std::size_t k = 0; k < t.size();) {
            if (t.compare(k, st.a.size(), st.a) == 0 && !st.a.empty()) {
              if (!(i == 0 && st.prepend != PreStep::kNever)) out += ' ';
              k += st.a.size();
            } else {
              out += t[k++];
            }
          }
          toks[i] = std::move(out);
        }
        break;
    }
  }

  Pipeline p_;
  AddedMatcher raw_matcher_, norm_matcher_;
  std::unordered_map<std::int32_t, std::size_t> added_by_id_;
  StringMap<std::int32_t> added_by_content_;
  std::unique_ptr<Regex> gpt2_;
  std::int32_t max_id_ = -1;
};

}  // namespace

std::unique_ptr<Tokenizer> make_hf_tokenizer(Pipeline p, const std::string& bos_token,
                                             const std::string& eos_token) {
  return std::make_unique<HfTokenizer>(std::move(p), bos_token, eos_token);
}

}  // namespace sink::tok

namespace sink {
Tokenizer::~Tokenizer() = default;
}  // namespace sink
