#include "sink/io/tensor_view.hpp"

#include <cstring>
#include <stdexcept>

#include "sink/util/error.hpp"

namespace sink {

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::F64: return "F64";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::I16: return "I16";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    case DType::BOOL: return "BOOL";
    case DType::F8_E4M3: return "F8_E4M3";
    case DType::F8_E5M2: return "F8_E5M2";
  }
  return "?";
}

std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::F64: case DType::I64: return 8;
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: case DType::I16: return 2;
    default: return 1;
  }
}

std::int64_t TensorView::numel() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

float half_to_float(std::uint16_t h) {
  std::uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      int e = -1;
      do { ++e; man <<= 1; } while (!(man & 0x400));
      bits = sign | ((127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float bf16_to_float(std::uint16_t b) {
  std::uint32_t bits = std::uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

void to_float32(const TensorView& t, float* out) {
  const auto n = static_cast<std::size_t>(t.numel());
  switch (t.dtype) {
    case DType::F32: std::memcpy(out, t.data, n * 4); return;
    case DType::F64:
      for (std::size_t i = 0; i < n; ++i) { double d; std::memcpy(&d, t.data + 8 * i, 8); out[i] = float(d); }
      return;
    case DType::F16:
      for (std::size_t i = 0; i < n; ++i) { std::uint16_t h; std::memcpy(&h, t.data + 2 * i, 2); out[i] = half_to_float(h); }
      return;
    case DType::BF16:
      for (std::size_t i = 0; i < n; ++i) { std::uint16_t h; std::memcpy(&h, t.data + 2 * i, 2); out[i] = bf16_to_float(h); }
      return;
    default:
      throw InputError(t.file, "tensor '" + t.name + "' has dtype " + std::string(dtype_name(t.dtype)) +
                                   ", expected a floating-point type");
  }
}

}  // namespace sink
