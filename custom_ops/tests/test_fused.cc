// C++ tests of the fused kernels' core (custom_ops/src/fused/; no ONNX Runtime needed), on the SIMD and the portable
// kernels (HYPERONNX_FUSED_ISA=scalar):
//   golden     every float32 blockvq / blocktcq golden case, viewed as several K × N matrices: row segments of any
//              size decode to the reference's bits, HyperMatMul's tiles with A = I give W exactly, HyperGemm's
//              transposing tiles Wᵀ, and HyperGather every row;
//   random     random blocktcq blobs at every code width, blocks of 32 and 64 and rows ending inside blocks: the SIMD
//              decode equals the codec's own decoder, and a product equals a float64 one within 1e-5 relative;
//              the blob also ends where an inaccessible page starts, so a kernel reading past it faults (ASan does
//              not see SIMD intrinsic loads under every compiler);
//   malformed  codecs, dtypes and ranks the fused ops do not take, and bad blob lengths, are refused with a message;
//   dispatch   which blocktcq decode kernel each HYPERONNX_FUSED_ISA setting picks at every code width: on aarch64 the
//              NEON kernel (tests/platform/test_edge.py asserts its line under qemu), so golden and random above
//              compare it with the codec's decoder; and each SIMD family's kernel table (decode, GEMV and
//              transposed product for every batch M) is complete at the widths it takes and empty elsewhere.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#include "fused/gather.h"
#include "fused/matmul.h"
#include "fused/matmul_nt.h"
#include "fused/tcq_neon.h"
#include "fused/tcq_vbmi.h"
#include "fused/weight.h"
#include "golden.h"

using hyperonnx::FusedWeight;
using hyperonnx::MapAttrs;
using hyperonnx::test::GoldenCase;

namespace {

int g_failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
    ++g_failures;
  }
}

// Every kernel family this CPU has: "" (the best: AVX-512, AVX2 or NEON), avx2 (x86), scalar.
const char* const kIsas[] = {"", "avx2", "scalar"};

void set_isa(const char* isa) {
  if (*isa == 0) {
    unsetenv("HYPERONNX_FUSED_ISA");
  } else {
    setenv("HYPERONNX_FUSED_ISA", isa, 1);
  }
}

// A copy of a blob whose last byte ends a page, the next page inaccessible.
class GuardedBlob {
 public:
  explicit GuardedBlob(const std::vector<uint8_t>& blob) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    span_ = (blob.size() + page - 1) / page * page + page;
    void* base = mmap(nullptr, span_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return;
    base_ = static_cast<uint8_t*>(base);
    if (mprotect(base_ + span_ - page, page, PROT_NONE) != 0) return;
    data_ = base_ + span_ - page - blob.size();
    std::memcpy(data_, blob.data(), blob.size());
  }
  ~GuardedBlob() {
    if (base_ != nullptr) munmap(base_, span_);
  }
  GuardedBlob(const GuardedBlob&) = delete;
  GuardedBlob& operator=(const GuardedBlob&) = delete;
  const uint8_t* data() const { return data_; }

 private:
  uint8_t* base_ = nullptr;
  uint8_t* data_ = nullptr;
  size_t span_ = 0;
};

// The whole weight, I × W at M = 1 (the register GEMV where the kernel has one) and the transposed product at M = 1,
// all from a blob at a page's end (a read past it faults); the decode must be the reference's bits.
void check_guarded(const std::string& name, const FusedWeight& w, const std::vector<uint8_t>& blob,
                   const float* expect) {
  const GuardedBlob guarded(blob);
  check(guarded.data() != nullptr, name + ": mmap failed");
  if (guarded.data() == nullptr) return;
  const int64_t k = w.rows(), n = w.cols();
  const size_t numel = static_cast<size_t>(k * n);
  std::string error;
  std::vector<float> out(numel, -7.0f), scratch;
  check(w.decode(guarded.data(), blob.size(), 0, numel, out.data(), &scratch, &error) &&
            std::memcmp(out.data(), expect, numel * sizeof(float)) == 0,
        name + ": the guarded blob's decode differs from the reference (" + w.decode_kernel() + ") " + error);
  std::vector<float> a(static_cast<size_t>(k), 0.5f), y(static_cast<size_t>(n)), at(static_cast<size_t>(n), 0.5f),
      yt(static_cast<size_t>(k));
  check(hyperonnx::fused_matmul(w, guarded.data(), blob.size(), a.data(), 1, y.data(), &error) &&
            hyperonnx::fused_matmul_nt(w, guarded.data(), blob.size(), at.data(), 1, yt.data(), &error),
        name + ": guarded products: " + error);
}

