// The `grid` codec (docs/format.md, "grid" and "rANS streams"; numpy: hyperonnx/codec/grid.py, decode_grid, and
// hyperonnx/codec/rans.py, decode).
//
// Exact storage of a tensor already on a per-block float16 grid: stream element i of a segment is
// f32(f32(D_b · float(sym_i − 128)) + M_b), b = i div B, with D_b, M_b the blocks' float16 step and offset
// converted exactly to float32. Twenty frequency tables (d_lo, d_hi, m_lo, m_hi, then one q model per context
// 0..15), then one interleaved-rANS stream per segment of 2^17·B stream elements (rans.h), each with phases: the nb
// low and high bytes of the steps, then of the offsets, then the level symbols, block b's with q model c_b =
// clamp(floor(f32(f32(−M_b / D_b) + 0.5)), 0, 15) (0 when not a number). The blob length is only known by parsing it
// (variable_length()); the units are the segments, each decoded on its own (its offset found by walking the
// stream headers before it, O(segments)), so threads decode segments in parallel.
//
// Stream order: i_transpose = 0 is the tensor's row-major order; i_transpose = 1 is the tensor seen as [R, C]
// (R = shape[0], C = numel / R) transposed: stream element j is output element (j mod R)·C + (j div R). A segment
// then writes a set of whole and partial columns (scattered, disjoint from every other segment's elements). When
// R <= 2^15 a segment is decoded a tile at a time (its elements in floor(2^16 / R) consecutive columns, cast, into a
// buffer in stream order) and each tile is written row by row, contiguous stores per row (write_tile); a taller
// tensor scatters each chunk of 2048 elements (scatter).
//
// Untrusted blobs: every read is bounds-checked against the blob length before it happens (rans.h); a block whose
// step or offset is not finite (float16 exponent all ones) is rejected, and nothing may follow the last stream.
// Memory does not depend on the blob: twenty 4096-entry slot tables, at most 4096 states and 2^17 blocks' steps and
// offsets per call, and for a transposed tensor one tile buffer of at most 2^16 elements of the output dtype.
//
// Arithmetic: each value is one IEEE binary32 product of two exact operands, then one binary32 sum, written as two
// statements (the build uses -ffp-contract=off: no FMA), then the shared cast to the output dtype (dtype.h),
// exactly as numpy's float32 multiply, add and astype. Every value is finite (|D·q| <= 65504·128), so the float16
// cast may use F16C.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>

#include "../codec.h"
#include "blockvq.h"
#include "rans.h"
#include "segmented.h"

