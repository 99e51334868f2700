// UTF-8 and Unicode helpers for the tokenizers: decoding, lossy repair of
// invalid input, canonical normalization (NFC/NFD) and the GPT-2 byte<->char map.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace sink::tok {

// Decodes one code point at s[i]; advances i. Meant for valid UTF-8; on
// invalid input (vocabulary strings of a tokenizer.model or a GGUF file are
// raw bytes) it returns some code point, and a sequence cut short by the end
// of s is one U+FFFD for its lead byte: it never reads past the end.
inline char32_t next_cp(std::string_view s, std::size_t& i) {
  auto b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) { ++i; return b; }
  int n = b >= 0xF0 ? 3 : b >= 0xE0 ? 2 : 1;
  if (n >= static_cast<int>(s.size() - i)) { ++i; return 0xFFFD; }
  char32_t cp = b & (0x3F >> n);
  for (int k = 0; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + 1 + k]) & 0x3F);
  i += n + 1;
  return cp;
}

// Length in bytes of the UTF-8 sequence starting with lead byte b (1 for stray bytes).
inline std::size_t utf8_len(unsigned char b) {
  return b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
}

void append_utf8(std::string& out, char32_t cp);

// True when s is well-formed UTF-8 (no surrogates, no overlongs).
bool is_valid_utf8(std::string_view s);
// Replaces each maximal invalid subsequence by U+FFFD, as Python's
// bytes.decode("utf-8", "replace") and Rust's from_utf8_lossy do.
std::string utf8_lossy(std::string_view s);

// Canonical normalizations; the input must be valid UTF-8.
std::string nfc(std::string_view s);
std::string nfd(std::string_view s);
// Cheap check that s is already NFC (quick-check "Yes" for every char).
bool is_nfc_quick(std::string_view s);

// GPT-2's reversible byte -> printable char map used by the ByteLevel
// pre-tokenizer and decoder.
char32_t byte_to_char(std::uint8_t b);
// Inverse of byte_to_char; -1 if c is not in the map.
int char_to_byte(char32_t c);

}  // namespace sink::tok
