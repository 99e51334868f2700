// A compiled PCRE2 regex (UTF + UCP, JIT when available) for the
// pre-tokenizer split patterns of tokenizer.json files.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace sink::tok {

// A match that PCRE2 gave up on (its match or depth limit): the pattern's fault, an
// input (tokenizer.json) that the tokenizer reports naming its file.
class RegexMatchError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Regex {
 public:
  // Throws std::invalid_argument with PCRE2's message on a bad pattern.
  explicit Regex(const std::string& pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Calls fn(start, end) for every non-overlapping match, left to right, as
  // Rust's find_iter does (an empty match advances by one char). The text
  // must be valid UTF-8.
  template <class Fn>
  void for_each_match(std::string_view text, Fn&& fn) const {
    std::size_t pos = 0;
    std::size_t s, e;
    while (pos <= text.size() && match(text, pos, &s, &e)) {
      fn(s, e);
      if (e == s) {
        if (e >= text.size()) break;
        pos = e + 1;
        while (pos < text.size() && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
      } else {
        pos = e;
      }
    }
  }

  // One match at or after `from`; false when there is none.
  bool match(std::string_view text, std::size_t from, std::size_t* start, std::size_t* end) const;

  // Rewrites Oniguruma-isms for PCRE2: \s and \S become the Unicode
  // White_Space set, which is what Oniguruma (HF tokenizers' engine) uses;
  // PCRE2's UCP \s differs (e.g. on U+180E).
  static std::string onig_compat(const std::string& pattern);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sink::tok
