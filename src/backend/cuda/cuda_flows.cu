// Flow-layer kernels of the CUDA backend: couplings, diagonal scaling, batch
// norm, preprocessing, base densities, random numbers and optimizers. Each op
// computes what its CPU twin (cpu/cpu_backend.cpp, cpu/cpu_kernels.cpp) does,
// with the same clamps, Philox counters and double accumulations, using the
// real expf/tanhf where the CPU uses its polynomial approximations.
#include <cmath>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_launch.h"
#include "backend/philox.h"

namespace flow {

namespace {

// logit keeps y this far inside (0, 1), as the CPU does (kLogitEps there).
constexpr double kLogitEps = 1e-12;
constexpr double kLogTwoPi = 1.8378770664093454835606594728112; // log(2 pi)

// --- scalar math --------------------------------------------------------------

FLOW_HD double sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    const double e = exp(x);
    return e / (1.0 + e);
}

// log Logistic(z; 0, 1) = -z - 2 log(1 + e^-z), symmetric in z.
FLOW_HD double logistic_log_density(double z) {
    const double a = fabs(z);
    return -a - 2.0 * log1p(exp(-a));
}

// The logit's y = alpha + (1 - 2 alpha) x, clamped into (0, 1).
FLOW_HD double logit_y(float x, float alpha) {
    const double y = alpha + (1.0 - 2.0 * alpha) * x;
    return y < kLogitEps ? kLogitEps : (y > 1.0 - kLogitEps ? 1.0 - kLogitEps : y);
}

// sum_j log_gamma[j] - 0.5 log(var[j] + eps): batch norm's per-row logdet.
FLOW_HD double batch_norm_logdet(const float *log_gamma, const float *var, float eps, size_t D) {
    double ld = 0.0;
    for (size_t j = 0; j < D; ++j) ld += log_gamma[j] - 0.5 * log((double)var[j] + eps);
    return ld;
}

FLOW_HD float batch_norm_inv_std(float var, float eps) { return 1.0f / sqrtf(var + eps); }

// t[k] = draw(Philox block of counter k).
template <class Draw>
void fill_random(Tensor &t, uint64_t seed, uint64_t stream, const char *op, Draw draw) {
    float *pt = op_f32(t, op);
    cuda_for_each(t.size(), [=] __device__(size_t k) {
        pt[k] = draw(philox4x32_10(seed, stream, k));
    });
}

} // namespace

// --- coupling layers ----------------------------------------------------------

// One thread per row: out and the row's logdet in double (sign +1 forward,
// -1 inverse).
static void affine_coupling(const Tensor &in, const Tensor &h, const Tensor &scale, Tensor &out,
                            Tensor &logdet, bool inverse, const char *op) {
    check_same_shape(in, out, op);
    const CouplingArgs a = coupling_args(in, h, scale, logdet, op);
    const float *pin = a.in, *ph = a.h, *psc = a.scale;
    float *pout = op_f32(out, op), *pld = op_f32(logdet, op);
    const size_t F = a.cols;
    cuda_for_each(a.rows, [=] __device__(size_t i) {
        const float *raw = ph + i * 2 * F, *shift = raw + F;
        double ld = 0.0;
        for (size_t j = 0; j < F; ++j) {
            const size_t k = i * F + j;
            const float s = psc[j] * tanhf(raw[j]);
            pout[k] = inverse ? (pin[k] - shift[j]) * expf(-s) : pin[k] * expf(s) + shift[j];
            ld += s;
        }
        pld[i] = (float)(pld[i] + (inverse ? -ld : ld));
    });
}

void CudaBackend::affine_coupling_forward(const Tensor &x, const Tensor &h, const Tensor &scale,
                                          Tensor &z, Tensor &logdet) {
    affine_coupling(x, h, scale, z, logdet, false, "affine_coupling_forward");
}

void CudaBackend::affine_coupling_inverse(const Tensor &z, const Tensor &h, const Tensor &scale,
                                          Tensor &x, Tensor &logdet) {
    affine_coupling(z, h, scale, x, logdet, true, "affine_coupling_inverse");
}

