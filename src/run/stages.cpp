// A run's stages (see include/sink/run/stages.hpp).
#include "sink/run/stages.hpp"

#include <algorithm>
#include <cstdio>

#include "sink/util/error.hpp"

namespace sink {

std::int64_t longest_document(const std::vector<PreparedDoc>& docs, const std::vector<PreparedDoc>& calib) {
  std::int64_t T = 0;
  for (const auto* set : {&docs, &calib})
    for (const auto& d : *set) T = std::max<std::int64_t>(T, static_cast<std::int64_t>(d.ids.size()));
  return T;
}

namespace {

std::string gib(std::int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", static_cast<double>(bytes) / (1ull << 30));
  return buf;
}

}  // namespace

RunStages resolve_run_stages(const RunConfig& rc, const ModelSpec& spec, std::int64_t max_T, const DevicePlan& devices,
                             int group_size, const std::string& config_path) {
  RunStages rs;
  rs.max_T = max_T;
  rs.group_size = group_size;
  rs.automatic = rc.stages == RunConfig::kAutoStages;
  rs.device = devices.empty() ? "cpu" : devices[0].device;
  int per_node = 0;
  for (const auto& d : devices) per_node += d.host == devices[0].host;
  rs.device_bytes = device_memory_bytes(rs.device, std::max(1, per_node));
  const int L = spec.n_layers;
  if (!rs.automatic) {
    check_stages(rc.stages, L, group_size, config_path);
    rs.stages = rc.stages;
  } else {
    rs.stages = 0;
    const int fewest = auto_stages(spec, rc.dtype, max_T, rs.device_bytes);
    for (int n = std::max(1, fewest); fewest > 0 && n <= L; ++n)
      if (group_size <= 0 || group_size % n == 0) {
        rs.stages = n;
        break;
      }
    const auto one_layer = plan_stages(spec, L, rc.dtype, max_T).peak_bytes();
    if (one_layer > rs.device_bytes)
      throw InputError(config_path, "key 'stages': auto: even one layer per stage needs " + gib(one_layer) +
                                        " GiB per rank (weights and activations), and a rank on " + rs.device +
                                        " has " + gib(rs.device_bytes) + " GiB");
    if (rs.stages == 0)
      throw InputError(config_path, "key 'stages': auto: " + std::to_string(fewest) + " or more stages fit in " +
                                        gib(rs.device_bytes) + " GiB per rank (" + rs.device +
                                        "), and none of them divides the group of " + std::to_string(group_size) +
                                        " ranks (run a multiple of " + std::to_string(fewest) + " ranks)");
  }
  rs.plan = plan_stages(spec, rs.stages, rc.dtype, max_T);
  return rs;
}

std::string describe_stage_plan(const RunStages& rs) {
  std::string s = "  stages " + std::to_string(rs.stages) + (rs.automatic ? " (auto)" : "") + ", for " +
                  std::to_string(rs.max_T) + " tokens: activations ~" + gib(rs.plan.activation_bytes) +
                  " GiB per rank, largest stage ~" + gib(rs.plan.peak_bytes()) + " GiB; " + rs.device + " memory " +
                  gib(rs.device_bytes) + " GiB per rank" +
                  (rs.group_size > 0 ? ", " + std::to_string(rs.group_size / rs.stages) + " pipeline(s)" : "") + "\n";
  for (int k = 0; k < rs.plan.n_stages(); ++k) {
    const auto [l0, l1] = rs.plan.layers[k];
    s += "    stage " + std::to_string(k) + ": layers " + std::to_string(l0) + "-" + std::to_string(l1 - 1) + " (" +
         std::to_string(l1 - l0) + ")" + (k == 0 ? " + embedding" : "") +
         (k == rs.plan.n_stages() - 1 ? " + final norm, head" : "") + ", weights " + gib(rs.plan.weight_bytes[k]) +
         " GiB\n";
  }
  return s;
}

}  // namespace sink
