// Stage plans (see include/sink/model/stages.hpp): bytes from the spec's shapes, a min-max
// partition of consecutive layers, and the fewest stages that fit a device.
#include "sink/model/stages.hpp"

#include <unistd.h>

#include <algorithm>
#include <limits>
#include <stdexcept>

#ifdef SINK_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#include <cuda_runtime_api.h>
#endif

#include "sink/util/error.hpp"

namespace sink {

int dtype_bytes(const std::string& dtype) {
  if (dtype == "float32") return 4;
  if (dtype == "bfloat16" || dtype == "float16") return 2;
  throw std::invalid_argument("unknown dtype '" + dtype + "' (float32, bfloat16 or float16)");
}

WeightBytes weight_bytes(const ModelSpec& s, const std::string& dtype) {
  const std::int64_t b = dtype_bytes(dtype);
  const std::int64_t d = s.d_model, H = s.n_heads, Hkv = s.n_kv_heads, dh = s.head_dim, f = s.d_ff, V = s.vocab;
  const bool ln = s.norm == NormKind::LayerNorm;
  WeightBytes w;
  w.embedding = V * d * b;
  w.final_norm = (ln ? 2 : 1) * d * b;
  w.head = V * d * b;
  // One layer, element by element as the family tables take it (src/model/family_*.cpp).
  std::int64_t n = 2 * d * (ln ? 2 : 1);          // attn_norm, ffn_norm (+ biases)
  n += (H * dh + 2 * Hkv * dh) * d + d * H * dh;  // wq, wk, wv, wo
  if (s.qkv_bias) n += H * dh + 2 * Hkv * dh;     // bq, bk, bv
  if (s.o_bias) n += d;                           // bo
  if (s.qk_norm) n += 2 * dh;                     // q_norm, k_norm
  if (s.post_norms) n += 2 * d;                   // Gemma's post-attention and post-MLP norms
  if (s.attn_sinks) n += H;                       // GPT-OSS sink logits
  if (s.n_experts > 0) {
    const std::int64_t E = s.n_experts;
    n += E * d + E;                  // router
    n += E * d * 2 * f + E * 2 * f;  // experts' gate_up and its bias
    n += E * f * d + E * d;          // experts' down and its bias
  } else {
    const bool gated = s.act != Activation::GELU;  // GPT-NeoX's MLP has no gate
    n += (gated ? 3 : 2) * f * d;
    if (s.mlp_bias) n += (gated ? 2 : 1) * f + d;  // GPT-NeoX: its biases with attention_bias
  }
  w.layer.assign(static_cast<std::size_t>(s.n_layers), n * b);
  return w;
}

std::int64_t activation_bytes(const ModelSpec& s, const std::string& dtype, std::int64_t T, bool with_head) {
  const std::int64_t b = dtype_bytes(dtype);
  const std::int64_t d = s.d_model, H = s.n_heads, Hkv = s.n_kv_heads, dh = s.head_dim, f = s.d_ff;
  T = std::max<std::int64_t>(T, 1);
  // The residual stream and what a block keeps alive beside it (norm output, attention output,
  // MLP output, the incoming hidden state a stage receives): ~6 [T, d].
  std::int64_t n = 6 * T * d * b;
  // q, k, v and the attention output z, before and after RoPE: 2 × [T, (2H + 2Hkv) dh].
  n += 2 * T * (2 * H + 2 * Hkv) * dh * b;
  // MLP: gate, up, activation, product (an expert's slice of tokens is smaller).
  n += 4 * T * f * b;
  // One query chunk of scores, exponentials and probabilities in float32 (forward.cpp's chunk).
  const std::int64_t chunk = std::min(T, std::max<std::int64_t>(16, (std::int64_t(1) << 24) / (H * T)));
  n += 3 * H * chunk * T * 4;
  // The head: logits in the dtype and a float32 log-softmax beside a float32 copy.
  if (with_head) n += T * s.vocab * (b + 8);
  return n;
}

std::int64_t StagePlan::peak_bytes() const {
  std::int64_t w = 0;
  for (auto x : weight_bytes) w = std::max(w, x);
  return w + activation_bytes;
}

StagePlan plan_stages(const ModelSpec& spec, int n_stages, const std::string& dtype, std::int64_t max_T) {
  const int L = spec.n_layers;
  if (n_stages < 1 || n_stages > L)
    throw std::invalid_argument("plan_stages: " + std::to_string(n_stages) + " stages for a model of " +
                                std::to_string(L) + " layers (1 to " + std::to_string(L) + ")");
  const WeightBytes wb = weight_bytes(spec, dtype);
  const bool tied_alias = spec.tied_embeddings && n_stages == 1;  // one tensor for both ends
  // Bytes of stage [i, j) with the ends it holds.
  std::vector<std::int64_t> prefix(L + 1, 0);
  for (int l = 0; l < L; ++l) prefix[l + 1] = prefix[l] + wb.layer[l];
  auto cost = [&](int i, int j) {
    std::int64_t c = prefix[j] - prefix[i];
    if (i == 0) c += wb.embedding;
    if (j == L) c += wb.final_norm + (tied_alias ? 0 : wb.head);
    return c;
  };
  // best[k][j]: the smallest possible largest stage over the first j layers in k stages.
  constexpr std::int64_t kInf = std::numeric_limits<std::int64_t>::max();
  const int N = n_stages;
  std::vector<std::vector<std::int64_t>> best(N + 1, std::vector<std::int64_t>(L + 1, kInf));
  best[0][0] = 0;
  for (int k = 1; k <= N; ++k)
    for (int j = k; j <= L - (N - k); ++j)
      for (int i = k - 1; i < j; ++i)
        if (best[k - 1][i] != kInf) best[k][j] = std::min(best[k][j], std::max(best[k - 1][i], cost(i, j)));
  const std::int64_t M = best[N][L];
  // Among plans whose largest stage is M, the one with the least sum of squared stage bytes
  // (the most even), ties to the earliest split: deterministic.
  std::vector<std::vector<double>> sq(N + 1, std::vector<double>(L + 1, -1));
  std::vector<std::vector<int>> from(N + 1, std::vector<int>(L + 1, -1));
  sq[0][0] = 0;
  for (int k = 1; k <= N; ++k)
    for (int j = k; j <= L - (N - k); ++j)
      for (int i = k - 1; i < j; ++i) {
        if (sq[k - 1][i] < 0 || cost(i, j) > M) continue;
        const double c = static_cast<double>(cost(i, j)), v = sq[k - 1][i] + c * c;
        if (sq[k][j] < 0 || v < sq[k][j]) sq[k][j] = v, from[k][j] = i;
      }
  StagePlan p;
  p.layers.resize(N);
  p.weight_bytes.resize(N);
  for (int k = N, j = L; k >= 1; --k) {
    const int i = from[k][j];
    p.layers[k - 1] = {i, j};
    p.weight_bytes[k - 1] = cost(i, j);
    j = i;
  }
  // The first stage's activations lack the logits; the last's include them: the per-rank
  // estimate is the larger, the last's.
  p.activation_bytes = activation_bytes(spec, dtype, max_T, /*with_head=*/true);
  return p;
}

int auto_stages(const ModelSpec& spec, const std::string& dtype, std::int64_t max_T, std::int64_t device_bytes,
                int max_stages) {
  const int top = max_stages > 0 ? std::min(max_stages, spec.n_layers) : spec.n_layers;
  for (int n = 1; n <= top; ++n)
    if (plan_stages(spec, n, dtype, max_T).peak_bytes() <= device_bytes) return n;
  return 0;
}

std::int64_t device_memory_bytes(const std::string& device, int ranks_per_node) {
#ifdef SINK_WITH_CUDA
  if (device.rfind("cuda", 0) == 0) {
    const auto colon = device.find(':');
    const int idx = colon == std::string::npos ? 0 : std::stoi(device.substr(colon + 1));
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, idx) == cudaSuccess) return static_cast<std::int64_t>(prop.totalGlobalMem);
  }
#else
  (void)device;
#endif
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  return static_cast<std::int64_t>(pages) * page / std::max(1, ranks_per_node);
}

void check_stages(int stages, int n_layers, int group_size, const std::string& config_path) {
  if (stages > n_layers)
    throw InputError(config_path, "key 'stages': " + std::to_string(stages) + " stages for a model of " +
                                      std::to_string(n_layers) + " layers (each stage holds at least one layer)");
  if (group_size > 0 && group_size % stages != 0)
    throw InputError(config_path, "key 'stages': " + std::to_string(stages) + " stages do not divide the group of " +
                                      std::to_string(group_size) + " ranks (run a multiple of " +
                                      std::to_string(stages) + " ranks)");
}

}  // namespace sink
