// Errors a user can act on. Anything wrong with an input file, a config key
// or a command-line flag is an InputError naming the file (or key) and the
// problem; the CLI prints it on one line and exits with status 2.
// A ResourceError is the machine failing us, not the input: the disk is full,
// the output is read-only, memory ran out. The CLI prints it on one line and
// exits with status 3; what finished is kept, and --resume continues.
#pragma once

#include <stdexcept>
#include <string>

namespace sink {

class InputError : public std::runtime_error {
 public:
  InputError(std::string where, const std::string& problem, bool on_every_rank = false)
      : std::runtime_error(where.empty() ? problem : where + ": " + problem),
        where_(std::move(where)),
        on_every_rank_(on_every_rank) {}
  const std::string& where() const { return where_; }
  // Agreed on by every rank (rank 0 alone need report it). Before sink-run's ranks
  // split, every InputError is found on every rank alike; after it, only this flag says so.
  bool on_every_rank() const { return on_every_rank_; }

 private:
  std::string where_;
  bool on_every_rank_ = false;
};

class ResourceError : public std::runtime_error {
 public:
  ResourceError(const std::string& where, const std::string& problem, bool on_every_rank = false)
      : std::runtime_error(where.empty() ? problem : where + ": " + problem), on_every_rank_(on_every_rank) {}
  // Thrown on every rank alike (rank 0 alone need report it), not on one rank
  // alone.
  bool on_every_rank() const { return on_every_rank_; }

 private:
  bool on_every_rank_;
};

// Exit status of every sink tool for bad input.
inline constexpr int kExitBadInput = 2;
// Exit status for a full disk, a read-only output, or memory exhausted.
inline constexpr int kExitResource = 3;

// The ResourceError for a failed file-system call on `path`, from its errno:
// ENOSPC and EDQUOT are "no space left", EROFS "read-only file system",
// EACCES/EPERM "permission denied"; a path that cannot be a file (ENOENT,
// ENOTDIR, EISDIR) is the user's input, an InputError.
[[noreturn]] void throw_file_error(const std::string& path, const std::string& doing, int err);

// std::bad_alloc, or a libtorch allocator's failure (CPU "not enough memory",
// CUDA "out of memory"): the message is all that crosses a torch-free boundary.
bool is_out_of_memory(const std::exception& e);
// The first line of an exception's message (c10 errors append a backtrace).
std::string first_line(const std::string& msg);

}  // namespace sink
