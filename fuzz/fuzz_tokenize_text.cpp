// The tokenizer encoders on arbitrary bytes (invalid UTF-8, special-token
// strings, long runs): real tokenizers are loaded once, then byte 0 of the
// input picks one, byte 1 the options, and the rest is the text. Each
// encoding's ids must lie in the vocabulary, decoding must not fail, and
// encoding must be deterministic (the word cache gives the same ids).
//
// Tokenizers: $SINK_FUZZ_TOKENIZERS (paths joined by ':'), else a default
// set from the shared data folder (byte-level BPE with the GPT-2 regex and
// with split regexes, SentencePiece-style BPE in tokenizer.json and in
// tokenizer.model, and both GGUF vocabulary kinds); missing ones are skipped.
#include <memory>
#include <sstream>
#include <vector>

#include "fuzz_util.hpp"

#ifndef SINK_SHARED_DATA_DEFAULT
#define SINK_SHARED_DATA_DEFAULT "../shared/data"
#endif
#ifndef SINK_SOURCE_DIR_DEFAULT
#define SINK_SOURCE_DIR_DEFAULT "."
#endif

namespace {

std::vector<std::unique_ptr<sink::Tokenizer>>& tokenizers() {
  static std::vector<std::unique_ptr<sink::Tokenizer>> all = [] {
    std::vector<std::string> paths;
    if (const char* env = std::getenv("SINK_FUZZ_TOKENIZERS")) {
      std::stringstream ss(env);
      for (std::string p; std::getline(ss, p, ':');)
        if (!p.empty()) paths.push_back(p);
    } else {
      const char* s = std::getenv("SINK_SHARED_DATA");
      const std::string shared = s ? s : SINK_SHARED_DATA_DEFAULT;
      for (const char* t : {"tokenizers/gpt2", "tokenizers/llama3", "tokenizers/llama-2/tokenizer.model",
                            "tokenizers/mistral-7b-v0.1", "tokenizers/qwen2.5", "tokenizers/gpt-neox-20b",
                            "models/stories260K/stories260K.gguf"})
        paths.push_back(shared + "/" + t);
      paths.push_back(std::string(SINK_SOURCE_DIR_DEFAULT) + "/models/smollm2-135m-instruct.Q4_1.gguf");
    }
    std::vector<std::unique_ptr<sink::Tokenizer>> v;
    for (const auto& p : paths) {
      std::error_code ec;
      if (!std::filesystem::exists(p, ec)) {
        std::fprintf(stderr, "fuzz_tokenize_text: skipping missing %s\n", p.c_str());
        continue;
      }
      v.push_back(sink::load_tokenizer(p));  // a real tokenizer must load
      std::fprintf(stderr, "fuzz_tokenize_text: %zu: %s (%s)\n", v.size() - 1, p.c_str(), v.back()->describe().c_str());
    }
    if (v.empty()) sink::fuzz::finding("no tokenizer to fuzz (set SINK_FUZZ_TOKENIZERS or SINK_SHARED_DATA)");
    return v;
  }();
  return all;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)tokenizers();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sink;
  if (size < 2) return 0;
  auto& all = tokenizers();
  const Tokenizer& t = *all[data[0] % all.size()];
  const bool special = data[1] & 1, skip = data[1] & 2;
  const std::string_view text = fuzz::as_text(data + 2, size - 2);
  const auto ids = t.encode(text, special);
  const std::int32_t n = t.vocab_size();
  for (std::size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= n)
      fuzz::finding("id " + std::to_string(ids[i]) + " at " + std::to_string(i) + " outside [0, " + std::to_string(n) +
                    ") from " + t.describe());
  if (t.encode(text, special) != ids) fuzz::finding("encoding the same text twice gave different ids");
  (void)t.decode(ids, skip);
  return 0;
}
