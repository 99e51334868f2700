// sink-bench: speed and memory of our plain forward, the observation pass
// (every step; alone, and keeping the logits as it does when SSP runs) and an
// SSP pass per mode, against HF transformers (HF's plain sdpa forward; eager
// with output_attentions + output_hidden_states, the seed's way; and that
// forward plus the seed's statistics from its outputs, the same job) measured
// in the same run through the project's Python reference environment. Prints
// ratios, not only times.
//
//   sink-bench (--model PATH | --random-weights CONFIG.json) [--lengths 512,2048] [--threads N]
//              [--dtype float32|bfloat16] [--reps 3] [--no-hf] [--python PATH] [--device cpu|cuda:N]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <c10/core/InferenceMode.h>
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "sink/cli/args.hpp"
#include "sink/metrics/observe.hpp"
#include "sink/model/model.hpp"
#include "sink/model/random.hpp"
#include "sink/ssp/ssp.hpp"
#include "sink/util/error.hpp"
#ifdef SINK_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace fs = std::filesystem;
using namespace sink;

namespace {

// Peak memory of one pass. On the CPU: resident memory (VmHWM after a reset through
// clear_refs) above what was resident before. glibc keeps the pages a previous pass freed
// and hands them out again, which would hide the next pass's peak, so the heap is trimmed
// (free pages back to the kernel) first; that makes the pass fault its pages in again, so
// memory is measured in one extra untimed run of each pass, never in a timed one. The HF
// child does the same. On a GPU: the caching allocator's peak of allocated bytes.
double proc_status_mib(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::stod(line.substr(std::strlen(key))) / 1024.0;
  return -1;
}

struct PeakMeter {
  at::Device dev;
  double base = 0;
  void reset() {
    if (dev.is_cuda()) {
#ifdef SINK_WITH_CUDA
      c10::cuda::CUDACachingAllocator::resetPeakStats(dev.index());
      base = c10::cuda::CUDACachingAllocator::getDeviceStats(dev.index()).allocated_bytes[0].current / 1048576.0;
#endif
      return;
    }
    malloc_trim(0);
    base = proc_status_mib("VmRSS:");
    std::ofstream f("/proc/self/clear_refs");
    f << "5";
  }
  // Waits for the device (a CUDA pass returns before its kernels finish).
  void sync() const {
#ifdef SINK_WITH_CUDA
    if (dev.is_cuda()) c10::cuda::device_synchronize();
#endif
  }
  double extra_mib() const {
#ifdef SINK_WITH_CUDA
    if (dev.is_cuda())
      return c10::cuda::CUDACachingAllocator::getDeviceStats(dev.index()).allocated_bytes[0].peak / 1048576.0 - base;
#endif
    return proc_status_mib("VmHWM:") - base;
  }
};

struct Measure {
  double seconds = 0, peak_extra_mib = 0;
  double issue_seconds = 0;  // until the pass returned, before waiting for the device
};

// Every pass warmed up once, then timed `reps` times round-robin (pass A, B, C, A, B, C,
// ...), so that a slow spell of the machine lands on every pass alike; median per pass.
// Then one untimed run of each for its peak memory (see PeakMeter).
std::vector<Measure> measure_interleaved(PeakMeter& meter, int reps, const std::vector<std::function<void()>>& passes) {
  for (const auto& fn : passes) fn();  // warm-up
  meter.sync();
  std::vector<std::vector<double>> t(passes.size()), issue(passes.size());
  std::vector<Measure> out(passes.size());
  auto since = [](auto t0) { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  for (int r = 0; r < reps; ++r)
    for (std::size_t p = 0; p < passes.size(); ++p) {
      auto t0 = std::chrono::steady_clock::now();
      passes[p]();
      issue[p].push_back(since(t0));
      meter.sync();
      t[p].push_back(since(t0));
    }
  for (std::size_t p = 0; p < passes.size(); ++p) {
    std::sort(t[p].begin(), t[p].end());
    std::sort(issue[p].begin(), issue[p].end());
    out[p].seconds = t[p][t[p].size() / 2];
    out[p].issue_seconds = issue[p][issue[p].size() / 2];
    meter.reset();
    passes[p]();
    meter.sync();
    out[p].peak_extra_mib = meter.extra_mib();
  }
  return out;
}

// ATen operator calls of one pass, by name (nested calls included: linear → matmul → mm).
// On a GPU every small operator is at least one kernel launch, and a pass whose layers
// issue hundreds of them is bound by the host, not by the card: this count shows it.
struct OpCounts {
  std::map<std::string, long> calls;      // every call, nested ones included
  std::map<std::string, double> seconds;  // self time: wall time less that of the calls nested in it
};
OpCounts count_ops(const std::function<void()>& pass) {
  struct Started : at::ObserverContext {
    std::chrono::steady_clock::time_point t;
  };
  static std::mutex mu;
  static OpCounts* counts = nullptr;
  static thread_local std::vector<double> nested;  // per open call: time spent in its nested calls
  OpCounts out;
  counts = &out;
  auto start = [](const at::RecordFunction& fn) -> std::unique_ptr<at::ObserverContext> {
    auto c = std::make_unique<Started>();
    nested.push_back(0.0);
    {
      std::lock_guard<std::mutex> lock(mu);
      if (counts) ++counts->calls[fn.name()];
    }
    c->t = std::chrono::steady_clock::now();
    return c;
  };
  auto end = [](const at::RecordFunction& fn, at::ObserverContext* ctx) {
    const double dt =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - static_cast<Started*>(ctx)->t).count();
    const double self = dt - nested.back();
    nested.pop_back();
    if (!nested.empty()) nested.back() += dt;
    std::lock_guard<std::mutex> lock(mu);
    if (counts) counts->seconds[fn.name()] += self;
  };
  auto handle = at::addGlobalCallback(
      at::RecordFunctionCallback(start, end).needsInputs(false).scopes({at::RecordScope::FUNCTION}));
  pass();
  at::removeCallback(handle);
  std::lock_guard<std::mutex> lock(mu);
  counts = nullptr;
  return out;
}

long total(const std::map<std::string, long>& m) {
  long n = 0;
  for (const auto& [k, v] : m) n += v;
  return n;
}

// The twelve keys by which `more` exceeds `base` most, printed as "name value" after scaling.
template <class V>
void print_largest_excess(const std::map<std::string, V>& more, const std::map<std::string, V>& base,
                          const std::function<double(double)>& scale, const char* fmt) {
  std::vector<std::pair<double, std::string>> extra;
  for (const auto& [k, v] : more) {
    auto it = base.find(k);
    const double d = double(v) - (it == base.end() ? 0.0 : double(it->second));
    if (d > 0) extra.push_back({d, k});
  }
  std::sort(extra.rbegin(), extra.rend());
  for (std::size_t i = 0; i < extra.size() && i < 12; ++i) {
    std::printf("%s %s ", i ? "," : "", extra[i].second.c_str());
    std::printf(fmt, scale(extra[i].first));
  }
  std::printf("\n");
}

std::string run_hf(const std::string& py, const std::string& model, bool random, int T, int threads,
                   const std::string& dtype, const std::string& device, int reps, const std::string& mode) {
  std::ostringstream cmd;
  cmd << py << " tools/bench/hf_bench.py --model '" << model << "' --T " << T << " --threads " << threads << " --dtype "
      << dtype << " --device " << device << " --reps " << reps << " --mode " << mode
      << (random ? " --random-weights" : "") << " 2>/dev/null";
  std::string out;
  if (FILE* p = popen(cmd.str().c_str(), "r")) {
    char buf[512];
    while (fgets(buf, sizeof buf, p)) out += buf;
    const int st = pclose(p);
    // sh reports a child killed by signal N as exit status 128 + N.
    const int sig = st == -1 ? 0 : WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st) > 128 ? WEXITSTATUS(st) - 128 : 0;
    if (out.empty() && sig)
      out = "killed by signal " + std::to_string(sig) + (sig == SIGKILL ? " (out of memory?)" : "");
    else if (out.empty() && st != -1)
      out = "exit status " + std::to_string(WEXITSTATUS(st));
  }
  return out;
}