// Y = A × W, A: M × K row-major.
std::vector<float> matmul(const FusedWeight& w, const std::vector<uint8_t>& blob, const std::vector<float>& a,
                          int64_t m, std::string* error) {
  std::vector<float> y(static_cast<size_t>(m * w.cols()), -1.0f);
  if (!hyperonnx::fused_matmul(w, blob.data(), blob.size(), a.data(), m, y.data(), error)) {
    check(false, "fused_matmul: " + *error);
  }
  return y;
}

// HyperGemm's transB tiles and HyperGather on one view: I × Wᵀ = Wᵀ and the rows in reverse order (named by
// negative indices) are the reference's bits; an index past either end is refused.
void check_nt_and_gather(const std::string& name, const FusedWeight& w, const std::vector<uint8_t>& blob,
                         const float* expect) {
  std::string error;
  const int64_t k = w.rows(), n = w.cols();
  std::vector<float> eye(static_cast<size_t>(n * n), 0.0f), y(static_cast<size_t>(n * k), -1.0f);
  for (int64_t i = 0; i < n; ++i) eye[static_cast<size_t>(i * n + i)] = 1.0f;
  check(hyperonnx::fused_matmul_nt(w, blob.data(), blob.size(), eye.data(), n, y.data(), &error), name + ": " + error);
  bool same = true;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < k; ++j) same &= y[static_cast<size_t>(i * k + j)] == expect[j * n + i];
  }
  check(same, name + ": I × Wᵀ differs from the reference (" + hyperonnx::isa_name(w.isa()) + ")");
  std::vector<int64_t> idx(static_cast<size_t>(k)), rows(idx.size());
  for (int64_t i = 0; i < k; ++i) idx[static_cast<size_t>(i)] = -1 - i;
  std::vector<float> out(static_cast<size_t>(k * n), -1.0f);
  check(hyperonnx::fused_gather_rows(idx.data(), true, 0, idx.size(), k, rows.data(), &error) &&
            hyperonnx::fused_gather(w, blob.data(), blob.size(), rows.data(), 0, rows.size(), out.data(), &error),
        name + ": gather: " + error);
  for (int64_t i = 0; i < k; ++i) {
    same &= std::memcmp(out.data() + i * n, expect + (k - 1 - i) * n, static_cast<size_t>(n) * sizeof(float)) == 0;
  }
  check(same, name + ": gathered rows differ from the reference");
  for (int32_t bad : {static_cast<int32_t>(k), static_cast<int32_t>(-k - 1)}) {
    check(!hyperonnx::fused_gather_rows(&bad, false, 0, 1, k, rows.data(), &error) &&
              error.find("out of range") != std::string::npos,
          name + ": index " + std::to_string(bad) + " was not refused");
  }
}

// Checks one K × N view of a decoded tensor `expect` (numel floats).
void check_view(const std::string& name, const MapAttrs& attrs, const std::vector<uint8_t>& blob, const float* expect) {
  std::string error;
  auto w = FusedWeight::create(attrs, &error);
  check(w != nullptr, name + ": create: " + error);
  if (!w) return;
  check(w->check(blob.data(), blob.size(), &error), name + ": check: " + error);
  const int64_t k = w->rows(), n = w->cols();
  const uint64_t numel = static_cast<uint64_t>(k * n);
  // Segments of several sizes, starting anywhere (odd, block-aligned, crossing rows).
  for (uint64_t step : {uint64_t{1}, uint64_t{7}, uint64_t{32}, uint64_t{128}, numel}) {
    std::vector<float> out(static_cast<size_t>(numel), -7.0f), scratch;
    for (uint64_t e = 0; e < numel; e += step) {
      const uint64_t end = std::min(numel, e + step);
      check(w->decode(blob.data(), blob.size(), e, end, out.data() + e, &scratch, &error), name + ": " + error);
    }
    check(std::memcmp(out.data(), expect, numel * sizeof(float)) == 0,
          name + ": segments of " + std::to_string(step) + " differ from the reference (" +
              hyperonnx::isa_name(w->isa()) + ")");
  }
  std::vector<float> eye(static_cast<size_t>(k * k), 0.0f);
  for (int64_t i = 0; i < k; ++i) eye[static_cast<size_t>(i * k + i)] = 1.0f;
  const std::vector<float> y = matmul(*w, blob, eye, k, &error);
  bool same = true;
  for (uint64_t i = 0; i < numel; ++i) same &= y[i] == expect[i];  // -0 and +0 are both right (0 · w terms)
  check(same, name + ": I × W differs from the reference (" + hyperonnx::isa_name(w->isa()) + ")");
  check_nt_and_gather(name, *w, blob, expect);
}

