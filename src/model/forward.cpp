// The one shared forward pass, top to bottom in the paper's order. Families
// differ only through ModelSpec flags and which weights exist. Numerics follow
// HF transformers' eager code: norms and softmax in float32, cast back to the
// compute dtype at the same points.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <cmath>
#include <limits>
#include <map>
#include <optional>

#include "sink/model/model.hpp"
#include "sink/util/error.hpp"

namespace sink {

std::string hook_name(Hook h, int l) {
  const std::string b = "blocks." + std::to_string(l) + ".";
  switch (h) {
    case Hook::ResidPre:
      return b + "hook_resid_pre";
    case Hook::Q:
      return b + "attn.hook_q";
    case Hook::K:
      return b + "attn.hook_k";
    case Hook::V:
      return b + "attn.hook_v";
    case Hook::Pattern:
      return b + "attn.hook_pattern";
    case Hook::Z:
      return b + "attn.hook_z";
    case Hook::AttnOut:
      return b + "hook_attn_out";
    case Hook::ResidMid:
      return b + "hook_resid_mid";
    case Hook::MlpOut:
      return b + "hook_mlp_out";
    case Hook::ResidPost:
      return b + "hook_resid_post";
    case Hook::FinalNorm:
      return "ln_final.hook_normalized";
    case Hook::Logits:
      return "hook_logits";
    case Hook::SinkWeight:
      return b + "attn.hook_sink_weight";
    case Hook::AttnStats:
      return b + "attn.hook_stats";
    case Hook::kCount:
      break;
  }
  return "?";
}

namespace {

at::ScalarType parse_dtype(const std::string& s) {
  if (s == "float32") return at::kFloat;
  if (s == "bfloat16") return at::kBFloat16;
  if (s == "float16") return at::kHalf;
  throw InputError("dtype", "unknown dtype '" + s + "' (float32, bfloat16 or float16)");
}

// RMSNorm as HF: normalise in float32, then (Llama) cast and scale, (Gemma)
// scale by 1 + w in float32 and cast, or (GPT-OSS) scale in float32 and cast.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps, NormKind kind) {
  auto xf = x.to(at::kFloat);
  xf = xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  switch (kind) {
    case NormKind::RMSPlusOne:
      return (xf * (1.0 + w.to(at::kFloat))).to(x.scalar_type());
    case NormKind::RMSScaleF32:
      return (w * xf).to(x.scalar_type());
    default:
      return w * xf.to(x.scalar_type());
  }
}

at::Tensor norm(const ModelSpec& s, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  if (s.norm == NormKind::LayerNorm) return at::layer_norm(x, {x.size(-1)}, w, b, s.norm_eps);
  return rms_norm(x, w, s.norm_eps, s.norm);
}

// GPT-OSS mixture of experts, in HF's order: top-k of the router logits,
// softmax over the k, experts visited in increasing index, outputs summed per
// token with index_add (so float32 sums associate as HF's do).
at::Tensor moe(const ModelSpec& s, const LayerWeights& L, const at::Tensor& h) {
  auto logits = at::linear(h, L.router_w, L.router_b);  // [T, E]
  auto [top_v, top_i] = at::topk(logits, s.top_k, -1);
  auto scores = at::softmax(top_v, 1);
  auto out = at::zeros_like(h);
  auto mask = at::one_hot(top_i, s.n_experts).permute({2, 1, 0});  // [E, k, T]
  auto hit = at::greater(mask.sum({-1, -2}), 0).nonzero().to(at::kCPU);
  const double alpha = 1.702, limit = s.swiglu_limit;
  for (std::int64_t n = 0; n < hit.size(0); ++n) {
    const std::int64_t e = hit[n][0].item<std::int64_t>();
    auto where = at::where(mask[e]);  // (top_k_pos, token_idx)
    const auto& k_pos = where[0];
    const auto& tok = where[1];
    auto cur = h.index_select(0, tok);
    auto gu = at::matmul(cur, L.experts_gate_up[e]) + L.experts_gate_up_b[e];
    auto gate = gu.slice(-1, 0, gu.size(-1), 2).clamp_max(limit);
    auto up = gu.slice(-1, 1, gu.size(-1), 2).clamp(-limit, limit);
    auto glu = gate * at::sigmoid(gate * alpha);
    auto y = at::matmul((up + 1) * glu, L.experts_down[e]) + L.experts_down_b[e];
    auto wts = scores.index({tok, k_pos}).unsqueeze(-1);
    out.index_add_(0, tok, (y * wts).to(h.scalar_type()));
  }
  return out;
}

// Fused attention that also returns each row's natural-log sum of exp(scores), q/k/v as
// (1, H, T, dh). CPU: the flash kernel, with or without an additive mask. CUDA: the flash
// kernel for bfloat16/float16, the memory-efficient one for float32; no extra mask there
// (fused_lse_ok), since the kernels' bias needs alignment the public entry point pads for.
std::pair<at::Tensor, at::Tensor> attention_lse(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                bool causal, const std::optional<at::Tensor>& mask, double scale) {
  if (q.is_cpu()) {
    auto r = at::_scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal, mask, scale);
    return {std::get<0>(r), std::get<1>(r)};
  }
  if (mask) throw std::logic_error("attention_lse: no additive mask on this device");
  const auto T = q.size(2);
  if (q.scalar_type() == at::kBFloat16 || q.scalar_type() == at::kHalf) {
    auto r = at::_scaled_dot_product_flash_attention(q, k, v, 0.0, causal, false, scale);
    return {std::get<0>(r), std::get<1>(r).narrow(-1, 0, T)};
  }
  auto r = at::_scaled_dot_product_efficient_attention(q, k, v, std::nullopt, true, 0.0, causal, scale);
  return {std::get<0>(r), std::get<1>(r).narrow(-1, 0, T)};  // its log-sum-exp may be padded past T
}

