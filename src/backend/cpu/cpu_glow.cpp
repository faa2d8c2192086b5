// CPU ops of the classic flows (planar, radial) and the mixture-of-Gaussians
// base distribution. Per-row scalars are computed in double; parameter
// gradients are summed in double in row order (single-threaded: these layers
// are cheap next to the GEMMs of coupling nets, and the results do not depend
// on the thread count).
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/philox.h"

namespace flow {

namespace {

constexpr double kLog2Pi = 1.8378770664093454835606594728112;

double softplus(double a) { return a > 30 ? a : std::log1p(std::exp(a)); }
double sigmoid(double a) { return 1.0 / (1.0 + std::exp(-a)); }

void check_rows(const Tensor &x, const Tensor &y, const Tensor *per_row, const char *op) {
    cpu_check(x.defined() && y.defined(), op, "undefined tensor");
    cpu_check(x.rows() == y.rows() && x.cols() == y.cols(), op, "shape mismatch");
    if (per_row) cpu_check(per_row->size() == x.rows(), op, "per-row size mismatch");
}

std::vector<double> host(const Tensor &t, size_t n, const char *op) {
    cpu_check(t.defined() && t.size() == n, op, "parameter size mismatch");
    const float *p = t.f32();
    return std::vector<double>(p, p + n);
}

// Planar: u_hat, psi = w.u_hat and what backward needs.
struct Planar {
    size_t D;
    std::vector<double> w, u, uhat;
    double b, s, ww, m, c, psi;

    Planar(const Tensor &wt, const Tensor &ut, const Tensor &bt, size_t dim, const char *op)
        : D(dim), w(host(wt, dim, op)), u(host(ut, dim, op)), uhat(u) {
        b = host(bt, 1, op)[0];
        s = 0;
        ww = 0;
        for (size_t j = 0; j < D; ++j) {
            s += w[j] * u[j];
            ww += w[j] * w[j];
        }
        m = -1.0 + softplus(s);
        c = ww > 0 ? (m - s) / ww : 0.0;
        psi = 0;
        for (size_t j = 0; j < D; ++j) {
            uhat[j] = u[j] + c * w[j];
            psi += w[j] * uhat[j];
        }
    }

    double pre(const float *x) const { // w.x + b
        double a = b;
        for (size_t j = 0; j < D; ++j) a += w[j] * x[j];
        return a;
    }
    double logdet(double t) const { return std::log(1.0 + (1.0 - t * t) * psi); }
};

struct Radial {
    size_t D;
    std::vector<double> x0;
    double a, b, alpha, beta;

