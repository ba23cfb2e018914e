// The SIMD stores shared by the fused decoders of the block codecs (blockvq.cc, blocktcq.cc; x86 SSE2): 16 float32
// values, as four vectors, cast to the output dtype in registers and stored, plainly or non-temporally.
#pragma once

#include <cstdint>

#include "../dtype.h"

#if defined(__SSE2__)
#include <immintrin.h>

namespace hyperonnx {
namespace block_simd {

template <bool STREAM>
inline void store16(uint8_t* p, __m128i v) {
  if constexpr (STREAM) {
    _mm_stream_si128(reinterpret_cast<__m128i*>(p), v);
  } else {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), v);
  }
}

// Round to nearest even float32 -> bfloat16 of four NaN-free values (dtype.h's float_to_bfloat16, in SIMD), each
// in the low 16 bits of a sign-extended 32-bit lane, ready for _mm_packs_epi32.
inline __m128i bf16_lanes(__m128 v) {
  const __m128i u = _mm_castps_si128(v);
  const __m128i lsb = _mm_and_si128(_mm_srli_epi32(u, 16), _mm_set1_epi32(1));
  const __m128i r = _mm_srli_epi32(_mm_add_epi32(_mm_add_epi32(u, _mm_set1_epi32(0x7fff)), lsb), 16);
  return _mm_srai_epi32(_mm_slli_epi32(r, 16), 16);
}

// 16 values (four vectors) to 16 elements of dtype T at out. The casts are dtype.h's on every NaN-free value.
template <DType T, bool STREAM>
inline void store_group(uint8_t* out, const __m128 v[4]) {
  if constexpr (T == DType::kFloat) {
    for (int i = 0; i < 4; ++i) store16<STREAM>(out + 16 * i, _mm_castps_si128(v[i]));
  } else if constexpr (T == DType::kDouble) {
    for (int i = 0; i < 4; ++i) {
      store16<STREAM>(out + 32 * i, _mm_castpd_si128(_mm_cvtps_pd(v[i])));
      store16<STREAM>(out + 32 * i + 16, _mm_castpd_si128(_mm_cvtps_pd(_mm_movehl_ps(v[i], v[i]))));
    }
  } else {
    static_assert(T == DType::kBFloat16, "float16 has its own kernel (F16C)");
    store16<STREAM>(out, _mm_packs_epi32(bf16_lanes(v[0]), bf16_lanes(v[1])));
    store16<STREAM>(out + 16, _mm_packs_epi32(bf16_lanes(v[2]), bf16_lanes(v[3])));
  }
}

// float16 through F16C (vcvtps2ph, round to nearest even: the same bits as float_to_half on every NaN-free value).
// Only callers compiled for F16C (target("f16c")) may use it, and only where the CPU has it.
template <bool STREAM>
__attribute__((target("f16c"))) inline void store_group_f16c(uint8_t* out, const __m128 v[4]) {
  constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  store16<STREAM>(out, _mm_unpacklo_epi64(_mm_cvtps_ph(v[0], kRound), _mm_cvtps_ph(v[1], kRound)));
  store16<STREAM>(out + 16, _mm_unpacklo_epi64(_mm_cvtps_ph(v[2], kRound), _mm_cvtps_ph(v[3], kRound)));
}

}  // namespace block_simd
}  // namespace hyperonnx

#endif  // __SSE2__
