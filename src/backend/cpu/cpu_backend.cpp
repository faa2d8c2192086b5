// CpuBackend: every op but gemm, as plain loops. Loops over rows (or over
// elements) run on OpenMP threads once there is enough work; reductions sum in
// double in a fixed order, so results never depend on the thread count.
#include "backend/cpu/cpu_backend.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/cpu_thread_buffer.h"
#include "backend/philox.h"

// OpenBLAS keeps its own thread count; weak so a build on another BLAS links.
extern "C" void openblas_set_num_threads(int n) __attribute__((weak));

namespace flow {

namespace {

// Below this much work (elements x a rough cost per element) a loop stays on
// one thread: waking the others and meeting at the barrier costs more, and on
// a busy machine a thread that lost its core stalls the whole region.
constexpr size_t kParallelWork = size_t(1) << 18;
// Fixed reduction blocks: partial sums do not depend on how threads split work.
constexpr size_t kReduceRows = 256;
constexpr size_t kReduceChunk = 4096;
constexpr size_t kAlignment = 64; // a cache line, and enough for AVX-512 loads
// logit keeps y this far inside (0, 1): x = 0 or 1 with alpha = 0 stays finite.
constexpr double kLogitEps = 1e-12;

template <class Body> void parallel_for(size_t n, size_t cost, Body &&body) {
    cpu_parallel_for(n, cost, kParallelWork, body);
}

template <class Body>
void parallel_rows(size_t rows, size_t block, size_t cost_per_row, Body &&body) {
    cpu_parallel_rows(rows, block, cost_per_row, kParallelWork, body);
}

// count floats for the per-column factors of one op (exp(s), a batch norm's
// gains).
float *column_factors(size_t count) { return thread_buffer<float>(count); }

// out[j * K + k] = sum over rows i of what term(i, j, acc) adds to acc[k],
// in this thread's double buffer `Slot` (not 0: the partial sums' own). The
// term may also write outputs for (i, j): every pair is visited exactly once.
template <size_t K, unsigned Slot, class Term>
double *reduce_columns(size_t rows, size_t cols, Term &&term) {
    static_assert(Slot != 0, "slot 0 holds the partial sums");
    const size_t blocks = (rows + kReduceRows - 1) / kReduceRows;
    const size_t width = cols * K;
    double *partial = partial_sums(blocks * width);
    parallel_for(blocks, kReduceRows * cols, [&](size_t b) {
        double *acc = &partial[b * width];
        const size_t end = std::min(rows, (b + 1) * kReduceRows);
        for (size_t i = b * kReduceRows; i < end; ++i)
            for (size_t j = 0; j < cols; ++j) term(i, j, acc + j * K);
    });
    double *out = thread_buffer<double, Slot>(width);
    std::fill(out, out + width, 0.0);
    for (size_t b = 0; b < blocks; ++b)
        for (size_t t = 0; t < width; ++t) out[t] += partial[b * width + t];
    return out;
}

// sum over k in [0, n) of term(k), in fixed chunks summed in order.
template <class Term> double reduce_all(size_t n, Term &&term) {
    const size_t chunks = (n + kReduceChunk - 1) / kReduceChunk;
    double *partial = partial_sums(chunks);
    parallel_for(chunks, kReduceChunk, [&](size_t c) {
        double acc = 0.0;
        const size_t end = std::min(n, (c + 1) * kReduceChunk);
        for (size_t k = c * kReduceChunk; k < end; ++k) acc += term(k);
        partial[c] = acc;
    });
    double total = 0.0;
    for (size_t c = 0; c < chunks; ++c) total += partial[c];
    return total;
}

// --- shape checks -----------------------------------------------------------

void *raw_data(const Tensor &t, const char *op) {
    op_check(t.defined(), op, "undefined tensor");
    return t.dtype() == DType::i32 ? static_cast<void *>(t.i32())
                                   : static_cast<void *>(t.f32());
}

// --- scalar math ------------------------------------------------------------

double sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
    const double e = std::exp(x);
    return e / (1.0 + e);
}

// log Logistic(z; 0, 1) = -z - 2 log(1 + e^-z), symmetric in z.
double logistic_log_density(double z) {
    const double a = std::fabs(z);
    return -a - 2.0 * std::log1p(std::exp(-a));
}

// Logit preprocessing at one element: y clamped into (0, 1) and its logs.
struct LogitPoint {
    double y, log_y, log_1my;
};

LogitPoint logit_point(float x, float alpha) {
    const double y = std::clamp(alpha + (1.0 - 2.0 * alpha) * x, kLogitEps, 1.0 - kLogitEps);
    return {y, std::log(y), std::log1p(-y)};
}

} // namespace

// --- memory -----------------------------------------------------------------

