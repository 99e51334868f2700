// Errors a user can act on. Anything wrong with an input file, a config key
// or a command-line flag is an InputError naming the file (or key) and the
// problem; the CLI prints it on one line and exits with status 2.
#pragma once

#include <stdexcept>
#include <string>

namespace sink {

class InputError : public std::runtime_error {
 public:
  InputError(std::string where, const std::string& problem)
      : std::runtime_error(where.empty() ? problem : where + ": " + problem),
        where_(std::move(where)) {}
  const std::string& where() const { return where_; }

 private:
  std::string where_;
};

// Exit status of every sink tool for bad input.
inline constexpr int kExitBadInput = 2;

}  // namespace sink
