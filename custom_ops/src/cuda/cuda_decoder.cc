#include "cuda_decoder.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "decode_kernel.h"
#include "host_table.h"
#include "dtype.h"
#include "parallel.h"

namespace hyperonnx {
namespace cuda {
namespace {

constexpr unsigned long long kNoBad = ~0ull;

bool fail(std::string* error, const std::string& message) {
  *error = message;
  return false;
}

// Host copy of a blob that may live on the device (cudaMemcpyDefault: unified addressing tells which).
bool fetch(void* dst, const void* src, size_t bytes, cudaStream_t s) {
  if (bytes == 0) return true;
  if (cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, s) != cudaSuccess) return false;
  return cudaStreamSynchronize(s) == cudaSuccess;
}

}  // namespace

bool device_accessible(const void* p) {
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    cudaGetLastError();  // clear it
    return false;
  }
  return attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged ||
         (attr.type == cudaMemoryTypeHost && attr.devicePointer == p);
}

std::string cuda_error_message(int err, const char* what) {
  const auto e = static_cast<cudaError_t>(err);
  return std::string("CUDA error ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ") in " + what;
}

CudaDecoder::CudaDecoder(std::unique_ptr<Decoder> dec) : dec_(std::move(dec)) {
  device_table_ = device_table_bytes(*dec_, &own_table_, &table_, &table_bytes_);
}

CudaDecoder::~CudaDecoder() {
  // Errors are ignored: at process exit the runtime may already be unloading.
  if (d_table_) cudaFree(d_table_);
  if (d_bad_) cudaFree(d_bad_);
}

bool CudaDecoder::check_length(size_t len, std::string* error) const { return dec_->check_length(len, error); }

bool CudaDecoder::ensure_device(void* stream, std::string* error) {
  int dev = -1;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return fail(error, cuda_error_message(e, "cudaGetDevice"));
  if (device_ >= 0) {
    if (dev != device_) {
      return fail(error, "decoder was set up on CUDA device " + std::to_string(device_) + ", called on device " +
                             std::to_string(dev));
    }
    return true;
  }
  if ((e = cudaMalloc(reinterpret_cast<void**>(&d_bad_), sizeof(unsigned long long))) != cudaSuccess) {
    d_bad_ = nullptr;
    return fail(error, cuda_error_message(e, "cudaMalloc (error word)"));
  }
  if (device_table_) {
    if ((e = cudaMalloc(&d_table_, table_bytes_)) != cudaSuccess) {
      d_table_ = nullptr;
      return fail(error, cuda_error_message(e, "cudaMalloc (table)"));
    }
    // On the caller's stream, then waited for: a plain cudaMemcpy from pageable memory may return before the DMA
    // has landed, and a kernel on a non-blocking stream would not wait for it (seen on an H200 with 1 MiB tables:
    // the first decode read a partly uploaded table). Later decodes on any stream find the table complete.
    auto s = static_cast<cudaStream_t>(stream);
    e = cudaMemcpyAsync(d_table_, table_, table_bytes_, cudaMemcpyHostToDevice, s);
    if (e == cudaSuccess) e = cudaStreamSynchronize(s);
    if (e != cudaSuccess) return fail(error, cuda_error_message(e, "cudaMemcpyAsync (table upload)"));
  }
  device_ = dev;
  return true;
}

bool CudaDecoder::read_bad_index(void* stream, uint64_t* index, std::string* error) {
  auto s = static_cast<cudaStream_t>(stream);
  unsigned long long bad = kNoBad;
  cudaError_t e = cudaMemcpyAsync(&bad, d_bad_, sizeof bad, cudaMemcpyDeviceToHost, s);
  if (e == cudaSuccess) e = cudaStreamSynchronize(s);
  if (e != cudaSuccess) return fail(error, cuda_error_message(e, "HyperDecode kernel"));
  *index = bad;
  return true;
}

