// blocktcq's aarch64 NEON decode, 32 weights a step (codes of 1..7 bits: 2L ≤ 256 fine levels, a byte), and the
// GEMV / transposed product that multiply them straight from registers (tcq_neon.h). Per 32 weights:
//   codes: one 32-byte load; four table lookups (vqtbl2q) put each code's first byte and the next into a 16-bit
//     lane, a per-lane shift (vshlq by minus the bit offset) and a narrowing move give one code per byte;
//   parity: θ's low bits become a 32-bit word (bit test, three pairwise adds), then the GF(2) prefix of
//     tcq_rows.h in a scalar register, carried between the 32-weight steps of a longer block as on x86;
//   levels: f = 2θ + parity indexes four byte planes of the block's level set (tcq_rows.h's 64/128/256-entry
//     planes): vqtbl1q/2q/4q for up to 64 entries, one vqtbx4q per further 64; two zips per plane pair interleave
//     the planes into floats, then one multiply by the block scale (the format's one rounding; aarch64 Linux runs
//     with FPCR.FZ clear, so subnormal products are exact as in the codec's scalar decoder).
// No arm64 machine was available to time these (qemu's timings are emulation); the choice rests on instruction
// counts (aarch64-linux-gnu-objdump, GCC 12 -O3, 5 bits): about 110 per 32 weights in the decode loop, against 16
// per weight in the inner loop of the codec's generic path (codecs/blocktcq.cc), before its unpack and cast.
#include "tcq_neon.h"

#include <cstdlib>
#include <cstring>

// Little-endian only: the byte planes become floats by reinterpreting lanes.
#if defined(__aarch64__) && !defined(__ARM_BIG_ENDIAN)
#include <arm_neon.h>
#define HX_TCQ_NEON 1
#endif

