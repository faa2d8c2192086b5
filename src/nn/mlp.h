// Multi-layer perceptron: Linear -> activation -> ... -> Linear. Used as the
// conditioner of coupling layers. forward() keeps every layer's input and
// pre-activation in the block's own workspace for backward().
#pragma once

#include <string>
#include <vector>

#include "nn/linear.h"

namespace flow {

class Mlp {
public:
    // The last layer starts at zero when zero_last.
    Mlp(ParamArena &params, const std::string &name, size_t in,
        const std::vector<size_t> &hidden, size_t out, Activation activation,
        bool zero_last);

    // Restricts the net to the listed inputs (the others are known zeros) and
    // outputs (the others are not needed); see Linear::select_inputs.
    void select(const Tensor &inputs, const Tensor &outputs);

    // Returns the output [n, out]; valid until the next forward().
    const Tensor &forward(const ParamArena &params, const Tensor &x);
    // forward() of x's columns that the i32 index cols lists, which the
    // first layer reads in place where the backend can (else they are
    // gathered into `gathered`). For evaluation: backward() needs forward()'s
    // input.
    const Tensor &forward_cols(const ParamArena &params, const Tensor &x, const Tensor &cols,
                               Tensor &gathered);
    // From the output gradient dy: accumulates parameter gradients and, when
    // dx is non-null, writes the input gradient. Needs the last forward().
    void backward(const ParamArena &params, const Tensor &dy, Tensor *dx);
    // The output of the last forward().
    const Tensor &output() const { return out_; }

private:
    const Tensor &forward_from(const ParamArena &params, size_t first, const Tensor &h);

    std::vector<Linear> layers_;
    Activation activation_;
    Tensor input_;                 // the x of the last forward (a handle)
    std::vector<Tensor> pre_, act_; // per hidden layer: before and after activation
    // Hidden layer l's pre-activations: its activations themselves when the
    // activation's derivative follows from its output (as in MadeNet).
    Tensor &pre(size_t l) { return derivative_from_output(activation_) ? act_[l] : pre_[l]; }
    Tensor out_;
    Tensor grad_a_, grad_b_;        // ping-pong buffers for backward
};

} // namespace flow
