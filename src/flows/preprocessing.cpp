// Layers that map raw data into the unbounded space flows work in, with their
// log-determinants, so likelihoods (and bits/dim) stay those of the raw data.
#include <cmath>
#include <string>

#include "core/error.h"
#include "flows/elementwise.h"

namespace flow {

namespace {

// Uniform dequantization of integer data in 0..levels-1: y = (x + u) / levels.
// log p(x) >= E_u log p(y) - D log(levels), so the logdet is -D log(levels).
class Dequantize final : public Transform {
public:
    Dequantize(size_t dim, float levels) : dim_(dim), levels_(levels) {}

    void forward(const ParamArena &, const ParamArena &, const Tensor &x, const Tensor &,
                 Tensor &y, Tensor &logdet, const Pass &pass) override {
        Backend &be = x.backend();
        be.dequantize_forward(x, levels_, pass.noise_seed, pass.noise_stream, pass.noise_first, y);
        be.add_scalar(logdet, -(float)((double)dim_ * std::log((double)levels_)));
    }
    void inverse(const ParamArena &, const ParamArena &, const Tensor &y, const Tensor &,
                 Tensor &x, Tensor &logdet) override {
        Backend &be = y.backend();
        be.dequantize_inverse(y, levels_, x);
        be.add_scalar(logdet, (float)((double)dim_ * std::log((double)levels_)));
    }
    void backward(const ParamArena &, const ParamArena &, const Tensor &dy, const Tensor &,
                  Tensor &dx) override {
        Backend &be = dy.backend();
        be.copy(dy, dx);
        be.scale(dx, 1.0f / levels_);
    }
    void check_data(const float *x, size_t count) const override {
        for (size_t k = 0; k < count; ++k)
            if (!(x[k] >= 0.0f && x[k] <= levels_ - 1.0f && x[k] == std::floor(x[k])))
                fail(Status::invalid_argument,
                     "data value " + std::to_string(x[k]) + " at index " + std::to_string(k) +
                         " is not an integer in 0.." + std::to_string((int)levels_ - 1) +
                         " (the model dequantizes)");
    }

private:
    size_t dim_;
    float levels_;
};

// Logit of data squeezed into [alpha, 1 - alpha] (RealNVP, MAF).
class Logit final : public Transform {
public:
    explicit Logit(float alpha) : alpha_(alpha) {}

    void forward(const ParamArena &, const ParamArena &, const Tensor &x, const Tensor &,
                 Tensor &z, Tensor &logdet, const Pass &) override {
        x.backend().logit_forward(x, alpha_, z, logdet);
        x_ = x;
    }
    void inverse(const ParamArena &, const ParamArena &, const Tensor &z, const Tensor &,
                 Tensor &x, Tensor &logdet) override {
        z.backend().logit_inverse(z, alpha_, x, logdet);
    }
    void backward(const ParamArena &, const ParamArena &, const Tensor &dz,
                  const Tensor &dlogdet, Tensor &dx) override {
        dz.backend().logit_backward(x_, alpha_, dz, dlogdet, dx);
    }
    // The open interval where y = alpha + (1 - 2 alpha) x lies in (0, 1): it
    // holds [0, 1] when alpha > 0, and every sample the model draws.
    void check_data(const float *x, size_t count) const override {
        for (size_t k = 0; k < count; ++k) {
            double y = alpha_ + (1.0 - 2.0 * alpha_) * (double)x[k];
            if (!(y > 0.0 && y < 1.0))
                fail(Status::invalid_argument,
                     "data value " + std::to_string(x[k]) + " at index " + std::to_string(k) +
                         " is outside the domain of the logit transform (alpha " +
                         std::to_string(alpha_) + ")");
        }
    }

private:
    float alpha_;
    Tensor x_;
};

} // namespace

std::unique_ptr<Transform> make_dequantize(size_t dim, float levels) {
    return std::make_unique<Dequantize>(dim, levels);
}

std::unique_ptr<Transform> make_logit(float alpha) {
    return std::make_unique<Logit>(alpha);
}

} // namespace flow