const char* hf_label(const std::string& mode) {
  if (mode == "sdpa") return "plain forward (sdpa)";
  if (mode == "eager_outputs") return "eager + output_attentions/hidden";
  return "eager + outputs + statistics";  // eager_job: the seed study's whole per-document job
}

// Largest |a − b| relative to max |b| (NaNs where both are NaN are equal).
double rel_diff(const at::Tensor& a, const at::Tensor& b) {
  auto x = a.to(at::kCPU, at::kDouble), y = b.to(at::kCPU, at::kDouble);
  auto both_nan = at::logical_and(at::isnan(x), at::isnan(y));
  auto d = at::where(both_nan, at::zeros_like(x), (x - y).abs());
  const double scale = at::where(at::isnan(y), at::zeros_like(y), y.abs()).max().item<double>();
  return d.max().item<double>() / std::max(scale, 1e-30);
}

double field(const std::string& json, const std::string& key) {
  auto k = json.find("\"" + key + "\"");
  if (k == std::string::npos) return -1;
  return std::stod(json.substr(json.find(':', k) + 1));
}

// A copy of every weight on another device (the reference for a device check).
Weights weights_on(const Weights& w, const at::Device& dev) {
  Weights c = w;
  auto move = [&](at::Tensor& t) {
    if (t.defined()) t = t.to(dev);
  };
  for (auto* t : {&c.tok_embd, &c.output_norm, &c.output_norm_b, &c.output}) move(*t);
  for (auto& L : c.layers)
    for (auto* t : {&L.attn_norm,
                    &L.attn_norm_b,
                    &L.wq,
                    &L.wk,
                    &L.wv,
                    &L.wo,
                    &L.bq,
                    &L.bk,
                    &L.bv,
                    &L.bo,
                    &L.q_norm,
                    &L.k_norm,
                    &L.post_attn_norm,
                    &L.pre_ffn_norm,
                    &L.ffn_norm,
                    &L.ffn_norm_b,
                    &L.post_ffn_norm,
                    &L.w_gate,
                    &L.w_up,
                    &L.w_down,
                    &L.b_gate,
                    &L.b_up,
                    &L.b_down,
                    &L.sinks,
                    &L.router_w,
                    &L.router_b,
                    &L.experts_gate_up,
                    &L.experts_gate_up_b,
                    &L.experts_down,
                    &L.experts_down_b})
      move(*t);
  return c;
}

