// The math of the planar and radial flows and the mixture-of-Gaussians base
// (Backend::planar_forward ... mog_sample), shared by the CPU (cpu_glow.cpp)
// and CUDA (cuda_glow.cu) backends so each formula exists once. FLOW_HD
// functions on raw float pointers: host memory on the CPU, device memory in a
// kernel. Per-row scalars are in double.
//
// A row op is split into its sums over the row (Planar::pre, Radial::radius,
// ...), its per-row scalars (tanh, log-det, *_backward_scalars) and its
// per-element formulas, so the CPU can run each stage over a block of rows
// (the scalars vectorize across rows), while CUDA runs a whole row per
// thread (*_row).
//
// Parameter gradients are sums over rows: each row's terms come from the
// *_term functions (by column of the sum), and *_add_param_grads turns
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

// --- row sums, tanh and log1p -------------------------------------------------

// A sum over a row runs in kLanes interleaved partial sums (lane l adds the
// terms j = l mod 8 in order, up to the last multiple of 8) that meet in a
// fixed tree, the halving order of an 8-double vector; the last D mod 8
// terms follow in order. One running sum would be a chain of dependent adds
// (~4 cycles a term); this is one vector add per 8 terms on a CPU, and every
// backend, instruction set and thread count adds in the same order.
constexpr size_t kLanes = 8;

template <class Term> FLOW_HD double row_sum(size_t D, Term term) {
    if (D < kLanes) { // the same sum, without the lanes' zeros
        double total = 0.0;
        for (size_t j = 0; j < D; ++j) total += term(j);
        return total;
    }
    double s[kLanes] = {};
    const size_t body = D - D % kLanes;
    for (size_t j = 0; j < body; j += kLanes)
        for (size_t l = 0; l < kLanes; ++l) s[l] += term(j + l);
    for (size_t half = kLanes / 2; half > 0; half /= 2)
        for (size_t l = 0; l < half; ++l) s[l] += s[l + half];
    double total = s[0];
    for (size_t j = body; j < D; ++j) total += term(j);
    return total;
}

// tanh and log1p as straight-line arithmetic (selects for the special
// cases), within a few ulp of libm: libm's are calls with branches, which
// keep a CPU loop over rows scalar and cost more than the rest of a row.

// ln 2 split so that n * kLn2Hi is exact for |n| < 2^20 (fdlibm's split).
constexpr double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;

// expm1(x) for x in [-60, 0]: x = n ln 2 + r with |r| <= ln 2 / 2, expm1(r)
// by its Taylor series to r^13 (truncation < 2^-56 relative), and
// expm1(x) = 2^n expm1(r) + (2^n - 1), exact in r near 0.
FLOW_HD double expm1_nonpositive(double x) {
    const double round = 6755399441055744.0; // 1.5 * 2^52: adding it rounds to an integer
    const double kn = x * 1.4426950408889634 + round, n = kn - round;
    const double r = (x - n * kLn2Hi) - n * kLn2Lo;
    double q = 1.0 / 6227020800.0; // 1 / 13!
    q = q * r + 1.0 / 479001600.0;
    q = q * r + 1.0 / 39916800.0;
    q = q * r + 1.0 / 3628800.0;
    q = q * r + 1.0 / 362880.0;
    q = q * r + 1.0 / 40320.0;
    q = q * r + 1.0 / 5040.0;
    q = q * r + 1.0 / 720.0;
    q = q * r + 1.0 / 120.0;
    q = q * r + 1.0 / 24.0;
    q = q * r + 1.0 / 6.0;
    q = q * r + 0.5;
    const double em1 = r + r * r * q;
    // 2^n from its exponent field; n is the low bits of kn.
    const int64_t ni = (int64_t)(double_as_uint(kn) - double_as_uint(round));
    const double scale = uint_as_double((uint64_t)(ni + 1023) << 52);
    return scale * em1 + (scale - 1.0);
}

// tanh(a) = -e / (2 + e) with e = expm1(-2 |a|) and the sign of a; |a| is
// capped at 30, where tanh rounds to 1. NaN stays NaN.
FLOW_HD double branchless_tanh(double a) {
    const double y = fabs(a) < 30.0 ? fabs(a) : 30.0;
    const double e = expm1_nonpositive(-2.0 * y);
    return a != a ? a : copysign(-e / (2.0 + e), a);
}

