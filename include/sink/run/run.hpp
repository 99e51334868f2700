// sink-run: the batch pipeline. Every rank parses and validates the config,
// prepares the documents, joins the group of its model, computes its buckets
// of documents (observation, then SSP), keeps each finished document in
// OUT/.partial, and finally all ranks write OUT/results.h5 together.
#pragma once

#include <string>
#include <vector>

namespace sink {
namespace dist {
class Comm;
}

struct RunFlags {
  std::string config_path;
  std::vector<std::string> sets;  // --set key=value
  bool dry_run = false;
  bool resume = false;
  int threads = 0;                // 0: all cores of this rank's share of the node
  std::int64_t bucket_size = 4;   // documents per bucket (unit of work and checkpoint)
  bool progress = true;
  double progress_seconds = 60;   // in a log (stderr not a terminal): a line every 10 % or this often
  bool overwrite = false;     // replace a complete results.h5 of another config
  bool keep_partial = false;  // keep OUT/.partial once results.h5 is complete
};

int sink_run(const RunFlags& flags, dist::Comm& world);

}  // namespace sink
