// PLACEHOLDER: being written. Every op here fails until it has its kernel.
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_launch.h"

namespace flow {

void CudaBackend::planar_forward(const Tensor &x, const Tensor &w, const Tensor &u, const Tensor &b, Tensor &z, Tensor &logdet) {
    fail(Status::unsupported, "planar_forward: not yet implemented on CUDA");
}

void CudaBackend::planar_inverse(const Tensor &z, const Tensor &w, const Tensor &u, const Tensor &b, double tol, Tensor &x, Tensor &logdet) {
    fail(Status::unsupported, "planar_inverse: not yet implemented on CUDA");
}

void CudaBackend::planar_backward(const Tensor &x, const Tensor &w, const Tensor &u, const Tensor &b, const Tensor &dz, const Tensor &dlogdet, Tensor &dx, Tensor &dw, Tensor &du, Tensor &db) {
    fail(Status::unsupported, "planar_backward: not yet implemented on CUDA");
}

void CudaBackend::radial_forward(const Tensor &x, const Tensor &x0, const Tensor &a, const Tensor &b, Tensor &z, Tensor &logdet) {
    fail(Status::unsupported, "radial_forward: not yet implemented on CUDA");
}

void CudaBackend::radial_inverse(const Tensor &z, const Tensor &x0, const Tensor &a, const Tensor &b, Tensor &x, Tensor &logdet) {
    fail(Status::unsupported, "radial_inverse: not yet implemented on CUDA");
}

void CudaBackend::radial_backward(const Tensor &x, const Tensor &x0, const Tensor &a, const Tensor &b, const Tensor &dz, const Tensor &dlogdet, Tensor &dx, Tensor &dx0, Tensor &da, Tensor &db) {
    fail(Status::unsupported, "radial_backward: not yet implemented on CUDA");
}

void CudaBackend::mog_log_prob(const Tensor &z, const Tensor &logits, const Tensor &means, const Tensor &log_scales, Tensor &out) {
    fail(Status::unsupported, "mog_log_prob: not yet implemented on CUDA");
}

void CudaBackend::mog_log_prob_backward(const Tensor &z, const Tensor &logits, const Tensor &means, const Tensor &log_scales, const Tensor &dlogp, Tensor &dz, Tensor &dlogits, Tensor &dmeans, Tensor &dlog_scales) {
    fail(Status::unsupported, "mog_log_prob_backward: not yet implemented on CUDA");
}

void CudaBackend::mog_sample(Tensor &z, const Tensor &logits, const Tensor &means, const Tensor &log_scales, uint64_t seed, uint64_t stream, float temperature) {
    fail(Status::unsupported, "mog_sample: not yet implemented on CUDA");
}

} // namespace flow
