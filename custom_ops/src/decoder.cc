#include "decoder.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <mutex>
#include <utility>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "parallel.h"
#include "unpack.h"

namespace hyperonnx {
namespace {

// Bounds that keep every size computation below far from overflow (count * bits, numel * 8, ...).
constexpr uint64_t kMaxElements = uint64_t{1} << 56;
constexpr int64_t kMaxGroup = int64_t{1} << 24;
// Codes per step: the code buffer (2 KiB) and the staged rows (<= 16 KiB) stay in L1 between unpack, check,
// gather and the streaming copy. A multiple of 16, so every chunk's output starts 16-byte aligned (for any row
// size) when the tensor does.
constexpr size_t kChunkCodes = 512;
// Rows up to this size are staged for streaming stores; wider rows (rare: group > 8) are copied directly.
constexpr size_t kMaxStagedRow = 32;
// Outputs at least this large are written with non-temporal stores: streaming skips reading every output line
// before overwriting it (half the memory traffic of plain stores; 2.6x faster on a 64 MiB output). Smaller ones
// (a quarter of a common 32 MiB L3) use plain stores, so the weight is still cached when its consumer (MatMul,
// in call mode right after the decode) reads it.
constexpr size_t kStreamMinBytes = size_t{8} << 20;
#if defined(__SSE2__)
constexpr bool kCanStream = true;
#else
constexpr bool kCanStream = false;  // no portable streaming store: plain stores, no staging
#endif

bool fail(std::string* error, const std::string& message) {
  *error = message;
  return false;
}

template <size_t RB>
void gather_rows(const uint8_t* table, const uint32_t* codes, size_t n, uint8_t* out) {
#pragma GCC unroll 4
  for (size_t i = 0; i < n; ++i) std::memcpy(out + i * RB, table + static_cast<size_t>(codes[i]) * RB, RB);
}

void gather_rows_any(const uint8_t* table, size_t rb, const uint32_t* codes, size_t n, uint8_t* out) {
  switch (rb) {
    case 2: return gather_rows<2>(table, codes, n, out);
    case 4: return gather_rows<4>(table, codes, n, out);
    case 6: return gather_rows<6>(table, codes, n, out);
    case 8: return gather_rows<8>(table, codes, n, out);
    case 12: return gather_rows<12>(table, codes, n, out);
    case 16: return gather_rows<16>(table, codes, n, out);
    case 24: return gather_rows<24>(table, codes, n, out);
    case 32: return gather_rows<32>(table, codes, n, out);
    default:
      for (size_t i = 0; i < n; ++i) std::memcpy(out + i * rb, table + static_cast<size_t>(codes[i]) * rb, rb);
  }
}

// Copies the 8 rows of codes c to out: plain stores, or (STREAM) non-temporal 16-byte stores assembled in
// registers, which skips staging the rows in L1 for the rows sizes that pack into whole 16-byte stores.
template <size_t RB, bool STREAM>
inline void store_rows(const uint8_t* table, const uint32_t* c, uint8_t* out) {
#if defined(__SSE2__)
  if constexpr (STREAM && RB == 4) {
    for (int t = 0; t < 8; t += 4) {
      auto row = [&](int i) {
        int32_t v;
        std::memcpy(&v, table + size_t{c[t + i]} * 4, 4);
        return _mm_cvtsi32_si128(v);
      };
      const __m128i lo = _mm_unpacklo_epi32(row(0), row(1)), hi = _mm_unpacklo_epi32(row(2), row(3));
      _mm_stream_si128(reinterpret_cast<__m128i*>(out + t * 4), _mm_unpacklo_epi64(lo, hi));
    }
    return;
  } else if constexpr (STREAM && RB == 8) {
    for (int t = 0; t < 8; t += 2) {
      const __m128d lo = _mm_load_sd(reinterpret_cast<const double*>(table + size_t{c[t]} * 8));
      const __m128d v = _mm_loadh_pd(lo, reinterpret_cast<const double*>(table + size_t{c[t + 1]} * 8));
      _mm_stream_si128(reinterpret_cast<__m128i*>(out + t * 8), _mm_castpd_si128(v));
    }
    return;
  } else if constexpr (STREAM && RB == 16) {
    for (int t = 0; t < 8; ++t) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(table + size_t{c[t]} * 16));
      _mm_stream_si128(reinterpret_cast<__m128i*>(out + t * 16), v);
    }
    return;
  }
#endif
  static_assert(!STREAM || RB == 4 || RB == 8 || RB == 16, "streaming needs rows that tile 16-byte stores");
#pragma GCC unroll 8
  for (int t = 0; t < 8; ++t) std::memcpy(out + t * RB, table + size_t{c[t]} * RB, RB);
}

