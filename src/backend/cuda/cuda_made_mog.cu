// CUDA ops of the MADE mixture-of-Gaussians base (MADE MoG, MAF MoG), as
// cpu_made_mog.cpp: per dimension d a mixture of C Gaussians whose logits,
// means and log-scales are a MADE's outputs. The log-sum-exps and per-row
// sums are in double. Threads keep no per-component arrays: each pass over
// the components recomputes their terms.
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_launch.h"
#include "backend/philox.h"

namespace flow {

namespace {

constexpr double kHalfLog2Pi = 0.91893853320467274178;

// Dimension d of one row hi of h: component c's logit, mean and log-scale
// are hi[c D + d], hi[(C + c) D + d] and hi[(2 C + c) D + d].
struct MogDim {
    const float *hi;
    size_t C, D, d;

    FLOW_HD double logit(size_t c) const { return hi[c * D + d]; }
    FLOW_HD double mean(size_t c) const { return hi[(C + c) * D + d]; }
    FLOW_HD double log_scale(size_t c) const { return hi[(2 * C + c) * D + d]; }

    FLOW_HD double max_logit() const {
        double mx = -INFINITY;
        for (size_t c = 0; c < C; ++c) mx = fmax(mx, logit(c));
        return mx;
    }
    FLOW_HD double logit_lse() const {
        const double mx = max_logit();
        double s = 0.0;
        for (size_t c = 0; c < C; ++c) s += exp(logit(c) - mx);
        return mx + log(s);
    }
    // log pi_c + log N(z; mean_c, exp(log_scale_c)^2), lse = logit_lse().
    FLOW_HD double component(size_t c, double z, double lse) const {
        const double ls = log_scale(c), u = (z - mean(c)) * exp(-ls);
        return logit(c) - lse - 0.5 * u * u - ls - kHalfLog2Pi;
    }
    // log of the mixture density at z.
    FLOW_HD double log_prob(double z, double lse) const {
        double mx = -INFINITY;
        for (size_t c = 0; c < C; ++c) mx = fmax(mx, component(c, z, lse));
        double s = 0.0;
        for (size_t c = 0; c < C; ++c) s += exp(component(c, z, lse) - mx);
        return mx + log(s);
    }
    // The component whose cumulative softmax weight first exceeds u.
    FLOW_HD size_t pick(double u) const {
        const double mx = max_logit();
        double total = 0.0;
        for (size_t c = 0; c < C; ++c) total += exp(logit(c) - mx);
        size_t k = 0;
        double cum = 0.0;
        for (; k + 1 < C; ++k) {
            cum += exp(logit(k) - mx) / total;
            if (u < cum) break;
        }
        return k;
    }
};

} // namespace

void CudaBackend::made_mog_log_prob(const Tensor &z, const Tensor &h, Tensor &out) {
    const MadeMogLogProbArgs a = made_mog_log_prob_args(z, h, out, "made_mog_log_prob");
    const float *pz = a.in.z, *ph = a.in.h;
    float *po = a.out;
    const size_t D = a.in.dims, C = a.in.components;
    cuda_for_each(a.in.rows, [=] __device__(size_t i) {
        double s = 0.0;
        for (size_t d = 0; d < D; ++d) {
            const MogDim m{ph + i * 3 * C * D, C, D, d};
            s += m.log_prob(pz[i * D + d], m.logit_lse());
        }
        po[i] = (float)s;
    });
}

void CudaBackend::made_mog_log_prob_backward(const Tensor &z, const Tensor &h,
                                             const Tensor &dlogp, Tensor &dz, Tensor &dh) {
    const MadeMogBackwardArgs a =
        made_mog_backward_args(z, h, dlogp, dz, dh, "made_mog_log_prob_backward");
    const float *pz = a.in.z, *ph = a.in.h, *pg = a.dlogp;
    float *pdz = a.dz, *pdh = a.dh;
    const size_t D = a.in.dims, C = a.in.components;
    // one thread per (row, dimension): they write disjoint entries of dz and dh
    cuda_for_each(a.in.rows * D, [=] __device__(size_t t) {
        const size_t i = t / D, d = t % D;
        const MogDim m{ph + i * 3 * C * D, C, D, d};
        float *dhi = pdh + i * 3 * C * D;
        const double g = pg[i], zv = pz[t], lse = m.logit_lse(), lp = m.log_prob(zv, lse);
        double dzd = 0.0;
        for (size_t c = 0; c < C; ++c) {
            const double r = exp(m.component(c, zv, lse) - lp); // responsibility
            const double inv = exp(-m.log_scale(c)), u = (zv - m.mean(c)) * inv;
            // d/dlogit = r - pi, d/dmean = r u / s, d/dlog_scale = r (u^2 - 1)
            dhi[c * D + d] = (float)(g * (r - exp(m.logit(c) - lse)));
            dhi[(C + c) * D + d] = (float)(g * r * u * inv);
            dhi[(2 * C + c) * D + d] = (float)(g * r * (u * u - 1.0));
            dzd -= r * u * inv;
        }
        pdz[t] = (float)(g * dzd);
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
        if (pm) {
            const float f = floorf(pm[i]);
            const size_t k = f <= 0.0f ? 0 : ((size_t)f < members - 1 ? (size_t)f : members - 1);
            if (k != member_id) return;
        }
        const MogDim m{ph + i * 3 * C * D, C, D, d};
        const PhiloxBlock b = philox4x32_10(seed, stream, i * D + d);
        const size_t k = m.pick(philox_uniform(b.v[2]));
        const double e = philox_normal(b);
        pz[i * D + d] = (float)(m.mean(k) + (double)temperature * exp(m.log_scale(k)) * e);
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
