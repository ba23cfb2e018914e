// The trellis search's add-compare-select, eight independent searches at once (one per vector lane), as numpy's
// trellis_forward (hyperonnx/codec/tcq.py) runs it across rows: state n = 2i + j (i < 4) is entered from state i
// (branch A) or i + 4 (B), through coset i (A when j = 0) or i ^ 2; a = cost + d in float64, `took` = b < a,
// the new cost min(a, b). Shared by the blocktcq (candidates as lanes) and tcq (blocks as lanes) encoders.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace hyperonnx {
namespace encoders {

// GCC/Clang vector extensions: element-wise IEEE operations with one rounding each, as numpy's.
typedef float v8sf __attribute__((vector_size(32)));
typedef int32_t v8si __attribute__((vector_size(32)));
typedef float v4sf __attribute__((vector_size(16)));

// The x86 builds compile the searches three times (SSE2, AVX2, AVX-512: ISA, below) and pick one at run time.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(HX_NO_DISPATCH)
#define HX_X86_DISPATCH 1
#endif

constexpr int kStates = 8;

// The vector width (bytes) the searches run at: the widest this CPU has, at most HYPERONNX_ENCODERS_ISA ("128",
// "256"; tests use it to check every width's bytes on one machine).
inline int vector_bytes() {
  int bytes = 16;
#ifdef HX_X86_DISPATCH
  if (__builtin_cpu_supports("avx512f")) {
    bytes = 64;
  } else if (__builtin_cpu_supports("avx2")) {
    bytes = 32;
  }
#endif
  if (const char* cap = std::getenv("HYPERONNX_ENCODERS_ISA")) {
    const long limit = std::strtol(cap, nullptr, 10) / 8;
    if (limit >= 16 && limit < bytes) bytes = limit >= 32 ? 32 : 16;
  }
  return bytes;
}

// Eight float64 lanes as parts of `kBytes`, the target's vector width: 16 (SSE2, NEON), 32 (AVX2) or 64
// (AVX-512). GCC lowers a comparison of a generic vector wider than the hardware lane by lane: a 512-bit compare
// on AVX2 measured 3x slower than two 256-bit ones, and 256-bit ones on SSE2 2x slower than four 128-bit ones.
template <int kBytes>
struct Lanes {
  typedef double vpd __attribute__((vector_size(kBytes)));
  typedef int64_t vpi __attribute__((vector_size(kBytes)));
  typedef float vps __attribute__((vector_size(kBytes / 2)));
  static constexpr int kPartLanes = kBytes / 8;
  static constexpr int kParts = 8 / kPartLanes;
  vpd p[kParts];

  static inline __attribute__((always_inline)) Lanes splat(double v) {
    Lanes out;
    for (int k = 0; k < kParts; ++k) {
      for (int r = 0; r < kPartLanes; ++r) out.p[k][r] = v;
    }
    return out;
  }
  // d² of eight float32 differences, in float64 (exact: a float32 square fits a double's significand).
  static inline __attribute__((always_inline)) Lanes widen_square(const v8sf& diff) {
    vps part[kParts];
    std::memcpy(part, &diff, sizeof(part));
    Lanes out;
    for (int k = 0; k < kParts; ++k) {
      const vpd w = __builtin_convertvector(part[k], vpd);
      out.p[k] = w * w;
    }
    return out;
  }
  static inline __attribute__((always_inline)) Lanes load(const double* src) {
    Lanes v;
    std::memcpy(v.p, src, sizeof(v.p));
    return v;
  }
  // Lane r of eight.
  inline __attribute__((always_inline)) double lane(int r) const { return p[r / kPartLanes][r % kPartLanes]; }
};

// One step: cost (8 states × 8 lanes) moves on by the coset distances d (4 × 8 lanes); took[lane] gets bit `state`
// set where the state was entered through branch B.
template <class L>
inline __attribute__((always_inline)) void acs_step(L cost[kStates], const L d[4], uint8_t* took) {
  using vpd = typename L::vpd;
  using vpi = typename L::vpi;
  L next[kStates];
  vpi states[L::kParts] = {};
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 2; ++j) {
      const int ca = j == 0 ? i : i ^ 2, cb = ca ^ 2;
      const int st = 2 * i + j;
      for (int k = 0; k < L::kParts; ++k) {
        const vpd a = cost[i].p[k] + d[ca].p[k];
        const vpd b = cost[i + 4].p[k] + d[cb].p[k];
        const vpi via_b = b < a;
        // min(a, b) as a bitwise select: numpy's minimum (no NaN reaches here), without a vector ?: blend
        const vpi ai = reinterpret_cast<vpi>(a), bi = reinterpret_cast<vpi>(b);
        next[st].p[k] = reinterpret_cast<vpd>((ai & ~via_b) | (bi & via_b));
        states[k] |= via_b & static_cast<int64_t>(1 << st);
      }
    }
  }
  for (int k = 0; k < L::kParts; ++k) {
    for (int r = 0; r < L::kPartLanes; ++r) took[k * L::kPartLanes + r] = static_cast<uint8_t>(states[k][r]);
  }
  for (int st = 0; st < kStates; ++st) cost[st] = next[st];
}

// numpy's _PREVIOUS and _TAKEN, indexed by 2 · state + branch: the state before and the coset taken into it (state
// 2i + j comes from i through coset i (j = 0) or i ^ 2 (j = 1) on branch A, from i + 4 through the other on B).
// Table lookups, not branches: the branch bits of a search are close to random; with them (and tcq's lanes
// walked side by side) its search went from 131 to 245 M weights/s on one core.
constexpr uint8_t kPrevious[2 * kStates] = {0, 4, 0, 4, 1, 5, 1, 5, 2, 6, 2, 6, 3, 7, 3, 7};
constexpr uint8_t kTaken[2 * kStates] = {0, 2, 2, 0, 1, 3, 3, 1, 2, 0, 0, 2, 3, 1, 1, 3};

constexpr bool tables_match_the_trellis() {
  for (int st = 0; st < kStates; ++st) {
    const int i = st >> 1, ca = (st & 1) == 0 ? i : i ^ 2;
    if (kPrevious[2 * st] != i || kTaken[2 * st] != ca || kPrevious[2 * st + 1] != i + 4 ||
        kTaken[2 * st + 1] != (ca ^ 2)) {
      return false;
    }
  }
  return true;
}
static_assert(tables_match_the_trellis(), "kPrevious/kTaken follow acs_step's branches");

// The state before `state` and the coset taken into it, by the branch recorded.
inline void acs_back(int& state, int branch, int& coset) {
  const int at = 2 * state + branch;
  coset = kTaken[at];
  state = kPrevious[at];
}

}  // namespace encoders
}  // namespace hyperonnx
