// CpuBackend::gemm. The layers' forward products x W^T and their backward
// products dy W go to cpu_small_gemm.cpp's kernels at every batch size:
// they match or beat OpenBLAS there (its packing and beta passes cost more
// than ours at these shapes), add the bias and the activation as they
// store, and a row's result never depends on how many rows share the call,
// so that evaluation gives the same numbers however it splits a batch into
// blocks (OpenBLAS's narrow outputs change with the row count). Other products big
// enough for BLAS go straight to the system's sgemm (OpenBLAS, whose kernels
// are chosen at run time for the CPU it runs on): called directly rather
// than through Eigen's product, because Eigen zeroes C before a beta = 0
// product (one more pass over C) and always lets the BLAS use every thread.
// Tiny products stay in Eigen's inline coefficient-based product, which
// beats a BLAS call there, and the small products of small flows' backward
// passes go to the small kernel, as do the weight gradients of layers with
// fewer than 8 inputs (narrow_weight_gradient), those of layers with a
// narrow side where the kernel runs 16-float tiles, and every product it
// takes where the BLAS's kernels are not made for the CPU
// (small_kernel_beats_blas). Only this file includes Eigen.
#ifndef EIGEN_USE_BLAS
#define EIGEN_USE_BLAS
#endif
#include <Eigen/Core>
#include <dlfcn.h>
#include <omp.h>
#include <strings.h>

#include <algorithm>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/cpu_small_gemm.h"
#include "backend/cpu/cpu_thread_buffer.h"

// sgemm_ is declared by Eigen's BLAS header (EIGEN_USE_BLAS).

