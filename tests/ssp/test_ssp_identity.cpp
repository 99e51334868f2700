// The identity check of SPEC §4: patching each layer with the sink's exact
// per-position contribution (instead of its mean μ) must give back the
// original logits, for every family. The reference is the unpatched forward
// of the same engine, which tests/model checks against HF transformers.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "sink/model/model.hpp"
#include "sink/ssp/ssp.hpp"

namespace fs = std::filesystem;
using namespace sink;

namespace {
std::string tiny(const std::string& name) {
  const char* f = std::getenv("SINK_FIXTURES");
  return (fs::path(f ? f : "build/release/fixtures") / "tiny" / name).string();
}

void check_identity(const std::string& family, const std::string& dtype, double tol) {
  c10::InferenceMode guard;
  LoadOptions o;
  o.dtype = dtype;
  auto m = load_model(tiny(family), o);
  std::vector<std::int64_t> ids;
  for (int i = 0; i < 40; ++i) ids.push_back((i * 37 + 11) % m->spec().vocab);
  auto ref = m->forward(ids).to(at::kFloat);
  for (std::int64_t sink : {0, 3}) {
    SinkBias b;
    b.sink = sink;
    b.patched.assign(m->spec().n_layers, true);
    const auto L = m->spec().n_layers, H = m->spec().n_heads, d = m->spec().d_model;
    b.mu = at::zeros({L, d});
    b.mu_head = at::zeros({L, H, d});
    b.alpha_bar = at::zeros({L, H});
    Hooks h;
    install_ssp(*m, b, SspMode::Exact, h);
    auto got = m->forward(ids, h).to(at::kFloat);
    const double rel = ((got - ref).abs().max() / ref.abs().max()).item<double>();
    EXPECT_LE(rel, tol) << family << " " << dtype << " sink " << sink;
    // And the patch is not a no-op: removing the sink (zero) changes the logits.
    Hooks z;
    install_ssp(*m, b, SspMode::Zero, z);
    auto zero = m->forward(ids, z).to(at::kFloat);
    EXPECT_GT(((zero - ref).abs().max() / ref.abs().max()).item<double>(), 1e-4) << family;
  }
}
}  // namespace

class SspIdentity : public ::testing::TestWithParam<std::string> {};

TEST_P(SspIdentity, ExactContributionReproducesLogitsFloat32) { check_identity(GetParam(), "float32", 1e-5); }
TEST_P(SspIdentity, ExactContributionReproducesLogitsBfloat16) { check_identity(GetParam(), "bfloat16", 5e-2); }

INSTANTIATE_TEST_SUITE_P(Families, SspIdentity,
                         ::testing::Values("llama", "llama3", "mistral", "qwen2", "qwen3", "gemma2", "gemma3",
                                           "gemma3_capped", "phi3", "gpt_neox", "gpt_neox_seq", "gpt_oss"));
