// CUDA ops of the autoregressive flows (MADE / MAF / IAF): masked weights and the Gaussian layer.
#include <cmath>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_launch.h"

namespace flow {

void CudaBackend::mul_elementwise(const Tensor &a, const Tensor &b, Tensor &y, bool accumulate) {
    const char *op = "mul_elementwise";
    op_check(a.size() == b.size() && a.size() == y.size(), op, "size mismatch");
    const float *pa = op_f32(a, op), *pb = op_f32(b, op);
    float *py = op_f32(y, op); // may alias pa or pb: element k is read before it is written
    cuda_for_each(a.size(), [=] __device__(size_t k) {
        py[k] = (accumulate ? py[k] : 0.0f) + pa[k] * pb[k];
    });
}

// One thread per row: h's row holds mu then alpha, the log-det sums in double.
void CudaBackend::made_affine_forward(const Tensor &x, const Tensor &h, Tensor &z,
                                      Tensor &logdet) {
    const MadeAffineArgs a = made_affine_args(x, h, z, &logdet, "made_affine_forward");
    const float *px = a.in, *ph = a.h;
    float *pz = a.out, *pl = a.logdet;
    const size_t D = a.cols;
    cuda_for_each(a.rows, [=] __device__(size_t i) {
        const float *mu = ph + i * 2 * D, *alpha = mu + D;
        double s = 0.0;
        for (size_t j = 0; j < D; ++j) {
            pz[i * D + j] = (px[i * D + j] - mu[j]) * expf(-alpha[j]);
            s += alpha[j];
        }
        pl[i] -= (float)s;
    });
}

void CudaBackend::made_affine_inverse(const Tensor &z, const Tensor &h, Tensor &x,
                                      Tensor *logdet, long column) {
    const char *op = "made_affine_inverse";
    const MadeAffineArgs a = made_affine_args(z, h, x, logdet, op);
    op_check(column < (long)a.cols, op, "column out of range");
    const float *pz = a.in, *ph = a.h;
    float *px = a.out, *pl = a.logdet;
    const size_t D = a.cols;
    // The columns written: all, or only `column`.
    const size_t j0 = column >= 0 ? (size_t)column : 0, j1 = column >= 0 ? j0 + 1 : D;
    cuda_for_each(a.rows, [=] __device__(size_t i) {
        const float *mu = ph + i * 2 * D, *alpha = mu + D;
        for (size_t j = j0; j < j1; ++j) px[i * D + j] = pz[i * D + j] * expf(alpha[j]) + mu[j];
        if (pl) {
            double s = 0.0;
            for (size_t j = 0; j < D; ++j) s += alpha[j];
            pl[i] += (float)s;
        }
    });
}

void CudaBackend::made_affine_backward(const Tensor &x, const Tensor &h, const Tensor &dz,
                                       const Tensor *dlogdet, Tensor &dx, Tensor &dh) {
    const MadeAffineBackwardArgs a =
        made_affine_backward_args(x, h, dz, dlogdet, dx, dh, "made_affine_backward");
    const float *px = a.x, *ph = a.h, *pdz = a.dz, *pdl = a.dlogdet;
    float *pdx = a.dx, *pdh = a.dh;
    const size_t D = a.cols;
    cuda_for_each(a.rows * D, [=] __device__(size_t k) {
        const size_t i = k / D, j = k % D;
        const float mu = ph[i * 2 * D + j], alpha = ph[i * 2 * D + D + j];
        const float e = expf(-alpha);
        const float z = (px[k] - mu) * e, g = pdz[k];
        pdx[k] = g * e;
        pdh[i * 2 * D + j] = -g * e;
        pdh[i * 2 * D + D + j] = -g * z - (pdl ? pdl[i] : 0.0f);
    });
}

} // namespace flow
