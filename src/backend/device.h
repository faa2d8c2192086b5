// Which backend serves which device.
#pragma once

#include "backend/backend.h"

namespace flow {

bool device_available(DeviceKind kind);
// Throws Status::unsupported (no such backend in this build) or
// Status::device (the device is absent).
Backend &backend_for(DeviceKind kind);

} // namespace flow