namespace hyperonnx {

#ifdef HX_TCQ_NEON
namespace {

// Where each of a step's 32 codes (4·BITS bytes, LSB first) lies: code 8k + i is 16-bit lane i of group k, made
// of bytes pair[k][2i] (the code's first byte) and pair[k][2i + 1] (the next: BITS ≤ 7 plus an offset ≤ 7 fit
// in 16 bits), shifted right by its bit offset (vshlq_u16 by shift[k][i] = minus that offset).
struct Unpack {
  uint8_t pair[4][16];
  int16_t shift[4][8];
};

constexpr Unpack make_unpack(int bits) {
  Unpack u{};
  for (int t = 0; t < 32; ++t) {
    const int bit = t * bits;
    u.pair[t / 8][2 * (t % 8)] = static_cast<uint8_t>(bit / 8);
    u.pair[t / 8][2 * (t % 8) + 1] = static_cast<uint8_t>(bit / 8 + 1);  // ≤ 28: inside the 32-byte load
    u.shift[t / 8][t % 8] = static_cast<int16_t>(-(bit % 8));
  }
  return u;
}

template <int BITS>
struct Tables {
  static constexpr Unpack kUnpack = make_unpack(BITS);
  // Entries per byte plane: tcq_rows.h's planes64() (2L ≤ 64), planes128() or planes256().
  static constexpr uint64_t kWidth = BITS <= 5 ? 64 : uint64_t{2} << BITS;
};

constexpr uint8_t kBit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
// Byte t of a 16-weight half's parity: byte t / 8 of its 16 bits (weights 0-15: bytes 0, 1; 16-31: bytes 2, 3).
constexpr uint8_t kSpread[2][16] = {{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},
                                    {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3}};

// Byte t of r[h]: byte f[h]_t of one plane's kWidth entries at t, for both 16-weight halves (one table load).
template <int BITS>
__attribute__((always_inline)) inline void plane_lookup(const uint8_t* t, const uint8x16_t f[2], uint8x16_t r[2]) {
  if constexpr (BITS <= 3) {
    const uint8x16_t tab = vld1q_u8(t);
    for (int h = 0; h < 2; ++h) r[h] = vqtbl1q_u8(tab, f[h]);
  } else if constexpr (BITS == 4) {
    const uint8x16x2_t tab = vld1q_u8_x2(t);
    for (int h = 0; h < 2; ++h) r[h] = vqtbl2q_u8(tab, f[h]);
  } else {
    const uint8x16x4_t tab = vld1q_u8_x4(t);
    for (int h = 0; h < 2; ++h) r[h] = vqtbl4q_u8(tab, f[h]);
    // Entries 64j.. : an index below 64j wraps to ≥ 64 after the subtraction, which vqtbx leaves unchanged.
    for (int j = 1; j < (1 << (BITS - 5)); ++j) {
      const uint8x16x4_t more = vld1q_u8_x4(t + 64 * j);
      const uint8x16_t base = vdupq_n_u8(static_cast<uint8_t>(64 * j));
      for (int h = 0; h < 2; ++h) r[h] = vqtbx4q_u8(r[h], more, vsubq_u8(f[h], base));
    }
  }
}

// 32 weights of one block into w[0..7] (4 each, in order): codes at src (4·BITS bytes; 32 readable), the block's
// level set (four planes of kWidth bytes) at tab, u's carry from the block's earlier weights (bits 0-2: u_(−3),
// u_(−2), u_(−1), as tcq_rows.cc); returns the carry for the next 32.
// Always inlined, as chunk(): the GEMVs keep w[] in registers (GCC 12 called it, passing w[] through memory).
template <int BITS>
__attribute__((always_inline)) inline uint32_t decode32(const uint8_t* src, const uint8_t* tab, float32x4_t scale,
                                                       uint32_t carry, float32x4_t w[8]) {
  const Unpack& un = Tables<BITS>::kUnpack;
  const uint8x16x2_t raw = vld1q_u8_x2(src);
  const uint8x16_t mask = vdupq_n_u8(static_cast<uint8_t>((1u << BITS) - 1u)), one = vdupq_n_u8(1);
  const uint8x16_t bit = vld1q_u8(kBit);
  uint8x16_t theta[2];
  for (int h = 0; h < 2; ++h) {
    uint16x8_t lanes[2];
    for (int k = 0; k < 2; ++k) {
      const uint16x8_t pair = vreinterpretq_u16_u8(vqtbl2q_u8(raw, vld1q_u8(un.pair[2 * h + k])));
      lanes[k] = vshlq_u16(pair, vld1q_s16(un.shift[2 * h + k]));
    }
    theta[h] = vandq_u8(vmovn_high_u16(vmovn_u16(lanes[0]), lanes[1]), mask);
  }
  // x: bit t = θ_t's low bit (each byte's bit placed by kBit, then summed eight bytes at a time).
  uint8x16_t sum = vpaddq_u8(vandq_u8(vtstq_u8(theta[0], one), bit), vandq_u8(vtstq_u8(theta[1], one), bit));
  sum = vpaddq_u8(sum, sum);
  sum = vpaddq_u8(sum, sum);
  const uint32_t x = vgetq_lane_u32(vreinterpretq_u32_u8(sum), 0);
  const uint32_t c0 = carry & 1u, c1 = (carry >> 1) & 1u, c2 = carry >> 2;
  const uint32_t u = tcq_parity_prefix(x ^ (c0 ^ c1) ^ ((c1 ^ c2) << 1) ^ (c2 << 2));
  const uint8x16_t parity = vreinterpretq_u8_u32(vdupq_n_u32((u << 1) | c2));
  uint8x16_t f[2];
  for (int h = 0; h < 2; ++h) {
    // Byte t of `odd`: 0xff where weight t's parity is 1, so subtracting it adds the parity to 2θ.
    const uint8x16_t odd = vtstq_u8(vqtbl1q_u8(parity, vld1q_u8(kSpread[h])), bit);
    f[h] = vsubq_u8(vshlq_n_u8(theta[h], 1), odd);  // 2θ + parity < 2^(BITS+1) ≤ 256
  }
  uint8x16_t b[4][2];  // plane p of half h
  for (int p = 0; p < 4; ++p) plane_lookup<BITS>(tab + p * Tables<BITS>::kWidth, f, b[p]);
  for (int h = 0; h < 2; ++h) {
    // Bytes to floats: planes 0/1 and 2/3 into 16-bit pairs (weights 0-7, 8-15), the pairs into 32-bit words.
    const uint16x8_t lo01 = vreinterpretq_u16_u8(vzip1q_u8(b[0][h], b[1][h]));
    const uint16x8_t hi01 = vreinterpretq_u16_u8(vzip2q_u8(b[0][h], b[1][h]));
    const uint16x8_t lo23 = vreinterpretq_u16_u8(vzip1q_u8(b[2][h], b[3][h]));
    const uint16x8_t hi23 = vreinterpretq_u16_u8(vzip2q_u8(b[2][h], b[3][h]));
    w[4 * h + 0] = vmulq_f32(vreinterpretq_f32_u16(vzip1q_u16(lo01, lo23)), scale);
    w[4 * h + 1] = vmulq_f32(vreinterpretq_f32_u16(vzip2q_u16(lo01, lo23)), scale);
    w[4 * h + 2] = vmulq_f32(vreinterpretq_f32_u16(vzip1q_u16(hi01, hi23)), scale);
    w[4 * h + 3] = vmulq_f32(vreinterpretq_f32_u16(vzip2q_u16(hi01, hi23)), scale);
  }
  return u >> 29;
}

struct Ctx {
  const uint8_t* blob;
  size_t len;
  const uint8_t* headers;
  const float* scales;
  const uint8_t* planes;  // the level sets' byte planes (Tables::kWidth entries a plane)
  uint64_t per_block;     // 32-weight chunks per block
};

template <int BITS>
Ctx make_ctx(const TcqRows& rows, const uint8_t* blob, size_t len) {
  const BlockVQParams& p = rows.params();
  const uint8_t* planes = BITS <= 5 ? rows.planes64() : BITS == 6 ? rows.planes128() : rows.planes256();
  return Ctx{blob, len, blob + p.code_bytes, p.scales.data(), planes, p.block / 32};
}

// 32-weight chunk `index` of the code stream (of block index / per_block, whose header is h).
template <int BITS>
__attribute__((always_inline)) inline uint32_t chunk(const Ctx& c, uint64_t index, uint32_t h, uint32_t carry,
                                                    float32x4_t w[8]) {
  const uint8_t* tab = c.planes + (h >> 8) * 4 * Tables<BITS>::kWidth;
  const float32x4_t scale = vdupq_n_f32(c.scales[h & 255u]);
  const uint64_t at = index * 4 * BITS;  // 32 codes = 4·BITS bytes
  if (at + 32 <= c.len) return decode32<BITS>(c.blob + at, tab, scale, carry, w);
  uint8_t tail[32] = {};  // the blob's last bytes: copied, so the 32-byte load stays inside it
  std::memcpy(tail, c.blob + at, 4 * BITS);
  return decode32<BITS>(tail, tab, scale, carry, w);
}

constexpr int kGemvRows = 4;

// R rows: y[m] += Σ_r a[m, r] · W_r, 32 columns a step; the rows' products are summed in M·8 accumulators before
// Y is loaded and stored once (a quarter of the row-buffer path's Y traffic, as tcq_vbmi.cc).
template <int BITS, int M, int R>
inline void gemv_group(const Ctx& c, uint64_t q0, uint64_t row_blocks, const float* a, int64_t lda, float* y,
                       int64_t ldy) {
  uint32_t carry[R] = {}, header[R] = {};
  float av[R][M];
  for (int r = 0; r < R; ++r) {
    for (int m = 0; m < M; ++m) av[r][m] = a[m * lda + r];
  }
  uint64_t q = q0, pos = 0;  // the rows' current block (relative to row 0) and chunk within it
  for (uint64_t i = 0; i < row_blocks * c.per_block; ++i) {
    float32x4_t acc[M][8];
    for (int m = 0; m < M; ++m) {
      for (int j = 0; j < 8; ++j) acc[m][j] = vdupq_n_f32(0.0f);
    }
    for (int r = 0; r < R; ++r) {
      const uint64_t qr = q + static_cast<uint64_t>(r) * row_blocks;
      if (pos == 0) {
        header[r] = block_header(c.headers, qr);
        carry[r] = 0;
      }
      float32x4_t w[8];
      carry[r] = chunk<BITS>(c, qr * c.per_block + pos, header[r], carry[r], w);
      for (int m = 0; m < M; ++m) {
        for (int j = 0; j < 8; ++j) acc[m][j] = vfmaq_n_f32(acc[m][j], w[j], av[r][m]);
      }
    }
    for (int m = 0; m < M; ++m) {
      float* dst = y + m * ldy + 32 * i;
      for (int j = 0; j < 8; ++j) vst1q_f32(dst + 4 * j, vaddq_f32(vld1q_f32(dst + 4 * j), acc[m][j]));
    }
    if (++pos == c.per_block) {
      pos = 0;
      ++q;
    }
  }
}

struct Neon {};  // this file's tag for TcqFamily (tcq_rows.h)

}  // namespace

template <>
template <int BITS>
void TcqFamily<Neon>::run(const TcqRows& rows, const uint8_t* blob, size_t len, uint64_t q0, uint64_t q1,
                          float* out) {
  const Ctx c = make_ctx<BITS>(rows, blob, len);
  for (uint64_t q = q0; q < q1; ++q) {
    const uint32_t h = block_header(c.headers, q);
    uint32_t carry = 0;
    for (uint64_t j = 0; j < c.per_block; ++j, out += 32) {
      float32x4_t w[8];
      carry = chunk<BITS>(c, q * c.per_block + j, h, carry, w);
      for (int i = 0; i < 8; ++i) vst1q_f32(out + 4 * i, w[i]);
    }
  }
}

template <>
template <int BITS, int M>
void TcqFamily<Neon>::gemv(const TcqRows& rows, const uint8_t* blob, size_t len, uint64_t q0, uint64_t row_blocks,
                           int64_t nrows, const float* a, int64_t lda, float* y, int64_t ldy) {
  const Ctx c = make_ctx<BITS>(rows, blob, len);
  int64_t r = 0;
  for (; r + kGemvRows <= nrows; r += kGemvRows) {
    gemv_group<BITS, M, kGemvRows>(c, q0 + static_cast<uint64_t>(r) * row_blocks, row_blocks, a + r, lda, y, ldy);
  }
  for (; r < nrows; ++r) {
    gemv_group<BITS, M, 1>(c, q0 + static_cast<uint64_t>(r) * row_blocks, row_blocks, a + r, lda, y, ldy);
  }
}

// y[m·ldy + r] = Σ_k a[m·lda + k] · W_r[k]: each row's decoded vectors meet A's in M·4 accumulators, summed across
// lanes at the row's end.
template <>
template <int BITS, int M>
void TcqFamily<Neon>::dot(const TcqRows& rows, const uint8_t* blob, size_t len, uint64_t q0, uint64_t row_blocks,
                          int64_t nrows, const float* a, int64_t lda, float* y, int64_t ldy) {
  const Ctx c = make_ctx<BITS>(rows, blob, len);
  for (int64_t r = 0; r < nrows; ++r) {
    float32x4_t acc[M][4];
    for (int m = 0; m < M; ++m) {
      for (int j = 0; j < 4; ++j) acc[m][j] = vdupq_n_f32(0.0f);
    }
    const uint64_t first = q0 + static_cast<uint64_t>(r) * row_blocks;
    const float* ak = a;
    for (uint64_t q = first; q < first + row_blocks; ++q) {
      const uint32_t h = block_header(c.headers, q);
      uint32_t carry = 0;
      for (uint64_t j = 0; j < c.per_block; ++j, ak += 32) {
        float32x4_t w[8];
        carry = chunk<BITS>(c, q * c.per_block + j, h, carry, w);
        for (int m = 0; m < M; ++m) {
          for (int v = 0; v < 8; ++v) {
            acc[m][v % 4] = vfmaq_f32(acc[m][v % 4], vld1q_f32(ak + m * lda + 4 * v), w[v]);
          }
        }
      }
    }
    for (int m = 0; m < M; ++m) {
      y[m * ldy + r] = vaddvq_f32(vaddq_f32(vaddq_f32(acc[m][0], acc[m][1]), vaddq_f32(acc[m][2], acc[m][3])));
    }
  }
}

bool tcq_neon_available() {
  const char* force = std::getenv("HYPERONNX_FUSED_ISA");
  return force == nullptr || std::strcmp(force, "scalar") != 0;
}

TcqKernels tcq_neon_kernels(int bits) {
  return tcq_neon_available() ? tcq_kernels<Neon, 1, 7>(bits) : TcqKernels{};
}

#else

bool tcq_neon_available() { return false; }
TcqKernels tcq_neon_kernels(int) { return {}; }

#endif

}  // namespace hyperonnx
