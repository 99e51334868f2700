// The §3 observation metrics, computed while the forward runs: the engine's
// hook points feed each attention chunk, the values and the per-head outputs
// to an Observer, which reduces them at once to per-document statistics (no
// L·H·T² array is ever held). Definitions: docs/metrics.md.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <vector>

#include "sink/metrics/geometry.hpp"
#include "sink/model/hooks.hpp"

namespace sink {

class Model;

struct ObserveOptions {
  std::int64_t sink = 0;                 // s: the sink position
  std::int64_t max_tokens_to_calc = 512; // P; T_c = min(T, P)
  std::int64_t max_tokens_to_show = 32;  // S
  std::int64_t gu_window = 64;           // Gu et al.: the first 64 tokens
  std::vector<int> layers_to_show;
  bool basic = true, norms = true, values = true, viz = true;
  bool geometry = true;                  // accumulate C/R geometry (needs values)
  bool mu = false;                       // accumulate μ statistics (calibration)
  int massive_k = 4;                     // massive activations: top-k |h| dims at the sink
  std::int64_t top_keys = 0;             // k keys per (l, h) by attention mass over all j < T_c (0: none)
  std::int64_t sketch = 32;              // PCA sketch width for d > kExactPcaMaxDim
};

// Per-document results, float32 on the CPU, named as their HDF5 datasets
// (without the document dimension), e.g. "basic/sink_score" [L, H].
using DocArrays = std::map<std::string, at::Tensor>;

class Observer {
 public:
  Observer(const Model& m, const ObserveOptions& opt, std::int64_t T);
  ~Observer();
  Observer(const Observer&) = delete;
  Observer& operator=(const Observer&) = delete;
  // Installs the hooks that compute everything (call before forward).
  void install(Hooks& hooks);
  // After the forward: the per-document arrays, and the geometry / μ contributions.
  DocArrays finish();
  GeometryAccumulator& geometry() { return geom_; }
  // Pipeline stages (issue 18): what the hooks of layers [l0, l1) filled — those layers' rows of
  // every buffer, the hidden-state rows they produce (HF's index l0 + 1 .. l1, and 0 on the first
  // stage) and their control R's geometry sums — as views in a fixed order (some not contiguous). A stage that ran
  // those layers sends them; the stage that assembles the document copies them into the same views of its own Observer,
  // then calls finish(): the record is the one a whole forward gives, bit for bit.
  std::vector<at::Tensor> stage_parts(int l0, int l1);
  MuAccumulator& mu() { return mu_; }

 private:
  const Model& m_;
  ObserveOptions o_;
  std::int64_t T_, Tc_;
  GeometryAccumulator geom_;
  MuAccumulator mu_;
  // Per-document buffers over every layer, on the model's device (float32 unless noted):
  at::Tensor hidden_norm_, attn_norm_, mlp_norm_;  // [L(+1), P]
  at::Tensor sink_rows_;                           // [L + 1, d]: the hidden state at the sink
  at::Tensor a_sink_, ent_, learned_;              // [L, H, T_c]: A[i, s], entropy, learned-sink mass of row i
  at::Tensor tok_sum_;                             // [L, H, S]: Σ_{i >= j} A[i, j]
  at::Tensor col_sum_;                             // [L, H, T_c]: Σ_{s < i < T_c} A[i, j] (top keys)
  at::Tensor maps_;                                // [shown layers, H, S, S]
  std::vector<int> show_slot_;                     // layer → index in maps_, or -1
  at::Tensor kv_norm_;                             // [L, 2, T_c, H_kv]: ‖k_i‖, ‖v_i‖
  at::Tensor w_sink_;                              // [L, H, d]: v_s^h W_O^h
  at::Tensor u2_, vgz_;                            // [L, H, n + 1] float64: zᵀGz, zᵀGv_s (last row: z = v_s)
  at::Tensor row_weights_, below_, blocks_, vs_;   // constants and scratch (see observe.cpp)
};

// One calibration document's μ statistics: every position i > sink that sees it under the
// layer's window, no other metric (the pass SSP's μ is estimated from).
MuAccumulator observe_mu(const Model& m, const std::vector<std::int64_t>& ids, std::int64_t sink);
// The options observe_mu observes with (μ's statistics alone, every row of a T-token document):
// shared with the pipeline stages' calibration pass.
ObserveOptions mu_observe_options(std::int64_t sink, std::int64_t T);

}  // namespace sink
