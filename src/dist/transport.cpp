// The pipeline transports (see transport.hpp): MPI here, NCCL in transport_nccl.cpp (CUDA build).
#include "sink/dist/transport.hpp"

#include <ATen/ATen.h>
#include <mpi.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <set>
#include <stdexcept>
#include <vector>

namespace sink::dist {

#ifdef SINK_WITH_CUDA
// transport_nccl.cpp: nullptr when NCCL cannot serve this pipeline.
std::unique_ptr<Transport> make_nccl_transport(const Comm& pipeline, const std::string& device);
#endif

namespace {

void check(int rc, const char* routine) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw std::runtime_error(std::string("pipeline transport: ") + routine + " failed: " + msg);
}

constexpr int kTag = 0x5106;                            // one ordered channel per pair of stages
constexpr std::int64_t kChunk = std::int64_t(1) << 30;  // MPI counts are int: large payloads go in pieces

class MpiTransport final : public Transport {
 public:
  explicit MpiTransport(const Comm& c) : comm_(*static_cast<MPI_Comm*>(c.native())) {
    rank_ = c.rank();
    size_ = c.size();
  }
  ~MpiTransport() override {
    try {
      wait_sends();
    } catch (...) {  // a peer gone: nothing to wait for
    }
  }
  const char* name() const override { return "mpi"; }

  void send(const at::Tensor& t, int dst, std::int64_t tag) override {
    // A device tensor goes through the host (the fallback where NCCL cannot run).
    Pending p;
    p.host = t.device().is_cpu() ? t.contiguous() : t.to(at::kCPU).contiguous();
    const std::int64_t n = static_cast<std::int64_t>(p.host.nbytes());
    p.header[0] = tag, p.header[1] = n;
    pending_.push_back(std::move(p));
    auto& q = pending_.back();
    q.reqs.emplace_back();
    check(MPI_Isend(q.header, 2, MPI_INT64_T, dst, kTag, comm_, &q.reqs.back()), "MPI_Isend");
    const auto* data = static_cast<const char*>(q.host.data_ptr());
    for (std::int64_t at = 0; at < n; at += kChunk) {
      q.reqs.emplace_back();
      check(
          MPI_Isend(data + at, static_cast<int>(std::min(kChunk, n - at)), MPI_BYTE, dst, kTag, comm_, &q.reqs.back()),
          "MPI_Isend");
    }
    bytes_sent_ += n;
  }

  void recv(at::Tensor& t, int src, std::int64_t tag) override {
    std::int64_t header[2] = {0, 0};
    check(MPI_Recv(header, 2, MPI_INT64_T, src, kTag, comm_, MPI_STATUS_IGNORE), "MPI_Recv");
    const std::int64_t n = static_cast<std::int64_t>(t.nbytes());
    if (header[0] != tag || header[1] != n)
      throw std::runtime_error("pipeline transport: stage " + std::to_string(rank_) + " expected message " +
                               std::to_string(tag) + " (" + std::to_string(n) + " bytes) from stage " +
                               std::to_string(src) + ", got " + std::to_string(header[0]) + " (" +
                               std::to_string(header[1]) + " bytes)");
    const bool direct = t.device().is_cpu() && t.is_contiguous();
    at::Tensor host = direct ? t : at::empty(t.sizes(), t.options().device(at::kCPU));
    auto* data = static_cast<char*>(host.data_ptr());
    for (std::int64_t at = 0; at < n; at += kChunk)
      check(MPI_Recv(data + at, static_cast<int>(std::min(kChunk, n - at)), MPI_BYTE, src, kTag, comm_,
                     MPI_STATUS_IGNORE),
            "MPI_Recv");
    if (!direct) t.copy_(host);
  }

  void wait_sends() override {
    for (auto& p : pending_)
      if (!p.reqs.empty())
        check(MPI_Waitall(static_cast<int>(p.reqs.size()), p.reqs.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
    pending_.clear();
  }

 private:
  struct Pending {
    std::int64_t header[2] = {0, 0};
    at::Tensor host;  // held until the send completes
    std::vector<MPI_Request> reqs;
  };
  MPI_Comm comm_;
  std::deque<Pending> pending_;  // a deque: posted headers must not move
};

}  // namespace

std::unique_ptr<Transport> make_mpi_transport(const Comm& pipeline) { return std::make_unique<MpiTransport>(pipeline); }

std::unique_ptr<Transport> make_transport(const Comm& pipeline, const std::string& device) {
  const char* force = std::getenv("SINK_TRANSPORT");
  const bool want_mpi = force && std::string(force) == "mpi";
#ifdef SINK_WITH_CUDA
  // Every stage decides alike (the choice is collective): NCCL only if no stage asked for MPI.
  const bool cuda = device.rfind("cuda", 0) == 0;
  if (pipeline.min(cuda && !want_mpi ? 1 : 0) == 1)
    if (auto t = make_nccl_transport(pipeline, device)) return t;
#else
  (void)device;
  (void)want_mpi;
#endif
  return make_mpi_transport(pipeline);
}

}  // namespace sink::dist