// Unpack, range check and gather fused for whole 8-code blocks: the codes never leave registers, and with BITS
// and RB compile-time constants every shift, mask and row copy is a fixed instruction sequence. Writes the rows
// of blocks [0, returned) to out (16-byte aligned when STREAM); stops before a block holding a code > last,
// without reading the table for it (the caller's checked path then finds and reports that code).
template <int BITS, size_t RB, bool STREAM>
size_t gather_blocks(const uint8_t* block, size_t nblocks, const uint8_t* table, uint32_t last, uint8_t* out) {
  for (size_t b = 0; b < nblocks; ++b, block += BITS, out += 8 * RB) {
    uint32_t c[8];
    uint64_t over = 0;  // bit 63 is set iff some code exceeds last (no borrow otherwise): no per-code branch
#pragma GCC unroll 8
    for (int t = 0; t < 8; ++t) {
      c[t] = block_code<BITS>(block, t);
      over |= uint64_t{last} - c[t];
    }
    if (over >> 63) return b;
    store_rows<RB, STREAM>(table, c, out);
  }
  return nblocks;
}

using BlocksFn = size_t (*)(const uint8_t*, size_t, const uint8_t*, uint32_t, uint8_t*);

template <size_t RB, bool STREAM, int... B>
std::array<BlocksFn, 33> blocks_table(std::integer_sequence<int, B...>) {
  return {nullptr, &gather_blocks<B + 1, RB, STREAM>...};  // indexed by bits, 1..32
}

// The fused kernel for rows of rb bytes and bits-bit codes, or null for row sizes without one. The row sizes
// are the common ones: group 1, 2, 3, 4 of float32, group 2 and 4 of float16 / bfloat16, group 1 and 2 of double.
BlocksFn fused_kernel(size_t rb, int bits) {
  using Seq = std::make_integer_sequence<int, 32>;
  static const auto k4 = blocks_table<4, false>(Seq{}), k8 = blocks_table<8, false>(Seq{}),
                    k12 = blocks_table<12, false>(Seq{}), k16 = blocks_table<16, false>(Seq{});
  switch (rb) {
    case 4: return k4[bits];
    case 8: return k8[bits];
    case 12: return k12[bits];
    case 16: return k16[bits];
    default: return nullptr;
  }
}

// The fused kernel that streams its rows straight to memory, or null (rows of other sizes are staged in L1 and
// streamed by stream_copy).
BlocksFn streaming_kernel(size_t rb, int bits) {
#if defined(__SSE2__)
  using Seq = std::make_integer_sequence<int, 32>;
  static const auto k4 = blocks_table<4, true>(Seq{}), k8 = blocks_table<8, true>(Seq{}),
                    k16 = blocks_table<16, true>(Seq{});
  switch (rb) {
    case 4: return k4[bits];
    case 8: return k8[bits];
    case 16: return k16[bits];
    default: return nullptr;
  }
#else
  (void)rb, (void)bits;
  return nullptr;
#endif
}