void *CpuBackend::allocate(size_t bytes) {
    // aligned_alloc wants a multiple of the alignment; 0 bytes still gets a
    // real pointer so empty tensors need no special case.
    const size_t rounded = (std::max<size_t>(bytes, 1) + kAlignment - 1) / kAlignment * kAlignment;
    void *ptr = rounded < bytes ? nullptr : std::aligned_alloc(kAlignment, rounded);
    if (!ptr)
        fail(Status::out_of_memory,
             "cannot allocate " + std::to_string(bytes) + " bytes of host memory");
    return ptr;
}

void CpuBackend::release(void *ptr) noexcept { std::free(ptr); }

namespace {

// Both dtypes are 4 bytes. memcpy is skipped for nothing because a null host
// pointer with an empty batch is fine for us but undefined for memcpy.
void copy_elements(void *dst, const void *src, size_t count) {
    if (count) std::memcpy(dst, src, count * sizeof(float));
}

} // namespace

void CpuBackend::upload(Tensor &dst, const void *host) {
    copy_elements(raw_data(dst, "upload"), host, dst.size());
}

void CpuBackend::download(const Tensor &src, void *host) {
    copy_elements(host, raw_data(src, "download"), src.size());
}

void CpuBackend::copy(const Tensor &src, Tensor &dst) {
    op_check(src.size() == dst.size() && src.dtype() == dst.dtype(), "copy",
              "size or dtype mismatch");
    copy_elements(raw_data(dst, "copy"), raw_data(src, "copy"), src.size());
}

void CpuBackend::fill(Tensor &t, float value) {
    std::fill_n(op_f32(t, "fill"), t.size(), value);
}

// --- dense algebra (gemm is in cpu_gemm.cpp) --------------------------------

void CpuBackend::add_row_vector(Tensor &y, const Tensor &v) {
    const char *op = "add_row_vector";
    check_row_vector(v, y, op);
    float *py = op_f32(y, op);
    const float *pv = op_f32(v, op);
    const size_t cols = v.size();
    parallel_for(y.rows(), cols, [&](size_t i) {
        for (size_t j = 0; j < cols; ++j) py[i * cols + j] += pv[j];
    });
}

void CpuBackend::sum_rows(const Tensor &x, Tensor &out, bool accumulate) {
    const char *op = "sum_rows";
    check_row_vector(out, x, op);
    const float *px = op_f32(x, op);
    float *po = op_f32(out, op);
    const size_t cols = out.size(), rows = x.rows();
    // Fixed blocks of kReduceRows rows, partial sums added in block order.
    const size_t blocks = (rows + kReduceRows - 1) / kReduceRows;
    double *partial = partial_sums(blocks * cols);
    parallel_rows(rows, kReduceRows, cols, [&](size_t r0, size_t r1) {
        cpu_kernels::column_sums_rows(px, &partial[r0 / kReduceRows * cols], cols, r0, r1);
    });
    for (size_t j = 0; j < cols; ++j) {
        double total = accumulate ? po[j] : 0.0;
        for (size_t b = 0; b < blocks; ++b) total += partial[b * cols + j];
        po[j] = float(total);
    }
}

void CpuBackend::mul_row_vector(const Tensor &x, const Tensor &v, Tensor &y,
                                bool accumulate) {
    const MulRowVectorArgs a = mul_row_vector_args(x, v, y, "mul_row_vector");
    const size_t cols = a.cols;
    parallel_for(a.rows, cols, [&](size_t i) {
        for (size_t j = 0; j < cols; ++j) {
            const size_t k = i * cols + j;
            a.y[k] = (accumulate ? a.y[k] : 0.0f) + a.x[k] * a.v[j];
        }
    });
}

void CpuBackend::axpy(float alpha, const Tensor &x, Tensor &y) {
    op_check(x.size() == y.size(), "axpy", "size mismatch");
    const float *px = op_f32(x, "axpy");
    float *py = op_f32(y, "axpy");
    parallel_for(x.size(), 1, [&](size_t k) { py[k] += alpha * px[k]; });
}

void CpuBackend::scale(Tensor &x, float alpha) {
    float *px = op_f32(x, "scale");
    parallel_for(x.size(), 1, [&](size_t k) { px[k] *= alpha; });
}

void CpuBackend::concat_cols(const Tensor &a, const Tensor &b, Tensor &out) {
    const ConcatColsArgs c = concat_cols_args(a, b, out, "concat_cols");
    const size_t ca = c.cols_a, cb = c.cols_b, co = c.cols_out;
    parallel_for(c.rows, co, [&](size_t i) {
        std::memcpy(c.out + i * co, c.a + i * ca, ca * sizeof(float));
        std::memcpy(c.out + i * co + ca, c.b + i * cb, cb * sizeof(float));
    });
}

