// CpuBackend::gemm, the only Eigen user: with EIGEN_USE_BLAS, Eigen forwards
// large products to the system's sgemm and keeps tiny ones inline, which beats
// calling BLAS for the 2-to-64-wide matrices of small flows.
#ifndef EIGEN_USE_BLAS
#define EIGEN_USE_BLAS
#endif
#include <Eigen/Core>

#include "backend/cpu/cpu_backend.h"

namespace flow {

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

void CpuBackend::gemm(bool trans_a, bool trans_b, float alpha, const Tensor &a,
                      const Tensor &b, float beta, Tensor &c) {
    const char *op = "gemm";
    const size_t a_rows = a.rows(), a_cols = a.cols();
    const size_t b_rows = b.rows(), b_cols = b.cols();
    const size_t m = trans_a ? a_cols : a_rows, k = trans_a ? a_rows : a_cols;
    const size_t n = trans_b ? b_rows : b_cols;
    cpu_check((trans_b ? b_cols : b_rows) == k, op, "inner dimensions differ");
    cpu_check(c.rows() == m && c.cols() == n, op, "output shape mismatch");

    Eigen::Map<const RowMajor> A(cpu_f32(a, op), a_rows, a_cols);
    Eigen::Map<const RowMajor> B(cpu_f32(b, op), b_rows, b_cols);
    Eigen::Map<RowMajor> C(cpu_f32(c, op), m, n);

    auto multiply = [&](const auto &op_a, const auto &op_b) {
        // Plain assignment for beta == 0: c's old contents (even NaN) are never read.
        if (beta == 0.0f) {
            C.noalias() = alpha * op_a * op_b;
            return;
        }
        if (beta != 1.0f) C *= beta;
        C.noalias() += alpha * op_a * op_b;
    };
    if (!trans_a && !trans_b)
        multiply(A, B);
    else if (trans_a && !trans_b)
        multiply(A.transpose(), B);
    else if (!trans_a && trans_b)
        multiply(A, B.transpose());
    else
        multiply(A.transpose(), B.transpose());
}

} // namespace flow
