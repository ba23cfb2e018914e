// CUDA HyperDecode test program (needs a GPU; tests/gpu/run.sh runs it):
//   golden     every golden case decodes on the GPU bit-identically to the numpy reference, into
//              NaN-poisoned (0xFF) buffers, through every kernel variant (word / byte code loads, row /
//              element copies, checked / unchecked) and through the C entry point
//   random     random in-range codes for many (dtype, bits, n, rings, shape) configurations, incl. a
//              table the CPU decoder does not build and a table too large for the device: GPU == CPU
//   malformed  wrong blob lengths, out-of-range codes (first, last, several), bad attributes: rejected,
//              with the CPU decoder's message
//   blockvq    random blobs of every b and dtype, several block sizes: GPU == CPU decoder on every path;
//              wrong lengths rejected with the CPU decoder's message
//   blocktcq   the same for blocktcq (odd and even blocks, up to 4096)
//   bandwidth  64M weights (paper n=1600, rings 3, bits 13; blockvq and blocktcq b=5, blocks of 32), float32 and
//              float16: decode vs cudaMemcpy device-to-device of the decoded bytes, median of 20 runs
// Usage: hyperonnx_cuda_golden_test <golden dir> [--bench-weights N] [--no-bandwidth]
// Exit: 0 all passed, 1 a check failed, 3 CUDA setup error (e.g. no kernel image for this GPU), 77 no GPU.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cuda_decoder.h"
#include "decoder.h"
#include "dtype.h"
#include "golden.h"
#include "hyperonnx/cuda.h"

using hyperonnx::Decoder;
using hyperonnx::DType;
using hyperonnx::MapAttrs;
using hyperonnx::cuda::CudaDecoder;

namespace {

int g_failures = 0;
int g_checks = 0;

bool check(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) {
    std::printf("FAIL: %s\n", what.c_str());
    ++g_failures;
  }
  return ok;
}

struct CudaFatal {
  std::string what;
};

void cu(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw CudaFatal{hyperonnx::cuda::cuda_error_message(e, what)};
}