void CpuBackend::slice_cols(const Tensor &x, size_t begin, Tensor &out) {
    const SliceColsArgs a = slice_cols_args(x, begin, out, "slice_cols");
    const size_t cx = a.cols_x, co = a.cols_out;
    parallel_for(a.rows, co, [&](size_t i) {
        std::memcpy(a.out + i * co, a.x + i * cx + begin, co * sizeof(float));
    });
}

const int32_t *cpu_index_data(const Tensor *index, size_t count, size_t limit, const char *op) {
    if (!index) {
        op_check(count == limit, op, "shape mismatch");
        return nullptr;
    }
    op_check(index->defined() && index->dtype() == DType::i32, op, "index is not int32");
    op_check(index->size() == count, op, "index length mismatch");
    const int32_t *idx = index->i32();
    for (size_t k = 0; k < count; ++k)
        op_check(idx[k] >= 0 && size_t(idx[k]) < limit, op, "index out of range");
    return idx;
}

void CpuBackend::gather(const Tensor &x, const Tensor *rows, const Tensor *cols, Tensor &y) {
    const char *op = "gather";
    const size_t cx = x.cols(), cy = y.cols();
    const int32_t *row_idx = cpu_index_data(rows, y.rows(), x.rows(), op);
    const int32_t *col_idx = cpu_index_data(cols, cy, cx, op);
    const float *px = op_f32(x, op);
    float *py = op_f32(y, op);
    parallel_rows(y.rows(), 64, cy, [&](size_t r0, size_t r1) {
        cpu_kernels::gather_rows(px, cx, row_idx, col_idx, py, cy, r0, r1);
    });
}

void CpuBackend::scatter(const Tensor &x, const Tensor *rows, const Tensor *cols, Tensor &y,
                         bool accumulate) {
    const char *op = "scatter";
    const size_t cx = x.cols(), cy = y.cols();
    const size_t width = cols ? cols->size() : cx;
    op_check(width <= cx, op, "more column indices than columns");
    const int32_t *row_idx = cpu_index_data(rows, x.rows(), y.rows(), op);
    const int32_t *col_idx = cpu_index_data(cols, width, cy, op);
    const float *px = op_f32(x, op);
    float *py = op_f32(y, op);
    parallel_rows(x.rows(), 64, width, [&](size_t r0, size_t r1) {
        cpu_kernels::scatter_rows(px, cx, width, row_idx, col_idx, py, cy, accumulate, r0, r1);
    });
}

void CpuBackend::add_scalar(Tensor &y, float c) {
    float *py = op_f32(y, "add_scalar");
    parallel_for(y.size(), 1, [&](size_t k) { py[k] += c; });
}

void CpuBackend::add_vector_sum(Tensor &per_row, const Tensor &v, float sign) {
    const float *pv = op_f32(v, "add_vector_sum");
    float *pr = op_f32(per_row, "add_vector_sum");
    const double total = reduce_all(v.size(), [&](size_t k) { return double(pv[k]); });
    for (size_t i = 0; i < per_row.size(); ++i) pr[i] = float(pr[i] + sign * total);
}

// --- activations ------------------------------------------------------------

void CpuBackend::activation_forward(Activation act, const Tensor &x, Tensor &y) {
    const char *op = "activation_forward";
    op_check(x.size() == y.size(), op, "size mismatch");
    const float *px = op_f32(x, op);
    float *py = op_f32(y, op);
    // As one long row: the kernel's loop runs over the whole block.
    const size_t n = x.size(), block = 4096;
    parallel_rows((n + block - 1) / block, 1, 4 * block, [&](size_t b0, size_t b1) {
        const size_t k0 = b0 * block, k1 = std::min(n, b1 * block);
        cpu_kernels::bias_activation_rows(act, px + k0, nullptr, nullptr, py + k0, k1 - k0, 0, 1);
    });
}

void CpuBackend::activation_backward(Activation act, const Tensor &x, const Tensor &y,
                                     const Tensor &dy, Tensor &dx) {
    const char *op = "activation_backward";
    op_check(x.size() == y.size() && x.size() == dy.size() && x.size() == dx.size(), op,
              "size mismatch");
    const float *px = op_f32(x, op), *py = op_f32(y, op), *pdy = op_f32(dy, op);
    float *pdx = op_f32(dx, op); // may alias pdy: each k reads dy[k] before writing dx[k]
    const size_t n = x.size(), block = 4096;
    parallel_rows((n + block - 1) / block, 1, 4 * block, [&](size_t b0, size_t b1) {
        const size_t k0 = b0 * block, k1 = std::min(n, b1 * block);
        cpu_kernels::activation_backward_rows(act, px + k0, py + k0, pdy + k0, pdx + k0, nullptr,
                                              k1 - k0, 0, 1);
    });
}

