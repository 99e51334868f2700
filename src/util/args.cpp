#include "sink/cli/args.hpp"

#include <cstdio>
#include <exception>
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

long long Args::get_int(const std::string& f, long long def) const {
  auto v = get(f);
  if (!v) return def;
  try {
    size_t pos = 0;
    long long x = std::stoll(*v, &pos);
    if (pos != v->size()) throw std::invalid_argument("");
    return x;
  } catch (const std::exception&) {
    throw InputError(f, "expected an integer, got '" + *v + "'");
  }
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
