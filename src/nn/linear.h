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
    // Not copied: a copy would share the packed weight's storage, which the
    // next repacking of either overwrites.
    Linear(const Linear &) = delete;
    Linear &operator=(const Linear &) = delete;
    Linear(Linear &&) = default;
    Linear &operator=(Linear &&) = default;

    // Restricts the layer to the inputs an i32 index lists (the others are
    // known to be zero: x then has inputs.size() columns) or to the outputs
    // one lists (the others are not needed: y has outputs.size() columns).
    // The product skips the rest; the parameters keep their full layout, and
    // their unused entries get no gradient, as in the full product, where
    // they meet only zeros.
    void select_inputs(const Tensor &inputs) {
        in_index_ = inputs;
        prepared_ = prepared_rows_ = {};
    }
    void select_outputs(const Tensor &outputs) {
        out_index_ = outputs;
        prepared_ = prepared_rows_ = {};
    }

    size_t in() const { return in_index_.defined() ? in_index_.size() : in_; }
    size_t out() const { return out_index_.defined() ? out_index_.size() : out_; }

    void forward(const ParamArena &params, const Tensor &x, Tensor &y);
    // forward() into pre, and y = act(pre), fused where the backend can.
    void forward_activation(const ParamArena &params, const Tensor &x, Activation act,
                            Tensor &pre, Tensor &y);
    // forward_activation() on the columns of x that the i32 index cols
    // lists, read in place where the backend can (else gathered into
    // `gathered`).
    void forward_activation_cols(const ParamArena &params, const Tensor &x, const Tensor &cols,
                                 Tensor &gathered, Activation act, Tensor &pre, Tensor &y);
    // Accumulates dW, db into the gradient arena; writes dx when non-null.
    // Needs the last forward().
    void backward(const ParamArena &params, const Tensor &x, const Tensor &dy, Tensor *dx);
    // backward() for an input x = act(pre): dx goes on through the
    // activation, dx = (dy W) * act'(pre), fused where the backend can.
    void backward_through(const ParamArena &params, const Tensor &x, const Tensor &dy,
                          Activation act, const Tensor &pre, Tensor &dx);

private:
    // The weight and bias the product uses: the parameters, or the selected
    // part of them gathered into weight_sel_, bias_sel_; and the weight's
    // packed form. Made again only when the parameters' generation changed.
    void operands(const ParamArena &params, Backend &be, Tensor &weight, Tensor &bias);
    // operands(), and pre and y shaped for a forward_activation of `rows` rows.
    void activation_operands(const ParamArena &params, Backend &be, size_t rows, Tensor &weight,
                             Tensor &bias, Tensor &pre, Tensor &y);
    // dW and db of backward(); returns the weight dx = dy W reads.
    Tensor parameter_grads(const ParamArena &params, const Tensor &x, const Tensor &dy);
    const Tensor *packed() const { return if_defined(packed_); }
    bool selected() const { return in_index_.defined() || out_index_.defined(); }
    const Tensor *in_index() const { return if_defined(in_index_); }
    const Tensor *out_index() const { return if_defined(out_index_); }

    size_t in_, out_;
    size_t weight_, bias_; // arena ids
    Tensor in_index_, out_index_; // i32 selections; undefined = all
    // The selected parameters, gathered when the parameters change (the
    // optimizer moves the full ones), and their gradients before they are
    // scattered.
    Tensor weight_sel_, bias_sel_, dweight_sel_, dbias_sel_;
    // Backend::pack_weight's form of the weight the products use (undefined:
    // none); when it and the selected parameters were made.
    Tensor packed_;
    Derived prepared_;
    // Backend::pack_weight_rows's form of it for backward_through, made at
    // a train step's first part and read by the others; when it was made.
    Tensor packed_rows_;
    Derived prepared_rows_;
};

} // namespace flow