namespace hyperonnx {
namespace {

using rans::Model;

constexpr int64_t kMaxBlock = 4096;
constexpr int32_t kZero = 128;   // symbol of level 0
constexpr size_t kChunk = 2048;  // level symbols decoded, then reconstructed and cast, per step (stays in L1)
constexpr uint64_t kTileElems = uint64_t{1} << 16;  // transposed: stream elements per tile (at most 512 KiB cast)
constexpr int kSideModels = 4;   // d_lo, d_hi, m_lo, m_hi
constexpr int kContexts = 16;    // q models, one per context (the level where a block's zero lies)
constexpr int kModels = kSideModels + kContexts;
const char* const kModelNames[kModels] = {"d_lo", "d_hi", "m_lo", "m_hi", "q0",  "q1",  "q2",  "q3",  "q4",  "q5",
                                          "q6",   "q7",   "q8",   "q9",   "q10", "q11", "q12", "q13", "q14", "q15"};

// Block b's q model: floor(f32(f32(-M / D) + 0.5)) clamped to 0..15; 0 when not a number (D = 0). IEEE float32
// division and sum, as numpy's (hyperonnx/codec/grid.py, contexts).
inline uint8_t level_context(float d, float m) {
  const float t = -m / d + 0.5f;
  if (!(t >= 1.0f)) return 0;
  if (!(t < static_cast<float>(kContexts))) return kContexts - 1;
  return static_cast<uint8_t>(std::floor(t));
}

bool fail(std::string* error, const std::string& message) {
  *error = "grid codec: " + message;
  return false;
}

struct Params {
  rans::Segments seg;  // four side symbols per block (the low and high bytes of its step and offset)
  uint64_t rows = 1, cols = 1;  // the [R, C] view of a transposed tensor
  bool transpose = false;       // i_transpose = 1 and the order differs (R > 1 and C > 1)
  uint64_t tile_cols = 0;       // transposed with R <= kTileElems / 2: columns per tile (>= 2), else 0 (scatter)
  DType dtype = DType::kFloat;
  bool f16c = false;  // float16 output cast with F16C (the CPU has it; values are never NaN)
};

// Copies n elements of `esize` bytes from src (stream order, starting at stream element j) to their places in
// out: stream element j is output element (j mod R)·C + (j div R).
template <size_t ESIZE>
void scatter(const uint8_t* src, size_t n, uint64_t j, uint64_t rows, uint64_t cols, uint8_t* out) {
  uint64_t r = j % rows, c = j / rows;
  for (size_t t = 0; t < n; ++t) {
    std::memcpy(out + static_cast<size_t>(r * cols + c) * ESIZE, src + t * ESIZE, ESIZE);
    if (++r == rows) {
      r = 0;
      ++c;
    }
  }
}

// Writes a tile of stream elements [js, je) (cast, in stream order at tile) that lies in columns [ca, cb) of the
// [R, C] view, ca = js div R, cb - 1 = (je - 1) div R, row by row: row r's elements of the tile are consecutive
// output elements (r·C + ca + k), so the stores are contiguous per row (a cache-friendly transpose).
template <size_t ESIZE>
void write_tile(const uint8_t* tile, uint64_t js, uint64_t je, uint64_t rows, uint64_t cols, uint8_t* out) {
  const uint64_t ca = js / rows, cb = (je - 1) / rows + 1;
  const size_t ncols = static_cast<size_t>(cb - ca);
  const uint64_t head = js - ca * rows;             // rows of column ca before the tile: [0, R)
  const uint64_t tail = je - (cb - 1) * rows;       // rows of column cb - 1 inside the tile: (0, R]
  for (uint64_t r = 0; r < rows; ++r) {
    const size_t k0 = r < head ? 1 : 0;
    const size_t k1 = ncols - (r >= tail ? 1 : 0);
    uint8_t* orow = out + static_cast<size_t>(r * cols + ca) * ESIZE;
    const uint8_t* src = tile + static_cast<size_t>(k0 * rows + r - head) * ESIZE;  // column k0's element of row r
    const size_t stride = static_cast<size_t>(rows) * ESIZE;
    for (size_t k = k0; k < k1; ++k, src += stride) std::memcpy(orow + k * ESIZE, src, ESIZE);
  }
}

class GridDecoder final : public rans::SegmentedDecoder<GridDecoder> {
 public:
  explicit GridDecoder(const Params& p) : SegmentedDecoder(p.seg, kModels, "twenty"), p_(p) {}

 private:
  friend class rans::SegmentedDecoder<GridDecoder>;

  // Per-call scratch, off the stack: the models, the coder, a segment's side bytes and its steps and offsets.
  struct Scratch {
    Model models[kModels];
    rans::Stream coder;
  };

