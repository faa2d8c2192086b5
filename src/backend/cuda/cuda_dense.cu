// PLACEHOLDER: being written. Every op here fails until it has its kernel.
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_launch.h"

namespace flow {

void CudaBackend::add_row_vector(Tensor &y, const Tensor &v) {
    fail(Status::unsupported, "add_row_vector: not yet implemented on CUDA");
}

void CudaBackend::sum_rows(const Tensor &x, Tensor &out, bool accumulate) {
    fail(Status::unsupported, "sum_rows: not yet implemented on CUDA");
}

void CudaBackend::mul_row_vector(const Tensor &x, const Tensor &v, Tensor &y, bool accumulate) {
    fail(Status::unsupported, "mul_row_vector: not yet implemented on CUDA");
}

void CudaBackend::axpy(float alpha, const Tensor &x, Tensor &y) {
    fail(Status::unsupported, "axpy: not yet implemented on CUDA");
}

void CudaBackend::scale(Tensor &x, float alpha) {
    fail(Status::unsupported, "scale: not yet implemented on CUDA");
}

void CudaBackend::concat_cols(const Tensor &a, const Tensor &b, Tensor &out) {
    fail(Status::unsupported, "concat_cols: not yet implemented on CUDA");
}

void CudaBackend::slice_cols(const Tensor &x, size_t begin, Tensor &out) {
    fail(Status::unsupported, "slice_cols: not yet implemented on CUDA");
}

void CudaBackend::gather_cols(const Tensor &x, const Tensor &index, Tensor &y) {
    fail(Status::unsupported, "gather_cols: not yet implemented on CUDA");
}

void CudaBackend::add_scalar(Tensor &y, float c) {
    fail(Status::unsupported, "add_scalar: not yet implemented on CUDA");
}

void CudaBackend::add_vector_sum(Tensor &per_row, const Tensor &v, float sign) {
    fail(Status::unsupported, "add_vector_sum: not yet implemented on CUDA");
}

void CudaBackend::activation_forward(Activation act, const Tensor &x, Tensor &y) {
    fail(Status::unsupported, "activation_forward: not yet implemented on CUDA");
}

void CudaBackend::activation_backward(Activation act, const Tensor &x, const Tensor &y, const Tensor &dy, Tensor &dx) {
    fail(Status::unsupported, "activation_backward: not yet implemented on CUDA");
}

double CudaBackend::sum(const Tensor &x) {
    fail(Status::unsupported, "sum: not yet implemented on CUDA");
}

double CudaBackend::sum_squares(const Tensor &x) {
    fail(Status::unsupported, "sum_squares: not yet implemented on CUDA");
}

bool CudaBackend::all_finite(const Tensor &x) {
    fail(Status::unsupported, "all_finite: not yet implemented on CUDA");
}

} // namespace flow
