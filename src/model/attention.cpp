// The attention of one layer: the plan, the kernel rules, and one function per path.
// Numerics follow HF's eager attention (scores · scale, soft-capping, mask, softmax in
// float32, cast back) on the explicit path; the fused paths are checked against it by
// `sink-bench --check-fused` and tests/model/test_attention_paths.cpp.
#include "attention.hpp"

#include <algorithm>
#include <limits>
#include <optional>
#include <stdexcept>

namespace sink::detail {

// ---- Which fused kernel runs where (the one place these rules live)
//
// With the log-sum-exp of each row (the statistics and SSP paths need it):
//   CPU   the flash kernel, with or without an additive mask;
//   CUDA  flash for bfloat16/float16, memory-efficient for float32; no additive mask (their
//         bias needs an alignment only the public entry point pads for).
// Output only, with an additive mask: the CPU flash kernel; on CUDA the public entry point
// with the causal part in the mask.
namespace {

bool lse_with_mask_ok(const at::Device& dev) { return dev.is_cpu(); }

// Whether attention_lse runs here for a layer with window W: anywhere on the CPU; on CUDA
// only without a window (a window needs a mask).
bool lse_ok(const at::Device& dev, int W) { return lse_with_mask_ok(dev) || (dev.is_cuda() && W == 0); }

// q, k, v as (1, H, T, dh) → the output (1, H, T, dh) and each row's natural-log sum of
// exp(scores) (1, H, T).
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

// Output only, key `hidden` hidden from later queries and the window W applied: (H, T, dh).
at::Tensor attention_hiding_key(const LayerAttention& a, const at::Tensor& qs, const at::Tensor& ks,
                                const at::Tensor& vs, int W, std::int64_t hidden) {
  if (lse_with_mask_ok(a.ac.dev))
    return attention_lse(qs, ks, vs, W == 0, a.ac.additive_mask(W, hidden, qs.options()), a.s.attn_scale).first[0];
  return at::scaled_dot_product_attention(qs, ks, vs, a.ac.additive_mask(W, hidden, qs.options(), true), 0.0, false,
                                          a.s.attn_scale)[0];
}

// With the sink at 0 and no window, hiding key 0 from every later query leaves plain causal
// attention over rows and keys 1..T−1: one fused pass with no mask on any device (the masked
// kernels are slower, and CUDA's give no log-sum-exp with a mask). Row 0 sees key 0 alone, so
// its output is v_0. Returns the output (H, T, dh) and, for rows 1..T−1, the log-sum-exp over
// keys j ≠ 0 (H, T − 1).
std::pair<at::Tensor, at::Tensor> attention_without_key0(const LayerAttention& a, const at::Tensor& qs,
                                                         const at::Tensor& ks, const at::Tensor& vs) {
  const auto T = a.ac.T;
  auto [o, lse] = attention_lse(qs.narrow(2, 1, T - 1), ks.narrow(2, 1, T - 1), vs.narrow(2, 1, T - 1), true,
                                std::nullopt, a.s.attn_scale);
  return {at::cat({vs[0].narrow(1, 0, 1), o[0]}, 1), lse[0]};
}

}  // namespace

// ---- Masks, once per forward

const at::Tensor& AttentionContext::additive_mask(int W, std::int64_t hidden_key, const at::TensorOptions& o,
                                                  bool with_causal) {
  at::Tensor& m = additive_[{W, hidden_key, with_causal}];
  if (!m.defined()) {
    auto qi = at::arange(T, at::TensorOptions().dtype(at::kLong).device(dev)).unsqueeze(1);
    auto kj = qi.t();
    auto hide = W > 0         ? at::logical_or(kj > qi, kj <= qi - W)
                : with_causal ? (kj > qi)
                              : at::zeros({T, T}, qi.options().dtype(at::kBool));
    if (hidden_key >= 0) hide = hide.logical_or((kj == hidden_key).logical_and(qi > hidden_key));
    m = at::zeros({T, T}, o).masked_fill(hide, -std::numeric_limits<float>::infinity());
  }
  return m;
}

const at::Tensor& AttentionContext::window_visible(int W, std::int64_t r0) {
  at::Tensor& m = window_[{W, r0}];
  if (!m.defined()) {
    auto qi = at::arange(r0, T, at::TensorOptions().dtype(at::kLong).device(dev)).unsqueeze(1);
    auto kj = at::arange(T, at::TensorOptions().dtype(at::kLong).device(dev)).unsqueeze(0);
    m = (kj <= qi).logical_and(kj > qi - W);  // true = attend
  }
  return m;
}

const AttentionContext::EvalChunk& AttentionContext::eval_chunk(int W, const EvalWindow& e, std::int64_t q0,
                                                                std::int64_t c, const at::TensorOptions& o) {
  EvalChunk& ch = eval_[{W, e.window, e.keep, q0}];
  if (!ch.mask.defined()) {
    // The band: keys the evaluation window (and the layer's own, if narrower) lets some row of
    // the chunk see; below it only the kept first tokens can be visible.
    const std::int64_t band = W > 0 ? std::min<std::int64_t>(W, e.window) : e.window;
    ch.lo = std::max<std::int64_t>(0, q0 - band + 1);
    ch.prefix = std::min(e.keep, ch.lo);
    const auto lo = at::TensorOptions().dtype(at::kLong).device(dev);
    auto kj = at::cat({at::arange(ch.prefix, lo), at::arange(ch.lo, q0 + c, lo)}).unsqueeze(0);
    auto qi = at::arange(q0, q0 + c, lo).unsqueeze(1);
    auto see = (kj <= qi).logical_and((qi - kj < e.window).logical_or(kj < e.keep));
    if (W > 0) see = see.logical_and(qi - kj < W);
    ch.mask = at::zeros(see.sizes(), o).masked_fill(see.logical_not(), -std::numeric_limits<float>::infinity());
  }
  return ch;
}

const at::Tensor& AttentionContext::stats_visible(int W, std::int64_t rows, std::int64_t keys) {
  at::Tensor& m = stats_[{W, rows, keys}];
  if (!m.defined()) {
    auto r = at::arange(rows, at::TensorOptions().dtype(at::kLong).device(dev)).unsqueeze(1);
    auto kj = at::arange(keys, at::TensorOptions().dtype(at::kLong).device(dev)).unsqueeze(0);
    auto visible = kj <= r;
    if (W > 0) visible = visible.logical_and(kj > r - W);
    m = visible.to(at::kFloat);
  }
  return m;
}

// ---- One layer's inputs and its plan

LayerAttention::LayerAttention(const ModelSpec& s, const LayerWeights& L, int layer, const at::Tensor& q,
                               const at::Tensor& k, const at::Tensor& v, const Hooks& hooks, AttentionContext& ac)
    : s(s), L(L), hooks(hooks), ac(ac), q(q) {
  ctx.layer = layer;
  kh = k.permute({1, 0, 2}).contiguous();  // (Hkv, T, dh)
  vh = v.permute({1, 0, 2}).contiguous();  // (Hkv, T, dh)
}

std::pair<at::Tensor, at::Tensor> LayerAttention::kv_per_query_head() const {
  const auto R = s.n_rep();
  return R > 1 ? std::pair{kh.repeat_interleave(R, 0).unsqueeze(0), vh.repeat_interleave(R, 0).unsqueeze(0)}
               : std::pair{kh.unsqueeze(0), vh.unsqueeze(0)};
}

AttentionPlan plan_attention(const LayerAttention& a) {
  const auto& s = a.s;
  const int l = a.ctx.layer;
  const auto& dev = a.ac.dev;
  AttentionPlan p;
  p.window = s.sliding_window[l];
  p.edit = a.hooks.attn_edit(l);
  p.eval = a.hooks.eval_window();
  const AttnEdit* edit = p.edit;
  const bool want_pattern = a.hooks.any(Hook::Pattern, l);
  // The fused kernels compute a plain softmax only: no soft-capping, no learned sink column.
  const bool plain_softmax = s.attn_softcap == 0 && !s.attn_sinks;
  const bool fused_ok = plain_softmax && !a.ac.explicit_only;
  // Removing one key's contribution needs its weights, which a kernel's log-sum-exp gives:
  // A[i, s] = exp(scale·q_i·k_s − lse_i).
  const bool subtract =
      edit && edit->subtract_key >= 0 && edit->drop_key < 0 && fused_ok && !want_pattern && lse_ok(dev, p.window);
  // Dropping one key is a fused pass with that key masked for later queries.
  const bool drop = edit && edit->drop_key >= 0 && edit->subtract_key < 0 && fused_ok && !want_pattern &&
                    (dev.is_cpu() || dev.is_cuda());
  // Observation statistics straight from the kernel's log-sum-exp (no pattern rows at all).
  const bool stats = a.hooks.stats_rows() > 0 && a.hooks.any(Hook::AttnStats, l) && fused_ok && !edit && !p.eval &&
                     lse_ok(dev, p.window);
  if (p.eval) {  // the evaluation window: fused unless something needs the probabilities
    if (fused_ok && !edit && !want_pattern)
      p.path = AttentionPath::EvalWindow;
    else
      p.explicit_rows = a.ac.T;
    return p;
  }
  if (stats)
    p.path = AttentionPath::Statistics;
  else if (subtract)
    p.path = AttentionPath::SspSubtract;
  else if (drop)
    p.path = AttentionPath::SspDrop;
  else if (!plain_softmax || edit)
    p.explicit_rows = a.ac.T;
  else if (want_pattern)
    p.explicit_rows = std::min(a.ac.T, a.hooks.pattern_rows());
  return p;
}

at::Tensor attention(const LayerAttention& a, const AttentionPlan& plan) {
  at::Tensor z = at::empty({a.s.n_heads, a.ac.T, a.s.head_dim}, a.q.options());  // [H, T, dh]
  at::Tensor sink_w;  // A[i, s] of a subtracted sink key, [H, T]
  switch (plan.path) {
    case AttentionPath::Statistics:
      attention_statistics(a, plan, z);
      break;
    case AttentionPath::SspSubtract:
      attention_ssp_subtract(a, plan, z, sink_w);
      break;
    case AttentionPath::SspDrop:
      attention_ssp_drop(a, plan, z);
      break;
    case AttentionPath::EvalWindow:
      attention_eval_window(a, plan, z);
      break;
    case AttentionPath::Fused:
      if (plan.explicit_rows < a.ac.T) attention_fused(a, plan, z);
      attention_explicit(a, plan, z, sink_w);
      break;
  }
  if (sink_w.defined()) a.hooks.run(Hook::SinkWeight, sink_w, a.ctx);
  return z;
}

// ---- The paths

// The kernel's softmax, no probabilities materialised. Without a window one causal call over
// every row is fastest (the explicit rows then overwrite their share); with one, the rows from
// explicit_rows on, with a boolean window mask.
void attention_fused(const LayerAttention& a, const AttentionPlan& plan, at::Tensor& z) {
  const auto T = a.ac.T;
  const int W = plan.window;
  const std::int64_t r0 = W == 0 ? 0 : plan.explicit_rows, n = T - r0;
  auto qs = a.q.permute({1, 0, 2}).narrow(1, r0, n).unsqueeze(0);  // (1, H, n, dh)
  auto ks = a.kh.unsqueeze(0), vs = a.vh.unsqueeze(0);             // (1, Hkv, T, dh)
  const bool gqa = a.s.n_rep() > 1;
  at::Tensor out =
      W == 0
          ? at::scaled_dot_product_attention(qs, ks, vs, {}, 0.0, /*is_causal=*/true, a.s.attn_scale, gqa)
          : at::scaled_dot_product_attention(qs, ks, vs, a.ac.window_visible(W, r0), 0.0, false, a.s.attn_scale, gqa);
  z.narrow(1, r0, n).copy_(out[0]);
}

// Rows [0, explicit_rows) as HF's eager attention computes them, query chunk by chunk: scores,
// soft-capping, the causal/window mask (and ssp_drop's hidden key), softmax in float32 (GPT-OSS:
// with its learned sink column, in the compute dtype), the SSP edits on the probabilities, then
// hook_pattern sees (and may replace) each chunk.
void attention_explicit(const LayerAttention& a, const AttentionPlan& plan, at::Tensor& z, at::Tensor& sink_w) {
  const auto& s = a.s;
  const auto T = a.ac.T;
  const auto& dev = a.ac.dev;
  const std::int64_t H = s.n_heads, Hkv = s.n_kv_heads, dh = s.head_dim, R = s.n_rep();
  const int W = plan.window;
  const AttnEdit* edit = plan.edit;
  const bool want_pattern = a.hooks.any(Hook::Pattern, a.ctx.layer);
  auto qh = a.q.permute({1, 0, 2}).reshape({Hkv, R, T, dh});  // (Hkv, n_rep, T, dh): head h = kv·R + r
  const float ninf = -std::numeric_limits<float>::infinity();
  for (std::int64_t q0 = 0; q0 < plan.explicit_rows; q0 += a.ac.chunk) {
    const std::int64_t q1 = std::min(plan.explicit_rows, q0 + a.ac.chunk), c = q1 - q0;
    auto kc = a.kh.narrow(1, 0, q1).unsqueeze(1);  // (Hkv, 1, q1, dh)
    auto vc = a.vh.narrow(1, 0, q1).unsqueeze(1);
    auto scores = at::matmul(qh.narrow(2, q0, c), kc.transpose(-1, -2)) * s.attn_scale;  // (Hkv, R, c, q1)
    if (s.attn_softcap > 0) scores = at::tanh(scores / s.attn_softcap) * s.attn_softcap;
    // causal (and sliding-window) mask: key j visible to query i iff i − W < j ≤ i
    auto qi = at::arange(q0, q1, at::TensorOptions().dtype(at::kLong).device(dev)).unsqueeze(1);
    auto kj = at::arange(q1, at::TensorOptions().dtype(at::kLong).device(dev)).unsqueeze(0);
    auto masked = kj > qi;
    if (W > 0) masked = masked.logical_or(kj <= qi - W);
    if (plan.eval)  // the evaluation window: beyond it only the kept first tokens stay visible
      masked = masked.logical_or((kj <= qi - plan.eval->window).logical_and(kj >= plan.eval->keep));
    if (edit && edit->drop_key < q1)  // ssp_drop: later queries get no probability for the sink key
      masked = masked.logical_or((kj == edit->drop_key).logical_and(qi > edit->drop_key));
    at::Tensor p, sink_mass;
    if (s.attn_sinks) {
      // GPT-OSS: a learned logit per head joins the softmax as an extra column, then is
      // dropped; HF runs this softmax in the compute dtype, not float32.
      auto sk = a.L.sinks.view({Hkv, R, 1, 1}).expand({Hkv, R, c, 1});
      auto full = at::cat({scores.masked_fill(masked, ninf), sk}, -1);
      full = full - std::get<0>(full.max(-1, true));
      auto pf = at::softmax(full, -1);
      p = pf.narrow(-1, 0, q1);
      sink_mass = pf.select(-1, q1).reshape({H, c}).to(at::kFloat);
    } else {
      p = at::softmax(scores.to(at::kFloat).masked_fill(masked, ninf), -1).to(a.q.scalar_type());
    }
    if (edit && edit->subtract_key >= 0 && q1 > edit->subtract_key + 1) {
      // ssp_bias / zero / random: later queries lose the sink's term; its weights go to the hooks.
      const std::int64_t key = edit->subtract_key;
      auto pv = p.view({H, c, q1});
      auto later = (qi.squeeze(1) > key).to(pv.scalar_type());  // [c]
      if (!sink_w.defined()) sink_w = at::zeros({H, T}, at::TensorOptions().dtype(at::kFloat).device(dev));
      sink_w.narrow(1, q0, c).copy_(pv.select(2, key) * later);
      pv.select(2, key).mul_(1 - later);
    }
    if (edit && edit->row_scale.defined() && q1 > edit->drop_key + 1) {
      // ssp_drop: the rows that saw the sink (after it, and within the window) scaled by the
      // mass the sink had on average; rows past the window never saw it and stay as they are.
      auto sees = qi > edit->drop_key;
      if (W > 0) sees = sees.logical_and(qi - W < edit->drop_key);
      auto scale = at::where(sees, edit->row_scale.view({H, 1, 1}).to(dev), at::ones({1}, dev))
                       .to(p.scalar_type());  // [H, c, 1]
      p = (p.view({H, c, q1}) * scale).view({Hkv, R, c, q1});
    }
    if (want_pattern) {
      auto pv = p.view({H, c, q1});
      HookCtx pc = a.ctx;
      pc.q_begin = q0;
      pc.q_end = q1;
      if (sink_mass.defined()) pc.sink_mass = &sink_mass;
      auto vflat = a.vh.narrow(1, 0, q1);
      pc.v = &vflat;
      a.hooks.run(Hook::Pattern, pv, pc);
      p = pv.view({Hkv, R, c, q1});
    }
    z.narrow(1, q0, c).copy_(at::matmul(p, vc).view({H, c, dh}));  // (Hkv, R, c, dh) → (H, c, dh)
  }
}

// One fused pass that also returns each row's log-sum-exp; from it, for the first Tc rows:
// A[i, j] = exp(scale·q_i·k_j − lse_i) for the first S keys, and the entropy
// H_i = lse_i − scale·q_i·(Σ_j A_ij k_j) from a second fused pass with V = K.
void attention_statistics(const LayerAttention& a, const AttentionPlan& plan, at::Tensor& z) {
  const auto& s = a.s;
  const int W = plan.window;
  const std::int64_t T = a.ac.T, Tc = std::min(T, a.hooks.stats_rows()), S = std::min(T, a.hooks.stats_keys());
  auto qs = a.q.permute({1, 0, 2}).unsqueeze(0);  // (1, H, T, dh)
  auto [ks, vs] = a.kv_per_query_head();
  std::optional<at::Tensor> bias;
  if (W > 0) bias = a.ac.additive_mask(W, -1, qs.options());
  auto [out, lse] = attention_lse(qs, ks, vs, W == 0, bias, s.attn_scale);
  z.copy_(out[0]);
  // In float32 whatever the model's dtype: a bfloat16 output here would cost the entropy 2^-8
  // of scale·q·ō in absolute error.
  auto qc = qs[0].narrow(1, 0, Tc).to(at::kFloat), ks_c = ks.narrow(2, 0, Tc).to(at::kFloat);
  auto lse_c = lse[0].narrow(1, 0, Tc).to(at::kFloat);  // (H, Tc)
  at::Tensor entropy;
  if (a.hooks.stats_entropy()) {
    std::optional<at::Tensor> bias_c;
    if (bias) bias_c = bias->narrow(0, 0, Tc).narrow(1, 0, Tc).to(at::kFloat);
    auto okk = attention_lse(qc.unsqueeze(0), ks_c, ks_c, W == 0, bias_c, s.attn_scale).first;
    entropy = at::sub(lse_c, (qc * okk[0]).sum(-1), s.attn_scale);
  }
  // exp(scale·q·k − lse) in place, then zero where key j is not visible to row i.
  auto k_first = S <= Tc ? ks_c[0].narrow(1, 0, S) : ks[0].narrow(1, 0, S).to(at::kFloat);
  at::Tensor first = at::baddbmm(lse_c.unsqueeze(-1), qc, k_first.transpose(-1, -2), -1.0, s.attn_scale);  // (H, Tc, S)
  first.exp_().mul_(a.ac.stats_visible(W, Tc, S));
  HookCtx sctx = a.ctx;
  sctx.q_begin = 0;
  sctx.q_end = Tc;
  if (entropy.defined()) sctx.entropy = &entropy;
  a.hooks.run(Hook::AttnStats, first, sctx);
}

// ssp_bias / zero / random: Σ_{j≠s} A_ij v_j = (1 − A_is) · (the softmax over j ≠ s)·v — a fused
// pass with key s hidden from later queries, scaled by 1 − A_is computed without cancellation.
// (Subtracting A_is·v_s from the full output instead loses ε·|v_s|/|z| when the sink takes
// most of the row: in bfloat16 that is most of z.)
void attention_ssp_subtract(const LayerAttention& a, const AttentionPlan& plan, at::Tensor& z, at::Tensor& sink_w) {
  const auto& s = a.s;
  const int W = plan.window;
  const std::int64_t T = a.ac.T, key = plan.edit->subtract_key;
  auto qs = a.q.permute({1, 0, 2}).unsqueeze(0);  // (1, H, T, dh)
  auto [ks, vs] = a.kv_per_query_head();
  auto rows = at::arange(T, at::TensorOptions().dtype(at::kLong).device(a.ac.dev));
  auto sees = (rows > key);  // the rows that see the sink key
  if (W > 0) sees = sees.logical_and(rows - W < key);
  auto x_s = (qs[0].to(at::kFloat) * ks[0].select(1, key).to(at::kFloat).unsqueeze(1)).sum(-1) * s.attn_scale;
  at::Tensor out_drop, keep;  // keep = 1 − A_is, [H, T]
  if (key == 0 && W == 0 && T > 1) {
    // A_is = σ(x_is − lse_i) with lse over j ≠ s, so 1 − A_is = σ(lse_i − x_is) (rows i > 0).
    auto [o, lse_drop] = attention_without_key0(a, qs, ks, vs);
    out_drop = o;
    keep = at::ones_like(x_s);
    keep.narrow(1, 1, T - 1).copy_(at::sigmoid(lse_drop.to(at::kFloat) - x_s.narrow(1, 1, T - 1)));
  } else if (lse_with_mask_ok(a.ac.dev)) {
    // One pass: its log-sum-exp is over j ≠ s, so 1 − A_is = σ(lse_i − x_is).
    auto [o, lse_drop] = attention_lse(qs, ks, vs, W == 0, a.ac.additive_mask(W, key, qs.options()), s.attn_scale);
    out_drop = o[0];
    keep = at::sigmoid(lse_drop[0].to(at::kFloat) - x_s);
  } else {
    // No log-sum-exp with a mask: the full pass's gives A_is (1 − A_is = −expm1(x_is − lse_i)),
    // the masked pass the output.
    out_drop = attention_hiding_key(a, qs, ks, vs, W, key);
    auto lse = attention_lse(qs, ks, vs, true, std::nullopt, s.attn_scale).second;
    keep = -at::expm1(x_s - lse[0].to(at::kFloat));
  }
  keep = at::where(sees, keep, at::ones_like(keep));
  sink_w = (1 - keep) * sees.to(at::kFloat);  // A_is for the hooks (μ is added per unit of it)
  z.copy_((out_drop.to(at::kFloat) * keep.unsqueeze(-1)).to(z.scalar_type()));
}

// ssp_drop: a fused pass with key s hidden from queries i > s (for s = 0 without a window, no
// mask at all), then the rows that saw the sink scaled by row_scale (the mass it had on average).
void attention_ssp_drop(const LayerAttention& a, const AttentionPlan& plan, at::Tensor& z) {
  const int W = plan.window;
  const std::int64_t T = a.ac.T, H = a.s.n_heads, key = plan.edit->drop_key;
  auto qs = a.q.permute({1, 0, 2}).unsqueeze(0);  // (1, H, T, dh)
  auto [ks, vs] = a.kv_per_query_head();
  at::Tensor out = key == 0 && W == 0 && T > 1 ? attention_without_key0(a, qs, ks, vs).first
                                               : attention_hiding_key(a, qs, ks, vs, W, key);
  // The rows that saw the sink: key < i < key + W (every later row without a window).
  const std::int64_t end = W > 0 ? std::min(T, key + W) : T;
  if (plan.edit->row_scale.defined() && end > key + 1)
    out.narrow(1, key + 1, end - key - 1).mul_(plan.edit->row_scale.view({H, 1, 1}).to(a.ac.dev, out.scalar_type()));
  z.copy_(out);
}

// The evaluation window: query chunks of 256 rows, each a fused pass over the kept first tokens
// and the band of recent keys only (the keys no row of the chunk sees are never read), so the
// cost falls with the window instead of growing with a full [T, T] mask.
void attention_eval_window(const LayerAttention& a, const AttentionPlan& plan, at::Tensor& z) {
  const auto T = a.ac.T;
  const std::int64_t C = 256;
  auto qs = a.q.permute({1, 0, 2}).unsqueeze(0);  // (1, H, T, dh)
  auto ks = a.kh.unsqueeze(0), vs = a.vh.unsqueeze(0);
  const bool gqa = a.s.n_rep() > 1;
  for (std::int64_t q0 = 0; q0 < T; q0 += C) {
    const std::int64_t c = std::min(C, T - q0);
    const auto& ch = a.ac.eval_chunk(plan.window, *plan.eval, q0, c, qs.options());
    auto band_k = ks.narrow(2, ch.lo, q0 + c - ch.lo), band_v = vs.narrow(2, ch.lo, q0 + c - ch.lo);
    auto kc = ch.prefix > 0 ? at::cat({ks.narrow(2, 0, ch.prefix), band_k}, 2) : band_k;
    auto vc = ch.prefix > 0 ? at::cat({vs.narrow(2, 0, ch.prefix), band_v}, 2) : band_v;
    auto out = at::scaled_dot_product_attention(qs.narrow(2, q0, c), kc, vc, ch.mask, 0.0, false, a.s.attn_scale, gqa);
    z.narrow(1, q0, c).copy_(out[0]);
  }
}

}  // namespace sink::detail
