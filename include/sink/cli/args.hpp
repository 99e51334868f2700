// Minimal command-line parsing shared by the sink tools: --flag VALUE and
// --switch, with errors that name the flag (exit status 2).
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace sink {

class Args {
 public:
  // `with_value`: flags that take a value; `switches`: flags that do not.
  Args(int argc, char** argv, std::set<std::string> with_value, std::set<std::string> switches);
  bool has(const std::string& flag) const { return values_.count(flag) || on_.count(flag); }
  std::optional<std::string> get(const std::string& flag) const;
  std::string get_or(const std::string& flag, const std::string& def) const;
  long long get_int(const std::string& flag, long long def) const;
  // The same, in [lo, hi] (an InputError naming the flag otherwise).
  long long get_int(const std::string& flag, long long def, long long lo, long long hi) const;
  // A comma-separated list of integers, each in [lo, hi], at least one.
  std::vector<long long> get_ints(const std::string& flag, const std::string& def, long long lo, long long hi) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::string> values_;
  std::set<std::string> on_;
  std::vector<std::string> positional_;
};

// The one parser of integer flag values (every tool's flags go through it): the whole
// text must be a decimal integer in [lo, hi]; "abc", "3x", "" and out-of-range values are
// an InputError naming the flag.
long long parse_int_flag(const std::string& flag, const std::string& value, long long lo, long long hi);

// Runs `body`, turning InputError into one line on stderr and exit status 2,
// and any other exception into one line and exit status 1.
int run_cli(const char* tool, int (*body)(int, char**), int argc, char** argv);

}  // namespace sink
