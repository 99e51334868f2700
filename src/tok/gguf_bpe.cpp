// The byte-level BPE vocabulary of a GGUF file (tokenizer.ggml.model = gpt2:
// tokens, merges, token_type), as the pipeline that HF transformers builds
// when it loads the file (AutoTokenizer.from_pretrained(dir, gguf_file=...),
// integrations/ggml.py). HF picks the conversion by general.architecture, not
// by tokenizer.ggml.pre:
//
//   llama                  GGUFLlamaConverter, "llama-3" branch: ByteLevel
//                          (GPT-2 regex), BPE with unk/fuse_unk/byte_fallback,
//                          control tokens (type 3) + unk + BOS as special added
//                          tokens, no BOS/EOS added, decoder ByteFallback, Fuse,
//                          Replace("▁", " "), ByteLevel[, Strip(1) when
//                          add_space_prefix, default true]
//   qwen2, qwen2moe,       GGUFQwen2Converter + Qwen2Tokenizer: NFC, Qwen2's split
//   qwen3, qwen3moe        regex + ByteLevel without regex; added tokens
//                          <|endoftext|>, <|im_start|>, <|im_end|> only
//   gpt2, starcoder2       GGUFGPTConverter + GPT2Tokenizer: ByteLevel (GPT-2 regex,
//                          add_prefix_space = add_space_prefix, default false);
//                          added token <|endoftext|> only
//
// tokenizer.ggml.pre and tokenizer.ggml.add_bos_token are not read by HF, so
// not here either. Other architectures (HF builds no tokenizer for them, e.g.
// deci, mistral, gpt-oss; or one whose special tokens are class defaults not in
// the file, e.g. stablelm's "<s>") are an InputError. The pipeline is then run by the same
// code as a tokenizer.json (hf_tokenizer.cpp).
#include <algorithm>
#include <unordered_set>

#include "sink/io/gguf.hpp"
#include "sink/tok/hf_pipeline.hpp"
#include "sink/util/error.hpp"

