// The `kronecker` codec's table (numpy: hyperonnx/codec/kronecker.py, kronecker_table and codeword_u24).
//
// Codeword k, coordinate j: u24 = ((k·A_j) mod 2^64) >> 40, an integer Weyl sequence, so every decoder gets the
// same bits without π or δ; then value = (f32(u24)·2^-24 − 0.5)·width + mu in float32. f32(u24) and the scaling
// by a power of two are exact; the subtraction, product and sum are one IEEE binary32 operation each, in that
// order (the build uses -ffp-contract=off, so no FMA merges the last two).
#include <string>
#include <vector>

#include "../codec.h"

namespace hyperonnx {
namespace {

// The encoder's limit is 2^20 levels (MAX_LEVELS); anything up to 2^24 is still a sane table, beyond that the
// attributes cannot come from hyperonnx and would only make a huge table.
constexpr int64_t kMaxLevels = int64_t{1} << 24;
constexpr float kUScale = 1.0f / 16777216.0f;  // 2^-24

class KroneckerTable final : public TableGen {
 public:
  KroneckerTable(uint64_t levels, std::vector<uint64_t> alpha, float mu, float width)
      : levels_(levels), alpha_(std::move(alpha)), mu_(mu), width_(width) {}

  uint64_t entries() const override { return levels_; }

  void rows(uint64_t first, uint64_t count, float* out) const override {
    const size_t group = alpha_.size();
    for (uint64_t k = first; k < first + count; ++k, out += group) {
      for (size_t j = 0; j < group; ++j) {
        const uint64_t phase = k * alpha_[j];  // unsigned: wraps mod 2^64 like numpy's uint64 multiply
        const auto u24 = static_cast<uint32_t>(phase >> 40);
        const float u = static_cast<float>(u24) * kUScale;  // exact: a 24-bit integer times a power of two
        const float centred = u - 0.5f;
        const float scaled = centred * width_;
        out[j] = scaled + mu_;
      }
    }
  }

 private:
  uint64_t levels_;
  std::vector<uint64_t> alpha_;  // A_j as unsigned 64-bit integers
  float mu_, width_;
};

std::unique_ptr<TableGen> create(const SideInfo& side, int64_t group, std::string* error) {
  auto need = [&](bool ok, const std::string& what) {
    if (!ok) *error = "kronecker codec: " + what;
    return ok;
  };
  if (!need(group >= 2 && group <= 4, "group must be 2, 3 or 4, got " + std::to_string(group))) return nullptr;
  const auto& levels_v = side.ints.at("levels");
  const auto& alpha_v = side.ints.at("alpha");
  const auto& offset = side.floats.at("offset");
  const auto& width = side.floats.at("width");
  if (!need(levels_v.size() == 1, "i_levels must hold one integer")) return nullptr;
  const int64_t levels = levels_v[0];
  if (!need(levels >= 1 && levels <= kMaxLevels,
            "i_levels must be in 1.." + std::to_string(kMaxLevels) + ", got " + std::to_string(levels)) ||
      !need(alpha_v.size() == static_cast<size_t>(group),
            "i_alpha must hold group = " + std::to_string(group) + " integers, got " + std::to_string(alpha_v.size())) ||
      !need(offset.size() == 1, "f_offset must hold 1 float") || !need(width.size() == 1, "f_width must hold 1 float")) {
    return nullptr;
  }
  // The attributes are int64 (ONNX has no uint64 attribute); the increments are their two's-complement bits.
  std::vector<uint64_t> alpha(alpha_v.size());
  for (size_t j = 0; j < alpha.size(); ++j) alpha[j] = static_cast<uint64_t>(alpha_v[j]);
  return std::make_unique<KroneckerTable>(static_cast<uint64_t>(levels), std::move(alpha), offset[0], width[0]);
}

}  // namespace

const CodecSpec kKroneckerCodec = {"kronecker", {"levels", "alpha"}, {"offset", "width"}, &create, nullptr};

}  // namespace hyperonnx
