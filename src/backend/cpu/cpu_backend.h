// The CPU backend: plain loops parallelized over rows with OpenMP, and GEMM
// through Eigen (which hands it to the system BLAS). Only cpu_gemm.cpp
// includes Eigen; every other op lives in cpu_backend.cpp.
#pragma once

#include <omp.h>

#include <algorithm>
#include <string>

#include "backend/backend.h"
#include "backend/op_args.h"
#include "core/error.h"
#include "core/subnormals.h"

namespace flow {

// body(i) for i in [0, n), on OpenMP threads when n * cost (the work of one
// i, roughly) exceeds min_work and there are threads to use, inline
// otherwise: even a one-thread parallel region costs libgomp a team set-up
// and a heap allocation, more than many of these loops themselves. Inside a
// parallel region (a model's evaluation lanes) every thread is taken.
template <class Body> void cpu_parallel_for(size_t n, size_t cost, size_t min_work, Body &&body) {
    if (n * cost <= min_work || omp_get_max_threads() == 1 || omp_in_parallel()) {
        for (size_t i = 0; i < n; ++i) body(i);
        return;
    }
#pragma omp parallel
    {
        const FlushSubnormals flush;
#pragma omp for schedule(static)
        for (size_t i = 0; i < n; ++i) body(i);
    }
}

// body(r0, r1) over fixed blocks of `block` rows, the blocks spread over
// threads as cpu_parallel_for does (cost: the work of one row).
template <class Body>
void cpu_parallel_rows(size_t rows, size_t block, size_t cost, size_t min_work, Body &&body) {
    const size_t blocks = (rows + block - 1) / block;
    cpu_parallel_for(blocks, block * cost, min_work, [&](size_t b) {
        body(b * block, std::min(rows, (b + 1) * block));
    });
}

// relu and leaky relu are piecewise linear: the small kernel applies them
// as it stores a product, and their derivative as a gate; the other
// activations cost more there than the separate pass they would save.
inline bool applied_in_store(Activation act) {
    return act == Activation::relu || act == Activation::leaky_relu;
}
// Their slope below 0.
inline float negative_slope(Activation act) {
    return act == Activation::leaky_relu ? kLeakyReluSlope : 0.0f;
}

// The data of an optional i32 index of `count` entries, each below `limit`
// (null: the identity, which needs count == limit).
const int32_t *cpu_index_data(const Tensor *index, size_t count, size_t limit, const char *op);

class CpuBackend final : public Backend {
public:
    DeviceKind kind() const override { return DeviceKind::cpu; }

    void *allocate(size_t bytes) override;
    void release(void *ptr) noexcept override;
    void upload(Tensor &dst, const void *host) override;
    void download(const Tensor &src, void *host) override;
    void copy(const Tensor &src, Tensor &dst) override;
    void fill(Tensor &t, float value) override;

    void gemm(bool trans_a, bool trans_b, float alpha, const Tensor &a, const Tensor &b,
              float beta, Tensor &c) override;
    void gemm_bias(bool trans_a, bool trans_b, const Tensor &a, const Tensor &b, const Tensor &v,
                   Tensor &c, const Tensor *packed_b = nullptr) override;
    void gemm_bias_activation(bool trans_a, bool trans_b, const Tensor &a, const Tensor &b,
                              const Tensor &v, Activation act, Tensor &pre, Tensor &y,
                              const Tensor *packed_b = nullptr) override;
    void gemm_bias_activation_cols(const Tensor &a, const Tensor &a_cols, Tensor &gathered,
                                   const Tensor &b, const Tensor &v, Activation act, Tensor &pre,
                                   Tensor &y, const Tensor *packed_b = nullptr) override;
    void gemm_activation_backward(const Tensor &dy, const Tensor &w, Activation act,
                                  const Tensor &pre, const Tensor &y, Tensor &dx,
                                  const Tensor *packed_w = nullptr) override;
    void pack_weight(const Tensor &w, Tensor &packed) override;
    void pack_weight_rows(const Tensor &w, Tensor &packed) override;
    void add_row_vector(Tensor &y, const Tensor &v) override;
    void sum_rows(const Tensor &x, Tensor &out, bool accumulate) override;
    void mul_row_vector(const Tensor &x, const Tensor &v, Tensor &y,
                        bool accumulate) override;
    void axpy(float alpha, const Tensor &x, Tensor &y) override;
    void scale(Tensor &x, float alpha) override;
    void concat_cols(const Tensor &a, const Tensor &b, Tensor &out) override;
    void slice_cols(const Tensor &x, size_t begin, Tensor &out) override;
    void gather(const Tensor &x, const Tensor *rows, const Tensor *cols, Tensor &y) override;
    void scatter(const Tensor &x, const Tensor *rows, const Tensor *cols, Tensor &y,
                 bool accumulate) override;
    void add_scalar(Tensor &y, float c) override;
    void add_vector_sum(Tensor &per_row, const Tensor &v, float sign) override;

