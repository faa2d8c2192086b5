// A transform of a flow: an invertible map x -> z (forward = data -> latent)
// with the log-determinant of its Jacobian, and the backward pass of forward.
#pragma once

#include <cstdint>

#include "backend/backend.h"
#include "model/param_arena.h"

namespace flow {

// What a pass needs besides its tensors.
struct Pass {
    bool train;           // batch statistics, keep what backward() needs
    uint64_t noise_seed;  // dequantization noise: Philox key ...
    uint64_t noise_stream; // ... and stream of this pass, ...
    uint64_t noise_first = 0; // ... whose first element draws at this counter
};

// Every transform keeps the dimension: the model hands each call outputs
// (z, x, dx) already shaped [n, D] and logdet shaped [n].
class Transform {
public:
    virtual ~Transform() = default;

    // z = f(x); logdet[i] += log|det dz/dx| of row i. context is [n, C] or
    // undefined. x stays untouched until backward() when pass.train.
    virtual void forward(const ParamArena &params, const ParamArena &buffers,
                         const Tensor &x, const Tensor &context, Tensor &z,
                         Tensor &logdet, const Pass &pass) = 0;
    // x = f^-1(z); logdet[i] += log|det dx/dz|.
    virtual void inverse(const ParamArena &params, const ParamArena &buffers,
                         const Tensor &z, const Tensor &context, Tensor &x,
                         Tensor &logdet) = 0;
    // After a training forward(): dx from the loss gradients w.r.t. z and
    // w.r.t. this transform's logdet (per row); accumulates parameter
    // gradients into params.grads().
    virtual void backward(const ParamArena &params, const ParamArena &buffers,
                          const Tensor &dz, const Tensor &dlogdet, Tensor &dx) = 0;
    // Called once a train step has succeeded (running statistics).
    virtual void commit_train_step(ParamArena &) {}
    // Called after commit_train_step() with the parameters (already moved by
    // the optimizer), for state that lives in them: actnorm's data-dependent
    // initialization.
    virtual void commit_train_step_params(ParamArena &) {}
    // Host-side check of raw data when this transform comes first; throws
    // Status::invalid_argument for values outside its domain.
    virtual void check_data(const float *, size_t) const {}
    // Whether a training forward() and its backward() treat rows apart, so
    // that threads may each take a part of a batch through both and add up
    // their parameter gradients. Not so for batch statistics (batch norm,
    // actnorm's initializing step).
    virtual bool trains_rows_apart(const ParamArena &buffers) {
        (void)buffers;
        return true;
    }
    // Whether forward() when !pass.train, and inverse(), may be given one
    // tensor as input and output: evaluation passes then hand it their
    // buffer and skip a copy of the columns the transform leaves alone.
    virtual bool in_place() const { return false; }
};

} // namespace flow
