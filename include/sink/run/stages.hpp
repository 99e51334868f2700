// A run's pipeline stages (config key `stages`, issue 18): `auto` resolved against the memory the
// ranks see, the count checked against the model and the group, and the plan --dry-run prints.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sink/config/config.hpp"
#include "sink/model/stages.hpp"
#include "sink/run/device.hpp"
#include "sink/run/documents.hpp"

namespace sink {

struct RunStages {
  int stages = 1;                 // resolved (auto replaced by a count)
  bool automatic = false;         // the config said auto
  StagePlan plan;                 // for `stages` stages
  std::int64_t max_T = 0;         // the longest document the plan was made for (tokens)
  std::string device;             // the device whose memory was read (the run's first rank)
  std::int64_t device_bytes = 0;  // the memory one rank sees there
  int group_size = 0;             // ranks of the group (0: decided later)
};

// Tokens of the longest document of these sets (evaluation and calibration documents).
std::int64_t longest_document(const std::vector<PreparedDoc>& docs, const std::vector<PreparedDoc>& calib = {});

// `stages` of `rc` for a model `spec` on the ranks `devices` (the run's DevicePlan, in rank order;
// ranks per node counted from its hosts) in a group of `group_size` ranks (0 = not known yet):
// auto = the fewest stages whose largest stage's weights plus the activation estimate fit in one
// rank's memory and that divide the group. InputError naming `config_path` (exit 2) when the count
// exceeds the layers, does not divide the group, or nothing fits.
RunStages resolve_run_stages(const RunConfig& rc, const ModelSpec& spec, std::int64_t max_T, const DevicePlan& devices,
                             int group_size, const std::string& config_path);

// --dry-run's lines for one run: layers, GiB of weights per stage, the activation estimate, the
// device memory seen.
std::string describe_stage_plan(const RunStages& rs);

}  // namespace sink
