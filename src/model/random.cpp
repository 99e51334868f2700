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

std::unique_ptr<Model> random_model(const std::string& config_json, const LoadOptions& opt, std::uint64_t seed) {
  auto spec = spec_from_hf_config(config_json);
  at::ScalarType dt = opt.dtype == "bfloat16" ? at::kBFloat16 : opt.dtype == "float16" ? at::kHalf : at::kFloat;
  auto o = at::TensorOptions().dtype(dt).device(at::Device(opt.device));
  // One generator, tensors drawn in a fixed order: the weights depend on the seed alone. On a GPU
  // the GPU's generator draws them there (a CPU draws 7B normals in minutes, serially).
  const at::Device dev(opt.device);
  at::Generator gen;
#ifdef SINK_WITH_CUDA
  if (dev.is_cuda()) {
    gen = at::cuda::detail::createCUDAGenerator(dev.index());
    gen.set_current_seed(seed);
  }
#endif
  if (!gen.defined()) gen = at::detail::createCPUGenerator(seed);
  auto rnd = [&](std::vector<std::int64_t> shape) {
    auto t = at::empty(shape, at::TensorOptions().dtype(at::kFloat).device(dev));
    t.normal_(0.0, 1.0 / std::sqrt(double(shape.back())), gen);
    return t.to(dt);
  };
  auto ones = [&](std::int64_t n) { return at::ones({n}, o); };
  const std::int64_t d = spec.d_model, H = spec.n_heads, Hkv = spec.n_kv_heads, dh = spec.head_dim, f = spec.d_ff;
  Weights w;
  w.tok_embd = rnd({spec.vocab, d});
  w.output_norm = ones(d);
  if (spec.norm == NormKind::LayerNorm) w.output_norm_b = at::zeros({d}, o);
  w.output = spec.tied_embeddings ? w.tok_embd : rnd({spec.vocab, d});
  for (int l = 0; l < spec.n_layers; ++l) {
    LayerWeights L;
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
    w.layers.push_back(std::move(L));
  }
  return std::make_unique<Model>(spec, std::move(w), opt);
}

}  // namespace sink
