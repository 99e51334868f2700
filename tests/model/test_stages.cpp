// Stage plans (include/sink/model/stages.hpp) on the published configs of data/model_specs:
// consecutive stages of at least one layer covering every layer, the embedding's bytes on the
// first and the head's on the last, the largest stage as small as an exhaustive search over all
// splits finds it, the same plan every time, and `auto` the fewest stages that fit. The bytes
// per part are checked against the tensors really loaded in tests/model/test_stage_load.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <functional>

#include "sink/model/spec.hpp"
#include "sink/model/stages.hpp"
#include "sink/util/error.hpp"

namespace fs = std::filesystem;
using namespace sink;

namespace {

ModelSpec published(const std::string& name) {
  const char* src = std::getenv("SINK_SOURCE_DIR");
  return spec_from_hf_config((fs::path(src ? src : ".") / "data/model_specs" / name / "config.json").string());
}

const char* kSpecs[] = {"tinyllama_1_1b", "llama2_7b_hf", "gemma2_9b",    "gpt_oss_20b",
                        "phi4",           "pythia_6_9b",  "qwen3_8b_base"};

// The smallest largest-stage over every split of [0, L) into n consecutive non-empty stages.
std::int64_t exhaustive_min_max(const ModelSpec& s, int n, const std::string& dtype) {
  const WeightBytes wb = weight_bytes(s, dtype);
  const int L = s.n_layers;
  std::int64_t best = -1;
  std::vector<int> cut;  // stage boundaries
  std::function<void(int, int)> rec = [&](int start, int left) {
    if (left == 1) {
      std::int64_t worst = 0;
      int l0 = 0;
      std::vector<int> b = cut;
      b.push_back(L);
      for (int l1 : b) {
        std::int64_t c = 0;
        for (int l = l0; l < l1; ++l) c += wb.layer[l];
        if (l0 == 0) c += wb.embedding;
        if (l1 == L) c += wb.final_norm + ((s.tied_embeddings && n == 1) ? 0 : wb.head);
        worst = std::max(worst, c);
        l0 = l1;
      }
      if (best < 0 || worst < best) best = worst;
      return;
    }
    for (int c = start + 1; c <= L - (left - 1); ++c) {
      cut.push_back(c);
      rec(c, left - 1);
      cut.pop_back();
    }
  };
  rec(0, n);
  return best;
}

}  // namespace

TEST(StagePlan, ConsecutiveCoveringDeterministic) {
  for (const char* name : kSpecs) {
    const ModelSpec s = published(name);
    const int L = s.n_layers;
    const WeightBytes wb = weight_bytes(s, "bfloat16");
    std::int64_t total = wb.embedding + wb.final_norm + wb.head;
    for (auto b : wb.layer) total += b;
    for (int n = 1; n <= std::min(L, 8); ++n) {
      const StagePlan p = plan_stages(s, n, "bfloat16", 4096);
      ASSERT_EQ(p.n_stages(), n) << name;
      ASSERT_EQ(p.weight_bytes.size(), std::size_t(n)) << name;
      int next = 0;
      std::int64_t sum = 0;
      for (int k = 0; k < n; ++k) {
        EXPECT_EQ(p.layers[k].first, next) << name << " n=" << n << " stage " << k;
        EXPECT_GE(p.layers[k].second - p.layers[k].first, 1) << name << " n=" << n << " stage " << k;
        next = p.layers[k].second;
        sum += p.weight_bytes[k];
      }
      EXPECT_EQ(next, L) << name << " n=" << n;
      // Every byte on exactly one stage (one tensor for both ends of a tied model on one stage).
      EXPECT_EQ(sum, total - (s.tied_embeddings && n == 1 ? wb.head : 0)) << name << " n=" << n;
      EXPECT_GT(p.activation_bytes, 0) << name;
      const StagePlan again = plan_stages(s, n, "bfloat16", 4096);
      EXPECT_EQ(again.layers, p.layers) << name;
      EXPECT_EQ(again.weight_bytes, p.weight_bytes) << name;
    }
  }
}

// Balanced: the largest stage is the least any split achieves (exhaustive search, up to 4 stages).
TEST(StagePlan, LargestStageIsTheLeastPossible) {
  for (const char* name : {"tinyllama_1_1b", "gemma2_9b", "pythia_6_9b", "gpt_oss_20b"}) {
    const ModelSpec s = published(name);
    for (int n = 1; n <= 4; ++n) {
      const StagePlan p = plan_stages(s, n, "float32", 1024);
      EXPECT_EQ(*std::max_element(p.weight_bytes.begin(), p.weight_bytes.end()), exhaustive_min_max(s, n, "float32"))
          << name << " n=" << n;
    }
  }
  // Uniform layers and small ends: stages differ by at most one layer beyond what the ends move.
  const ModelSpec s = published("llama2_7b_hf");
  const StagePlan p = plan_stages(s, 4, "bfloat16", 4096);
  for (auto [l0, l1] : p.layers) EXPECT_NEAR(l1 - l0, 8, 2);
}

