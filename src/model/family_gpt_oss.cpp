// GPT-OSS: attention with biases and a learned sink logit per head, windows
// (128) alternating with full attention, YaRN RoPE, RMSNorm scaled in f32,
// and a top-k mixture of experts whose weights may ship as MXFP4.
#include <cmath>

#include "family.hpp"

namespace sink::detail {

void read_gpt_oss(const Cfg& c, ModelSpec& s) {
  read_common(c, s);
  s.family = Family::GPTOSS;
  s.norm = NormKind::RMSScaleF32;
  s.act = Activation::ClampedSwiGLU;
  s.norm_eps = c.f("rms_norm_eps", 1e-5);
  s.rope = read_rope(c, 150000.0);
  s.qkv_bias = s.o_bias = c.b("attention_bias", true);
  s.attn_sinks = true;
  s.n_experts = c.pos(c.has("num_local_experts") ? "num_local_experts" : "num_experts");
  s.top_k = c.pos("num_experts_per_tok");
  if (s.top_k > s.n_experts)
    throw c.err("num_experts_per_tok", std::to_string(s.top_k) + " exceeds num_local_experts " +
                                           std::to_string(s.n_experts));
  s.swiglu_limit = c.f("swiglu_limit", 7.0);
  const int w = c.has("sliding_window") ? c.pos("sliding_window") : 0;
  if (c.has("layer_types")) {
    read_layer_types(c, s, w);
  } else if (w > 0) {
    for (int l = 0; l < s.n_layers; l += 2) s.sliding_window[l] = w;  // sliding first, then full
  }
}

at::Tensor dequantize_mxfp4(const at::Tensor& blocks, const at::Tensor& scales) {
  static const float kFP4[16] = {+0.0f, +0.5f, +1.0f, +1.5f, +2.0f, +3.0f, +4.0f, +6.0f,
                                 -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
  auto b = blocks.contiguous();
  auto sc = scales.contiguous();
  const std::int64_t n_blocks = sc.numel();
  std::vector<std::int64_t> out_shape(b.sizes().begin(), b.sizes().end() - 2);
  out_shape.push_back(b.size(-2) * 32);
  auto out = at::empty(out_shape, at::TensorOptions().dtype(at::kFloat));
  const auto* bp = b.data_ptr<std::uint8_t>();
  const auto* sp = sc.data_ptr<std::uint8_t>();
  float* op = out.data_ptr<float>();
  for (std::int64_t g = 0; g < n_blocks; ++g) {
    const int e = static_cast<int>(sp[g]) - 127;
    for (int i = 0; i < 16; ++i) {
      const std::uint8_t byte = bp[g * 16 + i];
      op[g * 32 + 2 * i] = std::ldexp(kFP4[byte & 0x0F], e);
      op[g * 32 + 2 * i + 1] = std::ldexp(kFP4[byte >> 4], e);
    }
  }
  return out;
}

Weights take_gpt_oss(const ModelSpec& s, const Taker& take) {
  const std::int64_t d = s.d_model, H = s.n_heads, f = s.d_ff, E = s.n_experts;
  Weights w;
  take_llama_embeddings(s, take, w);
  for (int l = take.layer_begin; l < take.layer_end; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerWeights L;
    L.attn_norm = take(p + "input_layernorm.weight", {d});
    take_llama_attention(p, s, take, L);
    L.sinks = take(p + "self_attn.sinks", {H});
    L.ffn_norm = take(p + "post_attention_layernorm.weight", {d});
    L.router_w = take(p + "mlp.router.weight", {E, d});
    L.router_b = take(p + "mlp.router.bias", {E});
    const std::string ex = p + "mlp.experts.";
    if (take.src.has(ex + "gate_up_proj_blocks")) {
      // MXFP4: [E, rows, G, 16] blocks + [E, rows, G] scales → [E, rows, G·32] → transposed for x @ W.
      if (d % 32 || f % 32) throw InputError(take.src.where(ex + "gate_up_proj_blocks"), "MXFP4 needs sizes divisible by 32");
      auto gu = dequantize_mxfp4(take.raw(ex + "gate_up_proj_blocks", {E, 2 * f, d / 32, 16}),
                                 take.raw(ex + "gate_up_proj_scales", {E, 2 * f, d / 32}));
      L.experts_gate_up = take.convert(gu.transpose(1, 2), /*own=*/true);
      auto dn = dequantize_mxfp4(take.raw(ex + "down_proj_blocks", {E, d, f / 32, 16}),
                                 take.raw(ex + "down_proj_scales", {E, d, f / 32}));
      L.experts_down = take.convert(dn.transpose(1, 2), /*own=*/true);
    } else {
      L.experts_gate_up = take(ex + "gate_up_proj", {E, d, 2 * f});
      L.experts_down = take(ex + "down_proj", {E, f, d});
    }
    L.experts_gate_up_b = take(ex + "gate_up_proj_bias", {E, 2 * f});
    L.experts_down_b = take(ex + "down_proj_bias", {E, d});
    w.layers[l] = std::move(L);
  }
  return w;
}

}  // namespace sink::detail