void CudaBackend::affine_coupling_backward(const Tensor &x, const Tensor &h, const Tensor &scale,
                                           const Tensor &dz, const Tensor &dlogdet, Tensor &dx,
                                           Tensor &dh, Tensor &dscale) {
    const CouplingBackwardArgs g = coupling_backward_args(x, h, scale, dz, dlogdet, dx, dh,
                                                          dscale, "affine_coupling_backward");
    const float *px = g.in.in, *ph = g.in.h, *psc = g.in.scale, *pdl = g.in.per_row;
    const float *pdz = g.dz;
    float *pdx = g.dx, *pdh = g.dh, *pdscale = g.dscale;
    const size_t F = g.in.cols;
    // The reduction visits every (i, j) once, so its term also writes dx and dh.
    cuda_column_reduce(
        g.in.rows, F,
        [=] __device__(size_t i, size_t j) -> double {
            const size_t k = i * F + j;
            const float th = tanhf(ph[i * 2 * F + j]);
            const float e = expf(psc[j] * th);
            pdx[k] = pdz[k] * e;
            // dL/ds: through z = x e^s + t and through logdet += s.
            const float ds = pdz[k] * px[k] * e + pdl[i];
            pdh[i * 2 * F + j] = ds * psc[j] * (1.0f - th * th);
            pdh[i * 2 * F + F + j] = pdz[k];
            return (double)(ds * th);
        },
        [=] __device__(size_t j, double total) { pdscale[j] = (float)(pdscale[j] + total); });
}

// --- diagonal scaling -----------------------------------------------------------

void CudaBackend::scale_exp(const Tensor &x, const Tensor &s, float sign, Tensor &y) {
    const char *op = "scale_exp";
    check_same_shape(x, y, op);
    check_row_vector(s, x, op);
    const float *px = op_f32(x, op), *ps = op_f32(s, op);
    float *py = op_f32(y, op);
    const size_t D = x.cols();
    cuda_for_each(x.size(), [=] __device__(size_t k) { py[k] = px[k] * expf(sign * ps[k % D]); });
}

void CudaBackend::scale_exp_backward(const Tensor &x, const Tensor &s, const Tensor &dz,
                                     const Tensor &dlogdet, Tensor &dx, Tensor &ds) {
    const ScaleExpBackwardArgs a =
        scale_exp_backward_args(x, s, dz, dlogdet, dx, ds, "scale_exp_backward");
    const float *px = a.x, *ps = a.s, *pdz = a.dz, *pdl = a.dlogdet;
    float *pdx = a.dx, *pds = a.ds;
    const size_t D = a.cols;
    // The term writes dx (every (i, j) is visited once) and adds dlogdet[i]
    // into each column: ds[j] += sum_i (dz y + dlogdet[i]).
    cuda_column_reduce(
        a.rows, D,
        [=] __device__(size_t i, size_t j) -> double {
            const size_t k = i * D + j;
            const float factor = expf(ps[j]);
            pdx[k] = pdz[k] * factor;
            return (double)pdz[k] * (px[k] * factor) + pdl[i];
        },
        [=] __device__(size_t j, double total) { pds[j] = (float)(pds[j] + total); });
}

// --- batch normalization ----------------------------------------------------------

void CudaBackend::batch_norm_stats(const Tensor &x, Tensor &mean, Tensor &var) {
    const char *op = "batch_norm_stats";
    check_row_vector(mean, x, op);
    check_row_vector(var, x, op);
    const size_t n = x.rows(), D = x.cols();
    op_check(n > 0, op, "empty batch");
    const float *px = op_f32(x, op);
    float *pmean = op_f32(mean, op), *pvar = op_f32(var, op);
    // Two passes: the one-pass E[x^2] - E[x]^2 cancels badly for large means.
    // The second centers on the mean in double, as the CPU does.
    double *mu = static_cast<double *>(cuda_workspace(D * sizeof(double)));
    cuda_column_reduce(
        n, D, [=] __device__(size_t i, size_t j) -> double { return px[i * D + j]; },
        [=] __device__(size_t j, double total) {
            mu[j] = total / (double)n;
            pmean[j] = (float)mu[j];
        });
    cuda_column_reduce(
        n, D,
        [=] __device__(size_t i, size_t j) -> double {
            const double d = px[i * D + j] - mu[j];
            return d * d;
        },
        [=] __device__(size_t j, double total) { pvar[j] = (float)(total / (double)n); });
}

