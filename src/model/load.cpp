// Loading: resolve the path or HF id, read the spec, then fill Weights from the
// family's tensor table, checking every name and shape before anything runs.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "family.hpp"
#include "sink/model/model.hpp"
#include "sink/model/weight_source.hpp"
#include "sink/util/error.hpp"
#include "sink/util/mapped_file.hpp"

namespace sink {
namespace fs = std::filesystem;

std::string resolve_model_path(const std::string& p) {
  if (fs::exists(p)) return p;
  // An HF id "org/name": look in the local hub cache, never on the network.
  auto slash = p.find('/');
  if (slash == std::string::npos || p.find('/', slash + 1) != std::string::npos || p.rfind('.', 0) == 0)
    throw InputError(p, "no such file or directory");
  fs::path hub;
  if (const char* c = std::getenv("HF_HUB_CACHE"))
    hub = c;
  else if (const char* h = std::getenv("HF_HOME"))
    hub = fs::path(h) / "hub";
  else if (const char* home = std::getenv("HOME"))
    hub = fs::path(home) / ".cache" / "huggingface" / "hub";
  const fs::path repo = hub / ("models--" + p.substr(0, slash) + "--" + p.substr(slash + 1));
  if (!fs::is_directory(repo / "snapshots"))
    throw InputError(p, "not a local path and not in the HF cache (" + repo.string() + "); download it first");
  std::string rev;
  if (std::ifstream ref(repo / "refs" / "main"); ref) std::getline(ref, rev);
  if (!rev.empty() && fs::is_directory(repo / "snapshots" / rev)) return (repo / "snapshots" / rev).string();
  // No refs/main: take the most recently written snapshot.
  fs::path best;
  fs::file_time_type best_t{};
  for (const auto& e : fs::directory_iterator(repo / "snapshots"))
    if (e.is_directory() && (best.empty() || e.last_write_time() > best_t))
      best = e.path(), best_t = e.last_write_time();
  if (best.empty()) throw InputError(repo.string(), "HF cache entry has no snapshot");
  return best.string();
}

namespace {

std::string shape_str(at::IntArrayRef s) {
  std::ostringstream o;
  o << '[';
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << ']';
  return o.str();
}

}  // namespace

namespace detail {

std::pair<int, int> stage_layer_range(const LoadOptions& opt, int n_layers, const std::string& where) {
  const int l0 = opt.layer_begin, l1 = opt.layer_end < 0 ? n_layers : opt.layer_end;
  if (l0 < 0 || l1 > n_layers || l0 >= l1)
    throw InputError(where, "layer range [" + std::to_string(opt.layer_begin) + ", " + std::to_string(opt.layer_end) +
                                ") is not a non-empty part of the model's " + std::to_string(n_layers) + " layers");
  return {l0, l1};
}

at::Tensor Taker::raw(const std::string& name, std::vector<std::int64_t> shape) const {
  if (!src.has(name)) throw InputError(src.where(name), "missing tensor '" + name + "'");
  at::Tensor t = src.get(name);
  if (t.sizes() != at::IntArrayRef(shape))
    throw InputError(src.where(name),
                     "tensor '" + name + "' has shape " + shape_str(t.sizes()) + ", expected " + shape_str(shape));
  return t;
}

at::Tensor Taker::operator()(const std::string& name, std::vector<std::int64_t> shape, bool optional) const {
  if (optional && !src.has(name)) return {};
  at::Tensor t = raw(name, shape);
  if (!at::isFloatingType(t.scalar_type()))
    throw InputError(src.where(name), "tensor '" + name + "' is not a floating-point tensor");
  // NaN propagates through min and max, ±Inf shows as one of them: no [numel] mask allocated.
  const auto [lo, hi] = t.numel() ? at::aminmax(t) : std::tuple{at::zeros({}), at::zeros({})};
  if (!std::isfinite(lo.item<double>()) || !std::isfinite(hi.item<double>()))
    throw InputError(src.where(name), "tensor '" + name + "' contains NaN or Inf");
  return convert(t);
}

}  // namespace detail

namespace {
using detail::Taker;

Weights take_weights(const ModelSpec& s, const Taker& take) {
  switch (s.family) {
    case Family::Llama:
    case Family::Mistral:
    case Family::Qwen2:
    case Family::Qwen3:
      return detail::take_llama_like(s, take);
    case Family::Gemma2:
      return detail::take_gemma2(s, take);
    case Family::Gemma3:
      return detail::take_gemma3(s, take);
    case Family::Phi3:
      return detail::take_phi3(s, take);
    case Family::GPTNeoX:
      return detail::take_gpt_neox(s, take);
    case Family::GPTOSS:
      return detail::take_gpt_oss(s, take);
  }
  throw std::logic_error("unknown family");
}

// generation_config.json / tokenizer_config.json details the run needs.
void read_tokenizer_facts(const fs::path& dir, ModelSpec& s) {
  // Llama 2, Mistral and Gemma add BOS; the others do not (HF post-processors).
  s.adds_bos = s.family == Family::Llama || s.family == Family::Mistral || s.family == Family::Gemma2 ||
               s.family == Family::Gemma3;
  const fs::path tc = dir / "tokenizer_config.json";
  if (fs::exists(tc)) {
    try {
      auto j = nlohmann::json::parse(read_text_file(tc.string()));
      if (j.contains("add_bos_token") && j["add_bos_token"].is_boolean()) s.adds_bos = j["add_bos_token"].get<bool>();
    } catch (const nlohmann::json::exception& e) {
      throw InputError(tc.string(), std::string("not valid JSON: ") + e.what());
    }
  }
}

}  // namespace

std::unique_ptr<Model> load_model(const std::string& path_or_id, const LoadOptions& opt) {
  const std::string path = resolve_model_path(path_or_id);
  at::ScalarType dt;
  if (opt.dtype == "float32")
    dt = at::kFloat;
  else if (opt.dtype == "bfloat16")
    dt = at::kBFloat16;
  else if (opt.dtype == "float16")
    dt = at::kHalf;
  else
    throw InputError("dtype", "unknown dtype '" + opt.dtype + "' (float32, bfloat16 or float16)");
  at::Device dev(opt.device == "auto" ? "cpu" : opt.device);
  c10::InferenceMode guard;
  // TF32 off: float32 runs are IEEE float32 on every device (HF's default too), so float32
  // parity holds on Ampere and later GPUs; bfloat16 runs do not use TF32 either way.
  at::globalContext().setFloat32MatmulPrecision("highest");

  ModelSpec spec;
  std::unique_ptr<WeightSource> src;
  if (fs::is_regular_file(path) && fs::path(path).extension() == ".gguf") {
    auto g = open_gguf_model(path);
    spec = std::move(g.spec);
    src = std::move(g.weights);
  } else {
    fs::path dir = fs::is_directory(path) ? fs::path(path) : fs::path(path).parent_path();
    const fs::path cfg = dir / "config.json";
    if (!fs::exists(cfg))
      throw InputError(path, "no config.json here (expected an HF snapshot folder or a .gguf file)");
    spec = spec_from_hf_config(cfg.string());
    read_tokenizer_facts(dir, spec);
    src = open_safetensors_source(dir.string());
  }
  const auto [l0, l1] = detail::stage_layer_range(opt, spec.n_layers, path);
  Taker take{*src, dt, dev, l0, l1, l0 == 0, l1 == spec.n_layers};
  Weights w = take_weights(spec, take);
  auto m = std::make_unique<Model>(std::move(spec), std::move(w), opt);
  m->set_source(path);
  return m;
}

}  // namespace sink