// log1p(y): u = 1 + y = 2^k m with m in [sqrt(1/2), sqrt(2)), log m =
// 2 atanh(f) with f = (m - 1) / (m + 1), |f| < 0.172, by its series to f^21
// (truncation < 2^-55 relative), plus (y - (u - 1)) / u for the rounding of
// 1 + y. u is 0 or at least 2^-53, never subnormal; u = 0 gives -inf, u < 0
// or NaN gives NaN, u = inf gives inf.
FLOW_HD double branchless_log1p(double y) {
    const double u = 1.0 + y;
    const uint64_t b = double_as_uint(u);
    // k = exponent field - 1023, as a double by the 2^52 trick
    const double two52 = 4503599627370496.0;
    double k = uint_as_double((b >> 52) | double_as_uint(two52)) - (two52 + 1023.0);
    double m = uint_as_double((b & 0x000FFFFFFFFFFFFFull) | double_as_uint(1.0));
    const bool big = m > 1.4142135623730951;
    m = big ? 0.5 * m : m;
    k = big ? k + 1.0 : k;
    const double f = (m - 1.0) / (m + 1.0), s = f * f;
    double p = 1.0 / 21.0;
    p = p * s + 1.0 / 19.0;
    p = p * s + 1.0 / 17.0;
    p = p * s + 1.0 / 15.0;
    p = p * s + 1.0 / 13.0;
    p = p * s + 1.0 / 11.0;
    p = p * s + 1.0 / 9.0;
    p = p * s + 1.0 / 7.0;
    p = p * s + 1.0 / 5.0;
    p = p * s + 1.0 / 3.0;
    const double log_m = 2.0 * f + 2.0 * f * s * p;
    const double v = k * kLn2Hi + (log_m + k * kLn2Lo + (y - (u - 1.0)) / u);
    const bool normal = u > 0.0 && u < INFINITY;
    return normal ? v : u == 0.0 ? -INFINITY : u > 0.0 ? u : NAN;
}

// --- planar -------------------------------------------------------------------

// A planar layer's parameters w, u [D], b and its per-op values: u_hat = u +
// c w with s = w.u, m = -1 + softplus(s), c = (m - s) / |w|^2, so psi = w.u_hat
// = m > -1 (invertible); |w| = 0 keeps u_hat = u. w and u_hat are doubles
// made once per op: the row loops then convert only the row's floats.
struct Planar {
    const double *w, *uh;
    const float *u;
    size_t D;
    double b, s, ww, m, c, psi;

    FLOW_HD double pre(const float *x) const { // w.x + b
        return b + row_sum(D, [&](size_t j) { return w[j] * (double)x[j]; });
    }
    FLOW_HD double dot_u_hat(const float *v) const {
        return row_sum(D, [&](size_t j) { return (double)v[j] * uh[j]; });
    }
    FLOW_HD double logdet(double t) const { return branchless_log1p((1.0 - t * t) * psi); }
    // out = in + u_hat t: the forward with t = tanh(a), the inverse with -t.
    FLOW_HD void shift(const float *in, double t, float *out) const {
        for (size_t j = 0; j < D; ++j) out[j] = (float)((double)in[j] + uh[j] * t);
    }
};

// The layer's per-op values; vec [2 D] receives w and u_hat.
FLOW_HD Planar planar_params(const float *w, const float *u, const float *b, size_t D,
                             double *vec) {
    double *wd = vec, *uh = vec + D;
    for (size_t j = 0; j < D; ++j) wd[j] = w[j];
    Planar p;
    p.w = wd;
    p.uh = uh;
    p.u = u;
    p.D = D;
    p.b = b[0];
    p.s = row_sum(D, [&](size_t j) { return wd[j] * (double)u[j]; });
    p.ww = row_sum(D, [&](size_t j) { return wd[j] * wd[j]; });
    p.m = -1.0 + softplus(p.s);
    p.c = p.ww > 0 ? (p.m - p.s) / p.ww : 0.0;
    for (size_t j = 0; j < D; ++j) uh[j] = (double)u[j] + p.c * wd[j];
    p.psi = row_sum(D, [&](size_t j) { return wd[j] * uh[j]; });
    return p;
}

// z = x + u_hat tanh(w.x + b); returns the row's log-det.
FLOW_HD double planar_forward_row(const Planar &p, const float *x, float *z) {
    const double t = branchless_tanh(p.pre(x));
    p.shift(x, t, z);
    return p.logdet(t);
}

// A row's search for a = w.x + b, the root of g(a) = a + psi tanh(a) -
// (w.z + b): g is increasing (psi > -1) and its root lies within |psi| of
// c = w.z + b since |tanh| < 1. Newton steps, bisection whenever a step
// leaves the bracket [lo, hi].
struct PlanarSolve {
    double c, lo, hi, a;
    bool done;
};

// At most this many steps (bisection alone needs ~60 for double precision).
constexpr int kPlanarSteps = 200;

FLOW_HD PlanarSolve planar_solve_start(const Planar &p, double c) {
    return {c, c - fabs(p.psi), c + fabs(p.psi), c, false};
}

