// safetensors reader (single file and sharded index) and a small writer.
// Format: u64 little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}},
// then the data buffer. Every entry is validated against the file before use.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sink/io/tensor_view.hpp"
#include "sink/util/mapped_file.hpp"

namespace sink {

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  const std::string& path() const { return file_.path(); }
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  MappedFile file_;
  std::vector<TensorView> tensors_;
  std::map<std::string, std::size_t> by_name_;
  std::map<std::string, std::string> metadata_;
};

// All safetensors files of an HF snapshot: model.safetensors, or the shards
// listed in model.safetensors.index.json (each shard must hold exactly the
// tensors the index assigns to it).
class SafetensorsSet {
 public:
  explicit SafetensorsSet(const std::string& snapshot_dir);
  const TensorView* find(const std::string& name) const;
  std::vector<std::string> names() const;
  const std::string& describe() const { return where_; }

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> index_;
  std::string where_;
};

// Writes tensors (float32 or other plain dtypes) into one safetensors file.
struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> shape;
  const void* data;
};
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Parses a dtype string as written in safetensors headers ("F32", "BF16", ...).
std::optional<DType> parse_safetensors_dtype(const std::string& s);

}  // namespace sink
