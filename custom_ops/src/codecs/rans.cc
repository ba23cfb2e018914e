// The shared rANS stream reader (rans.h).
#include "rans.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "rans_simd.h"

namespace hyperonnx {
namespace rans {

uint32_t lanes_for(uint64_t count) {
  const uint64_t w = (count + 4095) / 4096;
  return static_cast<uint32_t>(std::min<uint64_t>(kMaxLanes, std::max<uint64_t>(8, w)));
}

bool parse_model(const uint8_t* blob, size_t len, size_t* pos, const char* what, Model* m, std::string* error) {
  const std::string name = std::string(what) + " model: ";
  auto fail = [&](const std::string& message) {
    *error = name + message;
    return false;
  };
  if (len - *pos < 4) return fail("truncated frequency table");
  const uint32_t lo = u16_at(blob + *pos), n = u16_at(blob + *pos + 2);
  if (n == 0 || len - *pos - 4 < 2 * static_cast<size_t>(n)) return fail("truncated or empty frequency table");
  if (lo >= 256 || n > 256 - lo) {
    return fail("alphabet [" + std::to_string(lo) + ", " + std::to_string(lo + n) + ") outside 0..255");
  }
  const uint8_t* f = blob + *pos + 4;
  uint32_t sum = 0;
  for (uint32_t j = 0; j < n; ++j) sum += u16_at(f + 2 * j);  // <= 256 * 65535: no overflow
  if (sum != kProbScale) {
    return fail("frequencies sum to " + std::to_string(sum) + ", not " + std::to_string(kProbScale));
  }
  m->lo = lo;
  m->n = n;
  uint32_t cum = 0;
  for (uint32_t j = 0; j < n; ++j) {
    const uint32_t freq = u16_at(f + 2 * j);
    for (uint32_t t = 0; t < freq; ++t) m->slot[cum + t] = (lo + j) | (freq - 1) << 8 | t << 20;
    cum += freq;
  }
  *pos += 4 + 2 * static_cast<size_t>(n);
  return true;
}

bool stream_bytes(const uint8_t* blob, size_t len, size_t pos, uint64_t symbols, uint64_t* bytes,
                  std::string* error) {
  const uint64_t head = 4 * uint64_t{lanes_for(symbols)} + 4;
  if (len - pos < head) {
    *error = "truncated stream header";
    return false;
  }
  const uint64_t nwords = u32_at(blob + pos + head - 4);
  if (len - pos - head < 2 * nwords) {
    *error = "truncated stream";
    return false;
  }
  *bytes = head + 2 * nwords;
  return true;
}

uint64_t Segments::min_bytes() const {
  if (count == 0) return 0;
  const uint64_t full = count - 1;
  return full * (4 * uint64_t{lanes_for(symbols(0))} + 4) + 4 * uint64_t{lanes_for(symbols(full))} + 4;
}

bool skip_streams(const Segments& s, const uint8_t* blob, size_t len, uint64_t u0, size_t* pos, std::string* error) {
  std::string e;
  for (uint64_t g = 0; g < u0; ++g) {
    uint64_t bytes = 0;
    if (!stream_bytes(blob, len, *pos, s.symbols(g), &bytes, &e)) {
      *error = "segment " + std::to_string(g) + ": " + e;
      return false;
    }
    *pos += static_cast<size_t>(bytes);
  }
  return true;
}

bool Stream::open(const uint8_t* blob, size_t len, size_t* pos, uint64_t symbols, std::string* error) {
  uint64_t bytes = 0;
  if (!stream_bytes(blob, len, *pos, symbols, &bytes, error)) return false;
  const uint8_t* start = blob + *pos;
  *pos += static_cast<size_t>(bytes);
  lanes_ = lanes_for(symbols);
  lane_ = 0;
  for (uint32_t l = 0; l < lanes_; ++l) {
    state_[l] = u32_at(start + 4 * l);
    if (state_[l] < kStateLow) {
      *error = "corrupt stream (state out of range)";
      return false;
    }
  }
  nwords_ = u32_at(start + 4 * lanes_);
  words_ = start + 4 * lanes_ + 4;
  read_ = 0;
  return true;
}

bool Stream::finished() const {
  if (read_ != nwords_) return false;
  for (uint32_t l = 0; l < lanes_; ++l) {
    if (state_[l] != kStateLow) return false;
  }
  return true;
}

bool isa_available(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return true;
    case Isa::kAvx2:
      return host_has_avx2();
    case Isa::kAvx512:
      return host_has_avx512();
  }
  return false;
}

namespace {

Isa pick_isa() {
  Isa isa = isa_available(Isa::kAvx512) ? Isa::kAvx512 : isa_available(Isa::kAvx2) ? Isa::kAvx2 : Isa::kScalar;
  if (const char* cap = std::getenv("HYPERONNX_RANS_ISA")) {
    if (std::strcmp(cap, "scalar") == 0) {
      isa = Isa::kScalar;
    } else if (std::strcmp(cap, "avx2") == 0 && isa == Isa::kAvx512) {
      isa = Isa::kAvx2;
    }
  }
  return isa;
}

}  // namespace

Isa default_isa() {
  static const Isa isa = pick_isa();
  return isa;
}

// Works on local copies of the coder's fields (out is a byte pointer: stores through it could alias them and force
// reloads).
bool Stream::decode_using(Isa isa, const Model& m, uint64_t n, uint8_t* out) {
  const uint32_t* slot = m.slot;
  uint32_t* const st = state_;
  const uint8_t* const w = words_;
  const uint32_t nl = lanes_;
  uint32_t ln = lane_;
  uint64_t rd = read_;
  uint64_t i = 0;
  // Fast part: every symbol reads at most one word, so while read + (symbols left) <= nwords no check is needed
  // and the refill can be branch-free (the word load is always in bounds).
  const uint64_t safe = nwords_ - rd >= n ? n : nwords_ - rd;
  // The vector loops for streams of at least 16 lanes: with fewer, a step's lanes come round again a step later
  // and wait on their own states' store and reload (hyperonnx_rans_bench on Zen 4, 8 lanes: 1.7 ns a symbol
  // scalar, 2.0 AVX2, 2.1 AVX-512 when they ran there; 1024 lanes: 1.8, 0.58, 0.38).
  if (isa != Isa::kScalar && nl >= kVectorLanes && safe != 0) {
    Cursor c{st, nl, ln, w, rd};
    i = isa == Isa::kAvx512 ? decode_avx512(slot, &c, safe, out) : decode_avx2(slot, &c, safe, out);
    ln = c.lane;
    rd = c.read;
  }
  for (; i < safe; ++i) {
    uint32_t x = st[ln];
    const uint32_t e = slot[x & (kProbScale - 1)];
    x = ((e >> 8 & 0xfffu) + 1) * (x >> kProbBits) + (e >> 20);
    const uint32_t word = u16_at(w + 2 * rd);
    // Arithmetic, not a select: compilers turn `need ? … : x` into a branch that mispredicts on about a third of
    // the symbols (a 4 M-symbol ecsq stream: 4.9 ns a symbol with the branch, 2.6 without).
    const uint32_t need = x < kStateLow;
    x = x << (need << 4) | (word & (0u - need));
    rd += need;
    st[ln] = x;
    out[i] = static_cast<uint8_t>(e);
    ln = ln + 1 == nl ? 0 : ln + 1;
  }
  bool ok = true;
  for (; i < n; ++i) {
    uint32_t x = st[ln];
    const uint32_t e = slot[x & (kProbScale - 1)];
    x = ((e >> 8 & 0xfffu) + 1) * (x >> kProbBits) + (e >> 20);
    if (x < kStateLow) {
      if (rd == nwords_) {
        ok = false;
        break;
      }
      x = x << 16 | u16_at(w + 2 * rd);
      ++rd;
    }
    st[ln] = x;
    out[i] = static_cast<uint8_t>(e);
    ln = ln + 1 == nl ? 0 : ln + 1;
  }
  lane_ = ln;
  read_ = rd;
  return ok;
}

}  // namespace rans
}  // namespace hyperonnx
