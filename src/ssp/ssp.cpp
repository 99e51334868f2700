// Static Sink Patching through hooks. In a patched layer, for queries i > s:
//   ssp_bias: the sink's probability is zeroed (the others keep the original
//             softmax, the sink still in its denominator) and μ is added to
//             the attention block's output;
//   ssp_drop: the softmax runs over j ≠ s, rows are scaled by 1 − ᾱ, μ is added;
//   zero:     the sink's contribution removed, nothing added;
//   random:   a bias of μ's norm in a random direction;
//   exact:    each position's own contribution added back (identity check).
#include "sink/ssp/ssp.hpp"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <memory>

#include "sink/metrics/geometry.hpp"
#include "sink/metrics/window.hpp"
#include "sink/model/model.hpp"
#include "sink/util/error.hpp"

namespace sink {

SspMode parse_ssp_mode(const std::string& s) {
  if (s == "ssp_bias") return SspMode::SspBias;
  if (s == "ssp_drop") return SspMode::SspDrop;
  if (s == "zero") return SspMode::Zero;
  if (s == "random") return SspMode::Random;
  if (s == "exact") return SspMode::Exact;
  throw InputError("intervention.modes", "unknown mode '" + s + "' (ssp_bias, ssp_drop, zero, random)");
}

const char* ssp_mode_name(SspMode m) {
  switch (m) {
    case SspMode::SspBias: return "ssp_bias";
    case SspMode::SspDrop: return "ssp_drop";
    case SspMode::Zero: return "zero";
    case SspMode::Random: return "random";
    case SspMode::Exact: return "exact";
  }
  return "?";
}

void SinkBias::set_mu(const std::map<std::string, at::Tensor>& r) {
  mu = r.at("mu").to(at::kFloat);
  mu_head = r.at("mu_head").to(at::kFloat);
  alpha_bar = r.at("alpha_bar").to(at::kFloat);
}

at::Tensor ssp_added_bias(const SinkBias& b, SspMode mode) {
  auto mu = b.mu.to(at::kCPU, at::kFloat);
  const auto L = mu.size(0), d = mu.size(1);
  switch (mode) {
    case SspMode::SspBias:
    case SspMode::SspDrop:
      return b.head_granularity ? b.mu_head.to(at::kCPU, at::kFloat).sum(1) : mu;
    case SspMode::Zero:
    case SspMode::Exact:
      return at::zeros_like(mu);
    case SspMode::Random: {
      auto out = at::zeros_like(mu);
      for (std::int64_t l = 0; l < L; ++l) {
        auto gen = at::make_generator<at::CPUGeneratorImpl>(b.seed * 1000003ull + static_cast<std::uint64_t>(l));
        if (b.head_granularity) {
          auto mh = b.mu_head[l].to(at::kCPU, at::kFloat);  // [H, d]
          auto g = at::randn(mh.sizes(), gen, at::TensorOptions().dtype(at::kFloat));
          out[l] = (g / g.norm(2, -1, true) * mh.norm(2, -1, true)).sum(0);
        } else {
          auto g = at::randn({d}, gen, at::TensorOptions().dtype(at::kFloat));
          out[l] = g / g.norm() * mu[l].norm();
        }
      }
      return out;
    }
  }
  return mu;
}

void install_ssp(const Model& m, const SinkBias& b, SspMode mode, Hooks& hooks) {
  const auto& spec = m.spec();
  const std::int64_t s = b.sink, H = spec.n_heads, R = spec.n_rep(), dh = spec.head_dim, d = spec.d_model;
  const auto dev = m.device();
  // On the model's device and in its dtype once: a host tensor copied over in every layer's
  // hook made each layer wait for the device (a copy from pageable host memory synchronises).
  auto bias = ssp_added_bias(b, mode).to(dev, m.dtype());
  struct State {
    at::Tensor a_sink, w_sink;  // exact mode: [H, T] and [H, d]
  };
  auto state = std::make_shared<std::vector<State>>(spec.n_layers);
  const Model* mp = &m;  // the hooks refer to the model, never copy it
  for (int l = 0; l < spec.n_layers; ++l) {
    if (!b.patched.at(l)) continue;
    if (mode == SspMode::SspDrop) {
      hooks.set_attn_edit(l, AttnEdit{s, (1.0 - b.alpha_bar[l].to(at::kFloat)).to(dev)});
    } else {
      if (mode == SspMode::Exact) {
        hooks.add(Hook::V, [=](at::Tensor& v, const HookCtx& c) {
          auto vs = v[s].to(at::kFloat).repeat_interleave(R, 0);
          auto wo = mp->weights().layers[c.layer].wo.to(at::kFloat).view({d, H, dh});
          (*state)[c.layer].w_sink = at::einsum("dhk,hk->hd", {wo, vs});
        }, l);
      }
      // The engine removes the sink's contribution A[i,s]·v_s for i > s (fused when it can)
      // and reports the weights it had.
      hooks.set_attn_edit(l, AttnEdit{-1, {}, s});
      if (mode == SspMode::Exact)
        hooks.add(Hook::SinkWeight, [=](at::Tensor& w, const HookCtx& c) { (*state)[c.layer].a_sink = w; }, l);
    }
    // Only the rows that see the sink under the layer's window get the bias: past the window the
    // sink writes nothing, so there is nothing to replace (and μ averages over the same rows).
    hooks.add(Hook::AttnOut, [=](at::Tensor& o, const HookCtx& c) {
      const std::int64_t T = o.size(0);
      if (T <= s + 1) return;
      const std::int64_t nv = visible_rows(mp->spec(), c.layer, T - s - 1);
      if (nv == 0) return;
      auto tail = o.narrow(0, s + 1, nv);
      if (mode == SspMode::Exact) {
        auto& st = (*state)[c.layer];
        tail.add_(at::matmul(st.a_sink.narrow(1, s + 1, nv).t(), st.w_sink).to(o.scalar_type()));
      } else {
        tail.add_(bias[c.layer]);
      }
    }, l);
  }
}

// Hidden states in HF's L+1 convention, captured by hooks.
void capture_hidden_states(Hooks& h, std::vector<at::Tensor>& out, int L) {
  out.assign(L + 1, {});
  h.add(Hook::ResidPre, [&out](at::Tensor& x, const HookCtx& c) {
    if (c.layer == 0) out[0] = x.clone();
  });
  h.add(Hook::ResidPost, [&out, L](at::Tensor& x, const HookCtx& c) {
    if (c.layer + 1 < L) out[c.layer + 1] = x.clone();
  });
  h.add(Hook::FinalNorm, [&out, L](at::Tensor& x, const HookCtx&) { out[L] = x.clone(); });
}

void capture_original(Hooks& hooks, SspOriginal& out, int n_layers) {
  capture_hidden_states(hooks, out.hidden, n_layers);
  hooks.add(Hook::Logits, [&out](at::Tensor& x, const HookCtx&) { out.logits = x; });
}

SspDocResult ssp_score(const Model& m, const std::vector<std::int64_t>& ids, std::int64_t s, const at::Tensor& logits,
                       const at::Tensor* logits0) {
  const std::int64_t T = static_cast<std::int64_t>(ids.size());
  // Positions s+1 … T−2 predict tokens s+2 … T−1 (the prediction made at the sink itself is left out).
  const std::int64_t p0 = s + 1, n = std::max<std::int64_t>(0, T - 2 - s);
  const auto dev = logits.device();
  auto targets = at::tensor(std::vector<std::int64_t>(ids.begin() + std::min<std::int64_t>(T, p0 + 1), ids.end()),
                            at::TensorOptions().dtype(at::kLong))
                     .to(dev);
  // Scores in float64 from the model's logits: a float32 log-softmax over a 49 152-word
  // vocabulary is biased by ~−2e-5 nats per token. Row chunks keep each float64 copy of the
  // logits near 2^24 elements (128 MiB), whatever the vocabulary.
  const std::int64_t chunk =
      std::max<std::int64_t>(1, (std::int64_t(1) << 24) / std::max<std::int64_t>(1, m.spec().vocab));
  auto log_probs = [&](const at::Tensor& lg, std::int64_t i0, std::int64_t k) {
    auto x = lg.narrow(0, p0 + i0, k).to(at::kDouble);
    return x - at::logsumexp(x, -1, true);
  };
  SspDocResult r;
  for (std::int64_t i0 = 0; i0 < n; i0 += chunk) {
    const auto k = std::min(chunk, n - i0);
    r.nll_sum -= log_probs(logits, i0, k).gather(1, targets.narrow(0, i0, k).unsqueeze(1)).sum().item<double>();
  }
  r.n = n;
  if (logits0 && n > 0) {
    double kl = 0;
    for (std::int64_t i0 = 0; i0 < n; i0 += chunk) {
      const auto k = std::min(chunk, n - i0);
      auto lp0 = log_probs(*logits0, i0, k), lp1 = log_probs(logits, i0, k);
      kl += (lp0.exp() * (lp0 - lp1)).sum().item<double>();
    }
    r.kl_mean = kl / double(n);
  }
  return r;
}

std::pair<double, double> ssp_resid_distance(const at::Tensor& h0, const at::Tensor& h1, std::int64_t s) {
  const std::int64_t T = h0.size(0);
  if (T <= s + 1) return {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::quiet_NaN()};
  auto a = h0.narrow(0, s + 1, T - s - 1).to(at::kFloat), c = h1.narrow(0, s + 1, T - s - 1).to(at::kFloat);
  auto an = a.norm(2, -1).clamp_min(1e-30);
  return {((c - a).norm(2, -1) / an).mean().item<double>(),
          ((a * c).sum(-1) / (an * c.norm(2, -1).clamp_min(1e-30))).mean().item<double>()};
}

namespace {

// Scores passes against the original one on the same tokens (ssp_score, ssp_resid_distance: the
// arithmetic the pipeline stages use too, so a staged run is bit-identical to this one).
class Scorer {
 public:
  Scorer(const Model& m, const std::vector<std::int64_t>& ids, std::int64_t s, const SspOriginal& original)
      : m_(m), ids_(ids), s_(s), orig_(original) {}

  SspDocResult original() const {
    const int L = m_.spec().n_layers;
    SspDocResult r = ssp_score(m_, ids_, s_, orig_.logits, nullptr);
    r.resid_rel_l2.assign(L + 1, 0.0);
    r.resid_cos.assign(L + 1, 1.0);
    return r;
  }

  // One pass of the model under `hm` (hidden states captured here), scored.
  SspDocResult run(Hooks& hm) const {
    const int L = m_.spec().n_layers;
    std::vector<at::Tensor> h1;
    capture_hidden_states(hm, h1, L);
    auto logits = m_.forward(ids_, hm);
    SspDocResult r = ssp_score(m_, ids_, s_, logits, &orig_.logits);
    for (int l = 0; l <= L; ++l) {
      const auto [rel, cos] = ssp_resid_distance(orig_.hidden[l], h1[l], s_);
      r.resid_rel_l2.push_back(rel);
      r.resid_cos.push_back(cos);
    }
    return r;
  }

 private:
  const Model& m_;
  const std::vector<std::int64_t>& ids_;
  const std::int64_t s_;
  const SspOriginal& orig_;
};

}  // namespace

std::map<std::string, SspDocResult> ssp_measure(const Model& m, const std::vector<std::int64_t>& ids, const SinkBias& b,
                                                const std::vector<SspMode>& modes, const SspOriginal* original) {
  c10::InferenceMode guard;
  const int L = m.spec().n_layers;
  SspOriginal own;
  if (!original) {
    Hooks ho;
    capture_original(ho, own, L);
    m.forward(ids, ho);
    original = &own;
  }
  Scorer sc(m, ids, b.sink, *original);
  std::map<std::string, SspDocResult> out;
  out["original"] = sc.original();
  for (SspMode mode : modes) {
    Hooks hm;
    install_ssp(m, b, mode, hm);
    out[ssp_mode_name(mode)] = sc.run(hm);
  }
  return out;
}

// ---- Windowed attention without the sink

std::string WindowVariant::name() const {
  return "window_w" + std::to_string(window) + "_" + (ssp ? ssp_mode_name(*ssp) : "keep" + std::to_string(keep));
}

std::vector<WindowVariant> window_variants(const std::vector<std::int64_t>& windows,
                                           const std::vector<std::int64_t>& keep, const std::vector<std::string>& ssp) {
  std::vector<WindowVariant> out;
  for (auto W : windows) {
    for (auto k : keep) out.push_back({W, k, std::nullopt});
    for (const auto& name : ssp) out.push_back({W, 0, parse_ssp_mode(name)});
  }
  return out;
}

std::pair<std::int64_t, std::int64_t> window_hidden_rows(const Model& m, int layer, std::int64_t T, std::int64_t s,
                                                         std::int64_t W) {
  const auto& spec = m.spec();
  const std::int64_t Wl = spec.sliding_window.empty() ? 0 : spec.sliding_window.at(layer);
  const std::int64_t begin = std::min(T, s + W), end = Wl > 0 ? std::min(T, s + Wl) : T;
  return {begin, std::max(begin, end)};
}

MuAccumulator observe_mu_window(const Model& m, const std::vector<std::int64_t>& ids, std::int64_t s, std::int64_t W) {
  c10::InferenceMode guard;
  const auto& spec = m.spec();
  const std::int64_t T = static_cast<std::int64_t>(ids.size()), H = spec.n_heads, R = spec.n_rep(), dh = spec.head_dim,
                     d = spec.d_model;
  const int L = spec.n_layers;
  MuAccumulator acc(L, spec.n_heads, d);
  std::vector<at::Tensor> a_sink(L), w_sink(L);  // [H, T] A[i, s]; [H, d] W_O^h v_s^h
  const Model* mp = &m;
  Hooks h;
  // The sink kept as a key under the window: its weights are what the plain window takes away.
  h.set_eval_window({W, s + 1});
  h.set_logits_unused();
  h.add(Hook::V, [&, mp](at::Tensor& v, const HookCtx& c) {
    auto vs = v[s].to(at::kFloat).repeat_interleave(R, 0);
    auto wo = mp->weights().layers[c.layer].wo.to(at::kFloat).view({d, H, dh});
    w_sink[c.layer] = at::einsum("dhk,hk->hd", {wo, vs});
  });
  h.add(Hook::Pattern, [&](at::Tensor& p, const HookCtx& c) {
    auto& a = a_sink[c.layer];
    if (!a.defined()) a = at::zeros({H, T}, p.options().dtype(at::kFloat));
    if (c.q_end > s) a.narrow(1, c.q_begin, c.q_end - c.q_begin).copy_(p.select(2, s));
  });
  m.forward(ids, h);
  for (int l = 0; l < L; ++l) {
    auto [r0, r1] = window_hidden_rows(m, l, T, s, W);
    if (r1 > r0) acc.add(l, a_sink[l].narrow(1, r0, r1 - r0), w_sink[l]);
  }
  return acc;
}

void install_window(const Model& m, const SinkBias& b, const WindowVariant& v, Hooks& hooks) {
  hooks.set_eval_window({v.window, v.keep});
  if (!v.ssp) return;
  const auto& spec = m.spec();
  const std::int64_t s = b.sink, H = spec.n_heads;
  const auto dev = m.device();
  auto bias = ssp_added_bias(b, *v.ssp).to(dev, m.dtype());
  auto keep = (1.0 - b.alpha_bar.to(at::kFloat)).to(dev, m.dtype());  // [L, H]: 1 − ᾱ
  const Model* mp = &m;
  const std::int64_t W = v.window;
  for (int l = 0; l < spec.n_layers; ++l) {
    if (!b.patched.at(l)) continue;
    if (*v.ssp == SspMode::SspDrop) {
      // ssp_drop: the heads' outputs over the window (the sink not among the keys) scaled by the
      // mass the sink had on average in these rows.
      hooks.add(
          Hook::Z,
          [=](at::Tensor& z, const HookCtx& c) {
            auto [r0, r1] = window_hidden_rows(*mp, c.layer, z.size(0), s, W);
            if (r1 > r0) z.narrow(0, r0, r1 - r0).mul_(keep[c.layer].view({1, H, 1}));
          },
          l);
    }
    hooks.add(
        Hook::AttnOut,
        [=](at::Tensor& o, const HookCtx& c) {
          auto [r0, r1] = window_hidden_rows(*mp, c.layer, o.size(0), s, W);
          if (r1 > r0) o.narrow(0, r0, r1 - r0).add_(bias[c.layer]);
        },
        l);
  }
}

std::map<std::string, SspDocResult> window_measure(const Model& m, const std::vector<std::int64_t>& ids,
                                                   std::int64_t sink, const std::vector<WindowVariant>& variants,
                                                   const std::map<std::int64_t, SinkBias>& biases,
                                                   const SspOriginal& original) {
  c10::InferenceMode guard;
  Scorer sc(m, ids, sink, original);
  std::map<std::string, SspDocResult> out;
  static const SinkBias none;
  for (const auto& v : variants) {
    Hooks hm;
    install_window(m, v.ssp ? biases.at(v.window) : none, v, hm);
    out[v.name()] = sc.run(hm);
  }
  return out;
}

}  // namespace sink
