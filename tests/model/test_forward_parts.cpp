// The forward in parts: embed, blocks [0, k), keep the hidden state, blocks [k, L), head must
// give logits, hidden states and every hook's output bit-identical to forward(), for k = 1,
// L/2 and L−1, on every family's tiny checkpoint and the real GGUF models. The hook set is
// run three ways so that each attention path is crossed: pattern rows (explicit + fused),
// the fused statistics, and the SSP edits (subtract and drop). forward() itself is checked
// against HF transformers in tests/model/test_parity_hf.py.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <map>

#include "sink/model/model.hpp"
#include "sink/ssp/ssp.hpp"
#include "hook_recorder.hpp"

namespace fs = std::filesystem;
using namespace sink;
using namespace sink::test;

namespace {

void expect_same(const Recorder& a, const Recorder& b, const std::string& what) {
  ASSERT_EQ(a.seen.size(), b.seen.size()) << what;
  for (const auto& [k, v] : a.seen) {
    auto it = b.seen.find(k);
    ASSERT_NE(it, b.seen.end()) << what << ": " << k << " not seen in parts";
    EXPECT_TRUE(v.sizes() == it->second.sizes() && at::equal(v, it->second)) << what << ": " << k << " differs";
  }
}

void check_parts(const std::string& path, const std::string& dtype, std::int64_t T) {
  c10::InferenceMode guard;
  LoadOptions o;
  o.dtype = dtype;
  auto m = load_model(path, o);
  const int L = m->spec().n_layers;
  std::vector<std::int64_t> ids;
  for (std::int64_t i = 0; i < T; ++i) ids.push_back((i * 37 + 11) % m->spec().vocab);
  for (Paths p : {Paths::Pattern, Paths::Statistics, Paths::SspBias, Paths::SspDrop}) {
    Recorder whole;
    const auto logits = m->forward(ids, make_hooks(*m, p, T, whole));
    // The path was taken: the statistics (where the softmax is plain) and the sink weights were seen.
    auto seen = [&](const std::string& part) {
      for (const auto& [k, v] : whole.seen)
        if (k.find(part) != std::string::npos) return true;
      return false;
    };
    const bool plain = m->spec().attn_softcap == 0 && !m->spec().attn_sinks;
    if (p == Paths::Statistics && plain) {
      EXPECT_TRUE(seen("attn.hook_stats")) << path;
    }
    if (p == Paths::Pattern) {
      EXPECT_TRUE(seen("attn.hook_pattern")) << path;
    }
    if (p == Paths::SspBias) {
      EXPECT_TRUE(seen("attn.hook_sink_weight")) << path;
    }
    for (int k : {1, L / 2, L - 1}) {
      const std::string what = path + " " + dtype + " path " + std::to_string(int(p)) + " k=" + std::to_string(k);
      Recorder parts;
      const Hooks h = make_hooks(*m, p, T, parts);
      at::Tensor kept = m->blocks(m->embed(ids), 0, k, h).clone();  // stop after block k−1
      const auto got = m->head(m->blocks(kept, k, L, h), h);        // continue from it later
      ASSERT_TRUE(got.defined() && at::equal(got, logits)) << what << ": logits differ";
      expect_same(whole, parts, what);
    }
  }
}

}  // namespace

class ForwardParts : public ::testing::TestWithParam<std::string> {};

TEST_P(ForwardParts, Float32) { check_parts(fixture(GetParam()), "float32", 40); }
TEST_P(ForwardParts, Bfloat16) { check_parts(fixture(GetParam()), "bfloat16", 40); }

INSTANTIATE_TEST_SUITE_P(Families, ForwardParts,
                         ::testing::Values("llama", "llama3", "mistral", "qwen2", "qwen3", "gemma2", "gemma3",
                                           "gemma3_capped", "phi3", "gpt_neox", "gpt_neox_seq", "gpt_oss",
                                           "gpt_oss_w128"));

// Windows that bind: T beyond the window (mistral's and gemma3's 16, gpt_oss_w128's 128).
TEST(ForwardPartsWindow, BeyondTheWindow) {
  check_parts(fixture("mistral"), "float32", 48);
  check_parts(fixture("gemma3"), "float32", 48);
  check_parts(fixture("gpt_oss_w128"), "float32", 160);
}

TEST(ForwardPartsReal, Stories260K) {
  const char* d = std::getenv("SINK_SHARED_DATA");
  check_parts((fs::path(d ? d : "../shared/data") / "models/stories260K/stories260K.gguf").string(), "float32", 64);
}

TEST(ForwardPartsReal, Gemma3_270M) {
  const char* src = std::getenv("SINK_SOURCE_DIR");
  const auto p = fs::path(src ? src : ".") / "models/gemma-3-270m-q4_k_m.gguf";
  if (!fs::exists(p)) GTEST_FAIL() << p << " missing (tools/setup.sh assembles it)";
  check_parts(p.string(), "float32", 64);
}

TEST(ForwardPartsReal, SmolLM2) {
  const char* src = std::getenv("SINK_SOURCE_DIR");
  const auto p = fs::path(src ? src : ".") / "models/smollm2-135m-instruct.Q4_1.gguf";
  if (!fs::exists(p)) GTEST_FAIL() << p << " missing (tools/setup.sh links it)";
  check_parts(p.string(), "float32", 64);
}
