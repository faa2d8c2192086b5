#include "nn/linear.h"

#include <cmath>

namespace flow {

Linear::Linear(ParamArena &params, const std::string &name, size_t in, size_t out,
               bool zero_init)
    : in_(in), out_(out) {
    // PyTorch's default: U(-1/sqrt(in), 1/sqrt(in)) for weights and biases.
    float bound = in ? 1.0f / std::sqrt((float)in) : 0.0f;
    Init init = zero_init ? Init::zeros : Init::uniform;
    weight_ = params.declare(name + ".weight", {out, in}, init, bound);
    bias_ = params.declare(name + ".bias", {out}, init, bound);
}

void Linear::forward(const ParamArena &params, const Tensor &x, Tensor &y) const {
    Backend &be = x.backend();
    y.ensure(be, {x.rows(), out_});
    be.gemm_bias(false, true, x, params.value(weight_), params.value(bias_), y);
}

void Linear::backward(const ParamArena &params, const Tensor &x, const Tensor &dy,
                      Tensor *dx) const {
    Backend &be = x.backend();
    Tensor dweight = params.grad(weight_), dbias = params.grad(bias_);
    be.gemm(true, false, 1.0f, dy, x, 1.0f, dweight);
    be.sum_rows(dy, dbias, true);
    if (dx) {
        dx->ensure(be, {x.rows(), in_});
        be.gemm(false, false, 1.0f, dy, params.value(weight_), 0.0f, *dx);
    }
}

} // namespace flow
