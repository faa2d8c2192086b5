// Builds transform number `index` of a parsed spec, declaring its parameters.
#pragma once

#include <memory>

#include "flows/transform.h"
#include "model/spec.h"

namespace flow {

std::unique_ptr<Transform> make_transform(Backend &backend, ParamArena &params,
                                          ParamArena &buffers, const ModelSpec &spec,
                                          size_t index);

} // namespace flow
