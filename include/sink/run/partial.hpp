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
  // Refuses (InputError naming the file) a document that is missing, torn, or not of the
  // run's schema (names, dtypes, shapes: OUT/.partial/<run>/schema.json, from the first written).
  DocArrays read_doc(std::int64_t index) const;
  // Why document `index` cannot be read back as this run's ("" if it can).
  std::string doc_mismatch(std::int64_t index) const;
  // Throws the InputError read_doc would (naming the file); its path otherwise.
  std::string check_doc(std::int64_t index) const;
  void write_bucket(std::int64_t b, const BucketState& s) const;
  std::optional<BucketState> read_bucket(std::int64_t b) const;
  // The same, checked against what this run's bucket must hold: 1..count documents done,
  // sums of exactly these sizes (0: none). A checkpoint that does not match is an
  // InputError naming it: it is never read into the sums.
  std::optional<BucketState> read_bucket(std::int64_t b, std::int64_t count, std::size_t geometry_size,
                                         std::size_t mu_size) const;
  // The header of bucket b's checkpoint (if any) against the same (cheap: no sums read);
  // its count of documents done (0 without a checkpoint).
  std::int64_t check_bucket(std::int64_t b, std::int64_t count, std::size_t geometry_size, std::size_t mu_size) const;
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
