#include "sink/util/fault.hpp"

#include <csignal>
#include <cstdlib>
#include <string>

#include "sink/util/error.hpp"

namespace sink::fault {
namespace {

struct Spec {
  bool on = false;
  std::string action, point;
  std::int64_t index = -1;
  int rank = -1;
};

const Spec& spec() {
  static const Spec s = [] {
    Spec s;
    const char* e = std::getenv("SINK_FAULT");
    if (!e || !*e) return s;
    std::string v = e;
    if (auto c = v.find(":rank="); c != std::string::npos) {
      s.rank = std::atoi(v.c_str() + c + 6);
      v.resize(c);
    }
    const auto at = v.find('@');
    if (at == std::string::npos) return s;
    s.action = v.substr(0, at);
    s.point = v.substr(at + 1);
    if (auto h = s.point.find('#'); h != std::string::npos) {
      s.index = std::atoll(s.point.c_str() + h + 1);
      s.point.resize(h);
    }
    s.on = true;
    return s;
  }();
  return s;
}

int g_rank = 0;

}  // namespace

void set_rank(int rank) { g_rank = rank; }

const char* at(const char* point, std::int64_t index) {
  const Spec& s = spec();
  if (!s.on || s.point != point) return "";
  if (s.index >= 0 && s.index != index) return "";
  if (s.rank >= 0 && s.rank != g_rank) return "";
  if (s.action == "kill") std::raise(SIGKILL);
  if (s.action == "input")
    throw InputError(std::string("SINK_FAULT ") + point + (index >= 0 ? "#" + std::to_string(index) : ""),
                     "an input error injected on rank " + std::to_string(g_rank) +
                         " (the tests' stand-in for one rank's bad input)");
  return s.action.c_str();
}

}  // namespace sink::fault
