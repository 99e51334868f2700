// OUT/results.h5: the one place where the output schema is written
// (docs/results.md describes it; tests/run checks a file against it).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "sink/config/config.hpp"
#include "sink/metrics/geometry.hpp"
#include "sink/model/spec.hpp"
#include "sink/run/documents.hpp"

namespace sink {
namespace dist {
class Comm;
}

// What the final write needs to know about one run (identical on every rank).
struct RunOutcome {
  RunConfig rc;
  ModelSpec spec;
  std::string model_path, dtype, device;
  std::string devices;  // the device each rank that ran it used: "cuda:0@node1,cuda:1@node1"
  int stages = 1;       // pipeline stages of the invocation that completed it (the numbers do not depend on it)
  SinkPolicy policy;
  std::vector<PreparedDoc> docs;
  std::map<std::string, std::string> hashes;   // weights_fingerprint, tokenizer_sha256, eval_sha256, ...
  GeometryAccumulator geometry;                 // merged over every bucket, in bucket order
  std::map<std::string, at::Tensor> mu;         // μ, μ_head, ᾱ (intervention runs)
  std::vector<std::string> calibration_ids;
  std::vector<std::string> modes;                                       // SSP modes, then window_eval's variants
  std::map<std::int64_t, std::map<std::string, at::Tensor>> window_mu;  // by window W: μ, μ_head, ᾱ under it
};

struct RunTimes {
  std::string start, end;
};

// Collective over `world`: every rank calls it with the same outcomes.
void write_results(const std::string& out_dir, const Config& cfg, const std::vector<RunOutcome>& runs,
                   const RunTimes& times, dist::Comm& world);

}  // namespace sink