// --- reductions -------------------------------------------------------------

double CpuBackend::sum(const Tensor &x) {
    const float *px = op_f32(x, "sum");
    return reduce_all(x.size(), [&](size_t k) { return double(px[k]); });
}

double CpuBackend::sum_squares(const Tensor &x) {
    const float *px = op_f32(x, "sum_squares");
    return reduce_all(x.size(), [&](size_t k) { return double(px[k]) * px[k]; });
}

bool CpuBackend::all_finite(const Tensor &x) {
    const float *px = op_f32(x, "all_finite");
    const size_t n = x.size();
    const size_t chunks = (n + kReduceChunk - 1) / kReduceChunk;
    char *ok = thread_buffer<char>(chunks);
    parallel_for(chunks, kReduceChunk, [&](size_t c) {
        const size_t k0 = c * kReduceChunk, k1 = std::min(n, k0 + kReduceChunk);
        ok[c] = cpu_kernels::all_finite_range(px + k0, k1 - k0);
    });
    return std::all_of(ok, ok + chunks, [](char v) { return v != 0; });
}

// --- coupling layers --------------------------------------------------------

namespace {

void affine_coupling(const Tensor &in, const Tensor &h, const Tensor &scale, Tensor &out,
                     Tensor &logdet, bool inverse, const char *op) {
    check_same_shape(in, out, op);
    const CouplingArgs a = coupling_args(in, h, scale, logdet, op);
    float *pout = op_f32(out, op), *pld = op_f32(logdet, op);
    if (!a.cols) return; // no free columns: logdet += 0
    parallel_rows(a.rows, 64, 8 * a.cols, [&](size_t r0, size_t r1) {
        cpu_kernels::affine_coupling_rows(a.in, a.h, a.scale, pout, pld, a.cols, r0, r1,
                                          inverse);
    });
}

} // namespace

void CpuBackend::affine_coupling_forward(const Tensor &x, const Tensor &h, const Tensor &scale,
                                         Tensor &z, Tensor &logdet) {
    affine_coupling(x, h, scale, z, logdet, false, "affine_coupling_forward");
}

void CpuBackend::affine_coupling_inverse(const Tensor &z, const Tensor &h, const Tensor &scale,
                                         Tensor &x, Tensor &logdet) {
    affine_coupling(z, h, scale, x, logdet, true, "affine_coupling_inverse");
}

void CpuBackend::affine_coupling_backward(const Tensor &x, const Tensor &h, const Tensor &scale,
                                          const Tensor &dz, const Tensor &dlogdet, Tensor &dx,
                                          Tensor &dh, Tensor &dscale) {
    const CouplingBackwardArgs g = coupling_backward_args(x, h, scale, dz, dlogdet, dx, dh,
                                                          dscale, "affine_coupling_backward");
    const CouplingArgs &a = g.in;
    const float *pdz = g.dz;
    float *pdx = g.dx, *pdh = g.dh, *pdscale = g.dscale;
    const size_t F = a.cols;
    if (!F) return; // no free columns: nothing to write
    // Fixed blocks of kReduceRows rows, partial sums added in block order.
    const size_t blocks = (a.rows + kReduceRows - 1) / kReduceRows;
    double *partial = partial_sums(blocks * F);
    parallel_rows(a.rows, kReduceRows, 12 * F, [&](size_t r0, size_t r1) {
        cpu_kernels::affine_coupling_backward_rows(a.in, a.h, a.scale, pdz, a.per_row, pdx, pdh,
                                                   &partial[r0 / kReduceRows * F], F, r0, r1);
    });
    for (size_t j = 0; j < F; ++j) {
        double total = 0.0;
        for (size_t b = 0; b < blocks; ++b) total += partial[b * F + j];
        pdscale[j] = float(pdscale[j] + total);
    }
}

// --- diagonal scaling -------------------------------------------------------

void CpuBackend::scale_exp(const Tensor &x, const Tensor &s, float sign, Tensor &y) {
    const char *op = "scale_exp";
    check_same_shape(x, y, op);
    check_row_vector(s, x, op);
    const float *px = op_f32(x, op), *ps = op_f32(s, op);
    float *py = op_f32(y, op);
    const size_t D = s.size();
    float *factor = column_factors(D);
    for (size_t j = 0; j < D; ++j) factor[j] = std::exp(sign * ps[j]);
    parallel_for(x.rows(), D, [&](size_t i) {
        for (size_t j = 0; j < D; ++j) py[i * D + j] = px[i * D + j] * factor[j];
    });
}

