#include "sink/util/error.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>

namespace sink {

void throw_file_error(const std::string& path, const std::string& doing, int err) {
  switch (err) {
    case ENOSPC:
    case EDQUOT:
      throw ResourceError(path, doing + ": no space left on device (free space, then rerun with --resume)");
    case EROFS:
      throw ResourceError(path, doing + ": read-only file system");
    case EACCES:
    case EPERM:
      throw ResourceError(path, doing + ": permission denied");
    case ENOENT:
    case ENOTDIR:
    case EISDIR:
    case ENAMETOOLONG:  // a path the user gave that cannot be a file: their input
      throw InputError(path, doing + ": " + std::strerror(err));
    case ENOMEM:
      throw ResourceError(path, doing + ": out of memory");
    default:
      throw ResourceError(path, doing + ": " + std::strerror(err));
  }
}

bool is_out_of_memory(const std::exception& e) {
  if (dynamic_cast<const std::bad_alloc*>(&e)) return true;
  const std::string m = first_line(e.what());
  for (const char* s : {"not enough memory", "can't allocate memory", "out of memory", "Cannot allocate memory"})
    if (m.find(s) != std::string::npos) return true;
  return false;
}

std::string first_line(const std::string& msg) {
  const auto nl = msg.find('\n');
  return nl == std::string::npos ? msg : msg.substr(0, nl);
}

}  // namespace sink
