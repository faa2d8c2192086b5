#include "flows/made.h"

namespace flow {

namespace {

class MadeAffine final : public Transform {
public:
    MadeAffine(Backend &be, ParamArena &params, const std::string &name, const MadeConfig &c,
               bool iaf)
        : iaf_(iaf), dim_(c.order.size()), order_(c.order), net_(be, params, name + ".made", c) {}

    void forward(const ParamArena &params, const ParamArena &, const Tensor &x,
                 const Tensor &context, Tensor &z, Tensor &logdet, const Pass &) override {
        x_ = x;
        if (!iaf_) {
            const Tensor &h = net_.forward(params, x, context);
            x.backend().made_affine_forward(x, h, z, logdet);
        } else {
            // logdet += sum alpha(z) = log|dz/dx|
            solve(params, x, context, z, &logdet);
            z_ = z;
        }
    }

    void inverse(const ParamArena &params, const ParamArena &, const Tensor &z,
                 const Tensor &context, Tensor &x, Tensor &logdet) override {
        if (!iaf_) {
            solve(params, z, context, x, &logdet);
        } else {
            // log|dx/dz| = -sum alpha(z)
            const Tensor &h = net_.forward(params, z, context);
            z.backend().made_affine_forward(z, h, x, logdet);
        }
    }

    void backward(const ParamArena &params, const ParamArena &, const Tensor &dz,
                  const Tensor &dlogdet, Tensor &dx) override {
        Backend &be = dz.backend();
        const size_t n = dz.rows();
        dh_.ensure(be, {n, 2 * dim_});
        if (!iaf_) {
            be.made_affine_backward(x_, net_.output(), dz, &dlogdet, dx, dh_);
            net_.backward(params, dh_, &dnet_, true);
            be.axpy(1.0f, dnet_, dx);
            return;
        }
        // IAF: z solves F(z) = x with F(u) = (u - mu(u)) exp(-alpha(u)) and
        // logdet = sum alpha(z). The net's workspace holds the pass at z.
        const Tensor &h = net_.output();
        direct_.ensure(be, {n, dim_});
        zeros_.ensure(be, {n, dim_});
        be.fill(zeros_, 0.0f);
        // g = dz + dl * d(sum alpha)/dz through the net.
        be.made_affine_backward(z_, h, zeros_, &dlogdet, direct_, dh_); // dh = [0, -dl]
        be.scale(dh_, -1.0f);
        net_.backward(params, dh_, &dnet_, false);
        g_.ensure(be, {n, dim_});
        be.copy(dz, g_);
        be.axpy(1.0f, dnet_, g_);
        // exp(alpha) * w as made_affine_inverse with mu = 0: h0 = [0, alpha].
        alpha_.ensure(be, {n, dim_});
        be.slice_cols(h, dim_, alpha_);
        h0_.ensure(be, {n, 2 * dim_});
        be.concat_cols(zeros_, alpha_, h0_);
        // J^T v = g, J = diag(exp(-alpha)) + N with N strictly triangular in
        // the order: v = exp(alpha) * (g - N^T v), exact after D - 1 sweeps.
        be.made_affine_inverse(g_, h0_, dx, nullptr);
        w_.ensure(be, {n, dim_});
        for (size_t sweep = 1; sweep < dim_; ++sweep) {
            be.made_affine_backward(z_, h, dx, nullptr, direct_, dh_);
            net_.backward(params, dh_, &dnet_, false); // N^T v
            be.copy(g_, w_);
            be.axpy(-1.0f, dnet_, w_);
            be.made_affine_inverse(w_, h0_, dx, nullptr);
        }
        // Parameters: dl * d(sum alpha)/dtheta - v^T dF/dtheta, i.e. the net
        // gradient dh = [v exp(-alpha), v * x + dl].
        be.made_affine_backward(z_, h, dx, &dlogdet, direct_, dh_);
        be.scale(dh_, -1.0f);
        net_.backward(params, dh_, nullptr, true);
    }

private:
    // out solves in = (out - mu(out)) * exp(-alpha(out)), i.e.
    // out = in * exp(alpha(out)) + mu(out): D passes, pass k writing only the
    // dimension order[k] (the dimensions not yet fixed stay 0, so no pass
    // ever sees an overflowing intermediate). logdet += sum alpha(out).
    // The weights are masked once; passes before the last compute only the
    // outputs of their dimension, from the units that reach them. The last
    // pass is a full one: the logdet sums every alpha, and afterwards the
    // net's workspace holds the pass at the final `out` (its input handle
    // is `out`, and the activations of the pass before it match: no hidden
    // unit sees the last dimension of the order).
    // Workspaces are the net's and `out` itself: no allocation per pass.
    void solve(const ParamArena &params, const Tensor &in, const Tensor &context, Tensor &out,
               Tensor *logdet) {
        Backend &be = in.backend();
        be.fill(out, 0.0f);
        net_.mask_weights(params);
        for (size_t pass = 0; pass + 1 < dim_; ++pass) {
            const Tensor &h = net_.forward_dimension(params, out, context, pass);
            be.made_affine_inverse(in, h, out, nullptr, (long)order_[pass]);
        }
        const Tensor &h = net_.forward_masked(params, out, context);
        be.made_affine_inverse(in, h, out, logdet, (long)order_[dim_ - 1]);
    }

    bool iaf_;
    size_t dim_;
    std::vector<int> order_;
    MadeNet net_;
    Tensor x_, z_, dh_, dnet_, direct_, zeros_, g_, alpha_, h0_, w_;
};

} // namespace

std::unique_ptr<Transform> make_made_affine(Backend &backend, ParamArena &params,
                                            const std::string &name, const MadeConfig &made,
                                            bool iaf) {
    return std::make_unique<MadeAffine>(backend, params, name, made, iaf);
}

} // namespace flow