  // Units [u0, u1): parse the tables, then decode (WRITE) or just check each segment's stream (rans.h).
  template <bool WRITE>
  bool run(const uint8_t* blob, size_t len, uint64_t u0, uint64_t u1, uint8_t* out, std::string* error) const {
    auto scratch = std::make_unique<Scratch>();  // 320 KiB
    size_t pos = 0;
    std::string e;
    for (int k = 0; k < kModels; ++k) {
      if (!rans::parse_model(blob, len, &pos, kModelNames[k], &scratch->models[k], &e)) return fail(error, e);
    }
    const uint64_t nb = p_.seg.count ? std::min(rans::Segments::kBlocks, p_.seg.blocks(u0)) : 0;
    const size_t nb_max = static_cast<size_t>(nb);
    std::unique_ptr<uint8_t[]> side(new uint8_t[5 * nb_max + 1]);  // 4 side bytes and the context per block
    std::unique_ptr<float[]> dm(new float[2 * nb_max + 1]);
    std::unique_ptr<uint8_t[]> tile;  // transposed output: one tile of cast values, stream order
    if (WRITE && p_.tile_cols != 0 && u0 < u1) {
      tile.reset(new uint8_t[static_cast<size_t>(p_.tile_cols * p_.rows) * dtype_size(p_.dtype)]);
    }
    auto segment = [&](uint64_t g, rans::Stream&, std::string* message) {
      return stream<WRITE>(g, *scratch, side.get(), dm.get(), tile.get(), out, message);
    };
    if (!rans::for_segments(p_.seg, blob, len, pos, u0, u1, &scratch->coder, segment, &e)) return fail(error, e);
    return true;
  }

  // Decodes segment g from its open stream s.coder; side: 5·nb bytes, dm: 2·nb floats. On failure sets *error (no
  // prefix) and returns false.
  template <bool WRITE>
  bool stream(uint64_t g, Scratch& s, uint8_t* side, float* dm, uint8_t* tile, uint8_t* out,
              std::string* error) const {
    const uint64_t nb = p_.seg.blocks(g), nq = p_.seg.len(g);
    rans::Stream& c = s.coder;
    for (int k = 0; k < 4; ++k) {
      if (!c.decode(s.models[k], nb, side + k * nb, error)) return false;
    }
    float* d = dm;
    float* m = dm + nb;
    for (uint64_t b = 0; b < nb; ++b) {
      const uint32_t hd = side[b] | static_cast<uint32_t>(side[nb + b]) << 8;
      const uint32_t hm = side[2 * nb + b] | static_cast<uint32_t>(side[3 * nb + b]) << 8;
      if ((hd & 0x7c00u) == 0x7c00u || (hm & 0x7c00u) == 0x7c00u) {
        *error = "block " + std::to_string(b) + ": step or offset is not finite";
        return false;
      }
      d[b] = half_to_float(hd);
      m[b] = half_to_float(hm);
      side[4 * nb + b] = level_context(d[b], m[b]);
    }
    const uint8_t* ctx = side + 4 * nb;
    const size_t esize = dtype_size(p_.dtype);
    const uint64_t first = g * p_.seg.elems;
    uint8_t syms[kChunk];
    float values[kChunk];
    alignas(16) uint8_t cast[kChunk * 8];
    const bool tiled = WRITE && p_.tile_cols != 0;
    for (uint64_t t0 = 0; t0 < nq;) {
      // A tile: the segment's stream elements in p_.tile_cols consecutive columns (or the whole segment).
      const uint64_t t1 =
          tiled ? std::min(nq, ((first + t0) / p_.rows + p_.tile_cols) * p_.rows - first) : nq;
      if (!tile_chunks<WRITE>(s, t0, t1, first, d, m, ctx, syms, values, cast, tile, out, error)) return false;
      if (tiled) {
        switch (esize) {
          case 2: write_tile<2>(tile, first + t0, first + t1, p_.rows, p_.cols, out); break;
          case 4: write_tile<4>(tile, first + t0, first + t1, p_.rows, p_.cols, out); break;
          default: write_tile<8>(tile, first + t0, first + t1, p_.rows, p_.cols, out); break;
        }
      }
      t0 = t1;
    }
    return true;
  }

