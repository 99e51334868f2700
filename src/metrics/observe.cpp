// The §3 metrics from the engine's hook points. Each hook stores what it sees in
// per-document buffers that span every layer ([L, H, T_c] at most), and finish()
// reduces them across all layers at once: on a GPU every small operator is a kernel
// launch, and a hook that reduced its layer on the spot issued hundreds of them per
// layer (the observation pass was bound by the host, not the card).
// Definitions (and the ranges of i they average over) are in docs/metrics.md.
#include "sink/metrics/observe.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <vector>

#include "sink/metrics/window.hpp"
#include "sink/model/model.hpp"

namespace sink {

namespace {
const double kNaN = std::numeric_limits<double>::quiet_NaN();
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

Observer::Observer(const Model& m, const ObserveOptions& opt, std::int64_t T) : m_(m), o_(opt), T_(T) {
  const auto& s = m.spec();
  const std::int64_t L = s.n_layers, H = s.n_heads, S = o_.max_tokens_to_show, sink = o_.sink;
  Tc_ = std::min(T, o_.max_tokens_to_calc);
  const std::int64_t Tc = Tc_, n = std::max<std::int64_t>(0, Tc - sink - 1);
  const auto dev = m.device();
  if (o_.geometry) geom_ = GeometryAccumulator(s.n_layers, s.d_model, o_.sketch, dev);
  if (o_.mu) mu_ = MuAccumulator(s.n_layers, s.n_heads, s.d_model);
  const auto P = o_.max_tokens_to_calc;
  // Everything stays on the model's device until finish(): no host sync per layer.
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(dev), f64 = f32.dtype(at::kDouble);
  hidden_norm_ = at::full({L + 1, P}, kNaN, f32);
  attn_norm_ = at::full({L, P}, kNaN, f32);
  mlp_norm_ = at::full({L, P}, kNaN, f32);
  if (o_.norms) sink_rows_ = at::full({L + 1, s.d_model}, kNaN, f32);
  a_sink_ = at::zeros({L, H, Tc}, f32);
  if (o_.basic) {
    ent_ = at::zeros({L, H, Tc}, f32);
    tok_sum_ = at::zeros({L, H, S}, f32);
    if (o_.top_keys > 0) col_sum_ = at::zeros({L, H, Tc}, f32);
    if (s.attn_sinks) learned_ = at::zeros({L, H, Tc}, f32);
    below_ = (at::arange(Tc, f32).unsqueeze(1) >= at::arange(S, f32).unsqueeze(0)).to(at::kFloat);  // [Tc, S]: i >= j
  }
  // Row weights over i in [0, T_c): i > s; s <= i < 64 (Gu et al.); i > 0; (i > 0) / log(i + 1).
  auto i = at::arange(Tc, f32);
  row_weights_ = at::stack({(i > sink).to(at::kFloat), ((i >= sink) * (i < o_.gu_window)).to(at::kFloat),
                            (i > 0).to(at::kFloat), (i > 0) / at::log(i + 1).clamp_min(1e-30)},
                           1);  // [Tc, 4]
  if (o_.viz) {
    show_slot_.assign(L, -1);
    int slots = 0;
    for (int l : o_.layers_to_show)
      if (l >= 0 && l < L && show_slot_[l] < 0) show_slot_[l] = slots++;
    if (slots > 0) maps_ = at::full({slots, H, S, S}, kNaN, f32);
  }
  if (o_.values) {
    kv_norm_ = at::zeros({L, 2, Tc, s.n_kv_heads}, f32);
    if (n > 0) u2_ = at::zeros({L, H, n + 1}, f64), vgz_ = at::zeros({L, H, n + 1}, f64);
  }
  if (o_.values || o_.geometry || o_.mu) {
    w_sink_ = at::zeros({L, H, s.d_model}, f32);
    // Block-diagonal [H·dh, H] matrix whose diagonal blocks are v_s^h (rewritten per layer).
    blocks_ = at::zeros({H, s.head_dim, H}, m.weights().layers[m.layer_range().first].wo.options());  // a held layer
  }
}

Observer::~Observer() = default;

void Observer::install(Hooks& hooks) {
  const auto& spec = m_.spec();
  const std::int64_t H = spec.n_heads, R = spec.n_rep(), dh = spec.head_dim;
  const std::int64_t s = o_.sink, Tc = Tc_, S = o_.max_tokens_to_show, n = std::max<std::int64_t>(0, Tc - s - 1);
  const std::int64_t N = std::min(T_, o_.max_tokens_to_calc);
  hooks.set_pattern_rows(Tc);  // rows past T_c are never reduced: let them run fused
  hooks.set_logits_unused();   // no §3 metric reads the logits (SSP's original pass adds a logits hook)
  // The fused path's second pass (for the entropy) only when the entropy is wanted.
  // The top keys need every key's column (A for all j < T_c, transient per layer).
  const bool all_keys = o_.basic && col_sum_.defined();
  hooks.set_attn_stats(Tc, all_keys ? std::max<std::int64_t>({S, s + 1, Tc}) : std::max<std::int64_t>(S, s + 1),
                       o_.basic);

  // Hidden states as HF returns them: embeddings, each block's output, the last after the final norm.
  auto on_hidden = [=, this](int index, const at::Tensor& h) {
    if (!o_.norms) return;
    auto out = hidden_norm_[index].narrow(0, 0, N);
    at::linalg_vector_norm_out(out, h.narrow(0, 0, N), 2, -1, false, at::kFloat);
    if (s < T_) sink_rows_[index].copy_(h[s]);  // massive activations: top-k taken in finish()
  };
  hooks.add(Hook::ResidPre, [=](at::Tensor& x, const HookCtx& c) {
    if (c.layer == 0) on_hidden(0, x);
  });
  hooks.add(Hook::ResidPost, [=, L = spec.n_layers](at::Tensor& x, const HookCtx& c) {
    if (c.layer + 1 < L) on_hidden(c.layer + 1, x);
  });
  hooks.add(Hook::FinalNorm, [=, L = spec.n_layers](at::Tensor& x, const HookCtx&) { on_hidden(L, x); });

  // Keys and values: the norms of every row's k and v (the sink's against the others' in finish()).
  if (o_.values) {
    hooks.add(Hook::K, [=, this](at::Tensor& k, const HookCtx& c) {
      auto out = kv_norm_[c.layer][0];
      at::linalg_vector_norm_out(out, k.narrow(0, 0, Tc), 2, -1, false, at::kFloat);
    });
  }
  hooks.add(Hook::V, [=, this](at::Tensor& v, const HookCtx& c) {
    if (o_.values) {
      auto out = kv_norm_[c.layer][1];
      at::linalg_vector_norm_out(out, v.narrow(0, 0, Tc), 2, -1, false, at::kFloat);
    }
    if (!w_sink_.defined()) return;
    const auto& wo = m_.weights().layers[c.layer].wo;   // [d, H·dh]
    vs_ = R > 1 ? v[s].repeat_interleave(R, 0) : v[s];  // [H, dh], wo's dtype
    // w_sink[h] = W_O^h v_s^h for every h as one product with a block-diagonal [H·dh, H]
    // matrix: W_O is read once in its own dtype, not copied to float32 in every layer.
    blocks_.diagonal(0, 0, 2).copy_(vs_.t());
    w_sink_[c.layer].copy_(at::matmul(wo, blocks_.view({H * dh, H})).t());  // [H, d]
  });

  // Rows q0..q0+r-1 of one layer: `first` = A[h, i, j] for the first keys j (float32,
  // [H, r, Sk]), `ent` their entropy [H, r]. Stored; reduced over rows in finish().
  auto store_rows = [=, this](int layer, std::int64_t q0, const at::Tensor& first, const at::Tensor& ent,
                              const at::Tensor* learned) {
    const std::int64_t r1 = first.size(1), Sk = std::min<std::int64_t>(S, first.size(2));
    if (s < first.size(2)) a_sink_[layer].narrow(1, q0, r1).copy_(first.select(2, s));
    if (o_.basic) {
      ent_[layer].narrow(1, q0, r1).copy_(ent);
      // token sink score: Σ_i A[i, j] over rows i >= j
      tok_sum_[layer].narrow(1, 0, Sk) += (first.narrow(2, 0, Sk) * below_.narrow(0, q0, r1).narrow(1, 0, Sk)).sum(1);
      if (learned) learned_[layer].narrow(1, q0, r1).copy_(learned->narrow(1, 0, r1));
      if (all_keys && q0 + r1 > s + 1) {  // attention mass per key over the rows s < i < T_c
        const std::int64_t a = std::max<std::int64_t>(q0, s + 1) - q0, K = std::min(Tc, first.size(2));
        col_sum_[layer].narrow(1, 0, K) += first.narrow(1, a, r1 - a).narrow(2, 0, K).sum(1);
      }
    }
    const int slot = show_slot_.empty() ? -1 : show_slot_[layer];
    if (slot >= 0 && q0 < S) {
      const std::int64_t rs = std::min<std::int64_t>(S - q0, r1);
      maps_[slot].narrow(1, q0, rs).narrow(2, 0, Sk).copy_(first.narrow(1, 0, rs).narrow(2, 0, Sk));
    }
  };

  // Explicit attention chunks (families whose softmax the fused kernel cannot run).
  hooks.add(Hook::Pattern, [=, this](at::Tensor& p, const HookCtx& c) {
    if (c.q_begin >= Tc) return;
    const std::int64_t r1 = std::min(c.q_end, Tc) - c.q_begin;
    auto pf = p.narrow(1, 0, r1).to(at::kFloat);                              // [H, r1, q1]
    auto ent = o_.basic ? -at::special_xlogy(pf, pf).sum(-1) : at::Tensor();  // nats
    const std::int64_t keys = all_keys ? c.q_end : std::min<std::int64_t>(std::max<std::int64_t>(S, s + 1), c.q_end);
    store_rows(c.layer, c.q_begin, pf.narrow(2, 0, keys), ent, c.sink_mass);
  });
  // The same statistics from the fused kernel's log-sum-exp (no pattern materialised).
  hooks.add(Hook::AttnStats, [=](at::Tensor& first, const HookCtx& c) {
    store_rows(c.layer, 0, first, c.entropy ? *c.entropy : at::Tensor(), nullptr);
  });

  // Per-head outputs: the value update u = Σ_j A v_j W_O^h and the sink's part c = A_is v_s W_O^h,
  // for rows s < i < T_c, through G_h (float64): |u|² = zᵀGz and |u − c|² = zᵀGz − 2A_is·v_sᵀGz
  // + A_is²·v_sᵀGv_s. Here, per layer, zᵀGz and zᵀGv_s for the rows z and for z = v_s appended
  // as one more row; finish() combines them with A_is. (float64 keeps the cancellation in
  // |u − c| harmless: its relative error is ≈ 1e-16·|u|²/|u − c|².)
  if (o_.values && n > 0) {
    hooks.add(Hook::Z, [=, this](at::Tensor& z, const HookCtx& c) {
      auto G = value_gram(m_.weights().layers[c.layer].wo, H, dh);  // [H, dh, dh]
      auto zc = at::empty({H, n + 1, dh}, G.options());
      zc.narrow(1, 0, n).copy_(z.narrow(0, s + 1, n).permute({1, 0, 2}));
      zc.select(1, n).copy_(vs_);
      auto zG = at::bmm(zc, G);  // [H, n + 1, dh]
      auto u2 = u2_[c.layer];
      at::sum_out(u2, zG * zc, -1);  // zᵀGz
      auto vgz = vgz_[c.layer].unsqueeze(-1);
      at::bmm_out(vgz, zc, zG.select(1, n).unsqueeze(-1));  // zᵀG v_s
    });
  }

  // The attention block output (before Gemma's post-norm): norms, and the control R's geometry
  // (the sink vector C = a W_sink has rank ≤ H: its geometry is added in finish()).
  hooks.add(Hook::AttnOut, [=, this](at::Tensor& o, const HookCtx& c) {
    if (o_.norms) {
      auto out = attn_norm_[c.layer].narrow(0, 0, N);
      at::linalg_vector_norm_out(out, o.narrow(0, 0, N), 2, -1, false, at::kFloat);
    }
    const std::int64_t nv = visible_rows(m_.spec(), c.layer, n);  // R over the rows C is taken over
    if (o_.geometry && nv > 0) {
      auto a = a_sink_[c.layer].narrow(1, s + 1, nv).t();  // [nv, H]
      geom_.add(c.layer, 1, at::addmm(o.narrow(0, s + 1, nv).to(at::kFloat), a, w_sink_[c.layer], 1, -1));
    }
  });
  if (o_.norms) {
    hooks.add(Hook::MlpOut, [=, this](at::Tensor& x, const HookCtx& c) {
      auto out = mlp_norm_[c.layer].narrow(0, 0, N);
      at::linalg_vector_norm_out(out, x.narrow(0, 0, N), 2, -1, false, at::kFloat);
    });
  }
}

DocArrays Observer::finish() {
  const auto& spec = m_.spec();
  const std::int64_t L = spec.n_layers, H = spec.n_heads, S = o_.max_tokens_to_show, s = o_.sink, Tc = Tc_;
  const std::int64_t n = std::max<std::int64_t>(0, Tc - s - 1);
  DocArrays out;
  auto host = [](const at::Tensor& t) { return t.to(at::kCPU, at::kFloat); };
  auto nan = [&](std::vector<std::int64_t> shape) {
    return at::full(shape, kNaN, at::TensorOptions().dtype(at::kFloat));
  };
  const double n_t64 = double(std::max<std::int64_t>(0, std::min(T_, o_.gu_window) - s));
  const double n_ent = double(std::max<std::int64_t>(0, Tc - 1));
  auto div = [&](const at::Tensor& t, double d) { return d > 0 ? host(t) / d : at::full_like(host(t), kNaN); };
  // Row sums as products with the row weights: [L, H, Tc] × [Tc, k].
  auto sinks = at::matmul(a_sink_, row_weights_.narrow(1, 0, 2));  // [L, H, 2]
  out["basic/sink_score"] = div(sinks.select(2, 0), double(n));
  out["basic/sink_score_t64"] = div(sinks.select(2, 1), n_t64);
  if (o_.basic) {
    auto ents = at::matmul(ent_, row_weights_.narrow(1, 2, 2));  // [L, H, 2]
    out["basic/entropy"] = div(ents.select(2, 0), n_ent);
    out["basic/entropy_norm"] = div(ents.select(2, 1), n_ent);
    // token sink score: mean over i in [j, T_c) of A[i, j]; NaN for keys j >= T_c.
    auto cnt = (Tc - at::arange(S, at::TensorOptions().dtype(at::kFloat))).clamp_min(0);
    auto tok = host(tok_sum_) / cnt.view({1, 1, S});
    out["basic/token_sink_score"] = at::where(cnt.view({1, 1, S}) > 0, tok, at::full_like(tok, kNaN));
    if (col_sum_.defined()) {
      // Top keys by mass (mean over s < i < T_c of A[i, j]; key s gives α): position -1 and NaN past T_c.
      const std::int64_t k = o_.top_keys, kk = std::min(k, Tc);
      auto pos = at::full({L, H, k}, -1, at::TensorOptions().dtype(at::kInt));
      auto mass = nan({L, H, k});
      if (kk > 0 && n > 0) {
        auto [v, ix] = at::topk(host(col_sum_) / double(n), kk, -1, true, true);
        pos.narrow(2, 0, kk).copy_(ix.to(at::kInt));
        mass.narrow(2, 0, kk).copy_(v);
      }
      out["basic/top_key_position"] = pos;
      out["basic/top_key_mass"] = mass;
    }
    if (spec.attn_sinks)
      out["basic/learned_sink_mass"] = div(at::matmul(learned_, row_weights_.select(1, 0)), double(n));
  }
  if (o_.viz && !o_.layers_to_show.empty()) {
    std::vector<at::Tensor> maps;
    for (int l : o_.layers_to_show)
      maps.push_back(l >= 0 && l < L && show_slot_[l] >= 0 ? host(maps_[show_slot_[l]]) : nan({H, S, S}));
    out["basic/attention_map"] = at::stack(maps);
  }
  if (o_.norms) {
    out["norms/attn_out"] = host(attn_norm_);
    out["norms/mlp_out"] = host(mlp_norm_);
    out["norms/hidden"] = host(hidden_norm_);
    out["norms/massive_index"] = nan({L + 1, o_.massive_k}).fill_(-1.0);
    out["norms/massive_value"] = nan({L + 1, o_.massive_k});
    if (s < T_) {
      const std::int64_t k = std::min<std::int64_t>(o_.massive_k, spec.d_model);
      auto idx = std::get<1>(sink_rows_.abs().topk(k, -1));  // [L + 1, k]
      out["norms/massive_index"].narrow(1, 0, k).copy_(host(idx));
      out["norms/massive_value"].narrow(1, 0, k).copy_(host(sink_rows_.gather(1, idx)));
    }
  }
  if (o_.values) {
    if (n > 0) {
      auto a = a_sink_.narrow(2, s + 1, n).to(at::kDouble);  // [L, H, n]
      auto u2 = u2_.narrow(2, 0, n).clamp_min(0), vgz = vgz_.narrow(2, 0, n);
      auto wn2 = u2_.narrow(2, n, 1).clamp_min(0);  // |W_O^h v_s|², [L, H, 1]
      auto un = u2.sqrt(), cn = a * wn2.sqrt();
      auto rn = (u2 - 2 * a * vgz + a * a * wn2).clamp_min(0).sqrt();
      out["values/sink_out_norm"] = host(cn.sum(2) / double(n));
      out["values/update_norm"] = host(un.sum(2) / double(n));
      out["values/sink_share"] = host((cn / un.clamp_min(1e-30)).sum(2) / double(n));
      out["values/update_minus_sink_norm"] = host(rn.sum(2) / double(n));
    } else {
      for (const char* k : {"sink_out_norm", "update_norm", "sink_share", "update_minus_sink_norm"})
        out[std::string("values/") + k] = nan({L, H});
    }
    // k and v norms per query head: the sink's, and the mean over the other rows i < T_c.
    auto kv = kv_norm_.repeat_interleave(spec.n_rep(), 3);  // [L, 2, Tc, H]
    auto at_sink = kv.select(2, s);                         // [L, 2, H]
    auto other = Tc > 1 ? host((kv.sum(2) - at_sink) / double(Tc - 1)) : nan({L, 2, H});
    out["values/k_sink_norm"] = host(at_sink.select(1, 0));
    out["values/v_sink_norm"] = host(at_sink.select(1, 1));
    out["values/k_other_norm"] = other.select(1, 0).contiguous();
    out["values/v_other_norm"] = other.select(1, 1).contiguous();
  }
  // C's geometry and μ over the rows that see the sink (all of s < i < T_c without a window).
  bool windows_bind = false;
  for (int l = 0; l < L; ++l) windows_bind |= visible_rows(spec, l, n) < n;
  if (n > 0 && !windows_bind) {
    auto a = a_sink_.narrow(2, s + 1, n);                                   // [L, H, n]
    if (o_.geometry) geom_.add_factored(0, 0, a.transpose(1, 2), w_sink_);  // C = a W_sink, every layer at once
    if (o_.mu) mu_.add(0, a, w_sink_);
  } else if (n > 0 && (o_.geometry || o_.mu)) {  // (W_O v_s is only kept for them: none without values)
    for (int l = 0; l < L; ++l) {  // one layer at a time: the windows give the layers different rows
      const std::int64_t nv = visible_rows(spec, l, n);
      if (nv == 0) continue;
      auto a = a_sink_.narrow(0, l, 1).narrow(2, s + 1, nv);  // [1, H, nv]
      auto w = w_sink_.narrow(0, l, 1);
      if (o_.geometry) geom_.add_factored(l, 0, a.transpose(1, 2), w);
      if (o_.mu) mu_.add(l, a, w);
    }
  }
  return out;
}

std::vector<at::Tensor> Observer::stage_parts(int l0, int l1) {
  const int h0 = l0 == 0 ? 0 : l0 + 1, h1 = l1 + 1;  // hidden rows: resid_pre of 0, resid_post of l, final norm
  std::vector<at::Tensor> out;
  auto rows = [&](const at::Tensor& t, int a, int b) {
    if (t.defined() && b > a) out.push_back(t.narrow(0, a, b - a));
  };
  rows(hidden_norm_, h0, h1);
  rows(sink_rows_, h0, h1);
  for (const auto* t : {&attn_norm_, &mlp_norm_, &a_sink_, &ent_, &learned_, &tok_sum_, &col_sum_, &kv_norm_,
                        &w_sink_, &u2_, &vgz_})
    rows(*t, l0, l1);
  for (int l = l0; l < l1; ++l)
    if (!show_slot_.empty() && show_slot_[l] >= 0 && maps_.defined()) out.push_back(maps_[show_slot_[l]]);
  if (!geom_.empty())
    for (auto& t : geom_.control_parts(l0, l1)) out.push_back(t);
  return out;
}

ObserveOptions mu_observe_options(std::int64_t sink, std::int64_t T) {
  ObserveOptions o;
  o.sink = sink;
  o.max_tokens_to_calc = T;
  o.basic = o.norms = o.values = o.viz = o.geometry = false;
  o.mu = true;
  return o;
}

MuAccumulator observe_mu(const Model& m, const std::vector<std::int64_t>& ids, std::int64_t sink) {
  const auto T = static_cast<std::int64_t>(ids.size());
  Observer obs(m, mu_observe_options(sink, T), T);
  Hooks h;
  obs.install(h);
  m.forward(ids, h);
  obs.finish();
  return obs.mu();
}

}  // namespace sink