// Whether attention_lse runs here: anywhere on the CPU; on CUDA without a window mask.
bool fused_lse_ok(const at::Device& dev, int W) { return dev.is_cpu() || (dev.is_cuda() && W == 0); }

at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  return b.defined() ? at::linear(x, w, b) : at::linear(x, w);
}

// HF rotate_half layout: the first and second halves of the rotary dims pair up.
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, int rotary_dim) {
  // x [T, heads, dh]; cos, sin [T, rotary_dim] in x's dtype
  const auto dh = x.size(-1);
  auto xr = rotary_dim == dh ? x : x.narrow(-1, 0, rotary_dim);
  const auto half = rotary_dim / 2;
  auto rot = at::cat({-xr.narrow(-1, half, half), xr.narrow(-1, 0, half)}, -1);
  auto c = cos.unsqueeze(1), sn = sin.unsqueeze(1);
  auto out = xr * c + rot * sn;
  if (rotary_dim == dh) return out;
  return at::cat({out, x.narrow(-1, rotary_dim, dh - rotary_dim)}, -1);
}

at::Tensor mlp(const ModelSpec& s, const LayerWeights& L, const at::Tensor& h) {
  switch (s.act) {
    case Activation::SiLU:
      return linear(at::silu(linear(h, L.w_gate, L.b_gate)) * linear(h, L.w_up, L.b_up), L.w_down, L.b_down);
    case Activation::GELUTanh:
      return linear(at::gelu(linear(h, L.w_gate, L.b_gate), "tanh") * linear(h, L.w_up, L.b_up), L.w_down, L.b_down);
    case Activation::GELU:  // GPT-NeoX: plain two-layer MLP
      return linear(at::gelu(linear(h, L.w_up, L.b_up)), L.w_down, L.b_down);
    case Activation::ClampedSwiGLU:
      break;
  }
  throw std::logic_error("activation not implemented in the dense MLP");
}

}  // namespace

