// sink-run YAML configs: YAML parsing (yaml-cpp), alias and merge-key
// expansion with its bounds, --set overrides, validation of every key.
// Input: the YAML file, then optional --set overrides after NUL bytes
// ("file\0key=value\0key=value"). The config is read in a folder that holds
// eval.jsonl, cal.jsonl and mu.h5, so that relative paths in it resolve.
#include <fcntl.h>

#include <vector>

#include "fuzz_util.hpp"
#include "sink/config/config.hpp"

namespace {

const std::filesystem::path& fixture_dir() {
  static const std::filesystem::path dir = [] {
    const auto d = sink::fuzz::work_dir() / "config";
    std::filesystem::create_directories(d);
    std::ofstream(d / "eval.jsonl") << "{\"id\": \"a\", \"text\": \"one\"}\n{\"id\": \"b\", \"text\": \"two\"}\n";
    std::ofstream(d / "cal.jsonl") << "{\"id\": \"c\", \"text\": \"three\"}\n";
    std::ofstream(d / "mu.h5") << "not really HDF5";
    return d;
  }();
  return dir;
}

// Enters the fixture folder for one input, and returns to where we were.
struct InFixtureDir {
  int saved = -1;
  InFixtureDir() {
    saved = ::open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (saved < 0 || ::chdir(fixture_dir().c_str()) != 0) sink::fuzz::finding("cannot enter the fixture folder");
  }
  ~InFixtureDir() {
    if (::fchdir(saved) != 0) std::abort();
    ::close(saved);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sink;
  std::string_view in = fuzz::as_text(data, size);
  const std::size_t nul = in.find('\0');
  (void)fixture_dir();
  const std::string path = fuzz::write_file("config/config.yaml", in.substr(0, nul));
  std::vector<std::string> overrides;
  std::string_view rest = nul == std::string_view::npos ? std::string_view() : in.substr(nul + 1);
  while (!rest.empty() && overrides.size() < 8) {
    const std::size_t k = rest.find('\0');
    overrides.emplace_back(rest.substr(0, k));
    if (k == std::string_view::npos) break;
    rest.remove_prefix(k + 1);
  }
  InFixtureDir here;
  Config c;
  try {
    c = load_config(path, overrides);
  } catch (const InputError&) {
    return 0;
  }
  if (c.runs.empty()) fuzz::finding("a config with no runs was accepted");
  // The text stored in results.h5 (and compared by --resume) must load again to the same runs
  // (unless aliases made it longer than a config file may be).
  if (c.text.size() > (4u << 20)) return 0;
  const std::string again = fuzz::write_file("config/again.yaml", c.text);
  try {
    Config d = load_config(again);
    if (d.runs.size() != c.runs.size() || d.text != c.text)
      fuzz::finding("the stored config text does not reload to the same config");
  } catch (const InputError& e) {
    fuzz::finding(std::string("the stored config text does not load again: ") + e.what());
  }
  return 0;
}