// One step of s; done once g(a) is 0 or a step or the bracket is below tol
// (relative to 1 + |a|). Selects rather than branches, so that a CPU chunk
// steps its rows in lockstep without branching on each row's state.
FLOW_HD void planar_solve_step(const Planar &p, double tol, PlanarSolve &s) {
    const double t = branchless_tanh(s.a), g = s.a + p.psi * t - s.c;
    const bool root = g == 0.0;
    const double lo = g > 0 ? s.lo : s.a, hi = g > 0 ? s.a : s.hi;
    const double slope = 1.0 + p.psi * (1.0 - t * t);
    const double newton = s.a - g / slope;
    // & and | rather than && and ||, which would branch
    const bool inside = (slope > 0) & (newton > lo) & (newton < hi);
    const double next = inside ? newton : 0.5 * (lo + hi);
    const double step = fabs(next - s.a), small = tol * (1.0 + fabs(next));
    s.done = root | (step <= small) | (hi - lo <= small);
    s.lo = root ? s.lo : lo;
    s.hi = root ? s.hi : hi;
    s.a = root ? s.a : next;
}

// x = z - u_hat tanh(a) for the solved a; returns the forward log-det at x.
FLOW_HD double planar_solve_finish(const Planar &p, const PlanarSolve &s, const float *z,
                                   float *x) {
    const double t = branchless_tanh(s.a);
    p.shift(z, -t, x);
    return p.logdet(t);
}

// The inverse of a row: x from z; returns the forward log-det at x.
FLOW_HD double planar_inverse_row(const Planar &p, double tol, const float *z, float *x) {
    PlanarSolve s = planar_solve_start(p, p.pre(z));
    for (int it = 0; it < kPlanarSteps && !s.done; ++it) planar_solve_step(p, tol, s);
    return planar_solve_finish(p, s, z, x);
}

// What a row of planar_backward leaves for the parameter sums: t = tanh(w.x +
// b), da = d loss / d(w.x + b), gpsi = d loss / d psi.
struct PlanarRow {
    double t, da, gpsi;
};

// The row's scalars from a = w.x + b, dzu = dz.u_hat and its dlogdet g.
FLOW_HD PlanarRow planar_backward_scalars(const Planar &p, double a, double dzu, double g) {
    const double t = branchless_tanh(a), tp = 1.0 - t * t, q = 1.0 + tp * p.psi;
    PlanarRow r;
    r.t = t;
    // d/da of [z through tanh] and of log q (dtp/da = -2 t tp)
    r.da = tp * dzu + g * p.psi * (-2.0 * t * tp) / q;
    r.gpsi = g * tp / q;
    return r;
}

// dx[j] = dz[j] + da w[j].
FLOW_HD double planar_dx(const Planar &p, const PlanarRow &r, const float *dz, size_t j) {
    return (double)dz[j] + r.da * p.w[j];
}

// Row of planar_backward with dlogdet g: writes dx.
FLOW_HD PlanarRow planar_backward_row(const Planar &p, const float *x, const float *dz,
                                      double g, float *dx) {
    const PlanarRow r = planar_backward_scalars(p, p.pre(x), p.dot_u_hat(dz), g);
    for (size_t j = 0; j < p.D; ++j) dx[j] = (float)planar_dx(p, r, dz, j);
    return r;
}

// Columns of the planar parameter sums: [w directly (D) | u_hat (D) | b | psi].
FLOW_HD size_t planar_param_count(size_t D) { return 2 * D + 2; }

// The row's terms of the w and u_hat columns j < D (a loop over a range of
// columns vectorizes), and of any column col; x, dz are the row's.
FLOW_HD double planar_w_term(const PlanarRow &r, const float *x, size_t j) {
    return r.da * (double)x[j];
}
FLOW_HD double planar_u_hat_term(const PlanarRow &r, const float *dz, size_t j) {
    return (double)dz[j] * r.t;
}
FLOW_HD double planar_param_term(const PlanarRow &r, const float *x, const float *dz, size_t col,
                                 size_t D) {
    if (col < D) return planar_w_term(r, x, col);
    if (col < 2 * D) return planar_u_hat_term(r, dz, col - D);
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
        guhat[j] += gpsi * p.w[j];
        gw[j] += gpsi * p.uh[j];
    }
    const double dotw = row_sum(D, [&](size_t j) { return guhat[j] * p.w[j]; });
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

// A radial layer: center x0 [D] (as doubles, made once per op), alpha =
// softplus(a) > 0, beta = -alpha + softplus(b) > -alpha (invertible).
struct Radial {
    const double *x0;
    size_t D;
    double a, b, alpha, beta;

