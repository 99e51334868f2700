// See include/sink/run/outdir.hpp.
#include "sink/run/outdir.hpp"

#include <filesystem>

#include "sink/store/h5.hpp"
#include "sink/util/error.hpp"
#include "sink/util/log.hpp"

namespace sink {
namespace fs = std::filesystem;

void check_existing_results(const std::string& out_dir, const std::string& config_text, bool overwrite) {
  const fs::path results = fs::path(out_dir) / "results.h5";
  std::error_code ec;
  if (overwrite || !fs::is_regular_file(results, ec)) return;
  std::string old;
  try {
    auto f = h5::File::open_read(results.string());
    if (f.attr_int("complete").value_or(0) != 1) return;
    old = f.attr_string("config").value_or("");
  } catch (const std::exception&) {
    return;  // not HDF5, or torn: not a result anyone can lose
  }
  if (old == config_text) return;  // the same config again: recomputed, replaced
  throw InputError(results.string(),
                   "holds the complete results of another config (its 'config' attribute differs); rerun with "
                   "--overwrite to replace it, or set another out:");
}

bool results_complete_for(const std::string& out_dir, const std::string& config_text) {
  const fs::path results = fs::path(out_dir) / "results.h5";
  std::error_code ec;
  if (!fs::is_regular_file(results, ec)) return false;
  try {
    auto f = h5::File::open_read(results.string());
    return f.attr_int("complete").value_or(0) == 1 && f.attr_string("config").value_or("") == config_text;
  } catch (const std::exception&) {
    return false;  // not HDF5, or torn
  }
}

void remove_partial(const std::string& out_dir) {
  std::error_code ec;
  fs::remove_all(fs::path(out_dir) / ".partial", ec);
  if (ec) log::warn("could not remove " + (fs::path(out_dir) / ".partial").string() + ": " + ec.message());
}

}  // namespace sink
