#include "nn/made.h"

#include <algorithm>
#include <cmath>

#include "backend/philox.h"
#include "core/error.h"

namespace flow {

namespace {

// Philox stream of the hidden degrees of layer l.
uint64_t degree_stream(size_t layer) { return 0x6d61646500000000ull + layer; }

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
    const size_t D = c.order.size();
    if (D == 0) fail(Status::internal, "made: empty order");
    std::vector<int> in_degree(D);
    for (size_t k = 0; k < D; ++k) in_degree[(size_t)c.order[k]] = (int)k + 1;

    std::vector<std::vector<float>> masks;
    std::vector<int> prev = in_degree;
    for (size_t l = 0; l < c.hidden.size(); ++l) {
        const int lo = *std::min_element(prev.begin(), prev.end());
        const int hi = std::max(lo, (int)D - 1);
        std::vector<int> deg(c.hidden[l]);
        for (size_t u = 0; u < deg.size(); ++u) {
            uint32_t bits = philox4x32_10(c.mask_seed, degree_stream(l), u).v[0];
            deg[u] = lo + (int)(bits % (uint32_t)(hi - lo + 1));
        }
        std::vector<float> m(deg.size() * prev.size());
        for (size_t u = 0; u < deg.size(); ++u)
            for (size_t j = 0; j < prev.size(); ++j)
                m[u * prev.size() + j] = deg[u] >= prev[j] ? 1.0f : 0.0f;
        masks.push_back(std::move(m));
        prev = std::move(deg);
    }
    std::vector<float> m(c.blocks * D * prev.size());
    for (size_t b = 0; b < c.blocks; ++b)
        for (size_t d = 0; d < D; ++d)
            for (size_t j = 0; j < prev.size(); ++j)
                m[((b * D) + d) * prev.size() + j] = in_degree[d] > prev[j] ? 1.0f : 0.0f;
    masks.push_back(std::move(m));
    return masks;
}

MadeNet::MadeNet(Backend &be, ParamArena &params, const std::string &name,
                 const MadeConfig &c, InitFill out_bias_fill)
    : dim_(c.order.size()), context_dim_(c.context_dim), activation_(c.activation),
      pre_(c.hidden.size()), act_(c.hidden.size()) {
    std::vector<std::vector<float>> masks = made_masks(c);
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
        be.upload(layer.mask, masks[l].data());
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
}

void MadeNet::set_masks(const MadeConfig &c) {
    if (c.order.size() != dim_) fail(Status::internal, "made: set_masks: wrong dimension");
    std::vector<std::vector<float>> masks = made_masks(c);
    if (masks.size() != layers_.size()) fail(Status::internal, "made: set_masks: wrong depth");
    for (size_t l = 0; l < layers_.size(); ++l) {
        if (masks[l].size() != layers_[l].mask.size())
            fail(Status::internal, "made: set_masks: wrong layer size");
        layers_[l].mask.backend().upload(layers_[l].mask, masks[l].data());
    }
    masks_changed_ = true;
}

const Tensor &MadeNet::forward(const ParamArena &params, const Tensor &x,
                               const Tensor &context) {
    Backend &be = x.backend();
    input_ = x;
    if (context_dim_) context_ = context;
    const Tensor *h = &x;
    for (size_t l = 0; l < layers_.size(); ++l) {
        Layer &L = layers_[l];
        be.mul_elementwise(params.value(L.weight), L.mask, L.masked, false);
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
