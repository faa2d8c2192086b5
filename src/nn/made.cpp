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

// A unit connects to the units of the previous layer of degree <= its own;
// the outputs of d to the last layer's units of degree < rank(d) + 1.
std::vector<std::vector<float>> masks_of_degrees(const std::vector<std::vector<int>> &degrees,
                                                 size_t blocks) {
    std::vector<std::vector<float>> masks;
    for (size_t l = 1; l < degrees.size(); ++l) {
        const std::vector<int> &prev = degrees[l - 1], &deg = degrees[l];
        std::vector<float> m(deg.size() * prev.size());
        for (size_t u = 0; u < deg.size(); ++u)
            for (size_t j = 0; j < prev.size(); ++j)
                m[u * prev.size() + j] = deg[u] >= prev[j] ? 1.0f : 0.0f;
        masks.push_back(std::move(m));
    }
    const std::vector<int> &in_degree = degrees.front(), &prev = degrees.back();
    const size_t D = in_degree.size();
    std::vector<float> m(blocks * D * prev.size());
    for (size_t b = 0; b < blocks; ++b)
        for (size_t d = 0; d < D; ++d)
            for (size_t j = 0; j < prev.size(); ++j)
                m[((b * D) + d) * prev.size() + j] = in_degree[d] > prev[j] ? 1.0f : 0.0f;
    masks.push_back(std::move(m));
    return masks;
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

std::vector<std::vector<float>> made_masks(const MadeConfig &c) {
    return masks_of_degrees(made_degrees(c), c.blocks);
}

MadeNet::MadeNet(Backend &be, ParamArena &params, const std::string &name,
                 const MadeConfig &c, InitFill out_bias_fill)
    : dim_(c.order.size()), context_dim_(c.context_dim), blocks_(c.blocks),
      activation_(c.activation), pre_(c.hidden.size()), act_(c.hidden.size()) {
    size_t width = dim_;
    for (size_t l = 0; l <= c.hidden.size(); ++l) {
        const bool last = l == c.hidden.size();
        const size_t out = last ? c.blocks * dim_ : c.hidden[l];
        // PyTorch's default bound, U(-1/sqrt(in), 1/sqrt(in)); the last layer
        // starts at zero (identity flow).
        const float bound = 1.0f / std::sqrt((float)width);
        const Init init = last ? Init::zeros : Init::uniform;
        Layer layer{width, out, 0, 0, Tensor(be, {out, width}), Tensor(be, {out, width})};
        layer.weight = params.declare(name + "." + std::to_string(l) + ".weight", {out, width},
                                      init, bound);
        layer.bias = last && out_bias_fill
                         ? params.declare_custom(name + "." + std::to_string(l) + ".bias", {out},
                                                 out_bias_fill)
                         : params.declare(name + "." + std::to_string(l) + ".bias", {out}, init,
                                          bound);
        layers_.push_back(std::move(layer));
        if (l == 0 && context_dim_ && !last)
            context_weight_ = params.declare(name + ".context.weight", {out, context_dim_},
                                             Init::uniform,
                                             1.0f / std::sqrt((float)context_dim_));
        // The first dimension of the order sees no hidden unit, so the
        // context also enters the outputs directly (starting at zero).
        if (last && context_dim_)
            context_out_weight_ = params.declare(name + ".context_out.weight",
                                                 {out, context_dim_}, Init::zeros);
        width = out;
    }
    if (context_dim_ && c.hidden.empty())
        fail(Status::spec, "spec: a conditional MADE needs at least one hidden layer");
    load_masks(c);
}

void MadeNet::load_masks(const MadeConfig &c) {
    if (c.order.size() != dim_) fail(Status::internal, "made: masks: wrong dimension");
    const std::vector<std::vector<int>> degrees = made_degrees(c);
    const std::vector<std::vector<float>> masks = masks_of_degrees(degrees, blocks_);
    if (masks.size() != layers_.size()) fail(Status::internal, "made: masks: wrong depth");
    for (size_t l = 0; l < layers_.size(); ++l) {
        if (masks[l].size() != layers_[l].mask.size())
            fail(Status::internal, "made: masks: wrong layer size");
        layers_[l].mask.backend().upload(layers_[l].mask, masks[l].data());
    }
    // Sizes do not change with the masks: set_masks() reuses the tensors.
    Backend &be = layers_.front().mask.backend();
    units_by_degree_.resize(degrees.size());
    reach_.resize(degrees.size());
    for (size_t l = 0; l < degrees.size(); ++l) {
        const std::vector<int> &deg = degrees[l];
        std::vector<int32_t> units(deg.size());
        for (size_t u = 0; u < units.size(); ++u) units[u] = (int32_t)u;
        std::stable_sort(units.begin(), units.end(),
                         [&](int32_t a, int32_t b) { return deg[(size_t)a] < deg[(size_t)b]; });
        if (!units_by_degree_[l].defined())
            units_by_degree_[l] = Tensor(be, {units.size()}, DType::i32);
        be.upload(units_by_degree_[l], units.data());
        reach_[l].resize(dim_);
        for (size_t k = 0; k < dim_; ++k)
            reach_[l][k] = (size_t)std::count_if(deg.begin(), deg.end(),
                                                 [&](int g) { return g <= (int)k; });
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
    masks_changed_ = true;
}

Tensor MadeNet::lowest_units(size_t layer, size_t count) const {
    return units_by_degree_[layer].view(0, {count});
}

void MadeNet::mask_weights(const ParamArena &params) {
    for (Layer &L : layers_)
        L.masked.backend().mul_elementwise(params.value(L.weight), L.mask, L.masked, false);
}

const Tensor &MadeNet::forward(const ParamArena &params, const Tensor &x,
                               const Tensor &context) {
    mask_weights(params);
    return forward_masked(params, x, context);
}

const Tensor &MadeNet::forward_masked(const ParamArena &params, const Tensor &x,
                                      const Tensor &context) {
    Backend &be = x.backend();
    input_ = x;
    if (context_dim_) context_ = context;
    const Tensor *h = &x;
    for (size_t l = 0; l < layers_.size(); ++l) {
        const Layer &L = layers_[l];
        const bool last = l + 1 == layers_.size();
        Tensor &y = last ? out_ : pre_[l];
        y.ensure(be, {x.rows(), L.out});
        be.gemm_bias(false, true, *h, L.masked, params.value(L.bias), y);
        if (context_dim_ && (l == 0 || last))
            be.gemm(false, true, 1.0f, context,
                    params.value(last ? context_out_weight_ : context_weight_), 1.0f, y);
        if (!last) {
            act_[l].ensure(be, y.shape());
            be.activation_forward(activation_, y, act_[l]);
            h = &act_[l];
        }
    }
    return out_;
}

const Tensor &MadeNet::forward_dimension(const ParamArena &params, const Tensor &x,
                                         const Tensor &context, size_t k) {
    Backend &be = x.backend();
    const size_t n = x.rows();
    const Tensor outputs = output_columns_.view(k * blocks_, {blocks_});
    // The units of the previous layer that take part: the first `width` by
    // degree, their values in h ([n, width]; null when there are none).
    size_t width = reach_[0][k];
    const Tensor *h = nullptr;
    if (width) {
        const Tensor inputs = lowest_units(0, width);
        sub_input_.ensure(be, {n, width});
        be.gather(x, nullptr, &inputs, sub_input_);
        h = &sub_input_;
    }
    for (size_t l = 0; l < layers_.size(); ++l) {
        const Layer &L = layers_[l];
        const bool last = l + 1 == layers_.size();
        const size_t count = last ? blocks_ : reach_[l + 1][k];
        // No unit of degree <= k here means none in later layers either (a
        // layer's degrees start at the previous layer's lowest).
        if (count == 0) {
            h = nullptr;
            width = 0;
            continue;
        }
        const Tensor units = last ? outputs : lowest_units(l + 1, count);
        Tensor &y = last ? sub_out_ : pre_[l];
        y.ensure(be, {n, count});
        sub_bias_.ensure(be, {count});
        be.gather(params.value(L.bias), nullptr, &units, sub_bias_);
        if (h) {
            const Tensor inputs = lowest_units(l, width);
            sub_weight_.ensure(be, {count, width});
            be.gather(L.masked, &units, &inputs, sub_weight_);
            be.gemm_bias(false, true, *h, sub_weight_, sub_bias_, y);
        } else { // no unit below reaches these: bias (and context) only
            be.fill(y, 0.0f);
            be.add_row_vector(y, sub_bias_);
        }
        if (context_dim_ && (l == 0 || last)) {
            sub_context_.ensure(be, {count, context_dim_});
            be.gather(params.value(last ? context_out_weight_ : context_weight_), &units, nullptr,
                      sub_context_);
            be.gemm(false, true, 1.0f, context, sub_context_, 1.0f, y);
        }
        if (!last) {
            act_[l].ensure(be, y.shape());
            be.activation_forward(activation_, y, act_[l]);
            h = &act_[l];
            width = count;
        }
    }
    out_.ensure(be, {n, blocks_ * dim_});
    be.scatter(sub_out_, nullptr, &outputs, out_, false);
    return out_;
}

void MadeNet::backward(const ParamArena &params, const Tensor &dy, Tensor *dx,
                       bool param_grads) {
    Backend &be = dy.backend();
    const Tensor *grad = &dy;
    for (size_t l = layers_.size(); l-- > 0;) {
        const Layer &L = layers_[l];
        const Tensor &in = l == 0 ? input_ : act_[l - 1];
        if (param_grads) {
            // dW += (dy^T in) * mask: the masked entries of dW stay zero (the
            // gradient arena starts every step at zero), so accumulating the
            // unmasked product and masking dW in place is the same.
            Tensor dw = params.grad(L.weight), db = params.grad(L.bias);
            if (masks_changed_) {
                dw_.ensure(be, {L.out, L.in});
                be.gemm(true, false, 1.0f, *grad, in, 0.0f, dw_);
                be.mul_elementwise(dw_, L.mask, dw, true);
            } else {
                be.gemm(true, false, 1.0f, *grad, in, 1.0f, dw);
                be.mul_elementwise(dw, L.mask, dw, false);
            }
            be.sum_rows(*grad, db, true);
            if (context_dim_ && (l == 0 || l + 1 == layers_.size())) {
                Tensor dc = params.grad(l + 1 == layers_.size() ? context_out_weight_
                                                                 : context_weight_);
                be.gemm(true, false, 1.0f, *grad, context_, 1.0f, dc);
            }
        }
        if (l > 0) {
            Tensor &next = grad == &grad_a_ ? grad_b_ : grad_a_;
            next.ensure(be, {dy.rows(), L.in});
            be.gemm(false, false, 1.0f, *grad, L.masked, 0.0f, next);
            be.activation_backward(activation_, pre_[l - 1], act_[l - 1], next, next);
            grad = &next;
        } else if (dx) {
            dx->ensure(be, {dy.rows(), L.in});
            be.gemm(false, false, 1.0f, *grad, L.masked, 0.0f, *dx);
        }
    }
}

} // namespace flow