// Device buffer with `pad` extra bytes in front (pointer misalignment tests).
struct DevBuf {
  uint8_t* base = nullptr;
  uint8_t* ptr = nullptr;
  size_t bytes = 0;
  DevBuf(size_t n, size_t pad = 0) : bytes(n) {
    cu(cudaMalloc(reinterpret_cast<void**>(&base), n + pad + 16), "cudaMalloc");
    ptr = base + pad;
  }
  ~DevBuf() { cudaFree(base); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  void upload(const std::vector<uint8_t>& v) { cu(cudaMemcpy(ptr, v.data(), v.size(), cudaMemcpyHostToDevice), "upload"); }
  // NaN in every output dtype. cudaMemset may still be running on the legacy stream when it returns; a decode on
  // a non-blocking stream does not wait for it, so wait here (else the poison can land after the decode).
  void poison() {
    cu(cudaMemset(ptr, 0xFF, bytes), "cudaMemset");
    cu(cudaDeviceSynchronize(), "cudaMemset (sync)");
  }
  std::vector<uint8_t> download() const {
    std::vector<uint8_t> v(bytes);
    cu(cudaMemcpy(v.data(), ptr, bytes, cudaMemcpyDeviceToHost), "download");
    return v;
  }
};

// LSB-first packing (docs/format.md, "Codes"), written independently of the decoder's unpacking.
std::vector<uint8_t> pack(const std::vector<uint32_t>& codes, int bits) {
  std::vector<uint8_t> out;
  out.reserve((codes.size() * static_cast<size_t>(bits) + 7) / 8);
  uint64_t acc = 0;
  int n = 0;
  const uint64_t mask = bits == 32 ? 0xffffffffull : (1ull << bits) - 1;
  for (uint32_t c : codes) {
    acc |= (static_cast<uint64_t>(c) & mask) << n;
    n += bits;
    while (n >= 8) {
      out.push_back(static_cast<uint8_t>(acc));
      acc >>= 8;
      n -= 8;
    }
  }
  if (n > 0) out.push_back(static_cast<uint8_t>(acc));
  return out;
}

std::string hex32(float f) {
  char b[16];
  std::snprintf(b, sizeof b, "%08x", hyperonnx::float_bits(f));
  return b;
}

// Attribute text of include/hyperonnx/cuda.h from a MapAttrs.
std::string attr_text(const MapAttrs& a) {
  std::ostringstream o;
  for (const auto& [k, v] : a.strings) o << "s " << k << " " << v << "\n";
  for (const auto& [k, v] : a.ints) {
    o << "i " << k;
    for (int64_t x : v) o << " " << x;
    o << "\n";
  }
  for (const auto& [k, v] : a.floats) {
    o << "f " << k;
    for (float x : v) o << " " << hex32(x);
    o << "\n";
  }
  return o.str();
}

std::unique_ptr<Decoder> make(const MapAttrs& a, std::string* error) { return Decoder::create(a, error); }

MapAttrs paper_attrs(int dtype, int bits, int64_t n, int rings, std::vector<int64_t> shape, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  MapAttrs a;
  a.strings["codec"] = "paper";
  a.strings["mode"] = "call";
  a.ints["format"] = {1};
  a.ints["dtype"] = {dtype};
  a.ints["group"] = {2};
  a.ints["bits"] = {bits};
  a.ints["shape"] = std::move(shape);
  a.ints["i_n"] = {n};
  a.ints["i_rings"] = {rings};
  a.floats["f_center"] = {0.1f * u(rng), 0.1f * u(rng)};
  a.floats["f_half"] = {0.5f + 0.25f * u(rng)};
  a.floats["f_step"] = {0.013f * (1.5f + u(rng)), 0.0071f * (1.5f + u(rng))};
  std::vector<float> scale;
  for (int i = 0; i <= rings; ++i) scale.push_back(1.0f + 0.5f * u(rng));
  a.floats["f_scale"] = scale;
  return a;
}

// GPU decode of `blob` into a poisoned buffer; returns ok and fills *out / *error.
bool gpu_decode(CudaDecoder& cd, const std::vector<uint8_t>& blob, size_t blob_pad, size_t out_pad, bool checked,
                std::vector<uint8_t>* out, std::string* error) {
  DevBuf b(blob.size(), blob_pad), o(cd.host().out_bytes(), out_pad);
  b.upload(blob);
  o.poison();
  const bool ok = cd.decode(b.ptr, blob.size(), o.ptr, nullptr, checked, error);
  cu(cudaDeviceSynchronize(), "decode");
  *out = o.download();
  return ok;
}

// One decoder through every GPU path against `expect`.
void all_paths(const std::string& name, const MapAttrs& attrs, const std::vector<uint8_t>& blob,
               const std::vector<uint8_t>& expect) {
  std::string error;
  auto dec = make(attrs, &error);
  if (!check(dec != nullptr, name + ": create: " + error)) return;
  const size_t esize = hyperonnx::dtype_size(dec->dtype());
  CudaDecoder cd(std::move(dec));
  struct Variant {
    const char* what;
    size_t blob_pad, out_pad;
    bool checked;
  };
  const Variant variants[] = {{"aligned", 0, 0, true},
                              {"blob+1 (byte loads)", 1, 0, true},
                              {"blob+2, out+elem (element copies)", 2, esize, true},
                              {"unchecked", 0, 0, false}};
  for (const Variant& v : variants) {
    std::vector<uint8_t> out;
    const bool ok = gpu_decode(cd, blob, v.blob_pad, v.out_pad, v.checked, &out, &error);
    if (check(ok, name + " [" + v.what + "]: " + error)) {
      check(out == expect, name + " [" + v.what + "]: output differs from the expected bytes");
    }
  }
  {
    DevBuf b(blob.size());
    b.upload(blob);
    check(cd.validate(b.ptr, blob.size(), nullptr, &error), name + " [validate]: " + error);
    check(cd.validate(blob.data(), blob.size(), nullptr, &error), name + " [validate host blob]: " + error);
  }
  {  // host blob: staged by the decoder
    DevBuf o(cd.host().out_bytes());
    o.poison();
    if (check(cd.decode(blob.data(), blob.size(), o.ptr, nullptr, true, &error), name + " [host blob]: " + error)) {
      check(o.download() == expect, name + " [host blob]: output differs");
    }
  }
  {  // C entry point, on a stream of our own
    cudaStream_t s;
    cu(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
    DevBuf b(blob.size()), o(expect.size());
    b.upload(blob);
    o.poison();
    char err[512] = {0};
    const std::string text = attr_text(attrs);
    const int rc = hyperonnx_cuda_decode(text.c_str(), b.ptr, blob.size(), o.ptr, expect.size(), s, err, sizeof err);
    if (check(rc == 0, name + " [C API]: rc " + std::to_string(rc) + ": " + err)) {
      check(o.download() == expect, name + " [C API]: output differs");
    }
    cudaStreamDestroy(s);
    std::vector<uint8_t> host(expect.size(), 0xFF);
    const int hrc = hyperonnx_cuda_host_decode(text.c_str(), blob.data(), blob.size(), host.data(), host.size(), err,
                                               sizeof err);
    check(hrc == 0 && host == expect, name + " [C API host decode]: " + err);
  }
}

void run_golden(const std::string& dir) {
  const auto cases = hyperonnx::test::load_cases(dir);
  const int before = g_failures;
  for (const auto& c : cases) {
    all_paths(c.name, c.attrs, c.blob, c.expect);
    // The golden file's own text is valid attribute text for the C entry point.
    std::ifstream in(dir + "/" + c.name + ".txt");
    std::stringstream text;
    text << in.rdbuf();
    char err[512] = {0};
    const int64_t nb = hyperonnx_cuda_out_bytes(text.str().c_str(), err, sizeof err);
    check(nb == static_cast<int64_t>(c.expect.size()), c.name + ": hyperonnx_cuda_out_bytes(golden text): " + err);
  }
  std::printf("golden: %zu cases, %s\n", cases.size(), g_failures == before ? "all bit-identical" : "FAILURES");
}

// ecsq, tcq and grid (no device kernel: host decode): the multi-segment digest cases through the CUDA decoder, and
// malformed blobs (a trailing byte, a flipped word, a cut stream, a bad frequency sum) rejected with the CPU decoder's
// message by checked and unchecked decodes and by validate, for device and host blobs.
void run_ecsq(const std::string& dir) {
  const int before = g_failures;
  int ran = 0;
  for (const auto& c : hyperonnx::test::load_digest_cases(dir)) {
    std::string error;
    CudaDecoder cd(make(c.attrs, &error));
    std::vector<uint8_t> out;
    if (check(gpu_decode(cd, c.blob, 0, 0, true, &out, &error), c.name + ": " + error)) {
      check(hyperonnx::test::matches(c, out), c.name + ": output differs from the digest");
    }
    ++ran;
  }
  for (const auto& c : hyperonnx::test::load_cases(dir)) {
    if (c.name != "ecsq_float32_B32_s0.25_19x41" && c.name != "tcq_float32_B32_s0.25_19x41" &&
        c.name != "grid_float32_B32_q4_1_3x96") {
      continue;
    }
    std::string error;
    auto dec = make(c.attrs, &error);
    CudaDecoder cd(make(c.attrs, &error));
    std::vector<uint8_t> scratch(dec->out_bytes()), out;
    std::vector<std::vector<uint8_t>> bads;
    bads.push_back(c.blob), bads.back().push_back(0);
    bads.push_back(c.blob), bads.back()[c.blob.size() - 2] ^= 0x40;
    bads.push_back(std::vector<uint8_t>(c.blob.begin(), c.blob.end() - 3));
    bads.push_back(c.blob), bads.back()[4] ^= 1;
    bads.push_back(std::vector<uint8_t>(c.blob.begin(), c.blob.begin() + 20));
    for (size_t i = 0; i < bads.size(); ++i) {
      const auto& b = bads[i];
      std::string cpu, g, u, v, vh;
      const bool cpu_ok = dec->decode(b.data(), b.size(), scratch.data(), 1, &cpu);
      check(!cpu_ok, "ecsq bad blob " + std::to_string(i) + ": CPU accepted");
      check(!gpu_decode(cd, b, 0, 0, true, &out, &g) && g == cpu, "ecsq bad blob " + std::to_string(i) + ": '" + g + "' vs '" + cpu + "'");
      check(!gpu_decode(cd, b, 1, 0, false, &out, &u) && u == cpu, "ecsq bad blob " + std::to_string(i) + " unchecked: '" + u + "'");
      DevBuf db(b.size() + 1);
      db.upload(b);
      check(!cd.validate(db.ptr, b.size(), nullptr, &v) && v == cpu, "ecsq bad blob " + std::to_string(i) + " validate: '" + v + "'");
      check(!cd.validate(b.data(), b.size(), nullptr, &vh) && vh == cpu, "ecsq bad blob " + std::to_string(i) + " validate host: '" + vh + "'");
      ++ran;
    }
  }
  std::printf("ecsq: %d host-decoded cases (digests, malformed), %s\n", ran, g_failures == before ? "GPU == CPU" : "FAILURES");
}

struct RandomConfig {
  int dtype, bits;
  int64_t n;
  int rings;
  std::vector<int64_t> shape;
};

void run_random(std::mt19937_64& rng) {
  const int before = g_failures;
  std::vector<RandomConfig> configs;
  const int dtypes[] = {1, 10, 11, 16};
  const int bit_list[] = {1, 2, 3, 4, 5, 7, 8, 9, 11, 12, 13, 15, 16, 17, 19, 23, 24, 31, 32};
  int k = 0;
  for (int bits : bit_list) {
    for (int dtype : dtypes) {
      // n: a table that fills 2^bits about half, or one larger than 2^bits (codes < 2^bits then).
      const uint64_t cap = bits >= 20 ? (uint64_t{1} << 14) : (uint64_t{1} << bits);
      const int rings = (k++ % 4);
      int64_t n = static_cast<int64_t>(std::max<uint64_t>(1, cap / (2 * (rings + 1))));
      if (k % 3 == 0) n = static_cast<int64_t>(std::min<uint64_t>(cap * 2, uint64_t{1} << 24));
      const int64_t numel = 1 + static_cast<int64_t>(rng() % 200000);  // odd sizes leave a partial last row
      configs.push_back({dtype, bits, n, rings, {numel}});
    }
  }
  configs.push_back({1, 13, 1600, 3, {1024, 1023}});  // the benchmark's codec, moderately large
  // CPU decoder skips its table (2^20 rows > count): the CUDA decoder generates it itself.
  configs.push_back({1, 20, int64_t{1} << 20, 0, {2001}});
  configs.push_back({10, 20, int64_t{1} << 20, 1, {3, 667}});
  // Table too large for the device (2^24 rows x 8 B > 64 MiB): decoded on the host, copied over.
  configs.push_back({1, 24, (int64_t{1} << 24) - 1, 0, {4097}});
  int host_fallbacks = 0, generated = 0;
  for (const RandomConfig& rc : configs) {
    const MapAttrs attrs = paper_attrs(rc.dtype, rc.bits, rc.n, rc.rings, rc.shape, rng);
    std::string error;
    auto dec = make(attrs, &error);
    const std::string name = "random dtype=" + std::to_string(rc.dtype) + " bits=" + std::to_string(rc.bits) +
                             " n=" + std::to_string(rc.n) + " rings=" + std::to_string(rc.rings) + " numel=" +
                             std::to_string(rc.shape.size() == 1 ? rc.shape[0] : rc.shape[0] * rc.shape[1]);
    if (!check(dec != nullptr, name + ": create: " + error)) continue;
    const uint64_t entries = dec->entries();
    const uint64_t limit = std::min<uint64_t>(entries, rc.bits == 32 ? (uint64_t{1} << 32) : (uint64_t{1} << rc.bits));
    std::vector<uint32_t> codes(dec->count());
    for (auto& c : codes) c = static_cast<uint32_t>(rng() % limit);
    if (!codes.empty()) {  // make sure the extremes occur
      codes[rng() % codes.size()] = static_cast<uint32_t>(limit - 1);
      codes[rng() % codes.size()] = 0;
    }
    const std::vector<uint8_t> blob = pack(codes, rc.bits);
    std::vector<uint8_t> expect(dec->out_bytes());
    if (!check(dec->decode(blob.data(), blob.size(), expect.data(), 4, &error), name + ": CPU decode: " + error)) continue;
    {
      CudaDecoder probe(make(attrs, &error));
      host_fallbacks += !probe.device_table();
      generated += probe.device_table() && probe.host().table().empty();
    }
    all_paths(name, attrs, blob, expect);

    // Out-of-range codes (only possible when the table has fewer than 2^bits rows).
    const uint64_t top = rc.bits == 32 ? (uint64_t{1} << 32) : (uint64_t{1} << rc.bits);
    if (entries >= top || codes.size() < 2) continue;
    std::vector<uint32_t> bad = codes;
    const size_t p1 = rng() % codes.size(), p2 = rng() % codes.size();
    bad[p1] = static_cast<uint32_t>(entries + rng() % (top - entries));
    bad[p2] = static_cast<uint32_t>(top - 1);
    const std::vector<uint8_t> bad_blob = pack(bad, rc.bits);
    std::string cpu_err, gpu_err, val_err;
    std::vector<uint8_t> scratch(dec->out_bytes());
    check(!dec->decode(bad_blob.data(), bad_blob.size(), scratch.data(), 1, &cpu_err), name + ": CPU accepted a bad code");
    CudaDecoder cd(make(attrs, &error));
    std::vector<uint8_t> out;
    check(!gpu_decode(cd, bad_blob, 0, 0, true, &out, &gpu_err), name + ": GPU accepted a bad code");
    check(gpu_err == cpu_err, name + ": GPU error '" + gpu_err + "' != CPU error '" + cpu_err + "'");
    DevBuf b(bad_blob.size(), 1);
    b.upload(bad_blob);
    check(!cd.validate(b.ptr, bad_blob.size(), nullptr, &val_err) && val_err == cpu_err,
          name + ": GPU validate error '" + val_err + "' != CPU error '" + cpu_err + "'");
    // Unchecked decode of a bad blob: must not fault (bad rows are skipped, never read out of bounds).
    std::string ignored;
    gpu_decode(cd, bad_blob, 0, 0, false, &out, &ignored);
  }
  std::printf("random: %zu configurations (%d with a GPU-generated table, %d host fallbacks), %s\n", configs.size(),
              generated, host_fallbacks, g_failures == before ? "GPU == CPU" : "FAILURES");
}

MapAttrs blockvq_attrs(int dtype, int b, int64_t block, std::vector<int64_t> shape, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  MapAttrs a;
  a.strings["codec"] = "blockvq";
  a.strings["mode"] = "call";
  a.ints["format"] = {1};
  a.ints["dtype"] = {dtype};
  a.ints["group"] = {2};
  a.ints["bits"] = {2 * b};
  a.ints["shape"] = std::move(shape);
  a.ints["i_block"] = {block};
  a.ints["i_levels"] = {int64_t{1} << b};
  a.floats["f_smax"] = {0.05f * (1.5f + u(rng))};
  std::vector<float> books(static_cast<size_t>(4) << b);
  for (auto& v : books) v = u(rng);
  a.floats["f_books"] = books;
  return a;
}

// blockvq: random level sets and blobs (every code and header is valid) for every b, dtype and several block
// sizes, GPU == CPU decoder through every path; wrong lengths rejected with the CPU decoder's message.
void run_blockvq(std::mt19937_64& rng) {
  const int before = g_failures;
  int configs = 0;
  for (int b = 1; b <= 8; ++b) {
    for (int dtype : {1, 10, 11, 16}) {
      const int64_t blocks[] = {2, 16, 32, 40, 64, 4096};
      const int64_t block = blocks[rng() % 6];
      const int64_t numel = 1 + static_cast<int64_t>(rng() % 200000);
      const MapAttrs attrs = blockvq_attrs(dtype, b, block, {numel}, rng);
      std::string error;
      auto dec = make(attrs, &error);
      const std::string name = "blockvq b=" + std::to_string(b) + " dtype=" + std::to_string(dtype) + " block=" +
                               std::to_string(block) + " numel=" + std::to_string(numel);
      if (!check(dec != nullptr, name + ": create: " + error)) continue;
      std::vector<uint8_t> blob(dec->blob_bytes());
      for (auto& x : blob) x = static_cast<uint8_t>(rng());
      std::vector<uint8_t> expect(dec->out_bytes());
      if (!check(dec->decode(blob.data(), blob.size(), expect.data(), 4, &error), name + ": CPU decode: " + error)) continue;
      all_paths(name, attrs, blob, expect);
      ++configs;
      if (b != 5) continue;
      CudaDecoder cd(make(attrs, &error));
      std::vector<uint8_t> out, scratch(dec->out_bytes());
      for (long delta : {-1L, 1L, -static_cast<long>(blob.size())}) {
        std::vector<uint8_t> bad = blob;
        bad.resize(static_cast<size_t>(static_cast<long>(blob.size()) + delta), 0);
        std::string g, c, v;
        dec->decode(bad.data(), bad.size(), scratch.data(), 1, &c);
        check(!gpu_decode(cd, bad, 0, 0, true, &out, &g) && g == c && g.find("block headers") != std::string::npos,
              name + ": length delta " + std::to_string(delta) + ": '" + g + "' vs '" + c + "'");
        DevBuf db(bad.size() + 1);
        db.upload(bad);
        check(!cd.validate(db.ptr, bad.size(), nullptr, &v) && v == c, name + ": validate length: '" + v + "'");
      }
    }
  }
  std::printf("blockvq: %d random configurations, %s\n", configs, g_failures == before ? "GPU == CPU" : "FAILURES");
}

MapAttrs blocktcq_attrs(int dtype, int b, int64_t block, std::vector<int64_t> shape, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  MapAttrs a;
  a.strings["codec"] = "blocktcq";
  a.strings["mode"] = "call";
  a.ints["format"] = {1};
  a.ints["dtype"] = {dtype};
  a.ints["group"] = {1};
  a.ints["bits"] = {b};
  a.ints["shape"] = std::move(shape);
  a.ints["i_block"] = {block};
  a.ints["i_levels"] = {int64_t{1} << b};
  a.floats["f_smax"] = {0.05f * (1.5f + u(rng))};
  std::vector<float> books(static_cast<size_t>(2) << b);  // level set 0; sets 1-3 are computed
  for (auto& v : books) v = u(rng);
  a.floats["f_books"] = books;
  return a;
}

// blocktcq: random level sets and blobs (every code and header is valid) for every b and dtype, odd and even blocks,
// GPU == CPU decoder through every path; wrong lengths rejected with the CPU decoder's message.
void run_blocktcq(std::mt19937_64& rng) {
  const int before = g_failures;
  int configs = 0;
  for (int b = 1; b <= 8; ++b) {
    for (int dtype : {1, 10, 11, 16}) {
      const int64_t blocks[] = {2, 7, 32, 33, 64, 4096};
      const int64_t block = blocks[rng() % 6];
      const int64_t numel = 1 + static_cast<int64_t>(rng() % 200000);
      const MapAttrs attrs = blocktcq_attrs(dtype, b, block, {numel}, rng);
      std::string error;
      auto dec = make(attrs, &error);
      const std::string name = "blocktcq b=" + std::to_string(b) + " dtype=" + std::to_string(dtype) + " block=" +
                               std::to_string(block) + " numel=" + std::to_string(numel);
      if (!check(dec != nullptr, name + ": create: " + error)) continue;
      std::vector<uint8_t> blob(dec->blob_bytes());
      for (auto& x : blob) x = static_cast<uint8_t>(rng());
      std::vector<uint8_t> expect(dec->out_bytes());
      if (!check(dec->decode(blob.data(), blob.size(), expect.data(), 4, &error), name + ": CPU decode: " + error)) continue;
      all_paths(name, attrs, blob, expect);
      ++configs;
      if (b != 5) continue;
      CudaDecoder cd(make(attrs, &error));
      std::vector<uint8_t> out, scratch(dec->out_bytes());
      for (long delta : {-1L, 1L, -static_cast<long>(blob.size())}) {
        std::vector<uint8_t> bad = blob;
        bad.resize(static_cast<size_t>(static_cast<long>(blob.size()) + delta), 0);
        std::string g, c, v;
        dec->decode(bad.data(), bad.size(), scratch.data(), 1, &c);
        check(!gpu_decode(cd, bad, 0, 0, true, &out, &g) && g == c && g.find("block headers") != std::string::npos,
              name + ": length delta " + std::to_string(delta) + ": '" + g + "' vs '" + c + "'");
        DevBuf db(bad.size() + 1);
        db.upload(bad);
        check(!cd.validate(db.ptr, bad.size(), nullptr, &v) && v == c, name + ": validate length: '" + v + "'");
      }
    }
  }
  std::printf("blocktcq: %d random configurations, %s\n", configs, g_failures == before ? "GPU == CPU" : "FAILURES");
}

void run_malformed(std::mt19937_64& rng) {
  const int before = g_failures;
  const MapAttrs attrs = paper_attrs(1, 7, 40, 0, {2, 333}, rng);  // entries 41 < 128
  std::string error, cpu_err;
  auto dec = make(attrs, &error);
  if (!check(dec != nullptr, "malformed: create: " + error)) return;
  std::vector<uint32_t> codes(dec->count());
  for (auto& c : codes) c = static_cast<uint32_t>(rng() % 41);
  const std::vector<uint8_t> blob = pack(codes, 7);
  CudaDecoder cd(make(attrs, &error));
  std::vector<uint8_t> out, scratch(dec->out_bytes());
  // Wrong lengths: the same message as the CPU decoder, before any device work.
  for (long delta : {-1L, 1L, -static_cast<long>(blob.size())}) {
    std::vector<uint8_t> b = blob;
    b.resize(static_cast<size_t>(static_cast<long>(blob.size()) + delta), 0);
    std::string g;
    const bool cpu_ok = dec->decode(b.data(), b.size(), scratch.data(), 1, &cpu_err);
    const bool gpu_ok = gpu_decode(cd, b, 0, 0, true, &out, &g);
    check(!cpu_ok && !gpu_ok && g == cpu_err, "malformed: length delta " + std::to_string(delta) + ": '" + g + "'");
    const bool unchecked_ok = gpu_decode(cd, b, 0, 0, false, &out, &g);
    check(!unchecked_ok, "malformed: unchecked decode accepted a wrong length");
  }
  // A bad code at the first and at the last position (the last goes through the byte loads).
  for (size_t pos : {size_t{0}, codes.size() - 1}) {
    for (uint32_t v : {41u, 127u}) {
      std::vector<uint32_t> bad = codes;
      bad[pos] = v;
      const std::vector<uint8_t> b = pack(bad, 7);
      std::string g;
      dec->decode(b.data(), b.size(), scratch.data(), 1, &cpu_err);
      check(!gpu_decode(cd, b, 0, 0, true, &out, &g) && g == cpu_err,
            "malformed: code " + std::to_string(v) + " at " + std::to_string(pos) + ": '" + g + "' vs '" + cpu_err + "'");
    }
  }
  // C entry point: attribute, size and pointer errors (rc 1, a message, nothing launched).
  DevBuf db(blob.size()), dout(dec->out_bytes());
  db.upload(blob);
  const std::string good = attr_text(attrs);
  struct Bad {
    std::string text;
    size_t out_len;
    const void* blob;
    const char* expect_in_message;
  };
  std::string bad_codec = good, bad_bits = good, no_shape = good;
  bad_codec.replace(bad_codec.find("s codec paper"), 13, "s codec nosuch");
  bad_bits.replace(bad_bits.find("i bits 7"), 8, "i bits 33");
  no_shape.replace(no_shape.find("i shape"), 7, "i shapeX");
  const Bad bads[] = {
      {bad_codec, dout.bytes, db.ptr, "unknown codec"},
      {bad_bits, dout.bytes, db.ptr, "bits must be in 1..32"},
      {no_shape, dout.bytes, db.ptr, "shape"},
      {"i bits x7\n", dout.bytes, db.ptr, "not an integer"},
      {"f f_half 1.5\n", dout.bytes, db.ptr, "bit pattern"},
      {"q what 1\n", dout.bytes, db.ptr, "unknown kind"},
      {good, dout.bytes - 4, db.ptr, "out holds"},
      {good, dout.bytes, nullptr, "null blob"},
  };
  for (const Bad& b : bads) {
    char err[512] = {0};
    const int rc = hyperonnx_cuda_decode(b.text.c_str(), b.blob, blob.size(), dout.ptr, b.out_len, nullptr, err, sizeof err);
    check(rc == 1 && std::strstr(err, b.expect_in_message) != nullptr,
          std::string("malformed C API: expected rc 1 with '") + b.expect_in_message + "', got rc " + std::to_string(rc) +
              ": " + err);
  }
  {
    char err[8] = {0};  // truncated message, still NUL-terminated
    const int rc = hyperonnx_cuda_decode(bad_codec.c_str(), db.ptr, blob.size(), dout.ptr, dout.bytes, nullptr, err, sizeof err);
    check(rc == 1 && std::strlen(err) == 7, "malformed C API: message truncation");
    check(hyperonnx_cuda_decode(nullptr, db.ptr, blob.size(), dout.ptr, dout.bytes, nullptr, nullptr, 0) == 1,
          "malformed C API: null attribute text");
  }
  std::printf("malformed: %s\n", g_failures == before ? "all rejected with the CPU decoder's messages" : "FAILURES");
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median over `runs` of the time of fn() on stream s, measured with events.
template <typename F>
double time_ms(cudaStream_t s, int runs, F fn) {
  cudaEvent_t a, b;
  cu(cudaEventCreate(&a), "event");
  cu(cudaEventCreate(&b), "event");
  for (int i = 0; i < 3; ++i) fn();
  cu(cudaStreamSynchronize(s), "warmup");
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) {
    cu(cudaEventRecord(a, s), "record");
    fn();
    cu(cudaEventRecord(b, s), "record");
    cu(cudaEventSynchronize(b), "sync");
    float ms = 0;
    cu(cudaEventElapsedTime(&ms, a, b), "elapsed");
    t.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return median(t);
}

// Wall time of fn() (which synchronizes itself), median over runs.
template <typename F>
double wall_ms(int runs, F fn) {
  for (int i = 0; i < 2; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return median(t);
}

void run_bandwidth(std::mt19937_64& rng, int64_t weights) {
  constexpr int kRuns = 20;
  for (int variant = 0; variant < 6; ++variant) {
    const int dtype = variant % 2 ? 10 : 1;
    const bool bvq = variant >= 2;  // blockvq (2, 3) or blocktcq (4, 5), b=5, blocks of 32 (their defaults)
    const bool tcq = variant >= 4;
    const MapAttrs attrs = tcq   ? blocktcq_attrs(dtype, 5, 32, {weights}, rng)
                           : bvq ? blockvq_attrs(dtype, 5, 32, {weights}, rng)
                                 : paper_attrs(dtype, 13, 1600, 3, {weights}, rng);
    std::string error;
    auto dec = make(attrs, &error);
    if (!check(dec != nullptr, "bandwidth: create: " + error)) return;
    std::vector<uint8_t> blob;
    if (bvq) {
      blob.resize(dec->blob_bytes());
      for (auto& x : blob) x = static_cast<uint8_t>(rng());
    } else {
      const uint64_t entries = dec->entries();  // 6404 < 2^13
      std::vector<uint32_t> codes(dec->count());
      for (auto& c : codes) c = static_cast<uint32_t>(rng() % entries);
      blob = pack(codes, 13);
    }
    std::vector<uint8_t> expect(dec->out_bytes());
    check(dec->decode(blob.data(), blob.size(), expect.data(), 16, &error), "bandwidth: CPU decode: " + error);
    const size_t out_bytes = dec->out_bytes();
    CudaDecoder cd(std::move(dec));
    DevBuf b(blob.size()), o(out_bytes), o2(out_bytes);
    b.upload(blob);
    o.poison();
    cudaStream_t s;
    cu(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
    check(cd.decode(b.ptr, blob.size(), o.ptr, s, true, &error), "bandwidth: GPU decode: " + error);
    check(o.download() == expect, "bandwidth: GPU output differs from the CPU decoder's");
    bool ok = true;
    const double dec_ms = time_ms(s, kRuns, [&] { ok &= cd.decode(b.ptr, blob.size(), o.ptr, s, false, &error); });
    const double cpy_ms = time_ms(s, kRuns, [&] {
      cu(cudaMemcpyAsync(o2.ptr, o.ptr, out_bytes, cudaMemcpyDeviceToDevice, s), "cudaMemcpyAsync");
    });
    const double checked_ms = wall_ms(kRuns, [&] { ok &= cd.decode(b.ptr, blob.size(), o.ptr, s, true, &error); });
    const double scan_ms = wall_ms(kRuns, [&] { ok &= cd.validate(b.ptr, blob.size(), s, &error); });
    check(ok, "bandwidth: timed decodes failed: " + error);
    check(o.download() == expect, "bandwidth: output after the timed runs differs");
    const double gb = static_cast<double>(out_bytes) / 1e9;
    std::printf("bandwidth %s %s: %lld weights, %.1f MiB out, %.1f MiB blob, median of %d\n",
                tcq ? "blocktcq b=5 B=32" : bvq ? "blockvq b=5 B=32" : "paper n=1600 rings=3",
                dtype == 1 ? "float32" : "float16",
                static_cast<long long>(weights), out_bytes / 1048576.0,
                blob.size() / 1048576.0, kRuns);
    std::printf("  decode (async, unchecked)  %8.3f ms  %7.1f GB/s of output\n", dec_ms, gb / (dec_ms / 1e3));
    std::printf("  cudaMemcpy D2D (same bytes)%8.3f ms  %7.1f GB/s\n", cpy_ms, gb / (cpy_ms / 1e3));
    std::printf("  decode vs memcpy: %.2fx the copy's speed (>1: decode is faster than copying the decoded tensor)\n",
                cpy_ms / dec_ms);
    std::printf("  checked decode incl. error readback + stream sync %8.3f ms (wall); range scan only %8.3f ms (wall)\n",
                checked_ms, scan_ms);
    cudaStreamDestroy(s);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <golden dir> [--bench-weights N] [--no-bandwidth]\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  int64_t weights = int64_t{64} << 20;
  bool bandwidth = true;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--no-bandwidth") bandwidth = false;
    if (a == "--bench-weights" && i + 1 < argc) weights = std::stoll(argv[++i]);
  }
  char info[1024];
  hyperonnx_cuda_info(info, sizeof info);
  std::printf("hyperonnx CUDA: %s\n", info);
  if (hyperonnx_cuda_available() == 0) {
    std::printf("SKIP: no CUDA device\n");
    return 77;
  }
  std::mt19937_64 rng(20240611);
  try {
    {  // setup probe: a kernel image for this GPU, a working launch
      std::mt19937_64 r(1);
      const MapAttrs attrs = paper_attrs(1, 5, 7, 0, {10}, r);
      std::string error;
      CudaDecoder cd(make(attrs, &error));
      DevBuf b(cd.host().blob_bytes()), o(cd.host().out_bytes());
      cu(cudaMemset(b.ptr, 0, b.bytes), "cudaMemset");
      if (!cd.decode(b.ptr, b.bytes, o.ptr, nullptr, true, &error)) {
        std::printf("CUDA setup error: %s\n", error.c_str());
        return 3;
      }
    }
    run_golden(dir);
    run_random(rng);
    run_malformed(rng);
    run_blockvq(rng);
    run_blocktcq(rng);
    run_ecsq(dir);
    if (bandwidth) run_bandwidth(rng, weights);
  } catch (const CudaFatal& e) {
    std::printf("FAIL: %s\n", e.what.c_str());
    return 1;
  } catch (const std::exception& e) {
    std::printf("FAIL: exception: %s\n", e.what());
    return 1;
  }
  std::printf("%s: %d checks, %d failed\n", g_failures == 0 ? "PASS" : "FAIL", g_checks, g_failures);
  return g_failures == 0 ? 0 : 1;
}
