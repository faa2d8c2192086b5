// CPU ops of the MADE mixture-of-Gaussians base (MADE MoG, MAF MoG): per
// dimension d a mixture of C Gaussians whose logits, means and log-scales are
// a MADE's outputs. Rows spread over OpenMP threads. The density and its
// gradient run on cpu_kernels' vectorized float row kernels; sampling (one
// dimension a pass) and the ensemble's log-mean-exp on the double math of
// backend/made_mog_math.h, shared with the CUDA backend.
#include <cmath>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "backend/made_mog_math.h"

namespace flow {

namespace {

constexpr size_t kMogParallelWork = 1 << 15;

template <class Body> void mog_parallel_for(size_t n, size_t cost, Body &&body) {
    cpu_parallel_for(n, cost, kMogParallelWork, body);
}

// body(r0, r1) over blocks of rows, each row costing `cost`.
template <class Body> void mog_parallel_rows(size_t n, size_t cost, Body &&body) {
    cpu_parallel_rows(n, 16, cost, kMogParallelWork, body);
}

} // namespace

void CpuBackend::made_mog_log_prob(const Tensor &z, const Tensor &h, Tensor &out) {
    const MadeMogLogProbArgs a = made_mog_log_prob_args(z, h, out, "made_mog_log_prob");
    const float *pz = a.in.z, *ph = a.in.h;
    float *po = a.out;
    const size_t D = a.in.dims, C = a.in.components;
    mog_parallel_rows(a.in.rows, 3 * C * D, [&](size_t r0, size_t r1) {
        cpu_kernels::made_mog_log_prob_rows(pz, ph, po, C, D, r0, r1);
    });
}

void CpuBackend::made_mog_log_prob_backward(const Tensor &z, const Tensor &h,
                                            const Tensor &dlogp, Tensor &dz, Tensor &dh,
                                            Tensor *out) {
    const MadeMogBackwardArgs a =
        made_mog_backward_args(z, h, dlogp, dz, dh, out, "made_mog_log_prob_backward");
    const float *pz = a.in.z, *ph = a.in.h, *pg = a.dlogp;
    float *pdz = a.dz, *pdh = a.dh, *po = a.out;
    const size_t D = a.in.dims, C = a.in.components;
    mog_parallel_rows(a.in.rows, 3 * C * D, [&](size_t r0, size_t r1) {
        cpu_kernels::made_mog_log_prob_backward_rows(pz, ph, pg, pdz, pdh, po, C, D, r0, r1);
    });
}

void CpuBackend::made_mog_sample(Tensor &z, const Tensor &h, size_t column, uint64_t seed,
                                 uint64_t stream, float temperature, const Tensor *member,
                                 size_t members, size_t member_id) {
    const MadeMogSampleArgs a =
        made_mog_sample_args(z, h, column, member, members, "made_mog_sample");
    const float *ph = a.in.h, *pm = a.member;
    float *pz = a.z;
    const size_t D = a.in.dims, C = a.in.components, d = column;
    mog_parallel_for(a.in.rows, C, [&](size_t i) {
        if (pm && !made_mog_row_in_member(pm[i], members, member_id)) return;
        const MogDim m{ph + i * 3 * C * D, C, D, d};
        pz[i * D + d] = m.sample(philox4x32_10(seed, stream, i * D + d), temperature);
    });
}

void CpuBackend::log_mean_exp(const Tensor &lp, Tensor &out) {
    const char *op = "log_mean_exp";
    const size_t K = lp.rows(), n = lp.cols();
    op_check(K > 0 && out.size() == n, op, "lp must be [K, n], out [n]");
    const float *pl = op_f32(lp, op);
    float *po = op_f32(out, op);
    mog_parallel_for(n, K, [&](size_t i) {
        double mx = -INFINITY;
        for (size_t k = 0; k < K; ++k) mx = std::fmax(mx, (double)pl[k * n + i]);
        double s = 0.0;
        for (size_t k = 0; k < K; ++k) s += std::exp((double)pl[k * n + i] - mx);
        po[i] = (float)(mx + std::log(s / (double)K));
    });
}

void CpuBackend::log_mean_exp_backward(const Tensor &lp, const Tensor &out, const Tensor &dout,
                                       Tensor &dlp) {
    const char *op = "log_mean_exp_backward";
    const size_t K = lp.rows(), n = lp.cols();
    op_check(K > 0 && out.size() == n && dout.size() == n && dlp.size() == K * n, op,
              "lp, dlp must be [K, n], out and dout [n]");
    const float *pl = op_f32(lp, op), *po = op_f32(out, op), *pd = op_f32(dout, op);
    float *pg = op_f32(dlp, op);
    mog_parallel_for(n, K, [&](size_t i) {
        for (size_t k = 0; k < K; ++k)
            pg[k * n + i] =
                (float)((double)pd[i] * std::exp((double)pl[k * n + i] - po[i]) / (double)K);
    });
}

} // namespace flow
