// The trellis search's add-compare-select, eight independent searches at once (one per vector lane), as numpy's
// trellis_forward (hyperonnx/codec/tcq.py) runs it across rows: state n = 2i + j (i < 4) is entered from state i
// (branch A) or i + 4 (B), through coset i (A when j = 0) or i ^ 2; a = cost + d in float64, `took` = b < a,
// the new cost min(a, b). Shared by the blocktcq (candidates as lanes) and tcq (blocks as lanes) encoders.
#pragma once

#include <cstdint>
#include <cstring>

namespace hyperonnx {
namespace encoders {

// GCC/Clang vector extensions: element-wise IEEE operations with one rounding each, as numpy's, lowered to what the
// target has (SSE2 or NEON halves, AVX2, AVX-512); on x86 the hot functions are also compiled for AVX2 and AVX-512
// (HX_CLONES) and picked at load time.
typedef float v8sf __attribute__((vector_size(32)));
typedef int32_t v8si __attribute__((vector_size(32)));
typedef float v4sf __attribute__((vector_size(16)));
typedef double v4df __attribute__((vector_size(32)));
typedef double v8df __attribute__((vector_size(64)));
typedef int64_t v8di __attribute__((vector_size(64)));
typedef int8_t v8qi __attribute__((vector_size(8)));

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HX_CLONES __attribute__((target_clones("default", "avx2", "avx512f")))
#else
#define HX_CLONES
#endif

constexpr int kStates = 8;

// One step: cost (8 states × 8 lanes) moves on by the coset distances d (4 × 8 lanes); took[state·8 + lane] = 1
// where the state was entered through branch B.
inline __attribute__((always_inline)) void acs_step(v8df cost[kStates], const v8df d[4], uint8_t* took) {
  v8df next[kStates];
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 2; ++j) {
      const int ca = j == 0 ? i : i ^ 2, cb = ca ^ 2;
      const int st = 2 * i + j;
      const v8df a = cost[i] + d[ca];
      const v8df b = cost[i + 4] + d[cb];
      const v8di via_b = b < a;
      next[st] = via_b ? b : a;
      const v8qi bits = __builtin_convertvector(via_b, v8qi);
      std::memcpy(took + st * 8, &bits, sizeof(bits));
    }
  }
  for (int st = 0; st < kStates; ++st) cost[st] = next[st];
}

// The state before `state` and the coset taken into it, by the branch recorded (numpy's _PREVIOUS and _TAKEN).
inline void acs_back(int& state, int branch, int& coset) {
  const int i = state >> 1, j = state & 1;
  const int ca = j == 0 ? i : i ^ 2;
  coset = branch ? ca ^ 2 : ca;
  state = branch ? i + 4 : i;
}

}  // namespace encoders
}  // namespace hyperonnx
