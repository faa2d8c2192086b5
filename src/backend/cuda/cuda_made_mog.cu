// CUDA ops of the MADE mixture-of-Gaussians base (MADE MoG, MAF MoG), as
// cpu_made_mog.cpp: per dimension d a mixture of C Gaussians whose logits,
// means and log-scales are a MADE's outputs. The log-sum-exps and per-row
// sums are in double; the math is backend/made_mog_math.h, shared with the
// CPU.
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_launch.h"
#include "backend/made_mog_math.h"

namespace flow {

void CudaBackend::made_mog_log_prob(const Tensor &z, const Tensor &h, Tensor &out) {
    const MadeMogLogProbArgs a = made_mog_log_prob_args(z, h, out, "made_mog_log_prob");
    const float *pz = a.in.z, *ph = a.in.h;
    float *po = a.out;
    const size_t D = a.in.dims, C = a.in.components;
    cuda_for_each(a.in.rows, [=] __device__(size_t i) {
        po[i] = (float)made_mog_row_log_prob(ph + i * 3 * C * D, pz + i * D, C, D);
    });
}

// out by the density kernel, in a pass of its own: that kernel runs a thread
// per row (adding its dimensions in double), this one a thread per (row,
// dimension).
void CudaBackend::made_mog_log_prob_backward(const Tensor &z, const Tensor &h,
                                             const Tensor &dlogp, Tensor &dz, Tensor &dh,
                                             Tensor *out) {
    const MadeMogBackwardArgs a =
        made_mog_backward_args(z, h, dlogp, dz, dh, out, "made_mog_log_prob_backward");
    if (out) made_mog_log_prob(z, h, *out);
    const float *pz = a.in.z, *ph = a.in.h, *pg = a.dlogp;
    float *pdz = a.dz, *pdh = a.dh;
    const size_t D = a.in.dims, C = a.in.components;
    // one thread per (row, dimension): they write disjoint entries of dz and dh
    cuda_for_each(a.in.rows * D, [=] __device__(size_t t) {
        const size_t i = t / D, d = t % D;
        const MogDim m{ph + i * 3 * C * D, C, D, d};
        pdz[t] = (float)m.backward(pz[t], pg[i], pdh + i * 3 * C * D);
    });
}

void CudaBackend::made_mog_sample(Tensor &z, const Tensor &h, size_t column, uint64_t seed,
                                  uint64_t stream, float temperature, const Tensor *member,
                                  size_t members, size_t member_id) {
    const MadeMogSampleArgs a =
        made_mog_sample_args(z, h, column, member, members, "made_mog_sample");
    const float *ph = a.in.h, *pm = a.member;
    float *pz = a.z;
    const size_t D = a.in.dims, C = a.in.components, d = column;
    cuda_for_each(a.in.rows, [=] __device__(size_t i) {
        if (pm && !made_mog_row_in_member(pm[i], members, member_id)) return;
        const MogDim m{ph + i * 3 * C * D, C, D, d};
        pz[i * D + d] = m.sample(philox4x32_10(seed, stream, i * D + d), temperature);
    });
}

void CudaBackend::log_mean_exp(const Tensor &lp, Tensor &out) {
    const char *op = "log_mean_exp";
    const size_t K = lp.rows(), n = lp.cols();
    op_check(K > 0 && out.size() == n, op, "lp must be [K, n], out [n]");
    const float *pl = op_f32(lp, op);
    float *po = op_f32(out, op);
    cuda_for_each(n, [=] __device__(size_t i) {
        double mx = -INFINITY;
        for (size_t k = 0; k < K; ++k) mx = fmax(mx, (double)pl[k * n + i]);
        double s = 0.0;
        for (size_t k = 0; k < K; ++k) s += exp((double)pl[k * n + i] - mx);
        po[i] = (float)(mx + log(s / (double)K));
    });
}

void CudaBackend::log_mean_exp_backward(const Tensor &lp, const Tensor &out, const Tensor &dout,
                                        Tensor &dlp) {
    const char *op = "log_mean_exp_backward";
    const size_t K = lp.rows(), n = lp.cols();
    op_check(K > 0 && out.size() == n && dout.size() == n && dlp.size() == K * n, op,
                 "lp, dlp must be [K, n], out and dout [n]");
    const float *pl = op_f32(lp, op), *po = op_f32(out, op), *pd = op_f32(dout, op);
    float *pg = op_f32(dlp, op);
    cuda_for_each(K * n, [=] __device__(size_t t) {
        const size_t i = t % n;
        pg[t] = (float)((double)pd[i] * exp((double)pl[t] - (double)po[i]) / (double)K);
    });
}

} // namespace flow
