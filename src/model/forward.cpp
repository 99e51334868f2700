// The one shared forward pass, in three parts as llama2.c reads: embed the tokens, run a
// range of blocks, apply the final norm and head. One block reads top to bottom in the
// paper's order; its attention (the plan and one function per path) is in attention.cpp.
// Families differ only through ModelSpec flags and which weights exist. Numerics follow
// HF transformers' eager code: norms and softmax in float32, cast back to the compute dtype
// at the same points.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <set>
#include <string>

#include "attention.hpp"
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
  const int L = spec_.n_layers;
  l0_ = opt.layer_begin;
  l1_ = opt.layer_end < 0 ? L : opt.layer_end;
  if (l0_ < 0 || l1_ > L || l0_ >= l1_)
    throw std::invalid_argument("Model: layer range [" + std::to_string(opt.layer_begin) + ", " +
                                std::to_string(opt.layer_end) + ") is not a non-empty part of [0, " +
                                std::to_string(L) + ")");
  if (static_cast<int>(w_.layers.size()) != L)
    throw std::invalid_argument("Model: weights for " + std::to_string(w_.layers.size()) + " layers, spec has " +
                                std::to_string(L));
  const auto dev = device();
  rope_->global = rope_table(spec_.rope, dev, spec_.source);
  if (spec_.rope_sliding) rope_->sliding = rope_table(*spec_.rope_sliding, dev, spec_.source);
}

Model::~Model() = default;

at::Device Model::device() const {
  if (w_.tok_embd.defined()) return w_.tok_embd.device();
  if (w_.output.defined()) return w_.output.device();
  for (const auto& L : w_.layers)
    if (L.attn_norm.defined()) return L.attn_norm.device();
  throw std::logic_error("Model: no weights");
}

std::int64_t resident_bytes(const Weights& w) {
  std::set<const void*> seen;  // storages: a tied head and its embedding are one tensor
  std::int64_t n = 0;
  auto add = [&](const at::Tensor& t) {
    if (t.defined() && seen.insert(t.storage().data()).second) n += static_cast<std::int64_t>(t.storage().nbytes());
  };
  for (const auto* t : {&w.tok_embd, &w.output_norm, &w.output_norm_b, &w.output}) add(*t);
  for (const auto& L : w.layers)
    for (const auto* t : L.all()) add(*t);
  return n;
}

at::ScalarType Model::dtype() const { return parse_dtype(opt_.dtype); }

namespace {

// What every block of one pass shares: RoPE cos/sin for positions 0..T−1 (one table, or
// Gemma 3's two) and the attention context (query chunk, masks built once per pass).
struct Pass {
  std::pair<at::Tensor, at::Tensor> rope_global, rope_sliding;  // cos, sin [T, rotary_dim]
  detail::AttentionContext attn;
};

// One transformer block: x [T, d] → [T, d].
at::Tensor block(const ModelSpec& s, const LayerWeights& L, int l, at::Tensor x, Pass& pass, const Hooks& hooks) {
  const std::int64_t T = x.size(0), H = s.n_heads, Hkv = s.n_kv_heads, dh = s.head_dim;
  HookCtx ctx;
  ctx.layer = l;
  hooks.run(Hook::ResidPre, x, ctx);

  // norm
  at::Tensor h = norm(s, x, L.attn_norm, L.attn_norm_b);
  // q, k, v: [T, d] → [T, heads, dh]
  at::Tensor q = linear(h, L.wq, L.bq).view({T, H, dh});
  at::Tensor k = linear(h, L.wk, L.bk).view({T, Hkv, dh});
  at::Tensor v = linear(h, L.wv, L.bv).view({T, Hkv, dh});
  // q/k norms (Qwen3, Gemma 3): per head, before RoPE
  if (s.qk_norm) {
    q = rms_norm(q, L.q_norm, s.norm_eps, s.qk_norm_kind);
    k = rms_norm(k, L.k_norm, s.norm_eps, s.qk_norm_kind);
  }
  // RoPE (Gemma 3: the sliding layers have their own table)
  const auto& [cos, sin] = s.is_sliding(l) ? pass.rope_sliding : pass.rope_global;
  q = apply_rope(q, cos, sin, s.rope.rotary_dim);
  k = apply_rope(k, cos, sin, s.rope.rotary_dim);
  hooks.run(Hook::Q, q, ctx);
  hooks.run(Hook::K, k, ctx);
  hooks.run(Hook::V, v, ctx);

  // attention: the per-head output z [H, T, dh] → [T, H, dh]
  detail::LayerAttention a(s, L, l, q, k, v, hooks, pass.attn);
  at::Tensor z = detail::attention(a, detail::plan_attention(a)).permute({1, 0, 2});
  hooks.run(Hook::Z, z, ctx);
  // o_proj: [T, H·dh] → [T, d]
  at::Tensor attn_out = linear(z.reshape({T, H * dh}), L.wo, L.bo);
  hooks.run(Hook::AttnOut, attn_out, ctx);  // the attention block's output, before any post-norm
  if (s.post_norms) attn_out = norm(s, attn_out, L.post_attn_norm, {});  // Gemma

  // residual, MLP or MoE, residual (GPT-NeoX: both sublayers read x, one residual add)
  auto ffn = [&](const at::Tensor& hh) { return s.n_experts > 0 ? moe(s, L, hh) : mlp(s, L, hh); };
  if (s.parallel_residual) {
    at::Tensor m = ffn(norm(s, x, L.ffn_norm, L.ffn_norm_b));
    hooks.run(Hook::MlpOut, m, ctx);
    x = m + attn_out + x;
  } else {
    x = x + attn_out;
    hooks.run(Hook::ResidMid, x, ctx);
    at::Tensor m = ffn(norm(s, x, L.ffn_norm, L.ffn_norm_b));
    if (s.post_norms) m = norm(s, m, L.post_ffn_norm, {});  // Gemma
    hooks.run(Hook::MlpOut, m, ctx);
    x = x + m;
  }
  hooks.run(Hook::ResidPost, x, ctx);
  return x;
}

}  // namespace

