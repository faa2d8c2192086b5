#include "nn/made.h"

#include <algorithm>
#include <cmath>

#include "backend/philox.h"
#include "core/error.h"

namespace flow {

namespace {

// Philox stream of the hidden degrees of layer l.
uint64_t degree_stream(size_t layer) { return 0x6d61646500000000ull + layer; }

// The degrees of the units of every layer but the outputs: [0] the inputs
// (rank in the order + 1), then each hidden layer.
std::vector<std::vector<int>> made_degrees(const MadeConfig &c) {
    const size_t D = c.order.size();
    if (D == 0) fail(Status::internal, "made: empty order");
    std::vector<std::vector<int>> degrees(1, std::vector<int>(D));
    for (size_t k = 0; k < D; ++k) degrees[0][(size_t)c.order[k]] = (int)k + 1;
    for (size_t l = 0; l < c.hidden.size(); ++l) {
        const std::vector<int> &prev = degrees.back();
        const int lo = *std::min_element(prev.begin(), prev.end());
        const int hi = std::max(lo, (int)D - 1);
        std::vector<int> deg(c.hidden[l]);
        for (size_t u = 0; u < deg.size(); ++u) {
            uint32_t bits = philox4x32_10(c.mask_seed, degree_stream(l), u).v[0];
            deg[u] = lo + (int)(bits % (uint32_t)(hi - lo + 1));
        }
        degrees.push_back(std::move(deg));
    }
    return degrees;
}

} // namespace

MadeConfig made_draw(const MadeConfig &c, bool order, bool connectivity, uint64_t draw) {
    MadeConfig out = c;
    if (draw == 0) return out;
    if (order) {
        // Fisher-Yates with Philox draws (stream per draw)
        const uint64_t stream = 0x6f72646500000000ull + draw;
        const size_t n = c.order.size();
        for (size_t j = 0; j < n; ++j) out.order[j] = (int)j;
        for (size_t j = n; j > 1; --j) {
            size_t k = (size_t)(philox_uniform(philox4x32_10(c.mask_seed, stream, j).v[0]) * (float)j);
            std::swap(out.order[j - 1], out.order[k < j ? k : j - 1]);
        }
    }
    if (connectivity) {
        const PhiloxBlock b = philox4x32_10(c.mask_seed, 0x636f6e6e00000000ull + draw, 0);
        out.mask_seed = ((uint64_t)b.v[1] << 32) | b.v[0];
    }
    return out;
}


MadeNet::MadeNet(Backend &be, ParamArena &params, const std::string &name,
                 const MadeConfig &c, InitFill out_bias_fill)
    : dim_(c.order.size()), context_dim_(c.context_dim), blocks_(c.blocks),
      activation_(c.activation), units_(c.hidden.size() + 1), pre_(c.hidden.size()),
      act_(c.hidden.size()) {
    size_t width = dim_;
    for (size_t l = 0; l <= c.hidden.size(); ++l) {
        const bool last = l == c.hidden.size();
        const size_t out = last ? c.blocks * dim_ : c.hidden[l];
        const std::string layer = name + "." + std::to_string(l);
        // PyTorch's default bound, U(-1/sqrt(in), 1/sqrt(in)); the last layer
        // starts at zero (identity flow).
        const float bound = 1.0f / std::sqrt((float)width);
        const Init init = last ? Init::zeros : Init::uniform;
        Layer L;
        L.in = width;
        L.out = out;
        L.weight = params.declare(layer + ".weight", {out, width}, init, bound);
        L.bias = last && out_bias_fill
                     ? params.declare_custom(layer + ".bias", {out}, out_bias_fill)
                     : params.declare(layer + ".bias", {out}, init, bound);
        if (l == 0 && context_dim_ && !last)
            L.context = params.declare(name + ".context.weight", {out, context_dim_},
                                       Init::uniform, 1.0f / std::sqrt((float)context_dim_));
        // The first dimension of the order sees no hidden unit, so the
        // context also enters the outputs directly (starting at zero).
        if (last && context_dim_)
            L.context = params.declare(name + ".context_out.weight", {out, context_dim_},
                                       Init::zeros);
        L.mask = Tensor(be, {out, width});
        L.weight_sorted = Tensor(be, {out, width});
        L.bias_sorted = Tensor(be, {out});
        if (L.context != kNoContext) L.context_sorted = Tensor(be, {out, context_dim_});
        layers_.push_back(std::move(L));
        width = out;
    }
    if (context_dim_ && c.hidden.empty())
        fail(Status::spec, "spec: a conditional MADE needs at least one hidden layer");
    load_masks(c);
}

void MadeNet::load_masks(const MadeConfig &c) {
    if (c.order.size() != dim_) fail(Status::internal, "made: masks: wrong dimension");
    const std::vector<std::vector<int>> degrees = made_degrees(c);
    if (degrees.size() != layers_.size()) fail(Status::internal, "made: masks: wrong depth");
    // Unit layers in degree order (ties in unit order) and their reach.
    std::vector<std::vector<int32_t>> units(degrees.size());
    reach_.assign(degrees.size(), std::vector<size_t>(dim_ + 1, 0));
    for (size_t l = 0; l < degrees.size(); ++l) {
        const std::vector<int> &deg = degrees[l];
        if (deg.size() != layers_[l].in) fail(Status::internal, "made: masks: wrong layer size");
        units[l].resize(deg.size());
        for (size_t u = 0; u < deg.size(); ++u) units[l][u] = (int32_t)u;
        std::stable_sort(units[l].begin(), units[l].end(),
                         [&](int32_t a, int32_t b) { return deg[(size_t)a] < deg[(size_t)b]; });
        for (int g : deg) ++reach_[l][(size_t)g];
        for (size_t g = 1; g <= dim_; ++g) reach_[l][g] += reach_[l][g - 1];
    }
    inputs_in_order_ = std::is_sorted(c.order.begin(), c.order.end());

    // A hidden unit of degree g connects to the previous layer's units of
    // degree <= g, output b * D + d to those of degree <= rank(d): in degree
    // order, the first reach_[l][g] (or [rank(d)]) of them.
    std::vector<size_t> rank(dim_);
    for (size_t k = 0; k < dim_; ++k) rank[(size_t)c.order[k]] = k;
    Backend &be = layers_.front().mask.backend();
    for (size_t l = 0; l < layers_.size(); ++l) {
        Layer &L = layers_[l];
        const bool last = l + 1 == layers_.size();
        L.prefix.resize(L.out);
        std::vector<float> mask(L.out * L.in, 0.0f);
        for (size_t u = 0; u < L.out; ++u) {
            const size_t g =
                last ? rank[u % dim_] : (size_t)degrees[l + 1][(size_t)units[l + 1][u]];
            L.prefix[u] = reach_[l][g];
            std::fill_n(mask.begin() + u * L.in, L.prefix[u], 1.0f);
        }
        be.upload(L.mask, mask.data());
    }
    // Sizes do not change with the masks: set_masks() reuses the tensors.
    for (size_t l = 0; l < units.size(); ++l) {
        if (!units_[l].defined()) units_[l] = Tensor(be, {units[l].size()}, DType::i32);
        be.upload(units_[l], units[l].data());
    }
    std::vector<int32_t> columns(dim_ * blocks_);
    for (size_t k = 0; k < dim_; ++k)
        for (size_t b = 0; b < blocks_; ++b)
            columns[k * blocks_ + b] = (int32_t)(b * dim_ + (size_t)c.order[k]);
    if (!output_columns_.defined()) output_columns_ = Tensor(be, {dim_, blocks_}, DType::i32);
    be.upload(output_columns_, columns.data());
}

void MadeNet::set_masks(const MadeConfig &c) {
    load_masks(c);
    masked_ = {};
}

Tensor MadeNet::lowest_units(size_t layer, size_t count) const {
    return units_[layer].view(0, {count});
}

void MadeNet::mask_weights(const ParamArena &params) {
    if (masked_.current(params)) return;
    for (size_t l = 0; l < layers_.size(); ++l) {
        Layer &L = layers_[l];
        Backend &be = L.mask.backend();
        const Tensor *rows = sorted_units(l + 1);
        gathered_.ensure(be, L.weight_sorted.shape());
        be.gather(params.value(L.weight), rows, &units_[l], gathered_);
        be.mul_elementwise(gathered_, L.mask, L.weight_sorted, false);
        be.pack_staircase(L.weight_sorted, L.prefix.data(), L.weight_packed);
        be.gather(params.value(L.bias), nullptr, rows, L.bias_sorted);
        if (L.context != kNoContext)
            be.gather(params.value(L.context), rows, nullptr, L.context_sorted);
    }
    masked_.made(params);
}

const Tensor &MadeNet::forward(const ParamArena &params, const Tensor &x,
                               const Tensor &context) {
    mask_weights(params);
    return forward_masked(params, x, context);
}

const Tensor &MadeNet::forward_masked(const ParamArena &, const Tensor &x,
                                      const Tensor &context) {
    Backend &be = x.backend();
    const size_t n = x.rows();
    if (inputs_in_order_) {
        input_ = x;
    } else {
        input_sorted_.ensure(be, {n, dim_});
        be.gather(x, nullptr, &units_.front(), input_sorted_);
        input_ = input_sorted_;
    }
    if (context_dim_) context_ = context;
    const Tensor *h = &input_;
    for (size_t l = 0; l < layers_.size(); ++l) {
        const Layer &L = layers_[l];
        const bool last = l + 1 == layers_.size();
        Tensor &y = last ? out_ : pre(l);
        y.ensure(be, {n, L.out});
        layer_forward(l, *h, L.weight_sorted, if_defined(L.weight_packed), L.bias_sorted,
                      L.prefix.data(), context, L.context_sorted, y);
        if (!last) h = &act_[l];
    }
    return out_;
}

void MadeNet::layer_forward(size_t l, const Tensor &h, const Tensor &w, const Tensor *packed,
                            const Tensor &bias, const size_t *prefix, const Tensor &context,
                            const Tensor &context_weight, Tensor &y) {
    Backend &be = h.backend();
    const Layer &L = layers_[l];
    const bool hidden = l + 1 < layers_.size();
    if (hidden) act_[l].ensure(be, y.shape());
    if (hidden && L.context == kNoContext) {
        be.staircase_forward_activation(h, w, bias, prefix, activation_, y, act_[l], packed);
        return;
    }
    be.staircase_forward(h, w, bias, prefix, y, packed);
    if (L.context != kNoContext) be.gemm(false, true, 1.0f, context, context_weight, 1.0f, y);
    if (hidden) be.activation_forward(activation_, y, act_[l]);
}

// In degree order, the units pass k needs lead every hidden layer, so their
// products are top-left corners of the staircase products, empty where no
// unit is needed. Of the outputs it takes the rows of the k-th dimension.
const Tensor &MadeNet::forward_dimension(const ParamArena &, const Tensor &x,
                                         const Tensor &context, size_t k) {
    Backend &be = x.backend();
    const size_t n = x.rows();
    const Tensor outputs = output_columns_.view(k * blocks_, {blocks_});
    size_t width = reach_[0][k];
    sub_input_.ensure(be, {n, width});
    const Tensor inputs = lowest_units(0, width);
    be.gather(x, nullptr, &inputs, sub_input_);
    const Tensor *h = &sub_input_;
    for (size_t l = 0; l + 1 < layers_.size(); ++l) {
        const Layer &L = layers_[l];
        const size_t count = reach_[l + 1][k];
        Tensor &y = pre(l);
        y.ensure(be, {n, count});
        layer_forward(l, *h, L.weight_sorted.row_block(0, count), nullptr,
                      L.bias_sorted.view(0, {count}), L.prefix.data(), context,
                      L.context == kNoContext ? Tensor() : L.context_sorted.row_block(0, count),
                      y);
        h = &act_[l];
        width = count;
    }
    // The outputs of the k-th dimension see all the `width` units of h: a
    // dense product (a few columns, which the GEMM's dispatch handles best)
    // with the first `width` columns of their rows.
    const Layer &L = layers_.back();
    gathered_.ensure(be, {blocks_, L.in});
    be.gather(L.weight_sorted, &outputs, nullptr, gathered_);
    sub_weight_.ensure(be, {blocks_, width});
    be.slice_cols(gathered_, 0, sub_weight_);
    sub_bias_.ensure(be, {blocks_});
    be.gather(L.bias_sorted, nullptr, &outputs, sub_bias_);
    sub_out_.ensure(be, {n, blocks_});
    be.gemm_bias(false, true, *h, sub_weight_, sub_bias_, sub_out_);
    if (L.context != kNoContext) {
        sub_context_.ensure(be, {blocks_, context_dim_});
        be.gather(L.context_sorted, &outputs, nullptr, sub_context_);
        be.gemm(false, true, 1.0f, context, sub_context_, 1.0f, sub_out_);
    }
    out_.ensure(be, {n, blocks_ * dim_});
    be.scatter(sub_out_, nullptr, &outputs, out_, false);
    return out_;
}

// In the forward's order; the parameter gradients are scattered back to the
// parameters' layout, where they add to what is there.
void MadeNet::backward(const ParamArena &params, const Tensor &dy, Tensor *dx,
                       bool param_grads) {
    Backend &be = dy.backend();
    const size_t n = dy.rows();
    const Tensor *grad = &dy;
    for (size_t l = layers_.size(); l-- > 0;) {
        const Layer &L = layers_[l];
        const Tensor *rows = sorted_units(l + 1);
        if (param_grads) {
            Tensor dw = params.grad(L.weight), db = params.grad(L.bias);
            be.staircase_backward_weight(*grad, l == 0 ? input_ : act_[l - 1], L.prefix.data(),
                                         rows, units_[l], dw);
            db_.ensure(be, {L.out});
            be.sum_rows(*grad, db_, false);
            be.scatter(db_, nullptr, rows, db, true);
            if (L.context != kNoContext) {
                dc_.ensure(be, {L.out, context_dim_});
                be.gemm(true, false, 1.0f, *grad, context_, 0.0f, dc_);
                Tensor dc = params.grad(L.context);
                be.scatter(dc_, rows, nullptr, dc, true);
            }
        }
        if (l == 0 && !dx) break;
        if (l == 0 && inputs_in_order_) {
            dx->ensure(be, {n, L.in});
            be.staircase_backward_input(*grad, L.weight_sorted, L.prefix.data(), *dx);
            break;
        }
        Tensor &next = grad == &grad_a_ ? grad_b_ : grad_a_;
        next.ensure(be, {n, L.in});
        if (l == 0) {
            be.staircase_backward_input(*grad, L.weight_sorted, L.prefix.data(), next);
            dx->ensure(be, {n, L.in});
            be.scatter(next, nullptr, &units_.front(), *dx, false);
        } else { // on through the activation that made this layer's input
            be.staircase_activation_backward(*grad, L.weight_sorted, L.prefix.data(), activation_,
                                             pre(l - 1), act_[l - 1], next);
            grad = &next;
        }
    }
}

} // namespace flow
