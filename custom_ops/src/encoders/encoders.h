// The native encoders' C entry points (libhyperonnx_encoders.so; Python: hyperonnx/codec/native.py, ctypes).
//
// numpy (hyperonnx/codec/) is the specification: each entry point reproduces one step of a numpy encoder with the
// same float operations in the same order and precision, so the blobs are byte-identical. The tables the numpy
// encoders derive (level sets, nearest-level grids, scale tables) are handed in from Python rather than rebuilt
// here, so there is one definition of each. No ONNX Runtime dependency.
//
// Return codes: 0 done; kHxNeedsReference where the numpy encoder takes a path these functions do not reproduce
// (it raises, or indexes with a NaN cell): the caller then runs numpy on the tensor; kHxBadArgument otherwise.
#pragma once

#include <cstdint>

#define HX_ENCODER_API extern "C" __attribute__((visibility("default")))

constexpr int kHxNeedsReference = 1;
constexpr int kHxBadArgument = 2;

// Version of this interface: native.py refuses a library of another version (a stale build).
HX_ENCODER_API int hx_encoders_abi_version();

// Per block of `block` weights of x[0, numel): max |x| (the last block's missing weights count as 0).
HX_ENCODER_API int hx_block_absmax(const float* x, uint64_t numel, uint32_t block, float* out, int threads);
// counts[s] = how many of x[0 .. n) equal s, for s in 0 .. 255 (np.bincount of uint8 symbols, without widening them).
HX_ENCODER_API int hx_count_u8(const uint8_t* x, uint64_t n, uint64_t* counts);

// Fixed-width LSB-first packing of codes[0, count) (each < 2^bits, bits in 1..16) into out
// (ceil(count·bits/8) bytes): hyperonnx/codec/bitpack.py.
HX_ENCODER_API int hx_pack_u16(const uint16_t* codes, uint64_t count, int bits, uint8_t* out, int threads);

// blocktcq's _encode_blocks (hyperonnx/codec/blocktcq.py) over every block of x[0, numel), zero-padded to whole
// blocks. Tables from numpy, for `bits` and `block`: books (4 × fine float32, fine = 2^(bits+1)), scales (256),
// proxy (4097 × 4), and per (level set, coset) a _CosetSearch (m = fine/4 levels each): edges padded with ∓inf
// (m + 1 each), index into the fine set (m each, int16), lookup grid (8192 each, int32), exact_grid flag.
// k0: each block's starting scale code. Out: digits (numel, θ = fine index >> 1), headers (one per block).
// HYPERONNX_ENCODERS_DIRECT in the environment (tests) turns off the merged coset search (blocktcq.cc).
HX_ENCODER_API int hx_blocktcq_encode(const float* x, uint64_t numel, int bits, uint32_t block,
                                      const float* books, const float* scales, const float* proxy,
                                      const float* edges, const int16_t* index, const int32_t* lut,
                                      const uint8_t* exact, const int64_t* k0, uint16_t* digits, uint32_t* headers,
                                      int threads);

// rANS (hyperonnx/codec/rans.py, encode) of `phases` symbol arrays in turn on one interleaved stream, each with
// its model as two 256-entry tables indexed by the symbol: freq (0 where the model has none) and cum. Writes the
// stream (lanes × u32 states, u32 word count, u16 words) to out and its length to *size; capacity must be at least
// hx_rans_bound(total symbols).
HX_ENCODER_API uint64_t hx_rans_bound(uint64_t total);
HX_ENCODER_API int hx_rans_encode(int phases, const uint8_t* const* symbols, const uint64_t* counts,
                                  const uint32_t* freq, const uint32_t* cum, uint8_t* out, uint64_t capacity,
                                  uint64_t* size);
// 1 where hx_rans_encode codes 16 lanes at a time (AVX-512 VBMI2, not capped by HYPERONNX_ENCODERS_ISA), else 0:
// for tests that check both of its walks.
HX_ENCODER_API int hx_rans_vector_walk();

// tcq's levels (hyperonnx/codec/tcq.py: TcqCodec.levels, viterbi) of `nblocks` zero-padded blocks of `width`
// weights whose steps are `steps`: one symbol (j >> 1) + 127 per weight, row-major, in out.
HX_ENCODER_API int hx_tcq_levels(const float* blocks, uint64_t nblocks, uint32_t width, const float* steps,
                                 uint8_t* out, int threads);

// blockvq's _encode_blocks (hyperonnx/codec/blockvq.py) over every block of x[0, numel), zero-padded to whole
// blocks (`block` even). Tables from numpy, for `bits` and `block` (native_tables): per level set (4) its L = 2^bits
// sorted levels, its decision edges padded with ∓inf (L + 1), its lookup grid (8192 int32) and exact-grid flag;
// scales (256). k0: each block's starting scale code. Out: the ceil(numel / 2) θ codes (digit pairs, the last
// block's padding included) and one header per block.
HX_ENCODER_API int hx_blockvq_encode(const float* x, uint64_t numel, int bits, uint32_t block, const float* levels,
                                     const float* scales, const float* edges, const int32_t* lut,
                                     const uint8_t* exact, const int64_t* k0, uint16_t* codes, uint32_t* headers,
                                     int threads);

// rANS as hx_rans_encode, with each symbol's (freq, cum) given directly (total of each): for phases whose model
// varies per symbol (rans.Mixed: grid's context-coded levels). kHxNeedsReference for a zero frequency (numpy's
// error).
HX_ENCODER_API int hx_rans_encode_pairs(const uint16_t* freq, const uint16_t* cum, uint64_t total, uint8_t* out,
                                        uint64_t capacity, uint64_t* size);

// The converter's check of an encoding (decode.cc): decode a blob with the op library's decoder core, the node's
// attributes given as text (one "<s|i|f> <name> <values...>" a line, floats in C99 hex form); kHxNeedsReference for
// a codec this library does not know; kHxBadArgument with the reason in `error` for anything it rejects.
HX_ENCODER_API int hx_decode(const char* attrs, uint64_t attrs_len, const uint8_t* blob, uint64_t len, void* out,
                             uint64_t out_bytes, int threads, char* error, uint64_t error_capacity);
// Σx² and Σ(x − y)² over n elements of the ONNX dtype (1, 10, 11, 16), in float64, added exactly as
// hyperonnx/passes/compress.py's sqnr_db adds them with numpy (chunks of 2^20, numpy's pairwise order).
HX_ENCODER_API int hx_sqnr_sums(const void* x, const void* y, uint64_t n, int64_t onnx_dtype, int threads,
                                double* signal, double* noise);
