// OUT/.partial/: what finished documents computed, kept as they finish, so a
// killed run loses nothing and `--resume` computes only what is missing.
//   manifest.json              the config's sha256, each run's document count and the
//                              hashes of its input files; --resume refuses partial
//                              results of another config or of changed input files
//   <run>/doc_<i>.safetensors  one document's per-document arrays
//   <run>/bucket_<b>.ckpt      a bucket's running sums (geometry, μ) and how many of
//                              its documents (in order) they include
// Every file is written under a temporary name and renamed, so a crash leaves
// either the old or the new version, never a torn one.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sink {

using DocArrays = std::map<std::string, at::Tensor>;

struct BucketState {
  std::int64_t done = 0;         // documents of the bucket included, in order
  std::vector<double> geometry;  // GeometryAccumulator::to_flat()
  std::vector<double> mu;        // MuAccumulator::to_flat()
};

class PartialStore {
 public:
  PartialStore(const std::string& out_dir, const std::string& run, const std::string& phase = "");
  const std::string& dir() const { return dir_; }

  void write_doc(std::int64_t index, const DocArrays& a) const;
  DocArrays read_doc(std::int64_t index) const;
  void write_bucket(std::int64_t b, const BucketState& s) const;
  std::optional<BucketState> read_bucket(std::int64_t b) const;
  std::int64_t count_docs() const;

 private:
  std::string dir_;
};

// The manifest: created fresh (wiping old partial results) or checked on --resume
// (same config text, document counts and input-file hashes, else an InputError).
void prepare_partial_dir(const std::string& out_dir, const std::string& config_sha256,
                         const std::map<std::string, std::int64_t>& run_docs, bool resume,
                         const std::map<std::string, std::map<std::string, std::string>>& run_inputs = {});

}  // namespace sink
