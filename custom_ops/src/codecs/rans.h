// The interleaved rANS stream reader shared by the entropy-coded codecs (`ecsq`, `tcq`, `grid`; docs/format.md, "rANS
// streams"; numpy: hyperonnx/codec/rans.py, Model.parse and decode).
//
// Untrusted blobs: parse_model() and Stream::open() check every byte they read against the blob length first;
// a frequency table must have n >= 1, lo + n <= 256 and sum to exactly 4096, every initial state must lie in
// [2^16, 2^32), a stream must not run out of words, and Stream::finish() requires every state back at 2^16 and
// every word read. Messages carry no codec prefix: the codec adds its own ("ecsq codec: ...").
//
// Arithmetic: the state update is exact 32-bit integer arithmetic (a state in [2^16, 2^32) decodes to one in
// [16, 2^32) and is refilled to [2^16, 2^32)).
//
// Also the segment framing both codecs share (Segments, for_segments): a tensor in segments of 2^17 blocks, one
// stream per segment after the codec's tables, each segment found by walking the stream headers before it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

namespace hyperonnx {
namespace rans {

constexpr uint32_t kProbBits = 12;
constexpr uint32_t kProbScale = 1u << kProbBits;
constexpr uint32_t kStateLow = 1u << 16;
constexpr uint32_t kMaxLanes = 4096;

inline uint32_t u16_at(const uint8_t* p) { return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8; }
inline uint32_t u32_at(const uint8_t* p) { return u16_at(p) | u16_at(p + 2) << 16; }

// Coder states for a stream of `count` symbols: min(4096, max(8, ceil(count / 4096))) (part of the format).
uint32_t lanes_for(uint64_t count);

// The decode loop's instruction set. The scalar loop runs everywhere and is the reference; the vector loops
// (rans_simd.cc) decode 8 (AVX2) or 16 (AVX-512) consecutive symbols, which lie on as many lanes, a step, to the
// same symbols, states and word position.
enum class Isa { kScalar, kAvx2, kAvx512 };

// Whether this CPU (and build) runs `isa`'s loop.
bool isa_available(Isa isa);

// The loop Stream::decode uses: the widest available, at most HYPERONNX_RANS_ISA ("scalar", "avx2"; read once, so
// a process can be pinned to the reference loop).
Isa default_isa();

// One alphabet's decoding table: per slot s (0..4095) the symbol (bits 0..7), freq − 1 (bits 8..19) and
// s − cum (bits 20..31) of the symbol whose [cum, cum + freq) holds s.
struct Model {
  uint32_t lo = 0, n = 0;
  uint32_t slot[kProbScale];
};

// Parses a frequency table at blob[*pos, len) into *m and moves *pos past it. On failure sets *error to
// "<what> model: ..." and returns false.
bool parse_model(const uint8_t* blob, size_t len, size_t* pos, const char* what, Model* m, std::string* error);

// The bytes of a stream of `symbols` symbols at blob[pos, len): its header (states, word count) and words. On
// failure (header or words past the end) sets *error to "truncated stream header" / "truncated stream".
bool stream_bytes(const uint8_t* blob, size_t len, size_t pos, uint64_t symbols, uint64_t* bytes, std::string* error);

// One stream being decoded: `lanes` states sharing one word stream; symbol i of the stream is on lane i mod lanes.
// Words are read in symbol order, which is the format's order (a step's lanes in increasing order, each reading
// at most one word, and no lane's decode depending on another's words). Holds 16 KiB of states: keep it off
// small stacks.
class Stream {
 public:
  // Opens the stream of `symbols` symbols at blob[*pos, len) and moves *pos past it. Errors: "truncated stream
  // header", "truncated stream", "corrupt stream (state out of range)".
  bool open(const uint8_t* blob, size_t len, size_t* pos, uint64_t symbols, std::string* error);
  // Decodes the next n symbols with model m into out; false when the words run out ("corrupt stream (ran out of
  // words)" is the caller's message).
  bool decode(const Model& m, uint64_t n, uint8_t* out) { return decode_using(default_isa(), m, n, out); }
  // The same with a given loop (available on this CPU): the tests compare the loops' symbols, states and errors.
  bool decode_using(Isa isa, const Model& m, uint64_t n, uint8_t* out);
  // The same, setting *error to "corrupt stream (ran out of words)" when the words run out.
  bool decode(const Model& m, uint64_t n, uint8_t* out, std::string* error) {
    if (decode(m, n, out)) return true;
    *error = "corrupt stream (ran out of words)";
    return false;
  }
  // After the last symbol: every word read and every state at 2^16.
  bool finished() const;
  // Where the stream stands: the lane of the next symbol, the words read, a lane's state (tests compare loops).
  uint32_t lane() const { return lane_; }
  uint64_t words_read() const { return read_; }
  uint32_t state(uint32_t l) const { return state_[l]; }

