// A thin C++ layer over (parallel) HDF5, HighFive style: RAII handles whose
// destructors never throw, every C call checked and turned into an exception
// naming the routine and the file. No raw HDF5 calls elsewhere.
//
// Files are opened with the MPI-IO driver when given a communicator of more
// than one rank; collective metadata and collective transfers are used for
// writes that every rank makes.
//
// Parallel files follow HDF5's rule: every rank makes the same metadata calls
// (create, open, group, attr, exists, close) with the same arguments, in the
// same order. Raw data reads are independent; write_rows is collective. What one
// rank wrote (data, or large attributes) is visible to another only after flush()
// or after the file is closed (MPI-IO consistency); read back after either.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sink::dist {
class Comm;
}

namespace sink::h5 {

enum class Type { F32, F64, I32, I64, U8, Str };

class Dataset;
class Group;

namespace detail {
// What every handle of one file shares: for error messages and the parallel rules.
struct FileCtx {
  std::string path;
  bool parallel = false;  // opened with MPI-IO on more than one rank
  int rank = 0;           // this process's rank in the file's communicator
  // The first failure to close one of the file's objects (a full disk shows up there),
  // reported once: by File::close(), or by the file's destructor.
  mutable std::string close_error;
  mutable bool close_error_reported = false;
};
}  // namespace detail

// An owned HDF5 id of any kind (file, group, dataset, attribute, type, space,
// property list); closed by the destructor, which logs failures and never throws.
class Object {
 public:
  Object() = default;
  explicit Object(std::int64_t id) : id_(id) {}
  Object(std::int64_t id, std::shared_ptr<const detail::FileCtx> ctx) : id_(id), ctx_(std::move(ctx)) {}
  ~Object();
  Object(Object&& o) noexcept;
  Object& operator=(Object&& o) noexcept;
  Object(const Object&) = delete;
  Object& operator=(const Object&) = delete;
  std::int64_t id() const { return id_; }
  bool valid() const { return id_ >= 0; }
  const std::string& file_path() const;  // "" for a bare id
  bool parallel() const { return ctx_ && ctx_->parallel; }
  int file_rank() const { return ctx_ ? ctx_->rank : 0; }  // this process's rank in a parallel file, else 0

  // Attributes (collective in parallel files: every rank writes the same value).
  void attr(const std::string& name, const std::string& v) const;
  void attr(const std::string& name, double v) const;
  void attr(const std::string& name, std::int64_t v) const;
  void attr(const std::string& name, const std::vector<double>& v) const;
  void attr(const std::string& name, const std::vector<std::int64_t>& v) const;
  // Any other integer (int, size_t) as int64, so that attr("n", 5) is not ambiguous.
  template <std::integral I>
  void attr(const std::string& name, I v) const {
    attr(name, static_cast<std::int64_t>(v));
  }
  std::optional<std::string> attr_string(const std::string& name) const;
  std::optional<double> attr_double(const std::string& name) const;
  std::optional<std::int64_t> attr_int(const std::string& name) const;
  std::optional<std::vector<double>> attr_doubles(const std::string& name) const;
  std::optional<std::vector<std::int64_t>> attr_ints(const std::string& name) const;
  bool has_attr(const std::string& name) const;

 protected:
  std::int64_t id_ = -1;
  std::shared_ptr<const detail::FileCtx> ctx_;
};

class Group : public Object {
 public:
  using Object::Object;
  Group group(const std::string& name) const;  // opens, or creates (with parents) if absent
  bool exists(const std::string& path) const;
  // Creates a dataset (collective in parallel files). Float datasets get NaN as fill value.
  Dataset create(const std::string& name, Type t, const std::vector<std::int64_t>& dims) const;
  Dataset open(const std::string& name) const;
  // Fixed-length UTF-8 string datasets of shape [n] (written whole by the caller on one rank or
  // collectively). In a parallel file every rank calls it with the same strings (creation is collective);
  // rank 0 writes.
  void write_strings(const std::string& name, const std::vector<std::string>& v) const;
  // Reads fixed- or variable-length string datasets of shape [n].
  std::vector<std::string> read_strings(const std::string& name) const;
  // A fixed-length UTF-8 string dataset [n] of `width` bytes per string, for ranks to fill
  // their rows with Dataset::write_strings (NUL-padded; h5py reads bytes, .asstr() gives str).
  Dataset create_strings(const std::string& name, std::int64_t n, std::size_t width) const;
  // The same with any shape ([N, P] token strings); Dataset::write_strings fills whole rows.
  Dataset create_strings(const std::string& name, const std::vector<std::int64_t>& dims, std::size_t width) const;
  // Every dataset below this group, as paths relative to it, in name order (recursive).
  std::vector<std::string> datasets() const;
};

class Dataset : public Object {
 public:
  using Object::Object;
  std::vector<std::int64_t> dims() const;
  // Writes rows [first, first + n) along dim 0 from contiguous data of the
  // dataset's type. In a parallel file every rank must call it (collective
  // transfer); a rank with nothing to write passes n = 0.
  void write_rows(std::int64_t first, std::int64_t n, const void* data) const;
  // Rows of a create_strings dataset, collectively like write_rows; each string <= string_width() bytes.
  void write_strings(std::int64_t first, const std::vector<std::string>& v) const;
  std::size_t string_width() const;  // bytes per string of a fixed-length string dataset
  // The whole dataset (one writer, or all ranks the same data). In a parallel file only
  // rank 0 writes (an independent transfer), so other ranks may call it or not.
  void write_all(const void* data) const;
  void read_rows(std::int64_t first, std::int64_t n, void* data) const;
  void read_all(void* data) const;
  // read_all into a buffer of type `want`, after checking the dataset holds that type
  // (an InputError naming the file otherwise): a buffer is never read as another type.
  void read_all_as(Type want, void* data) const;
  Type type() const { return type_; }
  // HDF5 dimension scales (H5DS, what netCDF-4 and xarray read as named dimensions):
  // makes this dataset the scale of dimension `name`, or attaches `scale` to axis `axis`.
  void make_scale(const std::string& name) const;
  void attach_scale(const Dataset& scale, unsigned axis) const;
  bool is_scale() const;

 private:
  friend class Group;
  void transfer(std::int64_t mem_space, std::int64_t file_space, const void* data) const;
  Type type_ = Type::F32;
};

class File : public Group {
 public:
  File() = default;
  using Group::create;  // the static File::create would hide it otherwise
  // Creates (truncating) `path`; with comm of size > 1, opens with MPI-IO (collective).
  static File create(const std::string& path, const dist::Comm* comm = nullptr);
  // A missing or non-HDF5 file throws sink::InputError naming the path (a std::runtime_error).
  static File open_read(const std::string& path);
  static File open_rw(const std::string& path, const dist::Comm* comm = nullptr);
  // Closes now (collective in a parallel file), reporting a failure the destructor would only print.
  void close();
  void flush() const;  // collective in a parallel file; also makes every rank's writes visible to all
  const std::string& path() const { return file_path(); }
  // Whether the last collective write (write_rows, Dataset::write_strings) of this process
  // was really collective (H5Pget_mpio_actual_io_mode); false after a serial-file write.
  static bool last_write_was_collective();

 private:
  static File open_file(const std::string& path, unsigned flags, const dist::Comm* comm);
};

}  // namespace sink::h5
