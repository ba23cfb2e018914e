// hyperonnx fast load path, C++: a header-only wrapper of hyperonnx/session.h over ONNX Runtime's C++ API.
//
//   Ort::Env env;
//   Ort::SessionOptions options;              // threads, providers, config entries: as for any session
//   Ort::Session session = hyperonnx::CreateSession(env, "model.hx.onnx", options);
//
// Errors throw Ort::Exception with the library's one-line message. The application links ONNX Runtime (this
// header calls OrtGetApiBase()); the op library does not. Include <onnxruntime_cxx_api.h> the way the
// application already does (e.g. with ORT_API_MANUAL_INIT) before this header, or let this header include it.
#ifndef HYPERONNX_SESSION_HPP_
#define HYPERONNX_SESSION_HPP_

#include <onnxruntime_cxx_api.h>

#include <cstddef>
#include <utility>

#include "hyperonnx/session.h"

namespace hyperonnx {

namespace detail {
// Ort::Session has no public constructor from an OrtSession*; its base keeps the handle in a protected member.
struct AdoptedSession : Ort::Session {
  explicit AdoptedSession(OrtSession* session) : Ort::Session(nullptr) { this->p_ = session; }
};
}  // namespace detail

// Takes ownership of a session made by hyperonnx_create_session* (e.g. through a function pointer from dlsym).
inline Ort::Session AdoptSession(OrtSession* session) {
  detail::AdoptedSession adopted(session);
  return Ort::Session(std::move(static_cast<Ort::Session&>(adopted)));
}

// The fast-path session for the model at `model_path` (external data beside it).
inline Ort::Session CreateSession(const Ort::Env& env, const char* model_path, const Ort::SessionOptions& options) {
  OrtSession* session = nullptr;
  Ort::ThrowOnError(hyperonnx_create_session(OrtGetApiBase(), env, model_path, options, &session));
  return AdoptSession(session);
}

// The same for a model in memory; `external_data_dir` is the folder of its external data (nullptr: none).
inline Ort::Session CreateSession(const Ort::Env& env, const void* model_data, size_t model_data_length,
                                  const Ort::SessionOptions& options, const char* external_data_dir = nullptr) {
  OrtSession* session = nullptr;
  Ort::ThrowOnError(hyperonnx_create_session_from_array(OrtGetApiBase(), env, model_data, model_data_length,
                                                        external_data_dir, options, &session));
  return AdoptSession(session);
}

}  // namespace hyperonnx

#endif  // HYPERONNX_SESSION_HPP_
