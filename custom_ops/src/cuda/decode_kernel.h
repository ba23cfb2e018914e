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

// Decodes the whole tensor: one code per thread, rows copied as one 2/4/8/16-byte word when the row size
// and the output's alignment allow, element by element otherwise; the last, partial row of a tensor whose
// size is not a multiple of `group` element by element.
int launch_decode(const DecodeArgs& args, void* stream);

// Range check only (no table, no output): the lowest index of a code >= entries goes to *args.bad_index.
int launch_scan(const DecodeArgs& args, void* stream);

}  // namespace cuda
}  // namespace hyperonnx
