// Files written whole or not at all: a killed process or a full disk never
// leaves a torn file under the final name.
#pragma once

#include <cstddef>
#include <string>

namespace sink {

// Writes `bytes` to `path` through `path`.tmp, fsync and rename: the final name
// appears only with the whole content. On any failure the temporary file is
// removed and a ResourceError names the file and the cause.
void write_file_atomic(const std::string& path, const std::string& bytes);
// The same for content in several pieces (a header and tensor data).
struct Piece {
  const void* data;
  std::size_t size;
};
void write_file_atomic(const std::string& path, const Piece* pieces, std::size_t n);

}  // namespace sink
