// The §3 metrics from the engine's hook points. Each hook reduces what it
// sees at once; per layer we keep only O(H·T_c + H·S² + H·d) numbers.
// Definitions (and the ranges of i they average over) are in docs/metrics.md.
#include "sink/metrics/observe.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <vector>

#include "sink/model/model.hpp"

namespace sink {

namespace {
const double kNaN = std::numeric_limits<double>::quiet_NaN();
at::TensorOptions f32() { return at::TensorOptions().dtype(at::kFloat); }
// G_h = W_O^hᵀ W_O^h [H, dh, dh] in float64, so that |W_O^h y|² = yᵀ G_h y: the norms of the
// per-head updates cost H·dh² per row instead of a d-wide product per head. Computed once
// per weight tensor (the cache holds a weak reference: a new model never sees stale ones).
at::Tensor value_gram(const at::Tensor& wo, std::int64_t H, std::int64_t dh) {
  struct Entry {
    c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl> w;
    const void* data;
    at::Tensor gram;
  };
  static std::mutex mu;
  static std::vector<Entry> cache;
  std::lock_guard<std::mutex> lock(mu);
  for (auto& e : cache)
    if (!e.w.expired() && e.w.lock().get() == wo.unsafeGetTensorImpl() && e.data == wo.data_ptr()) return e.gram;
  std::erase_if(cache, [](const Entry& e) { return e.w.expired(); });
  auto w = wo.to(at::kDouble).view({wo.size(0), H, dh}).permute({1, 0, 2});  // [H, d, dh]
  auto g = at::matmul(w.transpose(1, 2), w);                                 // [H, dh, dh]
  cache.push_back(
      {c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>(wo.getIntrusivePtr()), wo.data_ptr(), g});
  return g;
}

}  // namespace

struct Observer::Layer {
  at::Tensor v_s;          // [H, dh]: the sink's value vector seen by each query head
  at::Tensor w_sink;       // [H, d]: v_s^h W_O^h, what head h writes per unit of attention to the sink
  at::Tensor a_sink;       // [H, T_c]: A[h, i, s]
  at::Tensor sink_sum, t64_sum, ent_sum, entn_sum, learned_sum;  // [H]
  at::Tensor tok_sum;      // [H, S]
  at::Tensor map;          // [H, S, S] (layers_to_show only)
  at::Tensor k_sink, k_other, v_sink, v_other;  // [H]
  at::Tensor sink_out, update, share, rest;     // [H] means over i in (s, T_c)
};

Observer::Observer(const Model& m, const ObserveOptions& opt, std::int64_t T) : m_(m), o_(opt), T_(T) {
  const auto& s = m.spec();
  Tc_ = std::min(T, o_.max_tokens_to_calc);
  layers_.resize(s.n_layers);
  if (o_.geometry) geom_ = GeometryAccumulator(s.n_layers, s.d_model, o_.sketch, m.weights().tok_embd.device());
  if (o_.mu) mu_ = MuAccumulator(s.n_layers, s.n_heads, s.d_model);
  const auto P = o_.max_tokens_to_calc;
  // Per-document arrays stay on the model's device until finish(): no host sync per layer.
  const auto on = f32().device(m.weights().tok_embd.device());
  hidden_norm_ = at::full({s.n_layers + 1, P}, kNaN, on);
  attn_norm_ = at::full({s.n_layers, P}, kNaN, on);
  mlp_norm_ = at::full({s.n_layers, P}, kNaN, on);
  massive_idx_ = at::full({s.n_layers + 1, o_.massive_k}, -1.0, on);
  massive_val_ = at::full({s.n_layers + 1, o_.massive_k}, kNaN, on);
}

Observer::~Observer() = default;

void Observer::on_hidden(int index, const at::Tensor& h) {
  if (o_.norms) {
    const auto n = std::min(T_, o_.max_tokens_to_calc);
    hidden_norm_[index].narrow(0, 0, n).copy_(h.narrow(0, 0, n).to(at::kFloat).norm(2, -1));
    if (o_.sink < T_) {
      auto [val, idx] = h[o_.sink].to(at::kFloat).abs().topk(std::min<std::int64_t>(o_.massive_k, h.size(-1)));
      massive_idx_[index].narrow(0, 0, idx.size(0)).copy_(idx.to(at::kFloat));
      massive_val_[index].narrow(0, 0, idx.size(0)).copy_(h[o_.sink].to(at::kFloat).index_select(0, idx));
    }
  }
}

void Observer::install(Hooks& hooks) {
  const auto& spec = m_.spec();
  const std::int64_t H = spec.n_heads, R = spec.n_rep(), dh = spec.head_dim;
  const std::int64_t s = o_.sink, Tc = Tc_, S = o_.max_tokens_to_show;
  const auto dev = m_.weights().tok_embd.device();
  hooks.set_pattern_rows(Tc);  // rows past T_c are never reduced: let them run fused
  hooks.set_logits_unused();   // no §3 metric reads the logits (SSP's original pass adds a logits hook)

  // Hidden states as HF returns them: embeddings, each block's output, the last after the final norm.
  hooks.add(Hook::ResidPre, [this](at::Tensor& x, const HookCtx& c) {
    if (c.layer == 0) on_hidden(0, x);
  });
  hooks.add(Hook::ResidPost, [this, L = spec.n_layers](at::Tensor& x, const HookCtx& c) {
    if (c.layer + 1 < L) on_hidden(c.layer + 1, x);
  });
  hooks.add(Hook::FinalNorm, [this, L = spec.n_layers](at::Tensor& x, const HookCtx&) { on_hidden(L, x); });

  // Keys and values: norms of the sink's k and v against the other tokens', and w_sink = v_s^h W_O^h.
  auto kv_norms = [=, this](const at::Tensor& x, at::Tensor& at_sink, at::Tensor& other) {
    auto n = x.narrow(0, 0, Tc).to(at::kFloat).norm(2, -1).repeat_interleave(R, 1);  // [Tc, H]
    at_sink = n[s];
    other = Tc > 1 ? ((n.sum(0) - n[s]) / double(Tc - 1)) : at::full({H}, kNaN, f32().device(dev));
  };
  hooks.add(Hook::K, [=, this](at::Tensor& k, const HookCtx& c) {
    if (o_.values) kv_norms(k, layers_[c.layer].k_sink, layers_[c.layer].k_other);
  });
  hooks.add(Hook::V, [=, this](at::Tensor& v, const HookCtx& c) {
    auto& L = layers_[c.layer];
    if (o_.values) kv_norms(v, L.v_sink, L.v_other);
    const auto& wo = m_.weights().layers[c.layer].wo;                              // [d, H·dh]
    auto vs = v[s].repeat_interleave(R, 0).to(wo.scalar_type());                    // [H, dh] (v is in wo's dtype)
    L.v_s = vs.to(at::kFloat);
    // w_sink[h] = W_O^h v_s^h for every h as one product with a block-diagonal [H·dh, H]
    // matrix: W_O is read once in its own dtype, not copied to float32 in every layer.
    auto blocks = at::zeros({H, dh, H}, vs.options());
    blocks.diagonal(0, 0, 2).copy_(vs.t());
    L.w_sink = at::matmul(wo, blocks.view({H * dh, H})).t().to(at::kFloat);         // [H, d]
    L.a_sink = at::zeros({H, Tc}, f32().device(dev));
    L.sink_sum = at::zeros({H}, f32().device(dev));
    L.t64_sum = at::zeros_like(L.sink_sum);
    L.ent_sum = at::zeros_like(L.sink_sum);
    L.entn_sum = at::zeros_like(L.sink_sum);
    L.learned_sum = at::zeros_like(L.sink_sum);
    L.tok_sum = at::zeros({H, S}, f32().device(dev));
    if (std::find(o_.layers_to_show.begin(), o_.layers_to_show.end(), c.layer) != o_.layers_to_show.end())
      L.map = at::full({H, S, S}, kNaN, f32().device(dev));
  });

  // Rows q0..q0+r-1 of one layer: `first` = A[h, i, j] for the first keys j (float32,
  // [H, r, Sk]), `ent` their entropy [H, r]; every statistic of A is reduced here.
  auto reduce_rows = [=, this](int layer, std::int64_t q0, const at::Tensor& first, const at::Tensor& ent,
                               const at::Tensor* learned) {
    auto& L = layers_[layer];
    const std::int64_t r1 = first.size(1), Sk = std::min<std::int64_t>(S, first.size(2));
    auto rows = at::arange(q0, q0 + r1, at::TensorOptions().dtype(at::kLong).device(dev));
    auto a_s = first.select(2, s);                                                  // [H, r1]
    L.a_sink.narrow(1, q0, r1).copy_(a_s);
    L.sink_sum += (a_s * (rows > s)).sum(1);
    L.t64_sum += (a_s * (rows >= s).logical_and(rows < o_.gu_window)).sum(1);
    if (o_.basic) {
      auto pos = rows > 0;
      L.ent_sum += (ent * pos).sum(1);
      auto logn = at::log((rows + 1).to(at::kFloat)).clamp_min(1e-30);
      L.entn_sum += (ent / logn * pos).sum(1);
      auto kj = at::arange(Sk, at::TensorOptions().dtype(at::kLong).device(dev));
      auto below = (rows.unsqueeze(1) >= kj.unsqueeze(0)).to(at::kFloat);         // [r1, Sk]: i >= j
      L.tok_sum.narrow(1, 0, Sk) += (first.narrow(2, 0, Sk) * below.unsqueeze(0)).sum(1);
      if (learned) L.learned_sum += (learned->narrow(1, 0, r1).to(at::kFloat) * (rows > s)).sum(1);
    }
    if (L.map.defined() && q0 < S) {
      const std::int64_t rs = std::min<std::int64_t>(S - q0, r1);
      L.map.narrow(1, q0, rs).narrow(2, 0, Sk).copy_(first.narrow(1, 0, rs).narrow(2, 0, Sk));
    }
  };

  // Explicit attention chunks (families whose softmax the fused kernel cannot run).
  hooks.add(Hook::Pattern, [=, this](at::Tensor& p, const HookCtx& c) {
    if (c.q_begin >= Tc) return;
    const std::int64_t r1 = std::min(c.q_end, Tc) - c.q_begin;
    auto pf = p.narrow(1, 0, r1).to(at::kFloat);                                    // [H, r1, q1]
    auto ent = o_.basic ? -at::special_xlogy(pf, pf).sum(-1) : at::Tensor();       // nats
    reduce_rows(c.layer, c.q_begin, pf.narrow(2, 0, std::min<std::int64_t>(std::max<std::int64_t>(S, s + 1), c.q_end)),
                ent, c.sink_mass);
  });
  // The same statistics from the fused kernel's log-sum-exp (no pattern materialised).
  hooks.set_attn_stats(Tc, std::max<std::int64_t>(S, s + 1));
  hooks.add(Hook::AttnStats,
            [=, this](at::Tensor& first, const HookCtx& c) { reduce_rows(c.layer, 0, first, *c.entropy, nullptr); });

  // Per-head outputs: the value update u = Σ_j A v_j W_O^h and the sink's part c = A_is v_s W_O^h.
  hooks.add(Hook::Z, [=, this](at::Tensor& z, const HookCtx& c) {
    auto& L = layers_[c.layer];
    const std::int64_t n = std::max<std::int64_t>(0, Tc - s - 1);
    if (o_.mu) mu_.add(c.layer, L.a_sink.narrow(1, s + 1, n), L.w_sink);
    if (!o_.values) return;
    // u_i = W_O^h z_i and its sink part c_i = A_is W_O^h v_s, for rows s < i < T_c, through
    // G_h (float64): |u|² = zᵀGz and |u − c|² = zᵀGz − 2A_is·v_sᵀGz + A_is²·v_sᵀGv_s, so one
    // batched product zG serves both (float64 keeps the cancellation in |u − c| harmless: its
    // relative error is ≈ 1e-16·|u|²/|u − c|²).
    auto G = value_gram(m_.weights().layers[c.layer].wo, H, dh);                   // [H, dh, dh]
    auto vs = L.v_s.to(at::kDouble);                                                // [H, dh]
    auto wn2 = at::einsum("hk,hkl,hl->h", {vs, G, vs}).clamp_min(0);                // |W_O^h v_s|²
    auto sink_out = at::zeros({H}, f32().device(dev)), update = at::zeros_like(sink_out),
         share = at::zeros_like(sink_out), rest = at::zeros_like(sink_out);
    if (n > 0) {
      auto zc = z.narrow(0, s + 1, n).to(at::kDouble).permute({1, 0, 2});          // [H, n, dh]
      auto a = L.a_sink.narrow(1, s + 1, n).to(at::kDouble);                        // [H, n]
      auto zG = at::matmul(zc, G);                                                  // [H, n, dh]
      auto u2 = (zG * zc).sum(-1).clamp_min(0);                                     // |u|²
      auto vGz = at::matmul(zG, vs.unsqueeze(-1)).squeeze(-1);                      // v_sᵀ G z, [H, n]
      auto un = u2.sqrt();
      auto rn = (u2 - 2 * a * vGz + a * a * wn2.unsqueeze(1)).clamp_min(0).sqrt();
      auto cn = a * wn2.sqrt().unsqueeze(1);
      sink_out = cn.sum(1).to(at::kFloat);
      update = un.sum(1).to(at::kFloat);
      share = (cn / un.clamp_min(1e-30)).sum(1).to(at::kFloat);
      rest = rn.sum(1).to(at::kFloat);
    }
    const double dn = n > 0 ? double(n) : kNaN;
    L.sink_out = sink_out / dn;
    L.update = update / dn;
    L.share = share / dn;
    L.rest = rest / dn;
  });

  // The attention block output (before Gemma's post-norm): norms, and C / R geometry.
  hooks.add(Hook::AttnOut, [=, this](at::Tensor& o, const HookCtx& c) {
    if (o_.norms) {
      const auto n = std::min(T_, o_.max_tokens_to_calc);
      attn_norm_[c.layer].narrow(0, 0, n).copy_(o.narrow(0, 0, n).to(at::kFloat).norm(2, -1));
    }
    if (o_.geometry && Tc > s + 1) {
      auto& L = layers_[c.layer];
      const std::int64_t n = Tc - s - 1;
      auto a = L.a_sink.narrow(1, s + 1, n).t();                                 // [n, H]
      auto Rv = o.narrow(0, s + 1, n).to(at::kFloat) - at::matmul(a, L.w_sink);  // [n, d]
      geom_.add_factored(c.layer, 0, a, L.w_sink);                               // C = a W_sink has rank ≤ H
      geom_.add(c.layer, 1, Rv);
    }
  });
  hooks.add(Hook::MlpOut, [=, this](at::Tensor& x, const HookCtx& c) {
    if (!o_.norms) return;
    const auto n = std::min(T_, o_.max_tokens_to_calc);
    mlp_norm_[c.layer].narrow(0, 0, n).copy_(x.narrow(0, 0, n).to(at::kFloat).norm(2, -1));
  });
}

DocArrays Observer::finish() {
  const auto& spec = m_.spec();
  const std::int64_t L = spec.n_layers, H = spec.n_heads, S = o_.max_tokens_to_show, s = o_.sink, Tc = Tc_;
  DocArrays out;
  auto stack = [&](auto get) {
    std::vector<at::Tensor> v;
    for (auto& l : layers_) v.push_back(get(l).to(at::kCPU, at::kFloat));
    return at::stack(v);
  };
  const double n_sink = double(std::max<std::int64_t>(0, Tc - s - 1));
  const double n_t64 = double(std::max<std::int64_t>(0, std::min(T_, o_.gu_window) - s));
  const double n_ent = double(std::max<std::int64_t>(0, Tc - 1));
  auto div = [](const at::Tensor& t, double n) { return n > 0 ? t / n : at::full_like(t, kNaN); };
  out["basic/sink_score"] = div(stack([](Layer& l) { return l.sink_sum; }), n_sink);
  out["basic/sink_score_t64"] = div(stack([](Layer& l) { return l.t64_sum; }), n_t64);
  if (o_.basic) {
    out["basic/entropy"] = div(stack([](Layer& l) { return l.ent_sum; }), n_ent);
    out["basic/entropy_norm"] = div(stack([](Layer& l) { return l.entn_sum; }), n_ent);
    // token sink score: mean over i in [j, T_c) of A[i, j]; NaN for keys j >= T_c.
    auto cnt = (Tc - at::arange(S, at::TensorOptions().dtype(at::kFloat))).clamp_min(0);
    auto tok = stack([](Layer& l) { return l.tok_sum; }) / cnt.view({1, 1, S});
    out["basic/token_sink_score"] = at::where(cnt.view({1, 1, S}) > 0, tok, at::full_like(tok, kNaN));
    if (spec.attn_sinks) out["basic/learned_sink_mass"] = div(stack([](Layer& l) { return l.learned_sum; }), n_sink);
  }
  if (o_.viz && !o_.layers_to_show.empty()) {
    std::vector<at::Tensor> maps;
    for (int l : o_.layers_to_show)
      maps.push_back(layers_[l].map.defined() ? layers_[l].map.cpu() : at::full({H, S, S}, kNaN, f32()));
    out["basic/attention_map"] = at::stack(maps);
  }
  if (o_.norms) {
    out["norms/attn_out"] = attn_norm_.cpu();
    out["norms/mlp_out"] = mlp_norm_.cpu();
    out["norms/hidden"] = hidden_norm_.cpu();
    out["norms/massive_index"] = massive_idx_.cpu();
    out["norms/massive_value"] = massive_val_.cpu();
  }
  if (o_.values) {
    out["values/sink_out_norm"] = stack([](Layer& l) { return l.sink_out; });
    out["values/update_norm"] = stack([](Layer& l) { return l.update; });
    out["values/sink_share"] = stack([](Layer& l) { return l.share; });
    out["values/update_minus_sink_norm"] = stack([](Layer& l) { return l.rest; });
    out["values/v_sink_norm"] = stack([](Layer& l) { return l.v_sink; });
    out["values/v_other_norm"] = stack([](Layer& l) { return l.v_other; });
    out["values/k_sink_norm"] = stack([](Layer& l) { return l.k_sink; });
    out["values/k_other_norm"] = stack([](Layer& l) { return l.k_other; });
  }
  (void)L;
  return out;
}

}  // namespace sink
