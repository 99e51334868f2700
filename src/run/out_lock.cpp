#include "sink/run/out_lock.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "sink/util/error.hpp"

namespace sink {

void lock_output_folder(const std::string& out) {
  static int held_fd = -1;  // kept open until exit: closing any fd of the file would drop the lock
  if (held_fd >= 0) return;
  const std::string path = (std::filesystem::path(out) / ".lock").string();
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw_file_error(path, "creating the lock file", errno);
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;  // l_start = l_len = 0: the whole file
  if (::fcntl(fd, F_SETLK, &fl) != 0) {
    const int e = errno;
    if (e != EACCES && e != EAGAIN) {
      ::close(fd);
      throw_file_error(path, "locking", e);
    }
    struct flock who {};
    who.l_type = F_WRLCK;
    who.l_whence = SEEK_SET;
    const long pid = ::fcntl(fd, F_GETLK, &who) == 0 && who.l_type != F_UNLCK ? long(who.l_pid) : 0L;
    ::close(fd);
    throw InputError(out, "another sink-run is writing here" + (pid > 0 ? " (pid " + std::to_string(pid) + ")" : "") +
                              "; wait for it to end, or set another out:");
  }
  // Who holds it, for people looking: the lock itself is the record lock, not this text.
  const std::string me = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) == 0) (void)!::pwrite(fd, me.data(), me.size(), 0);
  held_fd = fd;
}

}  // namespace sink
