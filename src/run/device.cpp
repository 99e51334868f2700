// Device choice per rank (see include/sink/run/device.hpp).
#include "sink/run/device.hpp"

#include <unistd.h>

#include <cstdio>
#include <set>
#include <string>

#ifdef SINK_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

#include "sink/dist/comm.hpp"
#include "sink/util/error.hpp"
#include "sink/util/log.hpp"

namespace sink {

namespace {

std::string host_name() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "?";
  return buf;
}

#ifdef SINK_WITH_CUDA
constexpr bool kCudaBuild = true;
#else
constexpr bool kCudaBuild = false;
#endif

int cuda_device_count() {
#ifdef SINK_WITH_CUDA
  return static_cast<int>(c10::cuda::device_count());
#else
  return 0;
#endif
}

// Fields joined by '\x1f' (never in a host name or a message).
std::vector<std::uint8_t> pack(const std::vector<std::string>& f) {
  std::string s;
  for (std::size_t i = 0; i < f.size(); ++i) s += (i ? "\x1f" : "") + f[i];
  return {s.begin(), s.end()};
}
std::vector<std::string> unpack(const std::vector<std::uint8_t>& b) {
  std::vector<std::string> out(1);
  for (char c : b)
    if (c == '\x1f')
      out.emplace_back();
    else
      out.back() += c;
  return out;
}

}  // namespace

bool nvidia_gpu_on_machine() {
  // The driver's tool, found on PATH: it answers only when the kernel driver is loaded and sees a GPU.
  FILE* p = ::popen("nvidia-smi -L 2>/dev/null", "r");
  if (!p) return false;
  char buf[512];
  bool gpu = false;
  while (std::fgets(buf, sizeof buf, p))
    if (std::string(buf).rfind("GPU ", 0) == 0) gpu = true;
  return ::pclose(p) == 0 && gpu;
}

DeviceChoice choose_device(const std::string& device_map, int world_size, int local_rank, bool cuda_build,
                           int cuda_count, bool gpu_on_machine, const std::string& host) {
  DeviceChoice c;
  if (device_map == "cpu") {
    c.device = "cpu";
    return c;
  }
  if (!cuda_build) {
    if (device_map == "auto") {
      c.device = "cpu";
      if (gpu_on_machine)
        c.warning =
            "device_map auto: this sink-run is a CPU build, so the NVIDIA GPU on this machine is not used; "
            "build for it with `SINK_BUILD=cuda bash tools/setup.sh build` and run build/cuda/sink-run";
      return c;
    }
    c.error = "'" + device_map +
              "' needs a CUDA build of sink-run (bash tools/setup.sh build on a GPU machine, or cmake --preset cuda)";
    return c;
  }
  const bool explicit_one = device_map != "auto" && world_size == 1;
  if (cuda_count == 0) {
    if (device_map == "auto") {
      c.device = "cpu";
      c.warning = "device_map auto: no GPU visible on " + host + " (CUDA_VISIBLE_DEVICES, driver): running on the CPU";
    } else {
      c.error = "'" + device_map + "': no GPU visible on " + host;
    }
    return c;
  }
  if (explicit_one) {  // one rank and a named GPU: that one
    const int n = std::stoi(device_map.substr(5));
    if (n >= cuda_count)
      c.error = "'" + device_map + "': " + host + " has " + std::to_string(cuda_count) + " visible GPU(s)";
    else
      c.device = device_map;
    return c;
  }
  // Several ranks (or auto): each takes its node-local GPU. One visible GPU (a task bound to its
  // own by Slurm, or ranks sharing one card) serves every local rank.
  if (cuda_count == 1) {
    c.device = "cuda:0";
  } else if (local_rank < cuda_count) {
    c.device = "cuda:" + std::to_string(local_rank);
  } else {
    c.error = "local rank " + std::to_string(local_rank) + " on " + host + " but only " + std::to_string(cuda_count) +
              " GPUs are visible there: run at most " + std::to_string(cuda_count) + " ranks per node";
  }
  return c;
}

std::vector<DevicePlan> plan_devices(const std::vector<std::string>& device_maps, const std::string& where,
                                     dist::Comm& world) {
  const std::string host = host_name();
  const int local = dist::local_rank();
  const int count = cuda_device_count();
  bool any_auto = false;
  for (const auto& d : device_maps) any_auto |= d == "auto";
#ifdef SINK_WITH_CUDA
  const bool gpu = false;
#else
  const bool gpu = any_auto && local == 0 && nvidia_gpu_on_machine();  // one probe per node
#endif
  std::vector<std::string> mine{host, std::to_string(local)};
  for (const auto& d : device_maps) {
    auto c = choose_device(d, world.size(), local, kCudaBuild, count, gpu, host);
    mine.insert(mine.end(), {c.device, c.warning, c.error});
  }
  const auto all = world.allgather(pack(mine));
  std::vector<DevicePlan> plans(device_maps.size(), DevicePlan(world.size()));
  std::set<std::string> warned;
  for (int r = 0; r < world.size(); ++r) {
    const auto f = unpack(all[r]);
    for (std::size_t i = 0; i < device_maps.size(); ++i) {
      const std::string &dev = f.at(2 + 3 * i), &warning = f.at(3 + 3 * i), &error = f.at(4 + 3 * i);
      if (!error.empty())
        throw InputError(where + ": key 'device_map'",
                         (world.size() > 1 ? "rank " + std::to_string(r) + ": " : "") + error);
      if (!warning.empty() && world.rank() == 0 && warned.insert(warning).second) log::warn(warning);
      plans[i][r] = RankDevice{dev, f.at(0), std::stoi(f.at(1))};
    }
  }
  return plans;
}

std::string describe_devices(const DevicePlan& plan, const std::vector<int>& ranks) {
  std::string s;
  for (int r : ranks) s += (s.empty() ? "" : ",") + plan.at(r).device + "@" + plan.at(r).host;
  return s;
}

}  // namespace sink
