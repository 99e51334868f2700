// Which device each rank computes on (device_map: cpu | auto | cuda:N), decided before any
// weights load so that --dry-run prints it and refuses what the run would refuse.
#pragma once

#include <string>
#include <vector>

namespace sink {
namespace dist {
class Comm;
}

struct DeviceChoice {
  std::string device;   // "cpu" or "cuda:N" (empty when refused)
  std::string warning;  // one line, or empty
  std::string error;    // why this rank cannot run with this device_map, or empty
};

// One rank's choice (pure: the build and the machine are arguments, so both builds' rules are
// unit-tested anywhere). `cuda_count`: GPUs visible to this process (0 in a CPU build);
// `gpu_on_machine`: the driver answers (asked in a CPU build only, for the warning).
DeviceChoice choose_device(const std::string& device_map, int world_size, int local_rank, bool cuda_build,
                           int cuda_count, bool gpu_on_machine, const std::string& host);

// Every rank's device for one run, in world rank order, with where it runs.
struct RankDevice {
  std::string device, host;
  int local_rank = 0;
};
using DevicePlan = std::vector<RankDevice>;

// Collective: every rank chooses for each device_map, the choices are gathered, and a refusal on
// any rank becomes the same InputError on every rank. Rank 0 logs the warnings (each once).
// `where` names the config in the error.
std::vector<DevicePlan> plan_devices(const std::vector<std::string>& device_maps, const std::string& where,
                                     dist::Comm& world);

// "cuda:0@node1,cuda:1@node1": the devices of `ranks` (world ranks), for results.h5.
std::string describe_devices(const DevicePlan& plan, const std::vector<int>& ranks);

// True when an NVIDIA driver on this machine answers (`nvidia-smi -L` lists a GPU).
bool nvidia_gpu_on_machine();

}  // namespace sink
