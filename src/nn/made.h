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
//
// Computation runs with the inputs and hidden units sorted by degree (the
// inputs by their place in the order): a unit then connects to a prefix of
// the previous layer, so each mask is a staircase, and the staircase
// products (Backend::staircase_*) skip its zero half. The outputs stay in
// place, where each block's prefixes still run monotone for the natural and
// the reversed order (a random order leaves the output layer about dense).
// Parameters keep their layout: each forward gathers them into degree
// order, and backward scatters their gradients back.
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
    // Gathers the parameters into degree order, the weights masked (only
    // when the parameters' generation or the masks changed since the last
    // time). A D-pass solve does this once and then runs forward_masked() /
    // forward_dimension(), which use the parameters of the last
    // mask_weights() (or forward()).
    void mask_weights(const ParamArena &params);
    const Tensor &forward_masked(const ParamArena &params, const Tensor &x,
                                 const Tensor &context);
    // Writes only the outputs of the k-th dimension d of the order (columns
    // b * D + d of out; the others keep their values), from the only units
    // connected to them: the inputs before d in the order and the hidden
    // units of degree <= k, the leading units of each layer in degree order.
    // It leaves no workspace for backward(): run forward() or
    // forward_masked() before the next backward().
    const Tensor &forward_dimension(const ParamArena &params, const Tensor &x,
                                    const Tensor &context, size_t k);
    // From dy [n, blocks * D] after the last forward(): writes dx when
    // non-null; adds the parameter gradients only when param_grads.
    void backward(const ParamArena &params, const Tensor &dy, Tensor *dx, bool param_grads);
    const Tensor &output() const { return out_; }
    // Replaces the masks by those of `config` (same sizes; another order or
    // mask seed). Parameters keep their values; since gradients only ever
    // reach the entries a mask lets through, one step may accumulate the
    // gradients of passes with different masks.
    void set_masks(const MadeConfig &config);

private:
    static constexpr size_t kNoContext = ~size_t(0);
    // Rows in this layer's units' order of computation (degree order, the
    // outputs in place), columns in the previous layer's.
    struct Layer {
        size_t in, out, weight, bias;
        size_t context = kNoContext; // the context weight entering this layer
        std::vector<size_t> prefix;  // row u connects to columns [0, prefix[u])
        Tensor mask;                 // [out, in] 0/1, fixed between set_masks()
        // The parameters of the last mask_weights(): weight * mask [out, in],
        // bias [out], context weight [out, C]; and what pack_staircase made
        // of the weight (undefined where the backend packs nothing).
        Tensor weight_sorted, bias_sorted, context_sorted, weight_packed;
    };
    // Computes the unit orders, prefixes and masks of `config`.
    void load_masks(const MadeConfig &config);
    // Layer l on h (the previous layer's units, or the leading ones, in
    // degree order) with the given rows of its parameters: y = h w^T + bias
    // (+ context context_weight^T), and for a hidden layer act_[l] = act(y).
    // packed: what pack_staircase made of w, or null.
    void layer_forward(size_t l, const Tensor &h, const Tensor &w, const Tensor *packed,
                       const Tensor &bias, const size_t *prefix, const Tensor &context,
                       const Tensor &context_weight, Tensor &y);
    // The units of unit layer l (0 = inputs, then the hidden layers) in
    // degree order; null for the outputs, which stay in place.
    const Tensor *sorted_units(size_t l) const {
        return l < units_.size() ? &units_[l] : nullptr;
    }
    // The first `count` units of unit layer l in degree order.
    Tensor lowest_units(size_t layer, size_t count) const;

    size_t dim_, context_dim_, blocks_;
    Activation activation_;
    std::vector<Layer> layers_;
    // Per unit layer its units in degree order (i32), and reach_[l][g] =
    // how many of them have degree <= g, for g in [0, D]. inputs_in_order_:
    // the order is the natural one, so the inputs need no gather.
    std::vector<Tensor> units_;
    std::vector<std::vector<size_t>> reach_;
    bool inputs_in_order_ = false;
    // forward_dimension: row k (i32 [D, blocks]) = the output columns of the
    // k-th dimension of the order.
    Tensor output_columns_;
    // When the sorted parameters were gathered (never, if the masks changed
    // since).
    Derived masked_;
    // The last forward's inputs (in degree order) and context, then per
    // hidden layer its pre-activations and activations in degree order.
    Tensor input_, input_sorted_, context_;
    std::vector<Tensor> pre_, act_;
    // Hidden layer l's pre-activations: its activations themselves when the
    // activation's derivative follows from its output.
    Tensor &pre(size_t l) { return derivative_from_output(activation_) ? act_[l] : pre_[l]; }
    Tensor gathered_, out_, grad_a_, grad_b_, db_, dc_;
    // forward_dimension's inputs, output-layer rows and outputs.
    Tensor sub_input_, sub_weight_, sub_bias_, sub_context_, sub_out_;
};

} // namespace flow
