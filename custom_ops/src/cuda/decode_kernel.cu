// CUDA HyperDecode kernels (docs/format.md, "Codes" and "Decoding" step 3): unpack LSB-first codes, check
// them against `entries`, copy table rows. The bodies live in decode_kernel.cuh (also run on the host by
// the emulation test). The table itself (all the float arithmetic) is built and cast on the host by the
// CPU decoder's code, so these kernels do integer work and copies only; they are still compiled with
// --fmad=false, as the format asks of any CUDA code near the decoder.
#include <cuda_runtime.h>

#include "decode_kernel.cuh"

namespace hyperonnx {
namespace cuda {
namespace {

using detail::DecodePlan;

constexpr int kThreads = 256;
constexpr uint64_t kMaxBlocks = uint64_t{1} << 22;  // grid-stride beyond 2^30 items per pass

__device__ __forceinline__ uint64_t thread_first() {
  return static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ uint64_t grid_stride() { return static_cast<uint64_t>(gridDim.x) * blockDim.x; }

template <typename V, bool kAligned>
__global__ void __launch_bounds__(kThreads) rows_kernel(DecodeArgs a, uint64_t rows) {
  detail::rows_body<V, kAligned>(a, rows, thread_first(), grid_stride());
}

template <typename T, bool kAligned>
__global__ void __launch_bounds__(kThreads) elems_kernel(DecodeArgs a, uint64_t e0, uint64_t e1) {
  detail::elems_body<T, kAligned>(a, e0, e1, thread_first(), grid_stride());
}

template <bool kAligned>
__global__ void __launch_bounds__(kThreads) scan_kernel(DecodeArgs a) {
  detail::scan_body<kAligned>(a, thread_first(), grid_stride());
}

template <int DT, bool kAligned, bool kPairStore>
__global__ void __launch_bounds__(kThreads) blockvq_kernel(BlockVQArgs a) {
  detail::blockvq_body<DT, kAligned, kPairStore>(a, thread_first(), grid_stride());
}

// One warp per unit of whole blocks (decode_kernel.cuh, "blocktcq"), one weight per lane, 32 at a time: every loop
// bound is the same across the warp, so all 32 lanes reach each ballot. kWhole: B is a multiple of 32.
template <int DT, bool kAligned, bool kWhole>
__global__ void __launch_bounds__(kThreads) blocktcq_kernel(BlockTcqArgs a) {
  const uint32_t lane = threadIdx.x & 31u;
  const uint32_t mask = detail::code_mask(static_cast<uint32_t>(a.level_bits));
  const uint64_t units = detail::tcq_units(a);
  for (uint64_t unit = thread_first() >> 5; unit < units; unit += grid_stride() >> 5) {
    const detail::TcqSpan sp = detail::tcq_span(a, unit);
    if (kWhole) {
      detail::TcqWhole w = detail::tcq_whole_start(a, sp);
      for (uint64_t c0 = sp.r0; c0 < sp.r1; c0 += 32) {
        const uint32_t theta = detail::tcq_theta<kAligned>(a, mask, c0 + lane, sp.r1);
        const uint32_t ballot = __ballot_sync(0xffffffffu, theta & 1u);
        detail::tcq_store_whole<DT>(a, theta, c0, lane, sp.r1, ballot, w);
        detail::tcq_whole_next(a, ballot, w);
      }
    } else {
      detail::TcqCarry carry;
      for (uint64_t c0 = sp.r0; c0 < sp.r1; c0 += 32) {
        const uint32_t theta = detail::tcq_theta<kAligned>(a, mask, c0 + lane, sp.r1);
        const uint32_t ballot = __ballot_sync(0xffffffffu, theta & 1u);
        detail::tcq_store<DT>(a, theta, c0, lane, sp.r1, ballot, carry);
        carry = detail::tcq_next_carry(a, c0, sp.r1, ballot, carry);
      }
    }
  }
}

unsigned blocks_for(uint64_t n) {
  const uint64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < kMaxBlocks ? b : kMaxBlocks);
}

template <typename V>
void rows(const DecodeArgs& a, bool aligned, uint64_t n, cudaStream_t s) {
  if (aligned) {
    rows_kernel<V, true><<<blocks_for(n), kThreads, 0, s>>>(a, n);
  } else {
    rows_kernel<V, false><<<blocks_for(n), kThreads, 0, s>>>(a, n);
  }
}

template <typename T>
void elems(const DecodeArgs& a, bool aligned, uint64_t e0, uint64_t e1, cudaStream_t s) {
  if (aligned) {
    elems_kernel<T, true><<<blocks_for(e1 - e0), kThreads, 0, s>>>(a, e0, e1);
  } else {
    elems_kernel<T, false><<<blocks_for(e1 - e0), kThreads, 0, s>>>(a, e0, e1);
  }
}

template <int DT>
void blockvq(const BlockVQArgs& a, const detail::BlockVQPlan& p, cudaStream_t s) {
  const unsigned grid = blocks_for(a.count);
  if (p.blob_aligned) {
    if (p.pair_store) {
      blockvq_kernel<DT, true, true><<<grid, kThreads, 0, s>>>(a);
    } else {
      blockvq_kernel<DT, true, false><<<grid, kThreads, 0, s>>>(a);
    }
  } else {
    if (p.pair_store) {
      blockvq_kernel<DT, false, true><<<grid, kThreads, 0, s>>>(a);
    } else {
      blockvq_kernel<DT, false, false><<<grid, kThreads, 0, s>>>(a);
    }
  }
}

template <int DT>
void blocktcq(const BlockTcqArgs& a, const detail::BlockTcqPlan& p, cudaStream_t s) {
  const unsigned grid = blocks_for(detail::tcq_units(a) * 32);  // kThreads is a multiple of 32: whole warps
  if (p.blob_aligned) {
    if (p.whole_chunks) {
      blocktcq_kernel<DT, true, true><<<grid, kThreads, 0, s>>>(a);
    } else {
      blocktcq_kernel<DT, true, false><<<grid, kThreads, 0, s>>>(a);
    }
  } else {
    if (p.whole_chunks) {
      blocktcq_kernel<DT, false, true><<<grid, kThreads, 0, s>>>(a);
    } else {
      blocktcq_kernel<DT, false, false><<<grid, kThreads, 0, s>>>(a);
    }
  }
}

}  // namespace

int launch_blocktcq(const BlockTcqArgs& a, void* stream) {
  if (a.numel == 0) return cudaSuccess;
  const detail::BlockTcqPlan p = detail::plan_blocktcq(a);
  if (p.status == detail::BlockTcqPlan::kInvalid) return cudaErrorInvalidValue;
  if (p.status == detail::BlockTcqPlan::kMisaligned) return cudaErrorMisalignedAddress;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (a.dtype) {
    case 1: blocktcq<1>(a, p, s); break;
    case 10: blocktcq<10>(a, p, s); break;
    case 11: blocktcq<11>(a, p, s); break;
    default: blocktcq<16>(a, p, s); break;
  }
  return cudaGetLastError();
}

int launch_blockvq(const BlockVQArgs& a, void* stream) {
  if (a.numel == 0) return cudaSuccess;
  const detail::BlockVQPlan p = detail::plan_blockvq(a);
  if (p.status == detail::BlockVQPlan::kInvalid) return cudaErrorInvalidValue;
  if (p.status == detail::BlockVQPlan::kMisaligned) return cudaErrorMisalignedAddress;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (a.dtype) {
    case 1: blockvq<1>(a, p, s); break;
    case 10: blockvq<10>(a, p, s); break;
    case 11: blockvq<11>(a, p, s); break;
    default: blockvq<16>(a, p, s); break;
  }
  return cudaGetLastError();
}

int launch_decode(const DecodeArgs& a, void* stream) {
  if (a.numel == 0) return cudaSuccess;
  const DecodePlan p = detail::plan_decode(a);
  if (p.status == DecodePlan::kInvalid) return cudaErrorInvalidValue;
  if (p.status == DecodePlan::kMisaligned) return cudaErrorMisalignedAddress;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (p.row_bytes) {
    case 2: rows<uint16_t>(a, p.blob_aligned, p.rows, s); break;
    case 4: rows<uint32_t>(a, p.blob_aligned, p.rows, s); break;
    case 8: rows<uint2>(a, p.blob_aligned, p.rows, s); break;
    case 16: rows<uint4>(a, p.blob_aligned, p.rows, s); break;
    default: break;
  }
  if (p.elems_from < a.numel) {
    switch (a.elem_bytes) {
      case 2: elems<uint16_t>(a, p.blob_aligned, p.elems_from, a.numel, s); break;
      case 4: elems<uint32_t>(a, p.blob_aligned, p.elems_from, a.numel, s); break;
      default: elems<unsigned long long>(a, p.blob_aligned, p.elems_from, a.numel, s); break;
    }
  }
  return cudaGetLastError();
}

int launch_scan(const DecodeArgs& a, void* stream) {
  if (a.count == 0) return cudaSuccess;
  if (a.bits < 1 || a.bits > 32 || a.bad_index == nullptr) return cudaErrorInvalidValue;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (detail::aligned_to(a.blob, 4)) {
    scan_kernel<true><<<blocks_for(a.count), kThreads, 0, s>>>(a);
  } else {
    scan_kernel<false><<<blocks_for(a.count), kThreads, 0, s>>>(a);
  }
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace hyperonnx
