// main() for GoogleTest binaries that use MPI: one Env for the whole run. Rank 0
// prints the usual report; other ranks print only their failures, prefixed with
// the rank. The exit status is non-zero on every rank if any rank failed.
#include <gtest/gtest.h>

#include <cstdio>

#include "sink/dist/comm.hpp"

namespace {
class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_, r.file_name() ? r.file_name() : "?",
                 r.line_number(), r.summary());
  }

 private:
  int rank_;
};
}  // namespace

int main(int argc, char** argv) {
  sink::dist::Env env(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  int rank = sink::dist::Comm::world().rank();
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new FailurePrinter(rank));
  }
  int ok = RUN_ALL_TESTS() == 0;
  return sink::dist::Comm::world().min(ok) ? 0 : 1;
}
