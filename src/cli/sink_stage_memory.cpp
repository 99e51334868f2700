// sink-stage-memory: peak resident memory of one pipeline stage (issue 18), for 1, 2, 4, ...
// stages of a model, each stage loaded alone in its own process (LoadOptions::layer_begin/end)
// and run once over T tokens; printed beside the stage plan's estimate and as ratios against
// the 1-stage run measured in the same invocation. A benchmark, not a test.
//
//   sink-stage-memory (--model PATH | --random-weights CONFIG.json) [--stages 1,2,4] [--tokens 512]
//                     [--dtype float32|bfloat16] [--threads N]
//
// Peak: VmHWM after a reset through /proc/self/clear_refs, above the process's resident memory
// before the load (libtorch's own pages), so the numbers are the stage's weights and activations.
// A GGUF or safetensors file is memory-mapped: pages of other layers' tensors are never touched,
// so they never count (a stage that read them would show them here).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <malloc.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "sink/cli/args.hpp"
#include "sink/io/gguf.hpp"
#include "sink/model/model.hpp"
#include "sink/model/random.hpp"
#include "sink/model/stages.hpp"
#include "sink/model/weight_source.hpp"
#include "sink/util/error.hpp"

namespace fs = std::filesystem;
using namespace sink;

namespace {

std::int64_t status_kib(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::stoll(line.substr(std::strlen(key)));
  return -1;
}

double gib(double bytes) { return bytes / double(1ull << 30); }

// Bytes of a GGUF file's tensors that stage [l0, l1) of L reads: its blocks, the embedding on
// the first stage, the final norm and the head (or the tied embedding) on the last.
std::int64_t gguf_stage_bytes(const GGUFFile& f, int l0, int l1, int L) {
  const bool tied = f.find("output.weight") == nullptr;
  std::int64_t n = 0;
  for (const auto& t : f.tensors()) {
    bool mine = false;
    if (t.name.rfind("blk.", 0) == 0) {
      const int l = std::stoi(t.name.substr(4));
      mine = l >= l0 && l < l1;
    } else if (t.name == "token_embd.weight") {
      mine = l0 == 0 || (tied && l1 == L);
    } else if (t.name.rfind("output", 0) == 0) {
      mine = l1 == L;
    }
    if (mine) n += static_cast<std::int64_t>(t.nbytes);
  }
  return n;
}

// One stage in this process: prints "base_kib loaded_kib peak_kib resident_bytes seconds".
int child(const Args& a, bool random, const std::string& model, const LoadOptions& opt, std::int64_t T) {
  c10::InferenceMode guard;
  at::ones({1}).sum().item<float>();  // libtorch's start-up allocations before the baseline
  malloc_trim(0);
  const std::int64_t base = status_kib("VmRSS:");
  { std::ofstream("/proc/self/clear_refs") << "5"; }  // VmHWM := VmRSS
  const auto t0 = std::chrono::steady_clock::now();
  // The file's pages this process maps in while loading (RssFile above the start's: libtorch's
  // code pages are file pages too), sampled every millisecond: what of the memory-mapped weights
  // the load touched. The map is gone once the load returns, so it is watched during the load.
  const std::int64_t file_base = status_kib("RssFile:");
  std::atomic<bool> loading{true};
  std::atomic<std::int64_t> file_peak{file_base};
  std::thread watch([&] {
    while (loading) {
      file_peak = std::max<std::int64_t>(file_peak, status_kib("RssFile:"));
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  std::unique_ptr<Model> m;
  try {
    m = random ? random_model(model, opt) : load_model(model, opt);
  } catch (...) {
    loading = false;
    watch.join();
    throw;
  }
  loading = false;
  watch.join();
  const std::int64_t loaded = status_kib("VmRSS:");
  const auto& s = m->spec();
  const auto [l0, l1] = m->layer_range();
  at::Tensor x;
  if (m->has_embedding()) {
    std::vector<std::int64_t> ids;
    for (std::int64_t i = 0; i < T; ++i) ids.push_back((i * 37 + 11) % s.vocab);
    x = m->embed(ids);
  } else {  // what stage k−1 would send: a [T, d] hidden state
    x = at::randn({T, s.d_model}).to(m->dtype());
  }
  x = m->blocks(x, l0, l1);
  if (m->has_head()) x = m->head(x);
  x.sum().item<double>();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%lld %lld %lld %lld %.3f %lld\n", (long long)base, (long long)loaded, (long long)status_kib("VmHWM:"),
              (long long)resident_bytes(m->weights()), secs, (long long)(file_peak - file_base));
  (void)a;
  return 0;
}

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

int body(int argc, char** argv) {
  Args a(argc, argv, {"--model", "--random-weights", "--stages", "--tokens", "--dtype", "--threads", "--layers"},
         {"--help", "--child"});
  if (a.has("--help") || a.has("--model") == a.has("--random-weights")) {
    (a.has("--help") ? std::cout : std::cerr)
        << "usage: sink-stage-memory (--model PATH | --random-weights CONFIG.json) [--stages 1,2,4] [--tokens 512]\n"
           "                         [--dtype float32|bfloat16] [--threads N]\n";
    return a.has("--help") ? 0 : kExitBadInput;
  }
  const bool random = a.has("--random-weights");
  const std::string model = random ? *a.get("--random-weights") : *a.get("--model");
  const std::int64_t T = a.get_int("--tokens", 512, 1, 1 << 20);
  const int threads = static_cast<int>(a.get_int("--threads", std::thread::hardware_concurrency(), 1, 4096));
  LoadOptions opt;
  opt.dtype = a.get_or("--dtype", "float32");
  dtype_bytes(opt.dtype);  // refuses an unknown dtype here
  at::set_num_threads(threads);
  if (a.has("--child")) {
    const auto r = a.get_ints("--layers", "0,-1", -1, 1 << 20);
    if (r.size() != 2) throw InputError("--layers", "expected L0,L1");
    opt.layer_begin = static_cast<int>(r[0]), opt.layer_end = static_cast<int>(r[1]);
    return child(a, random, model, opt, T);
  }

  // The spec alone (no weights read) for the plans.
  ModelSpec spec;
  std::unique_ptr<GGUFFile> gguf;  // its tensor table (metadata only) for the bytes each stage reads
  if (random) {
    spec = spec_from_hf_config(model);
  } else if (fs::is_regular_file(model) && fs::path(model).extension() == ".gguf") {
    spec = open_gguf_model(model).spec;
    gguf = std::make_unique<GGUFFile>(model);
  } else {
    spec = spec_from_hf_config((fs::path(resolve_model_path(model)) / "config.json").string());
  }
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  std::printf(
      "sink-stage-memory: %s (%d layers, d=%d), %s, %lld tokens, %d threads; peak RSS per stage above the "
      "process's start, each stage alone in its own process\n",
      model.c_str(), spec.n_layers, spec.d_model, opt.dtype.c_str(), (long long)T, threads);
  std::printf("%-7s %-6s %-8s %12s %12s %12s %12s %12s %8s", "stages", "stage", "layers", "plan_w_GiB", "plan_act_GiB",
              "held_w_GiB", "loaded_GiB", "peak_GiB", "load+run_s");
  // file_touched: the GGUF's pages mapped in while loading; file_stage: its stage's tensors' bytes.
  if (gguf) std::printf(" %14s %14s", "file_touched_MiB", "file_stage_MiB");
  std::printf("\n");
  double base_peak = 0, base_loaded = 0;
  std::vector<std::string> summary;
  for (auto n : a.get_ints("--stages", "1,2,4", 1, spec.n_layers)) {
    const StagePlan plan = plan_stages(spec, static_cast<int>(n), opt.dtype, T);
    double worst_peak = 0, worst_loaded = 0, worst_plan = 0;
    for (int k = 0; k < plan.n_stages(); ++k) {
      const auto [l0, l1] = plan.layers[k];
      std::string cmd = quote(self) + " --child " + (random ? "--random-weights " : "--model ") + quote(model) +
                        " --dtype " + opt.dtype + " --tokens " + std::to_string(T) + " --threads " +
                        std::to_string(threads) + " --layers " + std::to_string(l0) + "," + std::to_string(l1);
      FILE* p = ::popen(cmd.c_str(), "r");
      if (!p) throw std::runtime_error("cannot start " + self);
      long long base = 0, loaded = 0, peak = 0, held = 0, file_kib = 0;
      double secs = 0;
      const int got = std::fscanf(p, "%lld %lld %lld %lld %lf %lld", &base, &loaded, &peak, &held, &secs, &file_kib);
      if (::pclose(p) != 0 || got != 6) throw std::runtime_error("stage " + std::to_string(k) + " failed: " + cmd);
      const double loaded_b = double(loaded - base) * 1024, peak_b = double(peak - base) * 1024;
      std::printf("%-7lld %-6d %-8s %12.3f %12.3f %12.3f %12.3f %12.3f %8.1f", (long long)n, k,
                  (std::to_string(l0) + "-" + std::to_string(l1 - 1)).c_str(), gib(plan.weight_bytes[k]),
                  gib(plan.activation_bytes), gib(held), gib(loaded_b), gib(peak_b), secs);
      if (gguf)
        std::printf(" %14.1f %14.1f", file_kib / 1024.0, gguf_stage_bytes(*gguf, l0, l1, spec.n_layers) / 1048576.0);
      std::printf("\n");
      std::fflush(stdout);
      worst_peak = std::max(worst_peak, peak_b);
      worst_loaded = std::max(worst_loaded, loaded_b);
      worst_plan = std::max(worst_plan, double(plan.weight_bytes[k]));
    }
    if (n == 1 || base_peak == 0) base_peak = worst_peak, base_loaded = worst_loaded;
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "%lld stage(s): largest stage peak %.3f GiB = %.3f x the 1-stage peak (loaded %.3f x; plan's "
                  "weights %.3f x)",
                  (long long)n, gib(worst_peak), worst_peak / base_peak, worst_loaded / base_loaded,
                  worst_plan / double(plan_stages(spec, 1, opt.dtype, T).weight_bytes[0]));
    summary.push_back(buf);
  }
  for (const auto& s : summary) std::printf("%s\n", s.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return run_cli("sink-stage-memory", body, argc, argv); }
