#include "sink/metrics/geometry.hpp"

#include <ATen/ATen.h>

#include <stdexcept>

namespace sink {

namespace {
at::TensorOptions f64() { return at::TensorOptions().dtype(at::kDouble); }

void append(std::vector<double>& out, const at::Tensor& t) {
  auto c = t.to(at::kCPU, at::kDouble).contiguous();
  out.insert(out.end(), c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

std::size_t take(const std::vector<double>& in, std::size_t pos, at::Tensor& t) {
  const auto n = static_cast<std::size_t>(t.numel());
  if (pos + n > in.size()) throw std::runtime_error("geometry: flat image too short");
  auto c = at::from_blob(const_cast<double*>(in.data() + pos), t.sizes(), f64()).to(t.device());
  t.copy_(c);
  return pos + n;
}
}  // namespace

GeometryAccumulator::GeometryAccumulator(int n_layers, std::int64_t d, std::int64_t sketch, const at::Device& device)
    : n_layers_(n_layers), d_(d), k_(sketch), exact_(d <= kExactPcaMaxDim || sketch <= 0) {
  const auto on = f64().device(device);
  n_ = at::zeros({n_layers, 2}, on);
  sums_ = at::zeros({n_layers, 2, d, 2}, on);
  norm_gram_ = at::zeros({n_layers, 2, 2, 2}, on);
  if (exact_) {
    k_ = 0;
    second_ = at::zeros({n_layers, 2, d, d}, on);
  } else {
    // Ω is the same on every rank, device and run: a fixed seed, CPU generator.
    auto gen = at::make_generator<at::CPUGeneratorImpl>(0x51CA7E);
    omega_ = at::randn({d, k_}, gen, f64()).to(device);
    second_ = at::zeros({n_layers, 2, d, k_}, on);
  }
}

void GeometryAccumulator::to_device(const at::Device& dev) {
  for (auto* t : {&n_, &sums_, &norm_gram_, &second_, &omega_})
    if (t->defined()) *t = t->to(dev);
}

void GeometryAccumulator::add(int l, int w, const at::Tensor& v) {
  const auto n = v.size(0);
  if (n == 0) return;
  // The sums live where the activations are: no copy to the host (a sync) inside the layer loop.
  // This runs in every layer of the observation pass, so it is written as few operators as it
  // can be (on a GPU each is a kernel launch): every sum is one of two products with the row
  // weights p_i = (‖v_i‖, [v_i ≠ 0], 1/‖v_i‖).
  auto x = v.to(at::kDouble);
  if (x.device() != n_.device()) to_device(x.device());
  auto p = at::empty({n, 3}, x.options());
  auto norms = p.select(1, 0), nonzero = p.select(1, 1), inv = p.select(1, 2);
  at::linalg_vector_norm_out(norms, x, 2, 1);
  at::sign_out(nonzero, norms);  // 1 for v ≠ 0, else 0 (norms ≥ 0)
  // A zero vector has no direction (the sink outside a sliding window writes exactly nothing):
  // its weight 1/max(‖v‖, 1e-300) multiplies an exact zero row, so it adds nothing to Σ v/‖v‖.
  at::clamp_min_out(inv, norms, 1e-300).reciprocal_();
  n_[l][w] += static_cast<double>(n);
  sums_[l][w].addmm_(x.t(), p.narrow(1, 1, 2));  // [Σ v, Σ v/‖v‖]
  auto q = p.narrow(1, 0, 2);
  norm_gram_[l][w].addmm_(q.t(), q);  // [[Σ‖v‖², Σ‖v‖], [Σ‖v‖, #(v ≠ 0)]]
  if (exact_)
    second_[l][w].addmm_(x.t(), x);
  else
    second_[l][w].addmm_(x.t(), at::mm(x, omega_));
}

void GeometryAccumulator::add_factored(int l0, int w, const at::Tensor& a_in, const at::Tensor& w_in) {
  if (a_in.size(-2) == 0) return;
  // [n, r] and [r, d] for layer l0, or [Lb, n, r] and [Lb, r, d] for layers l0 .. l0 + Lb − 1.
  auto a = a_in.to(at::kDouble), W = w_in.to(at::kDouble);
  if (a.dim() == 2) a = a.unsqueeze(0), W = W.unsqueeze(0);
  if (a.device() != n_.device()) to_device(a.device());
  const auto Lb = a.size(0);
  auto M = at::matmul(W, W.transpose(1, 2));                       // [Lb, r, r]
  auto norms = (at::matmul(a, M) * a).sum(2).clamp_min(0).sqrt();  // ‖a_iᵀW‖, [Lb, n]
  auto nz = (norms > 0).to(at::kDouble);  // exactly 0 iff a_i = 0 (M is positive semi-definite)
  auto inv = norms.clamp_min(1e-300).reciprocal() * nz;
  auto lw = [&](const at::Tensor& t) { return t.narrow(0, l0, Lb).select(1, w); };
  lw(n_) += static_cast<double>(a.size(1));
  auto weights = at::stack({a.sum(1), at::matmul(inv.unsqueeze(1), a).squeeze(1)}, 1);  // [Lb, 2, r]
  lw(sums_) += at::matmul(weights, W).transpose(1, 2);                                  // [Σ v, Σ v/‖v‖]
  auto q = at::stack({norms, nz}, 2);                                                   // [Lb, n, 2]
  lw(norm_gram_) += at::matmul(q.transpose(1, 2), q);
  auto ata = at::matmul(a.transpose(1, 2), a);  // [Lb, r, r]
  if (exact_)
    lw(second_) += at::matmul(W.transpose(1, 2), at::matmul(ata, W));
  else
    lw(second_) += at::matmul(W.transpose(1, 2), at::matmul(ata, at::matmul(W, omega_)));
}

void GeometryAccumulator::merge(const GeometryAccumulator& o) {
  if (o.empty()) return;
  if (empty()) {
    *this = GeometryAccumulator(o.n_layers_, o.d_, o.exact_ ? 0 : o.k_);
  }
  if (o.n_.device() != n_.device()) {
    GeometryAccumulator c = o;  // shares o's tensors until moved
    c.to_device(n_.device());
    merge(c);
    return;
  }
  n_ += o.n_;
  sums_ += o.sums_;
  norm_gram_ += o.norm_gram_;
  second_ += o.second_;
}

// The flat image keeps one layout whatever the sums' layout in memory (checkpoints written by
// an earlier build resume): n, #(v ≠ 0), Σ v, Σ v/‖v‖, Σ‖v‖², Σ‖v‖, second moments.
std::vector<at::Tensor> GeometryAccumulator::flat_parts() const {
  auto g = norm_gram_;
  return {n_,
          g.select(2, 1).select(2, 1),
          sums_.select(3, 0),
          sums_.select(3, 1),
          g.select(2, 0).select(2, 0),
          g.select(2, 0).select(2, 1),
          second_};
}

std::vector<at::Tensor> GeometryAccumulator::control_parts(int l0, int l1) const {
  std::vector<at::Tensor> out;
  for (const auto* t : {&n_, &sums_, &norm_gram_, &second_}) out.push_back(t->narrow(0, l0, l1 - l0).select(1, 1));
  return out;
}

std::size_t GeometryAccumulator::flat_size() const {
  std::size_t n = 0;
  for (const auto& t : flat_parts()) n += static_cast<std::size_t>(t.numel());
  return n;
}

std::vector<double> GeometryAccumulator::to_flat() const {
  std::vector<double> out;
  out.reserve(flat_size());
  for (const auto& t : flat_parts()) append(out, t);
  return out;
}

void GeometryAccumulator::from_flat(const std::vector<double>& in) {
  if (in.size() != flat_size()) throw std::runtime_error("geometry: flat image has the wrong size");
  std::size_t pos = 0;
  for (auto t : flat_parts()) pos = take(in, pos, t);                                // views: writes land in the sums
  norm_gram_.select(2, 1).select(2, 0).copy_(norm_gram_.select(2, 0).select(2, 1));  // Σ‖v‖, both places
}

std::map<std::string, at::Tensor> GeometryAccumulator::summary() const {
  if (!n_.is_cpu()) {
    GeometryAccumulator c = *this;
    c.to_device(at::kCPU);
    return c.summary();
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto mean_cos = at::full({n_layers_, 2}, nan, f64());
  auto pc1 = at::full({n_layers_, 2}, nan, f64());
  auto var_ratio = at::full({n_layers_, 2}, nan, f64());
  auto mean_norm = at::full({n_layers_, 2}, nan, f64());
  auto mean_dir = at::full({n_layers_, 2, d_}, nan, f64());
  for (int l = 0; l < n_layers_; ++l) {
    for (int w = 0; w < 2; ++w) {
      const double n = n_[l][w].item<double>();
      if (n < 1) continue;
      auto mu = sums_[l][w].select(1, 0) / n;
      const double mu2 = mu.dot(mu).item<double>();
      const double mu_norm = std::sqrt(mu2);
      auto gram = norm_gram_[l][w];
      mean_norm[l][w] = gram[0][1].item<double>() / n;
      const double trace = gram[0][0].item<double>() / n - mu2;
      if (mu_norm > 0) {
        mean_dir[l][w] = mu / mu_norm;
        const double nz = gram[1][1].item<double>();
        if (nz > 0) mean_cos[l][w] = sums_[l][w].select(1, 1).dot(mu).item<double>() / (nz * mu_norm);
        var_ratio[l][w] = trace / mu2;
      }
      if (trace <= 0) continue;
      double lambda1;
      if (exact_) {
        auto cov = second_[l][w] / n - at::outer(mu, mu);
        lambda1 = std::get<0>(at::linalg_eigh((cov + cov.t()) / 2)).max().item<double>();
      } else {
        // Nyström: Y = Cov Ω, B = Ωᵀ Y; λ1 ≈ top eigenvalue of B^{-1/2} YᵀY B^{-1/2}.
        auto y = second_[l][w] / n - at::outer(mu, at::matmul(mu, omega_));
        auto b = at::matmul(omega_.t(), y);
        b = (b + b.t()) / 2;
        auto [s, u] = at::linalg_eigh(b);
        auto keep = s > s.max() * 1e-12;
        auto inv_sqrt = at::where(keep, s.clamp_min(1e-300).rsqrt(), at::zeros_like(s));
        auto bh = at::matmul(u * inv_sqrt.unsqueeze(0), u.t());
        auto m = at::matmul(bh, at::matmul(at::matmul(y.t(), y), bh));
        lambda1 = std::get<0>(at::linalg_eigh((m + m.t()) / 2)).max().item<double>();
      }
      pc1[l][w] = lambda1 / trace;
    }
  }
  auto ratio = mean_norm.select(1, 0) / mean_norm.select(1, 1);
  return {{"mean_cos_to_mean", mean_cos},  {"pc1_share", pc1},         {"var_over_mean_sq", var_ratio},
          {"mean_norm", mean_norm},        {"count", n_.clone()},      {"norm_ratio", ratio},
          {"mean_direction", mean_dir}};
}

MuAccumulator::MuAccumulator(int n_layers, int n_heads, std::int64_t d)
    : n_layers_(n_layers), n_heads_(n_heads), d_(d) {
  head_sum_ = at::zeros({n_layers, n_heads, d}, f64());
  alpha_sum_ = at::zeros({n_layers, n_heads}, f64());
  count_ = at::zeros({n_layers}, f64());
}

void MuAccumulator::add(int l0, const at::Tensor& a_in, const at::Tensor& w_in) {
  if (a_in.size(-1) == 0) return;
  // [H, n] and [H, d] for layer l0, or [Lb, H, n] and [Lb, H, d] for layers l0 .. l0 + Lb − 1.
  auto a = a_in.dim() == 2 ? a_in.unsqueeze(0) : a_in, w = w_in.dim() == 2 ? w_in.unsqueeze(0) : w_in;
  auto as = a.to(at::kDouble).sum(2);  // [Lb, H], on the activations' device (no sync)
  if (as.device() != head_sum_.device())
    for (auto* t : {&head_sum_, &alpha_sum_, &count_}) *t = t->to(as.device());
  const auto Lb = a.size(0);
  head_sum_.narrow(0, l0, Lb) += as.unsqueeze(2) * w.to(at::kDouble);
  alpha_sum_.narrow(0, l0, Lb) += as;
  count_.narrow(0, l0, Lb) += static_cast<double>(a.size(2));
}

void MuAccumulator::merge(const MuAccumulator& o) {
  if (o.empty()) return;
  if (empty()) *this = MuAccumulator(o.n_layers_, o.n_heads_, o.d_);
  head_sum_ += o.head_sum_.to(head_sum_.device());
  alpha_sum_ += o.alpha_sum_.to(head_sum_.device());
  count_ += o.count_.to(head_sum_.device());
}

std::vector<double> MuAccumulator::to_flat() const {
  std::vector<double> out;
  for (const auto* t : {&head_sum_, &alpha_sum_, &count_}) append(out, *t);
  return out;
}

void MuAccumulator::from_flat(const std::vector<double>& in) {
  if (in.size() != static_cast<std::size_t>(head_sum_.numel() + alpha_sum_.numel() + count_.numel()))
    throw std::runtime_error("mu: flat image has the wrong size");
  std::size_t pos = 0;
  for (auto* t : {&head_sum_, &alpha_sum_, &count_}) pos = take(in, pos, *t);
}

std::map<std::string, at::Tensor> MuAccumulator::result() const {
  const auto count = count_.cpu();
  auto c = count.clamp_min(1).view({n_layers_, 1, 1});
  auto mu_head = head_sum_.cpu() / c;
  return {{"mu_head", mu_head},
          {"mu", mu_head.sum(1)},
          {"alpha_bar", alpha_sum_.cpu() / count.clamp_min(1).view({n_layers_, 1})},
          {"count", count.clone()}};
}

}  // namespace sink
