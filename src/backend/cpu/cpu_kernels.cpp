// Hot loops of the CPU backend, one clone per instruction set (see
// cpu_kernels.h). `ivdep` marks loops whose outputs never overlap their
// inputs at another index (the Backend contract), sparing GCC the run-time
// alias checks it would otherwise give up on. The loops are written so that GCC vectorizes them: no
// calls into libm inside (exp and tanh are inlined polynomials below), no
// floating-point reductions across the vectorized index (per-row sums go
// through a small buffer and are added in double, in a fixed order).
#include "backend/cpu/cpu_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

// Neither changes a result: sqrt never sees a negative number here (Adam's
// v >= 0), and nothing reads floating-point exception flags. Without them GCC
// keeps the selects and float->int conversions of exp/tanh out of vectors.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("-fno-math-errno", "-fno-trapping-math")
#define FLOW_IVDEP _Pragma("GCC ivdep")
#else
#define FLOW_IVDEP
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(FLOWLIB_NO_CLONES) && !defined(__SANITIZE_ADDRESS__)
#define FLOW_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FLOW_CLONES
#endif
#define FLOW_INLINE inline __attribute__((always_inline))

namespace flow::cpu_kernels {

namespace {

constexpr float kLeakySlope = 0.01f; // PyTorch's default negative_slope
constexpr size_t kRowBuffer = 1024;  // per-row scratch; wider rows go in pieces

FLOW_INLINE float bits_to_float(int32_t i) {
    float f;
    std::memcpy(&f, &i, sizeof f);
    return f;
}

// exp(x) for float: Cephes' expf polynomial after a reduction by ln 2, about
// 1 ulp. Inputs are clamped to [-87.3, 88.3] (results from ~1.2e-38 to
// ~2.1e38, never denormal or infinite); NaN stays NaN.
FLOW_INLINE float fexp(float x) {
    const float lo = -87.3f, hi = 88.3f;
    const bool nan = x != x;
    const float in = x;
    x = nan ? 0.0f : x;
    x = x < lo ? lo : x;
    x = x > hi ? hi : x;
    // Round x / ln 2 to the nearest integer with the 1.5 * 2^23 trick.
    const float magic = 12582912.0f;
    const float fn = (x * 1.44269504088896341f + magic) - magic;
    const float r = (x - fn * 0.693359375f) - fn * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    const float e = p * bits_to_float(int32_t(uint32_t(int32_t(fn) + 127) << 23));
    return nan ? in : e;
}

// tanh(x): Cephes' tanhf polynomial for |x| < 0.625, 1 - 2 / (e^2|x| + 1)
// beyond, the sign put back. A few ulp; +-1 for large |x|; NaN stays NaN.
FLOW_INLINE float ftanh(float x) {
    const float a = __builtin_fabsf(x);
    const float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    const float small = p * z * x + x;
    const float big = 1.0f - 2.0f / (fexp(2.0f * a) + 1.0f);
    const float signed_big = x < 0.0f ? -big : big;
    return a < 0.625f ? small : signed_big;
}

// sqrt(v) for v >= 0 (0 gives 0): the classic reciprocal square root guess
// and three Newton steps, a few ulp. GCC will not vectorize sqrtf itself
// while errno is on (libflowlib is built with the default -fmath-errno).
FLOW_INLINE float fsqrt(float v) {
    int32_t i;
    std::memcpy(&i, &v, sizeof i);
    float y = bits_to_float(0x5f375a86 - (i >> 1));
    const float half = 0.5f * v;
    y = y * (1.5f - half * y * y);
    y = y * (1.5f - half * y * y);
    y = y * (1.5f - half * y * y);
    return v * y;
}

// log(1 + e) for e in [0, 1]: Cephes' logf polynomial on u = 1 + e (in
// [1, 2]) plus the rounding of 1 + e put back, (e - (u - 1)) / u. ~1 ulp.
FLOW_INLINE float flog1p_unit(float e) {
    const float u = 1.0f + e;
    const float c = (e - (u - 1.0f)) / u;
    const bool big = u > 1.41421356f;
    const float m = big ? 0.5f * u : u;
    const float ef = big ? 1.0f : 0.0f;
    const float x = m - 1.0f, z = x * x;
    float y = 7.0376836292e-2f;
    y = y * x - 1.1514610310e-1f;
    y = y * x + 1.1676998740e-1f;
    y = y * x - 1.2420140846e-1f;
    y = y * x + 1.4249322787e-1f;
    y = y * x - 1.6668057665e-1f;
    y = y * x + 2.0000714765e-1f;
    y = y * x - 2.4999993993e-1f;
    y = y * x + 3.3333331174e-1f;
    y = y * x * z;
    y += ef * -2.12194440e-4f;
    y += -0.5f * z;
    return (x + y) + ef * 0.693359375f + c;
}

// sum of term(j) (a double) over j in [0, w), in kSumLanes interleaved
// partial sums added in order at the end: one long dependency chain of
// double adds would cost more than the exp and tanh of the row. The order is
// fixed, so every clone gets the same result.
constexpr size_t kSumLanes = 8;
template <class Term> FLOW_INLINE double sum_in_lanes(size_t w, Term term) {
    double lanes[kSumLanes] = {};
    size_t j = 0;
    for (; j + kSumLanes <= w; j += kSumLanes)
        for (size_t l = 0; l < kSumLanes; ++l) lanes[l] += term(j + l);
    for (size_t l = 0; j < w; ++j, ++l) lanes[l] += term(j);
    double total = 0.0;
    for (size_t l = 0; l < kSumLanes; ++l) total += lanes[l];
    return total;
}

// log(1 + e^x) and the logistic sigmoid, stable at both ends.
FLOW_INLINE float fsoftplus(float x) {
    return std::max(x, 0.0f) + std::log1p(fexp(-__builtin_fabsf(x)));
}

FLOW_INLINE float fsigmoid(float x) {
    const float e = fexp(-__builtin_fabsf(x));
    const float s = 1.0f / (1.0f + e);
    return x >= 0.0f ? s : e * s;
}

} // namespace

float exp_approx(float x) { return fexp(x); }
float sqrt_approx(float x) { return fsqrt(x); }
float log1p_unit_approx(float e) { return flog1p_unit(e); }
float tanh_approx(float x) { return ftanh(x); }

// --- affine coupling --------------------------------------------------------

FLOW_CLONES
void affine_coupling_rows(const float *in, const float *mask, const float *h,
                          const float *scale, float *out, float *logdet, size_t D, size_t r0,
                          size_t r1, bool inverse) {
    float s_buf[kRowBuffer];
    const float sign = inverse ? -1.0f : 1.0f;
    for (size_t i = r0; i < r1; ++i) {
        const float *xi = in + i * D, *raw = h + i * 2 * D, *shift = raw + D;
        float *oi = out + i * D;
        double ld = 0.0;
        for (size_t j0 = 0; j0 < D; j0 += kRowBuffer) {
            const size_t w = std::min(kRowBuffer, D - j0);
            const float *m = mask + j0, *sc = scale + j0, *xr = xi + j0, *rr = raw + j0,
                        *tr = shift + j0;
            float *orow = oi + j0;
            if (!inverse) {
                FLOW_IVDEP
                for (size_t j = 0; j < w; ++j) {
                    const float free = 1.0f - m[j];
                    const float s = free * sc[j] * ftanh(rr[j]);
                    orow[j] = m[j] * xr[j] + free * (xr[j] * fexp(s) + tr[j]);
                    s_buf[j] = s;
                }
            } else {
                FLOW_IVDEP
                for (size_t j = 0; j < w; ++j) {
                    const float free = 1.0f - m[j];
                    const float s = free * sc[j] * ftanh(rr[j]);
                    orow[j] = m[j] * xr[j] + free * (xr[j] - tr[j]) * fexp(-s);
                    s_buf[j] = s;
                }
            }
            ld += sum_in_lanes(w, [&](size_t j) { return double(s_buf[j]); });
        }
        logdet[i] = float(logdet[i] + sign * ld);
    }
}

FLOW_CLONES
void affine_coupling_backward_rows(const float *x, const float *mask, const float *h,
                                   const float *scale, const float *dz, const float *dlogdet,
                                   float *dx, float *dh, double *acc, size_t D, size_t r0,
                                   size_t r1) {
    float c_buf[kRowBuffer];
    for (size_t i = r0; i < r1; ++i) {
        const float dl = dlogdet[i];
        for (size_t j0 = 0; j0 < D; j0 += kRowBuffer) {
            const size_t w = std::min(kRowBuffer, D - j0);
            const float *__restrict xi = x + i * D + j0, *__restrict raw = h + i * 2 * D + j0;
            const float *__restrict dzi = dz + i * D + j0, *__restrict m = mask + j0;
            const float *__restrict sc = scale + j0;
            float *__restrict dxi = dx + i * D + j0, *__restrict dhs = dh + i * 2 * D + j0;
            float *__restrict dht = dh + i * 2 * D + D + j0;
            FLOW_IVDEP
            for (size_t j = 0; j < w; ++j) {
                const float free = 1.0f - m[j];
                const float th = ftanh(raw[j]);
                const float s = free * sc[j] * th;
                const float e = fexp(s);
                dxi[j] = dzi[j] * (m[j] + free * e);
                // dL/ds: through z = x e^s + t and through logdet += s.
                const float ds = dzi[j] * free * xi[j] * e + dl;
                dhs[j] = ds * free * sc[j] * (1.0f - th * th);
                dht[j] = dzi[j] * free;
                c_buf[j] = ds * free * th;
            }
            double *a = acc + j0;
            FLOW_IVDEP
            for (size_t j = 0; j < w; ++j) a[j] += double(c_buf[j]);
        }
    }
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
    switch (act) {
    case Activation::relu:
        bias_act_loop(x, bias, pre, y, cols, r0, r1, [](float v) { return v > 0.0f ? v : 0.0f; });
        break;
    case Activation::leaky_relu:
        bias_act_loop(x, bias, pre, y, cols, r0, r1,
                      [](float v) { return v > 0.0f ? v : kLeakySlope * v; });
        break;
    case Activation::elu:
        bias_act_loop(x, bias, pre, y, cols, r0, r1,
                      [](float v) { return v > 0.0f ? v : std::expm1(v); });
        break;
    case Activation::tanh:
        bias_act_loop(x, bias, pre, y, cols, r0, r1, [](float v) { return ftanh(v); });
        break;
    case Activation::softplus:
        bias_act_loop(x, bias, pre, y, cols, r0, r1, [](float v) { return fsoftplus(v); });
        break;
    }
}

FLOW_CLONES
void activation_backward_rows(Activation act, const float *x, const float *y, const float *dy,
                              float *dx, double *acc, size_t cols, size_t r0, size_t r1) {
    switch (act) {
    case Activation::relu:
        act_backward_loop(x, y, dy, dx, acc, cols, r0, r1,
                          [](float v, float) { return v > 0.0f ? 1.0f : 0.0f; });
        break;
    case Activation::leaky_relu:
        act_backward_loop(x, y, dy, dx, acc, cols, r0, r1,
                          [](float v, float) { return v > 0.0f ? 1.0f : kLeakySlope; });
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
                          [](float v, float) { return fsigmoid(v); });
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
        p[k] = p[k] * decay - step_size * mk / (fsqrt(vk) / bias2_sqrt + eps);
    }
}

