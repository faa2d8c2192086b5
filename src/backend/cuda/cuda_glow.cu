// CUDA ops of the classic flows (planar, radial) and the mixture-of-Gaussians
// base. The math is backend/glow_math.h, shared with the CPU: one thread per
// row, a layer's per-op values (its scalars and vectors in double) computed
// once by a one-thread kernel (the parameters are in device memory here),
// parameter gradients as per-row terms summed by cuda_column_reduce and
// turned into the parameters' gradients by one thread.
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_launch.h"
#include "backend/glow_math.h"

namespace flow {

namespace {

const float *param(const Tensor &t, size_t n, const char *op) {
    op_check(t.defined() && t.size() == n, op, "parameter size mismatch");
    return t.f32();
}

// 8-byte words taken by `count` values of T.
template <class T> size_t words(size_t count) { return (count * sizeof(T) + 7) / 8; }

// `n` 8-byte words of device scratch (see cuda_scratch).
double *scratch_words(size_t n) { return static_cast<double *>(cuda_scratch(n * 8)); }

// `n` 8-byte words of device workspace (the backward ops keep data across
// cuda_column_reduce, which reuses cuda_scratch).
double *workspace(size_t n) { return static_cast<double *>(cuda_workspace(n * 8)); }

// A layer's per-op values and vectors in device memory: 8-byte words for
// them (the values, then the vectors), and the functions that fill them by
// one thread and return where the values are.
size_t planar_words(size_t D) { return words<glow::Planar>(1) + 2 * D; }
size_t radial_words(size_t D) { return words<glow::Radial>(1) + D; }

glow::Planar *planar_to(double *ws, const Tensor &w, const Tensor &u, const Tensor &b, size_t D,
                        const char *op) {
    const float *pw = param(w, D, op), *pu = param(u, D, op), *pb = param(b, 1, op);
    auto *p = reinterpret_cast<glow::Planar *>(ws);
    double *vec = ws + words<glow::Planar>(1);
    cuda_for_each(1, [=] __device__(size_t) { *p = glow::planar_params(pw, pu, pb, D, vec); });
    return p;
}

glow::Radial *radial_to(double *ws, const Tensor &x0, const Tensor &a, const Tensor &b, size_t D,
                        const char *op) {
    const float *px0 = param(x0, D, op), *pa = param(a, 1, op), *pb = param(b, 1, op);
    auto *p = reinterpret_cast<glow::Radial *>(ws);
    double *vec = ws + words<glow::Radial>(1);
    cuda_for_each(1, [=] __device__(size_t) { *p = glow::radial_params(px0, pa, pb, D, vec); });
    return p;
}

size_t mog_size(const Tensor &logits, const char *op) {
    op_check(logits.defined() && logits.size() > 0, op, "no components");
    return logits.size();
}

// The mixture with its log-weights written to log_pi [K] and inverse
// variances to inv_var [K D] (device memory).
glow::Mog mog_to(double *log_pi, double *inv_var, const Tensor &logits, const Tensor &means,
                 const Tensor &log_scales, size_t D, const char *op) {
    const size_t K = mog_size(logits, op);
    const float *pl = param(logits, K, op), *pm = param(means, K * D, op);
    const float *ps = param(log_scales, K * D, op);
    cuda_for_each(1, [=] __device__(size_t) { glow::mog_log_weights(pl, K, log_pi); });
    cuda_for_each(K * D, [=] __device__(size_t k) { inv_var[k] = glow::mog_inv_var(ps[k]); });
    return glow::Mog{pm, ps, log_pi, inv_var, K, D};
}

} // namespace

// --- planar -------------------------------------------------------------------

void CudaBackend::planar_forward(const Tensor &x, const Tensor &w, const Tensor &u,
                                 const Tensor &b, Tensor &z, Tensor &logdet) {
    const char *op = "planar_forward";
    check_rows(x, z, &logdet, op);
    const size_t n = x.rows(), D = x.cols();
    const glow::Planar *p = planar_to(scratch_words(planar_words(D)), w, u, b, D, op);
    const float *px = x.f32();
    float *pz = z.f32(), *pl = logdet.f32();
    cuda_for_each(n, [=] __device__(size_t i) {
        const glow::Planar q = *p;
        pl[i] += (float)glow::planar_forward_row(q, px + i * D, pz + i * D);
    });
}

void CudaBackend::planar_inverse(const Tensor &z, const Tensor &w, const Tensor &u,
                                 const Tensor &b, double tol, Tensor &x, Tensor &logdet) {
    const char *op = "planar_inverse";
    check_rows(z, x, &logdet, op);
    const size_t n = z.rows(), D = z.cols();
    const glow::Planar *p = planar_to(scratch_words(planar_words(D)), w, u, b, D, op);
    const float *pz = z.f32();
    float *px = x.f32(), *pl = logdet.f32();
    cuda_for_each(n, [=] __device__(size_t i) {
        const glow::Planar q = *p;
        pl[i] -= (float)glow::planar_inverse_row(q, tol, pz + i * D, px + i * D);
    });
}

void CudaBackend::planar_backward(const Tensor &x, const Tensor &w, const Tensor &u,
                                  const Tensor &b, const Tensor &dz, const Tensor &dlogdet,
                                  Tensor &dx, Tensor &dw, Tensor &du, Tensor &db) {
    const char *op = "planar_backward";
    check_rows(x, dz, &dlogdet, op);
    check_rows(x, dx, nullptr, op);
    const size_t n = x.rows(), D = x.cols(), cols = glow::planar_param_count(D);
    op_check(dw.size() == D && du.size() == D && db.size() == 1, op,
                 "gradient size mismatch");
    // workspace: the per-op values and vectors | each row's PlanarRow | the column totals
    const size_t at_rows = planar_words(D), at_acc = at_rows + words<glow::PlanarRow>(n);
    double *ws = workspace(at_acc + cols);
    const glow::Planar *p = planar_to(ws, w, u, b, D, op);
    auto *rows = reinterpret_cast<glow::PlanarRow *>(ws + at_rows);
    double *acc = ws + at_acc;
    const float *px = x.f32(), *pdz = dz.f32(), *pg = dlogdet.f32();
    float *pdx = dx.f32(), *pdw = dw.f32(), *pdu = du.f32(), *pdb = db.f32();
    cuda_for_each(n, [=] __device__(size_t i) {
        const glow::Planar q = *p;
        rows[i] = glow::planar_backward_row(q, px + i * D, pdz + i * D, pg[i], pdx + i * D);
    });
    cuda_column_reduce(
        n, cols,
        [=] __device__(size_t i, size_t col) -> double {
            return glow::planar_param_term(rows[i], px + i * D, pdz + i * D, col, D);
        },
        [=] __device__(size_t col, double total) { acc[col] = total; });
    cuda_for_each(1, [=] __device__(size_t) {
        glow::planar_add_param_grads(*p, acc, pdw, pdu, pdb);
    });
}

// --- radial -------------------------------------------------------------------

void CudaBackend::radial_forward(const Tensor &x, const Tensor &x0, const Tensor &a,
                                 const Tensor &b, Tensor &z, Tensor &logdet) {
    const char *op = "radial_forward";
    check_rows(x, z, &logdet, op);
    const size_t n = x.rows(), D = x.cols();
    const glow::Radial *p = radial_to(scratch_words(radial_words(D)), x0, a, b, D, op);
    const float *px = x.f32();
    float *pz = z.f32(), *pl = logdet.f32();
    cuda_for_each(n, [=] __device__(size_t i) {
        const glow::Radial q = *p;
        pl[i] += (float)glow::radial_forward_row(q, px + i * D, pz + i * D);
    });
}

void CudaBackend::radial_inverse(const Tensor &z, const Tensor &x0, const Tensor &a,
                                 const Tensor &b, Tensor &x, Tensor &logdet) {
    const char *op = "radial_inverse";
    check_rows(z, x, &logdet, op);
    const size_t n = z.rows(), D = z.cols();
    const glow::Radial *p = radial_to(scratch_words(radial_words(D)), x0, a, b, D, op);
    const float *pz = z.f32();
    float *px = x.f32(), *pl = logdet.f32();
    cuda_for_each(n, [=] __device__(size_t i) {
        const glow::Radial q = *p;
        pl[i] -= (float)glow::radial_inverse_row(q, pz + i * D, px + i * D);
    });
}

void CudaBackend::radial_backward(const Tensor &x, const Tensor &x0, const Tensor &a,
                                  const Tensor &b, const Tensor &dz, const Tensor &dlogdet,
                                  Tensor &dx, Tensor &dx0, Tensor &da, Tensor &db) {
    const char *op = "radial_backward";
    check_rows(x, dz, &dlogdet, op);
    check_rows(x, dx, nullptr, op);
    const size_t n = x.rows(), D = x.cols(), cols = glow::radial_param_count(D);
    op_check(dx0.size() == D && da.size() == 1 && db.size() == 1, op,
                 "gradient size mismatch");
    // workspace: the per-op values and x0 | each row's RadialRow | the column totals
    const size_t at_rows = radial_words(D), at_acc = at_rows + words<glow::RadialRow>(n);
    double *ws = workspace(at_acc + cols);
    const glow::Radial *p = radial_to(ws, x0, a, b, D, op);
    auto *rows = reinterpret_cast<glow::RadialRow *>(ws + at_rows);
    double *acc = ws + at_acc;
    const float *px = x.f32(), *pdz = dz.f32(), *pg = dlogdet.f32();
    float *pdx = dx.f32(), *pdx0 = dx0.f32(), *pda = da.f32(), *pdb = db.f32();
    cuda_for_each(n, [=] __device__(size_t i) {
        const glow::Radial q = *p;
        const float *xi = px + i * D, *dzi = pdz + i * D;
        const glow::RadialRow r = glow::radial_backward_row(q, xi, dzi, pg[i]);
        for (size_t j = 0; j < D; ++j) pdx[i * D + j] = (float)glow::radial_dx(q, r, xi, dzi, j);
        rows[i] = r;
    });
    cuda_column_reduce(
        n, cols,
        [=] __device__(size_t i, size_t col) -> double {
            return glow::radial_param_term(*p, rows[i], px + i * D, pdz + i * D, col);
        },
        [=] __device__(size_t col, double total) { acc[col] = total; });
    cuda_for_each(1, [=] __device__(size_t) {
        glow::radial_add_param_grads(*p, acc, pdx0, pda, pdb);
    });
}

// --- mixture of Gaussians -----------------------------------------------------

void CudaBackend::mog_log_prob(const Tensor &z, const Tensor &logits, const Tensor &means,
                               const Tensor &log_scales, Tensor &out) {
    const char *op = "mog_log_prob";
    op_check(z.defined() && out.defined() && out.size() == z.rows(), op, "shape mismatch");
    const size_t n = z.rows(), D = z.cols(), K = mog_size(logits, op);
    // scratch: log_pi [K] | inv_var [K D] | each row's component log-densities [n K]
    auto *ws = static_cast<double *>(cuda_scratch((K + K * D + n * K) * sizeof(double)));
    const glow::Mog p = mog_to(ws, ws + K, logits, means, log_scales, D, op);
    double *l = ws + K + K * D;
    const float *pz = z.f32();
    float *po = out.f32();
    cuda_for_each(n, [=] __device__(size_t i) {
        po[i] = (float)p.components(pz + i * D, l + i * K);
    });
}

void CudaBackend::mog_log_prob_backward(const Tensor &z, const Tensor &logits,
                                        const Tensor &means, const Tensor &log_scales,
                                        const Tensor &dlogp, Tensor &dz, Tensor &dlogits,
                                        Tensor &dmeans, Tensor &dlog_scales) {
    const char *op = "mog_log_prob_backward";
    check_rows(z, dz, &dlogp, op);
    const size_t n = z.rows(), D = z.cols(), K = mog_size(logits, op);
    op_check(dlogits.size() == K && dmeans.size() == K * D && dlog_scales.size() == K * D,
                 op, "gradient size mismatch");
    // workspace: log_pi [K] | inv_var [K D] | each row's responsibilities [n K]
    double *ws = workspace(K + K * D + n * K);
    const glow::Mog p = mog_to(ws, ws + K, logits, means, log_scales, D, op);
    double *gamma = ws + K + K * D;
    const float *pz = z.f32(), *pg = dlogp.f32();
    float *pdz = dz.f32(), *pdl = dlogits.f32(), *pdm = dmeans.f32(), *pds = dlog_scales.f32();
    cuda_for_each(n, [=] __device__(size_t i) {
        glow::mog_backward_row(p, pz + i * D, pg[i], gamma + i * K, pdz + i * D);
    });
    cuda_column_reduce(
        n, glow::mog_param_count(K, D),
        [=] __device__(size_t i, size_t col) -> double {
            return glow::mog_param_term(p, pz + i * D, pg[i], gamma + i * K, col);
        },
        [=] __device__(size_t col, double total) {
            *glow::mog_param_slot(p, col, pdl, pdm, pds) += (float)total;
        });
}

void CudaBackend::mog_sample(Tensor &z, const Tensor &logits, const Tensor &means,
                             const Tensor &log_scales, uint64_t seed, uint64_t stream,
                             float temperature) {
    const char *op = "mog_sample";
    op_check(z.defined(), op, "undefined tensor");
    const size_t n = z.rows(), D = z.cols(), K = mog_size(logits, op);
    auto *ws = static_cast<double *>(cuda_scratch((K + K * D) * sizeof(double)));
    const glow::Mog p = mog_to(ws, ws + K, logits, means, log_scales, D, op);
    float *pz = z.f32();
    cuda_for_each(n, [=] __device__(size_t i) {
        glow::mog_sample_row(p, seed, stream, temperature, i, pz + i * D);
    });
}

} // namespace flow
