// CPU ops of the classic flows (planar, radial) and the mixture-of-Gaussians
// base; the math is backend/glow_math.h, shared with the CUDA backend.
// Per-row scalars are computed in double; parameter gradients are summed in
// double in row order (single-threaded: these layers are cheap next to the
// GEMMs of coupling nets, and the results do not depend on the thread count).
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/glow_math.h"

namespace flow {

namespace {

const float *param(const Tensor &t, size_t n, const char *op) {
    op_check(t.defined() && t.size() == n, op, "parameter size mismatch");
    return t.f32();
}

glow::Planar planar(const Tensor &w, const Tensor &u, const Tensor &b, size_t D,
                    const char *op) {
    return glow::planar_params(param(w, D, op), param(u, D, op), param(b, 1, op), D);
}

glow::Radial radial(const Tensor &x0, const Tensor &a, const Tensor &b, size_t D,
                    const char *op) {
    return glow::radial_params(param(x0, D, op), param(a, 1, op), param(b, 1, op), D);
}

// A mixture and the host arrays its log-weights and inverse variances live in.
struct HostMog {
    std::vector<double> log_pi, inv_var;
    glow::Mog mog;

    HostMog(const Tensor &logits, const Tensor &means, const Tensor &log_scales, size_t D,
            const char *op) {
        const size_t K = logits.size();
        op_check(K > 0, op, "no components");
        const float *pl = param(logits, K, op), *ps = param(log_scales, K * D, op);
        log_pi.resize(K);
        inv_var.resize(K * D);
        glow::mog_log_weights(pl, K, log_pi.data());
        for (size_t k = 0; k < K * D; ++k) inv_var[k] = glow::mog_inv_var(ps[k]);
        mog = {param(means, K * D, op), ps, log_pi.data(), inv_var.data(), K, D};
    }
    HostMog(const HostMog &) = delete; // mog points into this object
    HostMog &operator=(const HostMog &) = delete;
};

} // namespace

// --- planar -------------------------------------------------------------------

void CpuBackend::planar_forward(const Tensor &x, const Tensor &w, const Tensor &u,
                                const Tensor &b, Tensor &z, Tensor &logdet) {
    const char *op = "planar_forward";
    check_rows(x, z, &logdet, op);
    const size_t n = x.rows(), D = x.cols();
    const glow::Planar p = planar(w, u, b, D, op);
    const float *px = x.f32();
    float *pz = z.f32(), *pl = logdet.f32();
    for (size_t i = 0; i < n; ++i)
        pl[i] += (float)glow::planar_forward_row(p, px + i * D, pz + i * D);
}

void CpuBackend::planar_inverse(const Tensor &z, const Tensor &w, const Tensor &u,
                                const Tensor &b, double tol, Tensor &x, Tensor &logdet) {
    const char *op = "planar_inverse";
    check_rows(z, x, &logdet, op);
    const size_t n = z.rows(), D = z.cols();
    const glow::Planar p = planar(w, u, b, D, op);
    const float *pz = z.f32();
    float *px = x.f32(), *pl = logdet.f32();
    for (size_t i = 0; i < n; ++i)
        pl[i] -= (float)glow::planar_inverse_row(p, tol, pz + i * D, px + i * D);
}

void CpuBackend::planar_backward(const Tensor &x, const Tensor &w, const Tensor &u,
                                 const Tensor &b, const Tensor &dz, const Tensor &dlogdet,
                                 Tensor &dx, Tensor &dw, Tensor &du, Tensor &db) {
    const char *op = "planar_backward";
    check_rows(x, dz, &dlogdet, op);
    check_rows(x, dx, nullptr, op);
    const size_t n = x.rows(), D = x.cols();
    op_check(dw.size() == D && du.size() == D && db.size() == 1, op, "gradient size mismatch");
    const glow::Planar p = planar(w, u, b, D, op);
    const float *px = x.f32(), *pdz = dz.f32(), *pg = dlogdet.f32();
    float *pdx = dx.f32();
    std::vector<double> acc(glow::planar_param_count(D), 0.0);
    for (size_t i = 0; i < n; ++i) {
        const float *xi = px + i * D, *dzi = pdz + i * D;
        const glow::PlanarRow r = glow::planar_backward_row(p, xi, dzi, pg[i], pdx + i * D);
        for (size_t col = 0; col < acc.size(); ++col)
            acc[col] += glow::planar_param_term(r, xi, dzi, col, D);
    }
    glow::planar_add_param_grads(p, acc.data(), dw.f32(), du.f32(), db.f32());
}

// --- radial -------------------------------------------------------------------

void CpuBackend::radial_forward(const Tensor &x, const Tensor &x0, const Tensor &a,
                                const Tensor &b, Tensor &z, Tensor &logdet) {
    const char *op = "radial_forward";
    check_rows(x, z, &logdet, op);
    const size_t n = x.rows(), D = x.cols();
    const glow::Radial p = radial(x0, a, b, D, op);
    const float *px = x.f32();
    float *pz = z.f32(), *pl = logdet.f32();
    for (size_t i = 0; i < n; ++i)
        pl[i] += (float)glow::radial_forward_row(p, px + i * D, pz + i * D);
}

void CpuBackend::radial_inverse(const Tensor &z, const Tensor &x0, const Tensor &a,
                                const Tensor &b, Tensor &x, Tensor &logdet) {
    const char *op = "radial_inverse";
    check_rows(z, x, &logdet, op);
    const size_t n = z.rows(), D = z.cols();
    const glow::Radial p = radial(x0, a, b, D, op);
    const float *pz = z.f32();
    float *px = x.f32(), *pl = logdet.f32();
    for (size_t i = 0; i < n; ++i)
        pl[i] -= (float)glow::radial_inverse_row(p, pz + i * D, px + i * D);
}

void CpuBackend::radial_backward(const Tensor &x, const Tensor &x0, const Tensor &a,
                                 const Tensor &b, const Tensor &dz, const Tensor &dlogdet,
                                 Tensor &dx, Tensor &dx0, Tensor &da, Tensor &db) {
    const char *op = "radial_backward";
    check_rows(x, dz, &dlogdet, op);
    check_rows(x, dx, nullptr, op);
    const size_t n = x.rows(), D = x.cols();
    op_check(dx0.size() == D && da.size() == 1 && db.size() == 1, op, "gradient size mismatch");
    const glow::Radial p = radial(x0, a, b, D, op);
    const float *px = x.f32(), *pdz = dz.f32(), *pg = dlogdet.f32();
    float *pdx = dx.f32();
    std::vector<double> acc(glow::radial_param_count(D), 0.0);
    for (size_t i = 0; i < n; ++i) {
        const float *xi = px + i * D, *dzi = pdz + i * D;
        const glow::RadialRow r = glow::radial_backward_row(p, xi, dzi, pg[i]);
        for (size_t j = 0; j < D; ++j) pdx[i * D + j] = (float)glow::radial_dx(p, r, xi, dzi, j);
        for (size_t col = 0; col < acc.size(); ++col)
            acc[col] += glow::radial_param_term(p, r, xi, dzi, col);
    }
    glow::radial_add_param_grads(p, acc.data(), dx0.f32(), da.f32(), db.f32());
}

// --- mixture of Gaussians -----------------------------------------------------

void CpuBackend::mog_log_prob(const Tensor &z, const Tensor &logits, const Tensor &means,
                              const Tensor &log_scales, Tensor &out) {
    const char *op = "mog_log_prob";
    op_check(z.defined() && out.defined() && out.size() == z.rows(), op, "shape mismatch");
    const size_t n = z.rows(), D = z.cols();
    const HostMog p(logits, means, log_scales, D, op);
    const float *pz = z.f32();
    float *po = out.f32();
    std::vector<double> l(p.mog.K);
    for (size_t i = 0; i < n; ++i) po[i] = (float)p.mog.components(pz + i * D, l.data());
}

void CpuBackend::mog_log_prob_backward(const Tensor &z, const Tensor &logits,
                                       const Tensor &means, const Tensor &log_scales,
                                       const Tensor &dlogp, Tensor &dz, Tensor &dlogits,
                                       Tensor &dmeans, Tensor &dlog_scales) {
    const char *op = "mog_log_prob_backward";
    check_rows(z, dz, &dlogp, op);
    const size_t n = z.rows(), D = z.cols();
    const HostMog p(logits, means, log_scales, D, op);
    const size_t K = p.mog.K;
    op_check(dlogits.size() == K && dmeans.size() == K * D && dlog_scales.size() == K * D, op,
              "gradient size mismatch");
    const float *pz = z.f32(), *pg = dlogp.f32();
    float *pdz = dz.f32();
    std::vector<double> gamma(K), acc(glow::mog_param_count(K, D), 0.0);
    for (size_t i = 0; i < n; ++i) {
        const float *zi = pz + i * D;
        glow::mog_backward_row(p.mog, zi, pg[i], gamma.data(), pdz + i * D);
        for (size_t col = 0; col < acc.size(); ++col)
            acc[col] += glow::mog_param_term(p.mog, zi, pg[i], gamma.data(), col);
    }
    for (size_t col = 0; col < acc.size(); ++col)
        *glow::mog_param_slot(p.mog, col, dlogits.f32(), dmeans.f32(), dlog_scales.f32()) +=
            (float)acc[col];
}

void CpuBackend::mog_sample(Tensor &z, const Tensor &logits, const Tensor &means,
                            const Tensor &log_scales, uint64_t seed, uint64_t stream,
                            float temperature) {
    const char *op = "mog_sample";
    op_check(z.defined(), op, "undefined tensor");
    const size_t n = z.rows(), D = z.cols();
    const HostMog p(logits, means, log_scales, D, op);
    float *pz = z.f32();
    for (size_t i = 0; i < n; ++i)
        glow::mog_sample_row(p.mog, seed, stream, temperature, i, pz + i * D);
}

} // namespace flow
