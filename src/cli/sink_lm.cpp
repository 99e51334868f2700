// sink-lm: run the engine by hand.
//   sink-lm --model PATH_OR_ID (--ids 1,2,3 | --prompt TEXT) [--greedy N]
//           [--dtype float32|bfloat16] [--logits-out FILE.safetensors]
//           [--dump FILE.safetensors] [--threads N] [--device cpu|cuda:N]
// --greedy N prints on stdout only the decoded text of the N generated tokens
// (generation stops early at BOS or EOS, as llama2.c's run.c stops at BOS).
// --logits-out writes float32 `logits` [T, vocab] for the input positions.
// --dump also writes every hidden state (`hidden.{i}`, HF's L+1 convention),
// attention pattern (`attn.{l}` [H, T, T]) and, for models with learned sinks,
// the mass each row gives the sink (`sink_mass.{l}` [H, T]), as float32.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <filesystem>
#include <iostream>
#include <sstream>
#include <thread>

#include "sink/cli/args.hpp"
#include "sink/io/gguf.hpp"
#include "sink/io/safetensors.hpp"
#include "sink/model/model.hpp"
#include "sink/tok/tokenizer.hpp"
#include "sink/util/error.hpp"

namespace fs = std::filesystem;
using namespace sink;

namespace {

std::vector<std::int64_t> parse_ids(const std::string& s) {
  std::vector<std::int64_t> ids;
  std::stringstream ss(s);
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    try {
      size_t pos = 0;
      long long v = std::stoll(tok, &pos);
      if (pos != tok.size() || v < 0) throw std::invalid_argument("");
      ids.push_back(v);
    } catch (const std::exception&) {
      throw InputError("--ids", "'" + tok + "' is not a token id");
    }
  }
  if (ids.empty()) throw InputError("--ids", "no token ids given");
  return ids;
}

std::unique_ptr<Tokenizer> tokenizer_for(const std::string& model_path) {
  if (fs::is_regular_file(model_path) && fs::path(model_path).extension() == ".gguf")
    return load_gguf_tokenizer(GGUFFile(model_path));
  fs::path dir = fs::is_directory(model_path) ? fs::path(model_path) : fs::path(model_path).parent_path();
  return load_tokenizer(dir.string());
}

// The tokenizer file a model path uses, to name it in errors.
std::string tokenizer_path_for(const std::string& model_path) {
  if (fs::is_regular_file(model_path)) return model_path;
  fs::path dir = fs::is_directory(model_path) ? fs::path(model_path) : fs::path(model_path).parent_path();
  for (const char* n : {"tokenizer.json", "tokenizer.model"})
    if (fs::exists(dir / n)) return (dir / n).string();
  return dir.string();
}

void write_tensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& ts) {
  std::vector<at::Tensor> keep;
  std::vector<TensorToWrite> out;
  for (const auto& [name, t] : ts) {
    keep.push_back(t.to(at::kCPU, at::kFloat).contiguous());
    out.push_back({name, DType::F32, keep.back().sizes().vec(), keep.back().data_ptr()});
  }
  write_safetensors(path, out);
}

