#include "weight.h"

#include <algorithm>
#include <cstring>

#include "tcq_neon.h"

namespace hyperonnx {

std::unique_ptr<FusedWeight> FusedWeight::create(const AttrSource& attrs, std::string* error) {
  // The codec first: a codec the kernels cannot read is the message, not a side-information key it lacks.
  std::string codec;
  if (attrs.get_string("codec", &codec) && codec != "blocktcq" && codec != "blockvq") {
    *error = "fused ops read the blocktcq and blockvq codecs only, got codec '" + codec + "'";
    return nullptr;
  }
  std::unique_ptr<Decoder> dec = Decoder::create(attrs, error);
  if (!dec) return nullptr;
  const BlockDecoder* blocked = dec->blocked();
  const BlockVQParams* tcq = blocked ? blocktcq_params(blocked) : nullptr;
  const BlockVQParams* vq = blocked ? blockvq_params(blocked) : nullptr;
  if (tcq == nullptr && vq == nullptr) {
    *error = "fused ops read the blocktcq and blockvq codecs only";
    return nullptr;
  }
  if (dec->dtype() != DType::kFloat) {
    *error = "fused ops need a float32 weight (dtype 1)";
    return nullptr;
  }
  if (dec->shape().size() != 2) {
    *error = "fused ops need a 2-D weight, got rank " + std::to_string(dec->shape().size());
    return nullptr;
  }
  std::unique_ptr<FusedWeight> w(new FusedWeight());
  w->rows_ = dec->shape()[0];
  w->cols_ = dec->shape()[1];
  w->tcq_ = tcq;
  w->isa_ = best_isa();
  // aarch64's best_isa() is kScalar (the portable multiply); its NEON decode has its own switch (tcq_neon.h).
  if (tcq != nullptr && (w->isa_ != FusedIsa::kScalar || tcq_neon_available())) {
    w->tcq_rows_ = TcqRows::create(*tcq, w->isa_ == FusedIsa::kAvx512);
  }
  const BlockVQParams& p = tcq ? *tcq : *vq;
  w->block_ = p.block;
  w->bits_ = static_cast<uint64_t>(dec->bits());
  w->group_ = static_cast<uint64_t>(dec->group());
  w->code_bytes_ = p.code_bytes;
  w->dec_ = std::move(dec);
  return w;
}

bool FusedWeight::check(const uint8_t* blob, size_t len, std::string* error) const {
  return dec_->check_length(len, error) && dec_->validate(blob, len, error);
}

void FusedWeight::prefetch(const uint8_t* blob, size_t len, uint64_t e0, uint64_t n) const {
  const uint64_t first = e0 / group_ * bits_ / 8, last = std::min<uint64_t>((e0 + n) / group_ * bits_ / 8, len);
  for (uint64_t at = first; at < last; at += 64) __builtin_prefetch(blob + at);
  const uint64_t header = code_bytes_ + e0 / block_ * kBlockVQHeaderBits / 8;
  if (header < len) __builtin_prefetch(blob + header);
}

bool FusedWeight::decode(const uint8_t* blob, size_t len, uint64_t e0, uint64_t e1, float* out,
                         std::vector<float>* scratch, std::string* error) const {
  if (e0 >= e1) return true;
  if (tcq_rows_ && e0 % block_ == 0 && (e1 - e0) % block_ == 0) {
    tcq_rows_->run(blob, len, e0 / block_, e1 / block_, out);
    return true;
  }
  // The codec's own decoder works on whole blocks: decode the blocks covering [e0, e1), straight into out when
  // the range is exactly those blocks, else into scratch.
  const uint64_t numel = dec_->numel();
  const uint64_t u0 = e0 / block_, u1 = (e1 + block_ - 1) / block_;
  const bool whole = e0 == u0 * block_ && (e1 == u1 * block_ || e1 == numel);
  float* base = out;
  if (!whole) {
    scratch->resize(static_cast<size_t>(std::min(u1 * block_, numel) - u0 * block_));
    base = scratch->data();
  }
  // decode() writes unit u's elements at out + u·B (the whole tensor's layout): shift the base by u0·B elements
  // in integer arithmetic, so it lands at base.
  const uintptr_t shifted = reinterpret_cast<uintptr_t>(base) - static_cast<uintptr_t>(u0 * block_ * sizeof(float));
  if (!dec_->blocked()->decode(blob, len, u0, u1, reinterpret_cast<void*>(shifted), false, error)) return false;
  if (!whole) std::memcpy(out, base + (e0 - u0 * block_), static_cast<size_t>(e1 - e0) * sizeof(float));
  return true;
}

}  // namespace hyperonnx