void CpuBackend::scale_exp_backward(const Tensor &x, const Tensor &s, const Tensor &dz,
                                    const Tensor &dlogdet, Tensor &dx, Tensor &ds) {
    const ScaleExpBackwardArgs a =
        scale_exp_backward_args(x, s, dz, dlogdet, dx, ds, "scale_exp_backward");
    const size_t D = a.cols;
    float *factor = column_factors(D);
    for (size_t j = 0; j < D; ++j) factor[j] = std::exp(a.s[j]);
    const double *grad =
        reduce_columns<1, 1>(a.rows, D, [&](size_t i, size_t j, double *acc) {
            const size_t k = i * D + j;
            a.dx[k] = a.dz[k] * factor[j];
            *acc += double(a.dz[k]) * (a.x[k] * factor[j]);
        });
    const double dlogdet_total =
        reduce_all(a.rows, [&](size_t i) { return double(a.dlogdet[i]); });
    for (size_t j = 0; j < D; ++j) a.ds[j] = float(a.ds[j] + grad[j] + dlogdet_total);
}

// --- batch normalization ----------------------------------------------------

void CpuBackend::batch_norm_stats(const Tensor &x, Tensor &mean, Tensor &var) {
    const char *op = "batch_norm_stats";
    check_row_vector(mean, x, op);
    check_row_vector(var, x, op);
    const size_t n = x.rows(), D = mean.size();
    op_check(n > 0, op, "empty batch");
    const float *px = op_f32(x, op);
    float *pmean = op_f32(mean, op), *pvar = op_f32(var, op);
    // Two passes: the one-pass E[x^2] - E[x]^2 cancels badly for large means.
    double *mu = reduce_columns<1, 1>(
        n, D, [&](size_t i, size_t j, double *acc) { *acc += px[i * D + j]; });
    for (size_t j = 0; j < D; ++j) mu[j] /= double(n);
    const double *sq = reduce_columns<1, 2>(n, D, [&](size_t i, size_t j, double *acc) {
        const double d = px[i * D + j] - mu[j];
        *acc += d * d;
    });
    for (size_t j = 0; j < D; ++j) {
        pmean[j] = float(mu[j]);
        pvar[j] = float(sq[j] / double(n));
    }
}

namespace {

// The per-row logdet of batch norm: sum_j log_gamma[j] - 0.5 log(var[j] + eps).
double batch_norm_logdet(const BatchNormArgs &a, float eps) {
    double ld = 0.0;
    for (size_t j = 0; j < a.cols; ++j)
        ld += a.log_gamma[j] - 0.5 * std::log(double(a.var[j]) + eps);
    return ld;
}

} // namespace

void CpuBackend::batch_norm_forward(const Tensor &x, const Tensor &mean, const Tensor &var,
                                    const Tensor &log_gamma, const Tensor &beta, float eps,
                                    Tensor &z, Tensor &logdet) {
    const BatchNormArgs a =
        batch_norm_args(x, mean, var, log_gamma, beta, z, logdet, "batch_norm_forward");
    const size_t D = a.cols;
    float *gain = column_factors(D);
    for (size_t j = 0; j < D; ++j)
        gain[j] = float(std::exp(double(a.log_gamma[j])) / std::sqrt(double(a.var[j]) + eps));
    const double ld = batch_norm_logdet(a, eps);
    parallel_for(a.rows, D, [&](size_t i) {
        for (size_t j = 0; j < D; ++j)
            a.out[i * D + j] = (a.in[i * D + j] - a.mean[j]) * gain[j] + a.beta[j];
        a.logdet[i] = float(a.logdet[i] + ld);
    });
}

void CpuBackend::batch_norm_inverse(const Tensor &z, const Tensor &mean, const Tensor &var,
                                    const Tensor &log_gamma, const Tensor &beta, float eps,
                                    Tensor &x, Tensor &logdet) {
    const BatchNormArgs a =
        batch_norm_args(z, mean, var, log_gamma, beta, x, logdet, "batch_norm_inverse");
    const size_t D = a.cols;
    float *inv_gain = column_factors(D);
    for (size_t j = 0; j < D; ++j)
        inv_gain[j] = float(std::exp(-double(a.log_gamma[j])) * std::sqrt(double(a.var[j]) + eps));
    const double ld = batch_norm_logdet(a, eps);
    parallel_for(a.rows, D, [&](size_t i) {
        for (size_t j = 0; j < D; ++j)
            a.out[i * D + j] = (a.in[i * D + j] - a.beta[j]) * inv_gain[j] + a.mean[j];
        a.logdet[i] = float(a.logdet[i] - ld);
    });
}