// Forward z = (x - mean) * gain + beta, logdet += ld, or inverse
// x = (z - beta) / gain + mean, logdet -= ld, with gain = exp(log_gamma) /
// sqrt(var + eps) and ld the batch-norm logdet (the same for every row,
// summed by each row's thread).
static void batch_norm_apply(const Tensor &in, const Tensor &mean, const Tensor &var,
                             const Tensor &log_gamma, const Tensor &beta, float eps,
                             Tensor &out, Tensor &logdet, bool inverse, const char *op) {
    const BatchNormArgs a = batch_norm_args(in, mean, var, log_gamma, beta, out, logdet, op);
    const float *pin = a.in, *pmean = a.mean, *pvar = a.var;
    const float *plg = a.log_gamma, *pbeta = a.beta;
    float *pout = a.out, *pld = a.logdet;
    const size_t D = a.cols;
    cuda_for_each(a.rows * D, [=] __device__(size_t k) {
        const size_t j = k % D;
        const float gain = expf(plg[j]) * batch_norm_inv_std(pvar[j], eps);
        pout[k] = inverse ? (pin[k] - pbeta[j]) / gain + pmean[j]
                          : (pin[k] - pmean[j]) * gain + pbeta[j];
    });
    cuda_for_each(a.rows, [=] __device__(size_t i) {
        const double ld = batch_norm_logdet(plg, pvar, eps, D);
        pld[i] = (float)(pld[i] + (inverse ? -ld : ld));
    });
}

void CudaBackend::batch_norm_forward(const Tensor &x, const Tensor &mean, const Tensor &var,
                                     const Tensor &log_gamma, const Tensor &beta, float eps,
                                     Tensor &z, Tensor &logdet) {
    batch_norm_apply(x, mean, var, log_gamma, beta, eps, z, logdet, false, "batch_norm_forward");
}

void CudaBackend::batch_norm_inverse(const Tensor &z, const Tensor &mean, const Tensor &var,
                                     const Tensor &log_gamma, const Tensor &beta, float eps,
                                     Tensor &x, Tensor &logdet) {
    batch_norm_apply(z, mean, var, log_gamma, beta, eps, x, logdet, true, "batch_norm_inverse");
}

void CudaBackend::batch_norm_backward(const Tensor &x, const Tensor &mean, const Tensor &var,
                                      const Tensor &log_gamma, float eps, bool batch_stats,
                                      const Tensor &dz, const Tensor &dlogdet, Tensor &dx,
                                      Tensor &dlog_gamma, Tensor &dbeta) {
    const BatchNormBackwardArgs g = batch_norm_backward_args(
        x, mean, var, log_gamma, dz, dlogdet, dx, dlog_gamma, dbeta, "batch_norm_backward");
    const size_t n = g.rows, D = g.cols;
    const float *px = g.x, *pmean = g.mean, *pvar = g.var, *plg = g.log_gamma, *pdz = g.dz;
    const float *pdl = g.dlogdet;
    float *pdx = g.dx, *pdlg = g.dlog_gamma, *pdbeta = g.dbeta;
    // dx = a dz + b + c xhat per column, a = gamma / std. With batch
    // statistics, b and c are the gradient through the mean and variance: the
    // usual batch-norm terms plus the logdet's -0.5 log(var + eps), which
    // pulls on var as well. They come from the column sums of dz and of
    // gamma dz xhat + dlogdet[i] (the dlogdet total folded into each column).
    float *pb = static_cast<float *>(cuda_workspace(2 * D * sizeof(float))), *pc = pb + D;
    cuda_column_reduce(
        n, D, [=] __device__(size_t i, size_t j) -> double { return pdz[i * D + j]; },
        [=] __device__(size_t j, double sum_dz) {
            pdbeta[j] = (float)(pdbeta[j] + sum_dz);
            const float a = batch_norm_inv_std(pvar[j], eps) * expf(plg[j]);
            pb[j] = batch_stats ? (float)(-a * sum_dz / (double)n) : 0.0f;
        });
    cuda_column_reduce(
        n, D,
        [=] __device__(size_t i, size_t j) -> double {
            const float xhat = (px[i * D + j] - pmean[j]) * batch_norm_inv_std(pvar[j], eps);
            return (double)expf(plg[j]) * pdz[i * D + j] * xhat + pdl[i];
        },
        [=] __device__(size_t j, double pull) {
            pdlg[j] = (float)(pdlg[j] + pull);
            pc[j] = batch_stats ? (float)(-batch_norm_inv_std(pvar[j], eps) * pull / (double)n)
                                : 0.0f;
        });
    cuda_for_each(n * D, [=] __device__(size_t k) {
        const size_t j = k % D;
        const float inv_std = batch_norm_inv_std(pvar[j], eps);
        pdx[k] = inv_std * expf(plg[j]) * pdz[k] + pb[j] + pc[j] * ((px[k] - pmean[j]) * inv_std);
    });
}

