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
#pragma omp parallel for schedule(static) if (n * cost > kArParallelWork)
    for (size_t i = 0; i < n; ++i) body(i);
}

void ar_check_made(const Tensor &x, const Tensor &h, const Tensor &out, const char *op) {
    cpu_check(h.rows() == x.rows() && h.cols() == 2 * x.cols(), op, "h must be [n, 2D]");
    cpu_check(out.rows() == x.rows() && out.cols() == x.cols(), op, "shape mismatch");
}

} // namespace

void CpuBackend::mul_elementwise(const Tensor &a, const Tensor &b, Tensor &y, bool accumulate) {
    const char *op = "mul_elementwise";
    cpu_check(a.size() == b.size() && a.size() == y.size(), op, "size mismatch");
    const float *pa = cpu_f32(a, op), *pb = cpu_f32(b, op);
    float *py = cpu_f32(y, op);
    const size_t n = a.size();
    if (accumulate)
        for (size_t k = 0; k < n; ++k) py[k] += pa[k] * pb[k];
    else
        for (size_t k = 0; k < n; ++k) py[k] = pa[k] * pb[k];
}

void CpuBackend::made_affine_forward(const Tensor &x, const Tensor &h, Tensor &z,
                                     Tensor &logdet) {
    const char *op = "made_affine_forward";
    ar_check_made(x, h, z, op);
    cpu_check(logdet.size() == x.rows(), op, "per-row tensor length != rows");
    const float *px = cpu_f32(x, op), *ph = cpu_f32(h, op);
    float *pz = cpu_f32(z, op), *pl = cpu_f32(logdet, op);
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
    ar_check_made(z, h, x, op);
    cpu_check(column < (long)z.cols(), op, "column out of range");
    if (logdet) cpu_check(logdet->size() == z.rows(), op, "per-row tensor length != rows");
    const float *pz = cpu_f32(z, op), *ph = cpu_f32(h, op);
    float *px = cpu_f32(x, op), *pl = logdet ? cpu_f32(*logdet, op) : nullptr;
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
    ar_check_made(x, h, dz, op);
    ar_check_made(x, h, dx, op);
    cpu_check(dh.rows() == x.rows() && dh.cols() == 2 * x.cols(), op, "dh must be [n, 2D]");
    if (dlogdet) cpu_check(dlogdet->size() == x.rows(), op, "per-row tensor length != rows");
    const float *px = cpu_f32(x, op), *ph = cpu_f32(h, op), *pdz = cpu_f32(dz, op);
    const float *pdl = dlogdet ? cpu_f32(*dlogdet, op) : nullptr;
    float *pdx = cpu_f32(dx, op), *pdh = cpu_f32(dh, op);
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