int run_golden(const std::string& dir) {
  size_t views = 0;
  for (const GoldenCase& c : hyperonnx::test::load_cases(dir)) {
    std::string codec;
    std::vector<int64_t> dtype, shape;
    c.attrs.get_string("codec", &codec);
    c.attrs.get_ints("dtype", &dtype);
    c.attrs.get_ints("shape", &shape);
    if ((codec != "blocktcq" && codec != "blockvq") || dtype != std::vector<int64_t>{1}) continue;
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    if (numel == 0) continue;
    std::vector<std::vector<int64_t>> shapes = {{1, numel}, {numel, 1}};
    if (shape.size() == 2) shapes.push_back(shape);
    for (int64_t d = 2; d < numel; ++d) {
      if (numel % d == 0) {
        shapes.push_back({d, numel / d});
        break;
      }
    }
    const auto* expect = reinterpret_cast<const float*>(c.expect.data());
    for (const char* isa : kIsas) {
      set_isa(isa);
      for (const auto& s : shapes) {
        MapAttrs attrs = c.attrs;
        attrs.ints["shape"] = s;
        check_view(c.name + " as " + std::to_string(s[0]) + "x" + std::to_string(s[1]), attrs, c.blob, expect);
        ++views;
      }
    }
  }
  set_isa("");
  std::printf("golden: %zu views, %d failures\n", views, g_failures);
  return g_failures ? 1 : 0;
}

// A blocktcq node of K × N with random θ and headers (every level set and scale code).
MapAttrs tcq_attrs(int64_t k, int64_t n, int bits, int64_t block) {
  MapAttrs attrs;
  attrs.strings["codec"] = "blocktcq";
  attrs.ints = {{"format", {1}}, {"shape", {k, n}}, {"dtype", {1}}, {"group", {1}}, {"bits", {bits}},
                {"i_block", {block}}, {"i_levels", {int64_t{1} << bits}}};
  std::vector<float> books(size_t{2} << bits);
  for (size_t i = 0; i < books.size(); ++i) books[i] = std::sin(static_cast<float>(i) * 0.37f);
  attrs.floats = {{"f_smax", {0.25f}}, {"f_books", books}};
  return attrs;
}