// `fused` (the model as benchmarked) against `ref` (the same weights on the explicit chunked
// path): the observation's per-document arrays, and for each SSP mode (μ calibrated on these
// tokens, as a run uses it) each layer's patched attention output from the same input — the
// reference pass is fed the fused pass's input at every layer. Final logits would compare the
// two through every later layer: a model with every layer patched amplifies float32 rounding
// many-fold (SmolLM2 at T = 2048 on these tokens: 1e-4 there, 5.5e-7 per layer, ≤ 1e-5 with any
// one layer patched alone); they are printed as information. Returns the largest difference.
double check_fused_paths(const Model& fused, const Model& ref, const ObserveOptions& opts,
                         const std::vector<std::int64_t>& ids, const std::vector<std::int64_t>& keep,
                         const std::string& label) {
  const auto& s = fused.spec();
  const auto T = static_cast<std::int64_t>(ids.size());
  auto observe = [&](const Model& mm) {
    Observer obs(mm, opts, T);
    Hooks h;
    obs.install(h);
    mm.forward(ids, h);
    return obs.finish();
  };
  auto fo = observe(fused), eo = observe(ref);
  std::string worst_name;
  double worst_obs = 0;
  for (const auto& [k, v] : eo) {
    const double r = rel_diff(fo.at(k), v);
    if (r > worst_obs || worst_name.empty()) worst_obs = r, worst_name = k;
  }
  std::printf("\nT=%lld, fused vs %s\n  observation: largest relative difference %.2e (%s)\n", (long long)T,
              label.c_str(), worst_obs, worst_name.c_str());
  double worst = worst_obs;
  SinkBias cal;
  cal.patched.assign(s.n_layers, true);
  cal.set_mu(observe_mu(fused, ids, cal.sink).result());
  const auto ref_dev = ref.weights().tok_embd.device();
  // The SSP modes, then the evaluation window's variants (W = 64, μ from the same tokens).
  using Install = std::function<void(const Model&, Hooks&)>;
  std::vector<std::pair<std::string, Install>> passes;
  for (SspMode mode : {SspMode::SspBias, SspMode::SspDrop})
    passes.emplace_back(ssp_mode_name(mode), [&, mode](const Model& mm, Hooks& h) { install_ssp(mm, cal, mode, h); });
  SinkBias wcal = cal;
  wcal.set_mu(observe_mu_window(fused, ids, wcal.sink, 64).result());
  for (const auto& v : window_variants({64}, keep, {"ssp_bias", "ssp_drop"}))
    passes.emplace_back(v.name(), [&, v](const Model& mm, Hooks& h) { install_window(mm, wcal, v, h); });
  for (const auto& [name, install] : passes) {
    std::vector<at::Tensor> input(s.n_layers), out(s.n_layers);
    Hooks hf;
    hf.add(Hook::ResidPre, [&](at::Tensor& x, const HookCtx& c) { input[c.layer] = x.clone(); });
    install(fused, hf);
    hf.add(Hook::AttnOut, [&](at::Tensor& o, const HookCtx& c) { out[c.layer] = o.clone(); });
    auto logits_fused = fused.forward(ids, hf);
    double worst_layer = 0;
    Hooks he;
    he.add(Hook::ResidPre, [&](at::Tensor& x, const HookCtx& c) { x = input[c.layer].to(ref_dev); });
    install(ref, he);
    he.add(Hook::AttnOut, [&](at::Tensor& o, const HookCtx& c) {
      worst_layer = std::max(worst_layer, rel_diff(out[c.layer], o));
      input[c.layer] = out[c.layer] = at::Tensor();
    });
    ref.forward(ids, he);
    Hooks hl;
    install(ref, hl);
    const double r = rel_diff(logits_fused, ref.forward(ids, hl));
    std::printf("  %s: largest relative difference of a layer's attention output %.2e (logits %.2e)\n", name.c_str(),
                worst_layer, r);
    worst = std::max(worst, worst_layer);
  }
  return worst;
}

