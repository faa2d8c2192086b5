#include "nn/mlp.h"

namespace flow {

Mlp::Mlp(ParamArena &params, const std::string &name, size_t in,
         const std::vector<size_t> &hidden, size_t out, Activation activation,
         bool zero_last)
    : activation_(activation), pre_(hidden.size()), act_(hidden.size()) {
    size_t width = in;
    for (size_t l = 0; l < hidden.size(); ++l) {
        layers_.emplace_back(params, name + "." + std::to_string(l), width, hidden[l], false);
        width = hidden[l];
    }
    layers_.emplace_back(params, name + "." + std::to_string(hidden.size()), width, out,
                         zero_last);
}

void Mlp::select(const Tensor &inputs, const Tensor &outputs) {
    layers_.front().select_inputs(inputs);
    layers_.back().select_outputs(outputs);
}

const Tensor &Mlp::forward(const ParamArena &params, const Tensor &x) {
    input_ = x;
    return forward_from(params, 0, x);
}

const Tensor &Mlp::forward_cols(const ParamArena &params, const Tensor &x, const Tensor &cols,
                                Tensor &gathered) {
    if (layers_.size() == 1) { // the one layer has no activation to fuse with
        Backend &be = x.backend();
        gathered.ensure(be, {x.rows(), cols.size()});
        be.gather(x, nullptr, &cols, gathered);
        return forward_from(params, 0, gathered);
    }
    layers_[0].forward_activation_cols(params, x, cols, gathered, activation_, pre(0), act_[0]);
    return forward_from(params, 1, act_[0]);
}

// Layers from `first` on, h the input of that layer.
const Tensor &Mlp::forward_from(const ParamArena &params, size_t first, const Tensor &h) {
    const Tensor *in = &h;
    for (size_t l = first; l + 1 < layers_.size(); ++l) {
        layers_[l].forward_activation(params, *in, activation_, pre(l), act_[l]);
        in = &act_[l];
    }
    layers_.back().forward(params, *in, out_);
    return out_;
}

void Mlp::backward(const ParamArena &params, const Tensor &dy, Tensor *dx) {
    const Tensor *grad = &dy;
    for (size_t l = layers_.size() - 1; l > 0; --l) {
        Tensor &next = grad == &grad_a_ ? grad_b_ : grad_a_;
        // On through the activation: d pre = d act * act'(pre).
        layers_[l].backward_through(params, act_[l - 1], *grad, activation_, pre(l - 1), next);
        grad = &next;
    }
    layers_[0].backward(params, input_, *grad, dx);
}

} // namespace flow