// --- logistic base distribution -----------------------------------------------

FLOW_CLONES
void logistic_log_prob_rows(const float *z, float *out, size_t D, size_t r0, size_t r1) {
    float l_buf[kRowBuffer];
    for (size_t i = r0; i < r1; ++i) {
        double lp = 0.0;
        for (size_t j0 = 0; j0 < D; j0 += kRowBuffer) {
            const size_t w = std::min(kRowBuffer, D - j0);
            const float *zi = z + i * D + j0;
            // log Logistic(z) = -|z| - 2 log(1 + e^-|z|)
FLOW_IVDEP
            for (size_t j = 0; j < w; ++j) l_buf[j] = flog1p_unit(fexp(-__builtin_fabsf(zi[j])));
            lp += sum_in_lanes(w, [&](size_t j) {
                return -double(__builtin_fabsf(zi[j])) - 2.0 * double(l_buf[j]);
            });
        }
        out[i] = float(lp);
    }
}

FLOW_CLONES
void logistic_log_prob_backward_rows(const float *z, const float *dlogp, float *dz, size_t D,
                                     size_t r0, size_t r1) {
    for (size_t i = r0; i < r1; ++i) {
        const float g = dlogp[i];
        const float *zi = z + i * D;
        float *di = dz + i * D;
        // d/dz log Logistic(z) = 1 - 2 sigmoid(z) = -tanh(z / 2)
FLOW_IVDEP
        for (size_t j = 0; j < D; ++j) di[j] = -g * ftanh(0.5f * zi[j]);
    }
}