// RoPE tables: inv_freq computed once in float32 exactly as HF does; Gemma 3 has a second
// one for its sliding-window layers.
namespace {

struct RopeTable {
  at::Tensor inv_freq;  // [rotary_dim / 2] float32
  double attention_scaling = 1.0;
};

RopeTable rope_table(const RopeSpec& r, const at::Device& dev, const std::string& source) {
  RopeTable t;
  const int dim = r.rotary_dim;
  auto idx = at::arange(0, dim, 2, at::TensorOptions().dtype(at::kLong).device(dev)).to(at::kFloat);
  at::Tensor inv = 1.0 / at::pow(r.theta, idx / static_cast<double>(dim));
  if (r.type == "linear") {
    inv = inv / r.factor;
  } else if (r.type == "llama3") {
    const double old_ctx = static_cast<double>(r.original_max_positions);
    const double low_wl = old_ctx / r.low_freq_factor, high_wl = old_ctx / r.high_freq_factor;
    auto wavelen = 2 * M_PI / inv;
    auto inv_l = at::where(wavelen > low_wl, inv / r.factor, inv);
    auto smooth = (old_ctx / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
    auto smoothed = (1 - smooth) * inv_l / r.factor + smooth * inv_l;
    auto medium = at::logical_not(wavelen < high_wl).logical_and(at::logical_not(wavelen > low_wl));
    inv = at::where(medium, smoothed, inv_l);
  } else if (r.type == "yarn") {
    // As transformers' _compute_yarn_parameters: blend interpolated and extrapolated
    // frequencies with a linear ramp between the correction dims, and scale cos/sin.
    auto pos_freqs = at::pow(r.theta, idx / static_cast<double>(dim));
    auto inv_extra = 1.0 / pos_freqs;
    auto inv_inter = 1.0 / (r.factor * pos_freqs);
    auto corr_dim = [&](double rot) {
      return (dim * std::log(double(r.original_max_positions) / (rot * 2 * M_PI))) / (2 * std::log(r.theta));
    };
    double low = corr_dim(r.beta_fast), high = corr_dim(r.beta_slow);
    if (r.truncate) low = std::floor(low), high = std::ceil(high);
    low = std::max(low, 0.0);
    high = std::min(high, double(dim - 1));
    if (low == high) high += 0.001;  // as HF: avoid a singular ramp
    auto ramp =
        at::clamp((at::arange(dim / 2, at::TensorOptions().dtype(at::kFloat).device(dev)) - low) / (high - low), 0, 1);
    auto extra_factor = 1 - ramp;
    inv = inv_inter * (1 - extra_factor) + inv_extra * extra_factor;
    auto mscale = [](double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; };
    if (r.attention_factor)
      t.attention_scaling = *r.attention_factor;
    else if (r.mscale && r.mscale_all_dim && *r.mscale != 0 && *r.mscale_all_dim != 0)
      t.attention_scaling = mscale(r.factor, *r.mscale) / mscale(r.factor, *r.mscale_all_dim);
    else
      t.attention_scaling = mscale(r.factor, 1.0);
  } else if (r.type != "default") {
    throw InputError(source, "RoPE type '" + r.type + "' is not implemented");
  }
  t.inv_freq = inv;
  return t;
}

}  // namespace

struct Model::Rope {
  RopeTable global;
  std::optional<RopeTable> sliding;
};

Model::Model(ModelSpec spec, Weights w, const LoadOptions& opt)
    : spec_(std::move(spec)), w_(std::move(w)), opt_(opt), rope_(std::make_unique<Rope>()) {
  c10::InferenceMode guard;
  const auto dev = w_.tok_embd.device();
  rope_->global = rope_table(spec_.rope, dev, spec_.source);
  if (spec_.rope_sliding) rope_->sliding = rope_table(*spec_.rope_sliding, dev, spec_.source);
}

Model::~Model() = default;

at::ScalarType Model::dtype() const { return parse_dtype(opt_.dtype); }

at::Tensor Model::forward(const std::vector<std::int64_t>& ids, const Hooks& hooks) const {
  c10::InferenceMode guard;
  const auto& s = spec_;
  const auto dt = dtype();
  const auto dev = w_.tok_embd.device();
  const std::int64_t T = static_cast<std::int64_t>(ids.size());
  if (T == 0) throw std::invalid_argument("forward: empty sequence");
  const std::int64_t H = s.n_heads, Hkv = s.n_kv_heads, dh = s.head_dim, R = s.n_rep();
  for (auto id : ids)
    if (id < 0 || id >= s.vocab)
      throw InputError(source_,
                       "token id " + std::to_string(id) + " outside the vocabulary (" + std::to_string(s.vocab) + ")");

  // To a GPU from pinned memory, asynchronously: a copy from pageable memory would make the
  // host wait for the device's previous work before issuing this pass.
  auto idx = at::tensor(ids, at::TensorOptions().dtype(at::kLong));
  idx = dev.is_cpu() ? idx : idx.pin_memory().to(dev, /*non_blocking=*/true);

  // RoPE cos/sin for positions 0..T-1: float32, then cast (HF: emb.cos() * scaling, .to(dtype)).
  auto pos = at::arange(T, at::TensorOptions().dtype(at::kFloat).device(dev));
  auto cos_sin = [&](const RopeTable& t) {
    auto freqs = at::outer(pos, t.inv_freq);  // [T, rd/2]
    auto emb = at::cat({freqs, freqs}, -1);
    return std::pair{(emb.cos() * t.attention_scaling).to(dt), (emb.sin() * t.attention_scaling).to(dt)};
  };
  const auto rope_global = cos_sin(rope_->global);
  const auto rope_sliding = rope_->sliding ? cos_sin(*rope_->sliding) : rope_global;

  // Queries per attention chunk: bounded so that H × chunk × T scores stay small.
  std::int64_t chunk = opt_.attn_chunk;
  if (chunk <= 0) chunk = std::clamp<std::int64_t>((std::int64_t(1) << 24) / std::max<std::int64_t>(1, H * T), 16, T);

  // ---- embeddings
  at::Tensor x = at::embedding(w_.tok_embd, idx);  // [T, d]
  if (s.embed_scale) {
    // Gemma: the normaliser is rounded to the activation dtype first.
    auto normalizer =
        at::scalar_tensor(std::sqrt(static_cast<double>(s.d_model)), at::TensorOptions().dtype(at::kFloat)).to(dev, dt);
    x = x * normalizer;
  }

  // Additive T×T masks for the fused kernels (-inf where query i may not see key j), built
  // once per forward for each sliding window W and dropped key, not once per layer. With
  // W = 0 the causal part is left to the kernel's causal flag unless with_causal.
  std::map<std::tuple<int, std::int64_t, bool>, at::Tensor> fused_masks;
  auto fused_mask = [&](int W, std::int64_t drop_key, const at::TensorOptions& o,
                        bool with_causal = false) -> const at::Tensor& {
    at::Tensor& m = fused_masks[{W, drop_key, with_causal}];
    if (!m.defined()) {
      auto qi = at::arange(T, at::TensorOptions().dtype(at::kLong).device(dev)).unsqueeze(1);
      auto kj = qi.t();
      auto hide = W > 0         ? at::logical_or(kj > qi, kj <= qi - W)
                  : with_causal ? (kj > qi)
                                : at::zeros({T, T}, qi.options().dtype(at::kBool));
      if (drop_key >= 0) hide = hide.logical_or((kj == drop_key).logical_and(qi > drop_key));
      m = at::zeros({T, T}, o).masked_fill(hide, -std::numeric_limits<float>::infinity());
    }
    return m;
  };

  // Which of the first keys j each of the statistics rows i sees (i − W < j <= i), as a float
  // factor [Tc, S]; built once per forward and window.
  std::map<std::tuple<int, std::int64_t, std::int64_t>, at::Tensor> visible_masks;
  auto stats_visible = [&](int W, std::int64_t rows, std::int64_t keys) -> const at::Tensor& {
    at::Tensor& m = visible_masks[{W, rows, keys}];
    if (!m.defined()) {
      auto r = at::arange(rows, at::TensorOptions().dtype(at::kLong).device(dev)).unsqueeze(1);
      auto kj = at::arange(keys, at::TensorOptions().dtype(at::kLong).device(dev)).unsqueeze(0);
      auto visible = kj <= r;
      if (W > 0) visible = visible.logical_and(kj > r - W);
      m = visible.to(at::kFloat);
    }
    return m;
  };

  for (int l = 0; l < s.n_layers; ++l) {
    const LayerWeights& L = w_.layers[l];
    HookCtx ctx;
    ctx.layer = l;
    hooks.run(Hook::ResidPre, x, ctx);

    // ---- attention: norm, projections
    at::Tensor h = norm(s, x, L.attn_norm, L.attn_norm_b);
    at::Tensor q = linear(h, L.wq, L.bq).view({T, H, dh});
    at::Tensor k = linear(h, L.wk, L.bk).view({T, Hkv, dh});
    at::Tensor v = linear(h, L.wv, L.bv).view({T, Hkv, dh});
    if (s.qk_norm) {  // Qwen3, Gemma 3: per-head RMSNorm before RoPE
      q = rms_norm(q, L.q_norm, s.norm_eps, s.qk_norm_kind);
      k = rms_norm(k, L.k_norm, s.norm_eps, s.qk_norm_kind);
    }
    // ---- RoPE (Gemma 3: its sliding layers have their own table)
    const auto& [cos, sin] = s.is_sliding(l) ? rope_sliding : rope_global;
    q = apply_rope(q, cos, sin, s.rope.rotary_dim);
    k = apply_rope(k, cos, sin, s.rope.rotary_dim);
    hooks.run(Hook::Q, q, ctx);
    hooks.run(Hook::K, k, ctx);
    hooks.run(Hook::V, v, ctx);

    // ---- scaled dot-product attention, query chunk by chunk
    auto qh = q.permute({1, 0, 2}).reshape({Hkv, R, T, dh});  // (Hkv, n_rep, T, dh): head h = kv·R + r
    auto kh = k.permute({1, 0, 2}).contiguous();              // (Hkv, T, dh)
    auto vh = v.permute({1, 0, 2}).contiguous();              // (Hkv, T, dh)
    at::Tensor z = at::empty({H, T, dh}, q.options());
    const bool want_pattern = hooks.any(Hook::Pattern, l);
    const int W = s.sliding_window[l];
    const AttnEdit* edit = hooks.attn_edit(l);
    at::Tensor sink_w;  // weights of a subtracted key, [H, T]
    // Rows whose probabilities are materialised (chunk by chunk): all of them when the
    // softmax is not a plain one (soft-capping, learned sinks, an edit), the rows the
    // pattern hooks ask for, else none; the other rows go through the fused kernel.
    std::int64_t explicit_rows = 0;
    const bool plain_softmax = s.attn_softcap == 0 && !s.attn_sinks;
    // Removing one key's contribution needs its weights, which a fused kernel's log-sum-exp
    // gives: A[i,s] = exp(scale·q_i·k_s − lse_i) (attention_lse, where fused_lse_ok).
    const bool fused_ok = plain_softmax && !opt_.explicit_attention;
    const bool subtract_fused =
        edit && edit->subtract_key >= 0 && edit->drop_key < 0 && fused_ok && !want_pattern && fused_lse_ok(dev, W);
    // Dropping one key (ssp_drop) is a fused pass with that key masked for later queries.
    const bool drop_fused = edit && edit->drop_key >= 0 && edit->subtract_key < 0 && fused_ok && !want_pattern &&
                            (dev.is_cpu() || dev.is_cuda());
    // Observation statistics straight from the fused kernel (no pattern rows at all).
    const bool stats_fused =
        hooks.stats_rows() > 0 && hooks.any(Hook::AttnStats, l) && fused_ok && !edit && fused_lse_ok(dev, W);
    // K and V per query head, (1, H, T, dh), for the fused kernels that take no GQA.
    auto kv_per_query_head = [&] {
      return R > 1 ? std::pair{kh.repeat_interleave(R, 0).unsqueeze(0), vh.repeat_interleave(R, 0).unsqueeze(0)}
                   : std::pair{kh.unsqueeze(0), vh.unsqueeze(0)};
    };
    // SSP with the sink at 0 and no window: hiding key 0 from every later query leaves plain
    // causal attention over rows and keys 1..T−1, one fused pass with no mask on any device
    // (the masked kernels are slower, and CUDA's give no log-sum-exp with a mask). Row 0
    // sees key 0 alone, so its output is v_0. Returns the output (H, T, dh) and, for rows
    // 1..T−1, the log-sum-exp over keys j ≠ 0 (H, T − 1).
    auto attention_without_key0 = [&](const at::Tensor& qs, const at::Tensor& ks, const at::Tensor& vs) {
      auto [o, lse] = attention_lse(qs.narrow(2, 1, T - 1), ks.narrow(2, 1, T - 1), vs.narrow(2, 1, T - 1), true,
                                    std::nullopt, s.attn_scale);
      return std::pair{at::cat({vs[0].narrow(1, 0, 1), o[0]}, 1), lse[0]};
    };
    if (!plain_softmax || (edit && !subtract_fused && !drop_fused))
      explicit_rows = T;
    else if (want_pattern && !stats_fused)
      explicit_rows = std::min(T, hooks.pattern_rows());
    if (stats_fused) {
      // One fused pass that also returns the log-sum-exp of each row; from it, for the
      // first Tc rows: A[i,j] = exp(scale·q_i·k_j − lse_i) for the first S keys, and the
      // entropy H_i = lse_i − scale·q_i·(Σ_j A_ij k_j) from a second fused pass with V = K.
      const std::int64_t Tc = std::min(T, hooks.stats_rows()), S = std::min(T, hooks.stats_keys());
      auto qs = q.permute({1, 0, 2}).unsqueeze(0);  // (1, H, T, dh)
      auto [ks, vs] = kv_per_query_head();
      std::optional<at::Tensor> bias;
      if (W > 0) bias = fused_mask(W, -1, qs.options());
      auto [out, lse] = attention_lse(qs, ks, vs, W == 0, bias, s.attn_scale);
      z.copy_(out[0]);
      // In float32 whatever the model's dtype: a bfloat16 output here would cost the entropy
      // 2^-8 of scale·q·ō in absolute error.
      auto qc = qs[0].narrow(1, 0, Tc).to(at::kFloat), ks_c = ks.narrow(2, 0, Tc).to(at::kFloat);
      auto lse_c = lse[0].narrow(1, 0, Tc).to(at::kFloat);  // (H, Tc)
      at::Tensor entropy;
      if (hooks.stats_entropy()) {
        std::optional<at::Tensor> bias_c;
        if (bias) bias_c = bias->narrow(0, 0, Tc).narrow(1, 0, Tc).to(at::kFloat);
        auto okk = attention_lse(qc.unsqueeze(0), ks_c, ks_c, W == 0, bias_c, s.attn_scale).first;
        entropy = at::sub(lse_c, (qc * okk[0]).sum(-1), s.attn_scale);
      }
      // exp(scale·q·k − lse) in place, then zero where key j is not visible to row i.
      auto k_first = S <= Tc ? ks_c[0].narrow(1, 0, S) : ks[0].narrow(1, 0, S).to(at::kFloat);
      at::Tensor first =
          at::baddbmm(lse_c.unsqueeze(-1), qc, k_first.transpose(-1, -2), -1.0, s.attn_scale);  // (H, Tc, S)
      first.exp_().mul_(stats_visible(W, Tc, S));
      HookCtx sctx = ctx;
      sctx.q_begin = 0;
      sctx.q_end = Tc;
      if (entropy.defined()) sctx.entropy = &entropy;
      hooks.run(Hook::AttnStats, first, sctx);
    }
    if (drop_fused) {
      // Fused attention with key s hidden from queries i > s (for s = 0 without a mask, else
      // through an additive one); rows i > s are then scaled by row_scale (the mass the sink
      // had on average).
      const std::int64_t key = edit->drop_key;
      auto qs = q.permute({1, 0, 2}).unsqueeze(0);  // (1, H, T, dh)
      auto [ks, vs] = kv_per_query_head();
      at::Tensor out;
      if (key == 0 && W == 0 && T > 1) {
        out = attention_without_key0(qs, ks, vs).first;
      } else if (dev.is_cpu()) {
        const at::Tensor& bias = fused_mask(W, key, qs.options());
        out = std::get<0>(
            at::_scaled_dot_product_flash_attention_for_cpu(qs, ks, vs, 0.0, W == 0, bias, s.attn_scale))[0];
      } else {  // the public entry point pads the mask for the memory-efficient kernel
        out = at::scaled_dot_product_attention(qs, ks, vs, fused_mask(W, key, qs.options(), true), 0.0, false,
                                               s.attn_scale)[0];
      }
      if (edit->row_scale.defined() && T > key + 1)
        out.narrow(1, key + 1, T - key - 1).mul_(edit->row_scale.view({H, 1, 1}).to(dev, out.scalar_type()));
      z.copy_(out);
    }
    if (explicit_rows < T && !subtract_fused && !stats_fused && !drop_fused) {
      // Fused scaled-dot-product attention (same softmax, float32 accumulation, no
      // probabilities materialised). Without a window, one causal call over every row is
      // fastest; the explicit rows below then overwrite their share.
      const std::int64_t r0 = W == 0 ? 0 : explicit_rows, n = T - r0;
      auto qs = q.permute({1, 0, 2}).narrow(1, r0, n).unsqueeze(0);  // (1, H, n, dh)
      auto ks = kh.unsqueeze(0), vs = vh.unsqueeze(0);               // (1, Hkv, T, dh)
      at::Tensor out;
      if (W == 0) {
        out = at::scaled_dot_product_attention(qs, ks, vs, {}, 0.0, /*is_causal=*/true, s.attn_scale, R > 1);
      } else {
        auto qi = at::arange(r0, T, at::TensorOptions().dtype(at::kLong).device(dev)).unsqueeze(1);
        auto kj = at::arange(T, at::TensorOptions().dtype(at::kLong).device(dev)).unsqueeze(0);
        auto visible = (kj <= qi).logical_and(kj > qi - W);  // true = attend
        out = at::scaled_dot_product_attention(qs, ks, vs, visible, 0.0, false, s.attn_scale, R > 1);
      }
      z.narrow(1, r0, n).copy_(out[0]);
    }
    for (std::int64_t q0 = 0; q0 < explicit_rows; q0 += chunk) {
      const std::int64_t q1 = std::min(explicit_rows, q0 + chunk), c = q1 - q0;
      auto kc = kh.narrow(1, 0, q1).unsqueeze(1);  // (Hkv, 1, q1, dh)
      auto vc = vh.narrow(1, 0, q1).unsqueeze(1);
      auto scores = at::matmul(qh.narrow(2, q0, c), kc.transpose(-1, -2)) * s.attn_scale;  // (Hkv, R, c, q1)
      if (s.attn_softcap > 0) scores = at::tanh(scores / s.attn_softcap) * s.attn_softcap;
      // causal (and sliding-window) mask: key j visible to query i iff i - W < j <= i
      auto qi = at::arange(q0, q1, at::TensorOptions().dtype(at::kLong).device(dev)).unsqueeze(1);
      auto kj = at::arange(q1, at::TensorOptions().dtype(at::kLong).device(dev)).unsqueeze(0);
      auto masked = kj > qi;
      if (W > 0) masked = masked.logical_or(kj <= qi - W);
      if (edit && edit->drop_key < q1)  // ssp_drop: later queries get no probability for the sink key
        masked = masked.logical_or((kj == edit->drop_key).logical_and(qi > edit->drop_key));
      const float ninf = -std::numeric_limits<float>::infinity();
      at::Tensor p;
      at::Tensor sink_mass;
      if (s.attn_sinks) {
        // GPT-OSS: a learned logit per head joins the softmax as an extra column, then is
        // dropped; HF runs this softmax in the compute dtype, not float32.
        auto sk = L.sinks.view({Hkv, R, 1, 1}).expand({Hkv, R, c, 1});
        auto full = at::cat({scores.masked_fill(masked, ninf), sk}, -1);
        full = full - std::get<0>(full.max(-1, true));
        auto pf = at::softmax(full, -1);
        p = pf.narrow(-1, 0, q1);
        sink_mass = pf.select(-1, q1).reshape({H, c}).to(at::kFloat);
      } else {
        p = at::softmax(scores.to(at::kFloat).masked_fill(masked, ninf), -1).to(dt);
      }
      if (edit && edit->subtract_key >= 0 && q1 > edit->subtract_key + 1) {
        const std::int64_t key = edit->subtract_key;
        auto pv = p.view({H, c, q1});
        auto later = (qi.squeeze(1) > key).to(pv.scalar_type());  // [c]
        if (!sink_w.defined()) sink_w = at::zeros({H, T}, at::TensorOptions().dtype(at::kFloat).device(dev));
        sink_w.narrow(1, q0, c).copy_(pv.select(2, key) * later);
        pv.select(2, key).mul_(1 - later);
      }
      if (edit && edit->row_scale.defined() && q1 > edit->drop_key + 1) {
        auto scale = at::where(qi > edit->drop_key, edit->row_scale.view({H, 1, 1}).to(dev), at::ones({1}, dev))
                         .to(p.scalar_type());  // [H, c, 1]
        p = (p.view({H, c, q1}) * scale).view({Hkv, R, c, q1});
      }
      if (want_pattern) {
        auto pv = p.view({H, c, q1});
        HookCtx pc = ctx;
        pc.q_begin = q0;
        pc.q_end = q1;
        if (sink_mass.defined()) pc.sink_mass = &sink_mass;
        auto vflat = vh.narrow(1, 0, q1);
        pc.v = &vflat;
        hooks.run(Hook::Pattern, pv, pc);
        p = pv.view({Hkv, R, c, q1});
      }
      z.narrow(1, q0, c).copy_(at::matmul(p, vc).view({H, c, dh}));  // (Hkv, R, c, dh)
    }
    if (subtract_fused) {
      // Σ_{j≠s} A_ij v_j = (1 − A_is) · (the softmax over j ≠ s)·v: a fused pass with key s
      // hidden from later queries, scaled by 1 − A_is computed without cancellation.
      // (Subtracting A_is·v_s from the full output instead loses ε·|v_s|/|z| when the sink
      // takes most of the row: in bfloat16 that is most of z.)
      const std::int64_t key = edit->subtract_key;
      auto qs = q.permute({1, 0, 2}).unsqueeze(0);  // (1, H, T, dh)
      auto [ks, vs] = kv_per_query_head();
      auto rows = at::arange(T, at::TensorOptions().dtype(at::kLong).device(dev));
      auto sees = (rows > key);
      if (W > 0) sees = sees.logical_and(rows - W < key);
      auto x_s = (qs[0].to(at::kFloat) * ks[0].select(1, key).to(at::kFloat).unsqueeze(1)).sum(-1) * s.attn_scale;
      at::Tensor out_drop, keep;  // keep = 1 − A_is, [H, T]
      if (key == 0 && W == 0 && T > 1) {
        // A_is = σ(x_is − lse_i) with lse over j ≠ s, so 1 − A_is = σ(lse_i − x_is) (rows i > 0).
        auto [o, lse_drop] = attention_without_key0(qs, ks, vs);
        out_drop = o;
        keep = at::ones_like(x_s);
        keep.narrow(1, 1, T - 1).copy_(at::sigmoid(lse_drop.to(at::kFloat) - x_s.narrow(1, 1, T - 1)));
      } else if (dev.is_cpu()) {
        // One pass: its log-sum-exp is over j ≠ s, so A_is = σ(x_is − lse_i) and 1 − A_is = σ(lse_i − x_is).
        auto [o, lse_drop] = attention_lse(qs, ks, vs, W == 0, fused_mask(W, key, qs.options()), s.attn_scale);
        out_drop = o[0];
        keep = at::sigmoid(lse_drop[0].to(at::kFloat) - x_s);
      } else {
        // The CUDA kernels take no mask together with the log-sum-exp: the full pass's log-sum-exp
        // gives A_is (1 − A_is = −expm1(x_is − lse_i)), the masked pass the output.
        out_drop = at::scaled_dot_product_attention(qs, ks, vs, fused_mask(W, key, qs.options(), true), 0.0, false,
                                                    s.attn_scale)[0];
        auto lse = attention_lse(qs, ks, vs, true, std::nullopt, s.attn_scale).second;
        keep = -at::expm1(x_s - lse[0].to(at::kFloat));
      }
      keep = at::where(sees, keep, at::ones_like(keep));
      sink_w = (1 - keep) * sees.to(at::kFloat);  // A_is for the hooks (μ is added per unit of it)
      z.copy_((out_drop.to(at::kFloat) * keep.unsqueeze(-1)).to(z.scalar_type()));
    }
    if (sink_w.defined()) hooks.run(Hook::SinkWeight, sink_w, ctx);
    z = z.permute({1, 0, 2});  // [T, H, dh]
    hooks.run(Hook::Z, z, ctx);
    at::Tensor attn_out = linear(z.reshape({T, H * dh}), L.wo, L.bo);
    hooks.run(Hook::AttnOut, attn_out, ctx);  // the attention block's output, before any post-norm
    if (s.post_norms) attn_out = norm(s, attn_out, L.post_attn_norm, {});

    // ---- MLP and residual
    auto ffn = [&](const at::Tensor& hh) { return s.n_experts > 0 ? moe(s, L, hh) : mlp(s, L, hh); };
    if (s.parallel_residual) {
      at::Tensor m = ffn(norm(s, x, L.ffn_norm, L.ffn_norm_b));
      hooks.run(Hook::MlpOut, m, ctx);
      x = m + attn_out + x;
    } else {
      x = x + attn_out;
      hooks.run(Hook::ResidMid, x, ctx);
      at::Tensor m = ffn(norm(s, x, L.ffn_norm, L.ffn_norm_b));
      if (s.post_norms) m = norm(s, m, L.post_ffn_norm, {});
      hooks.run(Hook::MlpOut, m, ctx);
      x = x + m;
    }
    hooks.run(Hook::ResidPost, x, ctx);
  }

  // ---- final norm and head
  HookCtx fctx;
  x = norm(s, x, w_.output_norm, w_.output_norm_b);
  hooks.run(Hook::FinalNorm, x, fctx);
  if (!hooks.wants_logits()) return {};  // the head is up to a fifth of a small model's work
  at::Tensor logits = at::linear(x, w_.output);
  if (s.final_softcap > 0) logits = at::tanh(logits / s.final_softcap) * s.final_softcap;
  hooks.run(Hook::Logits, logits, fctx);
  return logits;
}

}  // namespace sink
