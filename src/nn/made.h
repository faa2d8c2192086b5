// MADE (Germain et al. 2015): an MLP whose weights are multiplied by fixed
// 0/1 masks so that output block k of dimension d sees only the inputs that
// come before d in a chosen order. The masks follow the paper's
// connectivity rule: input d has degree rank(d) + 1 (1..D), each hidden unit
// gets a degree in [min degree of the previous layer, D - 1] drawn from
// Philox(mask_seed), a unit connects to the units of the previous layer of
// degree <= its own, and the outputs of d connect to the hidden units of the
// last layer of degree < rank(d) + 1 (strictly lower).
//
// A context vector (conditional flows) enters the first hidden layer and the
// output layer through dense (unmasked) linear maps: every unit sees all of
// the context (the first dimension of the order has no hidden unit to see),
// which keeps the outputs autoregressive in x.
//
// Parameters: per layer l "<name>.<l>.weight" [out, in] (masked entries are
// stored but never used, and get zero gradient) and "<name>.<l>.bias";
// "<name>.context.weight" [h0, C] and "<name>.context_out.weight"
// [blocks * D, C] when there is a context. The last layer
// starts at zero, so a fresh MADE outputs 0 everywhere.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/param_arena.h"

namespace flow {

struct MadeConfig {
    std::vector<int> order;      // order[k] = the dimension modelled k-th
    std::vector<size_t> hidden;  // widths (may be empty: one masked layer)
    Activation activation = Activation::relu;
    size_t context_dim = 0;
    uint64_t mask_seed = 0;      // draws the hidden degrees
    size_t blocks = 2;           // outputs per dimension: out[:, b * D + d]
};

// Order- and connectivity-agnostic training: draw `draw` of a MADE's order
// and hidden degrees, a pure function of (c.order, c.mask_seed, draw). Draw 0
// is c itself; a draw d > 0 replaces the order by a random permutation of
// Philox(mask_seed) (when `order`) and the mask seed by one derived from
// (mask_seed, d) (when `connectivity`).
MadeConfig made_draw(const MadeConfig &c, bool order, bool connectivity, uint64_t draw);

// The masks of a MADE as host 0/1 arrays, [out, in] row-major per layer
// (layer 0 = input -> first hidden, last = -> outputs).
std::vector<std::vector<float>> made_masks(const MadeConfig &config);

class MadeNet {
public:
    // out_bias_fill, when set, initializes the output layer's bias (blocks *
    // D values) instead of zeros (the MADE MoG base spreads its means).
    MadeNet(Backend &backend, ParamArena &params, const std::string &name,
            const MadeConfig &config, InitFill out_bias_fill = {});

    size_t dim() const { return dim_; }
    // out [n, blocks * D]; valid until the next forward. context is [n, C]
    // or ignored when the net has none. forward() = mask_weights() +
    // forward_masked().
    const Tensor &forward(const ParamArena &params, const Tensor &x, const Tensor &context);
    // masked = weight * mask for every layer. A D-pass solve masks once and
    // then runs forward_masked() / forward_dimension(), which use the
    // weights of the last mask_weights() (or forward()).
    void mask_weights(const ParamArena &params);
    const Tensor &forward_masked(const ParamArena &params, const Tensor &x,
                                 const Tensor &context);
    // Writes only the outputs of the k-th dimension d of the order (columns
    // b * D + d of out; the others keep their values), from the only units
    // connected to them: the inputs before d in the order and the hidden
    // units of degree <= k, whose weight sub-matrices it gathers per call.
    // It leaves no workspace for backward(): run forward() or
    // forward_masked() before the next backward().
    const Tensor &forward_dimension(const ParamArena &params, const Tensor &x,
                                    const Tensor &context, size_t k);
    // From dy [n, blocks * D] after the last forward(): writes dx when
    // non-null; adds the parameter gradients only when param_grads.
    void backward(const ParamArena &params, const Tensor &dy, Tensor *dx, bool param_grads);
    const Tensor &output() const { return out_; }
    // Replaces the masks by those of `config` (same sizes; another order or
    // mask seed). Parameters keep their values. From then on backward()
    // masks each weight gradient before adding it, so one step may
    // accumulate the gradients of passes with different masks.
    void set_masks(const MadeConfig &config);

private:
    struct Layer {
        size_t in, out, weight, bias;
        Tensor mask, masked; // mask [out, in] (fixed), masked = weight * mask
    };
    // Uploads the masks of `config` and the unit orders forward_dimension
    // uses.
    void load_masks(const MadeConfig &config);
    // The first `count` units of unit layer l (0 = inputs, then the hidden
    // layers) by degree.
    Tensor lowest_units(size_t layer, size_t count) const;

    size_t dim_, context_dim_, blocks_;
    Activation activation_;
    std::vector<Layer> layers_;
    size_t context_weight_ = 0, context_out_weight_ = 0;
    Tensor input_, context_;            // handles of the last forward's inputs
    std::vector<Tensor> pre_, act_;     // per hidden layer
    Tensor out_, grad_a_, grad_b_, dw_;
    // forward_dimension: per unit layer, the units sorted by degree (i32)
    // and reach_[l][k] = how many have degree <= k; output_columns_ row k
    // (i32 [D, blocks]) = the columns of the k-th dimension of the order.
    std::vector<Tensor> units_by_degree_;
    std::vector<std::vector<size_t>> reach_;
    Tensor output_columns_;
    Tensor sub_input_, sub_weight_, sub_bias_, sub_context_, sub_out_;
    bool masks_changed_ = false;
};

} // namespace flow