    // |row - x0|, the radius every radial op starts from.
    FLOW_HD double radius(const float *row) const {
        return sqrt(row_sum(D, [&](size_t j) {
            const double y = (double)row[j] - x0[j];
            return y * y;
        }));
    }
    // v.(row - x0)
    FLOW_HD double dot_offset(const float *v, const float *row) const {
        return row_sum(D, [&](size_t j) {
            return (double)v[j] * ((double)row[j] - x0[j]);
        });
    }
    // z - x = gain(r) (x - x0) in the forward.
    FLOW_HD double gain(double r) const { return beta / (alpha + r); }
    FLOW_HD double logdet(double r) const {
        const double h = 1.0 / (alpha + r);
        return (double)(D - 1) * branchless_log1p(beta * h) +
               branchless_log1p(alpha * beta * h * h);
    }
    // out = row + k (row - x0)
    FLOW_HD void push(const float *row, double k, float *out) const {
        for (size_t j = 0; j < D; ++j)
            out[j] = (float)((double)row[j] + k * ((double)row[j] - x0[j]));
    }
};

// The layer's per-op values; x0d [D] receives x0.
FLOW_HD Radial radial_params(const float *x0, const float *a, const float *b, size_t D,
                             double *x0d) {
    for (size_t j = 0; j < D; ++j) x0d[j] = x0[j];
    Radial p;
    p.x0 = x0d;
    p.D = D;
    p.a = a[0];
    p.b = b[0];
    p.alpha = softplus(p.a);
    p.beta = -p.alpha + softplus(p.b);
    return p;
}

// z = x + beta h (x - x0), h = 1 / (alpha + r); returns the row's log-det.
FLOW_HD double radial_forward_row(const Radial &p, const float *x, float *z) {
    const double r = p.radius(x);
    p.push(x, p.gain(r), z);
    return p.logdet(r);
}

// For a row whose image lies rz = |z - x0| from x0: r = |x - x0| and the
// factor f = r / rz that takes z - x0 to x - x0 (0 at rz = 0).
struct RadialInverse {
    double r, f;
};

FLOW_HD RadialInverse radial_inverse_scalars(const Radial &p, double rz) {
    // r^2 + B r - alpha rz = 0, B = alpha + beta - rz: the positive root
    const double B = p.alpha + p.beta - rz, disc = sqrt(B * B + 4.0 * p.alpha * rz);
    const double r = B >= 0 ? 2.0 * p.alpha * rz / (B + disc) : 0.5 * (disc - B);
    return {r, rz > 0 ? r / rz : 0.0};
}

// x = x0 + (z - x0) f
FLOW_HD void radial_pull(const Radial &p, const float *z, double f, float *x) {
    for (size_t j = 0; j < p.D; ++j)
        x[j] = (float)(p.x0[j] + ((double)z[j] - p.x0[j]) * f);
}

// x = x0 + (z - x0) r / |z - x0|; returns the forward log-det at x.
FLOW_HD double radial_inverse_row(const Radial &p, const float *z, float *x) {
    const RadialInverse s = radial_inverse_scalars(p, p.radius(z));
    radial_pull(p, z, s.f, x);
    return p.logdet(s.r);
}

// A row of radial_backward: dx = ph dz + coef (x - x0); galpha, gbeta the
// row's d loss / d alpha, d loss / d beta.
struct RadialRow {
    double ph, coef, galpha, gbeta;
};

// The row's scalars from r = |x - x0|, dzy = dz.(x - x0) and its dlogdet g.
FLOW_HD RadialRow radial_backward_scalars(const Radial &p, double r, double dzy, double g) {
    const double al = p.alpha, be = p.beta, Dm1 = (double)(p.D - 1);
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

FLOW_HD RadialRow radial_backward_row(const Radial &p, const float *x, const float *dz, double g) {
    return radial_backward_scalars(p, p.radius(x), p.dot_offset(dz, x), g);
}

FLOW_HD double radial_dx(const Radial &p, const RadialRow &o, const float *x, const float *dz,
                         size_t j) {
    return o.ph * (double)dz[j] + o.coef * ((double)x[j] - p.x0[j]);
}

// Columns of the radial parameter sums: [x0 (D) | alpha | beta].
FLOW_HD size_t radial_param_count(size_t D) { return D + 2; }

// Column j < D's term, given the row's dx[j] (radial_dx) and dz[j].
FLOW_HD double radial_x0_term(double dx, float dz) { return -(dx - (double)dz); }

FLOW_HD double radial_param_term(const Radial &p, const RadialRow &o, const float *x,
                                 const float *dz, size_t col) {
    if (col < p.D) return radial_x0_term(radial_dx(p, o, x, dz, col), dz[col]);
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
