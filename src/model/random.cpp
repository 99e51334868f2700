// Random-weight models (see include/sink/model/random.hpp).
#include "sink/model/random.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#ifdef SINK_WITH_CUDA
#include <ATen/cuda/CUDAGeneratorImpl.h>
#endif

#include <cmath>
#include <filesystem>
#include <vector>

#include "sink/model/spec.hpp"
#include "sink/util/error.hpp"

namespace sink {
namespace fs = std::filesystem;

std::string random_model_config(const std::string& model) {
  const std::string prefix = kRandomModelPrefix;
  if (model.rfind(prefix, 0) != 0) return "";
  const fs::path p = model.substr(prefix.size());
  const fs::path cfg = fs::is_directory(p) ? p / "config.json" : p;
  if (p.empty() || !fs::is_regular_file(cfg))
    throw InputError(model, "no config.json at '" + cfg.string() + "' (random: takes a config.json or its folder)");
  return cfg.string();
}

namespace {

// splitmix64: the seed of each part (embedding, head, layer l) from the run's seed, so a pipeline
// stage draws its own layers' values without drawing the others'.
std::uint64_t part_seed(std::uint64_t seed, std::uint64_t part) {
  std::uint64_t z = seed + 0x9E3779B97F4A7C15ull * (part + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

std::unique_ptr<Model> random_model(const std::string& config_json, const LoadOptions& opt, std::uint64_t seed) {
  auto spec = spec_from_hf_config(config_json);
  const int n = spec.n_layers;
  const int l0 = opt.layer_begin, l1 = opt.layer_end < 0 ? n : opt.layer_end;
  if (l0 < 0 || l1 > n || l0 >= l1)
    throw InputError(config_json, "layer range [" + std::to_string(opt.layer_begin) + ", " +
                                      std::to_string(opt.layer_end) + ") is not a non-empty part of the model's " +
                                      std::to_string(n) + " layers");
  at::ScalarType dt = opt.dtype == "bfloat16" ? at::kBFloat16 : opt.dtype == "float16" ? at::kHalf : at::kFloat;
  auto o = at::TensorOptions().dtype(dt).device(at::Device(opt.device));
  // One generator per part (embedding, head, each layer), its tensors drawn in a fixed order: the
  // weights depend on the seed alone, and a stage's layers equal the whole model's. On a GPU the
  // GPU's generator draws them there (a CPU draws 7B normals in minutes, serially).
  const at::Device dev(opt.device);
  at::Generator gen;
  auto reseed = [&](std::uint64_t part) {
    const std::uint64_t s = part_seed(seed, part);
#ifdef SINK_WITH_CUDA
    if (dev.is_cuda()) {
      gen = at::cuda::detail::createCUDAGenerator(dev.index());
      gen.set_current_seed(s);
      return;
    }
#endif
    gen = at::detail::createCPUGenerator(s);
  };
  auto rnd = [&](std::vector<std::int64_t> shape) {
    auto t = at::empty(shape, at::TensorOptions().dtype(at::kFloat).device(dev));
    t.normal_(0.0, 1.0 / std::sqrt(double(shape.back())), gen);
    return t.to(dt);
  };
  auto ones = [&](std::int64_t n) { return at::ones({n}, o); };
  const std::int64_t d = spec.d_model, H = spec.n_heads, Hkv = spec.n_kv_heads, dh = spec.head_dim, f = spec.d_ff;
  const std::uint64_t kEmbd = n, kHead = n + 1;  // the parts after the layers' 0..L−1
  Weights w;
  w.layers.resize(n);
  if (l0 == 0) reseed(kEmbd), w.tok_embd = rnd({spec.vocab, d});
  if (l1 == n) {
    w.output_norm = ones(d);
    if (spec.norm == NormKind::LayerNorm) w.output_norm_b = at::zeros({d}, o);
    if (!spec.tied_embeddings)
      reseed(kHead), w.output = rnd({spec.vocab, d});
    else if (w.tok_embd.defined())
      w.output = w.tok_embd;
    else
      reseed(kEmbd), w.output = rnd({spec.vocab, d});  // the last of several stages: the same draw
  }
  for (int l = l0; l < l1; ++l) {
    reseed(static_cast<std::uint64_t>(l));
    LayerWeights& L = w.layers[l];
    L.attn_norm = ones(d);
    L.ffn_norm = ones(d);
    if (spec.norm == NormKind::LayerNorm) L.attn_norm_b = at::zeros({d}, o), L.ffn_norm_b = at::zeros({d}, o);
    L.wq = rnd({H * dh, d});
    L.wk = rnd({Hkv * dh, d});
    L.wv = rnd({Hkv * dh, d});
    L.wo = rnd({d, H * dh});
    if (spec.qkv_bias) L.bq = at::zeros({H * dh}, o), L.bk = at::zeros({Hkv * dh}, o), L.bv = at::zeros({Hkv * dh}, o);
    if (spec.o_bias) L.bo = at::zeros({d}, o);
    if (spec.qk_norm) L.q_norm = ones(dh), L.k_norm = ones(dh);
    if (spec.post_norms) L.post_attn_norm = at::zeros({d}, o), L.post_ffn_norm = at::zeros({d}, o);
    if (spec.attn_sinks) L.sinks = at::zeros({H}, o);
    if (spec.n_experts > 0) {
      const std::int64_t E = spec.n_experts;
      L.router_w = rnd({E, d});
      L.router_b = at::zeros({E}, o);
      L.experts_gate_up = rnd({E, d, 2 * f});
      L.experts_gate_up_b = at::zeros({E, 2 * f}, o);
      L.experts_down = rnd({E, f, d});
      L.experts_down_b = at::zeros({E, d}, o);
    } else {
      if (spec.act != Activation::GELU) L.w_gate = rnd({f, d});
      L.w_up = rnd({f, d});
      L.w_down = rnd({d, f});
      if (spec.mlp_bias || spec.family == Family::GPTNeoX) L.b_up = at::zeros({f}, o), L.b_down = at::zeros({d}, o);
    }
  }
  return std::make_unique<Model>(spec, std::move(w), opt);
}

}  // namespace sink
