// The per-dimension math of the MADE mixture-of-Gaussians base (FLOW_HD:
// host and device): the CUDA backend's, and the CPU's for sampling (its
// density and gradient run on vectorized float kernels, cpu_kernels.cpp,
// which tests/test_cpu_ops.cpp checks against this). Dimension d of a row hi
// of h [n, 3 C D] is a mixture of C Gaussians: component c's logit, mean and
// log-scale are hi[c D + d], hi[(C + c) D + d] and hi[(2 C + c) D + d]. All
// in double; no per-component arrays, so a GPU thread needs no local memory
// (each pass over the components recomputes their terms).
#pragma once

#include <cmath>
#include <cstddef>

#include "backend/philox.h"

namespace flow {

struct MogDim {
    static constexpr double kHalfLog2Pi = 0.91893853320467274178;

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
    // Writes g * d(log_prob)/d(logit, mean, log-scale) of every component
    // into dhi (a row of dh, laid out as hi) and returns g * d(log_prob)/dz.
    FLOW_HD double backward(double z, double g, float *dhi) const {
        const double lse = logit_lse(), lp = log_prob(z, lse);
        double dz = 0.0;
        for (size_t c = 0; c < C; ++c) {
            const double r = exp(component(c, z, lse) - lp); // responsibility
            const double inv = exp(-log_scale(c)), u = (z - mean(c)) * inv;
            // d/dlogit = r - pi, d/dmean = r u / s, d/dlog_scale = r (u^2 - 1)
            dhi[c * D + d] = (float)(g * (r - exp(logit(c) - lse)));
            dhi[(C + c) * D + d] = (float)(g * r * u * inv);
            dhi[(2 * C + c) * D + d] = (float)(g * r * (u * u - 1.0));
            dz -= r * u * inv;
        }
        return g * dz;
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
    // A draw from Philox block b: the component from b.v[2], then
    // mean + temperature * scale * N(0, 1) with the normal of b.v[0], b.v[1].
    FLOW_HD float sample(PhiloxBlock b, float temperature) const {
        const size_t k = pick(philox_uniform(b.v[2]));
        return (float)(mean(k) + (double)temperature * exp(log_scale(k)) * philox_normal(b));
    }
};

// The sum over the D dimensions of row hi's mixture log-densities at zi.
FLOW_HD double made_mog_row_log_prob(const float *hi, const float *zi, size_t C, size_t D) {
    double s = 0.0;
    for (size_t d = 0; d < D; ++d) {
        const MogDim m{hi, C, D, d};
        s += m.log_prob(zi[d], m.logit_lse());
    }
    return s;
}

// Whether row i of a sampling ensemble belongs to member `member_id`:
// member[i] holds K u, u uniform, clamped to [0, members - 1].
FLOW_HD bool made_mog_row_in_member(float draw, size_t members, size_t member_id) {
    const float f = floorf(draw);
    const size_t k = f <= 0.0f ? 0 : ((size_t)f < members - 1 ? (size_t)f : members - 1);
    return k == member_id;
}

} // namespace flow
