#include "codec.h"

namespace hyperonnx {
namespace {

#define HYPERONNX_CODEC_ENTRY(spec) &spec,
const CodecSpec* const kCodecTable[] = {HYPERONNX_CODECS(HYPERONNX_CODEC_ENTRY)};
#undef HYPERONNX_CODEC_ENTRY

}  // namespace

const CodecSpec* find_codec(const std::string& name) {
  for (const CodecSpec* spec : kCodecTable) {
    if (name == spec->name) return spec;
  }
  return nullptr;
}

std::string known_codecs() {
  std::string out;
  for (const CodecSpec* spec : kCodecTable) {
    if (!out.empty()) out += ", ";
    out += spec->name;
  }
  return out;
}

}  // namespace hyperonnx
