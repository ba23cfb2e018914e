// Output element types and the float32 -> output casts of docs/format.md ("cast the table, round to nearest even").
//
// The casts are written with integer arithmetic so they do not depend on the FPU's rounding mode or on F16C
// being present, and they match numpy's astype(float16) and ml_dtypes' bfloat16 bit for bit on every finite
// value and on infinities.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

// The casts below are also compiled into the CUDA kernels (decode_kernel.cuh), so device and host round alike.
#if defined(__CUDACC__)
#define HX_HOST_DEVICE __host__ __device__
#else
#define HX_HOST_DEVICE
#endif

namespace hyperonnx {

// ONNX TensorProto element type codes that a HyperDecode node may produce.
enum class DType : int64_t { kFloat = 1, kFloat16 = 10, kDouble = 11, kBFloat16 = 16 };

// Returns false for any code outside the four supported ones (attributes are untrusted).
bool dtype_from_onnx(int64_t code, DType* out);
size_t dtype_size(DType t);
const char* dtype_name(DType t);

inline HX_HOST_DEVICE uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

// IEEE binary16 bit pattern -> float32, exact (host only); h must be finite (exponent bits not all ones).
inline float half_to_float(uint32_t h) {
  const uint32_t sign = (h & 0x8000u) << 16, exp = h >> 10 & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: mant · 2^-24, exact in float32
    const float v = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -v : v;
  }
  const uint32_t u = sign | (exp + 112) << 23 | mant << 13;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// float32 -> IEEE binary16, round to nearest even; overflow goes to inf, NaN stays NaN (quiet, sign kept).
inline HX_HOST_DEVICE uint16_t float_to_half(float f) {
  const uint32_t u = float_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) {  // inf or NaN
    return static_cast<uint16_t>(sign | (a > 0x7f800000u ? 0x7e00u | ((a >> 13) & 0x3ffu) : 0x7c00u));
  }
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to inf
  if (a < 0x38800000u) {                                                // below 2^-14: half subnormal or zero
    if (a < 0x33000000u) return sign;                                   // below 2^-25: rounds to zero
    const uint32_t exp = a >> 23;
    const uint32_t mant = (a & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - exp;  // 14..24: value / 2^-24 = mant >> shift
    uint32_t h = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u);
    const uint32_t halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (h & 1u))) ++h;  // may carry into the smallest normal: correct
    return static_cast<uint16_t>(sign | h);
  }
  uint32_t h = (a - 0x38000000u) >> 13;  // rebias 127 -> 15 and drop 13 mantissa bits
  const uint32_t rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry into the exponent is the right result
  return static_cast<uint16_t>(sign | h);
}

// float32 -> bfloat16, round to nearest even; NaN becomes the quiet NaN 0x7fc0 with the sign (as ml_dtypes does).
inline HX_HOST_DEVICE uint16_t float_to_bfloat16(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16 & 0x8000u) | 0x7fc0u);
  const uint32_t lsb = (u >> 16) & 1u;
  return static_cast<uint16_t>((u + 0x7fffu + lsb) >> 16);
}

// Casts n float32 values to dtype t, writing n * dtype_size(t) bytes to out.
void cast_floats(const float* in, size_t n, DType t, void* out);

}  // namespace hyperonnx
