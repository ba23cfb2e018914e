// The vector loops of rans::Stream::decode (rans.cc): the part of a decode call whose words are known to be in
// bounds, 8 (AVX2) or 16 (AVX-512) symbols a step. Symbol i of a stream is on lane i mod lanes, so consecutive
// symbols up to the row's end are on consecutive lanes: one step loads their states, gathers their slot entries,
// updates them, and hands the lanes that fell below 2^16 the next words in lane order (an expand of the words at
// the read position), then moves the read position by how many lanes took one. That is the scalar loop's
// arithmetic and word order, so the symbols, states and read position are the same after every step.
#pragma once

#include <cstdint>

namespace hyperonnx {
namespace rans {

// The fewest lanes the vector loops are used for (rans.cc says why).
constexpr uint32_t kVectorLanes = 16;

// A stream's position, as the loops read and advance it.
struct Cursor {
  uint32_t* states;      // one per lane
  uint32_t lanes, lane;  // lane: the next symbol's
  const uint8_t* words;  // the word stream
  uint64_t read;         // words read
};

// Each decodes the next n symbols with slot table `slot` into out and advances *c, for streams of kVectorLanes
// lanes or more; the caller guarantees c->read + n <= the stream's words (each symbol reads at most one), so no step
// checks a bound. They return how many symbols they decoded, the caller's scalar loop decoding the rest: AVX-512 all
// n (masked steps at a row's end and for the last ones), AVX2 all but the last 0 to 7 (a row's last 0 to 7 lanes
// one at a time). Only callable where isa_available() says so; elsewhere (aarch64) they decode nothing.
uint64_t decode_avx512(const uint32_t* slot, Cursor* c, uint64_t n, uint8_t* out);
uint64_t decode_avx2(const uint32_t* slot, Cursor* c, uint64_t n, uint8_t* out);

bool host_has_avx512();
bool host_has_avx2();

}  // namespace rans
}  // namespace hyperonnx
