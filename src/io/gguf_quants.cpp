// ggml tensor types: one table of (name, block size, bytes per block,
// to-float function). The dequantisers reproduce gguf-py's quants.py (our
// reference) operation for operation in float32: the same products in the
// same order, so the results are bit-identical.

// No fused multiply-add: gguf-py (numpy) rounds d*q and then the sum
// separately. For today's formats d*q is exact in float32 (an f16 times small
// integers), so a fused d*q-m would round the same; this keeps it so for any
// format added later, even when built with -march=native.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "sink/io/gguf.hpp"
#include "sink/io/tensor_view.hpp"

namespace sink {
namespace {

static_assert(std::endian::native == std::endian::little, "GGUF blocks are read as little-endian");

constexpr int QK_K = 256;

using ToFloat = void (*)(const std::uint8_t* src, std::int64_t nblocks, float* dst);

// All 65536 halves, converted once: F16 weights are common and large.
const float* f16_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (std::uint32_t i = 0; i < 65536; ++i) t[i] = half_to_float(static_cast<std::uint16_t>(i));
    return t;
  }();
  return table.data();
}

inline float f16_at(const std::uint8_t* p, const float* tab) {
  std::uint16_t h;
  std::memcpy(&h, p, 2);
  return tab[h];
}

template <class T>
inline T load(const std::uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// --- plain types ---------------------------------------------------------------

void f32_to_float(const std::uint8_t* src, std::int64_t n, float* dst) {
  if (n > 0) std::memcpy(dst, src, static_cast<std::size_t>(n) * 4);
}

void f16_to_float(const std::uint8_t* src, std::int64_t n, float* dst) {
  const float* tab = f16_table();
  for (std::int64_t i = 0; i < n; ++i) dst[i] = f16_at(src + 2 * i, tab);
}

void bf16_to_float_row(const std::uint8_t* src, std::int64_t n, float* dst) {
  for (std::int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(load<std::uint16_t>(src + 2 * i));
}

// F64 and the integer types: a plain C cast, as numpy's astype(float32).
template <class T>
void cast_to_float(const std::uint8_t* src, std::int64_t n, float* dst) {
  for (std::int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(load<T>(src + sizeof(T) * i));
}

// A double beyond float's range is UB to cast in C++; round it as IEEE (and
// numpy) do: to +-FLT_MAX up to the halfway point 0x1.ffffffp127, else to +-inf.
template <>
void cast_to_float<double>(const std::uint8_t* src, std::int64_t n, float* dst) {
  constexpr double kMax = std::numeric_limits<float>::max(), kHalfway = 0x1.ffffffp127;
  for (std::int64_t i = 0; i < n; ++i) {
    const double d = load<double>(src + 8 * i);
    const double a = std::fabs(d);
    if (a <= kMax || std::isnan(d)) {
      dst[i] = static_cast<float>(d);
    } else {
      const float big =
          a < kHalfway ? std::numeric_limits<float>::max() : std::numeric_limits<float>::infinity();
      dst[i] = std::signbit(d) ? -big : big;
    }
  }
}

// --- 32-element blocks ----------------------------------------------------------

// Q4_0: f16 d, 16 bytes of nibbles (low nibbles are elements 0..15, high 16..31).
void q4_0_to_float(const std::uint8_t* src, std::int64_t nb, float* y) {
  const float* tab = f16_table();
  for (std::int64_t b = 0; b < nb; ++b, src += 18, y += 32) {
    const float d = f16_at(src, tab);
    const std::uint8_t* qs = src + 2;
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>((qs[j] & 0x0F) - 8);
      y[j + 16] = d * static_cast<float>((qs[j] >> 4) - 8);
    }
  }
}

// Q4_1: f16 d, f16 m, 16 bytes of nibbles; y = d*q + m.
void q4_1_to_float(const std::uint8_t* src, std::int64_t nb, float* y) {
  const float* tab = f16_table();
  for (std::int64_t b = 0; b < nb; ++b, src += 20, y += 32) {
    const float d = f16_at(src, tab), m = f16_at(src + 2, tab);
    const std::uint8_t* qs = src + 4;
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>(qs[j] & 0x0F) + m;
      y[j + 16] = d * static_cast<float>(qs[j] >> 4) + m;
    }
  }
}

// Q5_0: f16 d, u32 of fifth bits (bit j for element j), 16 bytes of nibbles.
void q5_0_to_float(const std::uint8_t* src, std::int64_t nb, float* y) {
  const float* tab = f16_table();
  for (std::int64_t b = 0; b < nb; ++b, src += 22, y += 32) {
    const float d = f16_at(src, tab);
    const std::uint32_t qh = load<std::uint32_t>(src + 2);
    const std::uint8_t* qs = src + 6;
    for (int j = 0; j < 16; ++j) {
      const int q0 = (qs[j] & 0x0F) | (((qh >> j) & 1) << 4);
      const int q1 = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      y[j] = d * static_cast<float>(q0 - 16);
      y[j + 16] = d * static_cast<float>(q1 - 16);
    }
  }
}

// Q5_1: f16 d, f16 m, u32 of fifth bits, 16 bytes of nibbles; y = d*q + m.
void q5_1_to_float(const std::uint8_t* src, std::int64_t nb, float* y) {
  const float* tab = f16_table();
  for (std::int64_t b = 0; b < nb; ++b, src += 24, y += 32) {
    const float d = f16_at(src, tab), m = f16_at(src + 2, tab);
    const std::uint32_t qh = load<std::uint32_t>(src + 4);
    const std::uint8_t* qs = src + 8;
    for (int j = 0; j < 16; ++j) {
      const int q0 = (qs[j] & 0x0F) | (((qh >> j) & 1) << 4);
      const int q1 = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
      y[j] = d * static_cast<float>(q0) + m;
      y[j + 16] = d * static_cast<float>(q1) + m;
    }
  }
}

// Q8_0: f16 d, 32 int8.
void q8_0_to_float(const std::uint8_t* src, std::int64_t nb, float* y) {
  const float* tab = f16_table();
  for (std::int64_t b = 0; b < nb; ++b, src += 34, y += 32) {
    const float d = f16_at(src, tab);
    const auto* qs = reinterpret_cast<const std::int8_t*>(src + 2);
    for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(qs[j]) * d;
  }
}

// MXFP4: e8m0 exponent (as half the power of two), 16 bytes of e2m1 nibbles.
void mxfp4_to_float(const std::uint8_t* src, std::int64_t nb, float* y) {
  static constexpr float kv[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
  for (std::int64_t b = 0; b < nb; ++b, src += 17, y += 32) {
    const std::uint32_t e = src[0];
    const std::uint32_t bits = e < 2 ? (0x00200000u << e) : ((e - 1) << 23);
    const float d = std::bit_cast<float>(bits);
    const std::uint8_t* qs = src + 1;
    for (int j = 0; j < 16; ++j) {
      y[j] = d * kv[qs[j] & 0x0F];
      y[j + 16] = d * kv[qs[j] >> 4];
    }
  }
}

// --- 256-element super-blocks (K-quants) ------------------------------------------

// Q2_K: scales[16] (low nibble scale, high nibble min), qs[64], f16 d, f16 dmin.
// Element o = 128*i + 32*j + l takes bits 2j..2j+1 of qs[32*i + l]; sub-block o/16.
void q2_k_to_float(const std::uint8_t* src, std::int64_t nb, float* y) {
  const float* tab = f16_table();
  for (std::int64_t b = 0; b < nb; ++b, src += 84, y += QK_K) {
    const std::uint8_t* scales = src;
    const std::uint8_t* qs = src + 16;
    const float d = f16_at(src + 80, tab), dmin = f16_at(src + 82, tab);
    float dl[16], ml[16];
    for (int k = 0; k < 16; ++k) {
      dl[k] = d * static_cast<float>(scales[k] & 0x0F);
      ml[k] = dmin * static_cast<float>(scales[k] >> 4);
    }
    for (int o = 0; o < QK_K; ++o) {
      const int i = o / 128, j = (o % 128) / 32, l = o % 32;
      const int q = (qs[32 * i + l] >> (2 * j)) & 3;
      y[o] = dl[o / 16] * static_cast<float>(q) - ml[o / 16];
    }
  }
}

// Q3_K: hmask[32], qs[64], 12 bytes of packed 6-bit scales, f16 d. The high bit
// of element o is bit o/32 of hmask[o%32]; a clear bit subtracts 4.
void q3_k_to_float(const std::uint8_t* src, std::int64_t nb, float* y) {
  const float* tab = f16_table();
  for (std::int64_t b = 0; b < nb; ++b, src += 110, y += QK_K) {
    const std::uint8_t* hmask = src;
    const std::uint8_t* qs = src + 32;
    const std::uint8_t* sc = src + 96;
    const float d = f16_at(src + 108, tab);
    float dl[16];
    for (int k = 0; k < 16; ++k) {
      const int lo = (sc[k % 8] >> (4 * (k / 8))) & 0x0F;
      const int hi = (sc[8 + k % 4] >> (2 * (k / 4))) & 0x03;
      dl[k] = d * static_cast<float>((lo | (hi << 4)) - 32);
    }
    for (int o = 0; o < QK_K; ++o) {
      const int i = o / 128, j = (o % 128) / 32, l = o % 32;
      const int ql = (qs[32 * i + l] >> (2 * j)) & 3;
      const int hb = (hmask[l] >> (o / 32)) & 1;
      y[o] = dl[o / 16] * static_cast<float>(ql - (hb ? 0 : 4));
    }
  }
}

// The 6-bit (scale, min) pairs of Q4_K/Q5_K's 8 sub-blocks, packed in 12 bytes.
inline void scale_min_k4(const std::uint8_t* s, int j, int& sc, int& m) {
  if (j < 4) {
    sc = s[j] & 0x3F;
    m = s[j + 4] & 0x3F;
  } else {
    sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
    m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Q4_K: f16 d, f16 dmin, scales[12], qs[128]. Sub-block s (32 elements) is the
// low (even s) or high (odd s) nibbles of qs[32*(s/2) ..].
void q4_k_to_float(const std::uint8_t* src, std::int64_t nb, float* y) {
  const float* tab = f16_table();
  for (std::int64_t b = 0; b < nb; ++b, src += 144, y += QK_K) {
    const float d = f16_at(src, tab), dmin = f16_at(src + 2, tab);
    const std::uint8_t* scales = src + 4;
    const std::uint8_t* qs = src + 16;
    for (int s = 0; s < 8; ++s) {
      int sc, m;
      scale_min_k4(scales, s, sc, m);
      const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
      const std::uint8_t* q = qs + 32 * (s / 2);
      const int shift = 4 * (s % 2);
      for (int l = 0; l < 32; ++l) y[32 * s + l] = d1 * static_cast<float>((q[l] >> shift) & 0x0F) - m1;
    }
  }
}

// Q5_K: as Q4_K plus qh[32]: bit s of qh[l] is the fifth bit of element 32*s + l.
void q5_k_to_float(const std::uint8_t* src, std::int64_t nb, float* y) {
  const float* tab = f16_table();
  for (std::int64_t b = 0; b < nb; ++b, src += 176, y += QK_K) {
    const float d = f16_at(src, tab), dmin = f16_at(src + 2, tab);
    const std::uint8_t* scales = src + 4;
    const std::uint8_t* qh = src + 16;
    const std::uint8_t* qs = src + 48;
    for (int s = 0; s < 8; ++s) {
      int sc, m;
      scale_min_k4(scales, s, sc, m);
      const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
      const std::uint8_t* q = qs + 32 * (s / 2);
      const int shift = 4 * (s % 2);
      for (int l = 0; l < 32; ++l) {
        const int v = ((q[l] >> shift) & 0x0F) | (((qh[l] >> s) & 1) << 4);
        y[32 * s + l] = d1 * static_cast<float>(v) - m1;
      }
    }
  }
}

// Q6_K: ql[128] (low 4 bits), qh[64] (high 2 bits), int8 scales[16], f16 d.
// Element f = 128*i + r: low bits from nibble r/64 of ql[64*i + r%64], high bits
// from bits 2*(r/32).. of qh[32*i + r%32].
void q6_k_to_float(const std::uint8_t* src, std::int64_t nb, float* y) {
  const float* tab = f16_table();
  for (std::int64_t b = 0; b < nb; ++b, src += 210, y += QK_K) {
    const std::uint8_t* ql = src;
    const std::uint8_t* qh = src + 128;
    const auto* sc = reinterpret_cast<const std::int8_t*>(src + 192);
    const float d = f16_at(src + 208, tab);
    float dl[16];
    for (int k = 0; k < 16; ++k) dl[k] = d * static_cast<float>(sc[k]);
    for (int f = 0; f < QK_K; ++f) {
      const int i = f / 128, r = f % 128;
      const int lo = (ql[64 * i + r % 64] >> (4 * (r / 64))) & 0x0F;
      const int hi = (qh[32 * i + r % 32] >> (2 * (r / 32))) & 0x03;
      y[f] = dl[f / 16] * static_cast<float>((lo | (hi << 4)) - 32);
    }
  }
}

// Q8_K: f32 d, 256 int8, int16 bsums[16] (unused here). gguf-py has no
// dequantiser for it; this follows ggml's dequantize_row_q8_K.
void q8_k_to_float(const std::uint8_t* src, std::int64_t nb, float* y) {
  for (std::int64_t b = 0; b < nb; ++b, src += 292, y += QK_K) {
    const float d = load<float>(src);
    const auto* qs = reinterpret_cast<const std::int8_t*>(src + 4);
    for (int j = 0; j < QK_K; ++j) y[j] = d * static_cast<float>(qs[j]);
  }
}

struct TypeTraits {
  GGMLType type;
  const char* name;
  std::int64_t block;   // elements per block
  std::uint64_t bytes;  // bytes per block
  ToFloat to_float;     // nullptr: we cannot dequantise it
};

// Sizes as in ggml.c's type_traits (Q8_1 is ggml's 2+2+32, not gguf-py's stale 4+4+32).
constexpr TypeTraits kTypes[] = {
    {GGMLType::F32, "F32", 1, 4, f32_to_float},
    {GGMLType::F16, "F16", 1, 2, f16_to_float},
    {GGMLType::Q4_0, "Q4_0", 32, 18, q4_0_to_float},
    {GGMLType::Q4_1, "Q4_1", 32, 20, q4_1_to_float},
    {GGMLType::Q5_0, "Q5_0", 32, 22, q5_0_to_float},
    {GGMLType::Q5_1, "Q5_1", 32, 24, q5_1_to_float},
    {GGMLType::Q8_0, "Q8_0", 32, 34, q8_0_to_float},
    {GGMLType::Q8_1, "Q8_1", 32, 36, nullptr},
    {GGMLType::Q2_K, "Q2_K", QK_K, 84, q2_k_to_float},
    {GGMLType::Q3_K, "Q3_K", QK_K, 110, q3_k_to_float},
    {GGMLType::Q4_K, "Q4_K", QK_K, 144, q4_k_to_float},
    {GGMLType::Q5_K, "Q5_K", QK_K, 176, q5_k_to_float},
    {GGMLType::Q6_K, "Q6_K", QK_K, 210, q6_k_to_float},
    {GGMLType::Q8_K, "Q8_K", QK_K, 292, q8_k_to_float},
    {GGMLType::IQ2_XXS, "IQ2_XXS", QK_K, 66, nullptr},
    {GGMLType::IQ2_XS, "IQ2_XS", QK_K, 74, nullptr},
    {GGMLType::IQ3_XXS, "IQ3_XXS", QK_K, 98, nullptr},
    {GGMLType::IQ1_S, "IQ1_S", QK_K, 50, nullptr},
    {GGMLType::IQ4_NL, "IQ4_NL", 32, 18, nullptr},
    {GGMLType::IQ3_S, "IQ3_S", QK_K, 110, nullptr},
    {GGMLType::IQ2_S, "IQ2_S", QK_K, 82, nullptr},
    {GGMLType::IQ4_XS, "IQ4_XS", QK_K, 136, nullptr},
    {GGMLType::I8, "I8", 1, 1, cast_to_float<std::int8_t>},
    {GGMLType::I16, "I16", 1, 2, cast_to_float<std::int16_t>},
    {GGMLType::I32, "I32", 1, 4, cast_to_float<std::int32_t>},
    {GGMLType::I64, "I64", 1, 8, cast_to_float<std::int64_t>},
    {GGMLType::F64, "F64", 1, 8, cast_to_float<double>},
    {GGMLType::IQ1_M, "IQ1_M", QK_K, 56, nullptr},
    {GGMLType::BF16, "BF16", 1, 2, bf16_to_float_row},
    {GGMLType::TQ1_0, "TQ1_0", QK_K, 54, nullptr},
    {GGMLType::TQ2_0, "TQ2_0", QK_K, 66, nullptr},
    {GGMLType::MXFP4, "MXFP4", 32, 17, mxfp4_to_float},
    {GGMLType::NVFP4, "NVFP4", 64, 36, nullptr},
    {GGMLType::Q1_0, "Q1_0", 128, 18, nullptr},
};

const TypeTraits* traits(GGMLType t) {
  for (const auto& tt : kTypes)
    if (tt.type == t) return &tt;
  return nullptr;
}

}  // namespace

std::string ggml_type_name(GGMLType t) {
  if (const auto* tt = traits(t)) return tt->name;
  return "type " + std::to_string(static_cast<std::uint32_t>(t));
}

bool ggml_can_dequantize(GGMLType t) {
  const auto* tt = traits(t);
  return tt && tt->to_float;
}

std::int64_t ggml_block_size(GGMLType t) {
  const auto* tt = traits(t);
  return tt ? tt->block : 0;
}

std::uint64_t ggml_nbytes(GGMLType t, std::int64_t n) {
  const auto* tt = traits(t);
  if (!tt) throw std::invalid_argument("ggml_nbytes: unknown " + ggml_type_name(t));
  if (n < 0 || n % tt->block != 0)
    throw std::invalid_argument("ggml_nbytes: " + std::to_string(n) + " elements is not a multiple of the " +
                                tt->name + " block size " + std::to_string(tt->block));
  return static_cast<std::uint64_t>(n / tt->block) * tt->bytes;
}

void dequantize(GGMLType t, const std::uint8_t* src, std::int64_t n, float* dst) {
  const auto* tt = traits(t);
  if (!tt || !tt->to_float) throw std::invalid_argument("dequantize: cannot dequantize " + ggml_type_name(t));
  if (n < 0 || n % tt->block != 0)
    throw std::invalid_argument("dequantize: " + std::to_string(n) + " elements is not a multiple of the " +
                                tt->name + " block size " + std::to_string(tt->block));
  // Plain types take an element count; block types a block count.
  tt->to_float(src, tt->block == 1 ? n : n / tt->block, dst);
}

}  // namespace sink