int run_random() {
  std::mt19937 rng(7);
  size_t cases = 0;
  for (int bits = 1; bits <= 8; ++bits) {
    // Rows of whole blocks (the register GEMV at M ≤ 3: 4-row groups, a remainder, an odd count of 32-weight
    // halves, blocks of 96 whose 64-weight steps straddle two blocks; 130 rows: three row slices of 43-44 rows)
    // and rows ending inside blocks.
    for (const auto& kn : std::vector<std::pair<int64_t, int64_t>>{
             {5, 256}, {3, 96}, {9, 77}, {1, 4128}, {7, 192}, {6, 288}, {130, 160}}) {
      for (int64_t block : {int64_t{32}, int64_t{64}, int64_t{96}}) {
        const int64_t k = kn.first, n = kn.second;
        const uint64_t numel = static_cast<uint64_t>(k * n), nblocks = (numel + block - 1) / block;
        std::vector<uint8_t> blob((numel * bits + 7) / 8 + (nblocks * 10 + 7) / 8);
        for (auto& b : blob) b = static_cast<uint8_t>(rng());
        const MapAttrs attrs = tcq_attrs(k, n, bits, block);
        std::string error;
        // The reference: the codec's own decoder (the golden tests check it against numpy).
        set_isa("scalar");
        auto plain = FusedWeight::create(attrs, &error);
        std::vector<float> expect(numel), scratch;
        check(plain && plain->decode(blob.data(), blob.size(), 0, numel, expect.data(), &scratch, &error),
              "random: reference decode: " + error);
        if (!plain) continue;
        const std::string name = "random b" + std::to_string(bits) + " B" + std::to_string(block) + " " +
                                 std::to_string(k) + "x" + std::to_string(n);
        for (const char* isa : kIsas) {
          set_isa(isa);
          check_view(name, attrs, blob, expect.data());
          auto w = FusedWeight::create(attrs, &error);
          check_guarded(name, *w, blob, expect.data());
          for (int64_t m : {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{5}}) {
            std::vector<float> a(static_cast<size_t>(m * k));
            for (auto& v : a) v = static_cast<float>(static_cast<int>(rng() % 2001) - 1000) / 1000.0f;
            const std::vector<float> y = matmul(*w, blob, a, m, &error);
            double worst = 0, largest = 0;
            for (int64_t i = 0; i < m; ++i) {
              for (int64_t j = 0; j < n; ++j) {
                double ref = 0;
                for (int64_t t = 0; t < k; ++t) ref += double{a[i * k + t]} * double{expect[t * n + j]};
                worst = std::max(worst, std::fabs(ref - y[i * n + j]));
                largest = std::max(largest, std::fabs(ref));
              }
            }
            check(worst <= 1e-5 * largest, name + " M=" + std::to_string(m) + ": product off by " +
                                                std::to_string(worst / largest));
            // The transposed product (HyperGemm transB): A [m, n] × Wᵀ, W read as [N = k, K = n]; at M ≤ 3 the
            // register dot products.
            std::vector<float> at(static_cast<size_t>(m * n)), yt(static_cast<size_t>(m * k), -1.0f);
            for (auto& v : at) v = static_cast<float>(static_cast<int>(rng() % 2001) - 1000) / 1000.0f;
            check(hyperonnx::fused_matmul_nt(*w, blob.data(), blob.size(), at.data(), m, yt.data(), &error),
                  name + ": nt: " + error);
            // Relative to Σ|a·w| (float32 summation's error bound): a single output of a 4128-term sum can cancel
            // to far below its terms, where max |y| would measure the cancellation, not the kernel.
            worst = largest = 0;
            for (int64_t i = 0; i < m; ++i) {
              for (int64_t j = 0; j < k; ++j) {
                double ref = 0, mass = 0;
                for (int64_t t = 0; t < n; ++t) {
                  ref += double{at[i * n + t]} * double{expect[j * n + t]};
                  mass += std::fabs(double{at[i * n + t]} * double{expect[j * n + t]});
                }
                worst = std::max(worst, std::fabs(ref - yt[i * k + j]));
                largest = std::max(largest, mass);
              }
            }
            check(worst <= 1e-5 * largest, name + " M=" + std::to_string(m) + ": transposed product off by " +
                                                std::to_string(worst / largest));
          }
        }
        ++cases;
      }
    }
  }
  set_isa("");
  std::printf("random: %zu cases, %d failures\n", cases, g_failures);
  return g_failures ? 1 : 0;
}

void expect_refused(const MapAttrs& attrs, const std::string& message) {
  std::string error;
  auto w = FusedWeight::create(attrs, &error);
  check(w == nullptr && error.find(message) != std::string::npos,
        "malformed: wanted '" + message + "', got '" + error + "'");
}

int run_malformed(const std::string& dir) {
  size_t n = 0;
  for (const GoldenCase& c : hyperonnx::test::load_cases(dir)) {
    std::string codec;
    c.attrs.get_string("codec", &codec);
    std::vector<int64_t> dtype;
    c.attrs.get_ints("dtype", &dtype);
    if (codec == "paper" || codec == "kronecker" || codec == "ecsq" || codec == "grid") {
      expect_refused(c.attrs, "fused ops read the blocktcq and blockvq codecs only");
      ++n;
    } else if ((codec == "blocktcq" || codec == "blockvq") && dtype != std::vector<int64_t>{1}) {
      expect_refused(c.attrs, "float32 weight");
      ++n;
    }
  }
  MapAttrs attrs = tcq_attrs(4, 64, 5, 32);
  attrs.ints["shape"] = {2, 2, 64};
  expect_refused(attrs, "2-D weight");
  attrs.ints["shape"] = {256};
  expect_refused(attrs, "2-D weight");
  attrs = tcq_attrs(4, 64, 5, 32);
  attrs.ints["i_block"] = {1};
  expect_refused(attrs, "block");
  attrs = tcq_attrs(4, 64, 5, 32);
  std::string error;
  auto w = FusedWeight::create(attrs, &error);
  const size_t len = 4 * 64 * 5 / 8 + (8 * 10 + 7) / 8;
  for (size_t bad : {size_t{0}, len - 1, len + 1}) {
    std::vector<uint8_t> blob(bad, 0);
    check(w && !w->check(blob.data(), blob.size(), &error) && error.find("bytes") != std::string::npos,
          "malformed: a blob of " + std::to_string(bad) + " bytes passed check(): " + error);
  }
  std::vector<uint8_t> good(len, 0);
  check(w && w->check(good.data(), good.size(), &error), "malformed: the right length failed: " + error);
  std::printf("malformed: %zu cases, %d failures\n", n + 7, g_failures);
  return g_failures ? 1 : 0;
}