// --- reductions ---------------------------------------------------------------

// --- gather / scatter ----------------------------------------------------------

FLOW_CLONES
void gather_rows(const float *x, size_t x_cols, const int32_t *rows, const int32_t *cols,
                 float *y, size_t y_cols, size_t r0, size_t r1) {
    for (size_t i = r0; i < r1; ++i) {
        const float *__restrict xi = x + (rows ? size_t(rows[i]) : i) * x_cols;
        float *__restrict yi = y + i * y_cols;
        if (!cols) {
            std::memcpy(yi, xi, y_cols * sizeof(float));
            continue;
        }
        FLOW_IVDEP
        for (size_t j = 0; j < y_cols; ++j) yi[j] = xi[cols[j]];
    }
}

FLOW_CLONES
void scatter_rows(const float *x, size_t x_cols, size_t width, const int32_t *rows,
                  const int32_t *cols, float *y, size_t y_cols, bool accumulate, size_t r0,
                  size_t r1) {
    for (size_t i = r0; i < r1; ++i) {
        const float *__restrict xi = x + i * x_cols;
        float *__restrict yi = y + (rows ? size_t(rows[i]) : i) * y_cols;
        if (!cols && !accumulate) {
            std::memcpy(yi, xi, width * sizeof(float));
        } else if (!cols) {
            FLOW_IVDEP
            for (size_t j = 0; j < width; ++j) yi[j] += xi[j];
        } else if (accumulate) {
            FLOW_IVDEP
            for (size_t j = 0; j < width; ++j) yi[cols[j]] += xi[j];
        } else {
            FLOW_IVDEP
            for (size_t j = 0; j < width; ++j) yi[cols[j]] = xi[j];
        }
    }
}

FLOW_CLONES
void column_sums_rows(const float *x, double *acc, size_t cols, size_t r0, size_t r1) {
    for (size_t i = r0; i < r1; ++i) {
        const float *xi = x + i * cols;
FLOW_IVDEP
        for (size_t j = 0; j < cols; ++j) acc[j] += double(xi[j]);
    }
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
