// MPI behind small RAII pieces. Every MPI call goes through check(), which turns
// a failure into a std::runtime_error naming the routine; the communicators we
// own use MPI_ERRORS_RETURN so that failures come back to us instead of aborting.
#include "sink/dist/comm.hpp"

#include <mpi.h>

#include <algorithm>
#include <charconv>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <stdexcept>

namespace sink::dist {
namespace {

void check(int rc, const char* routine) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) std::snprintf(msg, sizeof msg, "error code %d", rc);
  throw std::runtime_error(std::string(routine) + " failed: " + msg);
}

bool mpi_live() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init && !fin;
}

MPI_Comm handle(void* h) {
  if (!h) throw std::runtime_error("sink::dist: collective on an invalid communicator");
  return *static_cast<MPI_Comm*>(h);
}

// MPI counts and displacements are int; refuse what does not fit rather than wrap.
int to_int(std::size_t n, const char* what) {
  if (n > static_cast<std::size_t>(INT_MAX))
    throw std::runtime_error(std::string("sink::dist: ") + what + " exceeds MPI's int count");
  return static_cast<int>(n);
}

std::vector<int> displacements(const std::vector<int>& counts) {
  std::vector<int> displs(counts.size(), 0);
  std::size_t at = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    displs[i] = to_int(at, "gathered size");
    at += static_cast<std::size_t>(counts[i]);
  }
  to_int(at, "gathered size");
  return displs;
}

std::vector<std::vector<std::uint8_t>> split_blobs(const std::vector<std::uint8_t>& all,
                                                   const std::vector<int>& counts,
                                                   const std::vector<int>& displs) {
  std::vector<std::vector<std::uint8_t>> out(counts.size());
  for (std::size_t i = 0; i < counts.size(); ++i)
    out[i].assign(all.begin() + displs[i], all.begin() + displs[i] + counts[i]);
  return out;
}

}  // namespace

// ---------------------------------------------------------------- Env

Env::Env(int* argc, char*** argv) {
  int init = 0;
  check(MPI_Initialized(&init), "MPI_Initialized");
  if (init) return;  // a host program initialised MPI; it also finalises it
  owns_ = true;
  int provided = 0;
  // With no launcher this is MPI's singleton init: one rank.
  check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
  check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  if (provided < MPI_THREAD_FUNNELED)
    std::fprintf(stderr, "sink::dist: MPI provides thread level %d, below FUNNELED\n", provided);
}

Env::~Env() {
  if (!owns_ || !mpi_live()) return;
  if (int rc = MPI_Finalize(); rc != MPI_SUCCESS)
    std::fprintf(stderr, "sink::dist: MPI_Finalize failed (%d)\n", rc);
}

void Env::exit_without_finalize(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(code);
}

