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

void Linear::operands(const ParamArena &params, Backend &be, Tensor &weight, Tensor &bias) {
    const bool fresh = prepared_.current(params);
    weight = params.value(weight_);
    bias = params.value(bias_);
    if (selected()) {
        if (!fresh) {
            weight_sel_.ensure(be, {out(), in()});
            be.gather(weight, out_index(), in_index(), weight_sel_);
        }
        weight = weight_sel_;
    }
    if (out_index_.defined()) {
        if (!fresh) {
            bias_sel_.ensure(be, {out()});
            be.gather(bias, nullptr, &out_index_, bias_sel_);
        }
        bias = bias_sel_;
    }
    if (!fresh) {
        be.pack_weight(weight, packed_);
        prepared_.made(params);
    }
}

void Linear::forward(const ParamArena &params, const Tensor &x, Tensor &y) {
    Backend &be = x.backend();
    Tensor weight, bias;
    operands(params, be, weight, bias);
    y.ensure(be, {x.rows(), out()});
    be.gemm_bias(false, true, x, weight, bias, y, packed());
}

void Linear::activation_operands(const ParamArena &params, Backend &be, size_t rows,
                                 Tensor &weight, Tensor &bias, Tensor &pre, Tensor &y) {
    operands(params, be, weight, bias);
    pre.ensure(be, {rows, out()});
    if (&y != &pre) y.ensure(be, pre.shape());
}

void Linear::forward_activation(const ParamArena &params, const Tensor &x, Activation act,
                                Tensor &pre, Tensor &y) {
    Backend &be = x.backend();
    Tensor weight, bias;
    activation_operands(params, be, x.rows(), weight, bias, pre, y);
    be.gemm_bias_activation(false, true, x, weight, bias, act, pre, y, packed());
}

void Linear::forward_activation_cols(const ParamArena &params, const Tensor &x,
                                     const Tensor &cols, Tensor &gathered, Activation act,
                                     Tensor &pre, Tensor &y) {
    Backend &be = x.backend();
    Tensor weight, bias;
    activation_operands(params, be, x.rows(), weight, bias, pre, y);
    be.gemm_bias_activation_cols(x, cols, gathered, weight, bias, act, pre, y, packed());
}

Tensor Linear::parameter_grads(const ParamArena &params, const Tensor &x, const Tensor &dy) {
    Backend &be = x.backend();
    Tensor dweight = params.grad(weight_), dbias = params.grad(bias_);
    if (selected()) {
        dweight_sel_.ensure(be, {out(), in()});
        be.gemm(true, false, 1.0f, dy, x, 0.0f, dweight_sel_);
        be.scatter(dweight_sel_, out_index(), in_index(), dweight, true);
    } else {
        be.gemm(true, false, 1.0f, dy, x, 1.0f, dweight);
    }
    if (out_index_.defined()) {
        dbias_sel_.ensure(be, {out()});
        be.sum_rows(dy, dbias_sel_, false);
        be.scatter(dbias_sel_, nullptr, &out_index_, dbias, true);
    } else {
        be.sum_rows(dy, dbias, true);
    }
    return selected() ? weight_sel_ : params.value(weight_);
}

void Linear::backward(const ParamArena &params, const Tensor &x, const Tensor &dy,
                      Tensor *dx) {
    const Tensor weight = parameter_grads(params, x, dy);
    if (dx) {
        dx->ensure(x.backend(), {x.rows(), in()});
        x.backend().gemm(false, false, 1.0f, dy, weight, 0.0f, *dx);
    }
}

void Linear::backward_through(const ParamArena &params, const Tensor &x, const Tensor &dy,
                              Activation act, const Tensor &pre, Tensor &dx) {
    Backend &be = x.backend();
    const Tensor weight = parameter_grads(params, x, dy);
    if (!prepared_rows_.current(params)) {
        be.pack_weight_rows(weight, packed_rows_);
        prepared_rows_.made(params);
    }
    dx.ensure(be, {x.rows(), in()});
    be.gemm_activation_backward(dy, weight, act, pre, x, dx, if_defined(packed_rows_));
}

} // namespace flow
