// Hot loops of the CPU backend, one clone per instruction set (see
// cpu_kernels.h). `ivdep` marks loops whose outputs never overlap their
// inputs at another index (the Backend contract), sparing GCC the run-time
// alias checks it would otherwise give up on. The loops are written so that GCC vectorizes them: no
// calls into libm inside (exp and tanh are inlined polynomials below), no
// floating-point reductions across the vectorized index (per-row sums go
// through a small buffer and are added in double, in a fixed order).
#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/cpu_clones.h"
#include "backend/cpu/cpu_thread_buffer.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

// Compiled with -fno-math-errno -fno-trapping-math (CMakeLists.txt).
#if defined(__GNUC__) && !defined(__clang__)
#define FLOW_IVDEP _Pragma("GCC ivdep")
#else
#define FLOW_IVDEP
#endif

#include "backend/float_math.h"
#include "backend/glow_math.h"


namespace flow::cpu_kernels {

namespace {

constexpr size_t kRowBuffer = 1024;  // per-row scratch; wider rows go in pieces

// The range the exps below clamp their input to, [-87.3, 88.3] (results
// from ~1.2e-38 to ~2.1e38, never denormal or infinite). A kernel takes it
// once, before its loops, from exp_range(), which hides the two values from
// the optimizer: knowing them, GCC folds the exp of each bound to a
// constant and turns every clamp into compares and masked blends that pick
// it, four compares, a mask op and a blend where one max and one min do
// (MADE MoG log_prob 14% slower).
struct ExpRange {
    float lo, hi;
};

FLOW_INLINE ExpRange exp_range() {
    float lo = -87.3f, hi = 88.3f;
#if defined(__GNUC__) && defined(__x86_64__)
    __asm__("" : "+x"(lo), "+x"(hi));
#endif
    return {lo, hi};
}

// exp(x) for float, x in the range: e^r 2^n with n = x / ln 2 rounded and
// r = x - n ln 2 (ln 2 in two parts, as Cephes' expf), e^r from a degree-6
// polynomial fitted for the least greatest relative error on [-ln 2 / 2,
// ln 2 / 2] (3e-9 before rounding; 7.7e-8 in float over the whole range,
// as Cephes' degree-7 one). Bound by its instruction count (a vector op
// each line): hence the lower degree, plain Horner, and 2^n made from the
// rounding's own bits rather than a float -> int conversion.
FLOW_INLINE float fexp_in_range(float x) {
    // n rounded to the nearest integer by adding 1.5 * 2^23 + 127: the sum's
    // low bits are then n + 127, the exponent field of 2^n (in [1, 254] for
    // the clamped x), and shifting them up makes 2^n.
    const float magic = 12582912.0f + 127.0f;
    const float biased = x * 1.44269504088896341f + magic;
    const float fn = biased - magic;
    const float r = (x - fn * 0.693359375f) - fn * -2.12194440e-4f;
    float p = 1.38145394e-3f;
    p = p * r + 8.36874545e-3f;
    p = p * r + 4.16683890e-2f;
    p = p * r + 1.66665211e-1f;
    p = p * r + 4.99999940e-1f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    return p * uint_as_float(float_as_uint(biased) << 23);
}

// The clamps are written as x86's max and min compare (a NaN clamps to lo),
// so that each is one instruction. A NaN input gives some finite value, so
// these are for loops where a NaN reaches the result by another path (fexp
// below keeps it).
FLOW_INLINE float fexp_clamped(float x, ExpRange range) {
    x = x > range.lo ? x : range.lo;
    return fexp_in_range(x < range.hi ? x : range.hi);
}

// fexp_clamped for x <= 0: one clamp.
FLOW_INLINE float fexp_nonpositive(float x, ExpRange range) {
    return fexp_in_range(x > range.lo ? x : range.lo);
}

// fexp_clamped, and NaN stays NaN.
FLOW_INLINE float fexp(float x, ExpRange range) {
    const float e = fexp_clamped(x, range);
    return x != x ? x : e;
}

// tanh(x): Cephes' tanhf polynomial for |x| < 0.625, 1 - 2 / (e^2|x| + 1)
// beyond, the sign put back. A few ulp; +-1 for large |x|; NaN stays NaN.
FLOW_INLINE float ftanh(float x, ExpRange range) {
    const float a = __builtin_fabsf(x);
    const float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    const float small = p * z * x + x;
    const float big = 1.0f - 2.0f / (fexp(2.0f * a, range) + 1.0f);
    const float signed_big = x < 0.0f ? -big : big;
    return a < 0.625f ? small : signed_big;
}

// log(1 + e) for e in [0, 1]: Cephes' logf (float_math.h) on u = 1 + e (in
// [1, 2]) plus the rounding of 1 + e put back, (e - (u - 1)) / u. ~1 ulp.
FLOW_INLINE float flog1p_unit(float e) {
    const float u = 1.0f + e;
    const float c = (e - (u - 1.0f)) / u;
    const bool big = u > 1.41421356f;
    const float m = big ? 0.5f * u : u;
    return log_cephes_reduced(m - 1.0f, big ? 1.0f : 0.0f) + c;
}

// max(a, b) as one x86 max instruction: std::max is not inlined into the
// clones, and its call kept loops scalar.
FLOW_INLINE float fmax_of(float a, float b) { return a > b ? a : b; }

// log(1 + e^x) and the logistic sigmoid, stable at both ends.
FLOW_INLINE float fsoftplus(float x, ExpRange range) {
    return fmax_of(x, 0.0f) + flog1p_unit(fexp(-__builtin_fabsf(x), range));
}

FLOW_INLINE float fsigmoid(float x, ExpRange range) {
    const float e = fexp(-__builtin_fabsf(x), range);
    const float s = 1.0f / (1.0f + e);
    return x >= 0.0f ? s : e * s;
}

} // namespace

float exp_approx(float x) { return fexp(x, exp_range()); }
float sqrt_approx(float x) { return sqrt_newton(x); }
float log1p_unit_approx(float e) { return flog1p_unit(e); }
float tanh_approx(float x) { return ftanh(x, exp_range()); }

// --- affine coupling --------------------------------------------------------

namespace {

// The coupling kernels run exp and tanh over flat blocks of up to kBlock
// values: several whole rows when the rows are narrow (a coupling's free
// columns are often only a few, less than one vector), else column slices
// of one row.
constexpr size_t kBlock = 512;

// Either `rows` whole rows from row i0 (j0 = 0, w = F) or the columns
// [j0, j0 + w) of row i0 (rows = 1): contiguous in an [n, F] matrix either way.
struct Block {
    size_t i0, rows, j0, w;
    size_t size() const { return rows * w; }
};

// body(block) over rows [r0, r1) of [n, F] (F > 0) in blocks of at most kBlock values.
template <class Body> FLOW_INLINE void for_each_block(size_t F, size_t r0, size_t r1, Body body) {
    if (F > kBlock) {
        for (size_t i = r0; i < r1; ++i)
            for (size_t j0 = 0; j0 < F; j0 += kBlock)
                body(Block{i, 1, j0, std::min(kBlock, F - j0)});
        return;
    }
    const size_t per = kBlock / F;
    for (size_t i0 = r0; i0 < r1; i0 += per) body(Block{i0, std::min(per, r1 - i0), 0, F});
}

// The block's columns of one half of h [n, 2F] (at column `half`: 0 raw
// log-scales, F shifts) as a flat array: in place for a single row, else
// gathered into buf.
FLOW_INLINE const float *load_h_half(const float *h, size_t F, size_t half, const Block &b,
                                     float *buf) {
    const float *src = h + b.i0 * 2 * F + half + b.j0;
    if (b.rows == 1) return src;
    for (size_t r = 0; r < b.rows; ++r)
        std::memcpy(buf + r * F, src + r * 2 * F, F * sizeof(float));
    return buf;
}

// The reverse of load_h_half: the flat block src into its columns of dh.
FLOW_INLINE void store_h_half(const float *src, size_t F, size_t half, const Block &b, float *dh) {
    float *dst = dh + b.i0 * 2 * F + half + b.j0;
    for (size_t r = 0; r < b.rows; ++r)
        std::memcpy(dst + r * 2 * F, src + r * b.w, b.w * sizeof(float));
}

// scale as the flat blocks see it (before adding Block::j0): copies of it
// back to back when blocks hold several rows, scale itself otherwise.
FLOW_INLINE const float *block_scale(const float *scale, size_t F, size_t rows, float *buf) {
    if (F > kBlock / 2 || rows < 2) return scale;
    const size_t per = std::min(kBlock / F, rows);
    for (size_t r = 0; r < per; ++r) std::memcpy(buf + r * F, scale, F * sizeof(float));
    return buf;
}

} // namespace

FLOW_CLONES
void affine_coupling_rows(const float *in, const float *h, const float *scale, float *out,
                          float *logdet, size_t F, size_t r0, size_t r1, bool inverse) {
    float raw_buf[kBlock], t_buf[kBlock], sc_buf[kBlock], s_buf[kBlock];
    const float *sc_all = block_scale(scale, F, r1 - r0, sc_buf);
    const double sign = inverse ? -1.0 : 1.0;
    const ExpRange range = exp_range();
    double carry = 0.0; // a wide row's log-det over its earlier column slices
    for_each_block(F, r0, r1, [&](const Block &b) FLOW_INLINE_LAMBDA {
        const size_t k0 = b.i0 * F + b.j0, count = b.size();
        const float *__restrict raw = load_h_half(h, F, 0, b, raw_buf);
        const float *__restrict t = load_h_half(h, F, F, b, t_buf);
        const float *__restrict sc = sc_all + b.j0;
        const float *__restrict x = in + k0;
        float *__restrict o = out + k0;
        if (!inverse) {
            FLOW_IVDEP
            for (size_t k = 0; k < count; ++k) {
                const float s = sc[k] * ftanh(raw[k], range);
                o[k] = x[k] * fexp(s, range) + t[k];
                s_buf[k] = s;
            }
        } else {
            FLOW_IVDEP
            for (size_t k = 0; k < count; ++k) {
                const float s = sc[k] * ftanh(raw[k], range);
                o[k] = (x[k] - t[k]) * fexp(-s, range);
                s_buf[k] = s;
            }
        }
        for (size_t r = 0; r < b.rows; ++r) {
            const float *sr = s_buf + r * b.w;
            const double ld = carry + glow::row_sum(b.w, [&](size_t j) { return double(sr[j]); });
            if (b.j0 + b.w < F) {
                carry = ld;
                continue;
            }
            carry = 0.0;
            float &l = logdet[b.i0 + r];
            l = float(l + sign * ld);
        }
    });
}

// --- Gaussian autoregressive layer (MAF / IAF) ----------------------------------

FLOW_CLONES
void made_affine_forward_rows(const float *x, const float *h, float *z, float *logdet, size_t D,
                              size_t r0, size_t r1) {
    const ExpRange range = exp_range();
    for (size_t i = r0; i < r1; ++i) {
        const float *__restrict mu = h + i * 2 * D, *__restrict alpha = mu + D;
        const float *__restrict xi = x + i * D;
        float *__restrict zi = z + i * D;
        FLOW_IVDEP
        for (size_t j = 0; j < D; ++j) zi[j] = (xi[j] - mu[j]) * fexp(-alpha[j], range);
        logdet[i] -= float(glow::row_sum(D, [&](size_t j) { return double(alpha[j]); }));
    }
}

FLOW_CLONES
void made_affine_inverse_rows(const float *z, const float *h, float *x, float *logdet,
                              long column, size_t D, size_t r0, size_t r1) {
    const ExpRange range = exp_range();
    for (size_t i = r0; i < r1; ++i) {
        const float *__restrict mu = h + i * 2 * D, *__restrict alpha = mu + D;
        const float *__restrict zi = z + i * D;
        float *__restrict xi = x + i * D;
        if (column >= 0) {
            const size_t j = size_t(column);
            xi[j] = zi[j] * fexp(alpha[j], range) + mu[j];
        } else {
            FLOW_IVDEP
            for (size_t j = 0; j < D; ++j) xi[j] = zi[j] * fexp(alpha[j], range) + mu[j];
        }
        if (logdet) logdet[i] += float(glow::row_sum(D, [&](size_t j) { return double(alpha[j]); }));
    }
}

FLOW_CLONES
void made_affine_backward_rows(const float *x, const float *h, const float *dz,
                               const float *dlogdet, float *dx, float *dh, size_t D, size_t r0,
                               size_t r1) {
    const ExpRange range = exp_range();
    for (size_t i = r0; i < r1; ++i) {
        const float *__restrict mu = h + i * 2 * D, *__restrict alpha = mu + D;
        const float *__restrict xi = x + i * D, *__restrict dzi = dz + i * D;
        float *__restrict dxi = dx + i * D, *__restrict dmu = dh + i * 2 * D;
        float *__restrict dalpha = dmu + D;
        const float dl = dlogdet ? dlogdet[i] : 0.0f;
        FLOW_IVDEP
        for (size_t j = 0; j < D; ++j) {
            const float e = fexp(-alpha[j], range), zj = (xi[j] - mu[j]) * e;
            dxi[j] = dzi[j] * e;
            dmu[j] = -dzi[j] * e;
            dalpha[j] = -dzi[j] * zj - dl;
        }
    }
}

FLOW_CLONES
void affine_coupling_backward_rows(const float *x, const float *h, const float *scale,
                                   const float *dz, const float *dlogdet, float *dx, float *dh,
                                   double *acc, size_t F, size_t r0, size_t r1) {
    float raw_buf[kBlock], sc_buf[kBlock], dl_buf[kBlock], dhs_buf[kBlock], c_buf[kBlock];
    const float *sc_all = block_scale(scale, F, r1 - r0, sc_buf);
    const ExpRange range = exp_range();
    for_each_block(F, r0, r1, [&](const Block &b) FLOW_INLINE_LAMBDA {
        const size_t k0 = b.i0 * F + b.j0, count = b.size();
        for (size_t r = 0; r < b.rows; ++r)
            std::fill(dl_buf + r * b.w, dl_buf + (r + 1) * b.w, dlogdet[b.i0 + r]);
        const float *__restrict raw = load_h_half(h, F, 0, b, raw_buf);
        const float *__restrict sc = sc_all + b.j0;
        const float *__restrict xk = x + k0, *__restrict dzk = dz + k0;
        float *__restrict dxk = dx + k0;
        FLOW_IVDEP
        for (size_t k = 0; k < count; ++k) {
            const float th = ftanh(raw[k], range);
            const float e = fexp(sc[k] * th, range);
            dxk[k] = dzk[k] * e;
            // dL/ds: through z = x e^s + t and through logdet += s.
            const float ds = dzk[k] * xk[k] * e + dl_buf[k];
            dhs_buf[k] = ds * sc[k] * (1.0f - th * th);
            c_buf[k] = ds * th;
        }
        store_h_half(dhs_buf, F, 0, b, dh);
        store_h_half(dzk, F, F, b, dh); // dL/dt = dz
        double *a = acc + b.j0;
        for (size_t r = 0; r < b.rows; ++r) {
            const float *cr = c_buf + r * b.w;
            FLOW_IVDEP
            for (size_t j = 0; j < b.w; ++j) a[j] += double(cr[j]);
        }
    });
}

// --- bias + activation --------------------------------------------------------

namespace {

template <class F>
FLOW_INLINE void bias_act_loop(const float *x, const float *bias, float *pre, float *y,
                               size_t cols, size_t r0, size_t r1, F f) {
    for (size_t i = r0; i < r1; ++i) {
        const float *xi = x + i * cols;
        float *yi = y + i * cols;
        float *pi = pre ? pre + i * cols : nullptr;
        if (bias && pi) {
            FLOW_IVDEP
            for (size_t j = 0; j < cols; ++j) {
                const float v = xi[j] + bias[j];
                pi[j] = v;
                yi[j] = f(v);
            }
        } else if (bias) {
            FLOW_IVDEP
            for (size_t j = 0; j < cols; ++j) yi[j] = f(xi[j] + bias[j]);
        } else {
            FLOW_IVDEP
            for (size_t j = 0; j < cols; ++j) yi[j] = f(xi[j]);
        }
    }
}

template <class F>
FLOW_INLINE void act_backward_loop(const float *x, const float *y, const float *dy, float *dx,
                                   double *acc, size_t cols, size_t r0, size_t r1, F derivative) {
    for (size_t i = r0; i < r1; ++i) {
        const size_t o = i * cols;
        if (acc) {
            FLOW_IVDEP
            for (size_t j = 0; j < cols; ++j) {
                const float d = dy[o + j] * derivative(x[o + j], y[o + j]);
                dx[o + j] = d;
                acc[j] += double(d);
            }
        } else {
            FLOW_IVDEP
            for (size_t j = 0; j < cols; ++j)
                dx[o + j] = dy[o + j] * derivative(x[o + j], y[o + j]);
        }
    }
}

} // namespace

FLOW_CLONES
void bias_activation_rows(Activation act, const float *x, const float *bias, float *pre,
                          float *y, size_t cols, size_t r0, size_t r1) {
    const ExpRange range = exp_range();
    switch (act) {
    case Activation::relu:
        bias_act_loop(x, bias, pre, y, cols, r0, r1, [](float v) { return v > 0.0f ? v : 0.0f; });
        break;
    case Activation::leaky_relu:
        bias_act_loop(x, bias, pre, y, cols, r0, r1,
                      [](float v) { return v > 0.0f ? v : kLeakyReluSlope * v; });
        break;
    case Activation::elu:
        bias_act_loop(x, bias, pre, y, cols, r0, r1,
                      [](float v) { return v > 0.0f ? v : std::expm1(v); });
        break;
    case Activation::tanh:
        bias_act_loop(x, bias, pre, y, cols, r0, r1, [range](float v) { return ftanh(v, range); });
        break;
    case Activation::softplus:
        bias_act_loop(x, bias, pre, y, cols, r0, r1, [range](float v) { return fsoftplus(v, range); });
        break;
    }
}

FLOW_CLONES
void activation_backward_rows(Activation act, const float *x, const float *y, const float *dy,
                              float *dx, double *acc, size_t cols, size_t r0, size_t r1) {
    const ExpRange range = exp_range();
    switch (act) {
    case Activation::relu:
        act_backward_loop(x, y, dy, dx, acc, cols, r0, r1,
                          [](float v, float) { return v > 0.0f ? 1.0f : 0.0f; });
        break;
    case Activation::leaky_relu:
        act_backward_loop(x, y, dy, dx, acc, cols, r0, r1,
                          [](float v, float) { return v > 0.0f ? 1.0f : kLeakyReluSlope; });
        break;
    case Activation::elu:
        act_backward_loop(x, y, dy, dx, acc, cols, r0, r1,
                          [](float v, float out) { return v > 0.0f ? 1.0f : out + 1.0f; });
        break;
    case Activation::tanh:
        act_backward_loop(x, y, dy, dx, acc, cols, r0, r1,
                          [](float, float out) { return 1.0f - out * out; });
        break;
    case Activation::softplus:
        act_backward_loop(x, y, dy, dx, acc, cols, r0, r1,
                          [range](float v, float) { return fsigmoid(v, range); });
        break;
    }
}

// --- Adam -------------------------------------------------------------------

FLOW_CLONES
void adam_range(float *p, const float *g, float *m, float *v, float beta1, float beta2,
                float eps, float l2, float decay, float step_size, float bias2_sqrt, size_t k0,
                size_t k1) {
    for (size_t k = k0; k < k1; ++k) {
        // The L2 term sees the parameter the gradient was taken at.
        const float gk = g[k] + l2 * p[k];
        const float mk = beta1 * m[k] + (1.0f - beta1) * gk;
        const float vk = beta2 * v[k] + (1.0f - beta2) * gk * gk;
        m[k] = mk;
        v[k] = vk;
        p[k] = p[k] * decay - step_size * mk / (sqrt_newton(vk) / bias2_sqrt + eps);
    }
}

// --- logistic base distribution -----------------------------------------------

// term[j] = -log Logistic(z[j]) = |z| + 2 log(1 + e^-|z|) for j < count.
FLOW_INLINE void logistic_terms(const float *z, size_t count, float *term) {
    const ExpRange range = exp_range();
FLOW_IVDEP
    for (size_t j = 0; j < count; ++j) {
        const float a = __builtin_fabsf(z[j]);
        term[j] = a + 2.0f * flog1p_unit(fexp(-a, range));
    }
}

// The terms of as many whole rows as the buffer holds are made in one flat
// loop (for D = 8 a loop per row spent more on its set-up than on its 8
// elements), then each row adds its terms in double.
FLOW_CLONES
void logistic_log_prob_rows(const float *z, float *out, size_t D, size_t r0, size_t r1) {
    float term[kRowBuffer];
    const size_t rows = D <= kRowBuffer ? kRowBuffer / D : 0;
    for (size_t i = r0; i < r1;) {
        if (rows == 0) { // a row wider than the buffer: in pieces
            double lp = 0.0;
            for (size_t j0 = 0; j0 < D; j0 += kRowBuffer) {
                const size_t w = std::min(kRowBuffer, D - j0);
                logistic_terms(z + i * D + j0, w, term);
                lp -= glow::row_sum(w, [&](size_t j) { return double(term[j]); });
            }
            out[i++] = float(lp);
            continue;
        }
        const size_t count = std::min(rows, r1 - i);
        logistic_terms(z + i * D, count * D, term);
        for (size_t r = 0; r < count; ++r)
            out[i + r] = float(-glow::row_sum(D, [&](size_t j) { return double(term[r * D + j]); }));
        i += count;
    }
}

FLOW_CLONES
void normal_log_prob_rows(const float *z, float *out, size_t D, size_t r0, size_t r1) {
    constexpr double log_two_pi = 1.8378770664093454835606594728112;
    for (size_t i = r0; i < r1; ++i) {
        const float *zi = z + i * D;
        const double sq = glow::row_sum(D, [&](size_t j) { return double(zi[j]) * double(zi[j]); });
        out[i] = float(-0.5 * (sq + double(D) * log_two_pi));
    }
}

FLOW_CLONES
void logistic_log_prob_backward_rows(const float *z, const float *dlogp, float *dz, size_t D,
                                     size_t r0, size_t r1) {
    const ExpRange range = exp_range();
    for (size_t i = r0; i < r1; ++i) {
        const float g = dlogp[i];
        const float *zi = z + i * D;
        float *di = dz + i * D;
        // d/dz log Logistic(z) = 1 - 2 sigmoid(z) = -tanh(z / 2)
FLOW_IVDEP
        for (size_t j = 0; j < D; ++j) di[j] = -g * ftanh(0.5f * zi[j], range);
    }
}

// --- MADE mixture of Gaussians -------------------------------------------------

namespace {

// A row of h [n, 3 C D] holds 3 C blocks of D values: for dimension d and
// component c the logit at c D + d, the mean at (C + c) D + d and the
// log-scale at (2 C + c) D + d. The kernels take chunks of up to kMogDims
// values of each block through loops over c whose inner loops run over the
// chunk, a vector at a time, and keep each component's terms for the chunk
// in [C, w] arrays (element c w + j): a wide row in chunks of kMogDims
// dimensions, read in place, or several narrow rows whose blocks are first
// copied side by side (at D = 8 a row's blocks are half an AVX-512 vector).
// Their exps skip fexp's NaN test: a NaN in h or z reaches each result
// through t and t_max. The double math of made_mog_math.h, which the CUDA
// backend runs, took one dimension at a time, scalar, in libm's exp and log:
// 3.4x slower than PyTorch at 256 x 64 dimensions x 10 components.
constexpr size_t kMogDims = 64;

// w values of each component: c's logit, mean and log-scale at logit[c *
// stride + j], mean[...], log_scale[...], and z[j].
struct MogChunk {
    const float *logit, *mean, *log_scale, *z;
    size_t C, stride, w;
};

// Dimensions [d0, d0 + w) of row hi (z row zi), in place.
FLOW_INLINE MogChunk row_chunk(const float *hi, const float *zi, size_t C, size_t D, size_t d0,
                               size_t w) {
    return {hi + d0, hi + C * D + d0, hi + 2 * C * D + d0, zi + d0, C, D, w};
}

// Rows [i, i + rows) whole, each block of their h rows copied into pack
// [3 C, rows D] (block b of row r at b w + r D); z's rows are contiguous.
FLOW_INLINE MogChunk packed_rows(const float *h, const float *z, size_t C, size_t D, size_t i,
                                 size_t rows, float *pack) {
    const size_t w = rows * D;
    for (size_t r = 0; r < rows; ++r) {
        const float *hr = h + (i + r) * 3 * C * D;
        for (size_t b = 0; b < 3 * C; ++b) copy_floats(hr + b * D, D, pack + b * w + r * D);
    }
    return {pack, pack + C * w, pack + 2 * C * w, z + i * D, C, w, w};
}

// The chunk's terms: wexp = exp(logit - logit_max[j]) and wsum[j] = sum_c
// wexp (so the weight pi = wexp / wsum, and log sum_c exp(logit) = logit_max
// + log wsum); t = logit - u^2 / 2 - log_scale with u = (z - mean)
// exp(-log_scale), t_max[j] = max_c t and sum[j] = sum_c exp(t - t_max).
// The log of component c is t - log sum_c exp(logit) - log(2 pi) / 2. The
// backward pass also keeps wexp, ui = u exp(-log_scale) and uu = u^2, and
// t becomes exp(t - t_max) (the responsibility is that / sum).
template <bool Backward>
FLOW_INLINE void mog_terms(const MogChunk &k, float *logit_max, float *wexp, float *wsum, float *t,
                           float *t_max, float *sum, float *ui, float *uu) {
    const size_t C = k.C, S = k.stride, w = k.w;
    const ExpRange range = exp_range();
    for (size_t j = 0; j < w; ++j) {
        logit_max[j] = k.logit[j];
        wsum[j] = 0.0f;
        t_max[j] = -INFINITY;
    }
    for (size_t c = 1; c < C; ++c)
FLOW_IVDEP
        for (size_t j = 0; j < w; ++j) logit_max[j] = fmax_of(logit_max[j], k.logit[c * S + j]);
    for (size_t c = 0; c < C; ++c) {
        const size_t o = c * S, e = c * w;
FLOW_IVDEP
        for (size_t j = 0; j < w; ++j) {
            const float lc = k.logit[o + j], sc = k.log_scale[o + j];
            const float we = fexp_nonpositive(lc - logit_max[j], range);
            wsum[j] += we;
            const float inv = fexp_clamped(-sc, range), u = (k.z[j] - k.mean[o + j]) * inv;
            t[e + j] = lc - 0.5f * u * u - sc;
            t_max[j] = fmax_of(t_max[j], t[e + j]);
            if constexpr (Backward) {
                wexp[e + j] = we;
                ui[e + j] = u * inv;
                uu[e + j] = u * u;
            }
        }
    }
    for (size_t j = 0; j < w; ++j) sum[j] = 0.0f;
    for (size_t c = 0; c < C; ++c)
FLOW_IVDEP
        for (size_t j = 0; j < w; ++j) {
            const float e = fexp_nonpositive(t[c * w + j] - t_max[j], range);
            sum[j] += e;
            if constexpr (Backward) t[c * w + j] = e;
        }
}

// body(chunk, i, rows, d0): the chunks of rows [r0, r1) in order, each
// covering `rows` whole rows from row i (d0 = 0) or dimensions [d0, d0 +
// chunk.w) of row i (rows = 1). pack: 3 C kMogDims floats.
template <class Body>
FLOW_INLINE void for_each_mog_chunk(const float *z, const float *h, size_t C, size_t D, size_t r0,
                                    size_t r1, float *pack, Body &&body) {
    const size_t per = kMogDims / D; // whole rows per chunk
    for (size_t i = r0; i < r1;) {
        if (per >= 2) {
            const size_t rows = std::min(per, r1 - i);
            body(packed_rows(h, z, C, D, i, rows, pack), i, rows, size_t(0));
            i += rows;
            continue;
        }
        for (size_t d0 = 0; d0 < D; d0 += kMogDims)
            body(row_chunk(h + i * 3 * C * D, z + i * D, C, D, d0, std::min(kMogDims, D - d0)), i,
                 size_t(1), d0);
        ++i;
    }
}

// The log-densities of a chunk from its terms: log sum_c exp(t) - log sum_c
// exp(logit) - log(2 pi) / 2 per dimension (lp: w floats), and each row's
// dimensions added in double into out[i + r]; a row in several chunks
// carries its sum in total.
FLOW_INLINE void store_log_probs(size_t w, size_t rows, size_t d0, size_t D, const float *t_max,
                                 const float *logit_max, const float *sum, const float *wsum,
                                 float *lp, double &total, float *out) {
    constexpr float half_log_two_pi = 0.918938533204672742f;
FLOW_IVDEP
    for (size_t j = 0; j < w; ++j)
        lp[j] = (t_max[j] - logit_max[j]) + (log_cephes(sum[j]) - log_cephes(wsum[j])) -
                half_log_two_pi;
    if (d0 == 0) total = 0.0;
    for (size_t r = 0; r < rows; ++r) {
        const float *lr = lp + r * (w / rows);
        total += glow::row_sum(w / rows, [&](size_t j) { return double(lr[j]); });
        if (rows > 1 || d0 + w == D) {
            out[r] = float(total);
            total = 0.0;
        }
    }
}

// This thread's arrays for C components: wexp, t, ui, uu [C, kMogDims], the
// packed rows [3 C, kMogDims] and their gradients [3 C, kMogDims].
float *mog_buffer(size_t C) { return thread_buffer<float, 4>(10 * C * kMogDims); }

} // namespace

FLOW_CLONES
void made_mog_log_prob_rows(const float *z, const float *h, float *out, size_t C, size_t D,
                            size_t r0, size_t r1) {
    float *t = mog_buffer(C), *pack = t + 4 * C * kMogDims;
    float logit_max[kMogDims], wsum[kMogDims], t_max[kMogDims], sum[kMogDims], lp[kMogDims];
    double total = 0.0; // of the row being summed chunk by chunk
    for_each_mog_chunk(z, h, C, D, r0, r1, pack, [&](const MogChunk &k, size_t i, size_t rows,
                                                     size_t d0) FLOW_INLINE_LAMBDA {
        mog_terms<false>(k, logit_max, nullptr, wsum, t, t_max, sum, nullptr, nullptr);
        store_log_probs(k.w, rows, d0, D, t_max, logit_max, sum, wsum, lp, total, out + i);
    });
}

FLOW_CLONES
void made_mog_log_prob_backward_rows(const float *z, const float *h, const float *dlogp,
                                     float *dz, float *dh, float *out, size_t C, size_t D,
                                     size_t r0, size_t r1) {
    float *wexp = mog_buffer(C), *t = wexp + C * kMogDims, *ui = t + C * kMogDims,
          *uu = ui + C * kMogDims, *pack = uu + C * kMogDims, *dpack = pack + 3 * C * kMogDims;
    float logit_max[kMogDims], wsum[kMogDims], t_max[kMogDims], sum[kMogDims];
    float g[kMogDims], inv_sum[kMogDims], inv_wsum[kMogDims], dzj[kMogDims], lp[kMogDims];
    double total = 0.0;
    for_each_mog_chunk(z, h, C, D, r0, r1, pack, [&](const MogChunk &k, size_t i, size_t rows,
                                                     size_t d0) FLOW_INLINE_LAMBDA {
        const size_t w = k.w;
        mog_terms<true>(k, logit_max, wexp, wsum, t, t_max, sum, ui, uu);
        if (out) store_log_probs(w, rows, d0, D, t_max, logit_max, sum, wsum, lp, total, out + i);
        // Row by row, not dlogp[i + j / (w / rows)]: that integer division
        // kept the loop scalar, 11% of the kernel's time at D = 64.
        for (size_t r = 0; r < rows; ++r) std::fill_n(g + r * (w / rows), w / rows, dlogp[i + r]);
FLOW_IVDEP
        for (size_t j = 0; j < w; ++j) {
            inv_sum[j] = 1.0f / sum[j];
            inv_wsum[j] = 1.0f / wsum[j];
            dzj[j] = 0.0f;
        }
        // Into h's rows in place, or into dpack laid out as pack.
        float *to = rows > 1 ? dpack : dh + i * 3 * C * D + d0;
        const size_t S = rows > 1 ? w : D;
        // d/dlogit = r - pi, d/dmean = r u / s, d/dlog_scale = r (u^2 - 1),
        // d/dz = -sum_c r u / s.
        for (size_t c = 0; c < C; ++c) {
            float *dl = to + c * S, *dm = to + (C + c) * S, *ds = to + (2 * C + c) * S;
            const size_t e = c * w;
FLOW_IVDEP
            for (size_t j = 0; j < w; ++j) {
                const float r = t[e + j] * inv_sum[j];
                dl[j] = g[j] * (r - wexp[e + j] * inv_wsum[j]);
                dm[j] = g[j] * r * ui[e + j];
                ds[j] = g[j] * r * (uu[e + j] - 1.0f);
                dzj[j] -= r * ui[e + j];
            }
        }
        for (size_t j = 0; j < w; ++j) dz[i * D + d0 + j] = g[j] * dzj[j];
        if (rows > 1)
            for (size_t r = 0; r < rows; ++r) {
                float *dr = dh + (i + r) * 3 * C * D;
                for (size_t b = 0; b < 3 * C; ++b) copy_floats(dpack + b * w + r * D, D, dr + b * D);
            }
    });
}

// --- gather / scatter ----------------------------------------------------------

ColumnRun column_run(const int32_t *cols, size_t n) {
    if (!cols) return {0, 1};
    if (n < 2) return {n ? size_t(cols[0]) : 0, 1};
    const int32_t step = cols[1] - cols[0];
    if (step != 1 && step != 2 && step != -1) return {0, 0};
    for (size_t j = 2; j < n; ++j)
        if (cols[j] - cols[j - 1] != step) return {0, 0};
    return {size_t(cols[0]), step};
}

namespace {

// Every other float, 8 at a time, spelled out: left to the vectorizer, the
// strided stores of the scatters became AVX-512 scatter instructions, which
// Zen 4 runs element by element. Windows of 16 floats start at even
// offsets of the row and end inside it, so no thread touches another's
// row; the floats of the other parity are put back as they were (a blend,
// not + 0, which would turn -0 into +0).
typedef float Vec8 __attribute__((vector_size(32), aligned(alignof(float)), may_alias));
typedef int Index8 __attribute__((vector_size(32)));

// y[j] = row[first + 2 j] (first 0 or 1) for the j whose 16-float window
// fits the row's `cols`; returns how many, from 0.
FLOW_INLINE size_t gather_alternate(const float *row, size_t cols, size_t first, float *y,
                                    size_t n) {
    const Index8 pick = first ? Index8{1, 3, 5, 7, 9, 11, 13, 15} : Index8{0, 2, 4, 6, 8, 10, 12, 14};
    size_t j = 0;
    for (; j + 8 <= n && 2 * j + 16 <= cols; j += 8) {
        const Vec8 a = *reinterpret_cast<const Vec8 *>(row + 2 * j);
        const Vec8 b = *reinterpret_cast<const Vec8 *>(row + 2 * j + 8);
        *reinterpret_cast<Vec8 *>(y + j) = __builtin_shuffle(a, b, pick);
    }
    return j;
}

// row[first + 2 j] = x[j] (+= when accumulate) for the j whose window fits
// the row's `cols`; returns how many, from 0.
FLOW_INLINE size_t scatter_alternate(const float *x, size_t n, float *row, size_t cols,
                                     size_t first, bool accumulate) {
    const Index8 spread_lo = {0, 0, 1, 1, 2, 2, 3, 3}, spread_hi = {4, 4, 5, 5, 6, 6, 7, 7};
    // The new floats at first's parity, the row's own at the other.
    const Index8 blend = first ? Index8{8, 1, 10, 3, 12, 5, 14, 7} : Index8{0, 9, 2, 11, 4, 13, 6, 15};
    size_t j = 0;
    for (; j + 8 <= n && 2 * j + 16 <= cols; j += 8) {
        const Vec8 v = *reinterpret_cast<const Vec8 *>(x + j);
        Vec8 *lo = reinterpret_cast<Vec8 *>(row + 2 * j), *hi = lo + 1;
        Vec8 new_lo = __builtin_shuffle(v, spread_lo), new_hi = __builtin_shuffle(v, spread_hi);
        if (accumulate) {
            new_lo += *lo;
            new_hi += *hi;
        }
        *lo = __builtin_shuffle(new_lo, *lo, blend);
        *hi = __builtin_shuffle(new_hi, *hi, blend);
    }
    return j;
}

} // namespace

FLOW_CLONES
void gather_rows(const float *x, size_t x_cols, const int32_t *rows, const int32_t *cols,
                 float *y, size_t y_cols, size_t r0, size_t r1) {
    const ColumnRun run = column_run(cols, y_cols);
    if (!rows && run.step == 2 && run.first < 2 && x_cols == 2 * y_cols && r1 > r0) {
        // Every column of one parity of consecutive rows: the block is one
        // long row (a whole D = 8 row is no window).
        const float *__restrict xs = x + r0 * x_cols;
        float *__restrict ys = y + r0 * y_cols;
        const size_t count = (r1 - r0) * y_cols;
        for (size_t j = gather_alternate(xs, 2 * count, run.first, ys, count); j < count; ++j)
            ys[j] = xs[run.first + 2 * j];
        return;
    }
    const bool windows = run.step == 2 && run.first < 2 && y_cols >= 8 && x_cols >= 16;
    for (size_t i = r0; i < r1; ++i) {
        const float *__restrict xi = x + (rows ? size_t(rows[i]) : i) * x_cols;
        float *__restrict yi = y + i * y_cols;
        if (run.step == 1) {
            std::memcpy(yi, xi + run.first, y_cols * sizeof(float));
        } else if (windows) {
            const float *__restrict from = xi + run.first;
            for (size_t j = gather_alternate(xi, x_cols, run.first, yi, y_cols); j < y_cols; ++j)
                yi[j] = from[2 * j];
        } else if (run.step == 2) {
            const float *__restrict from = xi + run.first;
            FLOW_IVDEP
            for (size_t j = 0; j < y_cols; ++j) yi[j] = from[2 * j];
        } else if (run.step == -1) {
            const float *__restrict from = xi + run.first;
            FLOW_IVDEP
            for (size_t j = 0; j < y_cols; ++j) yi[j] = *(from - j);
        } else {
            FLOW_IVDEP
            for (size_t j = 0; j < y_cols; ++j) yi[j] = xi[cols[j]];
        }
    }
}

FLOW_CLONES
void scatter_rows(const float *x, size_t x_cols, size_t width, const int32_t *rows,
                  const int32_t *cols, float *y, size_t y_cols, bool accumulate, size_t r0,
                  size_t r1) {
    const ColumnRun run = column_run(cols, width);
    if (!rows && run.step == 2 && run.first < 2 && y_cols == 2 * width && x_cols == width &&
        r1 > r0) { // one long row, as in gather_rows
        const float *__restrict xs = x + r0 * x_cols;
        float *__restrict ys = y + r0 * y_cols;
        const size_t count = (r1 - r0) * width;
        float *__restrict to = ys + run.first;
        for (size_t j = scatter_alternate(xs, count, ys, 2 * count, run.first, accumulate);
             j < count; ++j)
            to[2 * j] = accumulate ? to[2 * j] + xs[j] : xs[j];
        return;
    }
    const bool windows = run.step == 2 && run.first < 2 && width >= 8 && y_cols >= 16;
    for (size_t i = r0; i < r1; ++i) {
        const float *__restrict xi = x + i * x_cols;
        float *__restrict yi = y + (rows ? size_t(rows[i]) : i) * y_cols;
        float *__restrict to = yi + run.first;
        if (run.step == 1 && !accumulate) {
            std::memcpy(to, xi, width * sizeof(float));
        } else if (run.step == 1) {
            FLOW_IVDEP
            for (size_t j = 0; j < width; ++j) to[j] += xi[j];
        } else if (windows) {
            for (size_t j = scatter_alternate(xi, width, yi, y_cols, run.first, accumulate);
                 j < width; ++j)
                to[2 * j] = accumulate ? to[2 * j] + xi[j] : xi[j];
        } else if (run.step == 2 && accumulate) {
            FLOW_IVDEP
            for (size_t j = 0; j < width; ++j) to[2 * j] += xi[j];
        } else if (run.step == 2) {
            FLOW_IVDEP
            for (size_t j = 0; j < width; ++j) to[2 * j] = xi[j];
        } else if (run.step == -1 && accumulate) {
            FLOW_IVDEP
            for (size_t j = 0; j < width; ++j) *(to - j) += xi[j];
        } else if (run.step == -1) {
            FLOW_IVDEP
            for (size_t j = 0; j < width; ++j) *(to - j) = xi[j];
        } else if (accumulate) {
            FLOW_IVDEP
            for (size_t j = 0; j < width; ++j) yi[cols[j]] += xi[j];
        } else {
            FLOW_IVDEP
            for (size_t j = 0; j < width; ++j) yi[cols[j]] = xi[j];
        }
    }
}

// --- reductions ---------------------------------------------------------------

// W columns whose sums stay in registers down all the rows: summed in acc
// itself, every row's adds would wait for the previous row's stores. Each
// column still adds its rows in order.
template <size_t W>
FLOW_INLINE void column_sums_block(const float *x, double *acc, size_t cols, size_t r0,
                                   size_t r1) {
    double sums[W];
    for (size_t j = 0; j < W; ++j) sums[j] = acc[j];
    for (size_t i = r0; i < r1; ++i)
        for (size_t j = 0; j < W; ++j) sums[j] += double(x[i * cols + j]);
    for (size_t j = 0; j < W; ++j) acc[j] = sums[j];
}

FLOW_CLONES
void column_sums_rows(const float *x, double *acc, size_t cols, size_t r0, size_t r1) {
    size_t j = 0;
    for (; j + 32 <= cols; j += 32) column_sums_block<32>(x + j, acc + j, cols, r0, r1);
    for (; j + 8 <= cols; j += 8) column_sums_block<8>(x + j, acc + j, cols, r0, r1);
    for (; j < cols; ++j) column_sums_block<1>(x + j, acc + j, cols, r0, r1);
}

FLOW_CLONES
bool all_finite_range(const float *x, size_t n) {
    // x * 0 is 0 for finite x and NaN for inf or NaN; 16 independent lanes
    // keep the loop vectorized without reassociating anything.
    float lanes[16] = {};
    size_t k = 0;
    for (; k + 16 <= n; k += 16)
        for (size_t l = 0; l < 16; ++l) lanes[l] += x[k + l] * 0.0f;
    float rest = 0.0f;
    for (; k < n; ++k) rest += x[k] * 0.0f;
    for (size_t l = 0; l < 16; ++l) rest += lanes[l];
    return rest == 0.0f;
}

} // namespace flow::cpu_kernels
