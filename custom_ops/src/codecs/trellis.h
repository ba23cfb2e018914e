// tcq's 8-state trellis (docs/format.md, "tcq"; numpy: hyperonnx/codec/tcq.py, NEXT), shared by the trellis-coded
// codecs: `tcq` (ecsq.cc) and `blocktcq` (blocktcq.cc).
#pragma once

#include <cstdint>

namespace hyperonnx {

// The state after a level of coset j & 3 (only cosets of the state's parity occur; -1 never read). Same table as
// hyperonnx/codec/tcq.py, NEXT: part of the format.
constexpr int8_t kTrellisNext[8][4] = {{0, -1, 1, -1}, {-1, 2, -1, 3}, {5, -1, 4, -1}, {-1, 7, -1, 6},
                                       {1, -1, 0, -1}, {-1, 3, -1, 2}, {4, -1, 5, -1}, {-1, 6, -1, 7}};

// The same table indexed by one bit of the code instead of the coset: a level j = 2·m + (state & 1) has coset
// 2·(m mod 2) + (state & 1), so the next state depends on the state and m's low bit only. `flip`: the code bit is
// m's low bit inverted (tcq's symbols are m + 127, odd for even m).
struct TrellisNextByBit {
  int8_t v[8][2];
  constexpr explicit TrellisNextByBit(bool flip) : v() {
    for (int s = 0; s < 8; ++s) {
      for (int bit = 0; bit < 2; ++bit) v[s][bit] = kTrellisNext[s][2 * ((bit ^ (flip ? 1 : 0)) & 1) + (s & 1)];
    }
  }
};

// Four steps of TrellisNextByBit at once, so the state chain takes one load per four symbols: indexed by the state
// and the four code bits (bit u = step u's), an entry holds the state after the four steps (bits 0-2) and the
// parity that each step's state had on entry (bit 3 + u: the `state & 1` of step u).
struct TrellisFourSteps {
  uint8_t v[8][16];
  constexpr explicit TrellisFourSteps(const TrellisNextByBit& next) : v() {
    for (int s0 = 0; s0 < 8; ++s0) {
      for (int bits = 0; bits < 16; ++bits) {
        int s = s0, parities = 0;
        for (int u = 0; u < 4; ++u) {
          parities |= (s & 1) << u;
          s = next.v[s][bits >> u & 1];
        }
        v[s0][bits] = static_cast<uint8_t>(s | parities << 3);
      }
    }
  }
};

}  // namespace hyperonnx
