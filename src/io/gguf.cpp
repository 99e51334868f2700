// GGUF v2/v3 parsing. The file is memory-mapped and read through one cursor
// that checks every read against the bytes left, so a lying header can never
// read past the end or make us allocate more than the file could describe.
#include "sink/io/gguf.hpp"

#include <bit>
#include <cstring>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <utility>

#include "sink/util/error.hpp"

namespace sink {
namespace {

constexpr std::uint32_t kMaxDims = 4;  // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 16;     // nested metadata arrays; real files use 1
constexpr std::uint64_t kDefaultAlignment = 32;
// Bounds on what the header can make us allocate, beyond "fits in the file"
// (a multi-GB file could otherwise declare 10^8 tensors or metadata values,
// each taking far more memory than its bytes on disk). Real files: a few
// thousand tensors (tens of thousands for MoE), a few hundred keys, and about
// a million array values (a 256k vocabulary with its scores, types and merges).
constexpr std::uint64_t kMaxTensors = 1u << 20;
constexpr std::uint64_t kMaxKeyValues = 1u << 20;
constexpr std::uint64_t kMaxArrayValues = 1u << 24;  // all metadata array elements together

std::string quote(const std::string& s) { return "'" + s + "'"; }

// Smallest encoding of one metadata value of type t (0 for an invalid type):
// what lets us reject an array count before allocating for it.
std::uint64_t min_value_size(std::uint32_t t) {
  switch (static_cast<GGUFType>(t)) {
    case GGUFType::UINT8:
    case GGUFType::INT8:
    case GGUFType::BOOL:
      return 1;
    case GGUFType::UINT16:
    case GGUFType::INT16:
      return 2;
    case GGUFType::UINT32:
    case GGUFType::INT32:
    case GGUFType::FLOAT32:
      return 4;
    case GGUFType::UINT64:
    case GGUFType::INT64:
    case GGUFType::FLOAT64:
      return 8;
    case GGUFType::STRING:
      return 8;  // the length
    case GGUFType::ARRAY:
      return 12;  // element type + count
  }
  return 0;
}

class Cursor {
 public:
  Cursor(const std::string& path, const std::uint8_t* data, std::uint64_t size)
      : path_(path), data_(data), size_(size) {}

  [[noreturn]] void fail(const std::string& problem) const { throw InputError(path_, problem); }

  // Counts metadata array elements against kMaxArrayValues before they are allocated.
  void add_array_values(std::uint64_t n, const std::string& what) {
    if (n > kMaxArrayValues - array_values_)
      fail("metadata arrays hold more than " + std::to_string(kMaxArrayValues) + " values (at " + what +
           "); not a model file");
    array_values_ += n;
  }

  std::uint64_t pos() const { return pos_; }
  std::uint64_t left() const { return size_ - pos_; }

  void need(std::uint64_t n, const std::string& what) const {
    if (n > left())
      fail("truncated: " + what + " at byte " + std::to_string(pos_) + " needs " + std::to_string(n) +
           " bytes, file has " + std::to_string(size_));
  }

  template <class T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const std::string& what) {
    const std::uint64_t at = pos_;
    const auto n = read<std::uint64_t>("length of " + what);
    if (n > left())
      fail("string length " + std::to_string(n) + " of " + what + " at byte " + std::to_string(at) +
           " exceeds the " + std::to_string(left()) + " bytes left in the file");
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<std::size_t>(n));
    pos_ += n;
    return s;
  }

 private:
  const std::string& path_;
  const std::uint8_t* data_;
  std::uint64_t size_;
  std::uint64_t pos_ = 0;
  std::uint64_t array_values_ = 0;
};