int body(int argc, char** argv) {
  Args a(argc, argv,
         {"--model", "--random-weights", "--lengths", "--threads", "--dtype", "--reps", "--python", "--device",
          "--steps", "--windows", "--keep"},
         {"--no-hf", "--check-fused", "--count-ops", "--sync-debug", "--help"});
  if (a.has("--help") || a.has("--model") == a.has("--random-weights")) {
    std::cout
        << "usage: sink-bench (--model PATH | --random-weights CONFIG.json) [--lengths 512,2048] [--threads N]\n"
           "                  [--dtype float32|bfloat16] [--reps 3] [--no-hf] [--python PATH] [--device cpu|cuda:N]\n"
           "                  [--steps basic,norms,values,viz] [--windows 256] [--keep 0,1,4]\n"
           "                  [--check-fused] [--count-ops] [--sync-debug]\n";
    return a.has("--help") ? 0 : kExitBadInput;
  }
  const int threads = static_cast<int>(a.get_int("--threads", std::thread::hardware_concurrency(), 1, 4096));
  at::set_num_threads(threads);
  const int reps = static_cast<int>(a.get_int("--reps", 3, 1, 1000000));
  // Every flag before any weights load. Lengths: each a real sequence (a forward of 0 tokens is no
  // benchmark).
  std::vector<int> lengths;
  for (auto T : a.get_ints("--lengths", "512,2048", 1, 1 << 24)) lengths.push_back(static_cast<int>(T));
  // Observation steps to run (all by default): to see what each one costs.
  std::set<std::string> steps;
  {
    std::stringstream ss(a.get_or("--steps", "basic,norms,values,viz"));
    std::string x;
    while (std::getline(ss, x, ','))
      if (x == "basic" || x == "norms" || x == "values" || x == "viz")
        steps.insert(x);
      else
        throw InputError("--steps", "unknown step '" + x + "' (basic, norms, values, viz)");
  }
  const std::string steps_label = steps.size() == 4 ? "all steps" : a.get_or("--steps", "");
  // intervention.window_eval's passes: per window, each --keep (0: no sink key; k: the first k
  // tokens kept), then no sink key with ssp_bias and with ssp_drop.
  std::vector<std::int64_t> windows, keep;
  for (auto W : a.get_ints("--windows", "256", 1, 1 << 24)) windows.push_back(W);
  for (auto k : a.get_ints("--keep", "0,1,4", 0, 1 << 24)) keep.push_back(k);
  LoadOptions opt;
  opt.dtype = a.get_or("--dtype", "float32");
  opt.device = a.get_or("--device", "cpu");
#ifndef SINK_WITH_CUDA
  if (opt.device != "cpu")
    throw InputError("--device", "'" + opt.device + "' needs a CUDA build of sink (cmake --preset cuda)");
#endif
  const bool random = a.has("--random-weights");
  const std::string model_arg = random ? *a.get("--random-weights") : *a.get("--model");
  c10::InferenceMode guard;
  auto m = random ? random_model(model_arg, opt) : load_model(model_arg, opt);
  const auto& s = m->spec();
  PeakMeter meter{m->weights().tok_embd.device()};
  // Parameters, and the matrix-product FLOPs of one plain forward of T tokens: 2·T per weight
  // of every layer's products (a mixture of experts counts its top-k share) and the head,
  // plus causal attention, 2·H·dh·T² per layer for q·kᵀ and A·v over the lower triangle.
  double params = double(m->weights().tok_embd.numel()) * (s.tied_embeddings ? 1 : 2);
  double mm_params = double(s.vocab) * double(s.d_model);
  for (const auto& L : m->weights().layers) {
    for (const auto* t : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
      if (t->defined()) params += double(t->numel()), mm_params += double(t->numel());
    for (const auto* t : {&L.experts_gate_up, &L.experts_down})
      if (t->defined())
        params += double(t->numel()), mm_params += double(t->numel()) * s.top_k / std::max(1, s.n_experts);
  }
  auto forward_flops = [&, L = s.n_layers, H = s.n_heads, dh = s.head_dim](double T) {
    return 2 * T * mm_params + 2.0 * L * H * dh * T * T;
  };
  const std::string py = a.get_or("--python", fs::exists(".venv/bin/python") ? ".venv/bin/python" : "python3");
  std::printf(
      "sink-bench: %s (%s, %d layers, d=%d, %d heads, %.2fB params), %s on %s, %d threads (ours and HF), "
      "median of %d, passes interleaved\n",
      model_arg.c_str(), family_name(s.family), s.n_layers, s.d_model, s.n_heads, params / 1e9, opt.dtype.c_str(),
      opt.device.c_str(), threads, reps);
  struct Ours {
    int T;
    Measure plain, observe;
  };
  std::vector<Ours> ours;
  const bool check_fused = a.has("--check-fused");
  double check_worst = 0;
  for (int T : lengths) {
    std::vector<std::int64_t> ids(T);
    for (int i = 0; i < T; ++i) ids[i] = (i * 7919 + 13) % s.vocab;
    SinkBias b;
    b.patched.assign(s.n_layers, true);
    b.mu = at::zeros({s.n_layers, s.d_model});
    b.mu_head = at::zeros({s.n_layers, s.n_heads, s.d_model});
    b.alpha_bar = at::zeros({s.n_layers, s.n_heads});
    auto ssp_pass = [&](SspMode mode) {
      return [&, mode] {
        Hooks h;
        install_ssp(*m, b, mode, h);
        m->forward(ids, h);
      };
    };
    auto observe_options = [&] {
      ObserveOptions o;
      o.max_tokens_to_calc = 512;
      o.max_tokens_to_show = 32;
      o.layers_to_show = {0, s.n_layers - 1};
      o.basic = steps.count("basic") > 0;
      o.norms = steps.count("norms") > 0;
      o.values = o.geometry = steps.count("values") > 0;
      o.viz = steps.count("viz") > 0;
      return o;
    };
    if (check_fused) {
      // The fused statistics and SSP paths against the explicit chunked attention on the same
      // weights and device (the explicit path is the one checked against HF on the CPU); on a
      // GPU in float32 also against the explicit path on the CPU, on a copy of the weights.
      LoadOptions eo = opt;
      eo.explicit_attention = true;
      const double worst = check_fused_paths(*m, Model(m->spec(), m->weights(), eo), observe_options(), ids, keep,
                                             "explicit attention, " + opt.dtype);
      check_worst = std::max(check_worst, worst);
      if (!meter.dev.is_cpu() && opt.dtype == "float32") {
        eo.device = "cpu";
        const double w = check_fused_paths(*m, Model(m->spec(), weights_on(m->weights(), at::kCPU), eo),
                                           observe_options(), ids, keep, "explicit attention on the CPU, float32");
        check_worst = std::max(check_worst, w);
      }
      std::fflush(stdout);
      continue;
    }
    auto observe_pass = [&](bool with_logits) {
      Observer obs(*m, observe_options(), T);
      Hooks h;
      obs.install(h);
      // With SSP on, the observation pass is also SSP's original pass and keeps the logits.
      if (with_logits) h.add(Hook::Logits, [](at::Tensor&, const HookCtx&) {});
      m->forward(ids, h);
      obs.finish();
    };
    std::vector<std::function<void()>> passes = {[&] { m->forward(ids); }, [&] { observe_pass(false); },
                                                 [&] { observe_pass(true); }, ssp_pass(SspMode::SspBias),
                                                 ssp_pass(SspMode::SspDrop)};
    const auto window_passes = window_variants(windows, keep, {"ssp_bias", "ssp_drop"});
    for (const auto& v : window_passes)
      passes.push_back([&, v] {
        Hooks h;
        install_window(*m, b, v, h);
        m->forward(ids, h);
      });
#ifdef SINK_WITH_CUDA
    if (a.has("--sync-debug") && meter.dev.is_cuda()) {
      // The first call in each pass that makes the host wait for the device (PyTorch's sync
      // debug mode set to error), after a warm-up run.
      const char* names[] = {"plain", "observation", "observation + logits", "ssp_bias", "ssp_drop"};
      for (std::size_t p = 0; p < 5; ++p) {
        passes[p]();
        meter.sync();
        c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_ERROR);
        std::string what = "none";
        try {
          passes[p]();
        } catch (const std::exception& e) {
          what = e.what();
          what = what.substr(0, what.find('\n'));
        }
        c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_DISABLED);
        meter.sync();
        std::printf("T=%d, %s: first synchronising call: %s\n", T, names[p], what.c_str());
      }
      // Where in the observation pass: the last hook point passed before it (or finish()).
      std::string last = "the start of the forward";
      Observer obs(*m, observe_options(), T);
      Hooks h;
      obs.install(h);
      for (int k = 0; k < static_cast<int>(Hook::kCount); ++k)
        h.add(static_cast<Hook>(k),
              [&, k](at::Tensor&, const HookCtx& c) { last = hook_name(static_cast<Hook>(k), c.layer); });
      c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_ERROR);
      try {
        m->forward(ids, h);
        last = "finish()";
        obs.finish();
        last = "nowhere";
      } catch (const std::exception&) {
      }
      c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_DISABLED);
      std::printf("T=%d, observation: first synchronising call after %s\n", T, last.c_str());
      std::fflush(stdout);
    }