    void activation_forward(Activation act, const Tensor &x, Tensor &y) override;
    void activation_backward(Activation act, const Tensor &x, const Tensor &y,
                             const Tensor &dy, Tensor &dx) override;

    double sum(const Tensor &x) override;
    double sum_squares(const Tensor &x) override;
    bool all_finite(const Tensor &x) override;

    void affine_coupling_forward(const Tensor &x, const Tensor &h, const Tensor &scale,
                                 Tensor &z, Tensor &logdet) override;
    void affine_coupling_inverse(const Tensor &z, const Tensor &h, const Tensor &scale,
                                 Tensor &x, Tensor &logdet) override;
    void affine_coupling_backward(const Tensor &x, const Tensor &h, const Tensor &scale,
                                  const Tensor &dz, const Tensor &dlogdet, Tensor &dx,
                                  Tensor &dh, Tensor &dscale) override;

    // autoregressive flows (defined in cpu_autoregressive.cpp)
    void mul_elementwise(const Tensor &a, const Tensor &b, Tensor &y, bool accumulate) override;
    void made_affine_forward(const Tensor &x, const Tensor &h, Tensor &z,
                             Tensor &logdet) override;
    void made_affine_inverse(const Tensor &z, const Tensor &h, Tensor &x,
                             Tensor *logdet, long column = -1) override;
    void made_affine_backward(const Tensor &x, const Tensor &h, const Tensor &dz,
                              const Tensor *dlogdet, Tensor &dx, Tensor &dh) override;
    // staircase products (cpu_staircase.cpp)
    void staircase_forward(const Tensor &x, const Tensor &w, const Tensor &bias,
                           const size_t *prefix, Tensor &y,
                           const Tensor *packed_w = nullptr) override;
    void staircase_forward_activation(const Tensor &x, const Tensor &w, const Tensor &bias,
                                      const size_t *prefix, Activation act, Tensor &pre,
                                      Tensor &y, const Tensor *packed_w = nullptr) override;
    void pack_staircase(const Tensor &w, const size_t *prefix, Tensor &packed) override;
    void staircase_backward_input(const Tensor &dy, const Tensor &w, const size_t *prefix,
                                  Tensor &dx) override;
    void staircase_activation_backward(const Tensor &dy, const Tensor &w, const size_t *prefix,
                                       Activation act, const Tensor &pre, const Tensor &y,
                                       Tensor &dx) override;
    void staircase_backward_weight(const Tensor &dy, const Tensor &x, const size_t *prefix,
                                   const Tensor *rows, const Tensor &cols, Tensor &dw) override;

    void scale_exp(const Tensor &x, const Tensor &s, float sign, Tensor &y) override;
    void scale_exp_backward(const Tensor &x, const Tensor &s, const Tensor &dz,
                            const Tensor &dlogdet, Tensor &dx, Tensor &ds) override;

    void batch_norm_stats(const Tensor &x, Tensor &mean, Tensor &var) override;
    void batch_norm_forward(const Tensor &x, const Tensor &mean, const Tensor &var,
                            const Tensor &log_gamma, const Tensor &beta, float eps,
                            Tensor &z, Tensor &logdet) override;
    void batch_norm_inverse(const Tensor &z, const Tensor &mean, const Tensor &var,
                            const Tensor &log_gamma, const Tensor &beta, float eps,
                            Tensor &x, Tensor &logdet) override;
    void batch_norm_backward(const Tensor &x, const Tensor &mean, const Tensor &var,
                             const Tensor &log_gamma, float eps, bool batch_stats,
                             const Tensor &dz, const Tensor &dlogdet, Tensor &dx,
                             Tensor &dlog_gamma, Tensor &dbeta) override;
    void batch_norm_update_running(const Tensor &mean, const Tensor &var, float momentum,
                                   size_t n, Tensor &running_mean,
                                   Tensor &running_var) override;

