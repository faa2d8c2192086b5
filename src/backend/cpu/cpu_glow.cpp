// CPU ops of the classic flows (planar, radial) and the mixture-of-Gaussians
// base; the math is backend/glow_math.h, shared with the CUDA backend.
//
// Planar and radial rows go in fixed chunks of kChunk rows, spread over
// threads. A chunk kernel runs each stage of the row op over all its rows
// (the row sums, then the per-row scalars, then the per-element loops): the
// row sums vectorize across columns, the scalars (tanh, log) across rows.
// Kernels are multiversioned (FLOW_CLONES) and flattened, so the shared
// math is inlined into every instruction-set clone. Parameter gradients are
// summed in double per chunk, then the chunks in order, so results do not
// depend on the thread count. The mixture of Gaussians runs row by row.

// Compiled with -fno-math-errno -fno-trapping-math (CMakeLists.txt).
#include <algorithm>
#include <cstdint>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_clones.h"
#include "backend/cpu/cpu_thread_buffer.h"
#include "backend/glow_math.h"

namespace flow {

namespace {

// Rows per chunk: the unit of threading and of the gradients' partial sums.
constexpr size_t kChunk = 64;
// A row's scalars (tanh, log, divisions) cost about this many elements.
constexpr size_t kRowCost = 32;
// Below this much work (elements, rows weighted by kRowCost) an op stays on
// one thread: starting the others costs more.
constexpr size_t kParallelWork = size_t(1) << 15;

// A chunk kernel: one clone per instruction set, everything it calls inlined.
#define GLOW_KERNEL FLOW_CLONES __attribute__((flatten))

const float *param(const Tensor &t, size_t n, const char *op) {
    op_check(t.defined() && t.size() == n, op, "parameter size mismatch");
    return t.f32();
}

// The per-op host values of a layer (double thread buffer 1), and sums and
// per-row values (double thread buffer 0).
double *layer_values(size_t n) { return thread_buffer<double, 1>(n); }
double *sums(size_t n) { return thread_buffer<double>(n); }

// The layers, with their per-op vectors in layer_values().
glow::Planar planar(const Tensor &w, const Tensor &u, const Tensor &b, size_t D,
                    const char *op) {
    return glow::planar_params(param(w, D, op), param(u, D, op), param(b, 1, op), D,
                               layer_values(2 * D));
}

glow::Radial radial(const Tensor &x0, const Tensor &a, const Tensor &b, size_t D,
                    const char *op) {
    return glow::radial_params(param(x0, D, op), param(a, 1, op), param(b, 1, op), D,
                               layer_values(D));
}

size_t chunk_count(size_t n) { return (n + kChunk - 1) / kChunk; }

// body(c, r0, r1) for every chunk c, rows [r0, r1), on threads when there
// is enough work.
template <class Body> void for_chunks(size_t n, size_t D, Body &&body) {
    cpu_parallel_for(chunk_count(n), kChunk * (D + kRowCost), kParallelWork, [&](size_t c) {
        body(c, c * kChunk, std::min(n, (c + 1) * kChunk));
    });
}

// Zeroed partial sums [chunks, cols] of a backward op (at least one row, so
// an empty batch sums to zeros).
double *chunk_sums(size_t n, size_t cols) {
    return partial_sums(std::max<size_t>(chunk_count(n), 1) * cols);
}

// Adds the chunks' partial sums into the first, in chunk order.
void sum_chunks(double *part, size_t n, size_t cols) {
    for (size_t c = 1; c < chunk_count(n); ++c)
        for (size_t k = 0; k < cols; ++k) part[k] += part[c * cols + k];
}

// A mixture, its log-weights and inverse variances in layer_values().
glow::Mog host_mog(const Tensor &logits, const Tensor &means, const Tensor &log_scales,
                   size_t D, const char *op) {
    const size_t K = logits.size();
    op_check(K > 0, op, "no components");
    const float *pl = param(logits, K, op), *ps = param(log_scales, K * D, op);
    double *log_pi = layer_values(K * (D + 1)), *inv_var = log_pi + K;
    glow::mog_log_weights(pl, K, log_pi);
    for (size_t k = 0; k < K * D; ++k) inv_var[k] = glow::mog_inv_var(ps[k]);
    return {param(means, K * D, op), ps, log_pi, inv_var, K, D};
}

// --- chunk kernels: rows [0, rows) of x (or z), dz, ... from the chunk's first row

GLOW_KERNEL void planar_forward_chunk(const glow::Planar &p, const float *x, size_t rows,
                                      float *z, float *logdet) {
    const size_t D = p.D;
    double t[kChunk];
    for (size_t i = 0; i < rows; ++i) t[i] = p.pre(x + i * D);
    for (size_t i = 0; i < rows; ++i) {
        t[i] = glow::branchless_tanh(t[i]);
        logdet[i] += (float)p.logdet(t[i]);
    }
    for (size_t i = 0; i < rows; ++i) p.shift(x + i * D, t[i], z + i * D);
}

// The rows' searches advance in lockstep, a step of every row per round
// until all are done, their states in arrays: a row's steps are a chain of
// dependent divisions and tanh, which the core then overlaps across rows
// with no branch on which rows are done (a finished row's step is computed
// and dropped). Each row takes the same steps as alone. Against a row at a
// time: D = 8 sampling 18% faster, D = 64 8% slower (longer searches there
// leave more dropped steps).
GLOW_KERNEL void planar_inverse_chunk(const glow::Planar &p, double tol, const float *z,
                                      size_t rows, float *x, float *logdet) {
    const size_t D = p.D;
    double c[kChunk], lo[kChunk], hi[kChunk], a[kChunk];
    // As wide as the doubles: GCC does not vectorize a loop that mixes
    // 1-byte and 8-byte arrays.
    int64_t done[kChunk];
    for (size_t i = 0; i < rows; ++i) {
        const glow::PlanarSolve s = glow::planar_solve_start(p, p.pre(z + i * D));
        c[i] = s.c, lo[i] = s.lo, hi[i] = s.hi, a[i] = s.a, done[i] = s.done;
    }
    for (int it = 0; it < glow::kPlanarSteps; ++it) {
        size_t busy = 0;
        for (size_t i = 0; i < rows; ++i) {
            glow::PlanarSolve s = {c[i], lo[i], hi[i], a[i], done[i] != 0};
            glow::planar_solve_step(p, tol, s);
            const bool live = !done[i];
            lo[i] = live ? s.lo : lo[i];
            hi[i] = live ? s.hi : hi[i];
            a[i] = live ? s.a : a[i];
            done[i] |= s.done;
            busy += !done[i];
        }
        if (!busy) break;
    }
    for (size_t i = 0; i < rows; ++i) {
        const glow::PlanarSolve s = {c[i], lo[i], hi[i], a[i], true};
        logdet[i] -= (float)glow::planar_solve_finish(p, s, z + i * D, x + i * D);
    }
}

// acc [planar_param_count] += the chunk's parameter terms.
GLOW_KERNEL void planar_backward_chunk(const glow::Planar &p, const float *x, const float *dz,
                                       const float *g, size_t rows, float *dx, double *acc) {
    const size_t D = p.D, cols = glow::planar_param_count(D);
    double a[kChunk], dzu[kChunk];
    glow::PlanarRow r[kChunk];
    for (size_t i = 0; i < rows; ++i) {
        a[i] = p.pre(x + i * D);
        dzu[i] = p.dot_u_hat(dz + i * D);
    }
    for (size_t i = 0; i < rows; ++i) r[i] = glow::planar_backward_scalars(p, a[i], dzu[i], g[i]);
    for (size_t i = 0; i < rows; ++i) {
        const float *xi = x + i * D, *dzi = dz + i * D;
        for (size_t j = 0; j < D; ++j) acc[j] += glow::planar_w_term(r[i], xi, j);
        for (size_t j = 0; j < D; ++j) acc[D + j] += glow::planar_u_hat_term(r[i], dzi, j);
        for (size_t col = 2 * D; col < cols; ++col)
            acc[col] += glow::planar_param_term(r[i], xi, dzi, col, D);
        float *dxi = dx + i * D;
        for (size_t j = 0; j < D; ++j) dxi[j] = (float)glow::planar_dx(p, r[i], dzi, j);
    }
}

GLOW_KERNEL void radial_forward_chunk(const glow::Radial &p, const float *x, size_t rows,
                                      float *z, float *logdet) {
    const size_t D = p.D;
    double r[kChunk], k[kChunk];
    for (size_t i = 0; i < rows; ++i) r[i] = p.radius(x + i * D);
    for (size_t i = 0; i < rows; ++i) {
        k[i] = p.gain(r[i]);
        logdet[i] += (float)p.logdet(r[i]);
    }
    for (size_t i = 0; i < rows; ++i) p.push(x + i * D, k[i], z + i * D);
}

GLOW_KERNEL void radial_inverse_chunk(const glow::Radial &p, const float *z, size_t rows,
                                      float *x, float *logdet) {
    const size_t D = p.D;
    double rz[kChunk], f[kChunk];
    for (size_t i = 0; i < rows; ++i) rz[i] = p.radius(z + i * D);
    for (size_t i = 0; i < rows; ++i) {
        const glow::RadialInverse s = glow::radial_inverse_scalars(p, rz[i]);
        f[i] = s.f;
        logdet[i] -= (float)p.logdet(s.r);
    }
    for (size_t i = 0; i < rows; ++i) glow::radial_pull(p, z + i * D, f[i], x + i * D);
}

// acc [radial_param_count] += the chunk's parameter terms.
GLOW_KERNEL void radial_backward_chunk(const glow::Radial &p, const float *x, const float *dz,
                                       const float *g, size_t rows, float *dx, double *acc) {
    const size_t D = p.D, cols = glow::radial_param_count(D);
    double rad[kChunk], dzy[kChunk];
    glow::RadialRow o[kChunk];
    for (size_t i = 0; i < rows; ++i) {
        rad[i] = p.radius(x + i * D);
        dzy[i] = p.dot_offset(dz + i * D, x + i * D);
    }
    for (size_t i = 0; i < rows; ++i) o[i] = glow::radial_backward_scalars(p, rad[i], dzy[i], g[i]);
    for (size_t i = 0; i < rows; ++i) {
        const float *xi = x + i * D, *dzi = dz + i * D;
        float *dxi = dx + i * D;
        for (size_t j = 0; j < D; ++j) {
            const double d = glow::radial_dx(p, o[i], xi, dzi, j);
            dxi[j] = (float)d;
            acc[j] += glow::radial_x0_term(d, dzi[j]);
        }
        for (size_t col = D; col < cols; ++col)
            acc[col] += glow::radial_param_term(p, o[i], xi, dzi, col);
    }
}

} // namespace

// --- planar -------------------------------------------------------------------

void CpuBackend::planar_forward(const Tensor &x, const Tensor &w, const Tensor &u,
                                const Tensor &b, Tensor &z, Tensor &logdet) {
    const char *op = "planar_forward";
    check_rows(x, z, &logdet, op);
    const size_t n = x.rows(), D = x.cols();
    const glow::Planar p = planar(w, u, b, D, op);
    const float *px = x.f32();
    float *pz = z.f32(), *pl = logdet.f32();
    for_chunks(n, D, [&](size_t, size_t r0, size_t r1) {
        planar_forward_chunk(p, px + r0 * D, r1 - r0, pz + r0 * D, pl + r0);
    });
}

void CpuBackend::planar_inverse(const Tensor &z, const Tensor &w, const Tensor &u,
                                const Tensor &b, double tol, Tensor &x, Tensor &logdet) {
    const char *op = "planar_inverse";
    check_rows(z, x, &logdet, op);
    const size_t n = z.rows(), D = z.cols();
    const glow::Planar p = planar(w, u, b, D, op);
    const float *pz = z.f32();
    float *px = x.f32(), *pl = logdet.f32();
    for_chunks(n, D, [&](size_t, size_t r0, size_t r1) {
        planar_inverse_chunk(p, tol, pz + r0 * D, r1 - r0, px + r0 * D, pl + r0);
    });
}

void CpuBackend::planar_backward(const Tensor &x, const Tensor &w, const Tensor &u,
                                 const Tensor &b, const Tensor &dz, const Tensor &dlogdet,
                                 Tensor &dx, Tensor &dw, Tensor &du, Tensor &db) {
    const char *op = "planar_backward";
    check_rows(x, dz, &dlogdet, op);
    check_rows(x, dx, nullptr, op);
    const size_t n = x.rows(), D = x.cols(), cols = glow::planar_param_count(D);
    op_check(dw.size() == D && du.size() == D && db.size() == 1, op, "gradient size mismatch");
    const glow::Planar p = planar(w, u, b, D, op);
    const float *px = x.f32(), *pdz = dz.f32(), *pg = dlogdet.f32();
    float *pdx = dx.f32();
    double *part = chunk_sums(n, cols);
    for_chunks(n, D, [&](size_t c, size_t r0, size_t r1) {
        planar_backward_chunk(p, px + r0 * D, pdz + r0 * D, pg + r0, r1 - r0, pdx + r0 * D,
                              part + c * cols);
    });
    sum_chunks(part, n, cols);
    glow::planar_add_param_grads(p, part, dw.f32(), du.f32(), db.f32());
}

// --- radial -------------------------------------------------------------------

void CpuBackend::radial_forward(const Tensor &x, const Tensor &x0, const Tensor &a,
                                const Tensor &b, Tensor &z, Tensor &logdet) {
    const char *op = "radial_forward";
    check_rows(x, z, &logdet, op);
    const size_t n = x.rows(), D = x.cols();
    const glow::Radial p = radial(x0, a, b, D, op);
    const float *px = x.f32();
    float *pz = z.f32(), *pl = logdet.f32();
    for_chunks(n, D, [&](size_t, size_t r0, size_t r1) {
        radial_forward_chunk(p, px + r0 * D, r1 - r0, pz + r0 * D, pl + r0);
    });
}

void CpuBackend::radial_inverse(const Tensor &z, const Tensor &x0, const Tensor &a,
                                const Tensor &b, Tensor &x, Tensor &logdet) {
    const char *op = "radial_inverse";
    check_rows(z, x, &logdet, op);
    const size_t n = z.rows(), D = z.cols();
    const glow::Radial p = radial(x0, a, b, D, op);
    const float *pz = z.f32();
    float *px = x.f32(), *pl = logdet.f32();
    for_chunks(n, D, [&](size_t, size_t r0, size_t r1) {
        radial_inverse_chunk(p, pz + r0 * D, r1 - r0, px + r0 * D, pl + r0);
    });
}

void CpuBackend::radial_backward(const Tensor &x, const Tensor &x0, const Tensor &a,
                                 const Tensor &b, const Tensor &dz, const Tensor &dlogdet,
                                 Tensor &dx, Tensor &dx0, Tensor &da, Tensor &db) {
    const char *op = "radial_backward";
    check_rows(x, dz, &dlogdet, op);
    check_rows(x, dx, nullptr, op);
    const size_t n = x.rows(), D = x.cols(), cols = glow::radial_param_count(D);
    op_check(dx0.size() == D && da.size() == 1 && db.size() == 1, op, "gradient size mismatch");
    const glow::Radial p = radial(x0, a, b, D, op);
    const float *px = x.f32(), *pdz = dz.f32(), *pg = dlogdet.f32();
    float *pdx = dx.f32();
    double *part = chunk_sums(n, cols);
    for_chunks(n, D, [&](size_t c, size_t r0, size_t r1) {
        radial_backward_chunk(p, px + r0 * D, pdz + r0 * D, pg + r0, r1 - r0, pdx + r0 * D,
                              part + c * cols);
    });
    sum_chunks(part, n, cols);
    glow::radial_add_param_grads(p, part, dx0.f32(), da.f32(), db.f32());
}

// --- mixture of Gaussians -----------------------------------------------------

void CpuBackend::mog_log_prob(const Tensor &z, const Tensor &logits, const Tensor &means,
                              const Tensor &log_scales, Tensor &out) {
    const char *op = "mog_log_prob";
    op_check(z.defined() && out.defined() && out.size() == z.rows(), op, "shape mismatch");
    const size_t n = z.rows(), D = z.cols();
    const glow::Mog mog = host_mog(logits, means, log_scales, D, op);
    const float *pz = z.f32();
    float *po = out.f32();
    double *l = sums(mog.K);
    for (size_t i = 0; i < n; ++i) po[i] = (float)mog.components(pz + i * D, l);
}

void CpuBackend::mog_log_prob_backward(const Tensor &z, const Tensor &logits,
                                       const Tensor &means, const Tensor &log_scales,
                                       const Tensor &dlogp, Tensor &dz, Tensor &dlogits,
                                       Tensor &dmeans, Tensor &dlog_scales) {
    const char *op = "mog_log_prob_backward";
    check_rows(z, dz, &dlogp, op);
    const size_t n = z.rows(), D = z.cols();
    const glow::Mog mog = host_mog(logits, means, log_scales, D, op);
    const size_t K = mog.K;
    op_check(dlogits.size() == K && dmeans.size() == K * D && dlog_scales.size() == K * D, op,
              "gradient size mismatch");
    const float *pz = z.f32(), *pg = dlogp.f32();
    float *pdz = dz.f32();
    // The responsibilities of a row and the parameters' sums.
    const size_t params = glow::mog_param_count(K, D);
    double *gamma = sums(K + params), *acc = gamma + K;
    std::fill(acc, acc + params, 0.0);
    for (size_t i = 0; i < n; ++i) {
        const float *zi = pz + i * D;
        glow::mog_backward_row(mog, zi, pg[i], gamma, pdz + i * D);
        for (size_t col = 0; col < params; ++col)
            acc[col] += glow::mog_param_term(mog, zi, pg[i], gamma, col);
    }
    for (size_t col = 0; col < params; ++col)
        *glow::mog_param_slot(mog, col, dlogits.f32(), dmeans.f32(), dlog_scales.f32()) +=
            (float)acc[col];
}

void CpuBackend::mog_sample(Tensor &z, const Tensor &logits, const Tensor &means,
                            const Tensor &log_scales, uint64_t seed, uint64_t stream,
                            float temperature) {
    const char *op = "mog_sample";
    op_check(z.defined(), op, "undefined tensor");
    const size_t n = z.rows(), D = z.cols();
    const glow::Mog mog = host_mog(logits, means, log_scales, D, op);
    float *pz = z.f32();
    for (size_t i = 0; i < n; ++i)
        glow::mog_sample_row(mog, seed, stream, temperature, i, pz + i * D);
}

} // namespace flow