#endif
    if (a.has("--count-ops")) {
      // Operators per layer of each pass, and those the observation adds most of: calls, and each
      // operator's self time (on the CPU its own work; on a GPU only the host's time to issue it).
      std::vector<OpCounts> c;
      for (std::size_t p = 0; p < 5; ++p) passes[p]();  // warm-up: first calls allocate
      for (std::size_t p = 0; p < 5; ++p) c.push_back(count_ops(passes[p]));
      const double L = s.n_layers;
      std::printf(
          "\nT=%d, ATen operator calls per layer: plain %.1f, observation %.1f, + logits %.1f, ssp_bias %.1f, "
          "ssp_drop %.1f\n  observation adds most calls:",
          T, total(c[0].calls) / L, total(c[1].calls) / L, total(c[2].calls) / L, total(c[3].calls) / L,
          total(c[4].calls) / L);
      print_largest_excess(
          c[1].calls, c[0].calls, [&](double v) { return v / L; }, "%.1f");
      std::printf("  observation adds most time (ms per pass):");
      print_largest_excess(
          c[1].seconds, c[0].seconds, [](double v) { return v * 1e3; }, "%.1f");
      std::fflush(stdout);
      continue;
    }
    auto r = measure_interleaved(meter, reps, passes);
    const Measure plain = r[0], observe = r[1], observe_logits = r[2], ssp = r[3], ssp_drop = r[4];
    std::printf("\nT=%d\n", T);
    // On a GPU also the host's time to issue the pass: close to the whole time means the
    // pass waits on the host (launches, or a synchronising call), not on the card.
    auto row = [&](const std::string& label, const Measure& x) {
      std::printf("  %-44s %9.3f s %10.0f tok/s  peak +%8.0f MiB  %6.2fx plain", label.c_str(), x.seconds,
                  T / x.seconds, x.peak_extra_mib, x.seconds / plain.seconds);
      if (!meter.dev.is_cpu()) std::printf("  (issued in %.3f s)", x.issue_seconds);
      std::printf("\n");
    };
    row("ours: plain forward", plain);
    row("ours: observation (" + steps_label + ")", observe);
    row("ours: observation + logits (SSP on)", observe_logits);
    row("ours: SSP pass (ssp_bias, 1 mode)", ssp);
    row("ours: SSP pass (ssp_drop, 1 mode)", ssp_drop);
    for (std::size_t i = 0; i < window_passes.size(); ++i)
      row("ours: window pass (" + window_passes[i].name() + ")", r[5 + i]);
    std::printf("  matrix products of one plain forward: %.2f TFLOP; plain %.2f TFLOP/s, observation %.2f TFLOP/s\n",
                forward_flops(T) / 1e12, forward_flops(T) / plain.seconds / 1e12,
                forward_flops(T) / observe.seconds / 1e12);
    std::fflush(stdout);
    ours.push_back({T, plain, observe});
  }
  if (check_fused) {
    // float32: the two paths differ in summation order only; bfloat16: in where they round.
    const double tol = opt.dtype == "float32" ? 1e-4 : 5e-2;
    std::printf("\ncheck-fused: %s (largest %.2e, tolerance %.0e)\n", check_worst <= tol ? "passed" : "FAILED",
                check_worst, tol);
    return check_worst <= tol ? 0 : 1;
  }
  if (a.has("--no-hf")) return 0;
  // HF runs after ours, with our model freed: each side has the machine's memory to itself.
  m.reset();
#ifdef SINK_WITH_CUDA
  if (meter.dev.is_cuda()) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
  for (const auto& [T, plain, observe] : ours) {
    std::printf("\nT=%d, HF transformers (%s)\n", T, py.c_str());
    for (const char* mode : {"sdpa", "eager_outputs", "eager_job"}) {
      auto js = run_hf(py, model_arg, random, T, threads, opt.dtype, opt.device, reps, mode);
      const double sec = field(js, "seconds"), peak = field(js, "peak_extra_mib");
      if (sec <= 0) {
        std::printf("  HF %-41s failed: %s\n", hf_label(mode), js.empty() ? "(no output)" : js.c_str());
        continue;
      }
      std::printf(
          "  HF %-41s %9.3f s %10.0f tok/s  peak +%8.0f MiB  ours plain is %.2fx faster; observation %.2fx "
          "faster, %.2fx less memory\n",
          hf_label(mode), sec, T / sec, peak, sec / plain.seconds, sec / observe.seconds,
          peak / std::max(1.0, observe.peak_extra_mib));
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return run_cli("sink-bench", body, argc, argv); }
