// GeometryAccumulator::add_factored (rows a_iᵀW never formed) must give the sums that
// add() gives for the explicit rows, in both the exact and the sketched mode, with zero
// rows (the sink outside a sliding window) left out of the direction mean alike; and
// several layers in one call the same as one call per layer.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "sink/metrics/geometry.hpp"

namespace {

void expect_same(const sink::GeometryAccumulator& x, const sink::GeometryAccumulator& y) {
  auto fx = x.to_flat(), fy = y.to_flat();
  ASSERT_EQ(fx.size(), fy.size());
  double scale = 0;
  for (double v : fy) scale = std::max(scale, std::abs(v));
  for (std::size_t i = 0; i < fx.size(); ++i) EXPECT_NEAR(fx[i], fy[i], 1e-12 * scale) << "element " << i;
  auto sx = x.summary(), sy = y.summary();
  for (const char* k : {"mean_cos_to_mean", "pc1_share", "var_over_mean_sq", "mean_norm"})
    EXPECT_TRUE(at::allclose(sx.at(k), sy.at(k), 1e-10, 1e-12, /*equal_nan=*/true)) << k;
}

void check(std::int64_t d, std::int64_t sketch) {
  at::manual_seed(7);
  const std::int64_t n = 300, r = 9;
  auto a = at::rand({n, r}, at::kFloat);
  a.narrow(0, 250, 50).zero_();  // rows outside the window: exactly zero vectors
  auto w = at::randn({r, d}, at::kFloat) * 3;
  sink::GeometryAccumulator rows(2, d, sketch), factored(2, d, sketch);
  rows.add(1, 0, at::matmul(a.to(at::kDouble), w.to(at::kDouble)));
  factored.add_factored(1, 0, a, w);
  // A second document into the same sums.
  auto a2 = at::rand({40, r}, at::kFloat);
  rows.add(1, 0, at::matmul(a2.to(at::kDouble), w.to(at::kDouble)));
  factored.add_factored(1, 0, a2, w);
  expect_same(factored, rows);
  EXPECT_EQ(factored.summary().at("count")[1][0].item<double>(), double(n + 40));
}

// Several layers in one call ([Lb, n, r], [Lb, r, d], as the observation adds C after the
// forward) must give what one call per layer gives.
TEST(Geometry, FactoredLayersAtOnceEqualOneCallPerLayer) {
  at::manual_seed(11);
  const std::int64_t L = 4, n = 120, r = 6, d = 300;
  auto a = at::rand({L, n, r}, at::kFloat), w = at::randn({L, r, d}, at::kFloat);
  sink::GeometryAccumulator batched(L + 1, d, 16), layered(L + 1, d, 16);
  batched.add_factored(1, 0, a, w);
  for (std::int64_t l = 0; l < L; ++l) layered.add_factored(int(l) + 1, 0, a[l], w[l]);
  expect_same(batched, layered);
}

TEST(Geometry, FactoredRowsEqualExplicitRowsExact) { check(64, 0); }
TEST(Geometry, FactoredRowsEqualExplicitRowsSketched) { check(576, 32); }

}  // namespace

namespace {

// The summary from the running sums against the definitions (docs/metrics.md) applied to
// the rows themselves: two documents, one zero row (no direction), merged, and sent through
// the flat image as a resumed run reads it back.
TEST(Geometry, SummaryFromSumsEqualsDefinitionsOnRows) {
  at::manual_seed(3);
  const std::int64_t d = 48;
  auto dir = at::randn({d}, at::kDouble);
  auto doc1 = at::randn({70, d}, at::kDouble) + 4 * dir;
  doc1[5].zero_();
  auto doc2 = at::randn({30, d}, at::kDouble) * 2 + 4 * dir;
  sink::GeometryAccumulator acc(3, d, 0), second(3, d, 0);
  acc.add(2, 1, doc1);
  second.add(2, 1, doc2);
  acc.merge(second);
  sink::GeometryAccumulator resumed(3, d, 0);
  resumed.from_flat(acc.to_flat());

  auto v = at::cat({doc1, doc2});
  const double n = double(v.size(0));
  auto mu = v.mean(0);
  auto norms = at::linalg_vector_norm(v, 2, 1);
  auto nz = norms > 0;
  auto unit = v.index({nz}) / norms.index({nz}).unsqueeze(1);
  const double mean_cos = (at::matmul(unit, mu / mu.norm())).mean().item<double>();
  auto centred = v - mu;
  auto cov = at::matmul(centred.t(), centred) / n;
  const double trace = cov.trace().item<double>();
  const double lambda1 = at::linalg_eigvalsh(cov).max().item<double>();
  const std::map<std::string, double> expected = {{"mean_cos_to_mean", mean_cos},
                                                  {"pc1_share", lambda1 / trace},
                                                  {"var_over_mean_sq", trace / mu.dot(mu).item<double>()},
                                                  {"mean_norm", norms.mean().item<double>()},
                                                  {"count", n}};
  for (const auto* a : {&acc, &resumed}) {
    auto got = a->summary();
    for (const auto& [k, want] : expected) {
      EXPECT_NEAR(got.at(k)[2][1].item<double>(), want, 1e-10 * std::abs(want)) << k;
      if (k != "count") EXPECT_TRUE(std::isnan(got.at(k)[0][1].item<double>())) << k << ": a layer with no rows";
    }
    EXPECT_TRUE(at::allclose(got.at("mean_direction")[2][1], mu / mu.norm(), 1e-12, 1e-12));
  }
  EXPECT_EQ(resumed.to_flat(), acc.to_flat());
}

}  // namespace
