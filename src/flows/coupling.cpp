#include "flows/coupling.h"

#include <cstdint>

namespace flow {

namespace {

Tensor index_tensor(Backend &backend, const std::vector<int32_t> &index) {
    Tensor t(backend, {index.size()}, DType::i32);
    backend.upload(t, index.data());
    return t;
}

// The conditioner sees [x * mask, context] and only the free columns (mask
// 0) of its output move x. So the layer works on the free columns alone:
// the net reads just the passed columns and the context (the masked-out
// inputs are zeros) and computes just the outputs of the free columns, and
// the coupling op runs on the gathered free columns.
// The full computation's numbers (up to the order of float sums) for about
// half its work.
class Coupling final : public Transform {
public:
    Coupling(Backend &be, ParamArena &params, const std::string &name,
             const CouplingConfig &c)
        : affine_(c.affine), dim_(c.mask.size()), context_dim_(c.context_dim),
          net_(params, name + ".net", dim_ + c.context_dim, c.hidden,
               c.affine ? 2 * dim_ : dim_, c.activation, true) {
        std::vector<int32_t> passed, free;
        for (size_t j = 0; j < dim_; ++j) (c.mask[j] != 0.0f ? passed : free).push_back(int32_t(j));
        passed_ = index_tensor(be, passed);
        free_ = index_tensor(be, free);
        std::vector<int32_t> net_inputs = passed, net_outputs = free;
        for (size_t k = 0; k < context_dim_; ++k) net_inputs.push_back(int32_t(dim_ + k));
        if (affine_) // log-scales in the first dim_ outputs, shifts in the next
            for (int32_t j : free) net_outputs.push_back(int32_t(dim_) + j);
        net_.select(index_tensor(be, net_inputs), index_tensor(be, net_outputs));
        if (affine_) scale_ = params.declare(name + ".scale", {dim_}, Init::ones);
    }

    void forward(const ParamArena &params, const ParamArena &, const Tensor &x,
                 const Tensor &context, Tensor &z, Tensor &logdet, const Pass &pass) override {
        couple(params, x, context, z, logdet, false, pass.train);
    }

    void inverse(const ParamArena &params, const ParamArena &, const Tensor &z,
                 const Tensor &context, Tensor &x, Tensor &logdet) override {
        // The passed part of z is the passed part of x, so the net sees the
        // same input as in forward().
        couple(params, z, context, x, logdet, true, false);
    }

    // Only the free columns change, and the net reads the passed ones (and
    // the affine op the free ones) before any is written.
    bool in_place() const override { return true; }

    void backward(const ParamArena &params, const ParamArena &, const Tensor &dz,
                  const Tensor &dlogdet, Tensor &dx) override {
        Backend &be = dz.backend();
        const size_t n = dz.rows(), free = free_.size();
        dz_free_.ensure(be, {n, free});
        be.gather_cols(dz, free_, dz_free_);
        if (affine_) {
            dh_.ensure(be, {n, 2 * free});
            dx_free_.ensure(be, {n, free});
            dscale_free_.ensure(be, {free});
            be.fill(dscale_free_, 0.0f);
            be.affine_coupling_backward(in_free_, net_.output(), scale_free_, dz_free_, dlogdet,
                                        dx_free_, dh_, dscale_free_);
            Tensor dscale = params.grad(scale_);
            be.scatter(dscale_free_, nullptr, &free_, dscale, true);
        }
        // Additive: the shift's gradient is dz's free part itself.
        net_.backward(params, affine_ ? dh_ : dz_free_, &dnet_in_);
        be.copy(dz, dx);
        if (affine_) be.scatter(dx_free_, nullptr, &free_, dx, false);
        // x reaches the net through its passed columns (dnet_in_'s first ones).
        be.scatter(dnet_in_, nullptr, &passed_, dx, true);
    }

private:
    // out = the coupling of in (forward, or inverse when `inverse`); out may
    // be in itself. `train`: keep what backward() needs.
    void couple(const ParamArena &params, const Tensor &in, const Tensor &context, Tensor &out,
                Tensor &logdet, bool inverse, bool train) {
        Backend &be = in.backend();
        const Tensor &h = condition(params, in, context, train);
        if (&out != &in) be.copy(in, out);
        out_free_.ensure(be, {in.rows(), free_.size()});
        if (!affine_) { // the free columns move by t = h (forward) or -t
            const Tensor *t = &h;
            if (inverse) {
                be.copy(h, out_free_);
                be.scale(out_free_, -1.0f);
                t = &out_free_;
            }
            be.scatter(*t, nullptr, &free_, out, true);
            return;
        }
        in_free_.ensure(be, out_free_.shape());
        be.gather_cols(in, free_, in_free_);
        scale_free_.ensure(be, {free_.size()});
        be.gather_cols(params.value(scale_), free_, scale_free_);
        if (inverse)
            be.affine_coupling_inverse(in_free_, h, scale_free_, out_free_, logdet);
        else
            be.affine_coupling_forward(in_free_, h, scale_free_, out_free_, logdet);
        be.scatter(out_free_, nullptr, &free_, out, false);
    }

    // The conditioner's output for input [x's passed columns, context].
    const Tensor &condition(const ParamArena &params, const Tensor &x, const Tensor &context,
                            bool train) {
        // Evaluation lets the net read the passed columns in place (the
        // backward pass needs them gathered).
        if (!context_dim_ && !train) return net_.forward_cols(params, x, passed_, net_in_);
        Backend &be = x.backend();
        const size_t n = x.rows(), passed = passed_.size();
        net_in_.ensure(be, {n, passed + context_dim_});
        if (!context_dim_) {
            be.gather_cols(x, passed_, net_in_);
        } else {
            passed_in_.ensure(be, {n, passed});
            be.gather_cols(x, passed_, passed_in_);
            be.concat_cols(passed_in_, context, net_in_);
        }
        return net_.forward(params, net_in_);
    }

    bool affine_;
    size_t dim_, context_dim_;
    Mlp net_;
    size_t scale_ = 0;
    Tensor passed_, free_; // i32 column indices: mask 1, mask 0
    // in_free_, scale_free_ and the net's output stay from the last forward()
    // for backward().
    Tensor in_free_, out_free_, scale_free_, passed_in_, net_in_;
    Tensor dz_free_, dx_free_, dh_, dscale_free_, dnet_in_;
};

} // namespace

std::unique_ptr<Transform> make_coupling(Backend &backend, ParamArena &params,
                                         const std::string &name,
                                         const CouplingConfig &config) {
    return std::make_unique<Coupling>(backend, params, name, config);
}

} // namespace flow
