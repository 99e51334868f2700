#include "sink/util/atomic_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "sink/util/error.hpp"

namespace sink {

void write_file_atomic(const std::string& path, const std::string& bytes) {
  const Piece p{bytes.data(), bytes.size()};
  write_file_atomic(path, &p, 1);
}

void write_file_atomic(const std::string& path, const Piece* pieces, std::size_t n) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw_file_error(tmp, "cannot create", errno);
  auto fail = [&](const char* doing) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    throw_file_error(tmp, doing, err);
  };
  for (std::size_t i = 0; i < n; ++i) {
    const char* d = static_cast<const char*>(pieces[i].data);
    std::size_t left = pieces[i].size;
    while (left > 0) {
      const ssize_t w = ::write(fd, d, left);
      if (w < 0) {
        if (errno == EINTR) continue;
        fail("write failed");
      }
      d += w;
      left -= static_cast<std::size_t>(w);
    }
  }
  // A document recorded as finished must survive a node crash, not only a
  // killed process.
  if (::fsync(fd) != 0 && errno != EINVAL) fail("fsync failed");
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw_file_error(tmp, "close failed", err);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw_file_error(path, "rename failed", err);
  }
}

}  // namespace sink