void Env::abort(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  if (mpi_live()) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

// ---------------------------------------------------------------- Comm

namespace {
// Takes ownership of a freshly made communicator (not MPI_COMM_NULL).
void* adopt(MPI_Comm c, int& rank, int& size) {
  check(MPI_Comm_set_errhandler(c, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check(MPI_Comm_rank(c, &rank), "MPI_Comm_rank");
  check(MPI_Comm_size(c, &size), "MPI_Comm_size");
  return new MPI_Comm(c);
}
}  // namespace

Comm Comm::world() {
  if (!mpi_live())
    throw std::runtime_error("sink::dist::Comm::world: MPI is not initialised (make an Env first)");
  MPI_Comm c = MPI_COMM_NULL;
  check(MPI_Comm_dup(MPI_COMM_WORLD, &c), "MPI_Comm_dup");
  Comm out;
  out.handle_ = adopt(c, out.rank_, out.size_);
  return out;
}

Comm::~Comm() {
  if (!handle_) return;
  auto* c = static_cast<MPI_Comm*>(handle_);
  // After MPI_Finalize the communicator is gone already; freeing it would be an error.
  if (mpi_live()) {
    if (int rc = MPI_Comm_free(c); rc != MPI_SUCCESS)
      std::fprintf(stderr, "sink::dist: MPI_Comm_free failed (%d)\n", rc);
  }
  delete c;
}

Comm::Comm(Comm&& o) noexcept : handle_(o.handle_), rank_(o.rank_), size_(o.size_) {
  o.handle_ = nullptr;
  o.rank_ = 0;
  o.size_ = 1;
}

Comm& Comm::operator=(Comm&& o) noexcept {
  if (this != &o) {
    Comm old(std::move(*this));  // frees our communicator on scope exit
    handle_ = o.handle_;
    rank_ = o.rank_;
    size_ = o.size_;
    o.handle_ = nullptr;
    o.rank_ = 0;
    o.size_ = 1;
  }
  return *this;
}

Comm Comm::split(int color, int key) const {
  MPI_Comm c = MPI_COMM_NULL;
  check(MPI_Comm_split(handle(handle_), color < 0 ? MPI_UNDEFINED : color, key, &c), "MPI_Comm_split");
  Comm out;
  if (c != MPI_COMM_NULL) out.handle_ = adopt(c, out.rank_, out.size_);
  return out;
}

void Comm::barrier() const { check(MPI_Barrier(handle(handle_)), "MPI_Barrier"); }

void Comm::bcast(std::vector<std::uint8_t>& bytes, int root) const {
  MPI_Comm c = handle(handle_);
  std::uint64_t n = bytes.size();
  check(MPI_Bcast(&n, 1, MPI_UINT64_T, root, c), "MPI_Bcast");
  if (rank_ != root) bytes.resize(n);
  if (n) check(MPI_Bcast(bytes.data(), to_int(n, "broadcast size"), MPI_BYTE, root, c), "MPI_Bcast");
}

void Comm::bcast(std::string& s, int root) const {
  MPI_Comm c = handle(handle_);
  std::uint64_t n = s.size();
  check(MPI_Bcast(&n, 1, MPI_UINT64_T, root, c), "MPI_Bcast");
  if (rank_ != root) s.resize(n);
  if (n) check(MPI_Bcast(s.data(), to_int(n, "broadcast size"), MPI_CHAR, root, c), "MPI_Bcast");
}

void Comm::sum_ordered(std::vector<double>& v) const {
  MPI_Comm c = handle(handle_);
  // A length mismatch would otherwise read past a buffer; one allreduce finds it.
  long long n[2] = {static_cast<long long>(v.size()), -static_cast<long long>(v.size())};
  check(MPI_Allreduce(MPI_IN_PLACE, n, 2, MPI_LONG_LONG, MPI_MAX, c), "MPI_Allreduce");
  if (n[0] != -n[1])
    throw std::runtime_error("sink::dist::sum_ordered: ranks passed vectors of different lengths");
  const int len = to_int(v.size(), "sum_ordered length");
  if (len == 0) return;
  std::vector<double> all(rank_ == 0 ? v.size() * static_cast<std::size_t>(size_) : 0);
  to_int(all.size(), "sum_ordered gathered size");
  check(MPI_Gather(v.data(), len, MPI_DOUBLE, all.data(), len, MPI_DOUBLE, 0, c), "MPI_Gather");
  if (rank_ == 0) {
    // Start from rank 0's values (not 0.0) so one rank returns its input bit for bit, -0.0 included.
    for (int r = 1; r < size_; ++r)
      for (int j = 0; j < len; ++j) v[j] += all[static_cast<std::size_t>(r) * len + j];
  }
  check(MPI_Bcast(v.data(), len, MPI_DOUBLE, 0, c), "MPI_Bcast");
}

std::vector<double> Comm::sum_by_index(const std::vector<std::int64_t>& index,
                                       const std::vector<double>& rows, std::size_t width) const {
  if (rows.size() != index.size() * width)
    throw std::runtime_error("sink::dist::sum_by_index: rows.size() != index.size() * width");
  MPI_Comm c = handle(handle_);
  long long w[2] = {static_cast<long long>(width), -static_cast<long long>(width)};
  check(MPI_Allreduce(MPI_IN_PLACE, w, 2, MPI_LONG_LONG, MPI_MAX, c), "MPI_Allreduce");
  if (w[0] != -w[1]) throw std::runtime_error("sink::dist::sum_by_index: ranks passed different widths");

  auto as_bytes = [](const auto& vec) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(vec.data());
    return std::vector<std::uint8_t>(p, p + vec.size() * sizeof(vec[0]));
  };
  auto idx = gather(as_bytes(index), 0);
  auto val = gather(as_bytes(rows), 0);
  std::vector<double> out(width, 0.0);
  int dup = 0;
  if (rank_ == 0) {
    std::vector<std::int64_t> all_idx;
    std::vector<double> all_val;
    for (int r = 0; r < size_; ++r) {  // memcpy, as the byte blobs are not typed storage
      std::size_t ni = all_idx.size(), nv = all_val.size();
      all_idx.resize(ni + idx[r].size() / sizeof(std::int64_t));
      all_val.resize(nv + val[r].size() / sizeof(double));
      if (!idx[r].empty()) std::memcpy(all_idx.data() + ni, idx[r].data(), idx[r].size());
      if (!val[r].empty()) std::memcpy(all_val.data() + nv, val[r].data(), val[r].size());
    }
    std::vector<std::size_t> order(all_idx.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::sort(order.begin(), order.end(),
              [&](std::size_t a, std::size_t b) { return all_idx[a] < all_idx[b]; });
    for (std::size_t k = 0; k < order.size(); ++k) {
      if (k > 0 && all_idx[order[k]] == all_idx[order[k - 1]]) dup = 1;
      const double* row = all_val.data() + order[k] * width;
      // First row copied, not added to 0.0, for the same reason as in sum_ordered.
      for (std::size_t j = 0; j < width; ++j) out[j] = k == 0 ? row[j] : out[j] + row[j];
    }
  }
  // Every rank learns about a duplicate so that all of them throw, not only the root.
  check(MPI_Bcast(&dup, 1, MPI_INT, 0, c), "MPI_Bcast");
  if (dup) throw std::runtime_error("sink::dist::sum_by_index: an index appears more than once");
  if (width) check(MPI_Bcast(out.data(), to_int(width, "sum_by_index width"), MPI_DOUBLE, 0, c), "MPI_Bcast");
  return out;
}

std::int64_t Comm::sum(std::int64_t v) const {
  check(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT64_T, MPI_SUM, handle(handle_)), "MPI_Allreduce");
  return v;
}

double Comm::max(double v) const {
  check(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_MAX, handle(handle_)), "MPI_Allreduce");
  return v;
}

int Comm::min(int v) const {
  check(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MIN, handle(handle_)), "MPI_Allreduce");
  return v;
}

