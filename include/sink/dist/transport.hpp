// Point-to-point transfers between the stages of one pipeline (issue 18): stage k hands the
// hidden state [T, d] of a document to stage k + 1, and the per-layer rows of its observation to
// the stage that assembles the document's record. Two implementations behind one interface:
// NCCL on CUDA tensors (CUDA build only; one communicator per pipeline, its own stream, the
// data never leaves the device) and MPI (CPU tensors, and the fallback wherever NCCL cannot run:
// CUDA tensors then go through a host copy).
//
// Both sides know every shape from the document (T) and the model (d), so only the data
// crosses; a small header per message is checked against what the receiver expected, so that
// stages that fell out of step fail loudly instead of reading another document's rows.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>

#include "sink/dist/comm.hpp"

namespace sink::dist {

class Transport {
 public:
  virtual ~Transport() = default;
  virtual const char* name() const = 0;  // "mpi" | "nccl"
  int rank() const { return rank_; }     // the stage
  int size() const { return size_; }     // the number of stages
  // Posts a send of `t` (any dtype; made contiguous) to stage `dst`. Non-blocking: the tensor is
  // held until wait_sends(). `tag` labels the message (e.g. the document index); recv checks it.
  virtual void send(const at::Tensor& t, int dst, std::int64_t tag) = 0;
  // Receives from stage `src` into `t` (allocated by the caller with the shape, dtype and device
  // the message has). Messages between two stages arrive in the order they were sent.
  virtual void recv(at::Tensor& t, int src, std::int64_t tag) = 0;
  // Blocks until every posted send has left (its buffer may be reused).
  virtual void wait_sends() = 0;
  // Bytes this rank has sent so far (payload only), for docs/distributed.md's measurements.
  std::int64_t bytes_sent() const { return bytes_sent_; }

 protected:
  int rank_ = 0, size_ = 1;
  std::int64_t bytes_sent_ = 0;
};

// MPI over `pipeline` (the ranks of one pipeline, rank = stage). The communicator must outlive it.
std::unique_ptr<Transport> make_mpi_transport(const Comm& pipeline);

// The transport for tensors on `device` ("cpu", "cuda:N"): NCCL when built with CUDA, the device
// is a GPU and every stage of the pipeline has its own GPU (NCCL cannot join two ranks on one
// device); else MPI. SINK_TRANSPORT=mpi forces MPI. Collective over `pipeline`.
std::unique_ptr<Transport> make_transport(const Comm& pipeline, const std::string& device);

}  // namespace sink::dist