GGUFValue read_value(Cursor& c, std::uint32_t type, const std::string& what, int depth) {
  GGUFValue out;
  out.type = type;
  switch (static_cast<GGUFType>(type)) {
    case GGUFType::UINT8:
      out.v = std::uint64_t{c.read<std::uint8_t>(what)};
      break;
    case GGUFType::INT8:
      out.v = std::int64_t{c.read<std::int8_t>(what)};
      break;
    case GGUFType::UINT16:
      out.v = std::uint64_t{c.read<std::uint16_t>(what)};
      break;
    case GGUFType::INT16:
      out.v = std::int64_t{c.read<std::int16_t>(what)};
      break;
    case GGUFType::UINT32:
      out.v = std::uint64_t{c.read<std::uint32_t>(what)};
      break;
    case GGUFType::INT32:
      out.v = std::int64_t{c.read<std::int32_t>(what)};
      break;
    case GGUFType::UINT64:
      out.v = c.read<std::uint64_t>(what);
      break;
    case GGUFType::INT64:
      out.v = c.read<std::int64_t>(what);
      break;
    case GGUFType::FLOAT32:
      out.v = double{c.read<float>(what)};
      break;
    case GGUFType::FLOAT64:
      out.v = c.read<double>(what);
      break;
    case GGUFType::BOOL:
      out.v = c.read<std::uint8_t>(what) != 0;
      break;
    case GGUFType::STRING:
      out.v = c.read_string(what);
      break;
    case GGUFType::ARRAY: {
      if (depth >= kMaxArrayDepth)
        c.fail(what + " nests arrays more than " + std::to_string(kMaxArrayDepth) + " deep");
      const auto et = c.read<std::uint32_t>("element type of " + what);
      const std::uint64_t min = min_value_size(et);
      if (min == 0) c.fail(what + " has arrays of unknown value type " + std::to_string(et));
      const std::uint64_t at = c.pos();
      const auto n = c.read<std::uint64_t>("element count of " + what);
      if (n > c.left() / min)
        c.fail("array count " + std::to_string(n) + " of " + what + " at byte " + std::to_string(at) +
               " cannot fit in the " + std::to_string(c.left()) + " bytes left in the file");
      c.add_array_values(n, what);
      GGUFValue::Array arr;
      arr.reserve(static_cast<std::size_t>(n));
      for (std::uint64_t i = 0; i < n; ++i) arr.push_back(read_value(c, et, what, depth + 1));
      out.v = std::move(arr);
      out.type = et;  // by convention the element type
      break;
    }
    default:
      c.fail(what + " has unknown value type " + std::to_string(type));
  }
  return out;
}

bool is_int_type(std::uint32_t t) {
  switch (static_cast<GGUFType>(t)) {
    case GGUFType::UINT8:
    case GGUFType::INT8:
    case GGUFType::UINT16:
    case GGUFType::INT16:
    case GGUFType::UINT32:
    case GGUFType::INT32:
    case GGUFType::UINT64:
    case GGUFType::INT64:
      return true;
    default:
      return false;
  }
}

}  // namespace

std::string gguf_type_name(std::uint32_t t) {
  static const char* const names[] = {"UINT8", "INT8",   "UINT16", "INT16",  "UINT32", "INT32",  "FLOAT32",
                                      "BOOL",  "STRING", "ARRAY",  "UINT64", "INT64",  "FLOAT64"};
  if (t < std::size(names)) return names[t];
  return "type " + std::to_string(t);
}

