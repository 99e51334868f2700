// Phi-3 / Phi-4 (Phi3ForCausalLM): Llama-shaped, but q/k/v fused in qkv_proj
// as blocks [Q | K | V] and gate/up fused in gate_up_proj as [gate | up];
// both are split at load time. Optional partial rotary; windows when set.
#include "family.hpp"

namespace sink::detail {

void read_phi3(const Cfg& c, ModelSpec& s) {
  read_common(c, s);
  s.family = Family::Phi3;
  s.norm = NormKind::RMS;
  s.act = Activation::SiLU;
  check_activation(c, "hidden_act", "silu");
  s.norm_eps = c.f("rms_norm_eps", 1e-5);
  s.rope = read_rope(c, 10000.0);
  if (c.has("sliding_window")) s.sliding_window.assign(s.n_layers, c.pos("sliding_window"));
}

Weights take_phi3(const ModelSpec& s, const Taker& take) {
  const std::int64_t d = s.d_model, H = s.n_heads, Hkv = s.n_kv_heads, dh = s.head_dim, f = s.d_ff;
  Weights w;
  take_llama_embeddings(s, take, w);
  for (int l = take.layer_begin; l < take.layer_end; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerWeights L;
    L.attn_norm = take(p + "input_layernorm.weight", {d});
    auto qkv = take(p + "self_attn.qkv_proj.weight", {(H + 2 * Hkv) * dh, d});
    L.wq = qkv.narrow(0, 0, H * dh).contiguous();
    L.wk = qkv.narrow(0, H * dh, Hkv * dh).contiguous();
    L.wv = qkv.narrow(0, (H + Hkv) * dh, Hkv * dh).contiguous();
    L.wo = take(p + "self_attn.o_proj.weight", {d, H * dh});
    L.ffn_norm = take(p + "post_attention_layernorm.weight", {d});
    auto gate_up = take(p + "mlp.gate_up_proj.weight", {2 * f, d});
    L.w_gate = gate_up.narrow(0, 0, f).contiguous();
    L.w_up = gate_up.narrow(0, f, f).contiguous();
    L.w_down = take(p + "mlp.down_proj.weight", {d, f});
    w.layers[l] = std::move(L);
  }
  return w;
}

}  // namespace sink::detail