std::string CudaDecoder::bad_code_message(const void* blob, size_t len, uint64_t index, void* stream) const {
  // Read back just the bytes of code `index` and unpack it (LSB-first) for the message.
  const uint64_t bit = index * static_cast<uint64_t>(dec_->bits());
  const size_t byte = static_cast<size_t>(bit >> 3);
  const unsigned sh = static_cast<unsigned>(bit & 7);
  const size_t nb = std::min<size_t>((sh + dec_->bits() + 7) / 8, len - byte);
  uint8_t buf[8] = {0};
  uint64_t v = 0;
  if (fetch(buf, static_cast<const uint8_t*>(blob) + byte, nb, static_cast<cudaStream_t>(stream))) {
    for (size_t k = 0; k < nb; ++k) v |= static_cast<uint64_t>(buf[k]) << (8 * k);
  }
  const uint64_t mask = dec_->bits() >= 32 ? 0xffffffffull : (1ull << dec_->bits()) - 1;
  return "code " + std::to_string((v >> sh) & mask) + " at position " + std::to_string(index) +
         " is out of range: the table has " + std::to_string(dec_->entries()) + " entries";
}

bool CudaDecoder::host_decode(const void* blob, size_t len, void* out, void* stream, std::string* error) {
  auto s = static_cast<cudaStream_t>(stream);
  std::vector<uint8_t> host_blob(len), host_out(dec_->out_bytes());
  if (!fetch(host_blob.data(), blob, len, s)) return fail(error, "CUDA error copying the blob to the host");
  if (!dec_->decode(host_blob.data(), len, host_out.data(), default_decode_threads(), error)) return false;
  cudaError_t e = cudaMemcpyAsync(out, host_out.data(), host_out.size(), cudaMemcpyHostToDevice, s);
  if (e == cudaSuccess) e = cudaStreamSynchronize(s);  // host_out must outlive the copy
  if (e != cudaSuccess) return fail(error, cuda_error_message(e, "cudaMemcpyAsync (host-decoded tensor)"));
  return true;
}

bool CudaDecoder::decode(const void* blob, size_t len, void* out, void* stream, bool check, std::string* error) {
  if (!check_length(len, error)) return false;
  if (dec_->numel() == 0) return dec_->variable_length() ? validate(blob, len, stream, error) : true;
  std::unique_lock<std::mutex> lock(mu_);
  if (!ensure_device(stream, error)) return false;
  if (!device_table_) {
    lock.unlock();
    return host_decode(blob, len, out, stream, error);
  }
  if (!check) lock.unlock();  // the error word is only used by checked decodes
  auto s = static_cast<cudaStream_t>(stream);
  if (!device_accessible(blob)) {  // pageable host memory: stage it on the device
    void* staged = nullptr;
    cudaError_t e = cudaMalloc(&staged, len);
    if (e != cudaSuccess) return fail(error, cuda_error_message(e, "cudaMalloc (staged blob)"));
    bool ok = false;
    e = cudaMemcpyAsync(staged, blob, len, cudaMemcpyHostToDevice, s);
    if (e != cudaSuccess) {
      *error = cuda_error_message(e, "cudaMemcpyAsync (staged blob)");
    } else {
      ok = launch_checked(staged, len, out, stream, check, error);
      cudaStreamSynchronize(s);  // the kernel must be done with it before the free
    }
    cudaFree(staged);
    return ok;
  }
  return launch_checked(blob, len, out, stream, check, error);
}

