// A loaded model: spec, weights resident in the compute dtype, and the one
// shared forward pass. Families differ only in their spec and weight table.
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "sink/model/hooks.hpp"
#include "sink/model/spec.hpp"

namespace sink {

struct LoadOptions {
  std::string dtype = "float32";  // float32 | bfloat16 | float16
  std::string device = "cpu";     // cpu | cuda:N
  std::int64_t attn_chunk = 0;    // queries per attention chunk; 0 = choose from T and heads
  // Statistics and SSP edits through the explicit chunked attention, never the fused kernels'
  // log-sum-exp: the reference the fused paths are checked against (sink-bench --check-fused).
  bool explicit_attention = false;
  // A pipeline stage: only layers [layer_begin, layer_end) are loaded (−1 = n_layers), the
  // embedding only when layer_begin == 0, the final norm and head only when layer_end == n_layers
  // (a tied embedding is held as `output` there). Other tensors are never read from the files.
  int layer_begin = 0;
  int layer_end = -1;
};

// Per-layer weights; unused ones stay undefined (all of them in a layer outside a pipeline
// stage's range). Shapes as in HF nn.Linear ([out, in]).
struct LayerWeights {
  at::Tensor attn_norm, attn_norm_b;  // [d]
  at::Tensor wq, wk, wv, wo;          // [H*dh, d], [Hkv*dh, d], [Hkv*dh, d], [d, H*dh]
  at::Tensor bq, bk, bv, bo;
  at::Tensor q_norm, k_norm;                // [dh] (Qwen3)
  at::Tensor post_attn_norm, pre_ffn_norm;  // Gemma 2 sandwich norms
  at::Tensor ffn_norm, ffn_norm_b;          // [d]
  at::Tensor post_ffn_norm;
  at::Tensor w_gate, w_up, w_down;  // [f, d], [f, d], [d, f]
  at::Tensor b_gate, b_up, b_down;
  at::Tensor sinks;  // [H] GPT-OSS learned sink logits
  // Mixture of experts (GPT-OSS): router [E, d] + [E]; experts stored for x @ W.
  at::Tensor router_w, router_b;
  at::Tensor experts_gate_up, experts_gate_up_b;  // [E, d, 2f] (gate even, up odd columns), [E, 2f]
  at::Tensor experts_down, experts_down_b;        // [E, f, d], [E, d]

  // Every slot above, for code that walks them all (bytes held, what a stage holds).
  // clang-format off
  std::array<const at::Tensor*, 30> all() const {
    return {&attn_norm, &attn_norm_b, &wq, &wk, &wv, &wo, &bq, &bk, &bv, &bo, &q_norm, &k_norm,
            &post_attn_norm, &pre_ffn_norm, &ffn_norm, &ffn_norm_b, &post_ffn_norm,
            &w_gate, &w_up, &w_down, &b_gate, &b_up, &b_down, &sinks, &router_w, &router_b,
            &experts_gate_up, &experts_gate_up_b, &experts_down, &experts_down_b};
  }
  // clang-format on
};

struct Weights {
  at::Tensor tok_embd;                    // [vocab, d]; undefined on a stage after the first
  at::Tensor output_norm, output_norm_b;  // [d]; undefined on a stage before the last
  at::Tensor output;                      // [vocab, d] (may alias tok_embd)
  std::vector<LayerWeights> layers;       // n_layers entries, defined in layer_range() only
};

// Bytes of the weights a model holds resident (aliased tensors counted once).
std::int64_t resident_bytes(const Weights& w);

class Model {
 public:
  Model(ModelSpec spec, Weights w, const LoadOptions& opt);
  ~Model();

  const ModelSpec& spec() const { return spec_; }
  const Weights& weights() const { return w_; }
  at::ScalarType dtype() const;
  const std::string& source() const { return source_; }
  // The device the weights live on (the embedding's on a full model; any held tensor's on a stage).
  at::Device device() const;
  // The layers this model holds, [l0, l1): [0, n_layers) unless loaded as a pipeline stage.
  std::pair<int, int> layer_range() const { return {l0_, l1_}; }
  bool has_embedding() const { return w_.tok_embd.defined(); }  // the first stage
  bool has_head() const { return w_.output.defined(); }         // the last stage
  void set_source(std::string s) { source_ = std::move(s); }

  // One sequence of token ids → logits [T, vocab] (compute dtype), or an undefined tensor
  // when the hooks say no one reads them (Hooks::set_logits_unused). Hooks see every named
  // intermediate. Runs under inference mode. It is the three parts below:
  //   head(blocks(embed(ids), 0, n_layers, hooks), hooks)
  at::Tensor forward(const std::vector<std::int64_t>& ids, const Hooks& hooks = {}) const;

  // The parts of a forward, for a caller that stops after layer k, keeps the hidden state and
  // continues later or elsewhere (a pipeline stage): the results are bit-identical to forward().
  // Token ids → the residual stream before layer 0 (hook_resid_pre of block 0), [T, d_model].
  // embed() throws on a stage without the embedding, head() on one without the head, blocks() on
  // layers outside layer_range().
  at::Tensor embed(const std::vector<std::int64_t>& ids) const;
  // Blocks l0..l1−1 applied to the hidden state x [T, d_model] of positions 0..T−1, with the
  // hooks of those layers → the hidden state after block l1−1.
  at::Tensor blocks(at::Tensor x, int l0, int l1, const Hooks& hooks = {}) const;
  // The final norm (ln_final.hook_normalized) and the head (hook_logits): [T, d_model] →
  // logits [T, vocab], or undefined when the hooks want no logits.
  at::Tensor head(at::Tensor x, const Hooks& hooks = {}) const;

 private:
  struct Rope;
  ModelSpec spec_;
  Weights w_;
  LoadOptions opt_;
  std::string source_;
  std::unique_ptr<Rope> rope_;
  int l0_ = 0, l1_ = 0;
};

// Loads a model from a path (HF snapshot dir, config.json's folder, .gguf file)
// or an HF id resolved through the local HF cache. Throws InputError on bad input.
std::unique_ptr<Model> load_model(const std::string& path_or_id, const LoadOptions& opt);

// HF id → snapshot directory in $HF_HUB_CACHE / $HF_HOME/hub / ~/.cache/huggingface/hub (offline).
std::string resolve_model_path(const std::string& path_or_id);

}  // namespace sink