    Radial(const Tensor &x0t, const Tensor &at, const Tensor &bt, size_t dim, const char *op)
        : D(dim), x0(host(x0t, dim, op)) {
        a = host(at, 1, op)[0];
        b = host(bt, 1, op)[0];
        alpha = softplus(a);
        beta = -alpha + softplus(b);
    }
    // |row - x0|, the radius every radial op starts from.
    double radius(const float *row) const {
        double r2 = 0;
        for (size_t j = 0; j < D; ++j) r2 += (row[j] - x0[j]) * (row[j] - x0[j]);
        return std::sqrt(r2);
    }
    double logdet(double r) const {
        double h = 1.0 / (alpha + r);
        return (double)(D - 1) * std::log1p(beta * h) + std::log1p(alpha * beta * h * h);
    }
};

} // namespace

// --- planar -------------------------------------------------------------------

void CpuBackend::planar_forward(const Tensor &x, const Tensor &w, const Tensor &u,
                                const Tensor &b, Tensor &z, Tensor &logdet) {
    const char *op = "planar_forward";
    check_rows(x, z, &logdet, op);
    const size_t n = x.rows(), D = x.cols();
    Planar p(w, u, b, D, op);
    const float *px = x.f32();
    float *pz = z.f32(), *pl = logdet.f32();
    for (size_t i = 0; i < n; ++i) {
        const float *xi = px + i * D;
        double t = std::tanh(p.pre(xi));
        for (size_t j = 0; j < D; ++j) pz[i * D + j] = (float)(xi[j] + p.uhat[j] * t);
        pl[i] += (float)p.logdet(t);
    }
}

void CpuBackend::planar_inverse(const Tensor &z, const Tensor &w, const Tensor &u,
                                const Tensor &b, double tol, Tensor &x, Tensor &logdet) {
    const char *op = "planar_inverse";
    check_rows(z, x, &logdet, op);
    const size_t n = z.rows(), D = z.cols();
    Planar p(w, u, b, D, op);
    const float *pz = z.f32();
    float *px = x.f32(), *pl = logdet.f32();
    for (size_t i = 0; i < n; ++i) {
        const float *zi = pz + i * D;
        // g(a) = a + psi tanh(a) - c is increasing (psi > -1); its root lies
        // within |psi| of c since |tanh| < 1.
        const double c = p.pre(zi);
        double lo = c - std::fabs(p.psi), hi = c + std::fabs(p.psi), a = c;
        for (int it = 0; it < 200; ++it) {
            const double t = std::tanh(a), g = a + p.psi * t - c;
            if (g == 0.0) break;
            if (g > 0) hi = a; else lo = a;
            const double slope = 1.0 + p.psi * (1.0 - t * t);
            double next = a - g / slope;
            if (!(slope > 0) || !(next > lo && next < hi)) next = 0.5 * (lo + hi);
            const double step = std::fabs(next - a);
            a = next;
            if (step <= tol * (1.0 + std::fabs(a)) || hi - lo <= tol * (1.0 + std::fabs(a))) break;
        }
        const double t = std::tanh(a);
        for (size_t j = 0; j < D; ++j) px[i * D + j] = (float)(zi[j] - p.uhat[j] * t);
        pl[i] -= (float)p.logdet(t);
    }
}

void CpuBackend::planar_backward(const Tensor &x, const Tensor &w, const Tensor &u,
                                 const Tensor &b, const Tensor &dz, const Tensor &dlogdet,
                                 Tensor &dx, Tensor &dw, Tensor &du, Tensor &db) {
    const char *op = "planar_backward";
    check_rows(x, dz, &dlogdet, op);
    check_rows(x, dx, nullptr, op);
    const size_t n = x.rows(), D = x.cols();
    cpu_check(dw.size() == D && du.size() == D && db.size() == 1, op, "gradient size mismatch");
    Planar p(w, u, b, D, op);
    const float *px = x.f32(), *pdz = dz.f32(), *pg = dlogdet.f32();
    float *pdx = dx.f32();
    std::vector<double> gw(D, 0.0), guhat(D, 0.0);
    double gb = 0, gpsi = 0;
    for (size_t i = 0; i < n; ++i) {
        const float *xi = px + i * D, *dzi = pdz + i * D;
        const double t = std::tanh(p.pre(xi)), tp = 1.0 - t * t, q = 1.0 + tp * p.psi;
        const double g = pg[i];
        double dzu = 0;
        for (size_t j = 0; j < D; ++j) dzu += dzi[j] * p.uhat[j];
        // d/da of [z through tanh] and of log q (dtp/da = -2 t tp)
        const double da = tp * dzu + g * p.psi * (-2.0 * t * tp) / q;
        for (size_t j = 0; j < D; ++j) {
            pdx[i * D + j] = (float)(dzi[j] + da * p.w[j]);
            gw[j] += da * xi[j];
            guhat[j] += dzi[j] * t;
        }
        gb += da;
        gpsi += g * tp / q;
    }
    // psi = w.u_hat
    for (size_t j = 0; j < D; ++j) {
        guhat[j] += gpsi * p.w[j];
        gw[j] += gpsi * p.uhat[j];
    }
    // u_hat = u + c(w.u, |w|^2) w
    std::vector<double> gu(guhat);
    if (p.ww > 0) {
        double dotw = 0;
        for (size_t j = 0; j < D; ++j) dotw += guhat[j] * p.w[j];
        const double mp = sigmoid(p.s);
        for (size_t j = 0; j < D; ++j) {
            gu[j] += dotw * (mp - 1.0) / p.ww * p.w[j];
            gw[j] += p.c * guhat[j] +
                     dotw * ((mp - 1.0) / p.ww * p.u[j] - 2.0 * (p.m - p.s) / (p.ww * p.ww) * p.w[j]);
        }
    }
    float *pw = dw.f32(), *pu = du.f32(), *pb = db.f32();
    for (size_t j = 0; j < D; ++j) {
        pw[j] += (float)gw[j];
        pu[j] += (float)gu[j];
    }
    pb[0] += (float)gb;
}

// --- radial -------------------------------------------------------------------

void CpuBackend::radial_forward(const Tensor &x, const Tensor &x0, const Tensor &a,
                                const Tensor &b, Tensor &z, Tensor &logdet) {
    const char *op = "radial_forward";
    check_rows(x, z, &logdet, op);
    const size_t n = x.rows(), D = x.cols();
    Radial p(x0, a, b, D, op);
    const float *px = x.f32();
    float *pz = z.f32(), *pl = logdet.f32();
    for (size_t i = 0; i < n; ++i) {
        const float *xi = px + i * D;
        const double r = p.radius(xi), h = 1.0 / (p.alpha + r);
        for (size_t j = 0; j < D; ++j) pz[i * D + j] = (float)(xi[j] + p.beta * h * (xi[j] - p.x0[j]));
        pl[i] += (float)p.logdet(r);
    }
}

void CpuBackend::radial_inverse(const Tensor &z, const Tensor &x0, const Tensor &a,
                                const Tensor &b, Tensor &x, Tensor &logdet) {
    const char *op = "radial_inverse";
    check_rows(z, x, &logdet, op);
    const size_t n = z.rows(), D = z.cols();
    Radial p(x0, a, b, D, op);
    const float *pz = z.f32();
    float *px = x.f32(), *pl = logdet.f32();
    for (size_t i = 0; i < n; ++i) {
        const float *zi = pz + i * D;
        const double rz = p.radius(zi);
        // r^2 + B r - alpha rz = 0, B = alpha + beta - rz: the positive root
        const double B = p.alpha + p.beta - rz, disc = std::sqrt(B * B + 4.0 * p.alpha * rz);
        const double r = B >= 0 ? 2.0 * p.alpha * rz / (B + disc) : 0.5 * (disc - B);
        const double f = rz > 0 ? r / rz : 0.0;
        for (size_t j = 0; j < D; ++j) px[i * D + j] = (float)(p.x0[j] + (zi[j] - p.x0[j]) * f);
        pl[i] -= (float)p.logdet(r);
    }
}

void CpuBackend::radial_backward(const Tensor &x, const Tensor &x0, const Tensor &a,
                                 const Tensor &b, const Tensor &dz, const Tensor &dlogdet,
                                 Tensor &dx, Tensor &dx0, Tensor &da, Tensor &db) {
    const char *op = "radial_backward";
    check_rows(x, dz, &dlogdet, op);
    check_rows(x, dx, nullptr, op);
    const size_t n = x.rows(), D = x.cols();
    cpu_check(dx0.size() == D && da.size() == 1 && db.size() == 1, op, "gradient size mismatch");
    Radial p(x0, a, b, D, op);
    const double al = p.alpha, be = p.beta, Dm1 = (double)(D - 1);
    const float *px = x.f32(), *pdz = dz.f32(), *pg = dlogdet.f32();
    float *pdx = dx.f32();
    std::vector<double> gx0(D, 0.0), y(D);
    double galpha = 0, gbeta = 0;
    for (size_t i = 0; i < n; ++i) {
        const float *xi = px + i * D, *dzi = pdz + i * D;
        double r2 = 0, dzy = 0;
        for (size_t j = 0; j < D; ++j) {
            y[j] = xi[j] - p.x0[j];
            r2 += y[j] * y[j];
            dzy += dzi[j] * y[j];
        }
        const double r = std::sqrt(r2), h = 1.0 / (al + r), h2 = h * h;
        const double ph = 1.0 + be * h, q = 1.0 + al * be * h2, g = pg[i];
        const double dL_dr = -h2 * (Dm1 * be / ph + 2.0 * al * be * h / q);
        // per unit of y: -beta h^2 (dz.y)/r from z, g dL/dr / r from the log-det
        const double coef = r > 0 ? (-be * h2 * dzy + g * dL_dr) / r : 0.0;
        for (size_t j = 0; j < D; ++j) {
            const double dxj = ph * dzi[j] + coef * y[j];
            pdx[i * D + j] = (float)dxj;
            gx0[j] -= dxj - dzi[j];
        }
        gbeta += h * dzy + g * (Dm1 * h / ph + al * h2 / q);
        galpha += -be * h2 * dzy + g * (-Dm1 * be * h2 / ph + be * h2 * (1.0 - 2.0 * al * h) / q);
    }
    float *p0 = dx0.f32();
    for (size_t j = 0; j < D; ++j) p0[j] += (float)gx0[j];
    // alpha = softplus(a), beta = -alpha + softplus(b)
    da.f32()[0] += (float)(sigmoid(p.a) * (galpha - gbeta));
    db.f32()[0] += (float)(sigmoid(p.b) * gbeta);
}

// --- mixture of Gaussians -----------------------------------------------------

namespace {

struct Mog {
    size_t K, D;
    std::vector<double> log_pi, mean, log_scale, inv_var;

