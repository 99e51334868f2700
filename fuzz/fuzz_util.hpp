// Shared pieces of the libFuzzer targets (fuzz/*.cpp).
//
// Contract of every target: any input is either accepted or rejected with a
// sink::InputError (what the CLIs turn into exit status 2). Anything else (an
// other exception, a crash, a sanitizer report, a timeout, an allocation over
// -malloc_limit_mb) is a finding. Parsers that take a path get the input
// written to a file in a private temporary folder.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <string_view>

#include "sink/tok/tokenizer.hpp"
#include "sink/util/error.hpp"

namespace sink::fuzz {

// A private folder for this process (under /dev/shm when there is one: the
// targets rewrite their file for every input), removed at a normal exit;
// $SINK_FUZZ_WORKDIR names it instead (tools/fuzz/run_fuzzers.sh does, so that
// after a kill for memory or time the input being run is still there).
inline const std::filesystem::path& work_dir() {
  static const std::filesystem::path dir = [] {
    namespace fs = std::filesystem;
    if (const char* w = std::getenv("SINK_FUZZ_WORKDIR"); w && *w) {
      fs::create_directories(w);
      return fs::path(w);
    }
    std::string base = fs::is_directory("/dev/shm") && access("/dev/shm", W_OK) == 0
                           ? "/dev/shm"
                           : fs::temp_directory_path().string();
    std::string templ = base + "/sink-fuzz-XXXXXX";
    if (!mkdtemp(templ.data())) {
      std::perror("mkdtemp");
      std::abort();
    }
    static struct Cleanup {
      std::string d;
      ~Cleanup() {
        std::error_code ec;
        std::filesystem::remove_all(d, ec);
      }
    } cleanup{templ};
    return fs::path(templ);
  }();
  return dir;
}

// Writes bytes to work_dir()/name and returns the path.
inline std::string write_file(const std::string& name, std::string_view bytes) {
  const std::string p = (work_dir() / name).string();
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  f.close();
  if (!f) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", p.c_str());
    std::abort();
  }
  return p;
}

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Runs f; an InputError is the expected way to refuse an input.
template <class F>
void expect_ok_or_input_error(F&& f) {
  try {
    f();
  } catch (const InputError&) {
  }
}

[[noreturn]] inline void finding(const std::string& what) {
  std::fprintf(stderr, "fuzz finding: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

// Encodes and decodes with a freshly loaded tokenizer: ids of the plain
// encoding must lie in [0, vocab_size()), and decoding must not fail.
inline void exercise_tokenizer(const Tokenizer& t, std::string_view text) {
  const std::int32_t n = t.vocab_size();
  if (n <= 0) finding("vocab_size() = " + std::to_string(n) + " after a successful load");
  for (bool special : {false, true}) {
    auto ids = t.encode(text, special);
    if (!special)
      for (auto id : ids)
        if (id < 0 || id >= n)
          finding("encode gave id " + std::to_string(id) + " outside [0, " + std::to_string(n) + ")");
    (void)t.decode(ids, false);
    (void)t.decode(ids, true);
  }
  for (std::int32_t id : {0, 1, 2, n - 1, n, -1}) {
    (void)t.id_to_token(id);
    (void)t.is_special(id);
  }
  (void)t.token_to_id(text.substr(0, 8));
  (void)t.describe();
}

// Sample texts for tokenizers loaded from fuzzed files: ASCII, spaces and
// newlines, multi-byte UTF-8, a combining mark (NFC), digits, an invalid byte.
inline constexpr std::string_view kSampleText =
    "Hello world!  It's 2024:\n\tcaf\xC3\xA9 e\xCC\x81 \xE2\x96\x81x \xE4\xB8\xAD\xE6\x96\x87 "
    "\xF0\x9F\x98\x80 <s></s><|endoftext|> \xFF end";

}  // namespace sink::fuzz
