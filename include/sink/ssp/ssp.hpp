// Static Sink Patching (SPEC §4): replace what the sink writes into the
// residual stream, in chosen layers, by a static bias μ (or controls), through
// the engine's hook points — the model is never copied.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "sink/model/hooks.hpp"

namespace sink {

class Model;
class MuAccumulator;

enum class SspMode { SspBias, SspDrop, Zero, Random, Exact };
SspMode parse_ssp_mode(const std::string& s);
const char* ssp_mode_name(SspMode m);

struct SinkBias {
  std::int64_t sink = 0;
  bool head_granularity = false;
  std::vector<bool> patched;  // per layer
  at::Tensor mu;              // [L, d]      μ[l]
  at::Tensor mu_head;         // [L, H, d]   μ[l, h]
  at::Tensor alpha_bar;       // [L, H]      ᾱ[l, h]
  std::uint64_t seed = 0;     // for `random`
  // μ, μ_head and ᾱ from MuAccumulator::result().
  void set_mu(const std::map<std::string, at::Tensor>& mu_result);
};

// The bias a mode adds per layer, [L, d] float32 (zero for `zero`; for
// `random`, μ's norm in a seeded random direction, per layer or per head then summed).
at::Tensor ssp_added_bias(const SinkBias& b, SspMode mode);

// Installs hooks (and, for ssp_drop, the attention edit) that patch the
// forward. `Exact` adds each position's own sink contribution back (the
// identity check: it must reproduce the original logits).
void install_ssp(const Model& m, const SinkBias& b, SspMode mode, Hooks& hooks);

// Per-document SSP measures. The original pass runs once; every mode is
// compared with it on the same tokens: positions s+1 … T−2 predict s+2 … T−1.
struct SspDocResult {
  double nll_sum = 0;                       // Σ token NLL (nats)
  std::int64_t n = 0;                       // tokens scored
  double kl_mean = 0;                       // mean KL(p_orig ‖ p_mode) over the same positions
  std::vector<double> resid_rel_l2, resid_cos;  // [L+1]: mean over positions i > s of ‖h'−h‖/‖h‖ and cos(h', h)
};

// The original pass's hidden states (HF's L+1 convention) and logits; captured by
// hooks during another pass of the same document (the observation pass), so the
// modes share it instead of running it again.
struct SspOriginal {
  std::vector<at::Tensor> hidden;
  at::Tensor logits;
};
void capture_original(Hooks& hooks, SspOriginal& out, int n_layers);

// Pipeline stages (issue 18): the pieces of ssp_measure, for a stage that holds some layers.
// Hidden states in HF's L+1 convention, as far as the pass that runs these hooks produces them.
void capture_hidden_states(Hooks& hooks, std::vector<at::Tensor>& out, int n_layers);
// A pass's NLL over positions s+1 … T−2 and, given the original's logits, the mean KL from them.
SspDocResult ssp_score(const Model& m, const std::vector<std::int64_t>& ids, std::int64_t sink,
                       const at::Tensor& logits, const at::Tensor* logits0);
// Mean over positions i > s of ‖h'−h‖/‖h‖ and of cos(h', h) (NaN, NaN when none follows the sink).
std::pair<double, double> ssp_resid_distance(const at::Tensor& h0, const at::Tensor& h1, std::int64_t sink);

// Runs each mode on one document (and the original pass, unless given).
std::map<std::string, SspDocResult> ssp_measure(const Model& m, const std::vector<std::int64_t>& ids,
                                                const SinkBias& b, const std::vector<SspMode>& modes,
                                                const SspOriginal* original = nullptr);

// ---- Windowed attention without the sink (StreamingLLM's question; docs/metrics.md)
//
// Every layer attends to the W most recent keys (absolute positions kept), in one of three
// variants: no sink key (keep = 0); the first `keep` tokens kept as keys (StreamingLLM's sink
// tokens); or no sink key and, in the rows where the window hides the sink, μ added (ssp_bias)
// and the heads' outputs scaled by 1 − ᾱ (ssp_drop), μ and ᾱ fitted under the same window.
struct WindowVariant {
  std::int64_t window = 0;
  std::int64_t keep = 0;
  std::optional<SspMode> ssp;  // ssp_bias or ssp_drop (keep is then 0)
  // The mode's name under ssp/: window_w64_keep0, window_w64_keep4, window_w64_ssp_bias.
  std::string name() const;
};
// The variants of intervention.window_eval, window by window: keep values, then the SSP ones.
std::vector<WindowVariant> window_variants(const std::vector<std::int64_t>& windows,
                                           const std::vector<std::int64_t>& keep, const std::vector<std::string>& ssp);

// The rows [begin, end) where the evaluation window W hides the sink s from layer l although
// the layer's own window would show it: i − s ≥ W, and i − s < W_l in a sliding layer.
std::pair<std::int64_t, std::int64_t> window_hidden_rows(const Model& m, int layer, std::int64_t T, std::int64_t s,
                                                         std::int64_t W);

// μ, μ per head and ᾱ under the window W: a pass with the window applied and the sink kept as a
// key (the first s + 1 tokens kept), averaged over window_hidden_rows — what the sink writes
// into the rows from which the plain window hides it.
MuAccumulator observe_mu_window(const Model& m, const std::vector<std::int64_t>& ids, std::int64_t sink,
                                std::int64_t W);

// The hooks of one variant; `b` holds the μ and ᾱ fitted under the variant's window (unused
// without ssp).
void install_window(const Model& m, const SinkBias& b, const WindowVariant& v, Hooks& hooks);

// Each variant on one document, scored as ssp_measure scores a mode (the same positions, KL to
// the full-attention original pass). biases: by window, for the SSP variants.
std::map<std::string, SspDocResult> window_measure(const Model& m, const std::vector<std::int64_t>& ids,
                                                   std::int64_t sink, const std::vector<WindowVariant>& variants,
                                                   const std::map<std::int64_t, SinkBias>& biases,
                                                   const SspOriginal& original);

}  // namespace sink
