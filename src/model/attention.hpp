// Private to src/model: the attention of one layer. A plan is chosen once per layer (which
// rows are materialised, which fused path, which mask), then one function per path fills
// the per-head output z. The rules "which kernel returns a log-sum-exp on which device, with
// which masks" live in attention.cpp, once.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <tuple>
#include <utility>

#include "sink/model/hooks.hpp"
#include "sink/model/model.hpp"
#include "sink/model/spec.hpp"

namespace sink::detail {

// What the layers of one forward pass share: the sequence length, the device, the query
// chunk of the explicit path, and the masks of the fused kernels (built once per forward for
// each window and hidden key, not once per layer).
class AttentionContext {
 public:
  AttentionContext(std::int64_t T, at::Device dev, std::int64_t chunk, bool explicit_only)
      : T(T), dev(dev), chunk(chunk), explicit_only(explicit_only) {}

  const std::int64_t T;
  const at::Device dev;
  const std::int64_t chunk;  // queries per explicit chunk
  const bool explicit_only;  // LoadOptions::explicit_attention: never the fused statistics/SSP paths

  // Additive [T, T] mask, −inf where query i may not see key j: outside the window W (0 =
  // none) or, for i > hidden_key, the key hidden_key. With W = 0 the causal part is left to
  // the kernel's causal flag unless with_causal.
  const at::Tensor& additive_mask(int W, std::int64_t hidden_key, const at::TensorOptions& o, bool with_causal = false);
  // Boolean [T − r0, T], true where query r0 + i sees key j under the window W (> 0).
  const at::Tensor& window_visible(int W, std::int64_t r0);
  // The evaluation window's fused pass, one query chunk [q0, q0 + c): the keys it reads (the
  // kept first tokens below the band, then the band) and the additive mask [c, keys] over them.
  struct EvalChunk {
    std::int64_t prefix = 0, lo = 0;  // keys [0, prefix) and [lo, q0 + c)
    at::Tensor mask;
  };
  const EvalChunk& eval_chunk(int W, const EvalWindow& e, std::int64_t q0, std::int64_t c, const at::TensorOptions& o);
  // Float [rows, keys], 1 where query row i sees key j (i − W < j ≤ i).
  const at::Tensor& stats_visible(int W, std::int64_t rows, std::int64_t keys);

 private:
  std::map<std::tuple<int, std::int64_t, bool>, at::Tensor> additive_;
  std::map<std::pair<int, std::int64_t>, at::Tensor> window_;
  std::map<std::tuple<int, std::int64_t, std::int64_t>, at::Tensor> stats_;
  std::map<std::tuple<int, std::int64_t, std::int64_t, std::int64_t>, EvalChunk> eval_;
};

// The attention paths. Fused: the kernel's softmax for rows ≥ explicit_rows, the rows below
// materialised chunk by chunk (all of them where the softmax is not a plain one: soft-capping,
// learned sinks, or an edit no fused path serves). Statistics: one fused pass whose
// log-sum-exp gives A[i, j] and the entropies (hook_stats). SspSubtract / SspDrop: the SSP
// edits as fused passes with the sink key hidden.
// EvalWindow: the evaluation window (Hooks::set_eval_window) as fused passes over query chunks,
// each reading only the band of recent keys and the kept first tokens.
enum class AttentionPath { Fused, Statistics, SspSubtract, SspDrop, EvalWindow };

struct AttentionPlan {
  AttentionPath path = AttentionPath::Fused;
  std::int64_t explicit_rows = 0;  // Fused: rows [0, explicit_rows) materialised
  int window = 0;                  // the layer's sliding window, 0 = full attention
  const AttnEdit* edit = nullptr;  // the SSP edit of this layer, if any
  const EvalWindow* eval = nullptr;  // the evaluation window, if any (every layer)
};

// One layer's attention inputs. q [T, H, dh] after RoPE; k, v [T, Hkv, dh].
struct LayerAttention {
  LayerAttention(const ModelSpec& s, const LayerWeights& L, int layer, const at::Tensor& q, const at::Tensor& k,
                 const at::Tensor& v, const Hooks& hooks, AttentionContext& ac);

  const ModelSpec& s;
  const LayerWeights& L;
  HookCtx ctx;  // ctx.layer set
  const Hooks& hooks;
  AttentionContext& ac;
  at::Tensor q;       // [T, H, dh]
  at::Tensor kh, vh;  // (Hkv, T, dh), contiguous

  // K and V per query head, (1, H, T, dh), for the fused kernels that take no GQA.
  std::pair<at::Tensor, at::Tensor> kv_per_query_head() const;
};

AttentionPlan plan_attention(const LayerAttention& a);

// The layer's attention by its plan: the per-head output z [H, T, dh]. Runs hook_pattern,
// hook_stats and hook_sink_weight as the path produces them.
at::Tensor attention(const LayerAttention& a, const AttentionPlan& plan);

// Each path on its own (z [H, T, dh] is filled; sink_w receives A[i, s] where an edit
// subtracts the sink key, [H, T] float32).
void attention_fused(const LayerAttention& a, const AttentionPlan& plan, at::Tensor& z);
void attention_explicit(const LayerAttention& a, const AttentionPlan& plan, at::Tensor& z, at::Tensor& sink_w);
void attention_statistics(const LayerAttention& a, const AttentionPlan& plan, at::Tensor& z);
void attention_ssp_subtract(const LayerAttention& a, const AttentionPlan& plan, at::Tensor& z, at::Tensor& sink_w);
void attention_ssp_drop(const LayerAttention& a, const AttentionPlan& plan, at::Tensor& z);
void attention_eval_window(const LayerAttention& a, const AttentionPlan& plan, at::Tensor& z);

}  // namespace sink::detail
