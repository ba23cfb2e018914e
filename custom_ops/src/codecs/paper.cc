// The `paper` codec's table (docs/format.md, "paper"; numpy: hyperonnx/codec/paper.py, paper_table).
//
// Every float operation below is one IEEE binary32 operation in the order the format writes it; the build
// uses -ffp-contract=off so the compiler cannot fuse `dx * s + cx` into an FMA (one rounding instead of two).
#include <cmath>
#include <string>

#include "../codec.h"

namespace hyperonnx {
namespace {

// The encoder's limits; a table beyond them cannot come from hyperonnx and would only waste memory.
constexpr int64_t kMaxN = int64_t{1} << 24;  // also keeps float(k) exact (k < 2^24)
constexpr int64_t kMaxRings = 255;

// Smallest m with m*m >= n, in integers (a float sqrt could be off by one near perfect squares).
int64_t lattice_side(int64_t n) {
  int64_t m = static_cast<int64_t>(std::sqrt(static_cast<double>(n)));
  while (m * m < n) ++m;
  while (m > 1 && (m - 1) * (m - 1) >= n) --m;
  return m < 1 ? 1 : m;
}

class PaperTable final : public TableGen {
 public:
  PaperTable(int64_t n, float cx, float cy, float half, float step_x, float step_y, std::vector<float> scale)
      : n_(n), m_(lattice_side(n)), cx_(cx), cy_(cy), half_(half), sx_(step_x), sy_(step_y),
        scale_(std::move(scale)) {}

  uint64_t entries() const override { return static_cast<uint64_t>(n_ + 1) * scale_.size(); }

  void rows(uint64_t first, uint64_t count, float* out) const override {
    const uint64_t per_ring = static_cast<uint64_t>(n_ + 1);
    for (uint64_t theta = first; theta < first + count; ++theta, out += 2) {
      const uint64_t ring = theta / per_ring;
      const int64_t idx = static_cast<int64_t>(theta % per_ring);
      float dx = 0.0f, dy = 0.0f;
      if (idx != 0) {
        const int64_t k = idx - 1;
        const int64_t row = k % m_;
        const float fx = static_cast<float>(k) * sx_;  // rounded product, then rounded difference
        const float fy = static_cast<float>(row) * sy_;
        dx = fx - half_;
        dy = fy - half_;
      }
      const float s = scale_[ring];
      const float px = dx * s;
      const float py = dy * s;
      out[0] = cx_ + px;
      out[1] = cy_ + py;
    }
  }

 private:
  int64_t n_, m_;
  float cx_, cy_, half_, sx_, sy_;
  std::vector<float> scale_;
};

std::unique_ptr<TableGen> create(const SideInfo& side, int64_t group, std::string* error) {
  const auto& ints = side.ints;
  const auto& floats = side.floats;
  auto need = [&](bool ok, const std::string& what) {
    if (!ok) *error = "paper codec: " + what;
    return ok;
  };
  if (!need(group == 2, "group must be 2 (weights are coded in pairs), got " + std::to_string(group))) return nullptr;
  const auto& n_v = ints.at("n");
  const auto& rings_v = ints.at("rings");
  if (!need(n_v.size() == 1 && rings_v.size() == 1, "i_n and i_rings must hold one integer each")) return nullptr;
  const int64_t n = n_v[0], rings = rings_v[0];
  if (!need(n >= 1 && n <= kMaxN, "i_n must be in 1.." + std::to_string(kMaxN) + ", got " + std::to_string(n)) ||
      !need(rings >= 0 && rings <= kMaxRings, "i_rings must be in 0..255, got " + std::to_string(rings))) {
    return nullptr;
  }
  const auto& center = floats.at("center");
  const auto& half = floats.at("half");
  const auto& step = floats.at("step");
  const auto& scale = floats.at("scale");
  if (!need(center.size() == 2, "f_center must hold 2 floats") || !need(half.size() == 1, "f_half must hold 1 float") ||
      !need(step.size() == 2, "f_step must hold 2 floats") ||
      !need(scale.size() == static_cast<size_t>(rings + 1),
            "f_scale must hold i_rings + 1 = " + std::to_string(rings + 1) + " floats, got " +
                std::to_string(scale.size()))) {
    return nullptr;
  }
  return std::make_unique<PaperTable>(n, center[0], center[1], half[0], step[0], step[1], scale);
}

}  // namespace

const CodecSpec kPaperCodec = {"paper", {"n", "rings"}, {"center", "half", "step", "scale"}, &create, nullptr};

}  // namespace hyperonnx
