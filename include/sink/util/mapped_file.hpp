// A read-only memory map of a whole file (RAII, move-only).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace sink {

class MappedFile {
 public:
  MappedFile() = default;
  // Throws InputError naming `path` if it cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  std::span<const std::uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

// Inputs are regular files only: a FIFO would block forever, /dev/zero never end. Both
// throw InputError naming `path` (missing, a folder, not a regular file, too large).
void check_regular_file(const std::string& path);
// Reads a whole regular file of at most `max_bytes` (never blocks on a FIFO).
std::string read_regular_file(const std::string& path, std::size_t max_bytes);
// Reads a whole text file (a regular file of at most 1 GiB); throws InputError if missing.
std::string read_text_file(const std::string& path);

}  // namespace sink