  // Decodes the segment's stream elements [t0, t1), kChunk at a time, and (WRITE) writes them: into the tile (in
  // stream order from t0) when tiled, else to their places in out. On failure sets *error (no prefix).
  template <bool WRITE>
  bool tile_chunks(Scratch& s, uint64_t t0, uint64_t t1, uint64_t first, const float* d, const float* m,
                   const uint8_t* ctx, uint8_t* syms, float* values, uint8_t* cast, uint8_t* tile, uint8_t* out,
                   std::string* error) const {
    rans::Stream& c = s.coder;
    const size_t esize = dtype_size(p_.dtype);
    const bool tiled = WRITE && p_.tile_cols != 0;
    for (uint64_t i = t0; i < t1; i += kChunk) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, t1 - i));
      const uint64_t block = p_.seg.block;
      for (size_t t = 0; t < n;) {  // each block's levels with its context's model
        const uint64_t at = i + t, run = std::min<uint64_t>(n - t, block - at % block);
        if (!c.decode(s.models[kSideModels + ctx[at / block]], run, syms + t, error)) return false;
        t += static_cast<size_t>(run);
      }
      if (!WRITE) continue;
      uint64_t b = i / block, left = block - i % block;
      float db = d[b], mb = m[b];
      for (size_t t = 0; t < n; ++t) {
        if (left == 0) {
          ++b;
          db = d[b];
          mb = m[b];
          left = block;
        }
        --left;
        const float prod = db * static_cast<float>(static_cast<int32_t>(syms[t]) - kZero);  // rounded product
        values[t] = prod + mb;                                                             // rounded sum
      }
      uint8_t* dst = tiled           ? tile + static_cast<size_t>(i - t0) * esize
                     : p_.transpose ? cast
                                    : out + static_cast<size_t>(first + i) * esize;
      if (p_.f16c) {
        to_half_f16c(values, n, dst);
      } else {
        cast_floats(values, n, p_.dtype, dst);
      }
      if (p_.transpose && !tiled) {
        switch (esize) {
          case 2: scatter<2>(cast, n, first + i, p_.rows, p_.cols, out); break;
          case 4: scatter<4>(cast, n, first + i, p_.rows, p_.cols, out); break;
          default: scatter<8>(cast, n, first + i, p_.rows, p_.cols, out); break;
        }
      }
    }
    return true;
  }

  Params p_;
};

std::unique_ptr<BlockDecoder> create(const SideInfo& side, const NodeLayout& layout, std::string* error) {
  auto need = [&](bool ok, const std::string& what) {
    if (!ok) *error = "grid codec: " + what;
    return ok;
  };
  const auto& block_v = side.ints.at("block");
  const auto& transpose_v = side.ints.at("transpose");
  if (!need(block_v.size() == 1, "i_block must hold one integer") ||
      !need(transpose_v.size() == 1, "i_transpose must hold one integer")) {
    return nullptr;
  }
  const int64_t block = block_v[0], transpose = transpose_v[0];
  if (!need(block >= 1 && block <= kMaxBlock, "i_block must be in 1..4096, got " + std::to_string(block)) ||
      !need(transpose == 0 || transpose == 1, "i_transpose must be 0 or 1, got " + std::to_string(transpose)) ||
      !need(layout.group == 1, "group must be 1, got " + std::to_string(layout.group)) ||
      !need(layout.bits == 8, "bits must be 8, got " + std::to_string(layout.bits))) {
    return nullptr;
  }
  Params p;
  p.seg = rans::Segments(layout.numel, static_cast<uint64_t>(block), 4);
  p.dtype = layout.dtype;
  // R = shape[0] (1 for a scalar or an empty tensor, as the reference), C = numel / R.
  p.rows = !layout.shape.empty() && layout.shape[0] > 0 ? static_cast<uint64_t>(layout.shape[0]) : 1;
  p.cols = layout.numel / p.rows;
  p.transpose = transpose == 1 && p.rows > 1 && p.cols > 1;
  p.tile_cols = p.transpose && p.rows <= kTileElems / 2 ? kTileElems / p.rows : 0;
  p.f16c = p.dtype == DType::kFloat16 && host_has_f16c();
  return std::make_unique<GridDecoder>(p);
}

}  // namespace

const CodecSpec kGridCodec = {"grid", {"block", "transpose"}, {}, nullptr, &create};

}  // namespace hyperonnx
