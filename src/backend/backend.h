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
// leaky_relu(v) = v for v > 0, else kLeakyReluSlope * v (PyTorch's default).
constexpr float kLeakyReluSlope = 0.01f;
// relu and leaky relu (slope > 0): act(v) > 0 exactly where v > 0, so their
// derivative follows from the output, and a layer can keep its output alone
// (the pre-activation and the output one tensor, overwritten in place).
inline bool derivative_from_output(Activation a) {
    return a == Activation::relu || a == Activation::leaky_relu;
}

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
    // Waits until the work this thread queued has finished. A model calls it
    // before returning from a call that leaves work queued (create, load,
    // set_params, a train step), so the next call may come from another
    // thread. Ops of synchronous backends are finished when they return.
    virtual void synchronize() {}

    // --- dense algebra ----------------------------------------------------
    // c = alpha * op(a) * op(b) + beta * c, op = transpose when trans_*.
    virtual void gemm(bool trans_a, bool trans_b, float alpha, const Tensor &a,
                      const Tensor &b, float beta, Tensor &c) = 0;
    // c = op(a) * op(b) + v, v a row vector of c's columns: a linear layer's
    // x W^T + b as one op (the CPU adds v as it stores c, or copies v into c
    // and lets the GEMM accumulate onto it). packed_b, when given (trans_b),
    // is what pack_weight made of b; the product may read it instead of b.
    virtual void gemm_bias(bool trans_a, bool trans_b, const Tensor &a, const Tensor &b,
                           const Tensor &v, Tensor &c, const Tensor *packed_b = nullptr) = 0;
    // pre = op(a) * op(b) + v and y = act(pre): a hidden layer's forward, pre
    // kept for the backward. pre and y may be the same tensor (then it ends
    // as y: relu layers keep only their output). A backend may fuse the two
    // (the CPU does, in the small products' store); this is the plain
    // composition.
    virtual void gemm_bias_activation(bool trans_a, bool trans_b, const Tensor &a,
                                      const Tensor &b, const Tensor &v, Activation act,
                                      Tensor &pre, Tensor &y, const Tensor *packed_b = nullptr) {
        gemm_bias(trans_a, trans_b, a, b, v, pre, packed_b);
        activation_forward(act, pre, y);
    }
    // gemm_bias_activation(false, true, ...) on the columns of a that the
    // i32 index a_cols lists, in its order: a layer whose input is a gather
    // of another tensor's columns (a coupling's conditioner in evaluation).
    // A backend that can read such columns in place does (the CPU: every
    // other column, or a run); otherwise, as here, they are gathered into
    // `gathered` first.
    virtual void gemm_bias_activation_cols(const Tensor &a, const Tensor &a_cols,
                                           Tensor &gathered, const Tensor &b, const Tensor &v,
                                           Activation act, Tensor &pre, Tensor &y,
                                           const Tensor *packed_b = nullptr) {
        gathered.ensure(*this, {a.rows(), a_cols.size()});
        gather(a, nullptr, &a_cols, gathered);
        gemm_bias_activation(false, true, gathered, b, v, act, pre, y, packed_b);
    }
    // dx = (dy w) * act'(pre), given pre and y = act(pre): the backward of a
    // layer through the activation that made its input y (dx may not alias
    // pre or y). A backend may fuse the two (the CPU does for relu and
    // leaky relu, in the small products' store); this is the plain
    // composition. packed_w, when given, is what pack_weight_rows made of w.
    virtual void gemm_activation_backward(const Tensor &dy, const Tensor &w, Activation act,
                                          const Tensor &pre, const Tensor &y, Tensor &dx,
                                          const Tensor *packed_w = nullptr) {
        (void)packed_w;
        gemm(false, false, 1.0f, dy, w, 0.0f, dx);
        activation_backward(act, pre, y, dx, dx);
    }
    // A layer's weight w [out, in] serves many products x w^T between its
    // changes (evaluation takes a batch block by block). `packed` gets what
    // those products can read instead of w, made once (the CPU: w^T in its
    // GEMM kernel's panel layout, the copy each product would otherwise
    // make), for gemm_bias(_activation)'s packed_b; undefined where the
    // backend reads w as it is (this default).
    virtual void pack_weight(const Tensor &w, Tensor &packed) {
        (void)w;
        packed = Tensor();
    }
    // The same for the backward products dy w of a train step's parts
    // (gemm_activation_backward's packed_w; the CPU: w as it is, in the
    // panel layout).
    virtual void pack_weight_rows(const Tensor &w, Tensor &packed) {
        (void)w;
        packed = Tensor();
    }
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
    // y[i, j] = x[rows ? rows[i] : i, cols ? cols[j] : j]: the sub-matrix of x
    // at the listed rows and columns (i32 index vectors of y.rows() and
    // y.cols() entries; null = all of them, in order).
    virtual void gather(const Tensor &x, const Tensor *rows, const Tensor *cols, Tensor &y) = 0;
    // y[i, j] = x[i, index[j]] (index: i32 row vector of y.cols() entries)
    void gather_cols(const Tensor &x, const Tensor &index, Tensor &y) {
        gather(x, nullptr, &index, y);
    }
    // The reverse of gather: y[rows ? rows[i] : i, cols ? cols[j] : j] = x[i, j]
    // (accumulate: +=) for every row i of x and every j < cols->size() (null:
    // every column of x); the other entries of y keep their values. Indices
    // must not repeat.
    virtual void scatter(const Tensor &x, const Tensor *rows, const Tensor *cols, Tensor &y,
                         bool accumulate) = 0;
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
    // Affine coupling on the free columns of a coupling layer (the caller
    // gathers them): x [n, F], h [n, 2F] with h[:, :F] the raw log-scale and
    // h[:, F:] the shift t, scale a learnable row vector, s = scale * tanh(raw):
    //   forward:  z = x * exp(s) + t,    logdet[i] += sum_j s[i, j]
    //   inverse:  x = (z - t) * exp(-s), logdet[i] -= sum_j s[i, j]
    virtual void affine_coupling_forward(const Tensor &x, const Tensor &h, const Tensor &scale,
                                         Tensor &z, Tensor &logdet) = 0;
    virtual void affine_coupling_inverse(const Tensor &z, const Tensor &h, const Tensor &scale,
                                         Tensor &x, Tensor &logdet) = 0;
    // Given x, the loss gradient dz w.r.t. z and dlogdet (per row) w.r.t. the
    // forward logdet: dx = dz * exp(s), the direct path only (the path through
    // h is the caller's), dh = gradient w.r.t. h (overwritten), dscale
    // accumulates.
    virtual void affine_coupling_backward(const Tensor &x, const Tensor &h, const Tensor &scale,
                                          const Tensor &dz, const Tensor &dlogdet, Tensor &dx,
                                          Tensor &dh, Tensor &dscale) = 0;

    // --- autoregressive flows (MADE / MAF / IAF) ----------------------------
    // Implemented for the CPU in cpu/cpu_autoregressive.cpp and
    // cpu/cpu_staircase.cpp (the staircase products).
    // y = a * b element by element (same sizes; accumulate: y += a * b). Used
    // to apply MADE's fixed 0/1 connectivity masks to weights.
    // y may alias a or b.
    virtual void mul_elementwise(const Tensor &a, const Tensor &b, Tensor &y,
                                 bool accumulate) = 0;
    // One Gaussian autoregressive layer given the MADE output h [n, 2D]:
    // mu = h[:, :D], alpha = h[:, D:] (log-scale), D = x.cols().
    //   forward:  z = (x - mu) * exp(-alpha),  logdet[i] -= sum_j alpha[i, j]
    //   inverse:  x = z * exp(alpha) + mu,     logdet[i] += sum_j alpha[i, j]
    //             (logdet nullable: the D-pass inverse adds it once). With
    //             column >= 0 only x[:, column] is written (the other
    //             columns keep their values; logdet still sums every alpha):
    //             pass k of the D-pass inverse fixes one dimension and never
    //             writes values that are not yet exact.
    virtual void made_affine_forward(const Tensor &x, const Tensor &h, Tensor &z,
                                     Tensor &logdet) = 0;
    virtual void made_affine_inverse(const Tensor &z, const Tensor &h, Tensor &x,
                                     Tensor *logdet, long column = -1) = 0;
    // Backward of made_affine_forward at x with loss gradients dz and dlogdet
    // (per row; nullable = 0): dx = dz * exp(-alpha) (the direct path only;
    // the path through h is the caller's), dh (overwritten) = [dmu, dalpha]
    // with dmu = -dz * exp(-alpha), dalpha = -dz * z - dlogdet[i].
    virtual void made_affine_backward(const Tensor &x, const Tensor &h, const Tensor &dz,
                                      const Tensor *dlogdet, Tensor &dx, Tensor &dh) = 0;
    // The products of a masked MADE layer w [out, in] whose row u is zero
    // from column prefix[u] on (prefix: host values, one per row of w).
    // They skip most of that zero part, about half of w, when prefix runs
    // monotone: with the units of both layers sorted by degree the mask is
    // a staircase (nn/made.cpp). They may also multiply by some of the
    // zeros, so w must hold zeros there.
    // y = x w^T + bias: x [n, k] with every prefix <= k <= in (columns of
    // w past k are never read), bias [out], y [n, out]. packed_w, when
    // given, is what pack_staircase made of w and prefix.
    virtual void staircase_forward(const Tensor &x, const Tensor &w, const Tensor &bias,
                                   const size_t *prefix, Tensor &y,
                                   const Tensor *packed_w = nullptr) = 0;
    // What staircase_forward can read instead of w for as long as w and
    // prefix stay the same, as pack_weight for gemm_bias (the CPU: the
    // panels of w^T it would copy, only as deep as the products read).
    virtual void pack_staircase(const Tensor &w, const size_t *prefix, Tensor &packed) {
        (void)w;
        (void)prefix;
        packed = Tensor();
    }
    // pre = x w^T + bias as above and y = act(pre): a hidden MADE layer, as
    // gemm_bias_activation for a dense one (the CPU fuses the two); pre and
    // y may be the same tensor.
    virtual void staircase_forward_activation(const Tensor &x, const Tensor &w,
                                              const Tensor &bias, const size_t *prefix,
                                              Activation act, Tensor &pre, Tensor &y,
                                              const Tensor *packed_w = nullptr) {
        staircase_forward(x, w, bias, prefix, pre, packed_w);
        activation_forward(act, pre, y);
    }
    // dx = dy w: dy [n, out], dx [n, in] (overwritten).
    virtual void staircase_backward_input(const Tensor &dy, const Tensor &w, const size_t *prefix,
                                          Tensor &dx) = 0;
    // staircase_backward_input on through the activation that made the
    // layer's input y = act(pre): dx = (dy w) * act'(pre), as
    // gemm_activation_backward (the CPU fuses relu and leaky relu).
    virtual void staircase_activation_backward(const Tensor &dy, const Tensor &w,
                                               const size_t *prefix, Activation act,
                                               const Tensor &pre, const Tensor &y, Tensor &dx) {
        staircase_backward_input(dy, w, prefix, dx);
        activation_backward(act, pre, y, dx, dx);
    }
    // The weight's gradient, with w gathered as weight[rows, cols] (rows
    // null: in order): dw[rows[u], cols[j]] += (dy^T x)[u, j] for j <
    // prefix[u], the other entries of dw untouched. dy [n, out], x [n, in],
    // dw [out, in], rows and cols i32 permutations ([out] and [in]).
    virtual void staircase_backward_weight(const Tensor &dy, const Tensor &x,
                                           const size_t *prefix, const Tensor *rows,
                                           const Tensor &cols, Tensor &dw) = 0;

    // --- MADE mixture-of-Gaussians base (MADE MoG, MAF MoG) ------------------
    // Implemented for the CPU in cpu/cpu_made_mog.cpp. h [n, 3 C D] is a MADE's
    // output (D = z.cols(), C = h.cols() / (3 D)) in blocks at columns b * D + d:
    // logits (b = c), means (b = C + c), log-scales (b = 2 C + c) of component
    // c of dimension d. Per-row sums and the log-sum-exps are in double.
    //   out[i] = sum_d log sum_c softmax_c(logits[i, :, d]) N(z[i, d]; mean, exp(log_scale)^2)
    virtual void made_mog_log_prob(const Tensor &z, const Tensor &h, Tensor &out) = 0;
    // Backward of made_mog_log_prob with per-row loss gradients dlogp: dz
    // (overwritten) = dlogp[i] * d out[i] / dz through the direct path only
    // (the path through h is the caller's), dh (overwritten) = dlogp[i] *
    // d out[i] / dh. out, when non-null, gets made_mog_log_prob's result
    // too: a train step, whose dlogp does not depend on it, makes the loss
    // and its gradient in one pass over the mixtures.
    virtual void made_mog_log_prob_backward(const Tensor &z, const Tensor &h,
                                            const Tensor &dlogp, Tensor &dz, Tensor &dh,
                                            Tensor *out) = 0;
    // Writes z[:, column] only (the other columns keep their values): with
    // the Philox block b of counter i * D + column (key seed, stream stream),
    // component c is drawn from the softmax of the logits of (i, column) with
    // the uniform of b.v[2], then z = mean + temperature * exp(log_scale) *
    // N(0, 1), the normal from b.v[0], b.v[1] (as philox_normal). With
    // member non-null (a per-row tensor), only the rows i with
    // min(floor(member[i]), members - 1) == member_id are written.
    virtual void made_mog_sample(Tensor &z, const Tensor &h, size_t column, uint64_t seed,
                                 uint64_t stream, float temperature, const Tensor *member,
                                 size_t members, size_t member_id) = 0;
    // Ensembles: lp [K, n] holds K members' log-densities of n rows;
    //   out[i] = log (1/K) sum_k exp(lp[k, i])   (in double)
    virtual void log_mean_exp(const Tensor &lp, Tensor &out) = 0;
    // dlp[k, i] = dout[i] * exp(lp[k, i] - out[i]) / K (overwritten), out
    // the result of log_mean_exp(lp).
    virtual void log_mean_exp_backward(const Tensor &lp, const Tensor &out, const Tensor &dout,
                                       Tensor &dlp) = 0;

    // --- elementwise diagonal scaling (NICE) ------------------------------
    // y = x * exp(sign * s), s a row vector; y may be x.
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
    // Philox(seed, stream) at counter first + the element's flat index (a
    // part of a batch draws the numbers of its place in the whole).
    virtual void dequantize_forward(const Tensor &x, float levels, uint64_t seed,
                                    uint64_t stream, uint64_t first, Tensor &y) = 0;
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
    // t = stddev * N(0, 1); element k is normal k % 4 of counter k / 4
    // (philox_normal4: Box-Muller on both word pairs).
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

    // --- classic flows and mixture base (planar, radial, mixture of
    // Gaussians). Implemented for the CPU in cpu/cpu_glow.cpp. Scalars of
    // one row (w.x, radii, responsibilities) are computed in double.
    //
    // Planar flow (Rezende & Mohamed 2015, appendix A.1), in the normalizing
    // direction: w, u row vectors [D], b [1];
    //   u_hat = u + (m(w.u) - w.u) w / |w|^2, m(a) = -1 + softplus(a)
    //   (so w.u_hat > -1: invertible), psi = w.u_hat,
    //   forward:  z = x + u_hat tanh(w.x + b),
    //             logdet[i] += log(1 + (1 - tanh^2(w.x + b)) psi).
    // (|w| = 0 uses u_hat = u.)
    virtual void planar_forward(const Tensor &x, const Tensor &w, const Tensor &u,
                                const Tensor &b, Tensor &z, Tensor &logdet) = 0;
    // Inverse: a = w.x + b solves a + psi tanh(a) = w.z + b (increasing in
    // a), by Newton steps safeguarded by bisection on the bracket
    // [w.z + b - |psi|, w.z + b + |psi|] until the step is below
    // tol * (1 + |a|) (at most 200 iterations); x = z - u_hat tanh(a),
    // logdet[i] -= the forward log-det at x.
    virtual void planar_inverse(const Tensor &z, const Tensor &w, const Tensor &u,
                                const Tensor &b, double tol, Tensor &x, Tensor &logdet) = 0;
    // Backward of planar_forward: dx overwritten; dw, du, db accumulate
    // (through u_hat as well).
    virtual void planar_backward(const Tensor &x, const Tensor &w, const Tensor &u,
                                 const Tensor &b, const Tensor &dz, const Tensor &dlogdet,
                                 Tensor &dx, Tensor &dw, Tensor &du, Tensor &db) = 0;
    // Radial flow (appendix A.2), normalizing direction: center x0 [D], raw
    // scalars a, b [1]: alpha = softplus(a) > 0, beta = -alpha + softplus(b)
    // > -alpha (invertible); r = |x - x0|, h = 1 / (alpha + r),
    //   forward:  z = x + beta h (x - x0),
    //             logdet[i] += (D - 1) log(1 + beta h) + log(1 + alpha beta h^2).
    virtual void radial_forward(const Tensor &x, const Tensor &x0, const Tensor &a,
                                const Tensor &b, Tensor &z, Tensor &logdet) = 0;
    // Inverse: |z - x0| = r (1 + beta / (alpha + r)) is increasing in r; r is
    // the positive root of r^2 + (alpha + beta - |z - x0|) r - alpha |z - x0|
    // (closed form, the cancellation-free variant), x = x0 + (z - x0) r / |z - x0|;
    // logdet[i] -= the forward log-det at x.
    virtual void radial_inverse(const Tensor &z, const Tensor &x0, const Tensor &a,
                                const Tensor &b, Tensor &x, Tensor &logdet) = 0;
    virtual void radial_backward(const Tensor &x, const Tensor &x0, const Tensor &a,
                                 const Tensor &b, const Tensor &dz, const Tensor &dlogdet,
                                 Tensor &dx, Tensor &dx0, Tensor &da, Tensor &db) = 0;
    // Mixture of K diagonal Gaussians: logits [K], means [K, D], log_scales
    // [K, D]; out[i] = log sum_k softmax(logits)_k N(z_i; mean_k, exp(2 log_scale_k)).
    virtual void mog_log_prob(const Tensor &z, const Tensor &logits, const Tensor &means,
                              const Tensor &log_scales, Tensor &out) = 0;
    // dz (overwritten) = dlogp[i] * grad_z; dlogits, dmeans, dlog_scales accumulate.
    virtual void mog_log_prob_backward(const Tensor &z, const Tensor &logits,
                                       const Tensor &means, const Tensor &log_scales,
                                       const Tensor &dlogp, Tensor &dz, Tensor &dlogits,
                                       Tensor &dmeans, Tensor &dlog_scales) = 0;
    // Row i: component k drawn from softmax(logits) with the uniform of
    // Philox counter 2^62 + i, then z[i, j] = mean[k, j] + temperature *
    // exp(log_scale[k, j]) * N(0, 1) with the normal of counter i * D + j
    // (stream `stream`, key seed).
    virtual void mog_sample(Tensor &z, const Tensor &logits, const Tensor &means,
                            const Tensor &log_scales, uint64_t seed, uint64_t stream,
                            float temperature) = 0;
};

// The process-wide CPU backend (CPU models share it; it holds no model state).
Backend &cpu_backend();
// Threads used by the CPU backend; 0 = all cores.
void cpu_set_num_threads(int n);

} // namespace flow
