#include "sink/run/rank_errors.hpp"

#include <cstdio>
#include <string>
#include <vector>

#include "sink/dist/comm.hpp"
#include "sink/util/error.hpp"

namespace sink {
namespace {
bool g_rank_local = false;
}

void set_rank_local_phase(bool on) { g_rank_local = on; }
bool in_rank_local_phase() { return g_rank_local; }

void end_job_from_this_rank(const char* tool, const std::string& message, int code) {
  std::fprintf(stderr, "%s: error: %s\n", tool, first_line(message).c_str());
  dist::Env::abort(code);
}

void agree_on_errors(const dist::Comm& group, const dist::Comm& world, const char* tool,
                     const std::function<void()>& fn) {
  std::string mine;  // the kind ('2' input, '3' resource) travels as the first character
  try {
    fn();
  } catch (const InputError& e) {
    mine = std::string("2") + e.what();
  } catch (const ResourceError& e) {
    mine = std::string("3") + e.what();
  } catch (const std::exception& e) {
    if (!is_out_of_memory(e)) throw;
    mine = "3out of memory: " + first_line(e.what());
  }
  const auto all = group.allgather(std::vector<std::uint8_t>(mine.begin(), mine.end()));
  for (const auto& b : all) {
    if (b.empty()) continue;
    const std::string msg(b.begin() + 1, b.end());
    const int code = b[0] == '2' ? kExitBadInput : kExitResource;
    if (group.size() == world.size()) {
      if (code == kExitBadInput) throw InputError("", msg, /*on_every_rank=*/true);
      throw ResourceError("", msg, /*on_every_rank=*/true);
    }
    if (group.rank() == 0) end_job_from_this_rank(tool, msg, code);
    dist::Env::abort(code);
  }
}

}  // namespace sink
