// hyperonnx C++ sample: load a hyperonnx-converted model in ONNX Runtime, run one input and print an output
// summary, timings and memory (samples/cpp/README.md).
//
// By default the model is loaded through the op library's fast path (include/hyperonnx/session.h:
// hyperonnx_create_session), which hands ONNX Runtime the decoded weights as plain constant initializers, so the
// session runs like the original model. --plain or --mode load|call use plain ONNX Runtime with the op library
// registered instead (HyperDecode kernels at run time).
//
//   hyperonnx_sample        MODEL [options]   the op library loaded at run time (dlopen / RegisterCustomOpsLibrary)
//   hyperonnx_sample_static MODEL [options]   links the static op library (hyperonnx_create_session /
//                                             hyperonnx_register_ops)
//
// Options:
//   --plain             plain ONNX Runtime + the registered op library (each node's own decode mode)
//   --mode load|call    plain ONNX Runtime, session config hyperonnx.decode_mode (overrides every node's mode)
//   --lib PATH          op library for the dynamic target (default: the one built beside the sample)
//   --input FILE.npy    float32 C-order .npy for the (single) model input; default: a deterministic input
//   --seed N            seed of the deterministic input (default 0)
//   --dim N             size used for symbolic input dimensions (default 1)
//   --runs N            timed runs after one warm-up run (default 10)
//   --threads N         intra-op threads (default: ORT's choice)
//   --config KEY=VALUE  a session config entry (repeatable), e.g. hyperonnx.fast_decode=all
//   --provider cpu|cuda execution provider (cuda: ORT built with CUDA, e.g. onnxruntime-gpu / Jetson)
//   --save DIR          write each output as DIR/output<i>.npy
//   --first N           how many leading values to print per output (default 8)
//
// The deterministic input: x[i] = (int64(s >> 40) - 2^23) / 2^23 with s = s * 6364136223846793005 +
// 1442695040888963407 (mod 2^64) advanced once per element, starting from s = seed; every value is exact in
// float32, so Python reproduces it bit for bit (tests/platform/test_samples.py).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <dlfcn.h>

#define ORT_API_MANUAL_INIT  // the static op library is built the same way; Ort::InitApi is called in main
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include "hyperonnx/session.hpp"  // the fast path: C API (session.h) + the C++ wrapper
#ifdef HX_SAMPLE_STATIC
#include "hyperonnx/ops.h"
#endif

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

struct Args {
  std::string model, lib, input, mode, provider = "cpu", save;
  uint64_t seed = 0;
  int64_t dim = 1;
  int runs = 10, threads = 0, first = 8;
  bool plain = false;
  std::vector<std::pair<std::string, std::string>> config;
};

[[noreturn]] void usage(const char* argv0, const std::string& why) {
  std::fprintf(stderr, "%s: %s\nusage: %s MODEL [--lib PATH] [--input X.npy] [--seed N] [--dim N] [--runs N] "
                       "[--threads N] [--plain] [--mode load|call] [--config KEY=VALUE] [--provider cpu|cuda] [--save DIR] [--first N]\n",
               argv0, why.c_str(), argv0);
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
#ifdef HX_SAMPLE_LIBRARY
  a.lib = HX_SAMPLE_LIBRARY;
#endif
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(argv[0], "missing value for " + k);
      return argv[++i];
    };
    if (k == "--lib") a.lib = value();
    else if (k == "--plain") a.plain = true;
    else if (k == "--config") {
      const std::string kv = value();
      const size_t eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) usage(argv[0], "--config needs KEY=VALUE");
      a.config.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
    }
    else if (k == "--input") a.input = value();
    else if (k == "--seed") a.seed = std::strtoull(value().c_str(), nullptr, 10);
    else if (k == "--dim") a.dim = std::atoll(value().c_str());
    else if (k == "--runs") a.runs = std::atoi(value().c_str());
    else if (k == "--threads") a.threads = std::atoi(value().c_str());
    else if (k == "--mode") a.mode = value();
    else if (k == "--provider") a.provider = value();
    else if (k == "--save") a.save = value();
    else if (k == "--first") a.first = std::atoi(value().c_str());
    else if (k == "-h" || k == "--help") usage(argv[0], "help");
    else if (!k.empty() && k[0] == '-') usage(argv[0], "unknown option " + k);
    else if (a.model.empty()) a.model = k;
    else usage(argv[0], "more than one model given");
  }
  if (a.model.empty()) usage(argv[0], "no model given");
  if (a.runs < 1 || a.dim < 1) usage(argv[0], "--runs and --dim must be positive");
  if (a.provider != "cpu" && a.provider != "cuda") usage(argv[0], "--provider must be cpu or cuda");
  if (!a.mode.empty()) a.plain = true;
  return a;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

