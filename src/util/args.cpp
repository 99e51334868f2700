#include "sink/cli/args.hpp"

#include <charconv>
#include <cstdio>
#include <exception>
#include <limits>
#include <stdexcept>

#include "sink/util/error.hpp"

namespace sink {

Args::Args(int argc, char** argv, std::set<std::string> with_value, std::set<std::string> switches) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) == 0 && a.size() > 2) {
      std::string v;
      bool inline_value = false;
      if (auto eq = a.find('='); eq != std::string::npos) {
        v = a.substr(eq + 1);
        a = a.substr(0, eq);
        inline_value = true;
      }
      if (with_value.count(a)) {
        if (!inline_value) {
          if (i + 1 >= argc) throw InputError(a, "needs a value");
          v = argv[++i];
        }
        values_[a] = v;
      } else if (switches.count(a)) {
        on_.insert(a);
      } else {
        throw InputError(a, "unknown option");
      }
    } else {
      positional_.push_back(a);
    }
  }
}

std::optional<std::string> Args::get(const std::string& f) const {
  auto it = values_.find(f);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string Args::get_or(const std::string& f, const std::string& def) const { return get(f).value_or(def); }

long long parse_int_flag(const std::string& f, const std::string& v, long long lo, long long hi) {
  long long x = 0;
  const char* b = v.data();
  const char* e = b + v.size();
  if (b != e && *b == '+') ++b;  // from_chars takes no '+'
  auto [p, ec] = std::from_chars(b, e, x);
  if (v.empty() || ec == std::errc::invalid_argument || p != e)
    throw InputError(f, "expected an integer, got '" + v + "'");
  if (ec == std::errc::result_out_of_range || x < lo || x > hi)
    throw InputError(f, "'" + v + "' is out of range (" + std::to_string(lo) + " to " + std::to_string(hi) + ")");
  return x;
}

long long Args::get_int(const std::string& f, long long def) const {
  auto v = get(f);
  if (!v) return def;
  return parse_int_flag(f, *v, std::numeric_limits<long long>::min(), std::numeric_limits<long long>::max());
}

long long Args::get_int(const std::string& f, long long def, long long lo, long long hi) const {
  auto v = get(f);
  if (!v) return def;
  return parse_int_flag(f, *v, lo, hi);
}

std::vector<long long> Args::get_ints(const std::string& f, const std::string& def, long long lo, long long hi) const {
  const std::string v = get_or(f, def);
  std::vector<long long> out;
  std::size_t at = 0;
  while (true) {
    const auto comma = v.find(',', at);
    out.push_back(parse_int_flag(f, v.substr(at, comma == std::string::npos ? std::string::npos : comma - at), lo, hi));
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return out;
}

int run_cli(const char* tool, int (*body)(int, char**), int argc, char** argv) {
  try {
    return body(argc, argv);
  } catch (const InputError& e) {
    std::fprintf(stderr, "%s: error: %s\n", tool, e.what());
    return kExitBadInput;
  } catch (const ResourceError& e) {
    std::fprintf(stderr, "%s: error: %s\n", tool, e.what());
    return kExitResource;
  } catch (const std::exception& e) {
    if (is_out_of_memory(e)) {
      std::fprintf(stderr, "%s: error: out of memory: %s\n", tool, first_line(e.what()).c_str());
      return kExitResource;
    }
    std::string msg = e.what();
    if (auto nl = msg.find('\n'); nl != std::string::npos) msg = msg.substr(0, nl);  // c10 errors carry a backtrace
    std::fprintf(stderr, "%s: internal error: %s\n", tool, msg.c_str());
    return 1;
  }
}

}  // namespace sink
