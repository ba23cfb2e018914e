// The one place that includes the ONNX Runtime C++ API. ORT_API_MANUAL_INIT keeps the header from calling
// OrtGetApiBase() at load time: the library never links libonnxruntime (pip's ORT does not even export that
// symbol); RegisterCustomOps receives the API from the runtime and calls Ort::InitApi instead.
#pragma once

#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT
