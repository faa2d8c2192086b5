// The Backend interface: every numerical operation the layers use. Layers call
// these on Tensors and never touch Eigen or CUDA themselves, so a new backend
// is a new implementation of this class and nothing else.
//
// Shapes: an op's "matrix" is Tensor::rows() x Tensor::cols(), row-major. A
// "row vector" v has v.size() == the matrix's cols and applies to every row.
// A "per-row" tensor has one value per row (size == rows). Unless an op says
// "accumulates", it overwrites its output. Outputs never alias inputs unless
// the op says so. Shape errors are programming errors of the layers and are
// reported as Status::internal.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/tensor.h"

namespace flow {

enum class DeviceKind { cpu = 0, cuda = 1 };

enum class Activation { relu, leaky_relu, elu, tanh, softplus };

class Backend {
public:
    virtual ~Backend() = default;
    virtual DeviceKind kind() const = 0;

    // --- memory -----------------------------------------------------------
    // Throws Error(out_of_memory) when the allocation fails.
    virtual void *allocate(size_t bytes) = 0;
    virtual void release(void *ptr) noexcept = 0;
    // Host <-> tensor copies of dst.size() (resp. src.size()) elements.
    virtual void upload(Tensor &dst, const void *host) = 0;
    virtual void download(const Tensor &src, void *host) = 0;
    virtual void copy(const Tensor &src, Tensor &dst) = 0; // same size
    virtual void fill(Tensor &t, float value) = 0;

    // --- dense algebra ----------------------------------------------------
    // c = alpha * op(a) * op(b) + beta * c, op = transpose when trans_*.
    virtual void gemm(bool trans_a, bool trans_b, float alpha, const Tensor &a,
                      const Tensor &b, float beta, Tensor &c) = 0;
    // y[i, j] += v[j]
    virtual void add_row_vector(Tensor &y, const Tensor &v) = 0;
    // out[j] = sum_i x[i, j] (accumulate: out[j] += ...)
    virtual void sum_rows(const Tensor &x, Tensor &out, bool accumulate) = 0;
    // y[i, j] = x[i, j] * v[j] (accumulate: y += ...)
    virtual void mul_row_vector(const Tensor &x, const Tensor &v, Tensor &y,
                                bool accumulate) = 0;
    // y += alpha * x (same size)
    virtual void axpy(float alpha, const Tensor &x, Tensor &y) = 0;
    // x *= alpha
    virtual void scale(Tensor &x, float alpha) = 0;
    // out[i, :] = [a[i, :], b[i, :]]
    virtual void concat_cols(const Tensor &a, const Tensor &b, Tensor &out) = 0;
    // out[i, j] = x[i, begin + j] for j < out.cols()
    virtual void slice_cols(const Tensor &x, size_t begin, Tensor &out) = 0;
    // y[i, j] = x[i, index[j]] (index: i32 row vector of y.cols() entries)
    virtual void gather_cols(const Tensor &x, const Tensor &index, Tensor &y) = 0;
    // y[i] += c for every element
    virtual void add_scalar(Tensor &y, float c) = 0;
    // per_row[i] += sign * sum_j v[j] (v a row vector)
    virtual void add_vector_sum(Tensor &per_row, const Tensor &v, float sign) = 0;

    // --- activations ------------------------------------------------------
    virtual void activation_forward(Activation act, const Tensor &x, Tensor &y) = 0;
    // dx = dy * act'(x), given x and y = act(x). dx may alias dy.
    virtual void activation_backward(Activation act, const Tensor &x, const Tensor &y,
                                     const Tensor &dy, Tensor &dx) = 0;

    // --- reductions to the host (accumulated in double) -------------------
    virtual double sum(const Tensor &x) = 0;
    virtual double sum_squares(const Tensor &x) = 0;
    virtual bool all_finite(const Tensor &x) = 0;

    // --- coupling layers --------------------------------------------------
    // Affine coupling on a binary mask m (row vector, 1 = passed through).
    // h is [n, 2D]: h[:, :D] raw log-scale, h[:, D:] shift t. With
    // s = (1 - m) * scale * tanh(raw) (scale a learnable row vector):
    //   forward:  z = m*x + (1-m)*(x*exp(s) + t),   logdet[i] += sum_j s[i, j]
    //   inverse:  x = m*z + (1-m)*(z - t)*exp(-s),   logdet[i] -= sum_j s[i, j]
    virtual void affine_coupling_forward(const Tensor &x, const Tensor &mask,
                                         const Tensor &h, const Tensor &scale,
                                         Tensor &z, Tensor &logdet) = 0;
    virtual void affine_coupling_inverse(const Tensor &z, const Tensor &mask,
                                         const Tensor &h, const Tensor &scale,
                                         Tensor &x, Tensor &logdet) = 0;
    // Given x, the loss gradient dz w.r.t. z and dlogdet (per row) w.r.t. the
    // forward logdet: dx = dz * dz/dx through the direct path only (the path
    // through h is the caller's), dh = gradient w.r.t. h (overwritten),
    // dscale accumulates.
    virtual void affine_coupling_backward(const Tensor &x, const Tensor &mask,
                                          const Tensor &h, const Tensor &scale,
                                          const Tensor &dz, const Tensor &dlogdet,
                                          Tensor &dx, Tensor &dh, Tensor &dscale) = 0;
    // Additive coupling: z = x + sign * (1 - m) * t.
    virtual void additive_coupling(const Tensor &x, const Tensor &mask,
                                   const Tensor &t, float sign, Tensor &z) = 0;

    // --- elementwise diagonal scaling (NICE) ------------------------------
    // y = x * exp(sign * s), s a row vector.
    virtual void scale_exp(const Tensor &x, const Tensor &s, float sign, Tensor &y) = 0;
    // For y = x * exp(s), logdet_i += sum(s): dx = dz * exp(s),
    // ds[j] += sum_i (dz[i, j] * y[i, j]) + sum_i dlogdet[i].
    virtual void scale_exp_backward(const Tensor &x, const Tensor &s, const Tensor &dz,
                                    const Tensor &dlogdet, Tensor &dx, Tensor &ds) = 0;

    // --- batch normalization as a flow layer ------------------------------
    // mean[j], var[j] of the columns of x (biased variance).
    virtual void batch_norm_stats(const Tensor &x, Tensor &mean, Tensor &var) = 0;
    // z = (x - mean) / sqrt(var + eps) * exp(log_gamma) + beta,
    // logdet[i] += sum_j (log_gamma[j] - 0.5 * log(var[j] + eps)).
    virtual void batch_norm_forward(const Tensor &x, const Tensor &mean,
                                    const Tensor &var, const Tensor &log_gamma,
                                    const Tensor &beta, float eps, Tensor &z,
                                    Tensor &logdet) = 0;
    // x = (z - beta) * exp(-log_gamma) * sqrt(var + eps) + mean, logdet -= ...
    virtual void batch_norm_inverse(const Tensor &z, const Tensor &mean,
                                    const Tensor &var, const Tensor &log_gamma,
                                    const Tensor &beta, float eps, Tensor &x,
                                    Tensor &logdet) = 0;
    // Gradients of the forward above. batch_stats: mean and var were computed
    // from this x, so the gradient flows through them too. dx is overwritten;
    // dlog_gamma and dbeta accumulate.
    virtual void batch_norm_backward(const Tensor &x, const Tensor &mean,
                                     const Tensor &var, const Tensor &log_gamma,
                                     float eps, bool batch_stats, const Tensor &dz,
                                     const Tensor &dlogdet, Tensor &dx,
                                     Tensor &dlog_gamma, Tensor &dbeta) = 0;
    // running = (1 - momentum) * running + momentum * batch, with the batch
    // variance made unbiased (times n / (n - 1)) for n > 1.
    virtual void batch_norm_update_running(const Tensor &mean, const Tensor &var,
                                           float momentum, size_t n,
                                           Tensor &running_mean,
                                           Tensor &running_var) = 0;

