#include "backend/device.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <string>

#include "backend/cuda/cuda_module.h"
#include "core/error.h"
#include "flowlib_version.h"

namespace flow {

namespace {

// The CUDA backend module, loaded once on first use of the CUDA device and
// never unloaded (tensors keep pointers into it).
struct CudaModule {
    Backend *backend = nullptr;
    bool found = false; // a module file was loaded (a missing GPU is not "unsupported")
    std::string why;    // why backend is null
};

// The folder libflowlib.so (or the program that links the core) lives in:
// the module is installed next to it.
std::string own_folder() {
    Dl_info info;
    if (!dladdr((void *)&own_folder, &info) || !info.dli_fname) return "";
    std::string path = info.dli_fname;
    size_t slash = path.rfind('/');
    return slash == std::string::npos ? "" : path.substr(0, slash + 1);
}

void try_open(CudaModule &m, const std::string &path) {
    void *handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *e = dlerror();
        if (m.why.empty()) m.why = e ? e : path + ": cannot be loaded";
        return;
    }
    m.found = true;
    auto open = (flowlib_cuda_open_fn)dlsym(handle, FLOWLIB_CUDA_ENTRY);
    if (!open) {
        m.why = path + " has no " FLOWLIB_CUDA_ENTRY;
        return;
    }
    char error[512] = "";
    m.backend = open(FLOWLIB_VERSION_NUMBER, error, sizeof error);
    if (!m.backend) m.why = error;
}

// FLOWLIB_CUDA_MODULE names the module explicitly (the tests use it to pick
// the emulated one); otherwise the copy next to this library, then the
// loader's search path.
CudaModule load_cuda_module() {
    CudaModule m;
    const char *forced = std::getenv("FLOWLIB_CUDA_MODULE");
    if (forced && *forced) {
        try_open(m, forced);
        return m;
    }
    const std::string folder = own_folder();
    if (!folder.empty()) try_open(m, folder + "libflowlib_cuda.so");
    if (!m.found) try_open(m, "libflowlib_cuda.so");
    return m;
}

const CudaModule &cuda_module() {
    static std::once_flag once;
    static CudaModule module;
    std::call_once(once, [] { module = load_cuda_module(); });
    return module;
}

} // namespace

bool device_available(DeviceKind kind) {
    if (kind == DeviceKind::cpu) return true;
    if (kind == DeviceKind::cuda) return cuda_module().backend != nullptr;
    return false;
}

Backend &backend_for(DeviceKind kind) {
    if (kind == DeviceKind::cpu) return cpu_backend();
    const CudaModule &m = cuda_module();
    if (m.backend) return *m.backend;
    if (!m.found) fail(Status::unsupported, "no CUDA backend: " + m.why);
    fail(Status::device, "CUDA device unavailable: " + m.why);
}

} // namespace flow
