// model.safetensors.index.json of a sharded snapshot: the input is the index;
// the folder holds two small valid shards (tensors a, b and c, d) and one
// broken one, so that every path of SafetensorsSet is reachable.
#include "fuzz_util.hpp"
#include "sink/io/safetensors.hpp"

namespace {

std::string snapshot_dir() {
  static const std::string dir = [] {
    namespace fs = std::filesystem;
    const fs::path d = sink::fuzz::work_dir() / "snapshot";
    fs::create_directories(d);
    static const float v[6] = {1, 2, 3, 4, 5, 6};
    sink::write_safetensors((d / "model-00001-of-00002.safetensors").string(),
                            {{"a", sink::DType::F32, {2, 3}, v}, {"b", sink::DType::F32, {2}, v}});
    sink::write_safetensors((d / "model-00002-of-00002.safetensors").string(),
                            {{"c", sink::DType::F32, {6}, v}, {"d", sink::DType::F16, {3}, v}},
                            {{"format", "pt"}});
    std::ofstream((d / "broken.safetensors").string(), std::ios::binary) << "\x10\x00\x00\x00";
    return d.string();
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sink;
  const std::string dir = snapshot_dir();
  fuzz::write_file("snapshot/model.safetensors.index.json", fuzz::as_text(data, size));
  fuzz::expect_ok_or_input_error([&] {
    SafetensorsSet set(dir);
    for (const auto& n : set.names())
      if (set.find(n) == nullptr) fuzz::finding("tensor '" + n + "' listed but not found");
    (void)set.describe();
  });
  return 0;
}
