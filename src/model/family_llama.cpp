// Llama 2/3, Mistral, Qwen2/2.5, Qwen3: HF's LlamaForCausalLM naming, RMSNorm,
// SwiGLU. They differ in biases (Qwen2: q/k/v), q/k norms (Qwen3), windows
// (Mistral; Qwen when use_sliding_window) and RoPE scaling (Llama 3).
#include "family.hpp"

namespace sink::detail {

void read_llama_like(const Cfg& c, ModelSpec& s, const std::string& model_type) {
  read_common(c, s);
  s.norm = NormKind::RMS;
  s.act = Activation::SiLU;
  check_activation(c, "hidden_act", "silu");
  s.norm_eps = c.f("rms_norm_eps", 1e-6);
  s.rope = read_rope(c, 10000.0);
  auto qwen_windows = [&] {
    const bool use_sw = c.b("use_sliding_window", false);
    const int w = (use_sw && c.has("sliding_window")) ? c.pos("sliding_window") : 0;
    if (c.has("layer_types")) {
      read_layer_types(c, s, w);
    } else if (w > 0) {
      const std::int64_t first = c.i("max_window_layers", 28);
      if (first < 0) throw c.err("max_window_layers", "must not be negative, got " + std::to_string(first));
      for (std::int64_t l = first; l < s.n_layers; ++l) s.sliding_window[l] = w;
    }
  };
  if (model_type == "llama") {
    s.family = Family::Llama;
    s.qkv_bias = s.o_bias = c.b("attention_bias", false);
    s.mlp_bias = c.b("mlp_bias", false);
  } else if (model_type == "mistral") {
    s.family = Family::Mistral;
    if (c.has("sliding_window")) s.sliding_window.assign(s.n_layers, c.pos("sliding_window"));
  } else if (model_type == "qwen2") {
    s.family = Family::Qwen2;
    s.qkv_bias = true;  // Qwen2Attention: bias on q, k, v only
    qwen_windows();
  } else if (model_type == "qwen3") {
    s.family = Family::Qwen3;
    s.qkv_bias = s.o_bias = c.b("attention_bias", false);
    s.qk_norm = true;
    qwen_windows();
  }
}

void take_ends(const ModelSpec& s, const Taker& take, Weights& w, const std::string& embd, const std::string& norm,
               const std::string& norm_b, const std::string& head) {
  const std::int64_t d = s.d_model;
  w.layers.resize(s.n_layers);  // a stage fills its own range only
  if (take.embedding) w.tok_embd = take(embd, {s.vocab, d});
  if (!take.head) return;
  w.output_norm = take(norm, {d});
  if (!norm_b.empty()) w.output_norm_b = take(norm_b, {d});
  // Tied: one tensor on a single stage; the last stage of several reads the embedding as its head.
  if (s.tied_embeddings)
    w.output = w.tok_embd.defined() ? w.tok_embd : take(embd, {s.vocab, d});
  else
    w.output = take(head, {s.vocab, d});
}

void take_llama_embeddings(const ModelSpec& s, const Taker& take, Weights& w) {
  take_ends(s, take, w, "model.embed_tokens.weight", "model.norm.weight", "", "lm_head.weight");
}

void take_llama_attention(const std::string& p, const ModelSpec& s, const Taker& take, LayerWeights& L) {
  const std::int64_t d = s.d_model, H = s.n_heads, Hkv = s.n_kv_heads, dh = s.head_dim;
  L.wq = take(p + "self_attn.q_proj.weight", {H * dh, d});
  L.wk = take(p + "self_attn.k_proj.weight", {Hkv * dh, d});
  L.wv = take(p + "self_attn.v_proj.weight", {Hkv * dh, d});
  L.wo = take(p + "self_attn.o_proj.weight", {d, H * dh});
  if (s.qkv_bias) {
    L.bq = take(p + "self_attn.q_proj.bias", {H * dh});
    L.bk = take(p + "self_attn.k_proj.bias", {Hkv * dh});
    L.bv = take(p + "self_attn.v_proj.bias", {Hkv * dh});
  }
  if (s.o_bias) L.bo = take(p + "self_attn.o_proj.bias", {d});
}

Weights take_llama_like(const ModelSpec& s, const Taker& take) {
  const std::int64_t d = s.d_model, dh = s.head_dim, f = s.d_ff;
  Weights w;
  take_llama_embeddings(s, take, w);
  for (int l = take.layer_begin; l < take.layer_end; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerWeights L;
    L.attn_norm = take(p + "input_layernorm.weight", {d});
    take_llama_attention(p, s, take, L);
    if (s.qk_norm) {
      L.q_norm = take(p + "self_attn.q_norm.weight", {dh});
      L.k_norm = take(p + "self_attn.k_norm.weight", {dh});
    }
    L.ffn_norm = take(p + "post_attention_layernorm.weight", {d});
    L.w_gate = take(p + "mlp.gate_proj.weight", {f, d});
    L.w_up = take(p + "mlp.up_proj.weight", {f, d});
    L.w_down = take(p + "mlp.down_proj.weight", {d, f});
    if (s.mlp_bias) {
      L.b_gate = take(p + "mlp.gate_proj.bias", {f});
      L.b_up = take(p + "mlp.up_proj.bias", {f});
      L.b_down = take(p + "mlp.down_proj.bias", {d});
    }
    w.layers[l] = std::move(L);
  }
  return w;
}

}  // namespace sink::detail
