// The C entry points of include/hyperonnx/cuda.h (no ONNX Runtime involved).
#include "hyperonnx/cuda.h"

#include <cuda_runtime.h>

#include <cstring>
#include <exception>
#include <memory>
#include <sstream>
#include <string>

#include "attrs.h"
#include "cuda_decoder.h"
#include "decoder.h"
#include "parallel.h"

#ifndef HYPERONNX_CUDA_ARCHS_STRING
#define HYPERONNX_CUDA_ARCHS_STRING "unknown"
#endif

namespace hyperonnx {
namespace cuda {
namespace {

constexpr int kInvalid = 1;
constexpr int kCudaError = 2;

int report(char* err, size_t errlen, int code, const std::string& message) {
  if (err && errlen > 0) {
    const size_t n = std::min(message.size(), errlen - 1);
    std::memcpy(err, message.data(), n);
    err[n] = '\0';
  }
  return code;
}

bool parse_attrs(const char* text, MapAttrs* attrs, std::string* error) {
  if (text == nullptr) {
    *error = "attribute text is null";
    return false;
  }
  std::istringstream in(text);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    std::istringstream fields(line);
    std::string kind, key;
    if (!(fields >> kind) || kind[0] == '#' || kind == "blob" || kind == "expect") continue;
    auto bad = [&](const std::string& why) {
      *error = "attribute text line " + std::to_string(lineno) + ": " + why;
      return false;
    };
    if (!(fields >> key)) return bad("missing attribute name");
    std::string tok;
    if (kind == "s") {
      if (!(fields >> tok)) return bad("missing string value");
      attrs->strings[key] = tok;
    } else if (kind == "i") {
      auto& v = attrs->ints[key];
      v.clear();
      while (fields >> tok) {
        size_t used = 0;
        long long x = 0;
        try {
          x = std::stoll(tok, &used, 10);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used != tok.size()) return bad("'" + tok + "' is not an integer");
        v.push_back(static_cast<int64_t>(x));
      }
    } else if (kind == "f") {
      auto& v = attrs->floats[key];
      v.clear();
      while (fields >> tok) {
        size_t used = 0;
        unsigned long bits = 0;
        try {
          bits = std::stoul(tok, &used, 16);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used != tok.size() || tok.size() > 8) return bad("'" + tok + "' is not a float32 bit pattern (8 hex digits)");
        const uint32_t b = static_cast<uint32_t>(bits);
        float f;
        std::memcpy(&f, &b, sizeof f);
        v.push_back(f);
      }
    } else {
      return bad("unknown kind '" + kind + "' (s, i or f)");
    }
  }
  return true;
}

std::unique_ptr<Decoder> make_decoder(const char* attrs_text, std::string* error) {
  MapAttrs attrs;
  if (!parse_attrs(attrs_text, &attrs, error)) return nullptr;
  return Decoder::create(attrs, error);
}

}  // namespace
}  // namespace cuda
}  // namespace hyperonnx

using hyperonnx::cuda::kCudaError;
using hyperonnx::cuda::kInvalid;
using hyperonnx::cuda::report;

extern "C" __attribute__((visibility("default"))) int hyperonnx_cuda_available(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

extern "C" __attribute__((visibility("default"))) int hyperonnx_cuda_info(char* buf, size_t len) {
  std::ostringstream o;
  o << "built with CUDA runtime " << CUDART_VERSION / 1000 << "." << CUDART_VERSION % 1000 / 10
    << " (static), archs " << HYPERONNX_CUDA_ARCHS_STRING << "; ";
  int driver = 0;
  if (cudaDriverGetVersion(&driver) != cudaSuccess || driver == 0) {
    o << "no CUDA driver";
  } else {
    o << "driver supports CUDA " << driver / 1000 << "." << driver % 1000 / 10;
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      o << "; no usable device: " << cudaGetErrorName(e);
      cudaGetLastError();
    }
    for (int i = 0; i < n; ++i) {
      cudaDeviceProp p{};
      if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
      o << "; device " << i << ": " << p.name << " (sm_" << p.major << p.minor << ", "
        << (p.totalGlobalMem >> 20) << " MiB)";
    }
  }
  return report(buf, len, 0, o.str());
}

extern "C" __attribute__((visibility("default"))) int64_t hyperonnx_cuda_out_bytes(const char* attrs, char* err,
                                                                                   size_t errlen) {
  try {
    std::string error;
    auto dec = hyperonnx::cuda::make_decoder(attrs, &error);
    if (!dec) return report(err, errlen, -1, error);
    return static_cast<int64_t>(dec->out_bytes());
  } catch (const std::exception& e) {
    return report(err, errlen, -1, e.what());
  }
}

extern "C" __attribute__((visibility("default"))) int hyperonnx_cuda_decode(const char* attrs, const void* blob,
                                                                            size_t blob_len, void* out,
                                                                            size_t out_len, void* stream, char* err,
                                                                            size_t errlen) {
  try {
    std::string error;
    auto dec = hyperonnx::cuda::make_decoder(attrs, &error);
    if (!dec) return report(err, errlen, kInvalid, error);
    if (out_len != dec->out_bytes()) {
      return report(err, errlen, kInvalid,
                    "out holds " + std::to_string(out_len) + " bytes, expected " + std::to_string(dec->out_bytes()));
    }
    if ((blob == nullptr && blob_len > 0) || (out == nullptr && out_len > 0)) {
      return report(err, errlen, kInvalid, "null blob or output pointer");
    }
    if (hyperonnx_cuda_available() == 0) return report(err, errlen, kCudaError, "no CUDA device");
    hyperonnx::cuda::CudaDecoder cd(std::move(dec));
    if (cd.decode(blob, blob_len, out, stream, /*check=*/true, &error)) return 0;
    return report(err, errlen, error.rfind("CUDA error", 0) == 0 ? kCudaError : kInvalid, error);
  } catch (const std::exception& e) {
    return report(err, errlen, kInvalid, e.what());
  }
}

extern "C" __attribute__((visibility("default"))) int hyperonnx_cuda_host_decode(const char* attrs, const void* blob,
                                                                                 size_t blob_len, void* out,
                                                                                 size_t out_len, char* err,
                                                                                 size_t errlen) {
  try {
    std::string error;
    auto dec = hyperonnx::cuda::make_decoder(attrs, &error);
    if (!dec) return report(err, errlen, kInvalid, error);
    if (out_len != dec->out_bytes()) {
      return report(err, errlen, kInvalid,
                    "out holds " + std::to_string(out_len) + " bytes, expected " + std::to_string(dec->out_bytes()));
    }
    if ((blob == nullptr && blob_len > 0) || (out == nullptr && out_len > 0)) {
      return report(err, errlen, kInvalid, "null blob or output pointer");
    }
    if (dec->decode(static_cast<const uint8_t*>(blob), blob_len, out, hyperonnx::default_decode_threads(), &error)) {
      return 0;
    }
    return report(err, errlen, kInvalid, error);
  } catch (const std::exception& e) {
    return report(err, errlen, kInvalid, e.what());
  }
}
