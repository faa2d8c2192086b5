#include "backend/device.h"

#include "core/error.h"

namespace flow {

bool device_available(DeviceKind kind) { return kind == DeviceKind::cpu; }

Backend &backend_for(DeviceKind kind) {
    if (kind == DeviceKind::cpu) return cpu_backend();
    fail(Status::unsupported, "this build of flowlib has no CUDA backend");
}

} // namespace flow
