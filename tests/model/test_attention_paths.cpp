// Each attention path of src/model/attention.cpp called on its own, against the explicit path
// (HF's eager attention, which tests/model/test_parity_hf.py checks against transformers) on
// the same q, k, v: the fused kernel's output, the fused statistics (A[i, j] for the first keys
// and the entropies), and the SSP edits as fused passes (sink key subtracted, sink key dropped
// with the row scale), with and without a sliding window, with the sink at 0 and elsewhere.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "attention.hpp"
#include "sink/model/model.hpp"

namespace fs = std::filesystem;
using namespace sink;
using namespace sink::detail;

namespace {

constexpr double kTol = 2e-6;  // float32, relative to the largest |z|

double rel(const at::Tensor& a, const at::Tensor& b) {
  return ((a.to(at::kDouble) - b.to(at::kDouble)).abs().max() / b.to(at::kDouble).abs().max().clamp_min(1e-30))
      .item<double>();
}

struct Case {
  std::unique_ptr<Model> m;
  at::Tensor q, k, v;
  int layer = 0;
  std::int64_t T;
};

Case make_case(const std::string& family, std::int64_t T) {
  const char* f = std::getenv("SINK_FIXTURES");
  Case c;
  c.m = load_model((fs::path(f ? f : "build/release/fixtures") / "tiny" / family).string(), {});
  c.T = T;
  const auto& s = c.m->spec();
  for (int l = 0; l < s.n_layers; ++l)
    if (s.sliding_window[l] > 0) c.layer = l;  // a windowed layer where there is one
  auto g = at::make_generator<at::CPUGeneratorImpl>(11);
  c.q = at::randn({T, s.n_heads, s.head_dim}, g) * 2;
  c.k = at::randn({T, s.n_kv_heads, s.head_dim}, g) * 2;
  c.v = at::randn({T, s.n_kv_heads, s.head_dim}, g);
  c.k[0].mul_(4);  // a key that takes most of the mass, as a sink does
  return c;
}

// The explicit path over every row, with the pattern rows captured: z [H, T, dh], P [H, T, T].
std::pair<at::Tensor, at::Tensor> explicit_reference(Case& c, const AttnEdit* edit, at::Tensor& sink_w) {
  const auto& s = c.m->spec();
  Hooks h;
  at::Tensor P = at::zeros({s.n_heads, c.T, c.T});
  h.add(Hook::Pattern, [&](at::Tensor& p, const HookCtx& x) {
    P.narrow(1, x.q_begin, x.q_end - x.q_begin).narrow(2, 0, x.q_end).copy_(p);
  });
  AttentionContext ac(c.T, at::kCPU, 16, true);
  LayerAttention a(s, c.m->weights().layers[c.layer], c.layer, c.q, c.k, c.v, h, ac);
  AttentionPlan plan;
  plan.window = s.sliding_window[c.layer];
  plan.edit = edit;
  plan.explicit_rows = c.T;
  at::Tensor z = at::empty({s.n_heads, c.T, s.head_dim});
  attention_explicit(a, plan, z, sink_w);
  return {z, P};
}

class AttentionPaths : public ::testing::TestWithParam<std::string> {};

TEST_P(AttentionPaths, FusedAndStatisticsEqualExplicit) {
  c10::InferenceMode guard;
  Case c = make_case(GetParam(), 40);
  const auto& s = c.m->spec();
  at::Tensor unused;
  auto [z_ref, P] = explicit_reference(c, nullptr, unused);

  Hooks h;
  at::Tensor stats, entropy;
  h.set_attn_stats(c.T, 8);
  h.add(Hook::AttnStats, [&](at::Tensor& a, const HookCtx& x) {
    stats = a.clone();
    entropy = x.entropy->clone();
  });
  AttentionContext ac(c.T, at::kCPU, 16, false);
  LayerAttention a(s, c.m->weights().layers[c.layer], c.layer, c.q, c.k, c.v, h, ac);
  AttentionPlan plan = plan_attention(a);
  ASSERT_EQ(plan.path, AttentionPath::Statistics);

  at::Tensor z = at::empty_like(z_ref);
  attention_statistics(a, plan, z);
  EXPECT_LE(rel(z, z_ref), kTol);
  // exp(scale·q·k − lse) carries the rounding of its argument (|x| up to ~50 here): ~|x|·2^-24.
  EXPECT_LE(rel(stats, P.narrow(2, 0, 8)), 2e-5);
  auto Pd = P.to(at::kDouble);
  auto h_ref = -(Pd * at::where(Pd > 0, Pd.log(), at::zeros_like(Pd))).sum(-1);
  EXPECT_LE((entropy.to(at::kDouble) - h_ref).abs().max().item<double>(), 1e-5);

  AttentionPlan fused;
  fused.window = plan.window;
  at::Tensor zf = at::empty_like(z_ref);
  attention_fused(a, fused, zf);
  EXPECT_LE(rel(zf, z_ref), kTol);
}

TEST_P(AttentionPaths, SspEditsEqualExplicit) {
  c10::InferenceMode guard;
  Case c = make_case(GetParam(), 40);
  const auto& s = c.m->spec();
  for (std::int64_t key : {0, 3}) {
    AttnEdit sub;
    sub.subtract_key = key;
    at::Tensor w_ref, w;
    auto z_ref = explicit_reference(c, &sub, w_ref).first;
    Hooks h;
    AttentionContext ac(c.T, at::kCPU, 16, false);
    LayerAttention a(s, c.m->weights().layers[c.layer], c.layer, c.q, c.k, c.v, h, ac);
    AttentionPlan plan;
    plan.path = AttentionPath::SspSubtract;
    plan.window = s.sliding_window[c.layer];
    plan.edit = &sub;
    at::Tensor z = at::empty_like(z_ref);
    attention_ssp_subtract(a, plan, z, w);
    EXPECT_LE(rel(z, z_ref), kTol) << "subtract, key " << key;
    EXPECT_LE((w - w_ref).abs().max().item<double>(), 1e-6) << "sink weights, key " << key;

    AttnEdit drop;
    drop.drop_key = key;
    drop.row_scale = at::rand({s.n_heads});
    at::Tensor unused;
    auto zd_ref = explicit_reference(c, &drop, unused).first;
    plan.path = AttentionPath::SspDrop;
    plan.edit = &drop;
    at::Tensor zd = at::empty_like(zd_ref);
    attention_ssp_drop(a, plan, zd);
    EXPECT_LE(rel(zd, zd_ref), kTol) << "drop, key " << key;
  }
}

// llama (GQA, no window), mistral (window 16 binding at T = 40), qwen3 (q/k norms).
INSTANTIATE_TEST_SUITE_P(Families, AttentionPaths, ::testing::Values("llama", "mistral", "qwen3"));

}  // namespace
