// libFuzzer target over the fast path's ONNX reader/rewriter (custom_ops/src/fast/, include/hyperonnx/fast.h):
// the input is an ONNX model (seeds: tests/fuzz_corpus/fast/). Built by tools/fuzz/build_decoder_fuzz.sh
// next to the decoder target, run by tests/reliability/test_fuzz.py under ASan + UBSan.
//
// Checked: hyperonnx_fast_plan never crashes, reads out of bounds or leaks on any bytes; when it accepts a model,
// hyperonnx_fast_write fills exactly the sizes it announced (guard bytes around both buffers stay intact), and
// the inline and external layouts decode to the same tensors (the external buffer holds the same bytes).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "hyperonnx/fast.h"

namespace {

constexpr uint64_t kMaxDecoded = uint64_t{32} << 20;  // decode only models up to this much output
constexpr uint8_t kGuard = 0xA5;

bool guarded_write(hyperonnx_fast_model* model, const hyperonnx_fast_info& info, bool* ok) {
  std::vector<uint8_t> out(info.model_bytes + 32, kGuard), ext(info.external_bytes + 32, kGuard);
  *ok = hyperonnx_fast_write(model, out.data() + 16, info.external_bytes ? ext.data() + 16 : nullptr, nullptr, 0) == 0;
  for (int i = 0; i < 16; ++i) {
    if (out[i] != kGuard || out[out.size() - 1 - i] != kGuard) return false;
    if (ext[i] != kGuard || ext[ext.size() - 1 - i] != kGuard) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  for (int flags = 0; flags <= HYPERONNX_FAST_DECODE_CALL_NODES; ++flags) {
    hyperonnx_fast_model* model = nullptr;
    char err[256];
    if (hyperonnx_fast_plan(data, size, nullptr, flags, 0, 1, &model, err, sizeof err) != 0) {
      if (model != nullptr || std::strlen(err) == 0) std::abort();  // failure: a message and nothing allocated
      continue;
    }
    hyperonnx_fast_info info{};
    hyperonnx_fast_get_info(model, &info);
    if (info.decoded_bytes <= kMaxDecoded && info.model_bytes <= kMaxDecoded + size + (1 << 20)) {
      bool ok = false;
      if (!guarded_write(model, info, &ok)) std::abort();
      // The same model with its decoded tensors moved out of the protobuf (the path for models over 2 GiB).
      hyperonnx_fast_model* split = nullptr;
      if (ok && info.decoded_nodes &&
          hyperonnx_fast_plan(data, size, nullptr, flags, info.model_bytes - 1, 1, &split, err, sizeof err) == 0) {
        hyperonnx_fast_info si{};
        hyperonnx_fast_get_info(split, &si);
        bool split_ok = false;
        if (si.external_bytes == 0 || !guarded_write(split, si, &split_ok) || !split_ok) std::abort();
        hyperonnx_fast_free(split);
      }
    }
    hyperonnx_fast_free(model);
  }
  return 0;
}
