#include "dtype.h"

namespace hyperonnx {

bool dtype_from_onnx(int64_t code, DType* out) {
  switch (code) {
    case 1: *out = DType::kFloat; return true;
    case 10: *out = DType::kFloat16; return true;
    case 11: *out = DType::kDouble; return true;
    case 16: *out = DType::kBFloat16; return true;
    default: return false;
  }
}

size_t dtype_size(DType t) {
  switch (t) {
    case DType::kFloat: return 4;
    case DType::kDouble: return 8;
    case DType::kFloat16:
    case DType::kBFloat16: return 2;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kFloat: return "float32";
    case DType::kDouble: return "float64";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
  }
  return "?";
}

void cast_floats(const float* in, size_t n, DType t, void* out) {
  switch (t) {
    case DType::kFloat: std::memcpy(out, in, n * sizeof(float)); return;
    case DType::kDouble: {
      auto* o = static_cast<double*>(out);
      for (size_t i = 0; i < n; ++i) o[i] = static_cast<double>(in[i]);  // exact
      return;
    }
    case DType::kFloat16: {
      auto* o = static_cast<uint16_t*>(out);
      for (size_t i = 0; i < n; ++i) o[i] = float_to_half(in[i]);
      return;
    }
    case DType::kBFloat16: {
      auto* o = static_cast<uint16_t*>(out);
      for (size_t i = 0; i < n; ++i) o[i] = float_to_bfloat16(in[i]);
      return;
    }
  }
}

}  // namespace hyperonnx