void CudaBackend::batch_norm_update_running(const Tensor &mean, const Tensor &var,
                                            float momentum, size_t n, Tensor &running_mean,
                                            Tensor &running_var) {
    const char *op = "batch_norm_update_running";
    const size_t D = mean.size();
    op_check(var.size() == D && running_mean.size() == D && running_var.size() == D, op,
                 "size mismatch");
    const float *pm = op_f32(mean, op), *pv = op_f32(var, op);
    float *prm = op_f32(running_mean, op), *prv = op_f32(running_var, op);
    const double unbias = n > 1 ? (double)n / (double)(n - 1) : 1.0;
    cuda_for_each(D, [=] __device__(size_t j) {
        prm[j] = (1.0f - momentum) * prm[j] + momentum * pm[j];
        prv[j] = (1.0f - momentum) * prv[j] + momentum * (float)(pv[j] * unbias);
    });
}

// --- preprocessing ----------------------------------------------------------------

void CudaBackend::dequantize_forward(const Tensor &x, float levels, uint64_t seed,
                                     uint64_t stream, uint64_t first, Tensor &y) {
    const char *op = "dequantize_forward";
    op_check(x.size() == y.size(), op, "size mismatch");
    const float *px = op_f32(x, op);
    float *py = op_f32(y, op);
    cuda_for_each(x.size(), [=] __device__(size_t k) {
        const float u = philox_uniform(philox4x32_10(seed, stream, first + k).v[0]);
        py[k] = (px[k] + u) / levels;
    });
}

void CudaBackend::dequantize_inverse(const Tensor &y, float levels, Tensor &x) {
    const char *op = "dequantize_inverse";
    op_check(x.size() == y.size(), op, "size mismatch");
    const float *py = op_f32(y, op);
    float *px = op_f32(x, op);
    cuda_for_each(y.size(), [=] __device__(size_t k) {
        const float v = floorf(py[k] * levels), hi = levels - 1.0f;
        px[k] = v < 0.0f ? 0.0f : (v > hi ? hi : v); // std::clamp's order: NaN stays NaN
    });
}

void CudaBackend::logit_forward(const Tensor &x, float alpha, Tensor &z, Tensor &logdet) {
    const LogitArgs a = logit_args(x, z, logdet, "logit_forward");
    const float *px = a.in;
    float *pz = a.out, *pld = a.logdet;
    const size_t D = a.cols;
    const double log_range = log1p(-2.0 * alpha);
    cuda_for_each(a.rows, [=] __device__(size_t i) {
        double ld = 0.0;
        for (size_t j = 0; j < D; ++j) {
            const double y = logit_y(px[i * D + j], alpha);
            const double log_y = log(y), log_1my = log1p(-y);
            pz[i * D + j] = (float)(log_y - log_1my);
            ld += log_range - log_y - log_1my;
        }
        pld[i] = (float)(pld[i] + ld);
    });
}

