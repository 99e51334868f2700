#include "sink/model/weight_source.hpp"

#include <ATen/ATen.h>

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "sink/io/gguf.hpp"
#include "sink/io/safetensors.hpp"
#include "sink/util/error.hpp"

namespace sink {
namespace {

at::ScalarType to_aten(DType d, const TensorView& t) {
  switch (d) {
    case DType::F32:
      return at::kFloat;
    case DType::F16:
      return at::kHalf;
    case DType::BF16:
      return at::kBFloat16;
    case DType::F64:
      return at::kDouble;
    case DType::U8:
      return at::kByte;  // MXFP4 blocks and scales
    case DType::I8:
      return at::kChar;
    case DType::I32:
      return at::kInt;
    case DType::I64:
      return at::kLong;
    default:
      throw InputError(t.file,
                       "tensor '" + t.name + "' has dtype " + std::string(dtype_name(d)) + " which sink cannot read");
  }
}

class SafetensorsSource : public WeightSource {
 public:
  explicit SafetensorsSource(const std::string& dir) : set_(dir) {}
  bool has(const std::string& n) const override { return set_.find(n) != nullptr; }
  at::Tensor get(const std::string& n) const override {
    const TensorView* t = set_.find(n);
    if (!t) throw InputError(set_.describe(), "missing tensor '" + n + "'");
    auto st = to_aten(t->dtype, *t);
    // Borrow the mapped bytes; the caller copies into the compute dtype/device.
    return at::from_blob(const_cast<std::uint8_t*>(t->data), t->shape, at::TensorOptions().dtype(st));
  }
  std::string where(const std::string& n) const override {
    const TensorView* t = set_.find(n);
    return t ? t->file : set_.describe();
  }
  std::vector<std::string> names() const override { return set_.names(); }

 private:
  SafetensorsSet set_;
};

// GGUF tensors → HF names. The block names differ by architecture where llama.cpp reuses a
// name: `ffn_norm` is Llama's post_attention_layernorm but Gemma 3's pre_feedforward_layernorm
// (llama.cpp's tensor_mapping.py).
std::string gguf_to_hf(const std::string& g, const std::string& arch) {
  static const std::map<std::string, std::string> top = {{"token_embd.weight", "model.embed_tokens.weight"},
                                                         {"output_norm.weight", "model.norm.weight"},
                                                         {"output.weight", "lm_head.weight"}};
  if (auto it = top.find(g); it != top.end()) return it->second;
  static const std::map<std::string, std::string> blk = {{"attn_norm.weight", "input_layernorm.weight"},
                                                         {"attn_q.weight", "self_attn.q_proj.weight"},
                                                         {"attn_k.weight", "self_attn.k_proj.weight"},
                                                         {"attn_v.weight", "self_attn.v_proj.weight"},
                                                         {"attn_output.weight", "self_attn.o_proj.weight"},
                                                         {"attn_q.bias", "self_attn.q_proj.bias"},
                                                         {"attn_k.bias", "self_attn.k_proj.bias"},
                                                         {"attn_v.bias", "self_attn.v_proj.bias"},
                                                         {"attn_q_norm.weight", "self_attn.q_norm.weight"},
                                                         {"attn_k_norm.weight", "self_attn.k_norm.weight"},
                                                         {"ffn_norm.weight", "post_attention_layernorm.weight"},
                                                         {"ffn_gate.weight", "mlp.gate_proj.weight"},
                                                         {"ffn_up.weight", "mlp.up_proj.weight"},
                                                         {"ffn_down.weight", "mlp.down_proj.weight"}};
  static const std::map<std::string, std::string> gemma3 = {
      {"ffn_norm.weight", "pre_feedforward_layernorm.weight"},
      {"post_attention_norm.weight", "post_attention_layernorm.weight"},
      {"post_ffw_norm.weight", "post_feedforward_layernorm.weight"}};
  if (g.rfind("blk.", 0) == 0) {
    auto dot = g.find('.', 4);
    if (dot != std::string::npos) {
      auto layer = g.substr(4, dot - 4);
      const auto rest = g.substr(dot + 1);
      if (arch == "gemma3")
        if (auto it = gemma3.find(rest); it != gemma3.end()) return "model.layers." + layer + "." + it->second;
      if (auto it = blk.find(rest); it != blk.end()) return "model.layers." + layer + "." + it->second;
    }
  }
  return "";  // not used by us (e.g. rope_freqs)
}

class GGUFSource : public WeightSource {
 public:
  GGUFSource(std::shared_ptr<GGUFFile> f, const std::string& arch, int n_heads, int n_kv_heads)
      : f_(std::move(f)), nh_(n_heads), nkv_(n_kv_heads), llama_rope_(arch == "llama"), norm_shift_(arch == "gemma3") {
    for (const auto& t : f_->tensors()) {
      auto hf = gguf_to_hf(t.name, arch);
      if (!hf.empty()) map_[hf] = &t;
    }
  }
  bool has(const std::string& n) const override { return map_.count(n) != 0; }
  at::Tensor get(const std::string& n) const override {
    auto it = map_.find(n);
    if (it == map_.end()) throw InputError(f_->path(), "missing tensor for '" + n + "'");
    const GGUFTensorInfo& t = *it->second;
    // The tensor owns the dequantised buffer: no second copy (a [262144, 640] embedding is 0.6 GiB).
    auto* data = new std::vector<float>(f_->to_float32(t));
    auto out = at::from_blob(
        data->data(), t.shape, [data](void*) { delete data; }, at::TensorOptions().dtype(at::kFloat));
    // Gemma: llama.cpp's converter stores every RMSNorm weight as 1 + w (its norm multiplies
    // by the weight); HF's norm takes w. Subtract 1 in float32 as transformers' GGUF loader
    // does (Gemma2TensorProcessor, also used for gemma3), so the numbers are its numbers.
    if (norm_shift_ && n.find("norm.weight") != std::string::npos) out = out - 1.0f;
    // llama.cpp stores Llama's Q and K rows in its interleaved-pair RoPE layout; undo that.
    // (Gemma's are stored as HF has them: llama.cpp runs Gemma with NeoX-style RoPE.)
    const bool is_q = n.find("q_proj.weight") != std::string::npos, is_k = n.find("k_proj.weight") != std::string::npos;
    if (llama_rope_ && (is_q || is_k) && out.dim() == 2) {
      const int heads = is_q ? nh_ : nkv_;
      const auto rows = out.size(0), cols = out.size(1);
      if (rows % (2 * heads) != 0)
        throw InputError(f_->path(), "tensor '" + t.name + "' rows not divisible by 2·heads");
      out = out.reshape({heads, rows / heads / 2, 2, cols}).transpose(1, 2).reshape({rows, cols}).contiguous();
    }
    return out;
  }
  std::string where(const std::string&) const override { return f_->path(); }
  bool borrows() const override { return false; }
  std::vector<std::string> names() const override {
    std::vector<std::string> v;
    for (const auto& [k, _] : map_) v.push_back(k);
    return v;
  }