    Mog(const Tensor &logits, const Tensor &means, const Tensor &log_scales, size_t dim,
        const char *op)
        : K(logits.size()), D(dim) {
        cpu_check(K > 0, op, "no components");
        log_pi = host(logits, K, op);
        mean = host(means, K * D, op);
        log_scale = host(log_scales, K * D, op);
        double mx = *std::max_element(log_pi.begin(), log_pi.end()), s = 0;
        for (double l : log_pi) s += std::exp(l - mx);
        const double lse = mx + std::log(s);
        for (double &l : log_pi) l -= lse;
        inv_var.resize(K * D);
        for (size_t k = 0; k < K * D; ++k) inv_var[k] = std::exp(-2.0 * log_scale[k]);
    }

    // l[k] = log pi_k + log N(z; mean_k, var_k); returns log sum_k exp(l[k]).
    double components(const float *z, double *l) const {
        double mx = -INFINITY;
        for (size_t k = 0; k < K; ++k) {
            double acc = log_pi[k] - 0.5 * (double)D * kLog2Pi;
            for (size_t j = 0; j < D; ++j) {
                const double d = z[j] - mean[k * D + j];
                acc -= 0.5 * d * d * inv_var[k * D + j] + log_scale[k * D + j];
            }
            l[k] = acc;
            mx = std::max(mx, acc);
        }
        double s = 0;
        for (size_t k = 0; k < K; ++k) s += std::exp(l[k] - mx);
        return mx + std::log(s);
    }
};

} // namespace

void CpuBackend::mog_log_prob(const Tensor &z, const Tensor &logits, const Tensor &means,
                              const Tensor &log_scales, Tensor &out) {
    const char *op = "mog_log_prob";
    cpu_check(z.defined() && out.defined() && out.size() == z.rows(), op, "shape mismatch");
    const size_t n = z.rows(), D = z.cols();
    Mog p(logits, means, log_scales, D, op);
    const float *pz = z.f32();
    float *po = out.f32();
    std::vector<double> l(p.K);
    for (size_t i = 0; i < n; ++i) po[i] = (float)p.components(pz + i * D, l.data());
}

void CpuBackend::mog_log_prob_backward(const Tensor &z, const Tensor &logits,
                                       const Tensor &means, const Tensor &log_scales,
                                       const Tensor &dlogp, Tensor &dz, Tensor &dlogits,
                                       Tensor &dmeans, Tensor &dlog_scales) {
    const char *op = "mog_log_prob_backward";
    check_rows(z, dz, &dlogp, op);
    const size_t n = z.rows(), D = z.cols();
    Mog p(logits, means, log_scales, D, op);
    const size_t K = p.K;
    cpu_check(dlogits.size() == K && dmeans.size() == K * D && dlog_scales.size() == K * D, op,
              "gradient size mismatch");
    const float *pz = z.f32(), *pg = dlogp.f32();
    float *pdz = dz.f32();
    std::vector<double> l(K), glog(K, 0.0), gmean(K * D, 0.0), gls(K * D, 0.0);
    for (size_t i = 0; i < n; ++i) {
        const float *zi = pz + i * D;
        const double lse = p.components(zi, l.data()), g = pg[i];
        for (size_t j = 0; j < D; ++j) pdz[i * D + j] = 0.0f;
        for (size_t k = 0; k < K; ++k) {
            const double gamma = std::exp(l[k] - lse), gg = g * gamma;
            glog[k] += g * (gamma - std::exp(p.log_pi[k]));
            for (size_t j = 0; j < D; ++j) {
                const double d = zi[j] - p.mean[k * D + j], iv = p.inv_var[k * D + j];
                pdz[i * D + j] -= (float)(gg * d * iv);
                gmean[k * D + j] += gg * d * iv;
                gls[k * D + j] += gg * (d * d * iv - 1.0);
            }
        }
    }
    float *pl = dlogits.f32(), *pm = dmeans.f32(), *ps = dlog_scales.f32();
    for (size_t k = 0; k < K; ++k) pl[k] += (float)glog[k];
    for (size_t k = 0; k < K * D; ++k) {
        pm[k] += (float)gmean[k];
        ps[k] += (float)gls[k];
    }
}

void CpuBackend::mog_sample(Tensor &z, const Tensor &logits, const Tensor &means,
                            const Tensor &log_scales, uint64_t seed, uint64_t stream,
                            float temperature) {
    const char *op = "mog_sample";
    cpu_check(z.defined(), op, "undefined tensor");
    const size_t n = z.rows(), D = z.cols();
    Mog p(logits, means, log_scales, D, op);
    float *pz = z.f32();
    for (size_t i = 0; i < n; ++i) {
        const double u = philox_uniform(philox4x32_10(seed, stream, (1ull << 62) + i).v[0]);
        size_t k = 0;
        double cum = 0;
        for (; k + 1 < p.K; ++k) {
            cum += std::exp(p.log_pi[k]);
            if (u < cum) break;
        }
        for (size_t j = 0; j < D; ++j) {
            const double e = philox_normal(philox4x32_10(seed, stream, i * D + j));
            pz[i * D + j] = (float)(p.mean[k * D + j] +
                                    (double)temperature * std::exp(p.log_scale[k * D + j]) * e);
        }
    }
}

} // namespace flow
