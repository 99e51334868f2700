// The pipeline transport (MPI path) on however many ranks the run has: a chain of stages passes
// tensors of every compute dtype, strided views and large messages on, bit for bit, in order;
// a message of the wrong document or size is refused with a message naming both.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstring>
#include <stdexcept>
#include <string>

#include "sink/dist/comm.hpp"
#include "sink/dist/transport.hpp"

namespace sink::dist {
namespace {

at::Tensor payload(std::int64_t tag, at::ScalarType dt, std::int64_t rows = 7, std::int64_t cols = 5) {
  auto g = at::make_generator<at::CPUGeneratorImpl>(1000 + tag);
  return at::randn({rows, cols}, g, at::TensorOptions().dtype(at::kFloat)).to(dt);
}

bool same_bits(const at::Tensor& a, const at::Tensor& b) {
  return a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type() &&
         std::memcmp(a.contiguous().data_ptr(), b.contiguous().data_ptr(), a.nbytes()) == 0;
}

TEST(Transport, ChainPassesTensorsOnBitForBit) {
  Comm w = Comm::world();
  auto xp = make_transport(w, "cpu");
  EXPECT_STREQ(xp->name(), "mpi");
  EXPECT_EQ(xp->rank(), w.rank());
  EXPECT_EQ(xp->size(), w.size());
  if (w.size() < 2) GTEST_SKIP() << "needs 2 ranks";
  std::int64_t tag = 0;
  for (auto dt : {at::kFloat, at::kBFloat16, at::kHalf, at::kDouble, at::kLong}) {
    for (int doc = 0; doc < 3; ++doc, ++tag) {  // several in flight: order is kept
      const auto want = payload(tag, dt);
      at::Tensor x;
      if (w.rank() == 0) {
        x = want;
      } else {
        x = at::empty(want.sizes(), want.options());
        xp->recv(x, w.rank() - 1, tag);
        EXPECT_TRUE(same_bits(x, want)) << "rank " << w.rank() << " tag " << tag;
      }
      if (w.rank() + 1 < w.size()) {
        if (doc == 0) xp->wait_sends();
        xp->send(x, w.rank() + 1, tag);
      }
    }
  }
  // A strided view received in place (a slice of a buffer, as the Observer's rows are).
  auto buf = at::zeros({6, 4, 3});
  auto view = buf.select(1, 2);  // [6, 3], not contiguous
  const auto want = payload(99, at::kFloat, 6, 3);
  if (w.rank() == 0) xp->send(want.t().contiguous().t(), 1, 99);  // a non-contiguous source too
  if (w.rank() == 1) {
    xp->recv(view, 0, 99);
    EXPECT_TRUE(same_bits(view, want));
    EXPECT_EQ(buf.select(1, 0).abs().sum().item<float>(), 0.0f);  // nothing written beside the view
  }
  xp->wait_sends();
  EXPECT_EQ(xp->bytes_sent(), w.rank() + 1 < w.size()
                                  ? std::int64_t(3) * 7 * 5 * (4 + 2 + 2 + 8 + 8) + (w.rank() == 0 ? 6 * 3 * 4 : 0)
                                  : 0);
  w.barrier();
}

TEST(Transport, WrongMessageIsRefused) {
  Comm w = Comm::world();
  if (w.size() < 2) GTEST_SKIP() << "needs 2 ranks";
  auto xp = make_transport(w, "cpu");
  if (w.rank() == 0) xp->send(payload(5, at::kFloat), 1, 5);
  if (w.rank() == 1) {
    auto x = at::empty({7, 5});
    try {
      xp->recv(x, 0, 6);  // expected document 6, document 5 came
      ADD_FAILURE() << "no error";
    } catch (const std::runtime_error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("expected message 6"), std::string::npos) << m;
      EXPECT_NE(m.find("got 5"), std::string::npos) << m;
    }
  }
  xp->wait_sends();
  w.barrier();
}

}  // namespace
}  // namespace sink::dist
