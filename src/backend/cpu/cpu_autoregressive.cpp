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
    const char *op = "made_affine_forward";
    check_made(x, h, z, op);
    op_check(logdet.size() == x.rows(), op, "per-row tensor length != rows");
    const float *px = op_f32(x, op), *ph = op_f32(h, op);
    float *pz = op_f32(z, op), *pl = op_f32(logdet, op);
    const size_t D = x.cols();
    ar_parallel_for(x.rows(), D, [&](size_t i) {
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
    check_made(z, h, x, op);
    op_check(column < (long)z.cols(), op, "column out of range");
    if (logdet) op_check(logdet->size() == z.rows(), op, "per-row tensor length != rows");
    const float *pz = op_f32(z, op), *ph = op_f32(h, op);
    float *px = op_f32(x, op), *pl = logdet ? op_f32(*logdet, op) : nullptr;
    const size_t D = z.cols();
    ar_parallel_for(z.rows(), D, [&](size_t i) {
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
    const char *op = "made_affine_backward";
    check_made(x, h, dz, op);
    check_made(x, h, dx, op);
    op_check(dh.rows() == x.rows() && dh.cols() == 2 * x.cols(), op, "dh must be [n, 2D]");
    if (dlogdet) op_check(dlogdet->size() == x.rows(), op, "per-row tensor length != rows");
    const float *px = op_f32(x, op), *ph = op_f32(h, op), *pdz = op_f32(dz, op);
    const float *pdl = dlogdet ? op_f32(*dlogdet, op) : nullptr;
    float *pdx = op_f32(dx, op), *pdh = op_f32(dh, op);
    const size_t D = x.cols();
    ar_parallel_for(x.rows(), D, [&](size_t i) {
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
