// The pieces of an HF `tokenizers` pipeline (added tokens, normalizer,
// pre-tokenizer, BPE model, post-processor, decoder) as plain data, so that
// tokenizer.json and tokenizer.model loaders build the same tokenizer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "sink/tok/bpe.hpp"
#include "sink/tok/regex.hpp"
#include "sink/tok/tokenizer.hpp"

namespace sink::tok {

struct AddedToken {
  std::string content;
  std::int32_t id = 0;
  bool special = false;
  bool normalized = false;  // matched in the normalized text rather than the raw text
  bool lstrip = false, rstrip = false, single_word = false;
};

struct NormStep {
  enum Kind { kNFC, kNFD, kPrepend, kReplace, kReplaceRegex, kCollapseSpaces } kind = kNFC;
  std::string a, b;  // Prepend: a; Replace: a -> b
  std::shared_ptr<const Regex> re;
  static NormStep make(Kind k, std::string a = "", std::string b = "") {
    NormStep s;
    s.kind = k;
    s.a = std::move(a);
    s.b = std::move(b);
    return s;
  }
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct PreStep {
  enum Kind { kSplit, kByteLevel, kMetaspace } kind = kSplit;
  // Split: a literal pattern or a regex.
  std::string literal;
  std::shared_ptr<const Regex> re;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  // ByteLevel
  bool add_prefix_space = false;
  bool use_regex = true;
  // Metaspace
  std::string replacement;
  enum Prepend { kAlways, kFirst, kNever } prepend = kAlways;
  bool split = true;
  static PreStep make(Kind k) {
    PreStep s;
    s.kind = k;
    return s;
  }
};

struct DecStep {
  enum Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip, kMetaspace } kind = kByteLevel;
  std::string a, b;  // Replace: a -> b; Metaspace: a = replacement
  char32_t content = U' ';
  int start = 0, stop = 0;
  PreStep::Prepend prepend = PreStep::kAlways;
  static DecStep make(Kind k, std::string a = "", std::string b = "") {
    DecStep s;
    s.kind = k;
    s.a = std::move(a);
    s.b = std::move(b);
    return s;
  }
};

struct Pipeline {
  std::string source;  // the file, for messages
  std::vector<AddedToken> added;
  std::vector<NormStep> normalizer;
  std::vector<PreStep> pre;
  std::unique_ptr<Bpe> model;
  std::vector<std::int32_t> prefix, suffix;  // what the post-processor adds to one sequence
  bool has_decoder = false;
  std::vector<DecStep> decoder;
  std::string describe;
  // BOS/EOS token names when tokenizer_config.json gives none.
  std::string bos_name, eos_name;
};

// The tokenizer for a pipeline; bos/eos names come from tokenizer_config.json
// when there is one (empty: take them from the post-processor).
std::unique_ptr<Tokenizer> make_hf_tokenizer(Pipeline p, const std::string& bos_token,
                                             const std::string& eos_token);

// Parses tokenizer.json text; throws InputError naming `path`.
Pipeline parse_tokenizer_json(const std::string& path, const std::string& text);
// Reads a SentencePiece tokenizer.model (BPE) into the pipeline HF's Llama
// conversion makes of it; throws InputError naming `path`.
Pipeline parse_sentencepiece_model(const std::string& path, const std::string& bytes);
// The byte-level BPE vocabulary of a GGUF file (tokenizer.ggml.model = gpt2) as
// the pipeline HF transformers' GGUF conversion builds for the file's
// architecture (src/tok/gguf_bpe.cpp); throws InputError naming the file.
std::unique_ptr<Tokenizer> make_gguf_bpe_tokenizer(const GGUFFile& f);

}  // namespace sink::tok
