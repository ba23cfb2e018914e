// The fast path's ORT half (include/hyperonnx/session.h): plan and decode the model (fast/rewrite.h), then
// create the session from the rewritten bytes on a clone of the caller's options. Only the C API is used, with
// every status checked, so no exception crosses into the application.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <vector>
#include <exception>
#include <string>

#include "fast/model_file.h"
#include "hyperonnx/ops.h"
#include "hyperonnx/session.h"
#include "op.h"

namespace hyperonnx {
namespace fast {
namespace {

constexpr const char* kFolderKey = "session.model_external_initializers_file_folder_path";

// Releases what it holds on every return path.
struct Cleanup {
  const OrtApi* api;
  OrtSessionOptions* options = nullptr;
  ~Cleanup() {
    if (options) api->ReleaseSessionOptions(options);
  }
};

OrtStatus* error(const OrtApi* api, OrtErrorCode code, const std::string& message) {
  return api->CreateStatus(code, ("hyperonnx: " + message).c_str());
}

// A config entry of the caller's options, or "" when absent.
std::string config(const OrtApi* api, const OrtSessionOptions* options, const char* key) {
  if (!options) return "";
  int has = 0;
  if (OrtStatus* st = api->HasSessionConfigEntry(options, key, &has)) {
    api->ReleaseStatus(st);
    return "";
  }
  if (!has) return "";
  size_t size = 0;
  if (OrtStatus* st = api->GetSessionConfigEntry(options, key, nullptr, &size)) api->ReleaseStatus(st);
  std::string value(size, '\0');
  if (OrtStatus* st = api->GetSessionConfigEntry(options, key, &value[0], &size)) {
    api->ReleaseStatus(st);
    return "";
  }
  value.resize(size > 0 ? size - 1 : 0);
  return value;
}

OrtStatus* read_options(const OrtApi* api, const OrtSessionOptions* so, Options* o) {
  const std::string decode = config(api, so, HYPERONNX_CONFIG_FAST_DECODE);
  if (decode == "all") o->decode_call_nodes = true;
  else if (!decode.empty() && decode != "load")
    return error(api, ORT_INVALID_ARGUMENT, std::string("session config ") + HYPERONNX_CONFIG_FAST_DECODE +
                                                " must be 'load' or 'all', got '" + decode + "'");
  const std::string limit = config(api, so, HYPERONNX_CONFIG_FAST_INLINE_LIMIT);
  if (!limit.empty()) {
    char* end = nullptr;
    const unsigned long long v = std::strtoull(limit.c_str(), &end, 10);
    if (*end != '\0' || v == 0 || v > kDefaultInlineLimit)
      return error(api, ORT_INVALID_ARGUMENT, std::string("session config ") + HYPERONNX_CONFIG_FAST_INLINE_LIMIT +
                                                  " must be an integer in 1.." + std::to_string(kDefaultInlineLimit) +
                                                  ", got '" + limit + "'");
    o->inline_limit = v;
  }
  const std::string threads = config(api, so, kConfigDecodeThreads);
  if (!threads.empty()) {
    const long v = std::strtol(threads.c_str(), nullptr, 10);
    if (v >= 1 && v <= 256) o->threads = static_cast<int>(v);  // register.cc reports a bad value
  }
  return nullptr;
}

// A file mapped read-only (external data handed to ORT as an in-memory file).
class FileMap {
 public:
  FileMap() = default;
  FileMap(FileMap&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; }
  FileMap(const FileMap&) = delete;
  ~FileMap() {
    if (p_) ::munmap(p_, n_);
  }
  bool open(const std::string& path, std::string* error) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || ::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      if (fd >= 0) ::close(fd);
      *error = "cannot open external data file '" + path + "'";
      return false;
    }
    n_ = static_cast<size_t>(st.st_size);
    void* p = n_ ? ::mmap(nullptr, n_, PROT_READ, MAP_PRIVATE, fd, 0) : nullptr;
    ::close(fd);
    if (p == MAP_FAILED) {
      *error = "cannot map external data file '" + path + "'";
      return false;
    }
    p_ = p;
    return true;
  }
  void* data() const { return p_; }
  size_t size() const { return n_; }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

OrtStatus* clone(const OrtApi* api, const OrtSessionOptions* options, OrtSessionOptions** out) {
  return options ? api->CloneSessionOptions(options, out) : api->CreateSessionOptions(out);
}

OrtStatus* create(const OrtApiBase* api_base, const OrtEnv* env, const char* path, const void* data, size_t len,
                  const char* external_data_dir, const OrtSessionOptions* options, OrtSession** out) {
  if (api_base == nullptr) return nullptr;  // cannot even report
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (api == nullptr) {
    const OrtApi* v1 = api_base->GetApi(1);
    const std::string message = std::string("hyperonnx: onnxruntime ") + api_base->GetVersionString() +
                                " is too old: this library needs C API version " + std::to_string(ORT_API_VERSION) +
                                " (onnxruntime >= 1.21)";
    return v1 ? v1->CreateStatus(ORT_FAIL, message.c_str()) : nullptr;
  }
  if (out == nullptr || env == nullptr || (path == nullptr && data == nullptr))
    return error(api, ORT_INVALID_ARGUMENT, "hyperonnx_create_session: env, model and out must not be NULL");
  *out = nullptr;
  try {
    Options o;
    if (OrtStatus* st = read_options(api, options, &o)) return st;
    std::string message;
    std::unique_ptr<hyperonnx_fast_model> model;
    if (path) {
      model = plan_file(path, o, &message);
    } else {
      if (external_data_dir) o.base_dir = external_data_dir;
      model = plan_bytes(data, len, o, &message);
    }
    if (!model) return error(api, ORT_INVALID_GRAPH, message);
    const Plan& plan = *model->plan;
    const bool ops_remain = plan.ops_remain(), external_refs = plan.external_refs() > 0;
    const std::vector<std::string> locations = plan.external_locations();

    // Decode into anonymous mappings, unmapped when this returns: ORT copies what it keeps (the session owns its
    // initializers, and frees the ones it prepacks), so nothing decoded stays behind.
    Buffer bytes, external;
    if (!bytes.allocate(plan.model_bytes()) || !external.allocate(plan.external_bytes()))
      return error(api, ORT_FAIL, "out of memory for the decoded model (" +
                                      std::to_string(plan.model_bytes() + plan.external_bytes()) + " bytes)");
    if (!plan.write(bytes.data(), external.data(), &message)) return error(api, ORT_INVALID_GRAPH, message);
    model.reset();  // the source file's mapping and θ blobs are no longer needed (nor is `plan`)

    std::string folder;
    if (path) {
      const char* slash = std::strrchr(path, '/');
      folder = slash ? std::string(path, static_cast<size_t>(slash - path + 1)) : std::string("./");
    } else if (external_data_dir) {
      folder = external_data_dir;
    }
    const bool needs_folder = external_refs && !folder.empty();
    // ORT 1.21 looks every external initializer up in the in-memory table once it has one, so with decoded
    // weights in memory the model's own external-data files go there too, mapped read-only (ORT copies them).
    std::vector<FileMap> files;
    if (external.size()) {
      for (const std::string& location : locations) {
        if (!safe_relative(location) || folder.empty())
          return error(api, ORT_INVALID_GRAPH, "external data location '" + location + "' cannot be resolved");
        files.emplace_back();
        if (!files.back().open(folder + "/" + location, &message)) return error(api, ORT_INVALID_GRAPH, message);
      }
    }
    // Try with the op library registered on the clone when nodes remain; if the caller already registered it
    // (ORT refuses a second registration of the domain), retry with theirs.
    for (int attempt = 0; attempt < 2; ++attempt) {
      const bool register_ops = ops_remain && attempt == 0;
      Cleanup c{api};
      if (OrtStatus* st = clone(api, options, &c.options)) return st;
      if (external.size()) {
        std::vector<const char*> names = {kExternalName};
        std::vector<char*> buffers = {reinterpret_cast<char*>(external.data())};
        std::vector<size_t> lengths = {external.size()};
        for (size_t i = 0; i < files.size(); ++i) {
          names.push_back(locations[i].c_str());
          buffers.push_back(static_cast<char*>(files[i].data()));
          lengths.push_back(files[i].size());
        }
        if (OrtStatus* st = api->AddExternalInitializersFromFilesInMemory(c.options, names.data(), buffers.data(),
                                                                          lengths.data(), names.size()))
          return st;
      }
      if (needs_folder) {
        if (OrtStatus* st = api->AddSessionConfigEntry(c.options, kFolderKey, folder.c_str())) return st;
      }
      if (register_ops) {
        if (OrtStatus* st = hyperonnx_register_ops(c.options, api_base)) return st;
      }
      OrtStatus* st = api->CreateSessionFromArray(env, bytes.data(), bytes.size(), c.options, out);
      if (st == nullptr) return nullptr;
      const std::string text = api->GetErrorMessage(st);
      if (!register_ops || text.find("Domain already set") == std::string::npos) {
        if (text.rfind("hyperonnx", 0) == 0 || text.find("HyperDecode") != std::string::npos) return st;
        const OrtErrorCode code = api->GetErrorCode(st);
        api->ReleaseStatus(st);
        return error(api, code, (path ? std::string("'") + path + "': " : std::string()) + text);
      }
      api->ReleaseStatus(st);
    }
    return error(api, ORT_FAIL, "session creation failed");  // not reached
  } catch (const std::exception& e) {  // std::bad_alloc
    return error(api, ORT_FAIL, e.what());
  }
}

}  // namespace
}  // namespace fast
}  // namespace hyperonnx

extern "C" OrtStatus* hyperonnx_create_session(const OrtApiBase* api_base, const OrtEnv* env, const char* model_path,
                                               const OrtSessionOptions* options, OrtSession** out) {
  if (model_path == nullptr && api_base && api_base->GetApi(ORT_API_VERSION))
    return api_base->GetApi(ORT_API_VERSION)->CreateStatus(ORT_INVALID_ARGUMENT, "hyperonnx: model_path is NULL");
  return hyperonnx::fast::create(api_base, env, model_path, nullptr, 0, nullptr, options, out);
}

extern "C" OrtStatus* hyperonnx_create_session_from_array(const OrtApiBase* api_base, const OrtEnv* env,
                                                          const void* model_data, size_t model_data_length,
                                                          const char* external_data_dir,
                                                          const OrtSessionOptions* options, OrtSession** out) {
  static const uint8_t kEmpty = 0;
  return hyperonnx::fast::create(api_base, env, nullptr, model_data ? model_data : &kEmpty,
                                 model_data ? model_data_length : 0, external_data_dir, options, out);
}
