// PLACEHOLDER: being written. Every op here fails until it has its kernel.
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_launch.h"

namespace flow {

void CudaBackend::made_mog_log_prob(const Tensor &z, const Tensor &h, Tensor &out) {
    fail(Status::unsupported, "made_mog_log_prob: not yet implemented on CUDA");
}

void CudaBackend::made_mog_log_prob_backward(const Tensor &z, const Tensor &h, const Tensor &dlogp, Tensor &dz, Tensor &dh) {
    fail(Status::unsupported, "made_mog_log_prob_backward: not yet implemented on CUDA");
}

void CudaBackend::made_mog_sample(Tensor &z, const Tensor &h, size_t column, uint64_t seed, uint64_t stream, float temperature, const Tensor *member, size_t members, size_t member_id) {
    fail(Status::unsupported, "made_mog_sample: not yet implemented on CUDA");
}

void CudaBackend::log_mean_exp(const Tensor &lp, Tensor &out) {
    fail(Status::unsupported, "log_mean_exp: not yet implemented on CUDA");
}

void CudaBackend::log_mean_exp_backward(const Tensor &lp, const Tensor &out, const Tensor &dout, Tensor &dlp) {
    fail(Status::unsupported, "log_mean_exp_backward: not yet implemented on CUDA");
}

} // namespace flow