// Copies `bytes` from src (16-byte aligned, in L1) to dst (16-byte aligned) bypassing the caches.
void stream_copy(uint8_t* dst, const uint8_t* src, size_t bytes) {
#if defined(__SSE2__)
  size_t i = 0;
  for (; i + 64 <= bytes; i += 64) {
    const __m128i a = _mm_load_si128(reinterpret_cast<const __m128i*>(src + i));
    const __m128i b = _mm_load_si128(reinterpret_cast<const __m128i*>(src + i + 16));
    const __m128i c = _mm_load_si128(reinterpret_cast<const __m128i*>(src + i + 32));
    const __m128i d = _mm_load_si128(reinterpret_cast<const __m128i*>(src + i + 48));
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i), a);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i + 16), b);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i + 32), c);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i + 48), d);
  }
  for (; i + 16 <= bytes; i += 16) {
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i), _mm_load_si128(reinterpret_cast<const __m128i*>(src + i)));
  }
  std::memcpy(dst + i, src + i, bytes - i);
#else
  std::memcpy(dst, src, bytes);
#endif
}

// Orders this thread's streaming stores before whatever follows (the join that publishes the output).
void stream_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

}  // namespace

bool parse_mode(const std::string& text, Mode* out) {
  if (text == "load") {
    *out = Mode::kLoad;
  } else if (text == "call") {
    *out = Mode::kCall;
  } else {
    return false;
  }
  return true;
}

const char* mode_name(Mode m) { return m == Mode::kLoad ? "load" : "call"; }