TEST(StagePlan, BytesFollowTheDtypeAndMoE) {
  const ModelSpec s = published("tinyllama_1_1b");
  const WeightBytes f = weight_bytes(s, "float32"), h = weight_bytes(s, "bfloat16");
  EXPECT_EQ(f.layer[0], 2 * h.layer[0]);
  EXPECT_EQ(f.embedding, std::int64_t(s.vocab) * s.d_model * 4);
  // GPT-OSS: the experts (E × (d·2f + f·d) plus biases) dominate a layer.
  const ModelSpec o = published("gpt_oss_20b");
  const std::int64_t experts = std::int64_t(o.n_experts) * (3 * std::int64_t(o.d_model) * o.d_ff);
  EXPECT_GT(weight_bytes(o, "bfloat16").layer[0], experts * 2);
  EXPECT_EQ(weight_bytes(o, "bfloat16").layer[0] * 2, weight_bytes(o, "float32").layer[0]);
  // Longer documents need more activation memory; the head's logits are counted on the last stage.
  EXPECT_GT(activation_bytes(s, "float32", 4096, true), activation_bytes(s, "float32", 512, true));
  EXPECT_GT(activation_bytes(s, "float32", 512, true), activation_bytes(s, "float32", 512, false));
}

TEST(StagePlan, AutoPicksTheFewestThatFit) {
  for (const char* name : {"tinyllama_1_1b", "qwen3_8b_base", "gpt_oss_20b"}) {
    const ModelSpec s = published(name);
    const StagePlan p1 = plan_stages(s, 1, "bfloat16", 2048);
    const std::int64_t one = p1.peak_bytes();
    int last = 1;
    // The activations plus a shrinking share of the weights: more stages as the share falls.
    for (double frac : {1.5, 1.0, 0.7, 0.5, 0.3, 0.2, 0.12}) {
      const auto budget = p1.activation_bytes + static_cast<std::int64_t>(p1.weight_bytes[0] * frac);
      const int n = auto_stages(s, "bfloat16", 2048, budget);
      ASSERT_GE(n, 1) << name << " " << frac;
      EXPECT_LE(plan_stages(s, n, "bfloat16", 2048).peak_bytes(), budget) << name << " " << frac;
      if (n > 1) {
        EXPECT_GT(plan_stages(s, n - 1, "bfloat16", 2048).peak_bytes(), budget) << name << " " << frac;
      }
      EXPECT_GE(n, last) << name << ": less memory, never fewer stages";
      last = n;
    }
    EXPECT_GE(last, 5) << name << ": an eighth of the weights needs at least 5 stages";
    EXPECT_EQ(auto_stages(s, "bfloat16", 2048, one), 1) << name;
    EXPECT_EQ(auto_stages(s, "bfloat16", 2048, one - 1), 2) << name;
    EXPECT_EQ(auto_stages(s, "bfloat16", 2048, 1 << 20), 0) << name << ": nothing fits 1 MiB";
  }
}

TEST(StagePlan, Refusals) {
  const ModelSpec s = published("tinyllama_1_1b");  // 22 layers
  EXPECT_THROW(plan_stages(s, 0, "float32", 8), std::invalid_argument);
  EXPECT_THROW(plan_stages(s, 23, "float32", 8), std::invalid_argument);
  EXPECT_NO_THROW(plan_stages(s, 22, "float32", 8));
  EXPECT_NO_THROW(check_stages(2, 22, 4, "c.yaml"));
  EXPECT_NO_THROW(check_stages(3, 22, 0, "c.yaml"));  // group not known yet
  try {
    check_stages(23, 22, 0, "c.yaml");
    ADD_FAILURE();
  } catch (const InputError& e) {
    EXPECT_EQ(e.where(), "c.yaml");
    EXPECT_STREQ(e.what(),
                 "c.yaml: key 'stages': 23 stages for a model of 22 layers (each stage holds at least one layer)");
  }
  try {
    check_stages(3, 22, 4, "c.yaml");
    ADD_FAILURE();
  } catch (const InputError& e) {
    EXPECT_STREQ(e.what(),
                 "c.yaml: key 'stages': 3 stages do not divide the group of 4 ranks (run a multiple of 3 ranks)");
  }
  EXPECT_GT(device_memory_bytes("cpu", 1), device_memory_bytes("cpu", 4));
}
