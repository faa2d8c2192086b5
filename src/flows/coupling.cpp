#include "flows/coupling.h"

namespace flow {

namespace {

class Coupling final : public Transform {
public:
    Coupling(Backend &be, ParamArena &params, const std::string &name,
             const CouplingConfig &c)
        : affine_(c.affine), dim_(c.mask.size()), context_dim_(c.context_dim),
          net_(params, name + ".net", dim_ + c.context_dim, c.hidden,
               c.affine ? 2 * dim_ : dim_, c.activation, true) {
        std::vector<float> inverse_mask(dim_);
        for (size_t j = 0; j < dim_; ++j) inverse_mask[j] = 1.0f - c.mask[j];
        mask_ = Tensor(be, {dim_});
        be.upload(mask_, c.mask.data());
        inverse_mask_ = Tensor(be, {dim_});
        be.upload(inverse_mask_, inverse_mask.data());
        if (affine_) scale_ = params.declare(name + ".scale", {dim_}, Init::ones);
    }

    void forward(const ParamArena &params, const ParamArena &, const Tensor &x,
                 const Tensor &context, Tensor &z, Tensor &logdet, const Pass &) override {
        const Tensor &h = condition(params, x, context);
        if (affine_)
            x.backend().affine_coupling_forward(x, mask_, h, params.value(scale_), z, logdet);
        else
            x.backend().additive_coupling(x, mask_, h, 1.0f, z);
        x_ = x;
    }

    void inverse(const ParamArena &params, const ParamArena &, const Tensor &z,
                 const Tensor &context, Tensor &x, Tensor &logdet) override {
        // The masked part of z is the masked part of x, so the net sees the
        // same input as in forward().
        const Tensor &h = condition(params, z, context);
        if (affine_)
            z.backend().affine_coupling_inverse(z, mask_, h, params.value(scale_), x, logdet);
        else
            z.backend().additive_coupling(z, mask_, h, -1.0f, x);
    }

    void backward(const ParamArena &params, const ParamArena &, const Tensor &dz,
                  const Tensor &dlogdet, Tensor &dx) override {
        Backend &be = dz.backend();
        dh_.ensure(be, {dz.rows(), affine_ ? 2 * dim_ : dim_});
        if (affine_) {
            Tensor dscale = params.grad(scale_);
            be.affine_coupling_backward(x_, mask_, net_.output(), params.value(scale_), dz,
                                        dlogdet, dx, dh_, dscale);
        } else {
            be.copy(dz, dx);
            be.mul_row_vector(dz, inverse_mask_, dh_, false);
        }
        net_.backward(params, dh_, &dnet_in_);
        const Tensor *dmasked = &dnet_in_;
        if (context_dim_) {
            dmasked_.ensure(be, {dz.rows(), dim_});
            be.slice_cols(dnet_in_, 0, dmasked_);
            dmasked = &dmasked_;
        }
        // x reaches the net only through x * mask.
        be.mul_row_vector(*dmasked, mask_, dx, true);
    }

private:
    // The conditioner's output for input [x * mask, context].
    const Tensor &condition(const ParamArena &params, const Tensor &x,
                            const Tensor &context) {
        Backend &be = x.backend();
        masked_.ensure(be, x.shape());
        be.mul_row_vector(x, mask_, masked_, false);
        const Tensor *in = &masked_;
        if (context_dim_) {
            net_in_.ensure(be, {x.rows(), dim_ + context_dim_});
            be.concat_cols(masked_, context, net_in_);
            in = &net_in_;
        }
        return net_.forward(params, *in);
    }

    bool affine_;
    size_t dim_, context_dim_;
    Mlp net_;
    size_t scale_ = 0;
    Tensor mask_, inverse_mask_;
    Tensor x_, masked_, net_in_, dh_, dnet_in_, dmasked_;
};

} // namespace

std::unique_ptr<Transform> make_coupling(Backend &backend, ParamArena &params,
                                         const std::string &name,
                                         const CouplingConfig &config) {
    return std::make_unique<Coupling>(backend, params, name, config);
}

} // namespace flow
