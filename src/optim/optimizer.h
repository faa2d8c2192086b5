// First-order optimizers over the whole parameter arena: one fused update
// per step, with optional clipping of the global gradient norm.
#pragma once

#include <cstdint>

#include "model/param_arena.h"
#include "model/spec.h"

namespace flow {

class Optimizer {
public:
    Optimizer(Backend &backend, size_t param_count, OptimizerConfig config);

    const OptimizerConfig &config() const { return config_; }
    // Updates params from their gradients.
    void step(ParamArena &params);
    // Steps taken since the optimizer was set (Adam's bias correction).
    uint64_t steps() const { return steps_; }
    void restore_steps(uint64_t steps) { steps_ = steps; }

    // State tensors (Adam: first and second moments; SGD: the momentum
    // buffer in `first`), saved with the model for exact resumption.
    Tensor &first() { return first_; }
    Tensor &second() { return second_; }
    const Tensor &first() const { return first_; }
    const Tensor &second() const { return second_; }
    bool has_second() const { return config_.type != "sgd"; }

private:
    OptimizerConfig config_;
    uint64_t steps_ = 0;
    Tensor first_, second_;
};

} // namespace flow
