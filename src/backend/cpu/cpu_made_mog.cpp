// CPU ops of the MADE mixture-of-Gaussians base (MADE MoG, MAF MoG): per
// dimension d a mixture of C Gaussians whose logits, means and log-scales are
// a MADE's outputs. Plain loops over rows, spread over OpenMP threads; the
// log-sum-exps and per-row sums are in double.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/philox.h"

namespace flow {

namespace {

constexpr size_t kMogParallelWork = 1 << 15;
constexpr double kHalfLog2Pi = 0.91893853320467274178;

template <class Body> void mog_parallel_for(size_t n, size_t cost, Body &&body) {
    cpu_parallel_for(n, cost, kMogParallelWork, body);
}

// log of the mixture density of dimension d of row hi at value z; r[c] gets
// the responsibilities and lw[c] the log-weights (both C long).
double mog_dim_log_prob(const float *hi, size_t C, size_t D, size_t d, double z, double *r,
                        double *lw) {
    // log-softmax of the logits
    double mx = -INFINITY;
    for (size_t c = 0; c < C; ++c) mx = std::fmax(mx, (double)hi[c * D + d]);
    double se = 0.0;
    for (size_t c = 0; c < C; ++c) se += std::exp((double)hi[c * D + d] - mx);
    const double lse_logits = mx + std::log(se);
    double mj = -INFINITY;
    double *t = r;
    for (size_t c = 0; c < C; ++c) {
        const double w = (double)hi[c * D + d] - lse_logits;
        lw[c] = w;
        const double ls = hi[(2 * C + c) * D + d];
        const double u = (z - (double)hi[(C + c) * D + d]) * std::exp(-ls);
        t[c] = w - 0.5 * u * u - ls - kHalfLog2Pi;
        mj = std::fmax(mj, t[c]);
    }
    double s = 0.0;
    for (size_t c = 0; c < C; ++c) s += std::exp(t[c] - mj);
    const double lp = mj + std::log(s);
    for (size_t c = 0; c < C; ++c) r[c] = std::exp(t[c] - lp);
    return lp;
}

} // namespace

void CpuBackend::made_mog_log_prob(const Tensor &z, const Tensor &h, Tensor &out) {
    const MadeMogLogProbArgs a = made_mog_log_prob_args(z, h, out, "made_mog_log_prob");
    const float *pz = a.in.z, *ph = a.in.h;
    float *po = a.out;
    const size_t D = a.in.dims, C = a.in.components;
    mog_parallel_for(a.in.rows, 3 * C * D, [&](size_t i) {
        const float *hi = ph + i * 3 * C * D;
        std::vector<double> r(C), lw(C);
        double s = 0.0;
        for (size_t d = 0; d < D; ++d)
            s += mog_dim_log_prob(hi, C, D, d, (double)pz[i * D + d], r.data(), lw.data());
        po[i] = (float)s;
    });
}

void CpuBackend::made_mog_log_prob_backward(const Tensor &z, const Tensor &h,
                                            const Tensor &dlogp, Tensor &dz, Tensor &dh) {
    const MadeMogBackwardArgs a =
        made_mog_backward_args(z, h, dlogp, dz, dh, "made_mog_log_prob_backward");
    const float *pz = a.in.z, *ph = a.in.h, *pg = a.dlogp;
    float *pdz = a.dz, *pdh = a.dh;
    const size_t D = a.in.dims, C = a.in.components;
    mog_parallel_for(a.in.rows, 3 * C * D, [&](size_t i) {
        const float *hi = ph + i * 3 * C * D;
        float *dhi = pdh + i * 3 * C * D;
        const double g = pg[i];
        std::vector<double> r(C), lw(C);
        for (size_t d = 0; d < D; ++d) {
            const double zv = pz[i * D + d];
            mog_dim_log_prob(hi, C, D, d, zv, r.data(), lw.data());
            double dzd = 0.0;
            for (size_t c = 0; c < C; ++c) {
                const double ls = hi[(2 * C + c) * D + d];
                const double inv = std::exp(-ls);
                const double u = (zv - (double)hi[(C + c) * D + d]) * inv;
                // d/dlogit = r - pi, d/dmean = r u / s, d/dlog_scale = r (u^2 - 1)
                dhi[c * D + d] = (float)(g * (r[c] - std::exp(lw[c])));
                dhi[(C + c) * D + d] = (float)(g * r[c] * u * inv);
                dhi[(2 * C + c) * D + d] = (float)(g * r[c] * (u * u - 1.0));
                dzd -= r[c] * u * inv;
            }
            pdz[i * D + d] = (float)(g * dzd);
        }
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
        if (pm) {
            const float m = std::floor(pm[i]);
            const size_t k = m <= 0.0f ? 0 : std::min((size_t)m, members - 1);
            if (k != member_id) return;
        }
        const float *hi = ph + i * 3 * C * D;
        const PhiloxBlock b = philox4x32_10(seed, stream, i * D + d);
        const double u = philox_uniform(b.v[2]);
        double mx = -INFINITY;
        for (size_t c = 0; c < C; ++c) mx = std::fmax(mx, (double)hi[c * D + d]);
        double total = 0.0;
        for (size_t c = 0; c < C; ++c) total += std::exp((double)hi[c * D + d] - mx);
        size_t k = 0;
        double cum = 0.0;
        for (; k + 1 < C; ++k) {
            cum += std::exp((double)hi[k * D + d] - mx) / total;
            if (u < cum) break;
        }
        const double e = philox_normal(b);
        pz[i * D + d] = (float)((double)hi[(C + k) * D + d] +
                                (double)temperature * std::exp((double)hi[(2 * C + k) * D + d]) * e);
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