void CpuBackend::batch_norm_backward(const Tensor &x, const Tensor &mean, const Tensor &var,
                                     const Tensor &log_gamma, float eps, bool batch_stats,
                                     const Tensor &dz, const Tensor &dlogdet, Tensor &dx,
                                     Tensor &dlog_gamma, Tensor &dbeta) {
    const BatchNormBackwardArgs g = batch_norm_backward_args(
        x, mean, var, log_gamma, dz, dlogdet, dx, dlog_gamma, dbeta, "batch_norm_backward");
    const size_t n = g.rows, D = g.cols;
    const float *px = g.x, *pmean = g.mean, *pvar = g.var, *plg = g.log_gamma, *pdz = g.dz;
    const float *pdl = g.dlogdet;
    float *pdx = g.dx, *pdlg = g.dlog_gamma, *pdbeta = g.dbeta;

    // Per column: 1 / std, gamma and the a, b, c below.
    float *inv_std = thread_buffer<float, 1>(5 * D), *gamma = inv_std + D;
    float *a = gamma + D, *b = a + D, *c = b + D;
    for (size_t j = 0; j < D; ++j) {
        inv_std[j] = float(1.0 / std::sqrt(double(pvar[j]) + eps));
        gamma[j] = std::exp(plg[j]);
    }
    auto xhat = [&](size_t i, size_t j) { return (px[i * D + j] - pmean[j]) * inv_std[j]; };
    // Per column: sum_i dz and sum_i dz * xhat.
    const double *sums = reduce_columns<2, 1>(n, D, [&](size_t i, size_t j, double *acc) {
        acc[0] += pdz[i * D + j];
        acc[1] += double(pdz[i * D + j]) * xhat(i, j);
    });
    const double dlogdet_total = reduce_all(n, [&](size_t i) { return double(pdl[i]); });

    // dx = a dz + b + c xhat per column. With batch statistics, b and c are
    // the gradient through the mean and variance: the usual batch-norm terms
    // plus the logdet's -0.5 log(var + eps), which pulls on var as well.
    for (size_t j = 0; j < D; ++j) {
        pdbeta[j] = float(pdbeta[j] + sums[2 * j]);
        pdlg[j] = float(pdlg[j] + gamma[j] * sums[2 * j + 1] + dlogdet_total);
        a[j] = inv_std[j] * gamma[j];
        b[j] = batch_stats ? float(-inv_std[j] * gamma[j] * sums[2 * j] / double(n)) : 0.0f;
        c[j] = batch_stats
                   ? float(-inv_std[j] * (gamma[j] * sums[2 * j + 1] + dlogdet_total) / double(n))
                   : 0.0f;
    }
    parallel_for(n, 2 * D, [&](size_t i) {
        for (size_t j = 0; j < D; ++j)
            pdx[i * D + j] = a[j] * pdz[i * D + j] + b[j] + c[j] * xhat(i, j);
    });
}

void CpuBackend::batch_norm_update_running(const Tensor &mean, const Tensor &var,
                                           float momentum, size_t n, Tensor &running_mean,
                                           Tensor &running_var) {
    const char *op = "batch_norm_update_running";
    const size_t D = mean.size();
    op_check(var.size() == D && running_mean.size() == D && running_var.size() == D, op,
              "size mismatch");
    const float *pm = op_f32(mean, op), *pv = op_f32(var, op);
    float *prm = op_f32(running_mean, op), *prv = op_f32(running_var, op);
    const double unbias = n > 1 ? double(n) / double(n - 1) : 1.0;
    for (size_t j = 0; j < D; ++j) {
        prm[j] = (1.0f - momentum) * prm[j] + momentum * pm[j];
        prv[j] = (1.0f - momentum) * prv[j] + momentum * float(pv[j] * unbias);
    }
}

// --- preprocessing ----------------------------------------------------------

void CpuBackend::dequantize_forward(const Tensor &x, float levels, uint64_t seed,
                                    uint64_t stream, uint64_t first, Tensor &y) {
    const char *op = "dequantize_forward";
    op_check(x.size() == y.size(), op, "size mismatch");
    const float *px = op_f32(x, op);
    float *py = op_f32(y, op);
    parallel_for(x.size(), 32, [&](size_t k) {
        const float u = philox_uniform(philox4x32_10(seed, stream, first + k).v[0]);
        py[k] = (px[k] + u) / levels;
    });
}

void CpuBackend::dequantize_inverse(const Tensor &y, float levels, Tensor &x) {
    const char *op = "dequantize_inverse";
    op_check(x.size() == y.size(), op, "size mismatch");
    const float *py = op_f32(y, op);
    float *px = op_f32(x, op);
    parallel_for(y.size(), 1, [&](size_t k) {
        px[k] = std::clamp(std::floor(py[k] * levels), 0.0f, levels - 1.0f);
    });
}