std::unique_ptr<Decoder> Decoder::create(const AttrSource& attrs, std::string* error) {
  std::unique_ptr<Decoder> d(new Decoder());
  auto bad = [&](const std::string& message) {
    *error = message;
    return nullptr;
  };

  std::string codec_name;
  if (!attrs.get_string("codec", &codec_name)) return bad("missing string attribute 'codec'");
  const CodecSpec* codec = find_codec(codec_name);
  if (!codec) return bad("unknown codec '" + codec_name + "' (this library knows: " + known_codecs() + ")");

  int64_t format = 0, dtype = 0, group = 0, bits = 0;
  if (!attrs.get_int("format", &format)) return bad("missing int attribute 'format'");
  if (format < 1 || format > kFormatVersion) {
    return bad("format version " + std::to_string(format) + " is not supported (this library reads versions 1.." +
               std::to_string(kFormatVersion) + "; upgrade hyperonnx)");
  }
  if (format > codec->max_format) {
    return bad("codec " + codec_name + ": format version " + std::to_string(format) + " is not defined (it has " +
               "versions 1.." + std::to_string(codec->max_format) + ")");
  }
  if (!attrs.get_int("dtype", &dtype)) return bad("missing int attribute 'dtype'");
  if (!dtype_from_onnx(dtype, &d->dtype_)) {
    return bad("dtype " + std::to_string(dtype) + " is not supported (FLOAT 1, FLOAT16 10, DOUBLE 11, BFLOAT16 16)");
  }
  if (!attrs.get_int("group", &group)) return bad("missing int attribute 'group'");
  if (group < 1 || group > kMaxGroup) return bad("group must be in 1.." + std::to_string(kMaxGroup) + ", got " + std::to_string(group));
  if (!attrs.get_int("bits", &bits)) return bad("missing int attribute 'bits'");
  if (bits < 1 || bits > 32) return bad("bits must be in 1..32, got " + std::to_string(bits));
  if (!attrs.get_ints("shape", &d->shape_)) return bad("missing ints attribute 'shape'");
  uint64_t numel = 1;
  for (int64_t dim : d->shape_) {
    if (dim < 0) return bad("shape has a negative dimension " + std::to_string(dim));
    if (dim != 0 && numel > kMaxElements / static_cast<uint64_t>(dim)) return bad("shape has too many elements");
    numel *= static_cast<uint64_t>(dim);
  }
  std::string mode = "load";
  attrs.get_string("mode", &mode);  // optional; the format's default is load
  if (!parse_mode(mode, &d->mode_)) return bad("mode must be 'load' or 'call', got '" + mode + "'");

  d->group_ = group;
  d->bits_ = static_cast<int>(bits);
  d->numel_ = numel;
  d->count_ = (numel + static_cast<uint64_t>(group) - 1) / static_cast<uint64_t>(group);
  d->blob_bytes_ = static_cast<size_t>((d->count_ * static_cast<uint64_t>(bits) + 7) / 8);
  d->row_bytes_ = static_cast<size_t>(group) * dtype_size(d->dtype_);

  SideInfo side;
  for (const auto& key : codec->int_keys) {
    if (!attrs.get_ints("i_" + key, &side.ints[key])) return bad("codec " + codec_name + ": missing ints attribute 'i_" + key + "'");
  }
  for (const auto& key : codec->float_keys) {
    if (!attrs.get_floats("f_" + key, &side.floats[key])) {
      return bad("codec " + codec_name + ": missing floats attribute 'f_" + key + "'");
    }
  }
  if (codec->create_blocked) {  // the codec decodes its blocks itself: no table
    NodeLayout layout;
    layout.numel = numel;
    layout.count = d->count_;
    layout.group = group;
    layout.bits = d->bits_;
    layout.dtype = d->dtype_;
    layout.shape = d->shape_;
    layout.format = format;
    d->blocked_ = codec->create_blocked(side, layout, error);
    if (!d->blocked_) return nullptr;
    d->blob_bytes_ = static_cast<size_t>(d->blocked_->blob_bytes());
    d->entries_ = bits == 32 ? (uint64_t{1} << 32) : (uint64_t{1} << bits);  // every code is a valid one
    d->table_rows_ = 0;
    d->use_table_ = false;
    return d;
  }
  d->gen_ = codec->create(side, group, error);
  if (!d->gen_) return nullptr;
  d->entries_ = d->gen_->entries();
  if (d->entries_ == 0) return bad("codec " + codec_name + ": empty table");

  // Codes are < 2^bits, so no row past that can be used; a table larger than the output is not worth building.
  const uint64_t reachable = bits == 32 ? (uint64_t{1} << 32) : (uint64_t{1} << bits);
  d->table_rows_ = std::min(d->entries_, reachable);
  const uint64_t g = static_cast<uint64_t>(group);
  // A table larger than the output is not worth building, and an untrusted node must not make us allocate
  // gigabytes before its blob is even seen (a 1 KB model can claim 2^32 entries): cap it at 64 Mi values.
  d->use_table_ = (d->table_rows_ <= d->count_ || d->table_rows_ * g <= (uint64_t{1} << 20)) &&
                  d->table_rows_ * g <= (uint64_t{1} << 26);
  if (d->use_table_) {
    std::vector<float> rows(static_cast<size_t>(d->table_rows_ * g));
    d->gen_->rows(0, d->table_rows_, rows.data());
    d->table_.resize(rows.size() * dtype_size(d->dtype_));
    cast_floats(rows.data(), rows.size(), d->dtype_, d->table_.data());
  }
  return d;
}

bool Decoder::check_length(size_t len, std::string* error) const {
  const bool variable = blocked_ && blocked_->variable_length();
  if (variable ? len >= blob_bytes_ : len == blob_bytes_) return true;
  const std::string layout =
      blocked_ ? blocked_->blob_layout() : std::to_string(count_) + " codes of " + std::to_string(bits_) + " bits";
  return fail(error, "blob holds " + std::to_string(len) + " bytes, expected " + (variable ? "at least " : "") +
                         std::to_string(blob_bytes_) + " (" + layout + ")");
}

bool Decoder::check_codes(const uint32_t* codes, size_t n, uint64_t first, uint32_t* bad_code,
                          uint64_t* bad_index) const {
  uint32_t top = 0;
  for (size_t i = 0; i < n; ++i) top = std::max(top, codes[i]);  // branch-free; vectorizes
  if (top < entries_) return true;
  for (size_t i = 0; i < n; ++i) {
    if (codes[i] >= entries_) {
      *bad_code = codes[i];
      *bad_index = first + i;
      break;
    }
  }
  return false;
}