namespace sink::tok {

namespace {

enum class Family { kLlama, kQwen2, kGpt2 };
enum TokenType { kControl = 3 };

constexpr const char* kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kSupported = "llama, qwen2, qwen2moe, qwen3, qwen3moe, gpt2, starcoder2";

bool meta_bool(const GGUFFile& f, const std::string& key, bool def) {
  auto it = f.metadata().find(key);
  if (it == f.metadata().end()) return def;
  if (const bool* b = std::get_if<bool>(&it->second.v)) return *b;
  if (const auto* u = std::get_if<std::uint64_t>(&it->second.v)) return *u != 0;
  if (const auto* i = std::get_if<std::int64_t>(&it->second.v)) return *i != 0;
  throw InputError(f.path(), "metadata key '" + key + "' is not a boolean");
}

std::string meta_string(const GGUFFile& f, const std::string& key) {
  if (!f.has(key)) return "";
  const auto& v = f.metadata().at(key).v;
  return std::holds_alternative<std::string>(v) ? std::get<std::string>(v) : std::string();
}

// The model_type HF derives from general.architecture (load_gguf_checkpoint).
std::string hf_model_type(const std::string& arch, const std::string& name) {
  if (arch.find("llama") != std::string::npos && name == "mistral") return "mistral";
  if (arch.find("qwen2moe") != std::string::npos) return "qwen2_moe";
  if (arch.find("qwen3moe") != std::string::npos) return "qwen3_moe";
  return arch;
}

}  // namespace

std::unique_ptr<Tokenizer> make_gguf_bpe_tokenizer(const GGUFFile& f) {
  const std::string& path = f.path();
  const std::string arch = meta_string(f, "general.architecture");
  const std::string pre = meta_string(f, "tokenizer.ggml.pre");
  const std::string model_type = hf_model_type(arch, meta_string(f, "general.name"));
  Family fam;
  if (model_type == "llama") fam = Family::kLlama;
  else if (model_type == "qwen2" || model_type == "qwen2_moe" || model_type == "qwen3" || model_type == "qwen3_moe")
    fam = Family::kQwen2;
  else if (model_type == "gpt2" || model_type == "starcoder2") fam = Family::kGpt2;
  else
    throw InputError(path, "the gpt2 (byte-level BPE) vocabulary of architecture '" + arch +
                               "' (tokenizer.ggml.pre '" + pre +
                               "') is not supported: HF transformers, the reference, picks its conversion by "
                               "architecture, and sink reproduces it for " + kSupported);

  std::vector<std::string> tokens = f.get_string_array("tokenizer.ggml.tokens");
  const std::size_t n = tokens.size();
  if (n == 0) throw InputError(path, "tokenizer.ggml.tokens is empty");
  if (!f.has("tokenizer.ggml.merges")) throw InputError(path, "tokenizer.ggml.merges is missing (gpt2 vocabulary)");
  std::vector<std::string> merges = f.get_string_array("tokenizer.ggml.merges");
  std::vector<std::int64_t> types;
  if (f.has("tokenizer.ggml.token_type")) {
    types = f.get_int_array("tokenizer.ggml.token_type");
    if (types.size() != n)
      throw InputError(path, "tokenizer.ggml.token_type has " + std::to_string(types.size()) + " entries for " +
                                 std::to_string(n) + " tokens");
  }
  auto id_key = [&](const char* key) -> std::optional<std::int32_t> {
    if (!f.has(key)) return std::nullopt;
    std::int64_t v = f.get_int(key);
    if (v < 0 || v >= static_cast<std::int64_t>(n))
      throw InputError(path, std::string("metadata key '") + key + "' = " + std::to_string(v) +
                                 " is not a token id (vocabulary of " + std::to_string(n) + ")");
    return static_cast<std::int32_t>(v);
  };
  const auto bos = id_key("tokenizer.ggml.bos_token_id");
  const auto eos = id_key("tokenizer.ggml.eos_token_id");
  const auto unk = id_key("tokenizer.ggml.unknown_token_id");

  Pipeline p;
  p.source = path;
  BpeConfig cfg;
  cfg.byte_level = true;
  cfg.vocab.reserve(n);
  for (std::size_t i = 0; i < n; ++i) cfg.vocab[tokens[i]] = static_cast<std::int32_t>(i);  // a later duplicate wins
  cfg.merges.reserve(merges.size());
  for (std::size_t r = 0; r < merges.size(); ++r) {
    const std::string& s = merges[r];
    std::size_t sp = s.find(' ');
    if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
      throw InputError(path, "tokenizer.ggml.merges[" + std::to_string(r) + "] is not two tokens: '" + s + "'");
    cfg.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
  }
  if (fam == Family::kLlama) {
    if (unk) cfg.unk_token = tokens[*unk];
    cfg.fuse_unk = true;
    cfg.byte_fallback = true;
  }
  // Added tokens get their vocabulary id, or the next free id as tokenizers'
  // AddedVocabulary gives it.
  const auto model_size = static_cast<std::int32_t>(cfg.vocab.size());
  std::unordered_set<std::string> seen;
  auto add_special = [&](const std::string& content) {
    if (content.empty() || !seen.insert(content).second) return;
    AddedToken t;
    t.content = content;
    t.special = true;
    t.normalized = false;
    if (auto it = cfg.vocab.find(content); it != cfg.vocab.end()) {
      t.id = it->second;
    } else {
      std::int32_t max = -1;
      for (const auto& a : p.added) max = std::max(max, a.id);
      t.id = max < 0 ? model_size : (max >= model_size || model_size == 0 ? max + 1 : model_size);
    }
    p.added.push_back(std::move(t));
  };
  const char* conversion = "";
  switch (fam) {
    case Family::kLlama: {
      conversion = "GGUFLlamaConverter";
      for (std::size_t i = 0; i < types.size(); ++i)
        if (types[i] == kControl) add_special(tokens[i]);
      // TokenizersBackend adds the named special tokens: unk, and BOS (the
      // converter names BOS for both bos_token and eos_token).
      if (bos) add_special(tokens[*bos]);
      if (unk) add_special(tokens[*unk]);
      PreStep bl = PreStep::make(PreStep::kByteLevel);
      bl.add_prefix_space = false;
      bl.use_regex = true;
      p.pre.push_back(std::move(bl));
      p.has_decoder = true;
      p.decoder.push_back(DecStep::make(DecStep::kByteFallback));
      p.decoder.push_back(DecStep::make(DecStep::kFuse));
      p.decoder.push_back(DecStep::make(DecStep::kReplace, "\xE2\x96\x81", " "));
      p.decoder.push_back(DecStep::make(DecStep::kByteLevel));
      if (meta_bool(f, "tokenizer.ggml.add_space_prefix", true)) {
        DecStep st = DecStep::make(DecStep::kStrip);
        st.content = U' ';
        st.start = 1;
        p.decoder.push_back(std::move(st));
      }
      break;
    }
    case Family::kQwen2: {
      conversion = "GGUFQwen2Converter";
      for (const char* t : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) add_special(t);
      p.normalizer.push_back(NormStep::make(NormStep::kNFC));
      PreStep split = PreStep::make(PreStep::kSplit);
      split.re = std::make_shared<const Regex>(kQwen2Pattern);
      split.behavior = SplitBehavior::kIsolated;
      p.pre.push_back(std::move(split));
      PreStep bl = PreStep::make(PreStep::kByteLevel);
      bl.add_prefix_space = meta_bool(f, "tokenizer.ggml.add_space_prefix", false);
      bl.use_regex = false;
      p.pre.push_back(std::move(bl));
      p.has_decoder = true;
      p.decoder.push_back(DecStep::make(DecStep::kByteLevel));
      break;
    }
    case Family::kGpt2: {
      conversion = "GGUFGPTConverter";
      add_special("<|endoftext|>");
      PreStep bl = PreStep::make(PreStep::kByteLevel);
      bl.add_prefix_space = meta_bool(f, "tokenizer.ggml.add_space_prefix", false);
      bl.use_regex = true;
      p.pre.push_back(std::move(bl));
      p.has_decoder = true;
      p.decoder.push_back(DecStep::make(DecStep::kByteLevel));
      break;
    }
  }
  try {
    p.model = std::make_unique<Bpe>(std::move(cfg));
  } catch (const std::invalid_argument& e) {
    throw InputError(path, std::string("tokenizer.ggml.merges: ") + e.what());
  }
  // No post-processor adds anything: HF ignores tokenizer.ggml.add_bos_token.
  p.describe = "GGUF gpt2 vocabulary, architecture '" + arch + "' (pre '" + pre + "'), as HF's " + conversion +
               ": BPE, byte-level, " + std::to_string(n) + " tokens, " + std::to_string(merges.size()) +
               " merges, " + std::to_string(p.added.size()) + " special tokens";
  // bos_id / eos_id are the file's ids (HF's bos_token / eos_token names differ; see docs).
  return make_hf_tokenizer(std::move(p), bos ? tokens[*bos] : "", eos ? tokens[*eos] : "");
}

}  // namespace sink::tok