    // --- preprocessing ----------------------------------------------------
    // Uniform dequantization: y = (x + u) / levels, u ~ U[0, 1) drawn from
    // Philox(seed, stream) at the element's flat index.
    virtual void dequantize_forward(const Tensor &x, float levels, uint64_t seed,
                                    uint64_t stream, Tensor &y) = 0;
    // x = clamp(floor(y * levels), 0, levels - 1)
    virtual void dequantize_inverse(const Tensor &y, float levels, Tensor &x) = 0;
    // Logit with bound alpha: y = alpha + (1 - 2 alpha) x, z = log(y / (1 - y)),
    // logdet[i] += sum_j log((1 - 2 alpha) / (y (1 - y))).
    virtual void logit_forward(const Tensor &x, float alpha, Tensor &z, Tensor &logdet) = 0;
    // x = (sigmoid(z) - alpha) / (1 - 2 alpha), logdet[i] += log|dx/dz| summed.
    virtual void logit_inverse(const Tensor &z, float alpha, Tensor &x, Tensor &logdet) = 0;
    // dx = dz * dz/dx + dlogdet[i] * d(logdet)/dx.
    virtual void logit_backward(const Tensor &x, float alpha, const Tensor &dz,
                                const Tensor &dlogdet, Tensor &dx) = 0;

    // --- base distributions -----------------------------------------------
    // out[i] = sum_j log N(z[i, j]; 0, 1)
    virtual void normal_log_prob(const Tensor &z, Tensor &out) = 0;
    // dz[i, j] = dlogp[i] * d/dz log N = -dlogp[i] * z[i, j]
    virtual void normal_log_prob_backward(const Tensor &z, const Tensor &dlogp,
                                          Tensor &dz) = 0;
    // out[i] = sum_j log Logistic(z[i, j]; 0, 1)
    virtual void logistic_log_prob(const Tensor &z, Tensor &out) = 0;
    virtual void logistic_log_prob_backward(const Tensor &z, const Tensor &dlogp,
                                            Tensor &dz) = 0;

    // --- random numbers (Philox-4x32-10; element k uses counter k) --------
    // t = stddev * N(0, 1)
    virtual void fill_normal(Tensor &t, uint64_t seed, uint64_t stream, float stddev) = 0;
    // t = scale * Logistic(0, 1) = scale * log(u / (1 - u))
    virtual void fill_logistic(Tensor &t, uint64_t seed, uint64_t stream, float scale) = 0;
    // t = lo + (hi - lo) * U[0, 1)
    virtual void fill_uniform(Tensor &t, uint64_t seed, uint64_t stream, float lo,
                              float hi) = 0;

    // --- optimizers (element-wise over the parameter arena) ---------------
    // PyTorch semantics. Adam: g += l2 * p; m = b1 m + (1-b1) g;
    // v = b2 v + (1-b2) g^2; p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
    // and, when decoupled_decay > 0, first p -= lr * decoupled_decay * p.
    virtual void adam_update(Tensor &param, const Tensor &grad, Tensor &m, Tensor &v,
                             float lr, float beta1, float beta2, float eps, float l2,
                             float decoupled_decay, uint64_t step) = 0;
    // SGD: g += l2 * p; buf = momentum * buf + g (buf = g at the first step);
    // p -= lr * (nesterov ? g + momentum * buf : buf).
    virtual void sgd_update(Tensor &param, const Tensor &grad, Tensor &velocity,
                            float lr, float momentum, float l2, bool nesterov,
                            bool first_step) = 0;
};

// The process-wide CPU backend (CPU models share it; it holds no model state).
Backend &cpu_backend();
// Threads used by the CPU backend; 0 = all cores.
void cpu_set_num_threads(int n);

} // namespace flow