void CpuBackend::logit_forward(const Tensor &x, float alpha, Tensor &z, Tensor &logdet) {
    const LogitArgs a = logit_args(x, z, logdet, "logit_forward");
    const size_t D = a.cols;
    const double log_range = std::log1p(-2.0 * alpha);
    parallel_for(a.rows, 16 * D, [&](size_t i) {
        double ld = 0.0;
        for (size_t j = 0; j < D; ++j) {
            const LogitPoint p = logit_point(a.in[i * D + j], alpha);
            a.out[i * D + j] = float(p.log_y - p.log_1my);
            ld += log_range - p.log_y - p.log_1my;
        }
        a.logdet[i] = float(a.logdet[i] + ld);
    });
}

void CpuBackend::logit_inverse(const Tensor &z, float alpha, Tensor &x, Tensor &logdet) {
    const LogitArgs a = logit_args(z, x, logdet, "logit_inverse");
    const size_t D = a.cols;
    const double log_range = std::log1p(-2.0 * alpha);
    parallel_for(a.rows, 16 * D, [&](size_t i) {
        double ld = 0.0;
        for (size_t j = 0; j < D; ++j) {
            const double v = a.in[i * D + j];
            a.out[i * D + j] = float((sigmoid(v) - alpha) / (1.0 - 2.0 * alpha));
            // log|dx/dz| = log(sigmoid(v) (1 - sigmoid(v))) - log_range, and the
            // first term is the logistic log-density, stable for any v.
            ld += logistic_log_density(v) - log_range;
        }
        a.logdet[i] = float(a.logdet[i] + ld);
    });
}

void CpuBackend::logit_backward(const Tensor &x, float alpha, const Tensor &dz,
                                const Tensor &dlogdet, Tensor &dx) {
    const LogitBackwardArgs a = logit_backward_args(x, dz, dlogdet, dx, "logit_backward");
    const size_t D = a.cols;
    const double range = 1.0 - 2.0 * alpha;
    parallel_for(a.rows, 8 * D, [&](size_t i) {
        for (size_t j = 0; j < D; ++j) {
            const double y = logit_point(a.x[i * D + j], alpha).y;
            // dz/dx = range / (y (1 - y)); dlogdet/dx = range (2y - 1) / (y (1 - y)).
            a.dx[i * D + j] =
                float(range / (y * (1.0 - y)) * (a.dz[i * D + j] + a.dlogdet[i] * (2.0 * y - 1.0)));
        }
    });
}

// --- base distributions -----------------------------------------------------

namespace {

// out[i] = the base's log-density of row i, by its row kernel (cost: the
// work of one element).
void per_row_log_prob(const Tensor &z, Tensor &out, const char *op, size_t cost,
                      void (*rows_kernel)(const float *, float *, size_t, size_t, size_t)) {
    check_per_row(out, z, op);
    const float *pz = op_f32(z, op);
    float *po = op_f32(out, op);
    const size_t D = z.cols();
    parallel_rows(z.rows(), 64, cost * D,
                  [&](size_t r0, size_t r1) { rows_kernel(pz, po, D, r0, r1); });
}

// dz[i, j] = dlogp[i] * derivative(z[i, j]).
template <class Derivative>
void per_row_log_prob_backward(const Tensor &z, const Tensor &dlogp, Tensor &dz,
                               const char *op, Derivative derivative) {
    check_same_shape(z, dz, op);
    check_per_row(dlogp, z, op);
    const float *pz = op_f32(z, op), *pdl = op_f32(dlogp, op);
    float *pdz = op_f32(dz, op);
    const size_t D = z.cols();
    parallel_for(z.rows(), 4 * D, [&](size_t i) {
        for (size_t j = 0; j < D; ++j) pdz[i * D + j] = pdl[i] * derivative(pz[i * D + j]);
    });
}

} // namespace

void CpuBackend::normal_log_prob(const Tensor &z, Tensor &out) {
    per_row_log_prob(z, out, "normal_log_prob", 2, cpu_kernels::normal_log_prob_rows);
}

void CpuBackend::normal_log_prob_backward(const Tensor &z, const Tensor &dlogp, Tensor &dz) {
    per_row_log_prob_backward(z, dlogp, dz, "normal_log_prob_backward",
                              [](float v) { return -v; });
}

void CpuBackend::logistic_log_prob(const Tensor &z, Tensor &out) {
    per_row_log_prob(z, out, "logistic_log_prob", 16, cpu_kernels::logistic_log_prob_rows);
}

