// The CPU backend's hot inner loops, compiled several times for different
// instruction sets (AVX-512, AVX2+FMA, baseline x86-64) and picked at load
// time by the dynamic loader (GCC target_clones / ifunc). The library itself
// is built for plain x86-64, so it runs everywhere and is fast where it is
// installed, not only where it was built.
//
// Each kernel works on a range of rows [r0, r1) so the caller can spread rows
// over OpenMP threads; none of them starts threads itself. Per-column sums
// are accumulated into `acc` in double, in row order, so results do not
// depend on how rows are split as long as the caller's blocks are fixed.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/backend.h"

namespace flow::cpu_kernels {

// Affine coupling on the free columns (see Backend::affine_coupling_forward/
// inverse): rows [r0, r1) of in [n, F], h [n, 2F];
// logdet[i] += sign * sum_j s (sign +1 forward, -1 inverse).
void affine_coupling_rows(const float *in, const float *h, const float *scale, float *out,
                          float *logdet, size_t F, size_t r0, size_t r1, bool inverse);
// Affine coupling backward on rows [r0, r1); acc[j] += d(loss)/d(scale[j]).
void affine_coupling_backward_rows(const float *x, const float *h, const float *scale,
                                   const float *dz, const float *dlogdet, float *dx, float *dh,
                                   double *acc, size_t F, size_t r0, size_t r1);

// The Gaussian autoregressive layer of Backend::made_affine_* on rows [r0,
// r1), h [n, 2D] = [mu, alpha]. Forward: z = (x - mu) exp(-alpha), logdet -=
// sum alpha. Inverse: x = z exp(alpha) + mu (only column `column` when it is
// >= 0), logdet (nullable) += sum alpha. Backward: dx = dz exp(-alpha), dh =
// [-dz exp(-alpha), -dz z - dlogdet] (dlogdet nullable).
void made_affine_forward_rows(const float *x, const float *h, float *z, float *logdet, size_t D,
                              size_t r0, size_t r1);
void made_affine_inverse_rows(const float *z, const float *h, float *x, float *logdet,
                              long column, size_t D, size_t r0, size_t r1);
void made_affine_backward_rows(const float *x, const float *h, const float *dz,
                               const float *dlogdet, float *dx, float *dh, size_t D, size_t r0,
                               size_t r1);

// y = act(x + bias) over rows [r0, r1) of [n, cols]; pre (nullable) receives x + bias.
// x and pre may alias.
void bias_activation_rows(Activation act, const float *x, const float *bias, float *pre,
                          float *y, size_t cols, size_t r0, size_t r1);
// dx = dy * act'(x) given x and y = act(x), over rows [r0, r1); when acc is
// non-null, acc[j] += sum of dx[:, j] over these rows. dx may alias dy.
void activation_backward_rows(Activation act, const float *x, const float *y, const float *dy,
                              float *dx, double *acc, size_t cols, size_t r0, size_t r1);

// Adam over elements [k0, k1) (see Backend::adam_update for the formula).
void adam_range(float *p, const float *g, float *m, float *v, float beta1, float beta2,
                float eps, float l2, float decay, float step_size, float bias2_sqrt, size_t k0,
                size_t k1);

// out[i] = sum_j log Logistic(z[i, j]) over rows [r0, r1) of [n, D] (summed in double).
void logistic_log_prob_rows(const float *z, float *out, size_t D, size_t r0, size_t r1);
// out[i] = sum_j log N(z[i, j]; 0, 1), in double, for rows [r0, r1).
void normal_log_prob_rows(const float *z, float *out, size_t D, size_t r0, size_t r1);
// dz[i, j] = dlogp[i] * d/dz log Logistic(z[i, j]) over rows [r0, r1).
void logistic_log_prob_backward_rows(const float *z, const float *dlogp, float *dz, size_t D,
                                     size_t r0, size_t r1);

// Rows [r0, r1) of the MADE MoG base's log-density (Backend::made_mog_log_prob:
// h [n, 3 C D] its MADE's outputs, z [n, D]) and of its backward pass (dz
// [n, D], dh like h), in float with polynomial exp and log, a vector of
// dimensions at a time; each row's dimensions are added in double. The
// backward pass also writes the log-density when out is non-null.
void made_mog_log_prob_rows(const float *z, const float *h, float *out, size_t C, size_t D,
                            size_t r0, size_t r1);
void made_mog_log_prob_backward_rows(const float *z, const float *h, const float *dlogp,
                                     float *dz, float *dh, float *out, size_t C, size_t D,
                                     size_t r0, size_t r1);

// A column index list as (first, step) when it is first, first + step, ...
// with step 1, 2 or -1: the coupling masks "half" and "alternate", and the
// reversed order of every other MAF or IAF layer, whose gathers then run as
// copies, strided or reversed loops instead of gather instructions, and
// whose products read such columns in place. step 0: any other list. No
// list (the identity) is (0, 1).
struct ColumnRun {
    size_t first;
    int step;
};
ColumnRun column_run(const int32_t *cols, size_t n);

// Row i in [r0, r1) of Backend::gather: y[i, j] = x[rows[i], cols[j]] for
// j < y_cols (rows, cols nullable = the identity). Column lists that step
// by 1 or 2 run as copies or strided loops, others as gather loads.
void gather_rows(const float *x, size_t x_cols, const int32_t *rows, const int32_t *cols,
                 float *y, size_t y_cols, size_t r0, size_t r1);
// Row i in [r0, r1) of Backend::scatter: y[rows[i], cols[j]] (+)= x[i, j] for
// j < width (indices distinct; steps of 1 or 2 as for gather_rows).
void scatter_rows(const float *x, size_t x_cols, size_t width, const int32_t *rows,
                  const int32_t *cols, float *y, size_t y_cols, bool accumulate, size_t r0,
                  size_t r1);

// Elements [k0, k1) of Backend::fill_normal: out[k] = stddev * normal k % 4
// of Philox block k / 4 (philox_normal4), for any k0 and k1.
void normal_range(uint64_t seed, uint64_t stream, float stddev, float *out, size_t k0,
                  size_t k1);
// Elements [k0, k1) of Backend::fill_logistic: out[k] = scale * draw k % 4 of
// Philox block k / 4 (philox_logistic4).
void logistic_range(uint64_t seed, uint64_t stream, float scale, float *out, size_t k0,
                    size_t k1);

// acc[j] += sum of x[i, j] over rows [r0, r1) of [n, cols], in row order.
void column_sums_rows(const float *x, double *acc, size_t cols, size_t r0, size_t r1);
// Whether x[0..n) holds no inf or NaN.
bool all_finite_range(const float *x, size_t n);

// Vectorizable float exp, tanh and sqrt used by the kernels (exposed for tests).
float exp_approx(float x);
float tanh_approx(float x);
float sqrt_approx(float x);
float log1p_unit_approx(float e); // log(1 + e), e in [0, 1]

} // namespace flow::cpu_kernels
