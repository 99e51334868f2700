// Hook points, named as TransformerLens names them. A hook sees a value as
// the forward computes it and may replace it (assign to `value`). Hooks are
// passed per forward call, so they are scoped to that call by construction.
//
// Shapes (one sequence of T tokens, no batch dimension):
//   hook_resid_pre / hook_resid_mid / hook_resid_post / hook_attn_out / hook_mlp_out   [T, d_model]
//   attn.hook_q [T, n_heads, head_dim]; attn.hook_k, attn.hook_v [T, n_kv_heads, head_dim]
//     (q and k after RoPE, as the attention uses them)
//   attn.hook_pattern  one query chunk: [n_heads, q_end - q_begin, q_end] — probabilities of queries
//     q_begin..q_end-1 over keys 0..q_end-1 (later keys are causally 0 and not materialised)
//   attn.hook_z [T, n_heads, head_dim] (per-head output before o_proj)
//   hook_attn_out is o_proj's output (Gemma 2: before its post-attention norm);
//   hook_mlp_out is the MLP's output as added to the residual (Gemma 2: after its post-norm)
//   ln_final.hook_normalized [T, d_model]; hook_logits [T, vocab]
//   attn.hook_stats  the statistics the observation needs without the pattern, from the fused
//     kernel's log-sum-exp (see set_attn_stats): A[i, j] for the first S keys, [n_heads, rows, S]
//     float32 (0 for j > i), with the rows' entropy in ctx.entropy (null if not asked for). When a layer's attention
//     cannot run fused (soft-capping, learned sinks, edits, no CPU kernel), hook_pattern runs instead.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace sink {

enum class Hook : int {
  ResidPre, Q, K, V, Pattern, Z, AttnOut, ResidMid, MlpOut, ResidPost, FinalNorm, Logits, SinkWeight, AttnStats, kCount
};

// "blocks.3.attn.hook_pattern", "hook_logits", ...
std::string hook_name(Hook h, int layer);

struct HookCtx {
  int layer = -1;             // -1 for hooks outside the blocks
  std::int64_t q_begin = 0;   // pattern chunks: first query row
  std::int64_t q_end = 0;     // pattern chunks: one past the last query row (= number of keys)
  // GPT-OSS: mass each query row gives the learned sink [n_heads, q_end - q_begin]; undefined otherwise.
  const at::Tensor* sink_mass = nullptr;
  // Attention chunk: the values [n_kv_heads, q_end, head_dim] this chunk reads (for value-update metrics).
  const at::Tensor* v = nullptr;
  // attn.hook_stats: the entropy −Σ_j A log A of rows q_begin..q_end-1, [n_heads, q_end - q_begin] float32.
  const at::Tensor* entropy = nullptr;
};

using HookFn = std::function<void(at::Tensor& value, const HookCtx& ctx)>;

// An edit the attention itself applies (for ssp_drop): queries i > drop_key
// compute no probability for key drop_key (the softmax runs over the other
// keys), then each head's row is scaled by row_scale[h] — in the rows that saw the key
// (in a layer with window W, only i < drop_key + W; the later rows never saw it).
struct AttnEdit {
  std::int64_t drop_key = -1;
  at::Tensor row_scale;  // [n_heads] float32, or undefined for 1
  // ssp_bias / zero / random: queries i > subtract_key lose that key's contribution
  // A[i,key]·v_key (the other probabilities keep their softmax). The weights it had,
  // [n_heads, T] float32 (0 for i <= key), are passed to Hook::SinkWeight.
  std::int64_t subtract_key = -1;
};

// Evaluation under a window of the W most recent keys in every layer (StreamingLLM's window
// attention, absolute positions kept): query i sees key j iff j <= i, the layer's own window
// allows it, and i − j < window or j < keep (the first `keep` tokens stay visible as keys).
// window = 0: no evaluation window.
struct EvalWindow {
  std::int64_t window = 0;
  std::int64_t keep = 0;
};

class Hooks {
 public:
  // layer = -1: every layer.
  void add(Hook h, HookFn fn, int layer = -1) { fns_[static_cast<int>(h)].push_back({layer, std::move(fn)}); }
  bool any(Hook h) const { return !fns_[static_cast<int>(h)].empty(); }
  bool any(Hook h, int layer) const {
    for (const auto& e : fns_[static_cast<int>(h)])
      if (e.layer < 0 || e.layer == layer) return true;
    return false;
  }
  void run(Hook h, at::Tensor& value, const HookCtx& ctx) const {
    for (const auto& e : fns_[static_cast<int>(h)])
      if (e.layer < 0 || e.layer == ctx.layer) e.fn(value, ctx);
  }
  void set_attn_edit(int layer, AttnEdit e) {
    if (static_cast<int>(edits_.size()) <= layer) edits_.resize(layer + 1);
    edits_[layer] = std::move(e);
  }
  // Pattern hooks see only query rows below this (observation reduces the first T_c
  // rows); the rest of the attention may then run fused.
  void set_pattern_rows(std::int64_t rows) { pattern_rows_ = rows; }
  std::int64_t pattern_rows() const { return pattern_rows_; }
  // Ask for hook_stats over the first `rows` query rows and the first `keys` keys, and
  // the rows' entropy (a second fused pass) only if `entropy`.
  void set_attn_stats(std::int64_t rows, std::int64_t keys, bool entropy = true) {
    stats_rows_ = rows, stats_keys_ = keys, stats_entropy_ = entropy;
  }
  std::int64_t stats_rows() const { return stats_rows_; }
  std::int64_t stats_keys() const { return stats_keys_; }
  bool stats_entropy() const { return stats_entropy_; }
  // The caller needs no logits (observation alone): forward() stops after the final norm
  // and returns an undefined tensor, unless a hook_logits hook is installed.
  void set_logits_unused() { logits_unused_ = true; }
  bool wants_logits() const { return !logits_unused_ || any(Hook::Logits); }
  void set_eval_window(EvalWindow w) { eval_window_ = w; }
  // Null without an evaluation window.
  const EvalWindow* eval_window() const { return eval_window_.window > 0 ? &eval_window_ : nullptr; }
  const AttnEdit* attn_edit(int layer) const {
    return layer < static_cast<int>(edits_.size()) &&
                   (edits_[layer].drop_key >= 0 || edits_[layer].subtract_key >= 0)
               ? &edits_[layer]
               : nullptr;
  }

 private:
  struct Entry {
    int layer;
    HookFn fn;
  };
  std::array<std::vector<Entry>, static_cast<int>(Hook::kCount)> fns_;
  std::vector<AttnEdit> edits_;
  EvalWindow eval_window_;
  std::int64_t pattern_rows_ = std::numeric_limits<std::int64_t>::max();
  std::int64_t stats_rows_ = 0, stats_keys_ = 0;
  bool logits_unused_ = false, stats_entropy_ = true;
};

}  // namespace sink
