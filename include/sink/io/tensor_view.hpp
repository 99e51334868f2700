// A typed, borrowed view of tensor bytes inside a weight file. Shapes are
// row-major in the PyTorch/HF sense (outermost first). No libtorch here, so
// the file-format code compiles fast and fuzzes without torch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sink {

enum class DType : std::uint8_t { F32, F16, BF16, F64, I8, U8, I16, I32, I64, BOOL, F8_E4M3, F8_E5M2 };

std::string_view dtype_name(DType t);
std::size_t dtype_size(DType t);

struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  const std::uint8_t* data = nullptr;  // borrowed: lives as long as the file object
  std::size_t nbytes = 0;
  std::string file;  // for error messages

  std::int64_t numel() const;
};

// Converts F32/F16/BF16 (and F64) elements to float32.
void to_float32(const TensorView& t, float* out);

// IEEE half and bfloat16 helpers.
float half_to_float(std::uint16_t h);
float bf16_to_float(std::uint16_t b);

}  // namespace sink