bool CudaDecoder::launch_checked(const void* blob, size_t len, void* out, void* stream, bool check,
                                 std::string* error) {
  if (const BlockVQParams* p = dec_->blocked() ? blockvq_params(dec_->blocked()) : nullptr) {
    BlockVQArgs a;  // nothing to range-check: every code and header is valid
    a.blob = static_cast<const uint8_t*>(blob);
    a.blob_len = len;
    a.code_bytes = p->code_bytes;
    a.level_bits = p->level_bits;
    a.pairs_per_block = p->block / 2;
    a.count = p->count;
    a.numel = p->numel;
    a.params = static_cast<const float*>(d_table_);
    a.dtype = static_cast<int>(p->dtype);
    a.out = out;
    if (int e = launch_blockvq(a, stream)) return fail(error, cuda_error_message(e, "HyperDecode kernel launch"));
    if (!check) return true;
    const cudaError_t e = cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
    if (e != cudaSuccess) return fail(error, cuda_error_message(e, "HyperDecode kernel"));
    return true;
  }
  if (const BlockVQParams* p = dec_->blocked() ? blocktcq_params(dec_->blocked()) : nullptr) {
    BlockTcqArgs a;  // nothing to range-check: every code and header is valid
    a.blob = static_cast<const uint8_t*>(blob);
    a.blob_len = len;
    a.code_bytes = p->code_bytes;
    a.level_bits = p->level_bits;
    a.block = p->block;
    a.nblocks = p->nblocks;
    a.numel = p->numel;
    a.params = static_cast<const float*>(d_table_);
    a.dtype = static_cast<int>(p->dtype);
    a.out = out;
    if (int e = launch_blocktcq(a, stream)) return fail(error, cuda_error_message(e, "HyperDecode kernel launch"));
    if (!check) return true;
    const cudaError_t e = cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
    if (e != cudaSuccess) return fail(error, cuda_error_message(e, "HyperDecode kernel"));
    return true;
  }
  DecodeArgs a;
  a.blob = static_cast<const uint8_t*>(blob);
  a.blob_len = len;
  a.bits = dec_->bits();
  a.count = dec_->count();
  a.entries = dec_->entries();
  a.table = d_table_;
  a.elem_bytes = static_cast<uint32_t>(dtype_size(dec_->dtype()));
  a.group = dec_->group();
  a.numel = dec_->numel();
  a.out = out;
  auto s = static_cast<cudaStream_t>(stream);
  if (check) {
    cudaError_t e = cudaMemsetAsync(d_bad_, 0xff, sizeof(unsigned long long), s);
    if (e != cudaSuccess) return fail(error, cuda_error_message(e, "cudaMemsetAsync"));
    a.bad_index = d_bad_;
  }
  if (int e = launch_decode(a, stream)) return fail(error, cuda_error_message(e, "HyperDecode kernel launch"));
  if (!check) return true;
  uint64_t bad = kNoBad;
  if (!read_bad_index(stream, &bad, error)) return false;
  if (bad == kNoBad) return true;
  return fail(error, bad_code_message(blob, len, bad, stream));
}

bool CudaDecoder::validate(const void* blob, size_t len, void* stream, std::string* error) {
  if (!check_length(len, error)) return false;
  if (dec_->count() == 0 && !dec_->variable_length()) return true;
  if (!device_accessible(blob)) return dec_->validate(static_cast<const uint8_t*>(blob), len, error);
  if (dec_->blocked()) {
    // blockvq and blocktcq: the length is all there is to check. Other blocked codecs (ecsq, tcq, grid: rANS streams,
    // decoded on the host anyway) check a host copy.
    if (blockvq_params(dec_->blocked()) || blocktcq_params(dec_->blocked())) return true;
    std::vector<uint8_t> host_blob(len);
    if (!fetch(host_blob.data(), blob, len, static_cast<cudaStream_t>(stream))) {
      return fail(error, "CUDA error copying the blob to the host");
    }
    return dec_->validate(host_blob.data(), len, error);
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (!ensure_device(stream, error)) return false;
  auto s = static_cast<cudaStream_t>(stream);
  DecodeArgs a;
  a.blob = static_cast<const uint8_t*>(blob);
  a.blob_len = len;
  a.bits = dec_->bits();
  a.count = dec_->count();
  a.entries = dec_->entries();
  a.bad_index = d_bad_;
  cudaError_t e = cudaMemsetAsync(d_bad_, 0xff, sizeof(unsigned long long), s);
  if (e != cudaSuccess) return fail(error, cuda_error_message(e, "cudaMemsetAsync"));
  if (int le = launch_scan(a, stream)) return fail(error, cuda_error_message(le, "HyperDecode scan launch"));
  uint64_t bad = kNoBad;
  if (!read_bad_index(stream, &bad, error)) return false;
  if (bad == kNoBad) return true;
  return fail(error, bad_code_message(blob, len, bad, stream));
}

}  // namespace cuda
}  // namespace hyperonnx