namespace flow {

namespace {

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// m * n * k below which Eigen's inline product wins over a BLAS call.
constexpr double kTinyGemm = 32768.0;
// Where small_gemm beats a one-thread OpenBLAS 0.3.21 sgemm (AMD Zen 4) on the
// backward products dy^T x: m * n * k below kSmallGemm and every side at
// least 64 (below that OpenBLAS's kernels won there). Both run near the
// FMA units' peak there; the gain is OpenBLAS's set-up.
constexpr double kSmallGemm = 2.0 * 1024 * 1024;
// m * n * k below which the product runs on one thread: splitting ~1 ms of
// work or less costs more in wake-ups and barriers than it saves, and on a
// busy machine a waiting thread can lose its core for a whole time slice.
constexpr double kSerialGemm = 4.0 * 1024 * 1024;
// Inner dimension up to which products with an untransposed A use the
// small kernel (its blocks of op(B) slabs and op(A) rows stay cache-sized up
// to there).
constexpr size_t kKernelDepth = 1024;

// Whether a product with an untransposed A and inner dimension k runs on
// the small kernel (and so whether a packed B is of use to it).
bool on_small_kernel(size_t k) { return k >= 4 && k <= kKernelDepth; }
// Elements of C below which copying the bias into it stays on one thread.
constexpr size_t kParallelCopy = size_t(1) << 18;

// Whether the system BLAS runs kernels made for this CPU. OpenBLAS picks
// them from a table of CPU models and falls back to its SSE3 ones
// ("Prescott") on a model newer than its table: OpenBLAS 0.3.21 on an
// Intel Emerald Rapids core runs sgemm at 29 GFLOP/s there, against 150
// with its AVX-512 ones (OPENBLAS_CORETYPE=SkylakeX). Where its kernels
// predate AVX2 on a CPU that has it, the small kernel takes every product
// it can. Other BLAS libraries are trusted.
bool blas_is_tuned() {
#if defined(__x86_64__) && defined(__GNUC__)
    static const bool tuned = [] {
        using Corename = const char *(*)();
        const auto corename =
            reinterpret_cast<Corename>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
        if (!corename || !__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
            return true;
        const char *name = corename();
        for (const char *avx2 : {"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids",
                                 "excavator"})
            if (name && strcasecmp(name, avx2) == 0) return true;
        return false;
    }();
    return tuned;
#else
    return true;
#endif
}

// Whether a product op(A) op(B), k deep, that BLAS could take runs faster on
// the small kernel:
// - where BLAS's kernels are not made for the CPU, any product of a depth it
//   takes (OpenBLAS's SSE3 kernels on an Emerald Rapids core: weight
//   gradients dy^T x of 8-256 x 256 x 256 at 20-30 GFLOP/s, against
//   110-160 on the small kernel; Glow's 64 x 64 LU products A^T B^T at 29
//   against 87);
// - else, with B untransposed, small products with every side at least 64
//   (its set-up is OpenBLAS's loss);
// - and, where the kernel runs 16-float tiles, the weight gradients of a
//   layer with 16-64 inputs or outputs and at most 256 of the other, over
//   the rows of a train step's part (a D = 64 coupling net's first and last
//   layers). OpenBLAS's SkylakeX kernels ran those at 85-120 GFLOP/s on one
//   Emerald Rapids thread (16 and 32 x 256 x 256 and 512), the small kernel
//   at 115-160; from 128 x 256 x 256 on and at 64 x 512 OpenBLAS is faster.
bool small_kernel_beats_blas(bool trans_b, size_t m, size_t n, size_t k) {
    if (!blas_is_tuned()) return on_small_kernel(k);
    if (trans_b) return false;
    if (std::min({m, n, k}) >= 64 && double(m) * double(n) * double(k) < kSmallGemm) return true;
    const size_t narrow = std::min(m, n), wide = std::max(m, n);
    return cpu_kernels::runs_16_float_tiles() && narrow >= 16 && narrow <= 64 && wide <= 256 &&
           k <= 512;
}

// Runs f with OpenMP (and so OpenBLAS, openmp flavour, which follows
// omp_get_max_threads, and keeps to one thread inside a parallel region)
// limited to one thread on this thread.
template <class F> void single_threaded(F &&f) {
    const int threads = omp_get_max_threads();
    if (threads == 1 || omp_in_parallel()) return f();
    omp_set_num_threads(1);
    try {
        f();
    } catch (...) {
        omp_set_num_threads(threads);
        throw;
    }
    omp_set_num_threads(threads);
}

// The small kernel's C = alpha * op(A) op(B) + beta * C (C [m, n], rows n
// apart) with op(A)(r, p) = a[r * a_row + p * a_step]: rows split over the
// threads for big products, one block each (each block packs op(B) again);
// a row's arithmetic is the same either way.
void small_kernel_product(size_t m, size_t n, size_t k, float alpha, const float *a,
                          size_t a_row, size_t a_step, bool trans_b, const float *b, size_t ldb,
                          float beta, float *c, const cpu_kernels::GemmStore &store,
                          const float *panel) {
    const double work = double(m) * double(n) * double(k);
    const size_t threads =
        work < kSerialGemm || omp_in_parallel() ? 1 : size_t(std::max(omp_get_max_threads(), 1));
    cpu_parallel_rows(m, (m + threads - 1) / threads, n * k, size_t(kSerialGemm),
                      [&](size_t r0, size_t r1) {
                          cpu_kernels::GemmStore part = store;
                          if (part.act) part.act += r0 * n;
                          if (part.gate) part.gate += r0 * n;
                          cpu_kernels::small_gemm_strided(r1 - r0, n, k, alpha, a + r0 * a_row,
                                                          a_row, a_step, trans_b, b, ldb, beta,
                                                          c + r0 * n, n, part, panel);
                      });
}

// C = alpha A^T B + beta C for A [k, m], B [k, n] (rows a_cols and b_cols
// apart), n < kNarrow: the weight gradient dy^T x of a layer with few
// inputs (a D = 8 coupling's first layer), which OpenBLAS runs at a quarter
// of its rate. Computed the other way round, C^T = B^T A, so that the
// kernel's rows are the few inputs and its vectors run along the outputs:
// each row of dy is read once, as whole vectors (256 x 4 x 512: 20-27 ->
// 41-56 GFLOP/s on one thread; in a train step's backward pass, with the
// bias gradient's pass, 5.0-5.5 -> 2.9-3.6 ms a RealNVP D = 8 step). Few
// outputs and many inputs stay with OpenBLAS: the kernel's tiles would read
// x once per few outputs, and x comes from L3 by then (dy^T x of 8 x 256 x
// 512 10-20% slower there).
void narrow_weight_gradient(size_t m, size_t n, size_t k, float alpha, const float *a,
                            size_t a_cols, const float *b, size_t b_cols, float beta, float *c) {
    float *t = thread_buffer<float, 5>(n * m);
    cpu_kernels::small_gemm(true, false, n, m, k, alpha, b, b_cols, a, a_cols, 0.0f, t, m, {});
    for (size_t i = 0; i < m; ++i)
        for (size_t j = 0; j < n; ++j)
            c[i * n + j] = beta == 0.0f ? t[j * m + i] : t[j * m + i] + beta * c[i * n + j];
}

// The panel of op(B) (k x n) that pack_weight (trans_b: b is a weight
// [n, k]) or pack_weight_rows (not: b is one [k, n]) made, checked by its
// size; null for none.
const float *packed_panel(const Tensor *packed_b, bool trans_b, size_t n, size_t k,
                          const char *op) {
    if (!packed_b) return nullptr;
    const size_t size = trans_b ? cpu_kernels::transposed_panel_size(n, k)
                                : cpu_kernels::plain_panel_size(n, k);
    op_check(size != 0 && packed_b->size() == size, op, "packed_b is not the packed form of b");
    return op_f32(*packed_b, op);
}

// What the small kernel stores besides pre = x W^T + v: y = act(pre) for
// the piecewise-linear activations (fused: fused_act says so); the others
// cost more than the pass over y they would save.
cpu_kernels::GemmStore activation_store(const Tensor &v, Activation act, Tensor &y,
                                        bool &fused_act, const char *op) {
    fused_act = applied_in_store(act);
    return {op_f32(v, op), fused_act ? op_f32(y, op) : nullptr, negative_slope(act)};
}

// c = alpha * op(a) op(b) + beta * c, plus the row vector store.bias when
// non-null (then beta is 0). The small kernel adds the bias as it stores C,
// and writes store.act and applies store.gate too; the other paths copy the
// bias into C first and accumulate onto it, and leave store.act and
// store.gate to the caller. Returns whether it took care of them.
// packed_b: pack_weight's panel of b (trans_b), read by the small kernel.
bool product(const char *op, bool trans_a, bool trans_b, float alpha, const Tensor &a,
             const Tensor &b, float beta, Tensor &c, const cpu_kernels::GemmStore &store,
             const Tensor *packed_b = nullptr) {
    const size_t a_rows = a.rows(), a_cols = a.cols();
    const size_t b_rows = b.rows(), b_cols = b.cols();
    const size_t m = trans_a ? a_cols : a_rows, k = trans_a ? a_rows : a_cols;
    const size_t n = trans_b ? b_rows : b_cols;
    op_check((trans_b ? b_cols : b_rows) == k, op, "inner dimensions differ");
    op_check(c.rows() == m && c.cols() == n, op, "output shape mismatch");
    const float *pa = op_f32(a, op), *pb = op_f32(b, op);
    float *pc = op_f32(c, op);
    const float *panel = packed_panel(packed_b, trans_b, n, k, op);
    if (m == 0 || n == 0) return true;

    const double work = double(m) * double(n) * double(k);
    const size_t int_max = size_t(2147483647);
    if (!trans_a && on_small_kernel(k)) {
        small_kernel_product(m, n, k, alpha, pa, a_cols, 1, trans_b, pb, b_cols, beta, pc, store,
                             panel);
        return true;
    }
    const bool blas = work >= kTinyGemm && k >= 4 &&
                      std::max({a_rows, a_cols, b_rows, b_cols}) <= int_max;
    const bool plain = !store.bias && !store.act && !store.gate;
    if (blas && plain && trans_a && !trans_b && n < cpu_kernels::kNarrow &&
        (work < kSerialGemm || omp_in_parallel())) {
        narrow_weight_gradient(m, n, k, alpha, pa, a_cols, pb, b_cols, beta, pc);
        return true;
    }
    if (blas && small_kernel_beats_blas(trans_b, m, n, k)) {
        small_kernel_product(m, n, k, alpha, pa, trans_a ? 1 : a_cols, trans_a ? a_cols : 1,
                             trans_b, pb, b_cols, beta, pc, store, nullptr);
        return true;
    }
    if (const float *bias = store.bias) { // with beta = 0 (gemm_bias)
        cpu_parallel_for(m, n, kParallelCopy,
                         [&](size_t i) { std::copy_n(bias, n, pc + i * n); });
        beta = 1.0f;
    }
    if (blas) {
        // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T,
        // and a row-major matrix is its transpose in column-major order.
        const int M = int(n), N = int(m), K = int(k);
        const int lda = int(std::max<size_t>(b_cols, 1)), ldb = int(std::max<size_t>(a_cols, 1));
        const int ldc = int(n);
        auto call = [&] {
            sgemm_(trans_b ? "T" : "N", trans_a ? "T" : "N", &M, &N, &K, &alpha, pb, &lda, pa,
                   &ldb, &beta, pc, &ldc);
        };
        if (work < kSerialGemm)
            single_threaded(call);
        else
            call();
        return false;
    }

    Eigen::Map<const RowMajor> A(pa, a_rows, a_cols);
    Eigen::Map<const RowMajor> B(pb, b_rows, b_cols);
    Eigen::Map<RowMajor> C(pc, m, n);
    auto multiply = [&](const auto &op_a, const auto &op_b) {
        // Plain assignment for beta == 0: c's old contents (even NaN) are never read.
        if (beta == 0.0f) {
            C.noalias() = alpha * op_a.lazyProduct(op_b);
            return;
        }
        if (beta != 1.0f) C *= beta;
        C.noalias() += alpha * op_a.lazyProduct(op_b);
    };
    if (!trans_a && !trans_b)
        multiply(A, B);
    else if (trans_a && !trans_b)
        multiply(A.transpose(), B);
    else if (!trans_a && trans_b)
        multiply(A, B.transpose());
    else
        multiply(A.transpose(), B.transpose());
    return false;
}

} // namespace

void CpuBackend::gemm(bool trans_a, bool trans_b, float alpha, const Tensor &a,
                      const Tensor &b, float beta, Tensor &c) {
    product("gemm", trans_a, trans_b, alpha, a, b, beta, c, {});
}

void CpuBackend::gemm_bias(bool trans_a, bool trans_b, const Tensor &a, const Tensor &b,
                           const Tensor &v, Tensor &c, const Tensor *packed_b) {
    const char *op = "gemm_bias";
    check_row_vector(v, c, op);
    product(op, trans_a, trans_b, 1.0f, a, b, 0.0f, c, {op_f32(v, op)}, packed_b);
}

void CpuBackend::gemm_bias_activation(bool trans_a, bool trans_b, const Tensor &a,
                                      const Tensor &b, const Tensor &v, Activation act,
                                      Tensor &pre, Tensor &y, const Tensor *packed_b) {
    const char *op = "gemm_bias_activation";
    check_row_vector(v, pre, op);
    check_same_shape(pre, y, op);
    bool fused = false;
    const cpu_kernels::GemmStore store = activation_store(v, act, y, fused, op);
    if (!product(op, trans_a, trans_b, 1.0f, a, b, 0.0f, pre, store, packed_b) || !fused)
        activation_forward(act, pre, y);
}

void CpuBackend::gemm_bias_activation_cols(const Tensor &a, const Tensor &a_cols,
                                           Tensor &gathered, const Tensor &b, const Tensor &v,
                                           Activation act, Tensor &pre, Tensor &y,
                                           const Tensor *packed_b) {
    const char *op = "gemm_bias_activation_cols";
    const size_t m = a.rows(), k = a_cols.size(), n = b.rows();
    const cpu_kernels::ColumnRun run =
        cpu_kernels::column_run(cpu_index_data(&a_cols, k, a.cols(), op), k);
    // Every other column or a run (the coupling masks) is read in place;
    // anything else, depths the small kernel does not take and outputs it
    // would compute in another order on a gathered copy, gathered.
    if ((run.step != 1 && run.step != 2) || !on_small_kernel(k) || n < cpu_kernels::kNarrow)
        return Backend::gemm_bias_activation_cols(a, a_cols, gathered, b, v, act, pre, y,
                                                  packed_b);
    op_check(b.cols() == k, op, "inner dimensions differ");
    op_check(pre.rows() == m && pre.cols() == n, op, "output shape mismatch");
    check_row_vector(v, pre, op);
    check_same_shape(pre, y, op);
    const float *panel = packed_panel(packed_b, true, n, k, op);
    bool fused = false;
    const cpu_kernels::GemmStore store = activation_store(v, act, y, fused, op);
    if (m == 0 || n == 0) return;
    small_kernel_product(m, n, k, 1.0f, op_f32(a, op) + run.first, a.cols(), size_t(run.step),
                         true, op_f32(b, op), k, 0.0f, op_f32(pre, op), store, panel);
    if (!fused) activation_forward(act, pre, y);
}

void CpuBackend::gemm_activation_backward(const Tensor &dy, const Tensor &w, Activation act,
                                          const Tensor &pre, const Tensor &y, Tensor &dx,
                                          const Tensor *packed_w) {
    const char *op = "gemm_activation_backward";
    const bool gated = applied_in_store(act);
    if (gated) check_same_shape(pre, dx, op);
    const auto store = gated ? cpu_kernels::GemmStore::gated(op_f32(pre, op), negative_slope(act))
                             : cpu_kernels::GemmStore();
    // The small kernel gates as it stores; the other paths leave it to the pass.
    if (!product(op, false, false, 1.0f, dy, w, 0.0f, dx, store, packed_w) || !gated)
        activation_backward(act, pre, y, dx, dx);
}

namespace {

// packed = a weight's panel for the small kernel's products of inner
// dimension k: `size` floats that pack() fills; undefined where size is 0
// or the kernel does not take that depth.
template <class Pack>
void make_panel(Backend &be, size_t k, size_t size, Tensor &packed, Pack &&pack) {
    if (!on_small_kernel(k) || size == 0) {
        packed = Tensor();
        return;
    }
    packed.ensure(be, {size});
    pack(packed.f32());
}

} // namespace

void CpuBackend::pack_weight(const Tensor &w, Tensor &packed) {
    const float *pw = op_f32(w, "pack_weight");
    const size_t n = w.rows(), k = w.cols();
    make_panel(*this, k, cpu_kernels::transposed_panel_size(n, k), packed,
               [&](float *panel) { cpu_kernels::pack_transposed_panel(pw, k, n, k, panel, k); });
}

void CpuBackend::pack_weight_rows(const Tensor &w, Tensor &packed) {
    const float *pw = op_f32(w, "pack_weight_rows");
    const size_t k = w.rows(), n = w.cols();
    make_panel(*this, k, cpu_kernels::plain_panel_size(n, k), packed,
               [&](float *panel) { cpu_kernels::pack_plain_panel(pw, n, k, panel); });
}

} // namespace flow
