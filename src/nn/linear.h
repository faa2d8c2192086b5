// Fully connected layer y = x W^T + b, W stored [out, in] as in PyTorch so
// weights load into a torch.nn.Linear unchanged.
#pragma once

#include <string>

#include "backend/backend.h"
#include "model/param_arena.h"

namespace flow {

class Linear {
public:
    // zero_init starts the layer at y = 0 (used for the last layer of
    // conditioner nets, so every coupling starts as the identity).
    Linear(ParamArena &params, const std::string &name, size_t in, size_t out,
           bool zero_init);

    size_t in() const { return in_; }
    size_t out() const { return out_; }

    void forward(const ParamArena &params, const Tensor &x, Tensor &y) const;
    // Accumulates dW, db into the gradient arena; writes dx when non-null.
    void backward(const ParamArena &params, const Tensor &x, const Tensor &dy,
                  Tensor *dx) const;

private:
    size_t in_, out_;
    size_t weight_, bias_; // arena ids
};

} // namespace flow
