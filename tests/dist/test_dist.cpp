// The MPI layer, on however many ranks the run has (1 alone, 2 and 4 under
// mpiexec). Every expectation is computed locally from the same inputs, so a
// test that passes on 1, 2 and 4 ranks gives the same bits on all of them.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "sink/dist/comm.hpp"

namespace sink::dist {
namespace {

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

// Values of wildly different magnitudes, so that the order of additions shows in the bits.
double value(int item, int j) {
  static const double scale[] = {1e16, 1.0, -1e16, 3.0e-3, 7.0, -2.5e15, 1.0 / 3.0, 1e-8};
  unsigned h = static_cast<unsigned>(item) * 2654435761u + static_cast<unsigned>(j) * 40503u;
  return scale[h % 8] * (1.0 + (h % 1013) / 1013.0);
}

TEST(Dist, WorldMatchesLauncher) {
  Comm w = Comm::world();
  ASSERT_TRUE(w.valid());
  const char* s = std::getenv("OMPI_COMM_WORLD_SIZE");
  EXPECT_EQ(w.size(), s ? std::atoi(s) : 1);
  EXPECT_GE(w.rank(), 0);
  EXPECT_LT(w.rank(), w.size());
  Comm moved = std::move(w);
  EXPECT_FALSE(w.valid());  // NOLINT(bugprone-use-after-move): moving invalidates the source
  EXPECT_TRUE(moved.valid());
  EXPECT_THROW(w.barrier(), std::runtime_error);
  moved.barrier();
}

TEST(Dist, SumOrderedIsRankOrder) {
  Comm w = Comm::world();
  const int K = 16;
  std::vector<double> mine(K), expect(K);
  for (int j = 0; j < K; ++j) mine[j] = value(w.rank(), j);
  for (int j = 0; j < K; ++j) {
    expect[j] = value(0, j);
    for (int r = 1; r < w.size(); ++r) expect[j] += value(r, j);
  }
  w.sum_ordered(mine);
  EXPECT_TRUE(same_bits(mine, expect));
  std::vector<double> empty;
  w.sum_ordered(empty);
  EXPECT_TRUE(empty.empty());
}

TEST(Dist, SumOrderedKeepsNegativeZeroOnOneRank) {
  Comm w = Comm::world();
  if (w.size() != 1) GTEST_SKIP() << "one-rank property";
  std::vector<double> v{-0.0, 1.5};
  w.sum_ordered(v);
  EXPECT_TRUE(std::signbit(v[0]));
}

// The property the runner needs: 12 documents' rows spread over the ranks in a
// scrambled way sum to the same bits as a serial loop over the documents.
TEST(Dist, SumByIndexIsIndependentOfRankCount) {
  Comm w = Comm::world();
  const int items = 12, width = 5;
  std::vector<double> serial(width);
  for (int j = 0; j < width; ++j) {
    serial[j] = value(0, j);
    for (int i = 1; i < items; ++i) serial[j] += value(i, j);
  }
  // The test means something only if another order gives other bits.
  std::vector<double> reversed(width);
  for (int j = 0; j < width; ++j) {
    reversed[j] = value(items - 1, j);
    for (int i = items - 2; i >= 0; --i) reversed[j] += value(i, j);
  }
  ASSERT_FALSE(same_bits(serial, reversed));

  std::vector<std::int64_t> index;
  std::vector<double> rows;
  for (int i = items - 1; i >= 0; --i) {  // local order reversed on purpose
    if ((i * 7 + 3) % w.size() != w.rank()) continue;
    index.push_back(i);
    for (int j = 0; j < width; ++j) rows.push_back(value(i, j));
  }
  EXPECT_TRUE(same_bits(w.sum_by_index(index, rows, width), serial));
}

TEST(Dist, SumByIndexRejectsRepeatsOnEveryRank) {
  Comm w = Comm::world();
  std::vector<std::int64_t> index{7};  // every rank: 7 (and twice on a single rank)
  std::vector<double> rows{1.0};
  if (w.size() == 1) index.push_back(7), rows.push_back(2.0);
  EXPECT_THROW(w.sum_by_index(index, rows, 1), std::runtime_error);
  EXPECT_THROW(w.sum_by_index({1}, {1.0, 2.0}, 1), std::runtime_error);  // local size check
}

TEST(Dist, SumOrderedRejectsLengthMismatch) {
  Comm w = Comm::world();
  if (w.size() == 1) GTEST_SKIP() << "needs two ranks";
  std::vector<double> v(w.rank() == 0 ? 3 : 2, 1.0);
  try {
    w.sum_ordered(v);
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("different lengths"), std::string::npos) << e.what();
  }
}

TEST(Dist, ScalarReductions) {
  Comm w = Comm::world();
  const int n = w.size();
  EXPECT_EQ(w.sum(std::int64_t{1} << 40 | w.rank()), (std::int64_t{n} << 40) + n * (n - 1) / 2);
  EXPECT_EQ(w.max(0.5 * w.rank()), 0.5 * (n - 1));
  EXPECT_EQ(w.min(w.rank() == n - 1 ? 0 : 1), 0);
  EXPECT_EQ(w.min(1), 1);
}

TEST(Dist, Broadcasts) {
  Comm w = Comm::world();
  const int root = w.size() - 1;
  std::vector<std::uint8_t> bytes;
  std::string s = "not overwritten";
  if (w.rank() == root) bytes = {1, 2, 3, 250}, s = "config text: ü";
  w.bcast(bytes, root);
  w.bcast(s, root);
  EXPECT_EQ(bytes, (std::vector<std::uint8_t>{1, 2, 3, 250}));
  EXPECT_EQ(s, "config text: ü");
  std::string empty = w.rank() == 0 ? "" : "stale";
  w.bcast(empty, 0);
  EXPECT_EQ(empty, "");
}

TEST(Dist, GathersOfVariableLength) {
  Comm w = Comm::world();
  std::vector<std::uint8_t> mine(static_cast<std::size_t>(w.rank()), static_cast<std::uint8_t>(w.rank()));
  auto at_root = w.gather(mine, 0);
  auto all = w.allgather(mine);
  if (w.rank() == 0) {
    ASSERT_EQ(at_root.size(), static_cast<std::size_t>(w.size()));
  } else {
    EXPECT_TRUE(at_root.empty());
  }
  ASSERT_EQ(all.size(), static_cast<std::size_t>(w.size()));
  for (int r = 0; r < w.size(); ++r) {
    std::vector<std::uint8_t> expect(static_cast<std::size_t>(r), static_cast<std::uint8_t>(r));
    EXPECT_EQ(all[r], expect);
    if (w.rank() == 0) {
      EXPECT_EQ(at_root[r], expect);
    }
  }
}

TEST(Dist, Split) {
  Comm w = Comm::world();
  // Two groups by parity, ranked in reverse; rank 0 opts out when there are several ranks.
  const bool out = w.size() > 1 && w.rank() == 0;
  Comm g = w.split(out ? -1 : w.rank() % 2, -w.rank());
  if (out) {
    EXPECT_FALSE(g.valid());
    EXPECT_THROW(g.sum(1), std::runtime_error);
  } else {
    ASSERT_TRUE(g.valid());
    std::vector<int> members;  // world ranks in this rank's group, in the group's rank order
    for (int r = w.size() - 1; r >= 0; --r)
      if (r % 2 == w.rank() % 2 && !(w.size() > 1 && r == 0)) members.push_back(r);
    EXPECT_EQ(g.size(), static_cast<int>(members.size()));
    EXPECT_EQ(members.at(static_cast<std::size_t>(g.rank())), w.rank());
    EXPECT_EQ(g.sum(w.rank()), std::accumulate(members.begin(), members.end(), std::int64_t{0}));
    Comm moved;
    moved = std::move(g);
    EXPECT_TRUE(moved.valid());
    EXPECT_FALSE(g.valid());  // NOLINT(bugprone-use-after-move)
  }
  w.barrier();
}

TEST(Dist, MpiErrorsNameTheRoutine) {
  Comm w = Comm::world();
  std::string s = "x";
  try {
    w.bcast(s, w.size() + 5);  // every rank passes the same invalid root
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("MPI_Bcast"), std::string::npos) << e.what();
  }
  w.barrier();
}

// Restores one environment variable on scope exit.
class EnvVar {
 public:
  explicit EnvVar(const char* name) : name_(name) {
    if (const char* v = std::getenv(name)) old_ = v;
  }
  ~EnvVar() { old_ ? setenv(name_, old_->c_str(), 1) : unsetenv(name_); }
  void set(const char* v) const { v ? setenv(name_, v, 1) : unsetenv(name_); }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(Dist, LocalRank) {
  Comm w = Comm::world();
  if (std::getenv("OMPI_COMM_WORLD_LOCAL_RANK")) {
    EXPECT_EQ(local_rank(), w.rank());  // one node here
  }
  EnvVar ompi("OMPI_COMM_WORLD_LOCAL_RANK"), slurm("SLURM_LOCALID");
  ompi.set(nullptr);
  slurm.set(nullptr);
  EXPECT_EQ(local_rank(), 0);
  slurm.set("3");
  EXPECT_EQ(local_rank(), 3);
  ompi.set("2");
  EXPECT_EQ(local_rank(), 2);  // Open MPI's variable wins
  ompi.set("two");
  EXPECT_EQ(local_rank(), 3);  // unreadable: fall through to Slurm's
}

}  // namespace
}  // namespace sink::dist
