// Host emulation of the CUDA HyperDecode kernels (no GPU, no CUDA toolkit needed): runs the exact kernel
// bodies and launch plan of custom_ops/src/cuda/decode_kernel.cuh, one emulated thread after another with
// grid strides 1 and 7, over every golden case and random tensors, with blobs at byte offsets 0..3 (word
// and byte code loads) and outputs aligned and misaligned to the row (row and element copies):
//   golden    output == the numpy reference bytes, NaN-poisoned buffers
//   random    output == the CPU decoder for paper tensors of every dtype and bits 1..32
//   badcodes  out-of-range codes: lowest index reported by decode and scan, the table never read for them
//   blockvq   blockvq_body (golden blockvq cases and random blobs of every b, dtype and block size) == the
//             numpy reference / the CPU decoder
//   blocktcq  blocktcq_kernel's warp (its 32 lanes in lockstep, the ballot emulated) over golden blocktcq cases and
//             random blobs of every b and dtype, odd sizes, blocks smaller than, equal to and spanning a warp's 32
//             weights, both loop forms (B a multiple of 32 or not), 1 and 3 warps == the numpy reference / the CPU
//             decoder; its lane masks == the parity walk
// The GPU itself is tested by cuda_golden_test.cc (tests/gpu/run.sh).
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda/decode_kernel.cuh"
#include "codecs/blockvq.h"
#include "cuda/host_table.h"
#include "decoder.h"
#include "golden.h"
#include "parallel.h"

using hyperonnx::Decoder;
using hyperonnx::MapAttrs;
using hyperonnx::cuda::DecodeArgs;
namespace detail = hyperonnx::cuda::detail;

