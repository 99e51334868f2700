// GGUF v2/v3 reader (llama.cpp's single-file format). Every length, count,
// offset and shape is checked against the bytes in the file before use; a
// file that lies is an InputError naming the file, never a crash or a huge
// allocation. Quantised tensors are dequantised to float32 on request.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "sink/io/tensor_view.hpp"
#include "sink/util/mapped_file.hpp"

namespace sink {

// ggml tensor types as numbered in ggml.h. A file may hold any of them (its
// metadata and other tensors stay readable); ggml_can_dequantize() says which
// ones to_float32() handles. A number not listed here is an error on open.
enum class GGMLType : std::uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
  I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39, NVFP4 = 40, Q1_0 = 41,
};

// "Q4_K" etc.; "type N" for a number that is not a ggml type.
std::string ggml_type_name(GGMLType t);
// Whether dequantize()/to_float32() handle t.
bool ggml_can_dequantize(GGMLType t);

// gguf metadata value types (gguf_type in gguf.h).
enum class GGUFType : std::uint32_t {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};
std::string gguf_type_name(std::uint32_t t);

// A metadata value: scalars, strings, or arrays of them.
// Unsigned integers are held as uint64, signed ones as int64, FLOAT32/FLOAT64
// as double (exactly); an Array's elements may themselves be arrays.
struct GGUFValue {
  using Array = std::vector<GGUFValue>;
  std::variant<std::uint64_t, std::int64_t, double, bool, std::string, Array> v;
  std::uint32_t type = 0;  // gguf_type of the value (or of the array elements)

  bool is_array() const { return std::holds_alternative<Array>(v); }
};

struct GGUFTensorInfo {
  std::string name;
  GGMLType type;
  std::vector<std::int64_t> ne;     // ggml order: ne[0] is the innermost (contiguous) dimension
  std::vector<std::int64_t> shape;  // PyTorch order: reversed ne
  std::uint64_t offset = 0;         // absolute offset in the file
  std::uint64_t nbytes = 0;
};

class GGUFFile {
 public:
  explicit GGUFFile(const std::string& path);

  const std::string& path() const { return file_.path(); }
  std::uint32_t version() const { return version_; }
  std::uint64_t alignment() const { return alignment_; }
  std::uint64_t data_offset() const { return data_offset_; }  // start of the (aligned) data section
  const std::map<std::string, GGUFValue>& metadata() const { return kv_; }
  const std::vector<GGUFTensorInfo>& tensors() const { return tensors_; }
  const GGUFTensorInfo* find(const std::string& name) const;

  // Typed metadata access; throws InputError (naming key and file) on a
  // missing key or a wrong type, or returns the default for the *_or forms.
  bool has(const std::string& key) const { return kv_.count(key) != 0; }
  std::string get_string(const std::string& key) const;
  std::int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  std::int64_t get_int_or(const std::string& key, std::int64_t def) const;
  double get_float_or(const std::string& key, double def) const;
  std::vector<std::string> get_string_array(const std::string& key) const;
  std::vector<double> get_float_array(const std::string& key) const;
  std::vector<std::int64_t> get_int_array(const std::string& key) const;

  // Dequantises (or converts) one tensor to float32, row-major in `shape` order.
  std::vector<float> to_float32(const GGUFTensorInfo& t) const;
  // Raw bytes (for F32/F16/BF16 a TensorView usable without a copy). Plain
  // types keep their dtype and shape; block-quantised ones are U8 of shape {nbytes}.
  TensorView view(const GGUFTensorInfo& t) const;

 private:
  MappedFile file_;
  std::uint32_t version_ = 0;
  std::uint64_t alignment_ = 32;
  std::uint64_t data_offset_ = 0;
  std::map<std::string, GGUFValue> kv_;
  std::vector<GGUFTensorInfo> tensors_;
  std::map<std::string, std::size_t> by_name_;
};

// Dequantises `n` elements of type `t` from `src` (n a multiple of the block size).
void dequantize(GGMLType t, const std::uint8_t* src, std::int64_t n, float* dst);
// Bytes used by n elements of type t; throws std::invalid_argument if n is not a multiple of the block size.
std::uint64_t ggml_nbytes(GGMLType t, std::int64_t n);
// Elements per block of t (1 for plain types); 0 for an unknown type.
std::int64_t ggml_block_size(GGMLType t);

}  // namespace sink