 private:
  std::shared_ptr<GGUFFile> f_;
  int nh_, nkv_;
  bool llama_rope_, norm_shift_;
  std::map<std::string, const GGUFTensorInfo*> map_;
};

}  // namespace

std::unique_ptr<WeightSource> open_safetensors_source(const std::string& dir) {
  return std::make_unique<SafetensorsSource>(dir);
}

namespace {

// The sizes every supported architecture stores under the same keys.
nlohmann::json common_gguf_config(const GGUFFile& f, const std::string& arch, const std::string& path) {
  // Every number taken from the metadata is range-checked here, under its GGUF key: NaN
  // would become JSON null (read as "absent", so a default) in the config built below.
  auto pos_float = [&](const std::string& k, std::optional<double> def) {
    const double v = def && !f.has(k) ? *def : f.get_float(k);
    if (!std::isfinite(v) || !(v > 0))
      throw InputError(path, "key '" + k + "': must be a positive finite number, got " + std::to_string(v));
    return v;
  };
  auto pos_int = [&](const std::string& k, std::optional<std::int64_t> def) {
    const std::int64_t v = def && !f.has(k) ? *def : f.get_int(k);
    if (v < 1 || v > (std::int64_t(1) << 40))
      throw InputError(path, "key '" + k + "': must be a positive integer, got " + std::to_string(v));
    return v;
  };
  nlohmann::json c;
  c["num_hidden_layers"] = f.get_int(arch + ".block_count");
  c["hidden_size"] = f.get_int(arch + ".embedding_length");
  c["intermediate_size"] = f.get_int(arch + ".feed_forward_length");
  c["num_attention_heads"] = f.get_int(arch + ".attention.head_count");
  c["num_key_value_heads"] =
      f.get_int_or(arch + ".attention.head_count_kv", c["num_attention_heads"].get<std::int64_t>());
  c["rms_norm_eps"] = pos_float(arch + ".attention.layer_norm_rms_epsilon", std::nullopt);
  c["rope_theta"] = pos_float(arch + ".rope.freq_base", 10000.0);
  c["max_position_embeddings"] = pos_int(arch + ".context_length", 2048);
  if (f.has(arch + ".attention.key_length")) c["head_dim"] = pos_int(arch + ".attention.key_length", std::nullopt);
  std::int64_t vocab = f.get_int_or(arch + ".vocab_size", 0);
  if (vocab == 0 && f.has("tokenizer.ggml.tokens"))
    vocab = static_cast<std::int64_t>(f.get_string_array("tokenizer.ggml.tokens").size());
  if (vocab == 0) {
    if (auto* t = f.find("token_embd.weight"); t && t->shape.size() == 2) vocab = t->shape[0];
  }
  c["vocab_size"] = vocab;
  c["tie_word_embeddings"] = f.find("output.weight") == nullptr;
  if (f.has("tokenizer.ggml.bos_token_id")) c["bos_token_id"] = f.get_int("tokenizer.ggml.bos_token_id");
  if (f.has("tokenizer.ggml.eos_token_id")) c["eos_token_id"] = f.get_int("tokenizer.ggml.eos_token_id");
  return c;
}

// Gemma 3 as llama.cpp writes and reads it (convert_hf_to_gguf.py Gemma3Model, llama-model.cpp
// LLM_ARCH_GEMMA3): what the file does not store, llama.cpp fixes, and so do we: the local
// RoPE base 10 000 (unscaled), the pattern of 6 (every 6th layer global), and the attention
// scale 1/sqrt(head_dim), except for the 27B (62 layers), whose query_pre_attn_scalar is
// d_model / n_heads. No soft-capping. Linear RoPE scaling, where stored, is the global layers'.
void gemma3_gguf_config(const GGUFFile& f, const std::string& path, nlohmann::json& c) {
  c["model_type"] = "gemma3_text";
  c["architectures"] = {"Gemma3ForCausalLM"};
  c["hidden_activation"] = "gelu_pytorch_tanh";
  c["rope_local_base_freq"] = 10000.0;
  c["sliding_window_pattern"] = 6;
  if (!f.has("gemma3.attention.sliding_window"))
    throw InputError(path, "gemma3.attention.sliding_window missing (llama.cpp requires it)");
  c["sliding_window"] = f.get_int("gemma3.attention.sliding_window");
  if (!c.contains("head_dim")) throw InputError(path, "gemma3.attention.key_length missing");
  const auto n_layers = c["num_hidden_layers"].get<std::int64_t>();
  c["query_pre_attn_scalar"] = n_layers == 62
                                   ? c["hidden_size"].get<std::int64_t>() / c["num_attention_heads"].get<std::int64_t>()
                                   : c["head_dim"].get<std::int64_t>();
  if (f.has("gemma3.rope.scaling.type")) {
    const auto type = f.get_string("gemma3.rope.scaling.type");
    if (type == "linear") {
      c["rope_scaling"] = {{"rope_type", "linear"}, {"factor", f.get_float("gemma3.rope.scaling.factor")}};
    } else if (type != "none") {
      throw InputError(path, "GGUF rope scaling '" + type + "' is not supported for gemma3 (supported: none, linear)");
    }
  }
}

}  // namespace

GGUFModel open_gguf_model(const std::string& path) {
  auto f = std::make_shared<GGUFFile>(path);
  const std::string arch = f->get_string("general.architecture");
  if (arch != "llama" && arch != "gemma3")
    throw InputError(path, "GGUF architecture '" + arch + "' is not supported (supported: llama, gemma3)");
  // Build the equivalent HF config.json, so one config reader serves both formats.
  nlohmann::json c = common_gguf_config(*f, arch, path);
  if (arch == "llama") {
    c["model_type"] = "llama";
    c["architectures"] = {"LlamaForCausalLM"};
    if (f->has("llama.rope.scaling.type")) {
      auto type = f->get_string("llama.rope.scaling.type");
      if (type != "none") throw InputError(path, "GGUF rope scaling '" + type + "' is not supported");
    }
  } else {
    gemma3_gguf_config(*f, path, c);
  }
  GGUFModel m;
  m.spec = spec_from_hf_config_text(c.dump(), path);
  m.spec.adds_bos = true;  // llama SPM vocabularies add BOS unless told otherwise (Gemma's too)
  if (f->has("tokenizer.ggml.add_bos_token")) {
    const auto& v = f->metadata().at("tokenizer.ggml.add_bos_token").v;
    if (!std::holds_alternative<bool>(v)) throw InputError(path, "tokenizer.ggml.add_bos_token is not a bool");
    m.spec.adds_bos = std::get<bool>(v);
  }
  m.weights = std::make_unique<GGUFSource>(f, arch, m.spec.n_heads, m.spec.n_kv_heads);
  return m;
}

}  // namespace sink
