// The math of the planar and radial flows and the mixture-of-Gaussians base
// (Backend::planar_forward ... mog_sample), shared by the CPU (cpu_glow.cpp)
// and CUDA (cuda_glow.cu) backends so each formula exists once. FLOW_HD
// functions on raw float pointers: host memory on the CPU, device memory in a
// kernel. Per-row scalars are in double.
//
// Parameter gradients are sums over rows: each row's terms come from a
// *_param_term function (a column of the sum), and *_add_param_grads turns
// the totals into the parameters' gradients.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "backend/philox.h"

namespace flow::glow {

constexpr double kLog2Pi = 1.8378770664093454835606594728112;

FLOW_HD double softplus(double a) { return a > 30 ? a : log1p(exp(a)); }
FLOW_HD double sigmoid(double a) { return 1.0 / (1.0 + exp(-a)); }

// --- planar -------------------------------------------------------------------

// A planar layer's parameters w, u [D], b and its per-op scalars: u_hat = u +
// c w with s = w.u, m = -1 + softplus(s), c = (m - s) / |w|^2, so psi = w.u_hat
// = m > -1 (invertible); |w| = 0 keeps u_hat = u.
struct Planar {
    const float *w, *u;
    size_t D;
    double b, s, ww, m, c, psi;

    FLOW_HD double u_hat(size_t j) const { return (double)u[j] + c * (double)w[j]; }
    FLOW_HD double pre(const float *x) const { // w.x + b
        double a = b;
        for (size_t j = 0; j < D; ++j) a += (double)w[j] * (double)x[j];
        return a;
    }
    FLOW_HD double logdet(double t) const { return log(1.0 + (1.0 - t * t) * psi); }
};

FLOW_HD Planar planar_params(const float *w, const float *u, const float *b, size_t D) {
    Planar p;
    p.w = w;
    p.u = u;
    p.D = D;
    p.b = b[0];
    p.s = 0;
    p.ww = 0;
    for (size_t j = 0; j < D; ++j) {
        p.s += (double)w[j] * (double)u[j];
        p.ww += (double)w[j] * (double)w[j];
    }
    p.m = -1.0 + softplus(p.s);
    p.c = p.ww > 0 ? (p.m - p.s) / p.ww : 0.0;
    p.psi = 0;
    for (size_t j = 0; j < D; ++j) p.psi += (double)w[j] * p.u_hat(j);
    return p;
}

// z = x + u_hat tanh(w.x + b); returns the row's log-det.
FLOW_HD double planar_forward_row(const Planar &p, const float *x, float *z) {
    const double t = tanh(p.pre(x));
    for (size_t j = 0; j < p.D; ++j) z[j] = (float)((double)x[j] + p.u_hat(j) * t);
    return p.logdet(t);
}

// x = z - u_hat tanh(a) with a = w.x + b the root of g(a) = a + psi tanh(a) -
// (w.z + b); returns the forward log-det at x. g is increasing (psi > -1) and
// its root lies within |psi| of w.z + b since |tanh| < 1: Newton steps,
// bisection whenever a step leaves the bracket.
FLOW_HD double planar_inverse_row(const Planar &p, double tol, const float *z, float *x) {
    const double c = p.pre(z);
    double lo = c - fabs(p.psi), hi = c + fabs(p.psi), a = c;
    for (int it = 0; it < 200; ++it) {
        const double t = tanh(a), g = a + p.psi * t - c;
        if (g == 0.0) break;
        if (g > 0) hi = a; else lo = a;
        const double slope = 1.0 + p.psi * (1.0 - t * t);
        double next = a - g / slope;
        if (!(slope > 0) || !(next > lo && next < hi)) next = 0.5 * (lo + hi);
        const double step = fabs(next - a);
        a = next;
        if (step <= tol * (1.0 + fabs(a)) || hi - lo <= tol * (1.0 + fabs(a))) break;
    }
    const double t = tanh(a);
    for (size_t j = 0; j < p.D; ++j) x[j] = (float)((double)z[j] - p.u_hat(j) * t);
    return p.logdet(t);
}

// What a row of planar_backward leaves for the parameter sums: t = tanh(w.x +
// b), da = d loss / d(w.x + b), gpsi = d loss / d psi.
struct PlanarRow {
    double t, da, gpsi;
};

// Row of planar_backward with dlogdet g: writes dx.
FLOW_HD PlanarRow planar_backward_row(const Planar &p, const float *x, const float *dz,
                                      double g, float *dx) {
    const double t = tanh(p.pre(x)), tp = 1.0 - t * t, q = 1.0 + tp * p.psi;
    double dzu = 0;
    for (size_t j = 0; j < p.D; ++j) dzu += (double)dz[j] * p.u_hat(j);
    // d/da of [z through tanh] and of log q (dtp/da = -2 t tp)
    const double da = tp * dzu + g * p.psi * (-2.0 * t * tp) / q;
    for (size_t j = 0; j < p.D; ++j) dx[j] = (float)((double)dz[j] + da * (double)p.w[j]);
    PlanarRow r;
    r.t = t;
    r.da = da;
    r.gpsi = g * tp / q;
    return r;
}

// Columns of the planar parameter sums: [w directly (D) | u_hat (D) | b | psi].
FLOW_HD size_t planar_param_count(size_t D) { return 2 * D + 2; }

// The row's term of column col; x, dz are the row's.
FLOW_HD double planar_param_term(const PlanarRow &r, const float *x, const float *dz, size_t col,
                                 size_t D) {
    if (col < D) return r.da * (double)x[col];
    if (col < 2 * D) return (double)dz[col - D] * r.t;
    return col == 2 * D ? r.da : r.gpsi;
}

// Adds the totals acc [planar_param_count] to dw, du, db through psi =
// w.u_hat and u_hat = u + c(w.u, |w|^2) w. acc is overwritten.
FLOW_HD void planar_add_param_grads(const Planar &p, double *acc, float *dw, float *du,
                                    float *db) {
    const size_t D = p.D;
    double *gw = acc, *guhat = acc + D;
    const double gb = acc[2 * D], gpsi = acc[2 * D + 1];
    for (size_t j = 0; j < D; ++j) {
        guhat[j] += gpsi * (double)p.w[j];
        gw[j] += gpsi * p.u_hat(j);
    }
    double dotw = 0;
    for (size_t j = 0; j < D; ++j) dotw += guhat[j] * (double)p.w[j];
    const double mp = sigmoid(p.s);
    for (size_t j = 0; j < D; ++j) {
        const double w = p.w[j], u = p.u[j];
        double gu = guhat[j];
        if (p.ww > 0) {
            gu += dotw * (mp - 1.0) / p.ww * w;
            gw[j] += p.c * guhat[j] +
                     dotw * ((mp - 1.0) / p.ww * u - 2.0 * (p.m - p.s) / (p.ww * p.ww) * w);
        }
        dw[j] += (float)gw[j];
        du[j] += (float)gu;
    }
    db[0] += (float)gb;
}

// --- radial -------------------------------------------------------------------

// A radial layer: center x0 [D], alpha = softplus(a) > 0, beta = -alpha +
// softplus(b) > -alpha (invertible).
struct Radial {
    const float *x0;
    size_t D;
    double a, b, alpha, beta;

