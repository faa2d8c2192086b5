// CPU ops of the autoregressive flows (MADE / MAF / IAF): masked weights and
// the Gaussian autoregressive layer z = (x - mu) * exp(-alpha), whose row
// kernels are in cpu_kernels.cpp, spread over OpenMP threads.
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_kernels.h"

namespace flow {

namespace {

// Below this much work a loop stays on one thread.
constexpr size_t kArParallelWork = 1 << 15;

// body(r0, r1) over blocks of 64 rows of width cols.
template <class Body> void ar_parallel_rows(size_t rows, size_t cols, Body &&body) {
    cpu_parallel_rows(rows, 64, cols, kArParallelWork, body);
}

} // namespace

void CpuBackend::mul_elementwise(const Tensor &a, const Tensor &b, Tensor &y, bool accumulate) {
    const char *op = "mul_elementwise";
    op_check(a.size() == b.size() && a.size() == y.size(), op, "size mismatch");
    const float *pa = op_f32(a, op), *pb = op_f32(b, op);
    float *py = op_f32(y, op);
    const size_t n = a.size();
    if (accumulate)
        for (size_t k = 0; k < n; ++k) py[k] += pa[k] * pb[k];
    else
        for (size_t k = 0; k < n; ++k) py[k] = pa[k] * pb[k];
}

void CpuBackend::made_affine_forward(const Tensor &x, const Tensor &h, Tensor &z,
                                     Tensor &logdet) {
    const MadeAffineArgs a = made_affine_args(x, h, z, &logdet, "made_affine_forward");
    ar_parallel_rows(a.rows, a.cols, [&](size_t r0, size_t r1) {
        cpu_kernels::made_affine_forward_rows(a.in, a.h, a.out, a.logdet, a.cols, r0, r1);
    });
}

void CpuBackend::made_affine_inverse(const Tensor &z, const Tensor &h, Tensor &x,
                                     Tensor *logdet, long column) {
    const char *op = "made_affine_inverse";
    const MadeAffineArgs a = made_affine_args(z, h, x, logdet, op);
    op_check(column < (long)a.cols, op, "column out of range");
    ar_parallel_rows(a.rows, a.cols, [&](size_t r0, size_t r1) {
        cpu_kernels::made_affine_inverse_rows(a.in, a.h, a.out, a.logdet, column, a.cols, r0, r1);
    });
}

void CpuBackend::made_affine_backward(const Tensor &x, const Tensor &h, const Tensor &dz,
                                      const Tensor *dlogdet, Tensor &dx, Tensor &dh) {
    const MadeAffineBackwardArgs a =
        made_affine_backward_args(x, h, dz, dlogdet, dx, dh, "made_affine_backward");
    ar_parallel_rows(a.rows, a.cols, [&](size_t r0, size_t r1) {
        cpu_kernels::made_affine_backward_rows(a.x, a.h, a.dz, a.dlogdet, a.dx, a.dh, a.cols, r0,
                                               r1);
    });
}

} // namespace flow