bool Decoder::scan_range(const uint8_t* blob, size_t len, uint64_t c0, uint64_t c1, uint32_t* bad_code,
                         uint64_t* bad_index) const {
  uint32_t codes[kChunkCodes];
  for (uint64_t c = c0; c < c1; c += kChunkCodes) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunkCodes, c1 - c));
    unpack_codes(blob, len, bits_, c, n, codes);
    if (!check_codes(codes, n, c, bad_code, bad_index)) return false;
  }
  return true;
}

// c0 is a multiple of 16 (decode splits at multiples of 64): chunks then start on whole 8-code blocks of the
// blob and, for streaming, on 16-byte aligned output.
bool Decoder::decode_range(const uint8_t* blob, size_t len, uint64_t c0, uint64_t c1, uint8_t* out,
                           uint32_t* bad_code, uint64_t* bad_index) const {
  const size_t esize = dtype_size(dtype_);
  const size_t tail_elems = static_cast<size_t>(numel_ - (count_ - 1) * static_cast<uint64_t>(group_));
  uint32_t codes[kChunkCodes];
  if (!use_table_) {
    std::vector<float> gen_row(static_cast<size_t>(group_));
    std::vector<uint8_t> cast_row(row_bytes_);
    for (uint64_t c = c0; c < c1; c += kChunkCodes) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunkCodes, c1 - c));
      unpack_codes(blob, len, bits_, c, n, codes);
      if (!check_codes(codes, n, c, bad_code, bad_index)) return false;
      uint8_t* dst = out + static_cast<size_t>(c) * row_bytes_;
      for (size_t i = 0; i < n; ++i) {
        gen_->rows(codes[i], 1, gen_row.data());
        cast_floats(gen_row.data(), gen_row.size(), dtype_, cast_row.data());
        // The last code of the tensor may cover fewer than `group` elements (the encoder's pad is dropped).
        const bool partial = c + i + 1 == count_;
        std::memcpy(dst + i * row_bytes_, cast_row.data(), partial ? tail_elems * esize : row_bytes_);
      }
    }
    return true;
  }
  const uint8_t* table = table_.data();
  const size_t rb = row_bytes_;
  const uint32_t last = static_cast<uint32_t>(std::min<uint64_t>(entries_, uint64_t{1} << 32) - 1);
  // Streaming needs 16-byte aligned chunk outputs: chunks start at multiples of 16 codes, so an aligned tensor
  // is enough (ORT's and numpy's allocations are).
  const bool stream = kCanStream && out_bytes() >= kStreamMinBytes && rb <= kMaxStagedRow &&
                      reinterpret_cast<uintptr_t>(out) % 16 == 0 && c0 % 16 == 0;
  const BlocksFn direct = stream ? streaming_kernel(rb, bits_) : nullptr;  // writes the output itself
  const BlocksFn fused = direct ? nullptr : fused_kernel(rb, bits_);     // writes `rows` (staged when streaming)
  alignas(64) uint8_t stage[kChunkCodes * kMaxStagedRow];
  bool ok = true;
  for (uint64_t c = c0; c < c1; c += kChunkCodes) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunkCodes, c1 - c));
    uint8_t* dst = out + static_cast<size_t>(c) * rb;
    // The last code of the tensor may cover fewer than `group` elements (the encoder's pad is dropped).
    const bool has_tail = c + n == count_;
    const size_t full = has_tail ? n - 1 : n;
    const size_t bytes = full * rb + (has_tail ? tail_elems * esize : 0);
    const uint8_t* src = blob + c / 8 * static_cast<uint64_t>(bits_);
    size_t done = 0;    // codes [0, done) of the chunk are written
    size_t staged = 0;  // when streaming, rows from code `staged` on go through stage
    if (direct) {
      done = staged = 8 * direct(src, fast_blocks(len, bits_, c, full), table, last, dst);
    } else if (fused) {
      done = 8 * fused(src, fast_blocks(len, bits_, c, full), table, last, stream ? stage : dst);
    }
    uint8_t* rows = stream ? stage : dst;  // row i >= staged of the chunk goes to rows + (i - staged) * rb
    if (done < n) {  // the rest (and any bad code) through the checked path
      unpack_codes(blob, len, bits_, c + done, n - done, codes);
      if (!check_codes(codes, n - done, c + done, bad_code, bad_index)) {  // before any table read
        ok = false;
        break;
      }
      gather_rows_any(table, rb, codes, full - done, rows + (done - staged) * rb);
      if (has_tail) std::memcpy(rows + (full - staged) * rb, table + codes[full - done] * rb, tail_elems * esize);
    }
    if (stream && staged * rb < bytes) stream_copy(dst + staged * rb, stage, bytes - staged * rb);
  }
  if (stream) stream_fence();
  return ok;
}

