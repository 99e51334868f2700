// Where weights come from: an HF snapshot (safetensors) or a GGUF file. Both
// present tensors under their HF names, so a family's table is written once.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "sink/model/spec.hpp"

namespace sink {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual bool has(const std::string& hf_name) const = 0;
  // A CPU tensor (F32/F16/BF16 as stored, or float32 for dequantised GGUF).
  virtual at::Tensor get(const std::string& hf_name) const = 0;
  // The file a tensor lives in (for messages).
  virtual std::string where(const std::string& hf_name) const = 0;
  virtual std::vector<std::string> names() const = 0;
  // Whether get() lends the file's mapped bytes (safetensors: the loader must copy them) rather
  // than a tensor of its own (a dequantised GGUF tensor: kept as it is when the dtype matches).
  virtual bool borrows() const { return true; }
};

std::unique_ptr<WeightSource> open_safetensors_source(const std::string& snapshot_dir);

// A GGUF file: its metadata becomes a spec, its tensors are dequantised and
// renamed to HF names (Q/K rows un-permuted to HF's rotate-half layout).
struct GGUFModel {
  ModelSpec spec;
  std::unique_ptr<WeightSource> weights;
};
GGUFModel open_gguf_model(const std::string& path);

}  // namespace sink
