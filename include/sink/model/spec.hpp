// The typed description of a model: one flat struct of hyper-parameters
// shared by every family (llama.cpp style), per-layer values as arrays.
// Built from an HF config.json or from GGUF metadata; no libtorch here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sink {

enum class Family { Llama, Mistral, Qwen2, Qwen3, Gemma2, Gemma3, Phi3, GPTNeoX, GPTOSS };
// RMS: normalise in f32, cast, then × w (Llama). RMSPlusOne: × (1 + w) in f32, then cast (Gemma).
// RMSScaleF32: × w in f32, then cast (GPT-OSS). LayerNorm: with bias (GPT-NeoX).
enum class NormKind { RMS, RMSPlusOne, RMSScaleF32, LayerNorm };
enum class Activation { SiLU, GELUTanh, GELU, ClampedSwiGLU };

const char* family_name(Family f);

struct RopeSpec {
  std::string type = "default";  // default | linear | llama3 | yarn
  double theta = 10000.0;
  double partial_rotary_factor = 1.0;
  int rotary_dim = 0;   // dims of each head that rotate: head_dim × partial_rotary_factor
  double factor = 1.0;  // linear, llama3, yarn
  double low_freq_factor = 1.0, high_freq_factor = 4.0;  // llama3
  std::int64_t original_max_positions = 0;               // llama3, yarn
  double beta_fast = 32.0, beta_slow = 1.0;              // yarn
  std::optional<double> attention_factor;                // yarn; default computed from mscale
  std::optional<double> mscale, mscale_all_dim;          // yarn
  bool truncate = true;                                  // yarn
};

struct ModelSpec {
  Family family = Family::Llama;
  std::string architecture;  // HF class name, e.g. LlamaForCausalLM
  std::string source;        // the file it was read from (for messages)

  int n_layers = 0, d_model = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, d_ff = 0, vocab = 0;
  std::int64_t max_positions = 0;
  double norm_eps = 1e-5;
  NormKind norm = NormKind::RMS;
  Activation act = Activation::SiLU;
  RopeSpec rope;
  // Gemma 3: the RoPE of sliding-window layers when it differs from `rope` (its local base,
  // 10 000, against the global 1e6); unset = `rope` in every layer. Same rotary_dim.
  std::optional<RopeSpec> rope_sliding;

  bool qkv_bias = false, o_bias = false, mlp_bias = false;
  bool qk_norm = false;                   // Qwen3, Gemma 3: RMSNorm over head_dim on q and k before RoPE
  NormKind qk_norm_kind = NormKind::RMS;  // Gemma 3: × (1 + w)
  bool tied_embeddings = false;
  bool post_norms = false;                         // Gemma 2 sandwich norms
  bool parallel_residual = false;                  // GPT-NeoX
  bool embed_scale = false;                        // Gemma: x * sqrt(d_model)
  bool attn_sinks = false;                         // GPT-OSS learned per-head sink logits
  double attn_scale = 0.0;                         // multiplies q·k; 1/sqrt(head_dim) unless the family says otherwise
  double attn_softcap = 0.0, final_softcap = 0.0;  // 0 = none
  std::vector<int> sliding_window;                 // per layer; 0 = full attention
  int n_experts = 0, top_k = 0;                    // MoE
  double swiglu_limit = 0.0;                       // GPT-OSS clamp

  // Tokenizer facts the run needs (from config / tokenizer_config / GGUF).
  std::optional<int> bos_id, eos_id;
  bool adds_bos = false;

  int n_rep() const { return n_heads / n_kv_heads; }
  bool is_sliding(int layer) const { return sliding_window.at(layer) > 0; }
};

// Reads an HF config.json into a spec; unknown architectures, missing keys,
// wrong types and inconsistent sizes are InputErrors naming the key and file.
ModelSpec spec_from_hf_config(const std::string& config_json_path);
// The same from already-parsed JSON text (GGUF metadata is turned into this form).
ModelSpec spec_from_hf_config_text(const std::string& json_text, const std::string& source);

}  // namespace sink
