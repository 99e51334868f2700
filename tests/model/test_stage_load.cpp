// Pipeline stages loaded apart (LoadOptions::layer_begin/layer_end, issue 18): a chain
// embed → blocks → … → head across separately loaded stage models gives logits and every hook's
// output bit-identical to the whole model's forward(), on every family's tiny checkpoint (every
// split into consecutive stages, and stories260K's) and the real GGUF models SmolLM2 and Gemma 3
// 270M (their 3-stage plans: a first, a middle and a last stage). A stage holds its own layers'
// tensors only (the others undefined), the embedding only on the first, the final norm and head
// only on the last, and its resident bytes are exactly the plan's. The chain
// is checked against forward(), which tests/model/test_parity_hf.py checks against HF. Tensors
// outside a stage are never read (poisoned with NaN in a copy of a checkpoint, the stage loads).
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>

#include "sink/model/model.hpp"
#include "sink/model/random.hpp"
#include "sink/model/stages.hpp"
#include "sink/model/weight_source.hpp"
#include "sink/ssp/ssp.hpp"
#include "sink/util/error.hpp"
#include "hook_recorder.hpp"

namespace fs = std::filesystem;
using namespace sink;
using namespace sink::test;

namespace {

bool any_defined(const LayerWeights& L) {
  for (const auto* t : L.all())
    if (t->defined()) return true;
  return false;
}

// Every split of [0, L) into at least two consecutive stages (L small), as [l0, l1) lists.
std::vector<std::vector<std::pair<int, int>>> all_splits(int L) {
  std::vector<std::vector<std::pair<int, int>>> out;
  for (unsigned mask = 1; mask < (1u << (L - 1)); ++mask) {  // bit i: a stage boundary after layer i
    std::vector<std::pair<int, int>> s;
    int l0 = 0;
    for (int i = 0; i < L - 1; ++i)
      if (mask & (1u << i)) s.push_back({l0, i + 1}), l0 = i + 1;
    s.push_back({l0, L});
    out.push_back(s);
  }
  return out;
}

using Loader = std::function<std::unique_ptr<Model>(const LoadOptions&)>;

// The stages hold what they should and no more, in exactly the plan's bytes.
void check_holdings(const std::vector<std::unique_ptr<Model>>& st, const std::vector<std::pair<int, int>>& split,
                    const std::string& dtype, const std::string& what) {
  const auto& s = st[0]->spec();
  const int L = s.n_layers;
  const WeightBytes wb = weight_bytes(s, dtype);
  for (std::size_t k = 0; k < st.size(); ++k) {
    const auto& m = *st[k];
    const auto [l0, l1] = split[k];
    ASSERT_EQ(m.layer_range(), split[k]) << what;
    ASSERT_EQ(static_cast<int>(m.weights().layers.size()), L) << what;
    for (int l = 0; l < L; ++l)
      EXPECT_EQ(any_defined(m.weights().layers[l]), l >= l0 && l < l1) << what << " stage " << k << " layer " << l;
    EXPECT_EQ(m.has_embedding(), l0 == 0) << what << " stage " << k;
    EXPECT_EQ(m.weights().tok_embd.defined(), l0 == 0) << what << " stage " << k;
    EXPECT_EQ(m.has_head(), l1 == L) << what << " stage " << k;
    EXPECT_EQ(m.weights().output_norm.defined(), l1 == L) << what << " stage " << k;
    std::int64_t want = 0;
    for (int l = l0; l < l1; ++l) want += wb.layer[l];
    if (l0 == 0) want += wb.embedding;
    if (l1 == L) want += wb.final_norm + wb.head;  // a tied head is the embedding's copy here
    EXPECT_EQ(resident_bytes(m.weights()), want) << what << " stage " << k;
    // What a stage lacks, it refuses: the embedding, the head, layers beyond its own.
    if (l0 > 0) {
      EXPECT_THROW(m.embed({1, 2}), std::logic_error) << what;
    }
    if (l1 < L) {
      EXPECT_THROW(m.head(at::zeros({2, s.d_model})), std::logic_error) << what;
    }
    EXPECT_THROW(m.blocks(at::zeros({2, s.d_model}, at::TensorOptions().dtype(m.dtype())), l0 > 0 ? l0 - 1 : l0,
                          l1 < L ? l1 + 1 : l1),
                 std::invalid_argument)
        << what;
  }
}

const std::vector<Paths> kAllPaths = {Paths::Pattern, Paths::Statistics, Paths::SspBias, Paths::SspDrop};

void check_chain(const Loader& load, const std::string& name, const std::string& dtype, std::int64_t T,
                 std::vector<std::vector<std::pair<int, int>>> splits, const std::vector<Paths>& paths = kAllPaths) {
  c10::InferenceMode guard;
  LoadOptions o;
  o.dtype = dtype;
  auto m = load(o);
  const auto& s = m->spec();
  const int L = s.n_layers;
  // A whole model holds everything once: a tied head is the embedding itself.
  if (s.tied_embeddings) {
    EXPECT_TRUE(m->weights().output.is_same(m->weights().tok_embd)) << name;
  }
  EXPECT_EQ(resident_bytes(m->weights()), plan_stages(s, 1, dtype, T).weight_bytes[0]) << name;
  std::vector<std::int64_t> ids;
  for (std::int64_t i = 0; i < T; ++i) ids.push_back((i * 37 + 11) % s.vocab);
  for (const auto& split : splits) {
    std::string what = name + " " + dtype + " stages";
    for (auto [l0, l1] : split) what += " [" + std::to_string(l0) + "," + std::to_string(l1) + ")";
    std::vector<std::unique_ptr<Model>> st;
    for (auto [l0, l1] : split) {
      LoadOptions so = o;
      so.layer_begin = l0;
      so.layer_end = l1 == L ? -1 : l1;  // −1 and L alike
      st.push_back(load(so));
    }
    check_holdings(st, split, dtype, what);
    for (Paths p : paths) {
      Recorder whole, parts;
      const auto logits = m->forward(ids, make_hooks(*m, p, T, whole));
      at::Tensor x = st[0]->embed(ids);
      for (std::size_t k = 0; k < st.size(); ++k) {
        const Hooks h = make_hooks(*st[k], p, T, parts);
        x = st[k]->blocks(x.clone(), split[k].first, split[k].second, h);  // as received from stage k−1
        if (k + 1 == st.size()) x = st[k]->head(x, h);
      }
      ASSERT_TRUE(x.defined() && at::equal(x, logits)) << what << " path " << int(p) << ": logits differ";
      ASSERT_EQ(whole.seen.size(), parts.seen.size()) << what;
      for (const auto& [k, v] : whole.seen) {
        auto it = parts.seen.find(k);
        ASSERT_NE(it, parts.seen.end()) << what << ": " << k << " not seen across the stages";
        EXPECT_TRUE(v.sizes() == it->second.sizes() && at::equal(v, it->second)) << what << ": " << k << " differs";
      }
    }
  }
}

// The spec without loading weights (GGUF metadata, or the folder's config.json).
ModelSpec spec_of(const std::string& path) {
  if (fs::path(path).extension() == ".gguf") return open_gguf_model(path).spec;
  return spec_from_hf_config((fs::path(path) / "config.json").string());
}

// Tiny checkpoints: every split and every attention path. The real models (a minute of loading
// each): the 3-stage plan (a first, a middle and a last stage), through the fused statistics and
// the SSP edits; the other paths are the same code on the stage as on the whole model
// (test_forward_parts.cpp crosses them all on the whole model).
void check_path(const std::string& path, const std::string& dtype, std::int64_t T, bool tiny) {
  Loader load = [&](const LoadOptions& o) { return load_model(path, o); };
  const ModelSpec spec = spec_of(path);
  if (tiny)
    check_chain(load, path, dtype, T, all_splits(spec.n_layers));
  else
    check_chain(load, path, dtype, T, {plan_stages(spec, 3, dtype, T).layers}, {Paths::Statistics, Paths::SspBias});
}

}  // namespace