    // |row - x0|, the radius every radial op starts from.
    FLOW_HD double radius(const float *row) const {
        double r2 = 0;
        for (size_t j = 0; j < D; ++j) {
            const double y = (double)row[j] - (double)x0[j];
            r2 += y * y;
        }
        return sqrt(r2);
    }
    FLOW_HD double logdet(double r) const {
        const double h = 1.0 / (alpha + r);
        return (double)(D - 1) * log1p(beta * h) + log1p(alpha * beta * h * h);
    }
};

FLOW_HD Radial radial_params(const float *x0, const float *a, const float *b, size_t D) {
    Radial p;
    p.x0 = x0;
    p.D = D;
    p.a = a[0];
    p.b = b[0];
    p.alpha = softplus(p.a);
    p.beta = -p.alpha + softplus(p.b);
    return p;
}

// z = x + beta h (x - x0), h = 1 / (alpha + r); returns the row's log-det.
FLOW_HD double radial_forward_row(const Radial &p, const float *x, float *z) {
    const double r = p.radius(x), h = 1.0 / (p.alpha + r);
    for (size_t j = 0; j < p.D; ++j)
        z[j] = (float)((double)x[j] + p.beta * h * ((double)x[j] - (double)p.x0[j]));
    return p.logdet(r);
}

// x = x0 + (z - x0) r / |z - x0|; returns the forward log-det at x.
FLOW_HD double radial_inverse_row(const Radial &p, const float *z, float *x) {
    const double rz = p.radius(z);
    // r^2 + B r - alpha rz = 0, B = alpha + beta - rz: the positive root
    const double B = p.alpha + p.beta - rz, disc = sqrt(B * B + 4.0 * p.alpha * rz);
    const double r = B >= 0 ? 2.0 * p.alpha * rz / (B + disc) : 0.5 * (disc - B);
    const double f = rz > 0 ? r / rz : 0.0;
    for (size_t j = 0; j < p.D; ++j)
        x[j] = (float)((double)p.x0[j] + ((double)z[j] - (double)p.x0[j]) * f);
    return p.logdet(r);
}

// A row of radial_backward: dx = ph dz + coef (x - x0); galpha, gbeta the
// row's d loss / d alpha, d loss / d beta.
struct RadialRow {
    double ph, coef, galpha, gbeta;
};

FLOW_HD RadialRow radial_backward_row(const Radial &p, const float *x, const float *dz, double g) {
    const double al = p.alpha, be = p.beta, Dm1 = (double)(p.D - 1);
    const double r = p.radius(x);
    double dzy = 0;
    for (size_t j = 0; j < p.D; ++j) dzy += (double)dz[j] * ((double)x[j] - (double)p.x0[j]);
    const double h = 1.0 / (al + r), h2 = h * h;
    const double ph = 1.0 + be * h, q = 1.0 + al * be * h2;
    const double dL_dr = -h2 * (Dm1 * be / ph + 2.0 * al * be * h / q);
    RadialRow o;
    o.ph = ph;
    // per unit of y = x - x0: -beta h^2 (dz.y)/r from z, g dL/dr / r from the log-det
    o.coef = r > 0 ? (-be * h2 * dzy + g * dL_dr) / r : 0.0;
    o.gbeta = h * dzy + g * (Dm1 * h / ph + al * h2 / q);
    o.galpha = -be * h2 * dzy + g * (-Dm1 * be * h2 / ph + be * h2 * (1.0 - 2.0 * al * h) / q);
    return o;
}

FLOW_HD double radial_dx(const Radial &p, const RadialRow &o, const float *x, const float *dz,
                         size_t j) {
    return o.ph * (double)dz[j] + o.coef * ((double)x[j] - (double)p.x0[j]);
}

// Columns of the radial parameter sums: [x0 (D) | alpha | beta].
FLOW_HD size_t radial_param_count(size_t D) { return D + 2; }

FLOW_HD double radial_param_term(const Radial &p, const RadialRow &o, const float *x,
                                 const float *dz, size_t col) {
    if (col < p.D) return -(radial_dx(p, o, x, dz, col) - (double)dz[col]);
    return col == p.D ? o.galpha : o.gbeta;
}

// Adds the totals acc [radial_param_count] to dx0, da, db (alpha =
// softplus(a), beta = -alpha + softplus(b)).
FLOW_HD void radial_add_param_grads(const Radial &p, const double *acc, float *dx0, float *da,
                                    float *db) {
    for (size_t j = 0; j < p.D; ++j) dx0[j] += (float)acc[j];
    const double galpha = acc[p.D], gbeta = acc[p.D + 1];
    da[0] += (float)(sigmoid(p.a) * (galpha - gbeta));
    db[0] += (float)(sigmoid(p.b) * gbeta);
}

// --- mixture of Gaussians -----------------------------------------------------

// log_pi = log-softmax(logits), K long.
FLOW_HD void mog_log_weights(const float *logits, size_t K, double *log_pi) {
    double mx = -INFINITY, s = 0;
    for (size_t k = 0; k < K; ++k)
        if ((double)logits[k] > mx) mx = (double)logits[k];
    for (size_t k = 0; k < K; ++k) s += exp((double)logits[k] - mx);
    const double lse = mx + log(s);
    for (size_t k = 0; k < K; ++k) log_pi[k] = (double)logits[k] - lse;
}

FLOW_HD double mog_inv_var(float log_scale) { return exp(-2.0 * (double)log_scale); }

// K diagonal Gaussians in D dimensions: means, log_scales [K, D] (the
// parameters), log_pi [K] and inv_var [K, D] from the two functions above.
struct Mog {
    const float *mean, *log_scale;
    const double *log_pi, *inv_var;
    size_t K, D;

