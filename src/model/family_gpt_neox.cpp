// GPT-NeoX / Pythia: LayerNorm with bias, biases on every linear, exact GELU
// MLP (dense_h_to_4h → gelu → dense_4h_to_h), rotary on the first
// rotary_pct of each head, parallel residual, untied embed_out. The fused
// query_key_value is interleaved per head: [H, 3·dh, d] → q, k, v thirds.
#include "family.hpp"

namespace sink::detail {

void read_gpt_neox(const Cfg& c, ModelSpec& s) {
  read_common(c, s);
  s.family = Family::GPTNeoX;
  s.norm = NormKind::LayerNorm;
  s.act = Activation::GELU;
  check_activation(c, "hidden_act", "gelu");
  s.norm_eps = c.f("layer_norm_eps", 1e-5);
  s.rope = read_rope(c, c.f("rotary_emb_base", 10000.0));
  if (!c.has("rope_parameters") && !c.has("partial_rotary_factor")) {
    s.rope.partial_rotary_factor = c.f("rotary_pct", 0.25);
    if (!(s.rope.partial_rotary_factor > 0 && s.rope.partial_rotary_factor <= 1))
      throw c.err("rotary_pct", "must be in (0, 1]");
  }
  s.qkv_bias = s.o_bias = s.mlp_bias = c.b("attention_bias", true);
  s.parallel_residual = c.b("use_parallel_residual", true);
  if (c.has("num_key_value_heads") && s.n_kv_heads != s.n_heads)
    throw c.err("num_key_value_heads", "GPT-NeoX has no grouped-query attention");
  if (s.d_model % s.n_heads != 0) throw c.err("num_attention_heads", "does not divide hidden_size");
  s.head_dim = s.d_model / s.n_heads;
}

Weights take_gpt_neox(const ModelSpec& s, const Taker& take) {
  const std::int64_t d = s.d_model, H = s.n_heads, dh = s.head_dim, f = s.d_ff;
  Weights w;
  take_ends(s, take, w, "gpt_neox.embed_in.weight", "gpt_neox.final_layer_norm.weight",
            "gpt_neox.final_layer_norm.bias", "embed_out.weight");
  const bool bias = s.qkv_bias;
  for (int l = take.layer_begin; l < take.layer_end; ++l) {
    const std::string p = "gpt_neox.layers." + std::to_string(l) + ".";
    LayerWeights L;
    L.attn_norm = take(p + "input_layernorm.weight", {d});
    L.attn_norm_b = take(p + "input_layernorm.bias", {d});
    auto qkv = take(p + "attention.query_key_value.weight", {3 * d, d}).view({H, 3 * dh, d});
    L.wq = qkv.narrow(1, 0, dh).reshape({H * dh, d}).contiguous();
    L.wk = qkv.narrow(1, dh, dh).reshape({H * dh, d}).contiguous();
    L.wv = qkv.narrow(1, 2 * dh, dh).reshape({H * dh, d}).contiguous();
    if (bias) {
      auto b = take(p + "attention.query_key_value.bias", {3 * d}).view({H, 3 * dh});
      L.bq = b.narrow(1, 0, dh).reshape({H * dh}).contiguous();
      L.bk = b.narrow(1, dh, dh).reshape({H * dh}).contiguous();
      L.bv = b.narrow(1, 2 * dh, dh).reshape({H * dh}).contiguous();
      L.bo = take(p + "attention.dense.bias", {d});
      L.b_up = take(p + "mlp.dense_h_to_4h.bias", {f});
      L.b_down = take(p + "mlp.dense_4h_to_h.bias", {d});
    }
    L.wo = take(p + "attention.dense.weight", {d, d});
    L.ffn_norm = take(p + "post_attention_layernorm.weight", {d});
    L.ffn_norm_b = take(p + "post_attention_layernorm.bias", {d});
    L.w_up = take(p + "mlp.dense_h_to_4h.weight", {f, d});
    L.w_down = take(p + "mlp.dense_4h_to_h.weight", {d, f});
    w.layers[l] = std::move(L);
  }
  return w;
}

}  // namespace sink::detail
