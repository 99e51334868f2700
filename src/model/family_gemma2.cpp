// Gemma 2: embeddings × √d (rounded to the activation dtype), (1 + w) RMSNorm,
// sandwich norms around attention and MLP, attention logits soft-capped at 50,
// final logits at 30, GeGLU (tanh GELU), sliding windows on alternate layers,
// scaling = query_pre_attn_scalar^-1/2, tied embeddings.
#include <cmath>

#include "family.hpp"

namespace sink::detail {

void read_gemma2(const Cfg& c, ModelSpec& s) {
  read_common(c, s);
  s.family = Family::Gemma2;
  s.norm = NormKind::RMSPlusOne;
  s.act = Activation::GELUTanh;
  check_activation(c, "hidden_activation", "gelu_pytorch_tanh");
  s.norm_eps = c.f("rms_norm_eps", 1e-6);
  s.rope = read_rope(c, 10000.0);
  s.tied_embeddings = c.b("tie_word_embeddings", true);
  s.qkv_bias = s.o_bias = c.b("attention_bias", false);
  s.post_norms = true;
  s.embed_scale = true;
  const double qpas = c.f("query_pre_attn_scalar", 256.0);
  if (!(qpas > 0)) throw c.err("query_pre_attn_scalar", "must be positive");
  s.attn_scale = std::pow(qpas, -0.5);
  s.attn_softcap = c.f("attn_logit_softcapping", 0.0);
  s.final_softcap = c.f("final_logit_softcapping", 0.0);
  if (s.attn_softcap < 0 || s.final_softcap < 0) throw c.err("attn_logit_softcapping", "must not be negative");
  const int w = c.has("sliding_window") ? c.pos("sliding_window") : 0;
  if (c.has("layer_types")) {
    read_layer_types(c, s, w);
  } else if (w > 0) {
    for (int l = 0; l < s.n_layers; l += 2) s.sliding_window[l] = w;  // sliding on even layers
  }
}

Weights take_gemma2(const ModelSpec& s, const Taker& take) {
  const std::int64_t d = s.d_model, f = s.d_ff;
  Weights w;
  take_llama_embeddings(s, take, w);
  for (int l = take.layer_begin; l < take.layer_end; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerWeights L;
    L.attn_norm = take(p + "input_layernorm.weight", {d});
    take_llama_attention(p, s, take, L);
    L.post_attn_norm = take(p + "post_attention_layernorm.weight", {d});
    L.ffn_norm = take(p + "pre_feedforward_layernorm.weight", {d});
    L.post_ffn_norm = take(p + "post_feedforward_layernorm.weight", {d});
    L.w_gate = take(p + "mlp.gate_proj.weight", {f, d});
    L.w_up = take(p + "mlp.up_proj.weight", {f, d});
    L.w_down = take(p + "mlp.down_proj.weight", {d, f});
    w.layers[l] = std::move(L);
  }
  return w;
}

}  // namespace sink::detail
