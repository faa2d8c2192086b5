// CPU ops of the autoregressive flows (MADE / MAF / IAF): masked weights and
// the Gaussian autoregressive layer z = (x - mu) * exp(-alpha). Plain loops
// over rows, spread over OpenMP threads; per-row log-dets are summed in double.
#include <cmath>

#include "backend/cpu/cpu_backend.h"

namespace flow {

namespace {

// Below this much work a loop stays on one thread.
constexpr size_t kArParallelWork = 1 << 15;

template <class Body> void ar_parallel_for(size_t n, size_t cost, Body &&body) {
    cpu_parallel_for(n, cost, kArParallelWork, body);
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
    const float *px = a.in, *ph = a.h;
    float *pz = a.out, *pl = a.logdet;
    const size_t D = a.cols;
    ar_parallel_for(a.rows, D, [&](size_t i) {
        const float *mu = ph + i * 2 * D, *alpha = mu + D;
        double s = 0.0;
        for (size_t j = 0; j < D; ++j) {
            pz[i * D + j] = (px[i * D + j] - mu[j]) * std::exp(-alpha[j]);
            s += alpha[j];
        }
        pl[i] -= (float)s;
    });
}

void CpuBackend::made_affine_inverse(const Tensor &z, const Tensor &h, Tensor &x,
                                     Tensor *logdet, long column) {
    const char *op = "made_affine_inverse";
    const MadeAffineArgs a = made_affine_args(z, h, x, logdet, op);
    op_check(column < (long)a.cols, op, "column out of range");
    const float *pz = a.in, *ph = a.h;
    float *px = a.out, *pl = a.logdet;
    const size_t D = a.cols;
    ar_parallel_for(a.rows, D, [&](size_t i) {
        const float *mu = ph + i * 2 * D, *alpha = mu + D;
        double s = 0.0;
        if (column >= 0) {
            const size_t j = (size_t)column;
            px[i * D + j] = pz[i * D + j] * std::exp(alpha[j]) + mu[j];
        } else {
            for (size_t j = 0; j < D; ++j) px[i * D + j] = pz[i * D + j] * std::exp(alpha[j]) + mu[j];
        }
        if (pl) {
            for (size_t j = 0; j < D; ++j) s += alpha[j];
            pl[i] += (float)s;
        }
    });
}

void CpuBackend::made_affine_backward(const Tensor &x, const Tensor &h, const Tensor &dz,
                                      const Tensor *dlogdet, Tensor &dx, Tensor &dh) {
    const MadeAffineBackwardArgs a =
        made_affine_backward_args(x, h, dz, dlogdet, dx, dh, "made_affine_backward");
    const float *px = a.x, *ph = a.h, *pdz = a.dz, *pdl = a.dlogdet;
    float *pdx = a.dx, *pdh = a.dh;
    const size_t D = a.cols;
    ar_parallel_for(a.rows, D, [&](size_t i) {
        const float *mu = ph + i * 2 * D, *alpha = mu + D;
        float *dmu = pdh + i * 2 * D, *dalpha = dmu + D;
        const float dl = pdl ? pdl[i] : 0.0f;
        for (size_t j = 0; j < D; ++j) {
            const size_t k = i * D + j;
            const float e = std::exp(-alpha[j]);
            const float z = (px[k] - mu[j]) * e;
            pdx[k] = pdz[k] * e;
            dmu[j] = -pdz[k] * e;
            dalpha[j] = -pdz[k] * z - dl;
        }
    });
}

} // namespace flow