std::vector<std::vector<std::uint8_t>> Comm::gather(const std::vector<std::uint8_t>& mine, int root) const {
  MPI_Comm c = handle(handle_);
  int n = to_int(mine.size(), "gather blob");
  std::vector<int> counts(rank_ == root ? size_ : 0);
  check(MPI_Gather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, root, c), "MPI_Gather");
  std::vector<int> displs;
  std::vector<std::uint8_t> all;
  if (rank_ == root) {
    displs = displacements(counts);
    all.resize(static_cast<std::size_t>(displs.empty() ? 0 : displs.back() + counts.back()));
  }
  check(MPI_Gatherv(mine.data(), n, MPI_BYTE, all.data(), counts.data(), displs.data(), MPI_BYTE, root, c),
        "MPI_Gatherv");
  if (rank_ != root) return {};
  return split_blobs(all, counts, displs);
}

std::vector<std::vector<std::uint8_t>> Comm::allgather(const std::vector<std::uint8_t>& mine) const {
  MPI_Comm c = handle(handle_);
  int n = to_int(mine.size(), "allgather blob");
  std::vector<int> counts(size_);
  check(MPI_Allgather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, c), "MPI_Allgather");
  std::vector<int> displs = displacements(counts);
  std::vector<std::uint8_t> all(static_cast<std::size_t>(displs.back() + counts.back()));
  check(MPI_Allgatherv(mine.data(), n, MPI_BYTE, all.data(), counts.data(), displs.data(), MPI_BYTE, c),
        "MPI_Allgatherv");
  return split_blobs(all, counts, displs);
}

// ---------------------------------------------------------------- local rank

int local_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"}) {
    const char* s = std::getenv(name);
    if (!s || !*s) continue;
    int v = 0;
    auto [end, ec] = std::from_chars(s, s + std::strlen(s), v);
    if (ec == std::errc() && *end == '\0' && v >= 0) return v;
  }
  return 0;
}

}  // namespace sink::dist