namespace {

int g_failures = 0;

bool check(bool ok, const std::string& what) {
  if (!ok) {
    std::printf("FAIL: %s\n", what.c_str());
    ++g_failures;
  }
  return ok;
}

struct alignas(8) Word8 {
  uint32_t x, y;
};
struct alignas(16) Word16 {
  uint32_t x, y, z, w;
};

template <typename V>
void rows(const DecodeArgs& a, bool aligned, uint64_t n, uint64_t stride) {
  for (uint64_t t = 0; t < stride; ++t) {
    if (aligned) {
      detail::rows_body<V, true>(a, n, t, stride);
    } else {
      detail::rows_body<V, false>(a, n, t, stride);
    }
  }
}

template <typename T>
void elems(const DecodeArgs& a, bool aligned, uint64_t e0, uint64_t e1, uint64_t stride) {
  for (uint64_t t = 0; t < stride; ++t) {
    if (aligned) {
      detail::elems_body<T, true>(a, e0, e1, t, stride);
    } else {
      detail::elems_body<T, false>(a, e0, e1, t, stride);
    }
  }
}

// launch_decode of decode_kernel.cu with emulated launches; returns the plan's status.
detail::DecodePlan emulate_decode(const DecodeArgs& a, uint64_t stride) {
  detail::DecodePlan p = detail::plan_decode(a);
  if (a.numel == 0 || p.status != detail::DecodePlan::kOk) return p;
  switch (p.row_bytes) {
    case 2: rows<uint16_t>(a, p.blob_aligned, p.rows, stride); break;
    case 4: rows<uint32_t>(a, p.blob_aligned, p.rows, stride); break;
    case 8: rows<Word8>(a, p.blob_aligned, p.rows, stride); break;
    case 16: rows<Word16>(a, p.blob_aligned, p.rows, stride); break;
    default: break;
  }
  if (p.elems_from < a.numel) {
    switch (a.elem_bytes) {
      case 2: elems<uint16_t>(a, p.blob_aligned, p.elems_from, a.numel, stride); break;
      case 4: elems<uint32_t>(a, p.blob_aligned, p.elems_from, a.numel, stride); break;
      default: elems<unsigned long long>(a, p.blob_aligned, p.elems_from, a.numel, stride); break;
    }
  }
  return p;
}

void emulate_scan(const DecodeArgs& a, uint64_t stride) {
  for (uint64_t t = 0; t < stride; ++t) {
    if (detail::aligned_to(a.blob, 4)) {
      detail::scan_body<true>(a, t, stride);
    } else {
      detail::scan_body<false>(a, t, stride);
    }
  }
}

// 16-byte aligned scratch memory with a byte offset.
struct Buf {
  std::vector<Word16> storage;
  uint8_t* ptr;
  Buf(size_t bytes, size_t offset) : storage(bytes / 16 + 2) { ptr = reinterpret_cast<uint8_t*>(storage.data()) + offset; }
};

std::vector<uint8_t> pack(const std::vector<uint32_t>& codes, int bits) {
  std::vector<uint8_t> out;
  uint64_t acc = 0;
  int n = 0;
  for (uint32_t c : codes) {
    acc |= static_cast<uint64_t>(c) << n;
    n += bits;
    for (; n >= 8; n -= 8, acc >>= 8) out.push_back(static_cast<uint8_t>(acc));
  }
  if (n > 0) out.push_back(static_cast<uint8_t>(acc));
  return out;
}

struct Kinds {
  int rows = 0, elems = 0, warps = 0, whole = 0, byte_loads = 0, generated_tables = 0, too_large = 0, host_codec = 0;
};
Kinds g_kinds;

// blockvq: blockvq_body with blobs at byte offsets 0..3 (word and byte code loads) and outputs aligned and
// misaligned to a pair (pair and element stores), strides 1 and 7, against `expect`.
int g_blockvq = 0;
void run_blockvq_case(const std::string& name, const Decoder& dec, const std::vector<uint8_t>& blob,
                      const std::vector<uint8_t>& expect) {
  const hyperonnx::BlockVQParams* bp = hyperonnx::blockvq_params(dec.blocked());
  if (!check(bp != nullptr, name + ": not a blockvq decoder")) return;
  std::vector<uint8_t> own;
  const uint8_t* params = nullptr;
  size_t params_bytes = 0;
  if (!check(hyperonnx::cuda::device_table_bytes(dec, &own, &params, &params_bytes), name + ": no device params")) return;
  Buf pbuf(params_bytes, 0);
  std::memcpy(pbuf.ptr, params, params_bytes);
  const size_t esize = hyperonnx::dtype_size(dec.dtype());
  ++g_blockvq;
  for (size_t blob_off : {0, 1, 2, 3}) {
    for (size_t out_off : {size_t{0}, esize}) {
      for (uint64_t stride : {1, 7}) {
        Buf b(blob.size(), blob_off), o(dec.out_bytes(), out_off);
        if (!blob.empty()) std::memcpy(b.ptr, blob.data(), blob.size());
        std::memset(o.ptr, 0xFF, dec.out_bytes());
        hyperonnx::cuda::BlockVQArgs a;
        a.blob = b.ptr;
        a.blob_len = blob.size();
        a.code_bytes = bp->code_bytes;
        a.level_bits = bp->level_bits;
        a.pairs_per_block = bp->block / 2;
        a.count = bp->count;
        a.numel = bp->numel;
        a.params = reinterpret_cast<const float*>(pbuf.ptr);
        a.dtype = static_cast<int>(bp->dtype);
        a.out = o.ptr;
        const std::string what = name + " [blockvq blob+" + std::to_string(blob_off) + " out+" +
                                 std::to_string(out_off) + " stride " + std::to_string(stride) + "]";
        const detail::BlockVQPlan p = detail::plan_blockvq(a);
        if (!check(p.status == detail::BlockVQPlan::kOk, what + ": plan refused")) continue;
        g_kinds.byte_loads += !p.blob_aligned;
        g_kinds.elems += !p.pair_store;
        g_kinds.rows += p.pair_store;
        for (uint64_t t = 0; t < stride; ++t) {
          auto body = [&](auto dt) {
            constexpr int kDt = decltype(dt)::value;
            if (p.blob_aligned && p.pair_store) detail::blockvq_body<kDt, true, true>(a, t, stride);
            if (p.blob_aligned && !p.pair_store) detail::blockvq_body<kDt, true, false>(a, t, stride);
            if (!p.blob_aligned && p.pair_store) detail::blockvq_body<kDt, false, true>(a, t, stride);
            if (!p.blob_aligned && !p.pair_store) detail::blockvq_body<kDt, false, false>(a, t, stride);
          };
          switch (a.dtype) {
            case 1: body(std::integral_constant<int, 1>{}); break;
            case 10: body(std::integral_constant<int, 10>{}); break;
            case 11: body(std::integral_constant<int, 11>{}); break;
            default: body(std::integral_constant<int, 16>{}); break;
          }
        }
        check(std::memcmp(o.ptr, expect.data(), expect.size()) == 0, what + ": output differs");
      }
    }
  }
}

// blocktcq_kernel of decode_kernel.cu, warp `warp` of `nwarps`, its 32 lanes in lockstep: each chunk's phase 1
// (tcq_theta) for every lane, the ballot built from the lanes' predicates as __ballot_sync does (bit l = lane l's
// θ & 1, all 32 lanes taking part), then phase 2 (tcq_store) for every lane and the warp-uniform carry.
template <int DT, bool kAligned, bool kWhole>
void emulate_blocktcq_warp(const hyperonnx::cuda::BlockTcqArgs& a, uint64_t warp, uint64_t nwarps) {
  const uint32_t mask = detail::code_mask(static_cast<uint32_t>(a.level_bits));
  const uint64_t units = detail::tcq_units(a);
  for (uint64_t unit = warp; unit < units; unit += nwarps) {
    const detail::TcqSpan sp = detail::tcq_span(a, unit);
    detail::TcqCarry carry;
    detail::TcqWhole w = detail::tcq_whole_start(a, sp);
    for (uint64_t c0 = sp.r0; c0 < sp.r1; c0 += 32) {
      uint32_t theta[32];
      uint32_t ballot = 0;
      for (uint32_t lane = 0; lane < 32; ++lane) {
        theta[lane] = detail::tcq_theta<kAligned>(a, mask, c0 + lane, sp.r1);
        ballot |= static_cast<uint32_t>((theta[lane] & 1u) != 0) << lane;
      }
      for (uint32_t lane = 0; lane < 32; ++lane) {
        if (kWhole) {
          detail::tcq_store_whole<DT>(a, theta[lane], c0, lane, sp.r1, ballot, w);
        } else {
          detail::tcq_store<DT>(a, theta[lane], c0, lane, sp.r1, ballot, carry);
        }
      }
      if (kWhole) {
        detail::tcq_whole_next(a, ballot, w);
      } else {
        carry = detail::tcq_next_carry(a, c0, sp.r1, ballot, carry);
      }
    }
  }
}

// The blocktcq trellis parity as a walk (docs/format.md: u_t = (θ_t & 1) ⊕ u_(t−2) ⊕ u_(t−3), the parity before t
// is u_(t−1)) against the warp's masks, for every 32-bit pattern of low bits in a sample and every carry.
void check_tcq_masks(std::mt19937_64& rng) {
  int checked = 0;
  for (int n = 0; n < 4000; ++n) {
    const uint32_t ballot = n < 64 ? (n < 32 ? 1u << n : ~0u >> (n - 32)) : static_cast<uint32_t>(rng());
    for (uint32_t c = 0; c < 8; ++c) {
      detail::TcqCarry carry;
      carry.v1 = c & 1;
      carry.v2 = (c >> 1) & 1;
      carry.v3 = (c >> 2) & 1;
      uint32_t u1 = carry.v1, u2 = carry.v2, u3 = carry.v3;
      const uint32_t folded = detail::tcq_fold(ballot, carry);
      for (uint32_t t = 0; t < 32; ++t) {
        const uint32_t u = ((ballot >> t) & 1u) ^ u2 ^ u3;
        u3 = u2;
        u2 = u1;
        u1 = u;
        check(detail::tcq_u(ballot, folded, 0, 0, t) == u, "tcq mask: lane " + std::to_string(t));
        for (uint32_t s = 1; s <= t && c == 0; ++s) {  // a block starting at lane s: the walk from s
          uint32_t w1 = 0, w2 = 0, w3 = 0;
          for (uint32_t k = s; k <= t; ++k) {
            const uint32_t w = ((ballot >> k) & 1u) ^ w2 ^ w3;
            w3 = w2;
            w2 = w1;
            w1 = w;
          }
          check(detail::tcq_u(ballot, folded, 0, s, t) == w1, "tcq mask: lane " + std::to_string(t) + " from " +
                                                                  std::to_string(s));
        }
        ++checked;
      }
    }
  }
  std::printf("blocktcq warp parity: %d (ballot, carry, lane) triples == the walk\n", checked);
}

// blocktcq: the emulated warp kernel with blobs at byte offsets 0..3 (word and byte code loads), outputs at element
// offsets 0 and 1, grids of 1 and 3 warps, against `expect`.
int g_blocktcq = 0;
void run_blocktcq_case(const std::string& name, const Decoder& dec, const std::vector<uint8_t>& blob,
                       const std::vector<uint8_t>& expect) {
  const hyperonnx::BlockVQParams* bp = hyperonnx::blocktcq_params(dec.blocked());
  if (!check(bp != nullptr, name + ": not a blocktcq decoder")) return;
  std::vector<uint8_t> own;
  const uint8_t* params = nullptr;
  size_t params_bytes = 0;
  if (!check(hyperonnx::cuda::device_table_bytes(dec, &own, &params, &params_bytes), name + ": no device params")) return;
  check(params_bytes == (256 + 8 * size_t{bp->levels}) * 4, name + ": device params are not 256 scales and 4·2L levels");
  Buf pbuf(params_bytes, 0);
  std::memcpy(pbuf.ptr, params, params_bytes);
  const size_t esize = hyperonnx::dtype_size(dec.dtype());
  ++g_blocktcq;
  for (size_t blob_off : {0, 1, 2, 3}) {
    for (size_t out_off : {size_t{0}, esize}) {
      for (uint64_t stride : {1, 3}) {
        Buf b(blob.size(), blob_off), o(dec.out_bytes(), out_off);
        if (!blob.empty()) std::memcpy(b.ptr, blob.data(), blob.size());
        std::memset(o.ptr, 0xFF, dec.out_bytes());
        hyperonnx::cuda::BlockTcqArgs a;
        a.blob = b.ptr;
        a.blob_len = blob.size();
        a.code_bytes = bp->code_bytes;
        a.level_bits = bp->level_bits;
        a.block = bp->block;
        a.nblocks = bp->nblocks;
        a.numel = bp->numel;
        a.params = reinterpret_cast<const float*>(pbuf.ptr);
        a.dtype = static_cast<int>(bp->dtype);
        a.out = o.ptr;
        const std::string what = name + " [blocktcq blob+" + std::to_string(blob_off) + " out+" +
                                 std::to_string(out_off) + " stride " + std::to_string(stride) + "]";
        const detail::BlockTcqPlan p = detail::plan_blocktcq(a);
        if (!check(p.status == detail::BlockTcqPlan::kOk, what + ": plan refused")) continue;
        g_kinds.byte_loads += !p.blob_aligned;
        ++g_kinds.warps;
        g_kinds.whole += p.whole_chunks;
        for (uint64_t t = 0; t < stride; ++t) {
          auto body = [&](auto dt) {
            constexpr int kDt = decltype(dt)::value;
            if (p.blob_aligned && p.whole_chunks) emulate_blocktcq_warp<kDt, true, true>(a, t, stride);
            if (p.blob_aligned && !p.whole_chunks) emulate_blocktcq_warp<kDt, true, false>(a, t, stride);
            if (!p.blob_aligned && p.whole_chunks) emulate_blocktcq_warp<kDt, false, true>(a, t, stride);
            if (!p.blob_aligned && !p.whole_chunks) emulate_blocktcq_warp<kDt, false, false>(a, t, stride);
          };
          switch (a.dtype) {
            case 1: body(std::integral_constant<int, 1>{}); break;
            case 10: body(std::integral_constant<int, 10>{}); break;
            case 11: body(std::integral_constant<int, 11>{}); break;
            default: body(std::integral_constant<int, 16>{}); break;
          }
        }
        check(std::memcmp(o.ptr, expect.data(), expect.size()) == 0, what + ": output differs");
      }
    }
  }
}

MapAttrs blocktcq(int dtype, int b, int64_t block, int64_t numel, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  MapAttrs a;
  a.strings["codec"] = "blocktcq";
  a.ints["format"] = {1};
  a.ints["dtype"] = {dtype};
  a.ints["group"] = {1};
  a.ints["bits"] = {b};
  a.ints["shape"] = {numel};
  a.ints["i_block"] = {block};
  a.ints["i_levels"] = {int64_t{1} << b};
  a.floats["f_smax"] = {0.05f * (1.5f + u(rng))};
  std::vector<float> books(static_cast<size_t>(2) << b);  // level set 0; sets 1-3 are computed
  for (auto& v : books) v = u(rng);
  a.floats["f_books"] = books;
  return a;
}

MapAttrs blockvq(int dtype, int b, int64_t block, int64_t numel, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  MapAttrs a;
  a.strings["codec"] = "blockvq";
  a.ints["format"] = {1};
  a.ints["dtype"] = {dtype};
  a.ints["group"] = {2};
  a.ints["bits"] = {2 * b};
  a.ints["shape"] = {numel};
  a.ints["i_block"] = {block};
  a.ints["i_levels"] = {int64_t{1} << b};
  a.floats["f_smax"] = {0.05f * (1.5f + u(rng))};
  std::vector<float> books(static_cast<size_t>(4) << b);
  for (auto& v : books) v = u(rng);
  a.floats["f_books"] = books;
  return a;
}

// Every variant against `expect`; bad_expected: the lowest out-of-range code index, or UINT64_MAX.
void run_case(const std::string& name, const Decoder& dec, const std::vector<uint8_t>& blob,
              const std::vector<uint8_t>& expect, uint64_t bad_expected = ~0ull) {
  if (dec.blocked() && hyperonnx::blocktcq_params(dec.blocked())) return run_blocktcq_case(name, dec, blob, expect);
  if (dec.blocked() && !hyperonnx::blockvq_params(dec.blocked())) {
    // A blocked codec without a device kernel (ecsq, tcq, grid): the CUDA decoder decodes it on the host with the CPU decoder
    // (CudaDecoder::host_decode) and uploads the result; check that route and its output.
    std::vector<uint8_t> own;
    const uint8_t* table = nullptr;
    size_t table_bytes = 0;
    check(!hyperonnx::cuda::device_table_bytes(dec, &own, &table, &table_bytes), name + ": device table for a host codec");
    std::vector<uint8_t> out(dec.out_bytes(), 0xFF);
    std::string error;
    check(dec.decode(blob.data(), blob.size(), out.data(), hyperonnx::default_decode_threads(), &error),
          name + ": host decode: " + error);
    check(out == expect, name + ": host decode output differs");
    ++g_kinds.host_codec;
    return;
  }
  if (dec.blocked()) return run_blockvq_case(name, dec, blob, expect);
  std::vector<uint8_t> own;
  const uint8_t* table = nullptr;
  size_t table_bytes = 0;
  if (!hyperonnx::cuda::device_table_bytes(dec, &own, &table, &table_bytes)) {
    ++g_kinds.too_large;  // the CUDA decoder decodes these on the host
    return;
  }
  g_kinds.generated_tables += dec.table().empty();
  Buf tbuf(table_bytes, 0);
  std::memcpy(tbuf.ptr, table, table_bytes);
  const size_t esize = hyperonnx::dtype_size(dec.dtype());
  for (size_t blob_off : {0, 1, 2, 3}) {
    for (size_t out_off : {size_t{0}, esize}) {
      for (uint64_t stride : {1, 7}) {
        Buf b(blob.size(), blob_off), o(dec.out_bytes(), out_off);
        if (!blob.empty()) std::memcpy(b.ptr, blob.data(), blob.size());
        std::memset(o.ptr, 0xFF, dec.out_bytes());
        unsigned long long bad = ~0ull;
        DecodeArgs a;
        a.blob = b.ptr;
        a.blob_len = blob.size();
        a.bits = dec.bits();
        a.count = dec.count();
        a.entries = dec.entries();
        a.table = tbuf.ptr;
        a.elem_bytes = static_cast<uint32_t>(esize);
        a.group = dec.group();
        a.numel = dec.numel();
        a.out = o.ptr;
        a.bad_index = &bad;
        const std::string what = name + " [blob+" + std::to_string(blob_off) + " out+" + std::to_string(out_off) +
                                 " stride " + std::to_string(stride) + "]";
        const detail::DecodePlan p = emulate_decode(a, stride);
        if (!check(p.status == detail::DecodePlan::kOk, what + ": plan refused")) continue;
        g_kinds.rows += p.row_bytes != 0;
        g_kinds.elems += p.elems_from < a.numel;
        g_kinds.byte_loads += !p.blob_aligned;
        check(bad == bad_expected, what + ": bad index " + std::to_string(bad) + ", expected " + std::to_string(bad_expected));
        if (bad_expected == ~0ull) {
          check(std::memcmp(o.ptr, expect.data(), expect.size()) == 0, what + ": output differs");
        }
        unsigned long long scanned = ~0ull;
        a.bad_index = &scanned;
        emulate_scan(a, stride);
        check(scanned == bad_expected, what + ": scan found " + std::to_string(scanned));
      }
    }
  }
}

MapAttrs paper(int dtype, int bits, int64_t n, int rings, int64_t numel, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  MapAttrs a;
  a.strings["codec"] = "paper";
  a.ints["format"] = {1};
  a.ints["dtype"] = {dtype};
  a.ints["group"] = {2};
  a.ints["bits"] = {bits};
  a.ints["shape"] = {numel};
  a.ints["i_n"] = {n};
  a.ints["i_rings"] = {rings};
  a.floats["f_center"] = {0.1f * u(rng), 0.1f * u(rng)};
  a.floats["f_half"] = {0.5f};
  a.floats["f_step"] = {0.013f * (1.5f + u(rng)), 0.0071f * (1.5f + u(rng))};
  std::vector<float> scale;
  for (int i = 0; i <= rings; ++i) scale.push_back(1.0f + 0.5f * u(rng));
  a.floats["f_scale"] = scale;
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <golden dir>\n", argv[0]);
    return 2;
  }
  const auto cases = hyperonnx::test::load_cases(argv[1]);
  for (const auto& c : cases) {
    std::string error;
    auto dec = Decoder::create(c.attrs, &error);
    if (!check(dec != nullptr, c.name + ": " + error)) continue;
    run_case(c.name, *dec, c.blob, c.expect);
  }
  std::mt19937_64 rng(5);
  check_tcq_masks(rng);
  int random = 0, bad_cases = 0;
  for (int bits = 1; bits <= 32; ++bits) {
    for (int dtype : {1, 10, 11, 16}) {
      const int rings = static_cast<int>(rng() % 4);
      const uint64_t cap = bits >= 16 ? (uint64_t{1} << 15) : (uint64_t{1} << bits);
      const int64_t n = static_cast<int64_t>(std::max<uint64_t>(1, cap / (2 * (rings + 1)) + rng() % 3));
      const int64_t numel = 1 + static_cast<int64_t>(rng() % 3000);
      std::string error;
      auto dec = Decoder::create(paper(dtype, bits, n, rings, numel, rng), &error);
      if (!check(dec != nullptr, "random: " + error)) continue;
      const uint64_t top = bits == 32 ? (uint64_t{1} << 32) : (uint64_t{1} << bits);
      const uint64_t limit = std::min<uint64_t>(dec->entries(), top);
      std::vector<uint32_t> codes(dec->count());
      for (auto& x : codes) x = static_cast<uint32_t>(rng() % limit);
      codes.back() = static_cast<uint32_t>(limit - 1);
      const std::vector<uint8_t> blob = pack(codes, bits);
      std::vector<uint8_t> expect(dec->out_bytes());
      if (!check(dec->decode(blob.data(), blob.size(), expect.data(), 1, &error), "random CPU: " + error)) continue;
      const std::string name = "random bits=" + std::to_string(bits) + " dtype=" + std::to_string(dtype);
      run_case(name, *dec, blob, expect);
      ++random;
      if (dec->entries() >= top || codes.size() < 3) continue;
      std::vector<uint32_t> bad = codes;
      const size_t p1 = 1 + rng() % (codes.size() - 1), p2 = rng() % codes.size();
      bad[p1] = static_cast<uint32_t>(dec->entries() + rng() % (top - dec->entries()));
      bad[p2] = static_cast<uint32_t>(top - 1);
      run_case(name + " bad codes", *dec, pack(bad, bits), expect, std::min(p1, p2));
      ++bad_cases;
    }
  }
  // blockvq: random level sets and blobs (every code and header value is valid), GPU body == CPU decoder
  // (whose fused path takes the blocks of multiples of 16 weights, its generic path the others).
  int random_bvq = 0;
  for (int b = 1; b <= 8; ++b) {
    for (int dtype : {1, 10, 11, 16}) {
      for (int64_t block : {2, 16, 32, 40, 4096}) {
        if ((b + dtype + block) % 2 == 0 && block != 32) continue;  // a sample of the combinations
        const int64_t numel = 1 + static_cast<int64_t>(rng() % 6000);
        std::string error;
        auto dec = Decoder::create(blockvq(dtype, b, block, numel, rng), &error);
        if (!check(dec != nullptr, "random blockvq: " + error)) continue;
        std::vector<uint8_t> blob(dec->blob_bytes());
        for (auto& x : blob) x = static_cast<uint8_t>(rng());
        std::vector<uint8_t> expect(dec->out_bytes());
        if (!check(dec->decode(blob.data(), blob.size(), expect.data(), 1, &error), "random blockvq CPU: " + error)) {
          continue;
        }
        run_case("random blockvq b=" + std::to_string(b) + " dtype=" + std::to_string(dtype) + " block=" +
                     std::to_string(block) + " numel=" + std::to_string(numel),
                 *dec, blob, expect);
        ++random_bvq;
      }
    }
  }
  // blocktcq: random level sets and blobs (every code and header value is valid), odd and even blocks (a block of
  // 4096 spans the CPU decoder's 512-code chunks), GPU body == CPU decoder.
  int random_btcq = 0;
  for (int b = 1; b <= 8; ++b) {
    for (int dtype : {1, 10, 11, 16}) {
      for (int64_t block : {2, 7, 32, 33, 64, 100, 300, 4096}) {
        if ((b + dtype + block) % 2 == 0 && block != 32) continue;  // a sample of the combinations
        const int64_t numel = 1 + static_cast<int64_t>(rng() % 6000);
        std::string error;
        auto dec = Decoder::create(blocktcq(dtype, b, block, numel, rng), &error);
        if (!check(dec != nullptr, "random blocktcq: " + error)) continue;
        std::vector<uint8_t> blob(dec->blob_bytes());
        for (auto& x : blob) x = static_cast<uint8_t>(rng());
        std::vector<uint8_t> expect(dec->out_bytes());
        if (!check(dec->decode(blob.data(), blob.size(), expect.data(), 1, &error), "random blocktcq CPU: " + error)) {
          continue;
        }
        run_case("random blocktcq b=" + std::to_string(b) + " dtype=" + std::to_string(dtype) + " block=" +
                     std::to_string(block) + " numel=" + std::to_string(numel),
                 *dec, blob, expect);
        ++random_btcq;
      }
    }
  }
  std::printf("emulated kernels: %zu golden cases, %d random tensors, %d with bad codes, %d random blockvq tensors "
              "(%d blockvq cases in all), %d random blocktcq tensors (%d blocktcq cases in all); launches: %d "
              "row/pair-kernel, %d element-kernel, %d blocktcq warp-kernel (%d with B a multiple of 32), %d with byte code loads; %d tables generated for the device, "
              "%d too large, %d host-decoded codec cases (ecsq, tcq, grid)\n",
              cases.size(), random, bad_cases, random_bvq, g_blockvq, random_btcq, g_blocktcq, g_kinds.rows,
              g_kinds.elems, g_kinds.warps, g_kinds.whole, g_kinds.byte_loads, g_kinds.generated_tables, g_kinds.too_large, g_kinds.host_codec);
  std::printf("%s: %d failures\n", g_failures == 0 ? "PASS" : "FAIL", g_failures);
  return g_failures == 0 ? 0 : 1;
}