// The kernel a HYPERONNX_FUSED_ISA setting should pick for blocktcq codes of `bits` bits (blocks of 32).
std::string expected_kernel(const char* isa, int bits) {
  if (std::strcmp(isa, "scalar") == 0 || bits > 7) return "codec";
#if defined(__aarch64__)
  return "neon";
#elif defined(__x86_64__)
  if (!hyperonnx::tcq_rows_available()) return "codec";
  return std::strcmp(isa, "avx2") != 0 && bits <= 6 && hyperonnx::tcq_vbmi_available() ? "avx512vbmi" : "avx2";
#else
  return "codec";
#endif
}

// One family's kernel tables at widths 0..8: every kernel at 1..hi where the family runs, none elsewhere.
void check_kernels(const std::string& family, hyperonnx::TcqKernels (*kernels)(int), bool runs, int hi) {
  for (int bits = 0; bits <= 8; ++bits) {
    const hyperonnx::TcqKernels k = kernels(bits);
    bool all = k.run != nullptr, none = k.run == nullptr;
    for (int m = 1; m <= hyperonnx::TcqRows::kTcqGemvMaxM; ++m) {
      all = all && k.gemv[m] != nullptr && k.dot[m] != nullptr;
      none = none && k.gemv[m] == nullptr && k.dot[m] == nullptr;
    }
    const bool want = runs && bits >= 1 && bits <= hi;
    check((want ? all : none) && k.gemv[0] == nullptr && k.dot[0] == nullptr,
          "dispatch: " + family + " kernels at bits " + std::to_string(bits) +
              (want ? ": one missing" : ": not empty"));
  }
}

int run_dispatch() {
  std::string line;
  for (const char* isa : {"", "scalar"}) {
    set_isa(isa);
    check_kernels("avx512vbmi", &hyperonnx::tcq_vbmi_kernels, hyperonnx::tcq_vbmi_available(), 6);
    check_kernels(std::string("neon (HYPERONNX_FUSED_ISA='") + isa + "')", &hyperonnx::tcq_neon_kernels,
                  hyperonnx::tcq_neon_available(), 7);
  }
  for (const char* isa : {"", "avx2", "neon", "scalar"}) {
    set_isa(isa);
    for (int bits = 1; bits <= 8; ++bits) {
      std::string error;
      auto w = FusedWeight::create(tcq_attrs(4, 64, bits, 32), &error);
      check(w != nullptr, "dispatch: create: " + error);
      if (!w) continue;
      const std::string want = expected_kernel(isa, bits), got = w->decode_kernel();
      check(got == want, std::string("dispatch: HYPERONNX_FUSED_ISA='") + isa + "' bits " + std::to_string(bits) +
                             ": got " + got + ", want " + want);
      if (*isa == 0 && bits == 5) line = got;
    }
  }
  set_isa("");
  // The best kernel for the default (5-bit) weight, e.g. "fused dispatch: neon" on aarch64.
  std::printf("fused dispatch: %s, %d failures\n", line.c_str(), g_failures);
  return g_failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string what = argc > 1 ? argv[1] : "";
  try {
    if (what == "golden" && argc == 3) return run_golden(argv[2]);
    if (what == "random") return run_random();
    if (what == "malformed" && argc == 3) return run_malformed(argv[2]);
    if (what == "dispatch") return run_dispatch();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "usage: %s golden|malformed GOLDEN_DIR | random | dispatch\n", argv[0]);
  return 2;
}
