// The one symbol libflowlib_cuda.so exports, looked up by backend/device.cpp.
// The module is built from the same tree as libflowlib.so; the version check
// refuses a module from another build (the Backend interface is C++ and
// changes between versions).
#pragma once

#include <cstddef>
#include <cstdint>

namespace flow {
class Backend;
}

#define FLOWLIB_CUDA_ENTRY "flowlib_cuda_open"

// Returns the process-wide CUDA backend, or nullptr with a reason in
// error[0 .. cap) (no device, no driver, version mismatch). Never prints.
extern "C" typedef flow::Backend *(*flowlib_cuda_open_fn)(uint32_t version, char *error,
                                                           size_t cap);