class StageLoad : public ::testing::TestWithParam<std::string> {};

TEST_P(StageLoad, Float32) { check_path(fixture(GetParam()), "float32", 40, true); }
TEST_P(StageLoad, Bfloat16) { check_path(fixture(GetParam()), "bfloat16", 40, true); }

INSTANTIATE_TEST_SUITE_P(Families, StageLoad,
                         ::testing::Values("llama", "llama3", "mistral", "qwen2", "qwen3", "gemma2", "gemma3",
                                           "gemma3_capped", "phi3", "gpt_neox", "gpt_neox_seq", "gpt_oss",
                                           "gpt_oss_w128"));

// Random weights (model: random:CONFIG): a stage draws its own layers, equal to the whole model's.
TEST(StageLoadRandom, TinyLlamaShape) {
  const std::string cfg = fixture("llama") + "/config.json";
  Loader load = [&](const LoadOptions& o) { return random_model(cfg, o); };
  check_chain(load, "random:" + cfg, "float32", 40, all_splits(3));
}

TEST(StageLoadReal, Stories260K) {
  const char* d = std::getenv("SINK_SHARED_DATA");
  check_path((fs::path(d ? d : "../shared/data") / "models/stories260K/stories260K.gguf").string(), "float32", 64,
             true);
}

TEST(StageLoadReal, Gemma3_270M) {
  const char* src = std::getenv("SINK_SOURCE_DIR");
  const auto p = fs::path(src ? src : ".") / "models/gemma-3-270m-q4_k_m.gguf";
  if (!fs::exists(p)) GTEST_FAIL() << p << " missing (tools/setup.sh assembles it)";
  check_path(p.string(), "float32", 64, false);
}

TEST(StageLoadReal, SmolLM2) {
  const char* src = std::getenv("SINK_SOURCE_DIR");
  const auto p = fs::path(src ? src : ".") / "models/smollm2-135m-instruct.Q4_1.gguf";
  if (!fs::exists(p)) GTEST_FAIL() << p << " missing (tools/setup.sh links it)";
  check_path(p.string(), "float32", 64, false);
}

// Bad ranges are refused with the file named; a stage count beyond the layers is refused by the plan.
TEST(StageLoadErrors, Ranges) {
  const auto p = fixture("llama");
  for (auto [b, e] : {std::pair{-1, 2}, {2, 2}, {0, 4}, {3, -1}}) {
    LoadOptions o;
    o.layer_begin = b, o.layer_end = e;
    EXPECT_THROW(load_model(p, o), InputError) << b << "," << e;
  }
  EXPECT_THROW(plan_stages(spec_of(p), 4, "float32", 8), std::invalid_argument);
}

// What lies outside a stage is never read: NaN written into the embedding, the head and the first
// and last layers' q_proj of a copy of the tiny llama checkpoint (the loader refuses a tensor with
// NaN, so reading any of them would fail the load): the middle stage loads, and every range that
// holds one of them is refused, naming the tensor.
TEST(StageLoadUntouched, OtherTensorsNeverRead) {
  const fs::path dir = fs::temp_directory_path() / ("sink_stage_untouched_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::copy(fixture("llama"), dir);
  const fs::path st = dir / "model.safetensors";
  const int L = spec_of(dir.string()).n_layers;
  ASSERT_GE(L, 3);
  {
    std::fstream f(st, std::ios::in | std::ios::out | std::ios::binary);
    std::uint64_t n = 0;
    f.read(reinterpret_cast<char*>(&n), 8);
    std::string h(n, '\0');
    f.read(h.data(), static_cast<std::streamsize>(n));
    const auto hdr = nlohmann::json::parse(h);
    const std::string last = "model.layers." + std::to_string(L - 1) + ".self_attn.q_proj.weight";
    for (const std::string& name : {std::string("model.embed_tokens.weight"), std::string("lm_head.weight"),
                                    std::string("model.layers.0.self_attn.q_proj.weight"), last}) {
      ASSERT_EQ(hdr.at(name).at("dtype"), "F32") << name;
      const auto b = hdr.at(name).at("data_offsets")[0].get<std::uint64_t>();
      const auto e = hdr.at(name).at("data_offsets")[1].get<std::uint64_t>();
      const std::vector<float> nan((e - b) / 4, std::numeric_limits<float>::quiet_NaN());
      f.seekp(static_cast<std::streamoff>(8 + n + b));
      f.write(reinterpret_cast<const char*>(nan.data()), static_cast<std::streamsize>(e - b));
    }
  }
  auto stage = [&](int l0, int l1) {
    LoadOptions o;
    o.layer_begin = l0, o.layer_end = l1;
    return load_model(dir.string(), o);
  };
  EXPECT_NO_THROW(stage(1, L - 1));
  for (auto [l0, l1] : {std::pair{0, L}, {0, 1}, {L - 1, L}, {0, L - 1}, {1, L}}) {
    try {
      stage(l0, l1);
      ADD_FAILURE() << "[" << l0 << ", " << l1 << ") loaded a poisoned tensor";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("contains NaN or Inf"), std::string::npos) << e.what();
    }
  }
  fs::remove_all(dir);
}
