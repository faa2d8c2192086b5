// NICE's last layer, z = x * exp(s): additive couplings preserve volume, so
// this is where a NICE model learns how much each coordinate matters.
#include "flows/elementwise.h"

namespace flow {

namespace {

class DiagonalScale final : public Transform {
public:
    DiagonalScale(ParamArena &params, const std::string &name, size_t dim)
        : log_scale_(params.declare(name + ".log_scale", {dim}, Init::zeros)) {}

    void forward(const ParamArena &params, const ParamArena &, const Tensor &x,
                 const Tensor &, Tensor &z, Tensor &logdet, const Pass &) override {
        Backend &be = x.backend();
        Tensor s = params.value(log_scale_);
        be.scale_exp(x, s, 1.0f, z);
        be.add_vector_sum(logdet, s, 1.0f);
        x_ = x;
    }
    // Elementwise (scale_exp may write over its input).
    bool in_place() const override { return true; }

    void inverse(const ParamArena &params, const ParamArena &, const Tensor &z,
                 const Tensor &, Tensor &x, Tensor &logdet) override {
        Backend &be = z.backend();
        Tensor s = params.value(log_scale_);
        be.scale_exp(z, s, -1.0f, x);
        be.add_vector_sum(logdet, s, -1.0f);
    }
    void backward(const ParamArena &params, const ParamArena &, const Tensor &dz,
                  const Tensor &dlogdet, Tensor &dx) override {
        Backend &be = dz.backend();
        Tensor ds = params.grad(log_scale_);
        be.scale_exp_backward(x_, params.value(log_scale_), dz, dlogdet, dx, ds);
    }

private:
    size_t log_scale_;
    Tensor x_;
};

} // namespace

std::unique_ptr<Transform> make_diagonal_scale(ParamArena &params, const std::string &name,
                                               size_t dim) {
    return std::make_unique<DiagonalScale>(params, name, dim);
}

} // namespace flow
