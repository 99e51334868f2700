// MPI as small RAII pieces (Boost.MPI style). No raw MPI calls elsewhere.
// A plain `sink-run` with no launcher is one rank (MPI singleton init).
// Reductions here are order-fixed: values are gathered to the root and summed
// in rank order, so a result depends only on the ranks' contributions.
// A failing MPI call throws std::runtime_error naming the routine (our
// communicators use MPI_ERRORS_RETURN); so does a collective on an invalid Comm.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sink::dist {

// Initialises MPI (thread level FUNNELED) on construction, finalises on destruction.
// If MPI was initialised already (by a host program), it neither initialises nor finalises.
class Env {
 public:
  Env(int* argc, char*** argv);
  ~Env();
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;
  // Aborts every rank (after a fatal error on one), with this exit code.
  [[noreturn]] static void abort(int code);
  // Exits this process now, without MPI_Finalize (after a library failure that finalizing would trip on).
  [[noreturn]] static void exit_without_finalize(int code);

 private:
  bool owns_ = false;
};

class Comm {
 public:
  static Comm world();  // a duplicate of MPI_COMM_WORLD, owned
  Comm() = default;
  ~Comm();
  Comm(Comm&& o) noexcept;
  Comm& operator=(Comm&& o) noexcept;
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool valid() const { return handle_ != nullptr; }
  Comm split(int color, int key) const;  // color < 0: this rank gets an invalid Comm
  void barrier() const;

  void bcast(std::vector<std::uint8_t>& bytes, int root) const;  // resized on non-roots
  void bcast(std::string& s, int root) const;
  // Sums element-wise in rank order on the root, then broadcasts: the same
  // bits on every rank, for any number of ranks that contribute the same values.
  void sum_ordered(std::vector<double>& v) const;
  // Sums rows of `width` doubles in ascending global `index` order, on the root, then
  // broadcasts. Each rank passes its own rows (row i of `rows` has index[i]). The
  // result depends only on the set of (index, row) pairs, not on how they are spread
  // over ranks: the same bits for 1, 2 or N ranks. Throws on a repeated index.
  std::vector<double> sum_by_index(const std::vector<std::int64_t>& index, const std::vector<double>& rows,
                                   std::size_t width) const;
  std::int64_t sum(std::int64_t v) const;
  double max(double v) const;
  int min(int v) const;  // e.g. "did every rank succeed"
  // Gathers variable-length byte blobs on the root (empty vector elsewhere).
  std::vector<std::vector<std::uint8_t>> gather(const std::vector<std::uint8_t>& mine, int root) const;
  std::vector<std::vector<std::uint8_t>> allgather(const std::vector<std::uint8_t>& mine) const;

  void* native() const { return handle_; }  // MPI_Comm*, for the HDF5 layer

 private:
  void* handle_ = nullptr;  // MPI_Comm* (heap), nullptr when invalid
  int rank_ = 0, size_ = 1;
};

// Node-local rank for device binding: OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID, else 0.
int local_rank();

}  // namespace sink::dist