GGUFFile::GGUFFile(const std::string& path) : file_(path) {
  Cursor c(file_.path(), file_.data(), file_.size());

  // --- header
  if (file_.size() < 4) c.fail("too short to be a GGUF file (" + std::to_string(file_.size()) + " bytes)");
  if (std::memcmp(file_.data(), "GGUF", 4) != 0) c.fail("bad magic (not a GGUF file)");
  c.read<std::uint32_t>("magic");
  version_ = c.read<std::uint32_t>("header (version)");
  if (version_ == 1) c.fail("GGUF version 1 is not supported (only v2 and v3); convert the model again");
  if (version_ != 0 && (version_ & 0xFFFF) == 0)
    c.fail("GGUF version " + std::to_string(version_) +
           " looks byte-swapped: big-endian files are not supported");
  if (version_ != 2 && version_ != 3)
    c.fail("unsupported GGUF version " + std::to_string(version_) + " (only v2 and v3)");
  const auto n_tensors = c.read<std::uint64_t>("header (tensor count)");
  const auto n_kv = c.read<std::uint64_t>("header (metadata count)");
  // Each key/value pair takes at least 13 bytes, each tensor info 24.
  auto check_count = [&](std::uint64_t n, std::uint64_t min_size, const char* what) {
    if (n > c.left() / min_size)
      c.fail("truncated or corrupt: " + std::string(what) + " " + std::to_string(n) + " cannot fit in the " +
             std::to_string(c.left()) + " bytes left in the file");
  };
  check_count(n_kv, 13, "metadata count");
  check_count(n_tensors, 24, "tensor count");
  if (n_kv > kMaxKeyValues)
    c.fail("metadata count " + std::to_string(n_kv) + " exceeds the limit of " + std::to_string(kMaxKeyValues));
  if (n_tensors > kMaxTensors)
    c.fail("tensor count " + std::to_string(n_tensors) + " exceeds the limit of " + std::to_string(kMaxTensors));

  // --- key/value metadata
  for (std::uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.read_string("metadata key #" + std::to_string(i));
    const std::string what = "metadata key " + quote(key);
    const auto type = c.read<std::uint32_t>("value type of " + what);
    GGUFValue val = read_value(c, type, what, 0);
    if (!kv_.emplace(std::move(key), std::move(val)).second) c.fail("duplicate " + what);
  }

  if (auto it = kv_.find("general.alignment"); it != kv_.end()) {
    const GGUFValue& a = it->second;
    if (a.is_array() || a.type != static_cast<std::uint32_t>(GGUFType::UINT32))
      c.fail("metadata key 'general.alignment' has type " + gguf_type_name(a.type) + ", expected UINT32");
    alignment_ = std::get<std::uint64_t>(a.v);
    if (alignment_ == 0 || !std::has_single_bit(alignment_))
      c.fail("general.alignment " + std::to_string(alignment_) + " is not a power of two");
  } else {
    alignment_ = kDefaultAlignment;
  }

  // --- tensor infos
  check_count(n_tensors, 24, "tensor count");
  tensors_.reserve(static_cast<std::size_t>(n_tensors));
  for (std::uint64_t i = 0; i < n_tensors; ++i) {
    GGUFTensorInfo t;
    t.name = c.read_string("name of tensor #" + std::to_string(i));
    const std::string what = "tensor " + quote(t.name);
    const auto n_dims = c.read<std::uint32_t>("n_dims of " + what);
    if (n_dims > kMaxDims)
      c.fail(what + " has n_dims " + std::to_string(n_dims) + " (at most " + std::to_string(kMaxDims) + ")");
    std::int64_t numel = 1;
    for (std::uint32_t d = 0; d < n_dims; ++d) {
      const auto ne = c.read<std::int64_t>("shape of " + what);
      if (ne < 0) c.fail(what + " has negative ne[" + std::to_string(d) + "] = " + std::to_string(ne));
      if (__builtin_mul_overflow(numel, ne, &numel)) c.fail(what + " has too many elements (overflow)");
      t.ne.push_back(ne);
    }
    t.shape.assign(t.ne.rbegin(), t.ne.rend());
    const auto type = c.read<std::uint32_t>("type of " + what);
    t.type = static_cast<GGMLType>(type);
    const std::int64_t block = ggml_block_size(t.type);
    if (block == 0) c.fail(what + " has unknown ggml type " + std::to_string(type));
    const std::int64_t row = t.ne.empty() ? 1 : t.ne[0];
    if (row % block != 0)
      c.fail(what + " has rows of " + std::to_string(row) + " elements, not a multiple of the " +
             ggml_type_name(t.type) + " block size " + std::to_string(block));
    // numel fits int64; the byte count per block (<= 292) may not.
    const std::uint64_t per_block = ggml_nbytes(t.type, block);
    if (__builtin_mul_overflow(static_cast<std::uint64_t>(numel / block), per_block, &t.nbytes))
      c.fail(what + " is too large (byte count overflows)");
    t.offset = c.read<std::uint64_t>("data offset of " + what);
    if (t.offset % alignment_ != 0)
      c.fail(what + " has data offset " + std::to_string(t.offset) + ", not a multiple of the alignment " +
             std::to_string(alignment_));
    if (!by_name_.emplace(t.name, tensors_.size()).second) c.fail("duplicate tensor name " + quote(t.name));
    tensors_.push_back(std::move(t));
  }

  // --- data section: starts at the next multiple of the alignment
  const std::uint64_t size = file_.size();
  data_offset_ = c.pos() + (alignment_ - c.pos() % alignment_) % alignment_;
  for (auto& t : tensors_) {
    const std::string what = "tensor " + quote(t.name);
    std::uint64_t start, end;
    if (__builtin_add_overflow(data_offset_, t.offset, &start) || start > size)
      c.fail(what + " data offset " + std::to_string(t.offset) + " (past the data section at byte " +
             std::to_string(data_offset_) + ") lies past end of file (" + std::to_string(size) + " bytes)");
    if (__builtin_add_overflow(start, t.nbytes, &end) || end > size)
      c.fail("truncated: " + what + " data ends at byte " +
             (end >= start ? std::to_string(end) : std::to_string(start) + "+" + std::to_string(t.nbytes)) +
             " past end of file (" + std::to_string(size) + " bytes)");
    t.offset = start;  // absolute from here on
  }
}