void CudaBackend::logit_inverse(const Tensor &z, float alpha, Tensor &x, Tensor &logdet) {
    const LogitArgs a = logit_args(z, x, logdet, "logit_inverse");
    const float *pz = a.in;
    float *px = a.out, *pld = a.logdet;
    const size_t D = a.cols;
    const double log_range = log1p(-2.0 * alpha);
    cuda_for_each(a.rows, [=] __device__(size_t i) {
        double ld = 0.0;
        for (size_t j = 0; j < D; ++j) {
            const double v = pz[i * D + j];
            px[i * D + j] = (float)((sigmoid(v) - alpha) / (1.0 - 2.0 * alpha));
            // log|dx/dz| = log(sigmoid(v) (1 - sigmoid(v))) - log_range, and the
            // first term is the logistic log-density, stable for any v.
            ld += logistic_log_density(v) - log_range;
        }
        pld[i] = (float)(pld[i] + ld);
    });
}

void CudaBackend::logit_backward(const Tensor &x, float alpha, const Tensor &dz,
                                 const Tensor &dlogdet, Tensor &dx) {
    const LogitBackwardArgs a = logit_backward_args(x, dz, dlogdet, dx, "logit_backward");
    const float *px = a.x, *pdz = a.dz, *pdl = a.dlogdet;
    float *pdx = a.dx;
    const size_t D = a.cols;
    const double range = 1.0 - 2.0 * alpha;
    cuda_for_each(a.rows * D, [=] __device__(size_t k) {
        const double y = logit_y(px[k], alpha);
        // dz/dx = range / (y (1 - y)); dlogdet/dx = range (2y - 1) / (y (1 - y)).
        pdx[k] = (float)(range / (y * (1.0 - y)) * (pdz[k] + pdl[k / D] * (2.0 * y - 1.0)));
    });
}

// --- base distributions -------------------------------------------------------------

void CudaBackend::normal_log_prob(const Tensor &z, Tensor &out) {
    const char *op = "normal_log_prob";
    check_per_row(out, z, op);
    const float *pz = op_f32(z, op);
    float *po = op_f32(out, op);
    const size_t D = z.cols();
    cuda_for_each(z.rows(), [=] __device__(size_t i) {
        double lp = 0.0;
        for (size_t j = 0; j < D; ++j) {
            const double v = pz[i * D + j];
            lp += -0.5 * (v * v + kLogTwoPi);
        }
        po[i] = (float)lp;
    });
}

void CudaBackend::normal_log_prob_backward(const Tensor &z, const Tensor &dlogp, Tensor &dz) {
    const char *op = "normal_log_prob_backward";
    check_same_shape(z, dz, op);
    check_per_row(dlogp, z, op);
    const float *pz = op_f32(z, op), *pdl = op_f32(dlogp, op);
    float *pdz = op_f32(dz, op);
    const size_t D = z.cols();
    cuda_for_each(z.size(), [=] __device__(size_t k) { pdz[k] = pdl[k / D] * -pz[k]; });
}

void CudaBackend::logistic_log_prob(const Tensor &z, Tensor &out) {
    const char *op = "logistic_log_prob";
    check_per_row(out, z, op);
    const float *pz = op_f32(z, op);
    float *po = op_f32(out, op);
    const size_t D = z.cols();
    cuda_for_each(z.rows(), [=] __device__(size_t i) {
        double lp = 0.0;
        for (size_t j = 0; j < D; ++j) lp += logistic_log_density(pz[i * D + j]);
        po[i] = (float)lp;
    });
}

void CudaBackend::logistic_log_prob_backward(const Tensor &z, const Tensor &dlogp, Tensor &dz) {
    const char *op = "logistic_log_prob_backward";
    check_same_shape(z, dz, op);
    check_per_row(dlogp, z, op);
    const float *pz = op_f32(z, op), *pdl = op_f32(dlogp, op);
    float *pdz = op_f32(dz, op);
    const size_t D = z.cols();
    // d/dz log Logistic(z) = 1 - 2 sigmoid(z) = -tanh(z / 2)
    cuda_for_each(z.size(), [=] __device__(size_t k) {
        pdz[k] = -pdl[k / D] * tanhf(0.5f * pz[k]);
    });
}

