// NCCL point-to-point between pipeline stages (CUDA build only): the unique id goes over MPI,
// one communicator per pipeline, its own stream ordered against the compute stream with events,
// the data never copied to the host.
#ifdef SINK_WITH_CUDA
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <nccl.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "sink/dist/transport.hpp"
#include "sink/util/log.hpp"

namespace sink::dist {
namespace {

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("pipeline transport: ") + what + ": " + cudaGetErrorString(e));
}
void nccl_check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess)
    throw std::runtime_error(std::string("pipeline transport: ") + what + ": " + ncclGetErrorString(r));
}

class NcclTransport final : public Transport {
 public:
  NcclTransport(const Comm& c, int device) : device_(device) {
    rank_ = c.rank();
    size_ = c.size();
    cuda_check(cudaSetDevice(device_), "cudaSetDevice");
    ncclUniqueId id{};
    if (rank_ == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    std::vector<std::uint8_t> bytes(reinterpret_cast<std::uint8_t*>(&id),
                                    reinterpret_cast<std::uint8_t*>(&id) + sizeof id);
    c.bcast(bytes, 0);
    std::memcpy(&id, bytes.data(), sizeof id);
    nccl_check(ncclCommInitRank(&comm_, size_, id, rank_), "ncclCommInitRank");
    cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    cuda_check(cudaEventCreateWithFlags(&ev_, cudaEventDisableTiming), "cudaEventCreate");
  }
  ~NcclTransport() override {
    try {
      wait_sends();
    } catch (...) {
    }
    cudaEventDestroy(ev_);
    cudaStreamDestroy(stream_);
    ncclCommDestroy(comm_);
  }
  const char* name() const override { return "nccl"; }

  void send(const at::Tensor& t, int dst, std::int64_t tag) override {
    auto x = t.contiguous();
    check_device(x);
    after_compute();  // the data is ready on the compute stream before our stream reads it
    nccl_check(ncclSend(x.data_ptr(), x.nbytes(), ncclUint8, dst, comm_, stream_), "ncclSend");
    held_.push_back(x);  // until wait_sends(): the allocator must not hand its memory out
    bytes_sent_ += static_cast<std::int64_t>(x.nbytes());
    (void)tag;  // NCCL carries no header: both sides post the same sequence (the MPI path checks tags)
  }

  void recv(at::Tensor& t, int src, std::int64_t tag) override {
    check_device(t);
    // A strided view (a slice of a buffer) is received whole, then copied in on the compute stream.
    at::Tensor dst = t.is_contiguous() ? t : at::empty(t.sizes(), t.options());
    after_compute();  // dst was allocated (or last used) on the compute stream
    nccl_check(ncclRecv(dst.data_ptr(), dst.nbytes(), ncclUint8, src, comm_, stream_), "ncclRecv");
    // The compute stream waits for the data; the host does not.
    cuda_check(cudaEventRecord(ev_, stream_), "cudaEventRecord");
    cuda_check(cudaStreamWaitEvent(c10::cuda::getCurrentCUDAStream(device_).stream(), ev_, 0), "cudaStreamWaitEvent");
    if (!dst.is_same(t)) t.copy_(dst);
    (void)tag;
  }

  void wait_sends() override {
    if (held_.empty()) return;
    cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    held_.clear();
  }

 private:
  void check_device(const at::Tensor& t) const {
    if (!t.is_cuda() || t.get_device() != device_)
      throw std::runtime_error("pipeline transport (nccl): tensor not on cuda:" + std::to_string(device_));
  }
  void after_compute() {
    cuda_check(cudaEventRecord(ev_, c10::cuda::getCurrentCUDAStream(device_).stream()), "cudaEventRecord");
    cuda_check(cudaStreamWaitEvent(stream_, ev_, 0), "cudaStreamWaitEvent");
  }
  int device_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ev_ = nullptr;
  std::vector<at::Tensor> held_;
};

}  // namespace

std::unique_ptr<Transport> make_nccl_transport(const Comm& pipeline, const std::string& device) {
  const at::Device dev(device);
  const int index = dev.has_index() ? dev.index() : 0;
  // Two stages on one GPU (one lent GPU, several ranks) cannot form an NCCL communicator.
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  const std::string me = std::string(host) + ":" + std::to_string(index);
  std::set<std::string> seen;
  bool shared = false;
  for (const auto& b : pipeline.allgather(std::vector<std::uint8_t>(me.begin(), me.end())))
    shared |= !seen.insert(std::string(b.begin(), b.end())).second;
  if (shared) {
    if (pipeline.rank() == 0)
      log::warn("pipeline stages share a GPU: NCCL cannot join them; using MPI through host copies");
    return nullptr;
  }
  return std::make_unique<NcclTransport>(pipeline, index);
}

}  // namespace sink::dist
#endif  // SINK_WITH_CUDA
