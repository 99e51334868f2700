#include "sink/tok/unicode.hpp"

#include <algorithm>
#include <array>
#include <vector>

namespace sink::tok {
namespace {

struct CccEntry { char32_t cp; std::uint8_t ccc; };
struct QcEntry { char32_t cp; std::uint8_t qc; };
struct DecompEntry { char32_t cp; std::uint32_t off; std::uint8_t len; };
struct CompEntry { char32_t a, b, c; };
#include "unicode_tables.inc"

constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr int kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
              kSCount = kLCount * kNCount;

std::uint8_t ccc_of(char32_t cp) {
  if (cp < 0x300) return 0;
  auto it = std::lower_bound(std::begin(kCcc), std::end(kCcc), cp,
                             [](const CccEntry& e, char32_t c) { return e.cp < c; });
  return (it != std::end(kCcc) && it->cp == cp) ? it->ccc : 0;
}

std::uint8_t qc_of(char32_t cp) {
  if (cp < 0x300) return 0;
  auto it = std::lower_bound(std::begin(kNfcQc), std::end(kNfcQc), cp,
                             [](const QcEntry& e, char32_t c) { return e.cp < c; });
  return (it != std::end(kNfcQc) && it->cp == cp) ? it->qc : 0;
}

void decompose(char32_t cp, std::vector<char32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    int s = static_cast<int>(cp - kSBase);
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount) out.push_back(kTBase + s % kTCount);
    return;
  }
  if (cp >= 0xC0) {
    auto it = std::lower_bound(std::begin(kDecomp), std::end(kDecomp), cp,
                               [](const DecompEntry& e, char32_t c) { return e.cp < c; });
    if (it != std::end(kDecomp) && it->cp == cp) {
      out.insert(out.end(), kDecompPool + it->off, kDecompPool + it->off + it->len);
      return;
    }
  }
  out.push_back(cp);
}

char32_t compose_pair(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount)
    return a + (b - kTBase);
  auto it = std::lower_bound(std::begin(kComp), std::end(kComp), std::pair{a, b},
                             [](const CompEntry& e, std::pair<char32_t, char32_t> k) {
                               return e.a < k.first || (e.a == k.first && e.b < k.second);
                             });
  return (it != std::end(kComp) && it->a == a && it->b == b) ? it->c : 0;
}

// Full canonical decomposition followed by the canonical ordering algorithm.
std::vector<char32_t> decompose_ordered(std::string_view s) {
  std::vector<char32_t> cps;
  cps.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) decompose(next_cp(s, i), cps);
  // Stable sort of each run of non-starters by combining class.
  for (std::size_t i = 0; i < cps.size();) {
    if (ccc_of(cps[i]) == 0) { ++i; continue; }
    std::size_t j = i;
    while (j < cps.size() && ccc_of(cps[j]) != 0) ++j;
    std::stable_sort(cps.begin() + i, cps.begin() + j,
                     [](char32_t x, char32_t y) { return ccc_of(x) < ccc_of(y); });
    i = j;
  }
  return cps;
}

}  // namespace

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

namespace {
// Length of the valid UTF-8 sequence at s[i], or 0 when invalid; on invalid
// input *bad is the length of the maximal subpart to replace by one U+FFFD.
std::size_t valid_seq(std::string_view s, std::size_t i, std::size_t* bad) {
  auto at = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char b = at(i);
  if (b < 0x80) return 1;
  std::size_t n;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) n = 2;
  else if (b >= 0xE0 && b <= 0xEF) { n = 3; if (b == 0xE0) lo = 0xA0; if (b == 0xED) hi = 0x9F; }
  else if (b >= 0xF0 && b <= 0xF4) { n = 4; if (b == 0xF0) lo = 0x90; if (b == 0xF4) hi = 0x8F; }
  else { *bad = 1; return 0; }
  for (std::size_t k = 1; k < n; ++k) {
    if (i + k >= s.size()) { *bad = k; return 0; }
    unsigned char c = at(i + k);
    unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (c < l || c > h) { *bad = k; return 0; }
  }
  return n;
}
}  // namespace

bool is_valid_utf8(std::string_view s) {
  std::size_t i = 0, bad = 0;
  while (i < s.size()) {
    // Fast path over ASCII, 8 bytes at a time.
    while (i + 8 <= s.size()) {
      std::uint64_t w;
      __builtin_memcpy(&w, s.data() + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= s.size()) break;
    std::size_t n = valid_seq(s, i, &bad);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  std::size_t i = 0, bad = 0;
  while (i < s.size()) {
    std::size_t n = valid_seq(s, i, &bad);
    if (n) { out.append(s.data() + i, n); i += n; }
    else { out += "\xEF\xBF\xBD"; i += bad; }
  }
  return out;
}

bool is_nfc_quick(std::string_view s) {
  std::uint8_t last = 0;
  for (std::size_t i = 0; i < s.size();) {
    if (static_cast<unsigned char>(s[i]) < 0xCC) {  // < U+0300: ccc 0, QC yes
      i += utf8_len(static_cast<unsigned char>(s[i]));
      last = 0;
      continue;
    }
    char32_t cp = next_cp(s, i);
    if (cp >= kSBase && cp < kSBase + kSCount) { last = 0; continue; }
    std::uint8_t c = ccc_of(cp);
    if (c != 0 && last > c) return false;
    if (qc_of(cp) != 0) return false;
    last = c;
  }
  return true;
}

std::string nfd(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t cp : decompose_ordered(s)) append_utf8(out, cp);
  return out;
}

std::string nfc(std::string_view s) {
  if (is_nfc_quick(s)) return std::string(s);
  std::vector<char32_t> cps = decompose_ordered(s);
  // Canonical composition (UAX #15): each char may combine with the last
  // starter unless blocked by an intervening char of equal or higher class.
  std::size_t starter = SIZE_MAX, w = 0;
  int last_ccc = -1;
  for (std::size_t r = 0; r < cps.size(); ++r) {
    char32_t cp = cps[r];
    int c = ccc_of(cp);
    if (starter != SIZE_MAX && (last_ccc < c || (last_ccc == 0 && w == starter + 1))) {
      if (char32_t comp = compose_pair(cps[starter], cp)) {
        cps[starter] = comp;
        continue;
      }
    }
    if (c == 0) { starter = w; last_ccc = 0; }
    else last_ccc = c;
    cps[w++] = cp;
  }
  // last_ccc handling above treats "no intervening char" as unblocked.
  cps.resize(w);
  std::string out;
  out.reserve(s.size());
  for (char32_t cp : cps) append_utf8(out, cp);
  return out;
}

namespace {
struct ByteMap {
  std::array<char32_t, 256> to_char{};
  std::array<std::int16_t, 324> to_byte{};  // every mapped char is below 256 + 68
  ByteMap() {
    to_byte.fill(-1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      to_char[b] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
      to_byte[to_char[b]] = static_cast<std::int16_t>(b);
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}
}  // namespace

char32_t byte_to_char(std::uint8_t b) { return byte_map().to_char[b]; }

int char_to_byte(char32_t c) { return c < 324 ? byte_map().to_byte[c] : -1; }

}  // namespace sink::tok