namespace {

// Collects the first failure (lowest code index) reported by any worker.
struct FirstBadCode {
  std::mutex mu;
  bool failed = false;
  uint32_t code = 0;
  uint64_t index = 0;
  void report(uint32_t c, uint64_t i) {
    std::lock_guard<std::mutex> lock(mu);
    if (!failed || i < index) {
      failed = true;
      code = c;
      index = i;
    }
  }
};

}  // namespace

bool Decoder::validate(const uint8_t* blob, size_t len, std::string* error) const {
  if (!check_length(len, error)) return false;
  if (blocked_) return blocked_->validate(blob, len, error);
  uint32_t code = 0;
  uint64_t index = 0;
  if (scan_range(blob, len, 0, count_, &code, &index)) return true;
  return fail(error, "code " + std::to_string(code) + " at position " + std::to_string(index) +
                         " is out of range: the table has " + std::to_string(entries_) + " entries");
}

// Blocked codecs: the codec decodes ranges of its blocks; the first failing block's error wins.
bool Decoder::decode_blocked(const uint8_t* blob, size_t len, void* out, int threads, std::string* error) const {
  const bool stream = kCanStream && out_bytes() >= kStreamMinBytes && reinterpret_cast<uintptr_t>(out) % 16 == 0;
  std::mutex mu;
  uint64_t first_bad = ~uint64_t{0};
  const uint64_t align = std::max<uint64_t>(1, blocked_->unit_align());
  parallel_ranges(blocked_->units(), align, numel_ >= kParallelMinElements ? threads : 1, [&](uint64_t u0, uint64_t u1) {
    std::string e;
    if (blocked_->decode(blob, len, u0, u1, out, stream, &e)) return;
    std::lock_guard<std::mutex> lock(mu);
    if (u0 < first_bad) {
      first_bad = u0;
      *error = e;
    }
  });
  return first_bad == ~uint64_t{0};
}

bool Decoder::decode(const uint8_t* blob, size_t len, void* out, int threads, std::string* error) const {
  if (!check_length(len, error)) return false;
  // An empty tensor: nothing to decode, but a variable-length blob still has to be well formed.
  if (numel_ == 0) return blocked_ && blocked_->variable_length() ? blocked_->validate(blob, len, error) : true;
  if (blocked_) return decode_blocked(blob, len, out, threads, error);
  auto* dst = static_cast<uint8_t*>(out);
  FirstBadCode bad;
  parallel_ranges(count_, 64, numel_ >= kParallelMinElements ? threads : 1, [&](uint64_t c0, uint64_t c1) {
    uint32_t code = 0;
    uint64_t index = 0;
    if (!decode_range(blob, len, c0, c1, dst, &code, &index)) bad.report(code, index);
  });
  if (!bad.failed) return true;
  return fail(error, "code " + std::to_string(bad.code) + " at position " + std::to_string(bad.index) +
                         " is out of range: the table has " + std::to_string(entries_) + " entries");
}

}  // namespace hyperonnx