size_t numel(const std::vector<int64_t>& s) {
  size_t n = 1;
  for (int64_t d : s) n *= static_cast<size_t>(d);
  return n;
}

std::vector<float> deterministic_input(size_t n, uint64_t seed) {
  std::vector<float> x(n);
  uint64_t s = seed;
  for (size_t i = 0; i < n; ++i) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    x[i] = static_cast<float>(static_cast<int64_t>(s >> 40) - (int64_t{1} << 23)) / static_cast<float>(1 << 23);
  }
  return x;
}

// Minimal .npy (v1/v2/v3) reader for little-endian float32, C order.
std::vector<float> read_npy(const std::string& path, std::vector<int64_t>* shape) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  char magic[8];
  f.read(magic, 8);
  if (!f || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw std::runtime_error(path + ": not a .npy file");
  uint32_t hlen = 0;
  if (magic[6] == 1) {
    unsigned char b[2];
    f.read(reinterpret_cast<char*>(b), 2);
    hlen = b[0] | (b[1] << 8);
  } else {
    unsigned char b[4];
    f.read(reinterpret_cast<char*>(b), 4);
    hlen = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
  }
  std::string header(hlen, '\0');
  f.read(&header[0], hlen);
  if (header.find("'<f4'") == std::string::npos) throw std::runtime_error(path + ": dtype must be '<f4'");
  if (header.find("'fortran_order': False") == std::string::npos) throw std::runtime_error(path + ": not C order");
  const size_t lp = header.find('(', header.find("'shape'")), rp = header.find(')', lp);
  shape->clear();
  std::stringstream ss(header.substr(lp + 1, rp - lp - 1));
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    if (tok.find_first_of("0123456789") != std::string::npos) shape->push_back(std::stoll(tok));
  }
  std::vector<float> data(numel(*shape));
  f.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(data.size() * sizeof(float)));
  if (!f) throw std::runtime_error(path + ": truncated");
  return data;
}

void write_npy(const std::string& path, const char* descr, size_t itemsize, const void* data,
               const std::vector<int64_t>& shape) {
  std::string dims;
  for (int64_t d : shape) dims += std::to_string(d) + ",";
  if (shape.size() > 1) dims.pop_back();
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::ofstream f(path, std::ios::binary);
  const uint16_t hlen = static_cast<uint16_t>(header.size());
  f.write("\x93NUMPY\x01\x00", 8);
  const char len[2] = {static_cast<char>(hlen & 0xFF), static_cast<char>(hlen >> 8)};
  f.write(len, 2);
  f << header;
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(numel(shape) * itemsize));
  if (!f) throw std::runtime_error("cannot write " + path);
}

uint64_t fnv1a64(const void* p, size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  uint64_t h = 14695981039346656037ULL;
  for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ULL;
  return h;
}

const char* type_name(ONNXTensorElementDataType t) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return "float32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return "float16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: return "float64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return "int64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return "int32";
    default: return "other";
  }
}

// VmRSS / VmHWM of this process in KiB (0 where /proc is missing).
long status_kb(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.compare(0, std::strlen(key), key) == 0) return std::atol(line.c_str() + std::strlen(key) + 1);
  }
  return 0;
}

void reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";  // VmHWM restarts from the current RSS, so the peak printed is the session creation's
}

#ifndef HX_SAMPLE_STATIC
// The dynamic target finds the fast path in the op library it loads at run time.
using CreateSessionFn = decltype(&hyperonnx_create_session);
CreateSessionFn load_create_session(const std::string& lib) {
  void* handle = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);  // kept open: the session runs its code
  if (!handle) throw std::runtime_error(std::string("cannot load ") + lib + ": " + dlerror());
  auto fn = reinterpret_cast<CreateSessionFn>(dlsym(handle, "hyperonnx_create_session"));
  if (!fn) throw std::runtime_error(lib + " has no hyperonnx_create_session (an op library older than the fast path)");
  return fn;
}
#endif

int run(const Args& a) {
  Ort::InitApi(OrtGetApiBase()->GetApi(ORT_API_VERSION));
  std::printf("onnxruntime %s\n", Ort::GetVersionString().c_str());
  Ort::Env env(ORT_LOGGING_LEVEL_WARNING, "hyperonnx_sample");
  Ort::SessionOptions so;
  if (a.threads > 0) so.SetIntraOpNumThreads(a.threads);
  // hyperonnx reads its config entries when it is registered: set them first.
  if (!a.mode.empty()) so.AddConfigEntry("hyperonnx.decode_mode", a.mode.c_str());
  for (const auto& kv : a.config) so.AddConfigEntry(kv.first.c_str(), kv.second.c_str());
  if (a.provider == "cuda") {
    OrtCUDAProviderOptions cuda{};  // device 0; HyperDecode runs on the CUDA EP if the library has the kernel
    so.AppendExecutionProvider_CUDA(cuda);
  }

  const auto t_reg = Clock::now();
  Ort::Session session{nullptr};
#ifdef HX_SAMPLE_STATIC
  if (a.plain) {
    if (OrtStatus* st = hyperonnx_register_ops(so, OrtGetApiBase())) {
      Ort::Status status(st);  // owns and releases it
      std::fprintf(stderr, "hyperonnx_register_ops failed: %s\n", status.GetErrorMessage().c_str());
      return 1;
    }
    std::printf("registration: static hyperonnx_register_ops\n");
  } else {
    std::printf("registration: static hyperonnx_create_session (fast path)\n");
  }
#else
  if (a.lib.empty()) throw std::runtime_error("no op library: pass --lib PATH");
  CreateSessionFn create_session = nullptr;
  if (a.plain) {
    so.RegisterCustomOpsLibrary(a.lib.c_str());
    std::printf("registration: dynamic %s\n", a.lib.c_str());
  } else {
    create_session = load_create_session(a.lib);
    std::printf("registration: dynamic %s hyperonnx_create_session (fast path)\n", a.lib.c_str());
  }
#endif
  const double reg_ms = ms_since(t_reg);

  reset_peak_rss();
  const auto t_create = Clock::now();
  if (a.plain) {
    session = Ort::Session(env, a.model.c_str(), so);
  } else {
#ifdef HX_SAMPLE_STATIC
    session = hyperonnx::CreateSession(env, a.model.c_str(), so);  // the C++ wrapper (throws Ort::Exception)
#else
    OrtSession* created = nullptr;
    Ort::ThrowOnError(create_session(OrtGetApiBase(), env, a.model.c_str(), so, &created));
    session = hyperonnx::AdoptSession(created);
#endif
  }
  const double create_ms = ms_since(t_create);
  const long rss_after_load_kb = status_kb("VmRSS:"), rss_peak_kb = status_kb("VmHWM:");

  Ort::AllocatorWithDefaultOptions alloc;
  const size_t n_in = session.GetInputCount(), n_out = session.GetOutputCount();
  std::vector<Ort::AllocatedStringPtr> name_holders;
  std::vector<const char*> in_names, out_names;
  std::vector<std::vector<float>> in_data(n_in);
  std::vector<Ort::Value> inputs;
  Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  for (size_t i = 0; i < n_in; ++i) {
    name_holders.push_back(session.GetInputNameAllocated(i, alloc));
    in_names.push_back(name_holders.back().get());
    const Ort::TypeInfo type_info = session.GetInputTypeInfo(i);  // owns what `info` points into
    auto info = type_info.GetTensorTypeAndShapeInfo();
    if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
      throw std::runtime_error(std::string("input ") + in_names.back() + ": only float32 inputs are supported");
    std::vector<int64_t> shape = info.GetShape();
    if (!a.input.empty()) {
      if (n_in != 1) throw std::runtime_error("--input needs a model with exactly one input");
      in_data[i] = read_npy(a.input, &shape);
    } else {
      for (int64_t& d : shape) d = d > 0 ? d : a.dim;
      in_data[i] = deterministic_input(numel(shape), a.seed + i);
    }
    std::printf("input %zu %s float32 %s\n", i, in_names.back(), shape_str(shape).c_str());
    inputs.push_back(Ort::Value::CreateTensor<float>(cpu, in_data[i].data(), in_data[i].size(), shape.data(),
                                                     shape.size()));
  }
  for (size_t i = 0; i < n_out; ++i) {
    name_holders.push_back(session.GetOutputNameAllocated(i, alloc));
    out_names.push_back(name_holders.back().get());
  }

  std::vector<Ort::Value> outputs;
  const auto t_first = Clock::now();
  outputs = session.Run(Ort::RunOptions{nullptr}, in_names.data(), inputs.data(), n_in, out_names.data(), n_out);
  const double first_ms = ms_since(t_first);
  std::vector<double> times;
  for (int r = 0; r < a.runs; ++r) {
    const auto t0 = Clock::now();
    auto o = session.Run(Ort::RunOptions{nullptr}, in_names.data(), inputs.data(), n_in, out_names.data(), n_out);
    times.push_back(ms_since(t0));
  }
  std::sort(times.begin(), times.end());
  const double median = times.size() % 2 ? times[times.size() / 2]
                                         : 0.5 * (times[times.size() / 2 - 1] + times[times.size() / 2]);

  for (size_t i = 0; i < n_out; ++i) {
    auto info = outputs[i].GetTensorTypeAndShapeInfo();
    const std::vector<int64_t> shape = info.GetShape();
    const auto type = info.GetElementType();
    const size_t n = info.GetElementCount();
    std::printf("output %zu %s %s %s\n", i, out_names[i], type_name(type), shape_str(shape).c_str());
    if (type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) continue;
    const float* y = outputs[i].GetTensorData<float>();
    double sum = 0, abs_sum = 0;
    size_t argmax = 0;
    for (size_t k = 0; k < n; ++k) {
      sum += y[k];
      abs_sum += std::abs(static_cast<double>(y[k]));
      if (y[k] > y[argmax]) argmax = k;
    }
    std::printf("  first:");
    for (size_t k = 0; k < std::min<size_t>(n, static_cast<size_t>(a.first)); ++k) std::printf(" %.9g", y[k]);
    std::printf("\n  sum: %.17g abs_sum: %.17g argmax: %zu fnv1a64: %016" PRIx64 "\n", sum, abs_sum, argmax,
                fnv1a64(y, n * sizeof(float)));
    if (!a.save.empty()) write_npy(a.save + "/output" + std::to_string(i) + ".npy", "<f4", 4, y, shape);
  }
  std::printf("timing: register_ms %.3f session_create_ms %.3f first_run_ms %.3f median_run_ms %.3f "
              "min_run_ms %.3f runs %d rss_after_load_kb %ld rss_peak_kb %ld\n",
              reg_ms, create_ms, first_ms, median, times.front(), a.runs, rss_after_load_kb, rss_peak_kb);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  try {
    return run(a);
  } catch (const Ort::Exception& e) {
    std::fprintf(stderr, "onnxruntime error: %s\n", e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
  }
  return 1;
}