 private:
  uint32_t state_[kMaxLanes];
  uint32_t lanes_ = 0, lane_ = 0;
  const uint8_t* words_ = nullptr;
  uint64_t nwords_ = 0, read_ = 0;
};

// A tensor of `numel` elements in segments of 2^17 blocks of `block` elements (the last ones maybe shorter), each
// segment coded as one stream of side·blocks + elements symbols (`side`: the side symbols per block).
struct Segments {
  static constexpr uint64_t kBlocks = uint64_t{1} << 17;
  uint64_t numel = 0, block = 1, side = 1;
  uint64_t elems = 0;  // per full segment: 2^17 · block
  uint64_t count = 0;  // segments

  Segments() = default;
  Segments(uint64_t numel_, uint64_t block_, uint64_t side_)
      : numel(numel_), block(block_), side(side_), elems(kBlocks * block_), count((numel_ + elems - 1) / elems) {}

  uint64_t len(uint64_t g) const { return std::min(numel - g * elems, elems); }
  uint64_t blocks(uint64_t g) const { return (len(g) + block - 1) / block; }
  uint64_t symbols(uint64_t g) const { return side * blocks(g) + len(g); }
  // The least bytes of all the streams: per segment its states and its word count, no words.
  uint64_t min_bytes() const;
};

// Moves *pos past the streams of segments [0, u0); each one's header and words must lie inside the blob. On
// failure sets *error to "segment <g>: truncated stream ...".
bool skip_streams(const Segments& s, const uint8_t* blob, size_t len, uint64_t u0, size_t* pos, std::string* error);

// Decodes segments [u0, u1) of blob[pos, len), pos just past the codec's tables: skips the streams before u0,
// then per segment g opens its stream in *coder, calls segment(g, *coder, &message) (false: failed with that
// message) and requires the stream finished; the call holding the last segment also rejects trailing bytes. On
// failure sets *error to the message, without the codec's prefix ("segment <g>: ..." for a stream's errors).
template <class Segment>
bool for_segments(const Segments& s, const uint8_t* blob, size_t len, size_t pos, uint64_t u0, uint64_t u1,
                  Stream* coder, Segment&& segment, std::string* error) {
  if (!skip_streams(s, blob, len, u0, &pos, error)) return false;
  std::string e;
  for (uint64_t g = u0; g < u1; ++g) {
    if (!coder->open(blob, len, &pos, s.symbols(g), &e) || !segment(g, *coder, &e)) {
      *error = "segment " + std::to_string(g) + ": " + e;
      return false;
    }
    if (!coder->finished()) {
      *error = "segment " + std::to_string(g) + ": corrupt stream (final state check failed)";
      return false;
    }
  }
  if (u1 == s.count && pos != len) {
    *error = std::to_string(len - pos) + " unexpected byte(s) after the last stream";
    return false;
  }
  return true;
}

}  // namespace rans
}  // namespace hyperonnx