void CpuBackend::logistic_log_prob_backward(const Tensor &z, const Tensor &dlogp, Tensor &dz) {
    const char *op = "logistic_log_prob_backward";
    check_same_shape(z, dz, op);
    check_per_row(dlogp, z, op);
    const float *pz = op_f32(z, op), *pdl = op_f32(dlogp, op);
    float *pdz = op_f32(dz, op);
    const size_t D = z.cols();
    parallel_rows(z.rows(), 64, 8 * D, [&](size_t r0, size_t r1) {
        cpu_kernels::logistic_log_prob_backward_rows(pz, pdl, pdz, D, r0, r1);
    });
}

// --- random numbers ---------------------------------------------------------

namespace {

// t[k] = draw(philox block for counter k).
template <class Draw> void fill_random(Tensor &t, uint64_t seed, uint64_t stream, Draw draw) {
    float *pt = op_f32(t, "fill_random");
    parallel_for(t.size(), 32, [&](size_t k) { pt[k] = draw(philox4x32_10(seed, stream, k)); });
}

// range(out, k0, k1) over t's elements in chunks of whole Philox blocks.
template <class Range> void fill_four_per_block(Tensor &t, const char *op, Range range) {
    float *pt = op_f32(t, op);
    const size_t n = t.size(), chunk = 4096; // a multiple of 4: no block split
    parallel_rows((n + chunk - 1) / chunk, 1, 8 * chunk, [&](size_t c0, size_t c1) {
        range(pt, c0 * chunk, std::min(n, c1 * chunk));
    });
}

} // namespace

void CpuBackend::fill_normal(Tensor &t, uint64_t seed, uint64_t stream, float stddev) {
    fill_four_per_block(t, "fill_normal", [&](float *out, size_t k0, size_t k1) {
        cpu_kernels::normal_range(seed, stream, stddev, out, k0, k1);
    });
}

void CpuBackend::fill_logistic(Tensor &t, uint64_t seed, uint64_t stream, float scale) {
    fill_four_per_block(t, "fill_logistic", [&](float *out, size_t k0, size_t k1) {
        cpu_kernels::logistic_range(seed, stream, scale, out, k0, k1);
    });
}

void CpuBackend::fill_uniform(Tensor &t, uint64_t seed, uint64_t stream, float lo, float hi) {
    fill_random(t, seed, stream,
                [=](PhiloxBlock b) { return lo + (hi - lo) * philox_uniform(b.v[0]); });
}

// --- optimizers -------------------------------------------------------------

void CpuBackend::adam_update(Tensor &param, const Tensor &grad, Tensor &m, Tensor &v,
                             float lr, float beta1, float beta2, float eps, float l2,
                             float decoupled_decay, uint64_t step) {
    const char *op = "adam_update";
    const size_t n = param.size();
    op_check(grad.size() == n && m.size() == n && v.size() == n, op, "size mismatch");
    op_check(step >= 1, op, "step counts from 1");
    float *pp = op_f32(param, op), *pm = op_f32(m, op), *pv = op_f32(v, op);
    const float *pg = op_f32(grad, op);
    // Scalars in double, as PyTorch computes them in Python floats.
    const float step_size = float(lr / (1.0 - std::pow(double(beta1), double(step))));
    const float bias2_sqrt = float(std::sqrt(1.0 - std::pow(double(beta2), double(step))));
    const float decay = float(1.0 - double(lr) * decoupled_decay);
    parallel_rows(n, 4096, 16, [&](size_t k0, size_t k1) {
        cpu_kernels::adam_range(pp, pg, pm, pv, beta1, beta2, eps, l2, decay, step_size,
                                bias2_sqrt, k0, k1);
    });
}

void CpuBackend::sgd_update(Tensor &param, const Tensor &grad, Tensor &velocity, float lr,
                            float momentum, float l2, bool nesterov, bool first_step) {
    const char *op = "sgd_update";
    const size_t n = param.size();
    op_check(grad.size() == n && velocity.size() == n, op, "size mismatch");
    float *pp = op_f32(param, op), *pbuf = op_f32(velocity, op);
    const float *pg = op_f32(grad, op);
    parallel_for(n, 4, [&](size_t k) {
        const float g = pg[k] + l2 * pp[k];
        pbuf[k] = first_step ? g : momentum * pbuf[k] + g;
        pp[k] -= lr * (nesterov ? g + momentum * pbuf[k] : pbuf[k]);
    });
}

// --- process-wide instance --------------------------------------------------

Backend &cpu_backend() {
    static CpuBackend backend;
    return backend;
}

void cpu_set_num_threads(int n) {
    if (n < 0) fail(Status::invalid_argument, "thread count must be >= 0");
    const int threads = n == 0 ? omp_get_num_procs() : n;
    omp_set_num_threads(threads);
    if (openblas_set_num_threads) openblas_set_num_threads(threads);
}

} // namespace flow