at::Tensor Model::embed(const std::vector<std::int64_t>& ids) const {
  c10::InferenceMode guard;
  const auto& s = spec_;
  if (!has_embedding())
    throw std::logic_error("embed: this model is a pipeline stage of layers [" + std::to_string(l0_) + ", " +
                           std::to_string(l1_) + ") without the embedding (only the first stage embeds tokens)");
  const auto dev = w_.tok_embd.device();
  if (ids.empty()) throw std::invalid_argument("forward: empty sequence");
  for (auto id : ids)
    if (id < 0 || id >= s.vocab)
      throw InputError(source_,
                       "token id " + std::to_string(id) + " outside the vocabulary (" + std::to_string(s.vocab) + ")");
  // To a GPU from pinned memory, asynchronously: a copy from pageable memory would make the
  // host wait for the device's previous work before issuing this pass.
  auto idx = at::tensor(ids, at::TensorOptions().dtype(at::kLong));
  idx = dev.is_cpu() ? idx : idx.pin_memory().to(dev, /*non_blocking=*/true);
  at::Tensor x = at::embedding(w_.tok_embd, idx);  // [T, d]
  if (s.embed_scale) {
    // Gemma: the normaliser is rounded to the activation dtype first.
    auto normalizer =
        at::scalar_tensor(std::sqrt(static_cast<double>(s.d_model)), at::TensorOptions().dtype(at::kFloat))
            .to(dev, dtype());
    x = x * normalizer;
  }
  return x;
}

at::Tensor Model::blocks(at::Tensor x, int l0, int l1, const Hooks& hooks) const {
  c10::InferenceMode guard;
  const auto& s = spec_;
  if (l0 < 0 || l1 > s.n_layers || l0 > l1)
    throw std::invalid_argument("blocks: layer range [" + std::to_string(l0) + ", " + std::to_string(l1) +
                                ") outside [0, " + std::to_string(s.n_layers) + "]");
  if (l0 < l1 && (l0 < l0_ || l1 > l1_))
    throw std::invalid_argument("blocks: layers [" + std::to_string(l0) + ", " + std::to_string(l1) +
                                ") requested from a pipeline stage that holds layers [" + std::to_string(l0_) + ", " +
                                std::to_string(l1_) + ")");
  if (x.dim() != 2 || x.size(0) == 0 || x.size(1) != s.d_model)
    throw std::invalid_argument("blocks: hidden state must be [T > 0, " + std::to_string(s.d_model) + "]");
  const auto dt = dtype();
  const auto dev = device();
  const std::int64_t T = x.size(0);

  // RoPE cos/sin for positions 0..T-1: float32, then cast (HF: emb.cos() * scaling, .to(dtype)).
  auto pos = at::arange(T, at::TensorOptions().dtype(at::kFloat).device(dev));
  auto cos_sin = [&](const RopeTable& t) {
    auto freqs = at::outer(pos, t.inv_freq);  // [T, rd/2]
    auto emb = at::cat({freqs, freqs}, -1);
    return std::pair{(emb.cos() * t.attention_scaling).to(dt), (emb.sin() * t.attention_scaling).to(dt)};
  };
  // Queries per explicit attention chunk: bounded so that H × chunk × T scores stay small.
  std::int64_t chunk = opt_.attn_chunk;
  if (chunk <= 0) chunk = std::min(T, std::max<std::int64_t>(16, (std::int64_t(1) << 24) / (s.n_heads * T)));
  auto global = cos_sin(rope_->global);
  auto sliding = rope_->sliding ? cos_sin(*rope_->sliding) : global;
  Pass pass{std::move(global), std::move(sliding), detail::AttentionContext(T, dev, chunk, opt_.explicit_attention)};

  for (int l = l0; l < l1; ++l) x = block(s, w_.layers[l], l, std::move(x), pass, hooks);
  return x;
}

at::Tensor Model::head(at::Tensor x, const Hooks& hooks) const {
  c10::InferenceMode guard;
  const auto& s = spec_;
  if (!has_head())
    throw std::logic_error("head: this model is a pipeline stage of layers [" + std::to_string(l0_) + ", " +
                           std::to_string(l1_) + ") without the final norm and head (only the last stage has them)");
  HookCtx ctx;
  x = norm(s, x, w_.output_norm, w_.output_norm_b);
  hooks.run(Hook::FinalNorm, x, ctx);
  if (!hooks.wants_logits()) return {};          // the head is up to a fifth of a small model's work
  at::Tensor logits = at::linear(x, w_.output);  // [T, vocab]
  if (s.final_softcap > 0) logits = at::tanh(logits / s.final_softcap) * s.final_softcap;
  hooks.run(Hook::Logits, logits, ctx);
  return logits;
}

at::Tensor Model::forward(const std::vector<std::int64_t>& ids, const Hooks& hooks) const {
  c10::InferenceMode guard;
  return head(blocks(embed(ids), 0, spec_.n_layers, hooks), hooks);
}

}  // namespace sink
