// Planar and radial flows (Rezende & Mohamed 2015, "Variational Inference
// with Normalizing Flows", section 4.1 and appendix A).
//
// Direction: the paper writes f in the generative direction of a posterior
// (z' = f(z)). flowlib uses each map as the forward, normalizing pass
// (data x -> latent z), where its log-det has a closed form, so log_prob and
// training are exact and cheap:
//   planar  z = x + u_hat tanh(w.x + b),         u_hat as in appendix A.1
//   radial  z = x + beta / (alpha + |x - x0|) (x - x0),  beta > -alpha
// The inverse (sampling) has no closed form in x:
//   planar: the scalar a = w.x + b solves a + (w.u_hat) tanh(a) = w.z + b,
//           monotone since w.u_hat > -1; Newton safeguarded by bisection, to
//           a relative step of 1e-10 (double), at most 200 iterations;
//   radial: r = |x - x0| solves r (1 + beta / (alpha + r)) = |z - x0|,
//           monotone since beta > -alpha; that quadratic is solved in closed
//           form (the positive root, cancellation-free).
// Parameters: planar "<name>.w", ".u" (uniform), ".b" (0); radial
// "<name>.x0" (uniform), ".alpha_raw", ".beta_raw" (0: alpha = log 2,
// beta = 0, the identity) with alpha = softplus(alpha_raw) and
// beta = -alpha + softplus(beta_raw).
#include <cmath>

#include "flows/glow.h"

namespace flow {

namespace {

constexpr double planar_tolerance = 1e-10;

class Planar final : public Transform {
public:
    Planar(ParamArena &params, const std::string &name, size_t dim)
        : w_(params.declare(name + ".w", {dim}, Init::uniform, 1.0f)),
          u_(params.declare(name + ".u", {dim}, Init::uniform, 0.5f)),
          b_(params.declare(name + ".b", {1}, Init::zeros)) {}

    void forward(const ParamArena &params, const ParamArena &, const Tensor &x, const Tensor &,
                 Tensor &z, Tensor &logdet, const Pass &) override {
        x.backend().planar_forward(x, params.value(w_), params.value(u_), params.value(b_), z,
                                   logdet);
        x_ = x;
    }
    void inverse(const ParamArena &params, const ParamArena &, const Tensor &z, const Tensor &,
                 Tensor &x, Tensor &logdet) override {
        z.backend().planar_inverse(z, params.value(w_), params.value(u_), params.value(b_),
                                   planar_tolerance, x, logdet);
    }
    void backward(const ParamArena &params, const ParamArena &, const Tensor &dz,
                  const Tensor &dlogdet, Tensor &dx) override {
        Tensor dw = params.grad(w_), du = params.grad(u_), db = params.grad(b_);
        dz.backend().planar_backward(x_, params.value(w_), params.value(u_), params.value(b_), dz,
                                     dlogdet, dx, dw, du, db);
    }

private:
    size_t w_, u_, b_;
    Tensor x_;
};

class Radial final : public Transform {
public:
    Radial(ParamArena &params, const std::string &name, size_t dim)
        : x0_(params.declare(name + ".x0", {dim}, Init::uniform, 1.0f)),
          a_(params.declare(name + ".alpha_raw", {1}, Init::zeros)),
          b_(params.declare(name + ".beta_raw", {1}, Init::zeros)) {}

    void forward(const ParamArena &params, const ParamArena &, const Tensor &x, const Tensor &,
                 Tensor &z, Tensor &logdet, const Pass &) override {
        x.backend().radial_forward(x, params.value(x0_), params.value(a_), params.value(b_), z,
                                   logdet);
        x_ = x;
    }
    void inverse(const ParamArena &params, const ParamArena &, const Tensor &z, const Tensor &,
                 Tensor &x, Tensor &logdet) override {
        z.backend().radial_inverse(z, params.value(x0_), params.value(a_), params.value(b_), x,
                                   logdet);
    }
    void backward(const ParamArena &params, const ParamArena &, const Tensor &dz,
                  const Tensor &dlogdet, Tensor &dx) override {
        Tensor dx0 = params.grad(x0_), da = params.grad(a_), db = params.grad(b_);
        dz.backend().radial_backward(x_, params.value(x0_), params.value(a_), params.value(b_), dz,
                                     dlogdet, dx, dx0, da, db);
    }

private:
    size_t x0_, a_, b_;
    Tensor x_;
};

} // namespace

std::unique_ptr<Transform> make_planar(ParamArena &params, const std::string &name, size_t dim) {
    return std::make_unique<Planar>(params, name, dim);
}

std::unique_ptr<Transform> make_radial(ParamArena &params, const std::string &name, size_t dim) {
    return std::make_unique<Radial>(params, name, dim);
}

} // namespace flow
