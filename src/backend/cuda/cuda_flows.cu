// PLACEHOLDER: being written. Every op here fails until it has its kernel.
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_launch.h"

namespace flow {

void CudaBackend::affine_coupling_forward(const Tensor &x, const Tensor &mask, const Tensor &h, const Tensor &scale, Tensor &z, Tensor &logdet) {
    fail(Status::unsupported, "affine_coupling_forward: not yet implemented on CUDA");
}

void CudaBackend::affine_coupling_inverse(const Tensor &z, const Tensor &mask, const Tensor &h, const Tensor &scale, Tensor &x, Tensor &logdet) {
    fail(Status::unsupported, "affine_coupling_inverse: not yet implemented on CUDA");
}

void CudaBackend::affine_coupling_backward(const Tensor &x, const Tensor &mask, const Tensor &h, const Tensor &scale, const Tensor &dz, const Tensor &dlogdet, Tensor &dx, Tensor &dh, Tensor &dscale) {
    fail(Status::unsupported, "affine_coupling_backward: not yet implemented on CUDA");
}

void CudaBackend::additive_coupling(const Tensor &x, const Tensor &mask, const Tensor &t, float sign, Tensor &z) {
    fail(Status::unsupported, "additive_coupling: not yet implemented on CUDA");
}

void CudaBackend::scale_exp(const Tensor &x, const Tensor &s, float sign, Tensor &y) {
    fail(Status::unsupported, "scale_exp: not yet implemented on CUDA");
}

void CudaBackend::scale_exp_backward(const Tensor &x, const Tensor &s, const Tensor &dz, const Tensor &dlogdet, Tensor &dx, Tensor &ds) {
    fail(Status::unsupported, "scale_exp_backward: not yet implemented on CUDA");
}

void CudaBackend::batch_norm_stats(const Tensor &x, Tensor &mean, Tensor &var) {
    fail(Status::unsupported, "batch_norm_stats: not yet implemented on CUDA");
}

void CudaBackend::batch_norm_forward(const Tensor &x, const Tensor &mean, const Tensor &var, const Tensor &log_gamma, const Tensor &beta, float eps, Tensor &z, Tensor &logdet) {
    fail(Status::unsupported, "batch_norm_forward: not yet implemented on CUDA");
}

void CudaBackend::batch_norm_inverse(const Tensor &z, const Tensor &mean, const Tensor &var, const Tensor &log_gamma, const Tensor &beta, float eps, Tensor &x, Tensor &logdet) {
    fail(Status::unsupported, "batch_norm_inverse: not yet implemented on CUDA");
}

void CudaBackend::batch_norm_backward(const Tensor &x, const Tensor &mean, const Tensor &var, const Tensor &log_gamma, float eps, bool batch_stats, const Tensor &dz, const Tensor &dlogdet, Tensor &dx, Tensor &dlog_gamma, Tensor &dbeta) {
    fail(Status::unsupported, "batch_norm_backward: not yet implemented on CUDA");
}

void CudaBackend::batch_norm_update_running(const Tensor &mean, const Tensor &var, float momentum, size_t n, Tensor &running_mean, Tensor &running_var) {
    fail(Status::unsupported, "batch_norm_update_running: not yet implemented on CUDA");
}

void CudaBackend::dequantize_forward(const Tensor &x, float levels, uint64_t seed, uint64_t stream, Tensor &y) {
    fail(Status::unsupported, "dequantize_forward: not yet implemented on CUDA");
}

void CudaBackend::dequantize_inverse(const Tensor &y, float levels, Tensor &x) {
    fail(Status::unsupported, "dequantize_inverse: not yet implemented on CUDA");
}

void CudaBackend::logit_forward(const Tensor &x, float alpha, Tensor &z, Tensor &logdet) {
    fail(Status::unsupported, "logit_forward: not yet implemented on CUDA");
}

void CudaBackend::logit_inverse(const Tensor &z, float alpha, Tensor &x, Tensor &logdet) {
    fail(Status::unsupported, "logit_inverse: not yet implemented on CUDA");
}

void CudaBackend::logit_backward(const Tensor &x, float alpha, const Tensor &dz, const Tensor &dlogdet, Tensor &dx) {
    fail(Status::unsupported, "logit_backward: not yet implemented on CUDA");
}

void CudaBackend::normal_log_prob(const Tensor &z, Tensor &out) {
    fail(Status::unsupported, "normal_log_prob: not yet implemented on CUDA");
}

void CudaBackend::normal_log_prob_backward(const Tensor &z, const Tensor &dlogp, Tensor &dz) {
    fail(Status::unsupported, "normal_log_prob_backward: not yet implemented on CUDA");
}

void CudaBackend::logistic_log_prob(const Tensor &z, Tensor &out) {
    fail(Status::unsupported, "logistic_log_prob: not yet implemented on CUDA");
}

void CudaBackend::logistic_log_prob_backward(const Tensor &z, const Tensor &dlogp, Tensor &dz) {
    fail(Status::unsupported, "logistic_log_prob_backward: not yet implemented on CUDA");
}

void CudaBackend::fill_normal(Tensor &t, uint64_t seed, uint64_t stream, float stddev) {
    fail(Status::unsupported, "fill_normal: not yet implemented on CUDA");
}

void CudaBackend::fill_logistic(Tensor &t, uint64_t seed, uint64_t stream, float scale) {
    fail(Status::unsupported, "fill_logistic: not yet implemented on CUDA");
}

void CudaBackend::fill_uniform(Tensor &t, uint64_t seed, uint64_t stream, float lo, float hi) {
    fail(Status::unsupported, "fill_uniform: not yet implemented on CUDA");
}

void CudaBackend::adam_update(Tensor &param, const Tensor &grad, Tensor &m, Tensor &v, float lr, float beta1, float beta2, float eps, float l2, float decoupled_decay, uint64_t step) {
    fail(Status::unsupported, "adam_update: not yet implemented on CUDA");
}

void CudaBackend::sgd_update(Tensor &param, const Tensor &grad, Tensor &velocity, float lr, float momentum, float l2, bool nesterov, bool first_step) {
    fail(Status::unsupported, "sgd_update: not yet implemented on CUDA");
}

} // namespace flow