// --- random numbers -------------------------------------------------------------------

// One thread per Philox block: its four normals are elements 4j .. 4j + 3.
void CudaBackend::fill_normal(Tensor &t, uint64_t seed, uint64_t stream, float stddev) {
    float *pt = op_f32(t, "fill_normal");
    const size_t n = t.size();
    cuda_for_each((n + 3) / 4, [=] __device__(size_t j) {
        const PhiloxNormals z = philox_normal4(philox4x32_10(seed, stream, j));
        for (size_t l = 0; l < 4 && 4 * j + l < n; ++l) pt[4 * j + l] = z.v[l] * stddev;
    });
}

// One thread per Philox block, as fill_normal.
void CudaBackend::fill_logistic(Tensor &t, uint64_t seed, uint64_t stream, float scale) {
    float *pt = op_f32(t, "fill_logistic");
    const size_t n = t.size();
    cuda_for_each((n + 3) / 4, [=] __device__(size_t j) {
        const PhiloxNormals z = philox_logistic4(philox4x32_10(seed, stream, j));
        for (size_t l = 0; l < 4 && 4 * j + l < n; ++l) pt[4 * j + l] = z.v[l] * scale;
    });
}

void CudaBackend::fill_uniform(Tensor &t, uint64_t seed, uint64_t stream, float lo, float hi) {
    fill_random(t, seed, stream, "fill_uniform", [=] __device__(PhiloxBlock b) {
        return lo + (hi - lo) * philox_uniform(b.v[0]);
    });
}

// --- optimizers -------------------------------------------------------------------------

void CudaBackend::adam_update(Tensor &param, const Tensor &grad, Tensor &m, Tensor &v,
                              float lr, float beta1, float beta2, float eps, float l2,
                              float decoupled_decay, uint64_t step) {
    const char *op = "adam_update";
    const size_t n = param.size();
    op_check(grad.size() == n && m.size() == n && v.size() == n, op, "size mismatch");
    op_check(step >= 1, op, "step counts from 1");
    float *pp = op_f32(param, op), *pm = op_f32(m, op), *pv = op_f32(v, op);
    const float *pg = op_f32(grad, op);
    // Scalars in double on the host, as the CPU (and PyTorch) computes them.
    const float step_size = (float)(lr / (1.0 - pow((double)beta1, (double)step)));
    const float bias2_sqrt = (float)sqrt(1.0 - pow((double)beta2, (double)step));
    const float decay = (float)(1.0 - (double)lr * decoupled_decay);
    cuda_for_each(n, [=] __device__(size_t k) {
        // The L2 term sees the parameter the gradient was taken at.
        const float g = pg[k] + l2 * pp[k];
        const float mk = beta1 * pm[k] + (1.0f - beta1) * g;
        const float vk = beta2 * pv[k] + (1.0f - beta2) * g * g;
        pm[k] = mk;
        pv[k] = vk;
        pp[k] = pp[k] * decay - step_size * mk / (sqrtf(vk) / bias2_sqrt + eps);
    });
}

void CudaBackend::sgd_update(Tensor &param, const Tensor &grad, Tensor &velocity, float lr,
                             float momentum, float l2, bool nesterov, bool first_step) {
    const char *op = "sgd_update";
    const size_t n = param.size();
    op_check(grad.size() == n && velocity.size() == n, op, "size mismatch");
    float *pp = op_f32(param, op), *pbuf = op_f32(velocity, op);
    const float *pg = op_f32(grad, op);
    cuda_for_each(n, [=] __device__(size_t k) {
        const float g = pg[k] + l2 * pp[k];
        pbuf[k] = first_step ? g : momentum * pbuf[k] + g;
        pp[k] -= lr * (nesterov ? g + momentum * pbuf[k] : pbuf[k]);
    });
}

} // namespace flow