int body(int argc, char** argv) {
  Args a(argc, argv, {"--model", "--ids", "--prompt", "--greedy", "--dtype", "--logits-out", "--dump", "--threads",
                      "--device", "--attn-chunk"},
         {"--help"});
  if (a.has("--help") || !a.has("--model")) {
    std::cout << "usage: sink-lm --model PATH_OR_ID (--ids 1,2,3 | --prompt TEXT) [--greedy N]\n"
                 "               [--dtype float32|bfloat16] [--logits-out FILE.safetensors] [--dump FILE.safetensors]\n"
                 "               [--threads N] [--device cpu|cuda:N]\n";
    return a.has("--help") ? 0 : kExitBadInput;
  }
  if (a.has("--ids") == a.has("--prompt")) throw InputError("sink-lm", "give exactly one of --ids and --prompt");
  const int threads = static_cast<int>(a.get_int("--threads", std::thread::hardware_concurrency(), 1, 4096));
  at::set_num_threads(threads);

  LoadOptions opt;
  opt.dtype = a.get_or("--dtype", "float32");
  opt.device = a.get_or("--device", "cpu");
  opt.attn_chunk = a.get_int("--attn-chunk", 0, 0, std::int64_t(1) << 30);
  const std::string path = resolve_model_path(*a.get("--model"));
  auto model = load_model(path, opt);
  const auto& spec = model->spec();

  std::unique_ptr<Tokenizer> tok;
  std::vector<std::int64_t> ids;
  if (a.has("--prompt")) {
    tok = tokenizer_for(path);
    for (auto id : tok->encode(*a.get("--prompt"), /*add_special=*/true)) ids.push_back(id);
    if (ids.empty()) throw InputError("--prompt", "gives no tokens (an empty prompt, and this tokenizer adds no BOS)");
  } else {
    ids = parse_ids(*a.get("--ids"));
  }
  // Ids the tokenizer made are the tokenizer's (or the model's) fault, not --ids'.
  const std::string blame = a.has("--prompt") ? tokenizer_path_for(path) : "--ids";
  for (auto id : ids)
    if (id >= spec.vocab)
      throw InputError(blame, "token id " + std::to_string(id) + " outside the model's vocabulary (" +
                                  std::to_string(spec.vocab) + ", " + path + ")");

  c10::InferenceMode guard;
  if (a.has("--logits-out") || a.has("--dump")) {
    Hooks hooks;
    std::vector<std::pair<std::string, at::Tensor>> dump;
    const bool full = a.has("--dump");
    const auto T = static_cast<std::int64_t>(ids.size());
    std::vector<at::Tensor> attn(spec.n_layers), sink_mass(spec.n_layers);
    if (full) {
      hooks.add(Hook::ResidPre, [&](at::Tensor& x, const HookCtx& c) {
        if (c.layer == 0) dump.push_back({"hidden.0", x.clone()});
      });
      hooks.add(Hook::ResidPost, [&](at::Tensor& x, const HookCtx& c) {
        if (c.layer + 1 < spec.n_layers) dump.push_back({"hidden." + std::to_string(c.layer + 1), x.clone()});
      });
      hooks.add(Hook::FinalNorm, [&](at::Tensor& x, const HookCtx&) {
        dump.push_back({"hidden." + std::to_string(spec.n_layers), x.clone()});
      });
      hooks.add(Hook::Pattern, [&](at::Tensor& p, const HookCtx& c) {
        auto& A = attn[c.layer];
        if (!A.defined()) A = at::zeros({spec.n_heads, T, T}, p.options().dtype(at::kFloat));
        A.narrow(1, c.q_begin, c.q_end - c.q_begin).narrow(2, 0, c.q_end).copy_(p);
        if (c.sink_mass) {
          auto& S = sink_mass[c.layer];
          if (!S.defined()) S = at::zeros({spec.n_heads, T}, p.options().dtype(at::kFloat));
          S.narrow(1, c.q_begin, c.q_end - c.q_begin).copy_(*c.sink_mass);
        }
      });
    }
    auto logits = model->forward(ids, hooks);
    if (a.has("--logits-out")) write_tensors(*a.get("--logits-out"), {{"logits", logits}});
    if (full) {
      dump.push_back({"logits", logits});
      for (int l = 0; l < spec.n_layers; ++l) {
        dump.push_back({"attn." + std::to_string(l), attn[l]});
        if (sink_mass[l].defined()) dump.push_back({"sink_mass." + std::to_string(l), sink_mass[l]});
      }
      write_tensors(*a.get("--dump"), dump);
    }
  }

  if (a.has("--greedy")) {
    const auto n = a.get_int("--greedy", 0, 0, 1 << 24);
    if (!tok) tok = tokenizer_for(path);
    std::vector<std::int32_t> gen;
    auto seq = ids;
    for (long long i = 0; i < n; ++i) {
      auto logits = model->forward(seq);
      const std::int64_t next = logits[-1].argmax().item<std::int64_t>();
      if ((spec.bos_id && next == *spec.bos_id) || (spec.eos_id && next == *spec.eos_id)) break;
      seq.push_back(next);
      gen.push_back(static_cast<std::int32_t>(next));
    }
    std::cout << tok->decode(gen, /*skip_special=*/true) << std::flush;
  } else if (!a.has("--logits-out") && !a.has("--dump")) {
    // No output requested: print the argmax of each position, one per line.
    auto logits = model->forward(ids);
    auto am = logits.argmax(-1).to(at::kCPU);
    for (std::int64_t i = 0; i < am.size(0); ++i) std::cout << am[i].item<std::int64_t>() << '\n';
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return run_cli("sink-lm", body, argc, argv); }
