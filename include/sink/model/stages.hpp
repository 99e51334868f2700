// Pipeline stages (issue 18): which consecutive layers each rank of a pipeline holds, and how
// much memory that takes. Everything here is computed from the spec's shapes alone (no weights
// read), so --dry-run plans a model that is not on this machine. No libtorch in this header.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "sink/model/spec.hpp"

namespace sink {

// Bytes of a model's weights in a compute dtype, by part, as the loader holds them
// (src/model/family_*.cpp tables; MoE experts dequantised, counted in full).
struct WeightBytes {
  std::int64_t embedding = 0;       // tok_embd [vocab, d]
  std::int64_t final_norm = 0;      // output_norm (+ bias)
  std::int64_t head = 0;            // output [vocab, d]: the embedding's copy when tied on a last stage
  std::vector<std::int64_t> layer;  // per layer
};
WeightBytes weight_bytes(const ModelSpec& spec, const std::string& dtype);

// Bytes of one element of a compute dtype (float32 | bfloat16 | float16); throws otherwise.
int dtype_bytes(const std::string& dtype);

// Peak activation bytes of one forward of T tokens on one rank (residual stream, q/k/v, MLP
// intermediates, one query chunk of attention scores in float32, and on the last stage the
// logits with their float32 log-softmax). An estimate: see docs/distributed.md "Memory model".
std::int64_t activation_bytes(const ModelSpec& spec, const std::string& dtype, std::int64_t T, bool with_head);

struct StagePlan {
  std::vector<std::pair<int, int>> layers;  // [l0, l1) per stage, consecutive, covering [0, n_layers)
  std::vector<std::int64_t> weight_bytes;   // per stage, in the compute dtype
  std::int64_t activation_bytes = 0;        // per-rank activation estimate for the longest document
  int n_stages() const { return static_cast<int>(layers.size()); }
  // The largest stage's weights plus the activation estimate: what one rank must hold.
  std::int64_t peak_bytes() const;
};

// Consecutive layers over n_stages stages (each at least one layer), the embedding on the first,
// the final norm and head on the last, minimising the largest stage's bytes and then the spread
// (sum of squares): balanced, deterministic. Throws std::invalid_argument when n_stages < 1 or
// n_stages > n_layers. `max_T`: the longest document's tokens (for activation_bytes).
StagePlan plan_stages(const ModelSpec& spec, int n_stages, const std::string& dtype, std::int64_t max_T);

// The fewest stages whose plan's peak_bytes() fits in `device_bytes`; 0 when even one layer per
// stage does not fit. At most `max_stages` (0 = n_layers) are tried.
int auto_stages(const ModelSpec& spec, const std::string& dtype, std::int64_t max_T, std::int64_t device_bytes,
                int max_stages = 0);

// The memory one rank sees: a GPU's total memory (cuda:N, CUDA build), else physical RAM divided
// by the ranks on this node.
std::int64_t device_memory_bytes(const std::string& device, int ranks_per_node);

// Config checks of `stages` once the model and the group are known: more stages than layers, or a
// group of ranks not divisible by the stages, is an InputError naming `config_path`. group_size 0:
// not known yet (not checked).
void check_stages(int stages, int n_layers, int group_size, const std::string& config_path);

}  // namespace sink
