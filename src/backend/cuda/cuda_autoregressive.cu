// PLACEHOLDER: being written. Every op here fails until it has its kernel.
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_launch.h"

namespace flow {

void CudaBackend::mul_elementwise(const Tensor &a, const Tensor &b, Tensor &y, bool accumulate) {
    fail(Status::unsupported, "mul_elementwise: not yet implemented on CUDA");
}

void CudaBackend::made_affine_forward(const Tensor &x, const Tensor &h, Tensor &z, Tensor &logdet) {
    fail(Status::unsupported, "made_affine_forward: not yet implemented on CUDA");
}

void CudaBackend::made_affine_inverse(const Tensor &z, const Tensor &h, Tensor &x, Tensor *logdet, long column) {
    fail(Status::unsupported, "made_affine_inverse: not yet implemented on CUDA");
}

void CudaBackend::made_affine_backward(const Tensor &x, const Tensor &h, const Tensor &dz, const Tensor *dlogdet, Tensor &dx, Tensor &dh) {
    fail(Status::unsupported, "made_affine_backward: not yet implemented on CUDA");
}

} // namespace flow
