// Tokenizers that give exactly the ids of HF `tokenizers` (tokenizer.json),
// of HF's Llama conversion of a SentencePiece tokenizer.model, of llama2.c /
// llama.cpp for the SentencePiece vocabulary inside a GGUF file, and of HF
// transformers' conversion of a GGUF file's byte-level BPE (gpt2) vocabulary.
// Sink metrics are indexed by token position, so one differing id moves
// every number after it: see docs/tokenizers.md for what is matched and how.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sink {

class GGUFFile;

class Tokenizer {
 public:
  virtual ~Tokenizer();

  // Ids of `text` (UTF-8; invalid sequences are read as U+FFFD, as Python's
  // bytes.decode("utf-8", "replace") would, except for GGUF vocabularies,
  // which byte-fall-back the raw bytes as llama2.c does). Special-token
  // strings in the text are matched as HF matches them. add_special adds
  // what HF's add_special_tokens=True adds (the post-processor's BOS/EOS).
  virtual std::vector<std::int32_t> encode(std::string_view text, bool add_special = true) const = 0;
  // Text of `ids` as HF's decode(ids, skip_special_tokens) gives it; ids
  // outside the vocabulary are skipped, as HF does.
  virtual std::string decode(std::span<const std::int32_t> ids, bool skip_special = false) const = 0;
  // One past the largest id (model vocabulary and added tokens).
  virtual std::int32_t vocab_size() const = 0;

  virtual std::optional<std::int32_t> token_to_id(std::string_view token) const = 0;
  // The token's string as stored in the vocabulary ("" for an unknown id).
  virtual std::string id_to_token(std::int32_t id) const = 0;
  virtual bool is_special(std::int32_t id) const = 0;
  // What was loaded, e.g. "tokenizer.json: BPE, byte-level".
  virtual std::string describe() const = 0;

  std::optional<std::int32_t> bos_id() const { return bos_; }
  std::optional<std::int32_t> eos_id() const { return eos_; }
  // Whether encode(text, true) starts with the BOS token.
  bool adds_bos() const { return adds_bos_; }
  // Whether encode(text, true) ends with the EOS token.
  bool adds_eos() const { return adds_eos_; }

 protected:
  std::optional<std::int32_t> bos_, eos_;
  bool adds_bos_ = false, adds_eos_ = false;
};

// PATH is a snapshot directory (tokenizer.json, else tokenizer.model, with
// tokenizer_config.json when present), a tokenizer.json, a tokenizer.model or
// a .gguf. Throws sink::InputError naming the file and the problem.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

// The vocabulary of a GGUF file: llama (SentencePiece-style, as llama2.c) or
// gpt2 (byte-level BPE, as HF transformers converts the file).
std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GGUFFile& f);

}  // namespace sink
