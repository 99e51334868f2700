// Geometry of what the sink writes into the residual stream (SPEC §3), as
// exact, mergeable running sums in float64: per layer, for the sink vector
// C[l,i] and the control R[l,i] = attention output − C[l,i]:
//   n, Σv, Σ v/‖v‖ (over non-zero v, and their count), Σ‖v‖², Σ‖v‖, and second moments for the first principal
//   component: exact Σ v vᵀ when d ≤ kExactPcaMaxDim (256), else a fixed Gaussian
//   sketch Σ v (vᵀΩ) (Ω: d × k, seeded) and a Nyström estimate of the top
//   eigenvalue of the covariance (docs/metrics.md states the error bound the
//   tests check).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sink {

inline constexpr std::int64_t kExactPcaMaxDim = 256;  // exact d×d second moments up to here

class GeometryAccumulator {
 public:
  GeometryAccumulator() = default;
  // sketch = k for d > kExactPcaMaxDim (0: always exact).
  // The sums live on `device` (the activations' device: a per-document accumulator built on
  // the host and copied over cost a 7B model's observation pass on an H200 13 %).
  GeometryAccumulator(int n_layers, std::int64_t d, std::int64_t sketch, const at::Device& device = at::kCPU);
  // v: [n, d] rows for layer l; which = 0 for C (sink), 1 for R (rest).
  void add(int layer, int which, const at::Tensor& v);
  // The same for rows v_i = a_iᵀ W given as a: [n, r] and W: [r, d] (the sink vector C has
  // rank ≤ H): every sum through r×r and r×d products, without forming the [n, d] rows.
  // With a: [Lb, n, r] and W: [Lb, r, d], layers layer .. layer + Lb − 1 at once.
  void add_factored(int layer, int which, const at::Tensor& a, const at::Tensor& w);
  void merge(const GeometryAccumulator& o);
  bool empty() const { return n_layers_ == 0; }
  // A zero accumulator of the same shape (copies of an accumulator share storage).
  GeometryAccumulator like() const { return GeometryAccumulator(n_layers_, d_, exact_ ? 0 : k_); }

  // Flat float64 image (for MPI reductions and checkpoints), and back.
  std::vector<double> to_flat() const;
  void from_flat(const std::vector<double>& flat);
  std::size_t flat_size() const;

  // Per-layer tables [L, 2] (column 0 = C, 1 = R): "mean_cos_to_mean",
  // "pc1_share", "var_over_mean_sq", "mean_norm", "count"; plus
  // "norm_ratio" [L] = mean‖C‖ / mean‖R‖ and "mean_direction" [L, 2, d].
  std::map<std::string, at::Tensor> summary() const;

  bool exact() const { return exact_; }
  std::int64_t sketch_width() const { return k_; }
  // The control R's sums (which = 1) of layers [l0, l1), as views: what a pipeline stage's
  // hooks added for its layers, sent to the stage that assembles the document and copied there
  // (each layer's sums come from one stage; C is added from the gathered rows in finish()).
  std::vector<at::Tensor> control_parts(int l0, int l1) const;

 private:
  int n_layers_ = 0;
  std::int64_t d_ = 0, k_ = 0;
  bool exact_ = true;
  // n_ [L, 2]; sums_ [L, 2, d, 2]: Σ v and Σ v/‖v‖ (v ≠ 0); norm_gram_ [L, 2, 2, 2]: Σ pᵀp over
  // rows, p = (‖v‖, [v ≠ 0]); second_ [L, 2, d, d or k].
  at::Tensor n_, sums_, norm_gram_, second_, omega_;
  void to_device(const at::Device& dev);
  std::vector<at::Tensor> flat_parts() const;  // views in the flat image's order
};

// μ statistics over calibration documents: Σ_i C[l,i] [L, d], Σ_i c[l,h,i]
// [L, H, d], Σ_i A[l,h,i,s] [L, H] and the count of positions i > s.
class MuAccumulator {
 public:
  MuAccumulator() = default;
  MuAccumulator(int n_layers, int n_heads, std::int64_t d);
  // a_sink [H, n], w [H, d] = v_s W_O per head; or [Lb, H, n], [Lb, H, d] for layers layer .. layer + Lb − 1.
  void add(int layer, const at::Tensor& a_sink, const at::Tensor& w);
  void merge(const MuAccumulator& o);
  MuAccumulator like() const { return MuAccumulator(n_layers_, n_heads_, d_); }
  std::vector<double> to_flat() const;
  void from_flat(const std::vector<double>& flat);
  // μ[l] [L, d], μ[l,h] [L, H, d], ᾱ[l,h] [L, H], count.
  std::map<std::string, at::Tensor> result() const;
  bool empty() const { return n_layers_ == 0; }

 private:
  int n_layers_ = 0, n_heads_ = 0;
  std::int64_t d_ = 0;
  at::Tensor head_sum_, alpha_sum_, count_;
};

}  // namespace sink
