// Whole-file writes (write, fsync, rename), errno -> error kind, out-of-memory detection.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <new>
#include <sstream>

#include "sink/util/atomic_file.hpp"
#include "sink/util/error.hpp"
#include "sink/util/fault.hpp"

namespace fs = std::filesystem;
using namespace sink;

namespace {
fs::path temp_dir() {
  auto d = fs::temp_directory_path() / ("sink_test_util_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}
std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
}  // namespace

TEST(AtomicFile, WritesWholeContentAndLeavesNoTemporary) {
  const auto d = temp_dir();
  const auto p = d / "a.bin";
  std::string bytes(1 << 20, 'x');
  bytes[12345] = '\0';
  write_file_atomic(p.string(), bytes);
  EXPECT_EQ(slurp(p), bytes);
  EXPECT_FALSE(fs::exists(p.string() + ".tmp"));
  // Pieces are written in order; an existing file is replaced whole.
  const std::string h = "head", t = "tail";
  const Piece pieces[] = {{h.data(), h.size()}, {nullptr, 0}, {t.data(), t.size()}};
  write_file_atomic(p.string(), pieces, 3);
  EXPECT_EQ(slurp(p), "headtail");
  fs::remove_all(d);
}

TEST(AtomicFile, MissingFolderIsTheUsersInput) {
  const auto p = temp_dir() / "no" / "such" / "folder" / "x.bin";
  try {
    write_file_atomic(p.string(), "x");
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("No such file or directory"), std::string::npos) << e.what();
  }
}

TEST(FileError, ErrnoGivesTheKindAndTheCause) {
  auto what = [](int err) -> std::pair<std::string, std::string> {
    try {
      throw_file_error("/out/f", "write failed", err);
    } catch (const ResourceError& e) {
      return {"resource", e.what()};
    } catch (const InputError& e) {
      return {"input", e.what()};
    }
    return {"", ""};
  };
  EXPECT_EQ(what(ENOSPC).first, "resource");
  EXPECT_NE(what(ENOSPC).second.find("/out/f: write failed: no space left on device"), std::string::npos);
  EXPECT_NE(what(EDQUOT).second.find("no space left on device"), std::string::npos);
  EXPECT_NE(what(EROFS).second.find("read-only file system"), std::string::npos);
  EXPECT_EQ(what(EACCES).first, "resource");
  EXPECT_EQ(what(EIO).first, "resource");
  EXPECT_EQ(what(ENOENT).first, "input");
  EXPECT_EQ(what(EISDIR).first, "input");
}

TEST(OutOfMemory, RecognisesAllocatorFailures) {
  EXPECT_TRUE(is_out_of_memory(std::bad_alloc()));
  // The first lines of libtorch's CPU and CUDA allocator errors (torch 2.11).
  EXPECT_TRUE(is_out_of_memory(std::runtime_error(
      "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to "
      "allocate 4398046511104 bytes. Error code 12 (Cannot allocate memory)\nbacktrace...")));
  EXPECT_TRUE(is_out_of_memory(std::runtime_error("CUDA out of memory. Tried to allocate 20.00 GiB")));
  EXPECT_FALSE(is_out_of_memory(std::runtime_error("shape mismatch")));
  // Only the first line counts: a backtrace mentioning memory is not the message.
  EXPECT_FALSE(is_out_of_memory(std::runtime_error("bad index\n  at out of memory handler")));
  EXPECT_EQ(first_line("a\nb"), "a");
  EXPECT_EQ(first_line("a"), "a");
}

TEST(Fault, NoPointFiresWithoutTheVariable) {
  ::unsetenv("SINK_FAULT");
  EXPECT_STREQ(fault::at("doc.start", 0), "");
  EXPECT_STREQ(fault::at("results.created"), "");
}