const GGUFTensorInfo* GGUFFile::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

// --- typed metadata access ------------------------------------------------------

namespace {

[[noreturn]] void wrong_type(const std::string& path, const std::string& key, const GGUFValue& v,
                             const char* expected) {
  const std::string got = v.is_array() ? "ARRAY of " + gguf_type_name(v.type) : gguf_type_name(v.type);
  throw InputError(path, "metadata key " + quote(key) + " has type " + got + ", expected " + expected);
}

// Integer value of a scalar, or nullopt if it is not an integer that fits int64.
std::optional<std::int64_t> as_int(const GGUFValue& v) {
  if (v.is_array() || !is_int_type(v.type)) return std::nullopt;
  if (const auto* u = std::get_if<std::uint64_t>(&v.v)) {
    if (*u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
    return static_cast<std::int64_t>(*u);
  }
  return std::get<std::int64_t>(v.v);
}

// Floats, and integers (a float key written as an int is still meaningful).
std::optional<double> as_float(const GGUFValue& v) {
  if (v.is_array()) return std::nullopt;
  if (const auto* d = std::get_if<double>(&v.v)) return *d;
  if (const auto* u = std::get_if<std::uint64_t>(&v.v)) return static_cast<double>(*u);
  if (const auto* i = std::get_if<std::int64_t>(&v.v)) return static_cast<double>(*i);
  return std::nullopt;
}

}  // namespace

std::string GGUFFile::get_string(const std::string& key) const {
  auto it = kv_.find(key);
  if (it == kv_.end()) throw InputError(path(), "metadata key " + quote(key) + " is missing");
  const auto* s = std::get_if<std::string>(&it->second.v);
  if (!s) wrong_type(path(), key, it->second, "STRING");
  return *s;
}

std::int64_t GGUFFile::get_int(const std::string& key) const {
  auto it = kv_.find(key);
  if (it == kv_.end()) throw InputError(path(), "metadata key " + quote(key) + " is missing");
  auto i = as_int(it->second);
  if (!i) wrong_type(path(), key, it->second, "an integer (that fits int64)");
  return *i;
}

double GGUFFile::get_float(const std::string& key) const {
  auto it = kv_.find(key);
  if (it == kv_.end()) throw InputError(path(), "metadata key " + quote(key) + " is missing");
  auto d = as_float(it->second);
  if (!d) wrong_type(path(), key, it->second, "a number");
  return *d;
}

std::int64_t GGUFFile::get_int_or(const std::string& key, std::int64_t def) const {
  return has(key) ? get_int(key) : def;
}

double GGUFFile::get_float_or(const std::string& key, double def) const {
  return has(key) ? get_float(key) : def;
}

std::vector<std::string> GGUFFile::get_string_array(const std::string& key) const {
  auto it = kv_.find(key);
  if (it == kv_.end()) throw InputError(path(), "metadata key " + quote(key) + " is missing");
  const auto* arr = std::get_if<GGUFValue::Array>(&it->second.v);
  if (!arr || it->second.type != static_cast<std::uint32_t>(GGUFType::STRING))
    wrong_type(path(), key, it->second, "ARRAY of STRING");
  std::vector<std::string> out;
  out.reserve(arr->size());
  for (const auto& e : *arr) out.push_back(std::get<std::string>(e.v));
  return out;
}

std::vector<double> GGUFFile::get_float_array(const std::string& key) const {
  auto it = kv_.find(key);
  if (it == kv_.end()) throw InputError(path(), "metadata key " + quote(key) + " is missing");
  const auto* arr = std::get_if<GGUFValue::Array>(&it->second.v);
  if (!arr ||
      !(is_int_type(it->second.type) || it->second.type == static_cast<std::uint32_t>(GGUFType::FLOAT32) ||
        it->second.type == static_cast<std::uint32_t>(GGUFType::FLOAT64)))
    wrong_type(path(), key, it->second, "an ARRAY of numbers");
  std::vector<double> out;
  out.reserve(arr->size());
  for (const auto& e : *arr) out.push_back(*as_float(e));
  return out;
}

std::vector<std::int64_t> GGUFFile::get_int_array(const std::string& key) const {
  auto it = kv_.find(key);
  if (it == kv_.end()) throw InputError(path(), "metadata key " + quote(key) + " is missing");
  const auto* arr = std::get_if<GGUFValue::Array>(&it->second.v);
  if (!arr || !is_int_type(it->second.type)) wrong_type(path(), key, it->second, "an ARRAY of integers");
  std::vector<std::int64_t> out;
  out.reserve(arr->size());
  for (const auto& e : *arr) {
    auto i = as_int(e);
    if (!i)
      throw InputError(path(), "metadata key " + quote(key) + " holds an integer that does not fit int64");
    out.push_back(*i);
  }
  return out;
}

// --- tensor data ------------------------------------------------------------------

std::vector<float> GGUFFile::to_float32(const GGUFTensorInfo& t) const {
  if (!ggml_can_dequantize(t.type))
    throw InputError(path(), "tensor " + quote(t.name) + " has type " + ggml_type_name(t.type) +
                                 ", which sink cannot dequantize");
  // The info may have been copied and edited by the caller: check it again.
  std::int64_t n = 1;
  for (auto d : t.ne)
    if (d < 0 || __builtin_mul_overflow(n, d, &n))
      throw InputError(path(), "tensor " + quote(t.name) + " has a bad shape");
  if (n % ggml_block_size(t.type) != 0 || ggml_nbytes(t.type, n) != t.nbytes || t.offset > file_.size() ||
      t.nbytes > file_.size() - t.offset)
    throw InputError(path(), "tensor " + quote(t.name) + " does not match its data in the file");
  std::vector<float> out(static_cast<std::size_t>(n));
  if (n > 0) dequantize(t.type, file_.data() + t.offset, n, out.data());
  return out;
}

TensorView GGUFFile::view(const GGUFTensorInfo& t) const {
  TensorView v;
  v.name = t.name;
  v.shape = t.shape;
  v.data = file_.data() + t.offset;
  v.nbytes = static_cast<std::size_t>(t.nbytes);
  v.file = path();
  switch (t.type) {
    case GGMLType::F32:
      v.dtype = DType::F32;
      break;
    case GGMLType::F16:
      v.dtype = DType::F16;
      break;
    case GGMLType::BF16:
      v.dtype = DType::BF16;
      break;
    case GGMLType::F64:
      v.dtype = DType::F64;
      break;
    case GGMLType::I8:
      v.dtype = DType::I8;
      break;
    case GGMLType::I16:
      v.dtype = DType::I16;
      break;
    case GGMLType::I32:
      v.dtype = DType::I32;
      break;
    case GGMLType::I64:
      v.dtype = DType::I64;
      break;
    default:  // block-quantised: the raw blocks
      v.dtype = DType::U8;
      v.shape = {static_cast<std::int64_t>(t.nbytes)};
      break;
  }
  return v;
}

}  // namespace sink
