// Device side of the CUDA HyperDecode: launchers for the unpack + range check + gather kernels. Plain C++
// types only (no CUDA or ONNX Runtime header), so host code of any kind can call them. Every launcher
// enqueues on `stream` (a cudaStream_t; null = the legacy default stream) and returns a cudaError_t as int.
#pragma once

#include <cstddef>
#include <cstdint>

namespace hyperonnx {
namespace cuda {

struct DecodeArgs {
  const uint8_t* blob = nullptr;  // device-accessible, blob_len bytes: codes LSB-first at `bits` bits
  uint64_t blob_len = 0;          // exactly ceil(count * bits / 8) (the host checked it)
  int bits = 1;                   // 1..32
  uint64_t count = 0;             // codes in the blob
  uint64_t entries = 0;           // codes >= entries are out of range
  const void* table = nullptr;    // device: rows [0, min(entries, 2^bits)) already cast, row_bytes each
  uint32_t elem_bytes = 4;        // 2, 4 or 8
  int64_t group = 1;              // elements per row
  uint64_t numel = 0;             // output elements
  void* out = nullptr;            // device, numel * elem_bytes
  // Device word set to UINT64_MAX before the launch; receives the lowest index of an out-of-range code
  // (atomicMin). Null: out-of-range codes are still never used to read the table (their rows are left
  // unwritten), but nothing reports them (for blobs already validated).
  unsigned long long* bad_index = nullptr;
};

// blockvq (docs/format.md, "blockvq"): the codes, then 10-bit block headers (scale code, codebook).
struct BlockVQArgs {
  const uint8_t* blob = nullptr;  // device-accessible, blob_len bytes (codes, then headers from code_bytes on)
  uint64_t blob_len = 0;          // exactly code_bytes + ceil(nblocks * 10 / 8) (the host checked it)
  uint64_t code_bytes = 0;        // ceil(count * 2b / 8)
  int level_bits = 1;             // b (1..8): L = 2^b levels, 2b-bit codes
  uint32_t pairs_per_block = 1;   // B / 2
  uint64_t count = 0;             // pairs (codes)
  uint64_t numel = 0;             // output elements
  const float* params = nullptr;  // device: the 256 block scales, then the 4·L levels (book-major)
  int dtype = 1;                  // ONNX element type: 1 float, 10 float16, 11 double, 16 bfloat16
  void* out = nullptr;            // device, numel elements, aligned to the element size
};

// One pair per thread: its code and its block's header, two levels times the block scale (IEEE float32
// products, --fmad=false), cast to the output type with dtype.h's own functions; both elements stored as one
// word when the output is aligned to two elements. Every code and header is valid by construction, so there
// is nothing to report.
int launch_blockvq(const BlockVQArgs& args, void* stream);

// blocktcq (docs/format.md, "blocktcq"): blockvq's framing with one b-bit θ per weight and tcq's trellis.
struct BlockTcqArgs {
  const uint8_t* blob = nullptr;  // device-accessible, blob_len bytes (codes, then headers from code_bytes on)
  uint64_t blob_len = 0;          // exactly code_bytes + ceil(nblocks * 10 / 8) (the host checked it)
  uint64_t code_bytes = 0;        // ceil(numel * b / 8)
  int level_bits = 1;             // b (1..8): codes of b bits, fine level sets of 2L = 2^(b+1) values
  uint32_t block = 2;             // B: weights per block (2..4096)
  uint64_t nblocks = 0;           // ceil(numel / B)
  uint64_t numel = 0;             // output elements (= codes)
  const float* params = nullptr;  // device: the 256 block scales, then the 4·2L levels (book-major)
  int dtype = 1;                  // ONNX element type: 1 float, 10 float16, 11 double, 16 bfloat16
  void* out = nullptr;            // device, numel elements, aligned to the element size
};

// One weight per thread: each warp takes 32 consecutive weights of a run of whole blocks at a time and gets every
// weight's trellis parity from one ballot of the codes' low bits (the closed form of docs/format.md, "blocktcq"),
// then per weight its code, f = 2θ + parity, the level times the block scale (one IEEE float32 product,
// --fmad=false) and the cast of dtype.h. Every code and header is valid by construction, so there is nothing to
// report.
int launch_blocktcq(const BlockTcqArgs& args, void* stream);

// Decodes the whole tensor: one code per thread, rows copied as one 2/4/8/16-byte word when the row size
// and the output's alignment allow, element by element otherwise; the last, partial row of a tensor whose
// size is not a multiple of `group` element by element.
int launch_decode(const DecodeArgs& args, void* stream);

// Range check only (no table, no output): the lowest index of a code >= entries goes to *args.bad_index.
int launch_scan(const DecodeArgs& args, void* stream);

}  // namespace cuda
}  // namespace hyperonnx
