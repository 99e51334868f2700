// Gemma 3 (Gemma3ForCausalLM, model_type gemma3_text), as transformers 5.17's
// configuration_gemma3.py / modeling_gemma3.py: Gemma 2's body (embeddings × √d rounded to
// the weights' dtype, (1 + w) RMSNorm, sandwich norms, GeGLU with tanh GELU, scale
// query_pre_attn_scalar^-1/2, tied embeddings) plus (1 + w) RMSNorm on q and k over
// head_dim before RoPE, layer types (every 6th layer full, the rest sliding, unless
// layer_types says otherwise) and one RoPE table per layer type (local base 10 000,
// global 1e6, linear scaling on the global one in the larger configs).
//
// What HF does not do, and so neither do we: attention soft-capping (Gemma3Attention
// never passes attn_logit_softcapping to the attention function, so a value in the
// config has no effect). Final soft-capping only when final_logit_softcapping is set.
#include <cmath>

#include "family.hpp"

namespace sink::detail {

namespace {

// Gemma3TextConfig.convert_rope_params_to_dict: rope_parameters is keyed by layer type;
// the older keys fill what it leaves open (rope_scaling updates the full-attention entry,
// rope_theta is the global base, rope_local_base_freq the local one).
void read_gemma3_rope(const Cfg& c, ModelSpec& s) {
  // HF starts each entry as {"rope_type": "default"}: an old-style "type" key that rope_scaling
  // brings in does not override it there, nor here.
  json full = {{"rope_type", "default"}}, sliding = full;
  if (c.has("rope_parameters")) {
    const json& rp = c.j["rope_parameters"];
    if (!rp.is_object()) throw c.err("rope_parameters", "expected an object");
    // A flat object (no per-type entries) is ignored by HF, which then uses the defaults:
    // so is it here, for the same numbers.
    for (auto [key, dst] : {std::pair{"full_attention", &full}, std::pair{"sliding_attention", &sliding}}) {
      if (!rp.contains(key) || rp[key].is_null()) continue;
      if (!rp[key].is_object()) throw c.err(std::string("rope_parameters.") + key, "expected an object");
      *dst = rp[key];
    }
  }
  if (c.has("rope_scaling")) {
    const json& rs = c.j["rope_scaling"];
    if (!rs.is_object()) throw c.err("rope_scaling", "expected an object");
    full.update(rs);
  }
  if (!full.contains("rope_theta")) full["rope_theta"] = c.f("rope_theta", 1000000.0);
  if (!sliding.contains("rope_theta")) sliding["rope_theta"] = c.f("rope_local_base_freq", 10000.0);
  s.rope = read_rope_params(c, &full, "rope_parameters.full_attention", 1000000.0);
  s.rope_sliding = read_rope_params(c, &sliding, "rope_parameters.sliding_attention", 10000.0);
}

}  // namespace

void read_gemma3(const Cfg& c, ModelSpec& s) {
  read_common(c, s);
  s.family = Family::Gemma3;
  // Gemma3TextConfig's defaults where read_common's differ.
  if (!c.j.contains("head_dim")) s.head_dim = 256;
  if (!c.j.contains("max_position_embeddings")) s.max_positions = 131072;
  if (!c.j.contains("bos_token_id")) s.bos_id = 2;
  if (!c.j.contains("eos_token_id")) s.eos_id = 1;
  if (s.d_model % s.n_heads != 0)  // Gemma3TextConfig.validate_architecture
    throw c.err("num_attention_heads", "hidden_size " + std::to_string(s.d_model) + " is not a multiple of " +
                                           std::to_string(s.n_heads) + " heads");
  if (c.b("use_bidirectional_attention", false))
    throw c.err("use_bidirectional_attention", "bidirectional Gemma 3 (embedding models) is not supported");
  s.norm = NormKind::RMSPlusOne;
  s.act = Activation::GELUTanh;
  check_activation(c, "hidden_activation", "gelu_pytorch_tanh");
  s.norm_eps = c.f("rms_norm_eps", 1e-6);
  s.tied_embeddings = c.b("tie_word_embeddings", true);
  s.qkv_bias = s.o_bias = c.b("attention_bias", false);
  s.qk_norm = true;
  s.qk_norm_kind = NormKind::RMSPlusOne;
  s.post_norms = true;
  s.embed_scale = true;
  const double qpas = c.f("query_pre_attn_scalar", 256.0);
  if (!(qpas > 0)) throw c.err("query_pre_attn_scalar", "must be positive");
  s.attn_scale = std::pow(qpas, -0.5);
  s.attn_softcap = 0.0;  // see the top of this file
  if (c.has("final_logit_softcapping")) {
    s.final_softcap = c.f("final_logit_softcapping");
    if (!(s.final_softcap > 0)) throw c.err("final_logit_softcapping", "must be positive (or null for none)");
  }
  read_gemma3_rope(c, s);

  // sliding_window: 4096 when absent; null means none (then no layer may be sliding).
  const int w = !c.j.contains("sliding_window") ? 4096 : c.has("sliding_window") ? c.pos("sliding_window") : 0;
  if (c.has("layer_types")) {
    read_layer_types(c, s, w);
  } else {
    const int pattern = c.has("sliding_window_pattern") ? c.pos("sliding_window_pattern") : 6;
    for (int l = 0; l < s.n_layers; ++l) {
      if ((l + 1) % pattern == 0) continue;  // full attention
      if (w <= 0) throw c.err("sliding_window", "null, but the layer pattern has sliding layers");
      s.sliding_window[l] = w;
    }
  }
}

// Gemma 2's tensor table (sandwich norms, GeGLU, tied embeddings) plus the per-head q/k norms.
Weights take_gemma3(const ModelSpec& s, const Taker& take) {
  const std::int64_t dh = s.head_dim;
  Weights w = take_gemma2(s, take);
  for (int l = take.layer_begin; l < take.layer_end; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    w.layers[l].q_norm = take(p + "self_attn.q_norm.weight", {dh});
    w.layers[l].k_norm = take(p + "self_attn.k_norm.weight", {dh});
  }
  return w;
}

}  // namespace sink::detail
