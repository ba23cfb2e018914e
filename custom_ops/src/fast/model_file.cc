#include "fast/model_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <exception>

#include "hyperonnx/fast.h"

hyperonnx_fast_model::~hyperonnx_fast_model() {
  plan.reset();  // points into the mapping
  if (map) ::munmap(map, map_len);
}

namespace hyperonnx {
namespace fast {

Buffer::~Buffer() {
  if (p_) ::munmap(p_, n_);
}

bool Buffer::allocate(size_t n) {
  if (n == 0) return true;
  void* p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return false;
  p_ = p;
  n_ = n;
  return true;
}

std::unique_ptr<hyperonnx_fast_model> plan_bytes(const void* data, size_t len, const Options& options,
                                                 std::string* error) {
  auto model = std::make_unique<hyperonnx_fast_model>();
  if (data == nullptr || len == 0) {
    *error = "not an ONNX model (empty)";
    return nullptr;
  }
  model->plan = Plan::create(static_cast<const uint8_t*>(data), len, options, error);
  if (!model->plan) return nullptr;
  return model;
}

std::unique_ptr<hyperonnx_fast_model> plan_file(const char* path, const Options& options, std::string* error) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *error = std::string("cannot open '") + path + "': " + std::strerror(errno);
    return nullptr;
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    *error = std::string("'") + path + "' is not a regular file";
    return nullptr;
  }
  if (st.st_size == 0) {
    ::close(fd);
    *error = std::string("'") + path + "' is not an ONNX model (empty file)";
    return nullptr;
  }
  const size_t len = static_cast<size_t>(st.st_size);
  void* map = ::mmap(nullptr, len, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) {
    *error = std::string("cannot map '") + path + "': " + std::strerror(errno);
    return nullptr;
  }
  auto model = std::make_unique<hyperonnx_fast_model>();
  model->map = map;
  model->map_len = len;
  Options opts = options;
  const char* slash = std::strrchr(path, '/');
  opts.base_dir = slash ? std::string(path, static_cast<size_t>(slash - path)) : std::string(".");
  if (opts.base_dir.empty()) opts.base_dir = "/";
  model->plan = Plan::create(static_cast<const uint8_t*>(map), len, opts, error);
  if (!model->plan) {
    *error = std::string("'") + path + "': " + *error;
    return nullptr;
  }
  return model;
}

}  // namespace fast
}  // namespace hyperonnx

// ---- C entry points (include/hyperonnx/session.h) ---------------------------------------------------------

namespace {

int report(const std::string& message, char* err, size_t errlen) {
  if (err && errlen) {
    const size_t n = message.size() < errlen - 1 ? message.size() : errlen - 1;
    std::memcpy(err, message.data(), n);
    err[n] = '\0';
  }
  return 1;
}

hyperonnx::fast::Options make_options(int flags, uint64_t inline_limit, int threads) {
  hyperonnx::fast::Options o;
  o.decode_call_nodes = (flags & HYPERONNX_FAST_DECODE_CALL_NODES) != 0;
  if (inline_limit) o.inline_limit = inline_limit;
  o.threads = threads > 0 ? threads : 0;
  return o;
}

}  // namespace

extern "C" int hyperonnx_fast_plan(const void* data, size_t len, const char* base_dir, int flags,
                                   uint64_t inline_limit, int threads, hyperonnx_fast_model** out, char* err,
                                   size_t errlen) {
  if (!out) return report("hyperonnx_fast_plan: out is NULL", err, errlen);
  *out = nullptr;
  try {
    hyperonnx::fast::Options o = make_options(flags, inline_limit, threads);
    if (base_dir) o.base_dir = base_dir;
    std::string error;
    auto model = hyperonnx::fast::plan_bytes(data, len, o, &error);
    if (!model) return report(error, err, errlen);
    *out = model.release();
    return 0;
  } catch (const std::exception& e) {  // std::bad_alloc on absurd sizes
    return report(std::string("hyperonnx_fast_plan: ") + e.what(), err, errlen);
  }
}

extern "C" int hyperonnx_fast_plan_file(const char* path, int flags, uint64_t inline_limit, int threads,
                                        hyperonnx_fast_model** out, char* err, size_t errlen) {
  if (!out || !path) return report("hyperonnx_fast_plan_file: path or out is NULL", err, errlen);
  *out = nullptr;
  try {
    std::string error;
    auto model = hyperonnx::fast::plan_file(path, make_options(flags, inline_limit, threads), &error);
    if (!model) return report(error, err, errlen);
    *out = model.release();
    return 0;
  } catch (const std::exception& e) {
    return report(std::string("hyperonnx_fast_plan_file: ") + e.what(), err, errlen);
  }
}

extern "C" void hyperonnx_fast_get_info(const hyperonnx_fast_model* model, hyperonnx_fast_info* info) {
  if (!model || !info) return;
  info->model_bytes = model->plan->model_bytes();
  info->external_bytes = model->plan->external_bytes();
  info->decoded_nodes = model->plan->decoded_count();
  info->decoded_bytes = model->plan->decoded_bytes();
  info->ops_remain = model->plan->ops_remain() ? 1 : 0;
  info->external_refs = model->plan->external_refs() > 0 ? 1 : 0;
}

extern "C" int hyperonnx_fast_write(const hyperonnx_fast_model* model, void* model_out, void* external_out,
                                    char* err, size_t errlen) {
  if (!model || !model_out) return report("hyperonnx_fast_write: model or output is NULL", err, errlen);
  try {
    std::string error;
    if (!model->plan->write(static_cast<uint8_t*>(model_out), static_cast<uint8_t*>(external_out), &error))
      return report(error, err, errlen);
    return 0;
  } catch (const std::exception& e) {
    return report(std::string("hyperonnx_fast_write: ") + e.what(), err, errlen);
  }
}

extern "C" void hyperonnx_fast_free(hyperonnx_fast_model* model) { delete model; }
