// The table the CUDA kernels read: the CPU decoder's own cast table, or (when the CPU decoder generates rows
// per code instead) the same rows built with the decoder's table generator and cast. No CUDA dependency:
// the host emulation test uses it too.
#pragma once

#include <cstdint>
#include <vector>

#include <cstring>

#include "codecs/blockvq.h"
#include "decoder.h"
#include "dtype.h"

namespace hyperonnx {
namespace cuda {

// A table larger than this is not put on the device (the CPU decoder only skips its table when the table
// outgrows the output); such tensors are decoded on the host and copied to the device.
constexpr uint64_t kMaxDeviceTableBytes = uint64_t{64} << 20;

// Rows [0, d.table_rows()) cast to d.dtype(): d.table() when the decoder built it, else generated into
// *own. Returns false (nothing built) when the table would exceed kMaxDeviceTableBytes.
//
// Blocked codecs: their device parameters instead (blockvq and blocktcq: the 256 block scales, then the 4·L or
// 4·2L levels, float32; decode_kernel.h, BlockVQArgs::params, BlockTcqArgs::params). A blocked codec without a
// device kernel returns false (host decode: ecsq, tcq and grid, whose rANS streams decode sequentially per segment;
// CudaDecoder::host_decode copies the blob to the host if it is on the device, decodes it with the CPU decoder on
// its threads and uploads the tensor).
inline bool device_table_bytes(const Decoder& d, std::vector<uint8_t>* own, const uint8_t** data, size_t* bytes) {
  if (d.blocked()) {
    const BlockVQParams* p = blockvq_params(d.blocked());
    if (!p) p = blocktcq_params(d.blocked());
    if (!p) return false;
    own->resize((p->scales.size() + p->books.size()) * sizeof(float));
    std::memcpy(own->data(), p->scales.data(), p->scales.size() * sizeof(float));
    std::memcpy(own->data() + p->scales.size() * sizeof(float), p->books.data(), p->books.size() * sizeof(float));
    *data = own->data();
    *bytes = own->size();
    return true;
  }
  if (!d.table().empty()) {
    *data = d.table().data();
    *bytes = d.table().size();
    return true;
  }
  const uint64_t elems = d.table_rows() * static_cast<uint64_t>(d.group());
  const uint64_t size = elems * dtype_size(d.dtype());
  if (size > kMaxDeviceTableBytes) return false;
  std::vector<float> rows(static_cast<size_t>(elems));
  d.table_gen().rows(0, d.table_rows(), rows.data());
  own->resize(static_cast<size_t>(size));
  cast_floats(rows.data(), rows.size(), d.dtype(), own->data());
  *data = own->data();
  *bytes = own->size();
  return true;
}

}  // namespace cuda
}  // namespace hyperonnx