    // l[k] = log pi_k + log N(z; mean_k, var_k); returns log sum_k exp(l[k]).
    FLOW_HD double components(const float *z, double *l) const {
        double mx = -INFINITY;
        for (size_t k = 0; k < K; ++k) {
            double acc = log_pi[k] - 0.5 * (double)D * kLog2Pi;
            for (size_t j = 0; j < D; ++j) {
                const double d = (double)z[j] - (double)mean[k * D + j];
                acc -= 0.5 * d * d * inv_var[k * D + j] + (double)log_scale[k * D + j];
            }
            l[k] = acc;
            if (acc > mx) mx = acc;
        }
        double s = 0;
        for (size_t k = 0; k < K; ++k) s += exp(l[k] - mx);
        return mx + log(s);
    }
};

// A row of mog_log_prob_backward with dlogp g: dz = g d/dz log p(z);
// gamma [K] gets the responsibilities.
FLOW_HD void mog_backward_row(const Mog &p, const float *z, double g, double *gamma, float *dz) {
    const double lse = p.components(z, gamma);
    for (size_t j = 0; j < p.D; ++j) dz[j] = 0.0f;
    for (size_t k = 0; k < p.K; ++k) {
        gamma[k] = exp(gamma[k] - lse);
        const double gg = g * gamma[k];
        for (size_t j = 0; j < p.D; ++j) {
            const double d = (double)z[j] - (double)p.mean[k * p.D + j];
            dz[j] -= (float)(gg * d * p.inv_var[k * p.D + j]);
        }
    }
}

// Columns of the mixture's parameter sums: [logits (K) | means (K D) |
// log_scales (K D)].
FLOW_HD size_t mog_param_count(size_t K, size_t D) { return K + 2 * K * D; }

FLOW_HD double mog_param_term(const Mog &p, const float *z, double g, const double *gamma,
                              size_t col) {
    if (col < p.K) return g * (gamma[col] - exp(p.log_pi[col]));
    size_t kj = col - p.K;
    const bool scale = kj >= p.K * p.D;
    if (scale) kj -= p.K * p.D;
    const double gg = g * gamma[kj / p.D], iv = p.inv_var[kj];
    const double d = (double)z[kj % p.D] - (double)p.mean[kj];
    return scale ? gg * (d * d * iv - 1.0) : gg * d * iv;
}

// Where column col's total goes.
FLOW_HD float *mog_param_slot(const Mog &p, size_t col, float *dlogits, float *dmeans,
                              float *dlog_scales) {
    if (col < p.K) return dlogits + col;
    col -= p.K;
    return col < p.K * p.D ? dmeans + col : dlog_scales + (col - p.K * p.D);
}

// Row i of mog_sample: component k from softmax(logits) with the uniform of
// Philox counter 2^62 + i, then z[j] = mean[k, j] + temperature
// exp(log_scale[k, j]) N(0, 1) with the normal of counter i D + j.
FLOW_HD void mog_sample_row(const Mog &p, uint64_t seed, uint64_t stream, float temperature,
                            size_t i, float *z) {
    const double u = philox_uniform(philox4x32_10(seed, stream, (1ull << 62) + i).v[0]);
    size_t k = 0;
    double cum = 0;
    for (; k + 1 < p.K; ++k) {
        cum += exp(p.log_pi[k]);
        if (u < cum) break;
    }
    for (size_t j = 0; j < p.D; ++j) {
        const double e = philox_normal(philox4x32_10(seed, stream, i * p.D + j));
        z[j] = (float)((double)p.mean[k * p.D + j] +
                       (double)temperature * exp((double)p.log_scale[k * p.D + j]) * e);
    }
}

} // namespace flow::glow