    void dequantize_forward(const Tensor &x, float levels, uint64_t seed, uint64_t stream,
                            uint64_t first, Tensor &y) override;
    void dequantize_inverse(const Tensor &y, float levels, Tensor &x) override;
    void logit_forward(const Tensor &x, float alpha, Tensor &z, Tensor &logdet) override;
    void logit_inverse(const Tensor &z, float alpha, Tensor &x, Tensor &logdet) override;
    void logit_backward(const Tensor &x, float alpha, const Tensor &dz,
                        const Tensor &dlogdet, Tensor &dx) override;

    void normal_log_prob(const Tensor &z, Tensor &out) override;
    void normal_log_prob_backward(const Tensor &z, const Tensor &dlogp, Tensor &dz) override;
    void logistic_log_prob(const Tensor &z, Tensor &out) override;
    void logistic_log_prob_backward(const Tensor &z, const Tensor &dlogp,
                                    Tensor &dz) override;

    void fill_normal(Tensor &t, uint64_t seed, uint64_t stream, float stddev) override;
    void fill_logistic(Tensor &t, uint64_t seed, uint64_t stream, float scale) override;
    void fill_uniform(Tensor &t, uint64_t seed, uint64_t stream, float lo,
                      float hi) override;

    void adam_update(Tensor &param, const Tensor &grad, Tensor &m, Tensor &v, float lr,
                     float beta1, float beta2, float eps, float l2, float decoupled_decay,
                     uint64_t step) override;
    void sgd_update(Tensor &param, const Tensor &grad, Tensor &velocity, float lr,
                    float momentum, float l2, bool nesterov, bool first_step) override;

    // --- MADE mixture-of-Gaussians base (cpu_made_mog.cpp) --------------
    void made_mog_log_prob(const Tensor &z, const Tensor &h, Tensor &out) override;
    void made_mog_log_prob_backward(const Tensor &z, const Tensor &h, const Tensor &dlogp,
                                    Tensor &dz, Tensor &dh, Tensor *out) override;
    void made_mog_sample(Tensor &z, const Tensor &h, size_t column, uint64_t seed,
                         uint64_t stream, float temperature, const Tensor *member,
                         size_t members, size_t member_id) override;
    void log_mean_exp(const Tensor &lp, Tensor &out) override;
    void log_mean_exp_backward(const Tensor &lp, const Tensor &out, const Tensor &dout,
                               Tensor &dlp) override;

    // --- planar, radial, mixture of Gaussians (cpu_glow.cpp) ------------
    void planar_forward(const Tensor &x, const Tensor &w, const Tensor &u, const Tensor &b,
                        Tensor &z, Tensor &logdet) override;
    void planar_inverse(const Tensor &z, const Tensor &w, const Tensor &u, const Tensor &b,
                        double tol, Tensor &x, Tensor &logdet) override;
    void planar_backward(const Tensor &x, const Tensor &w, const Tensor &u, const Tensor &b,
                         const Tensor &dz, const Tensor &dlogdet, Tensor &dx, Tensor &dw,
                         Tensor &du, Tensor &db) override;
    void radial_forward(const Tensor &x, const Tensor &x0, const Tensor &a, const Tensor &b,
                        Tensor &z, Tensor &logdet) override;
    void radial_inverse(const Tensor &z, const Tensor &x0, const Tensor &a, const Tensor &b,
                        Tensor &x, Tensor &logdet) override;
    void radial_backward(const Tensor &x, const Tensor &x0, const Tensor &a, const Tensor &b,
                         const Tensor &dz, const Tensor &dlogdet, Tensor &dx, Tensor &dx0,
                         Tensor &da, Tensor &db) override;
    void mog_log_prob(const Tensor &z, const Tensor &logits, const Tensor &means,
                      const Tensor &log_scales, Tensor &out) override;
    void mog_log_prob_backward(const Tensor &z, const Tensor &logits, const Tensor &means,
                               const Tensor &log_scales, const Tensor &dlogp, Tensor &dz,
                               Tensor &dlogits, Tensor &dmeans, Tensor &dlog_scales) override;
    void mog_sample(Tensor &z, const Tensor &logits, const Tensor &means,
                    const Tensor &log_scales, uint64_t seed, uint64_t stream,
                    float temperature) override;
};

} // namespace flow
