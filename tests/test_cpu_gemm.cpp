// CPU GEMM against a double-precision reference: the small-product kernel
// directly (every tile remainder, strided operands; its runs form against
// the whole product), and Backend::gemm on
// shapes that reach each of its paths (Eigen's inline product, the small
// kernel, OpenBLAS) with operands that are row blocks of bigger tensors.
// Float sums in another order differ by a few ulps of the sum of |terms|.
#include <criterion/criterion.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_clones.h"
#include "backend/cpu/cpu_small_gemm.h"

using namespace flow;
using Vec = std::vector<float>;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Scalars {
    float alpha, beta;
};
// beta = 0 runs on a NaN-filled C: it must not be read.
const Scalars kScalars[] = {{1.0f, 0.0f}, {1.0f, 1.0f}, {-1.5f, 0.25f}, {0.5f, 0.0f}};

Vec random_vec(size_t n, unsigned seed) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    Vec v(n);
    for (float &x : v) x = dist(gen);
    return v;
}

// Checks c (rows ldc apart) against alpha * op(A) op(B) + beta * c0 in
// double, op(A)(i, p) = a[i * a_row + p * a_step], op(B)(p, j) likewise.
void check_product(const char *what, size_t m, size_t n, size_t k, float alpha, const float *a,
                   size_t a_row, size_t a_step, const float *b, size_t b_row, size_t b_step,
                   float beta, const float *c0, const float *c, size_t ldc) {
    for (size_t i = 0; i < m; ++i)
        for (size_t j = 0; j < n; ++j) {
            double sum = 0.0, mag = 0.0;
            for (size_t p = 0; p < k; ++p) {
                const double t = double(a[i * a_row + p * a_step]) * b[p * b_row + j * b_step];
                sum += t;
                mag += std::fabs(t);
            }
            double ref = double(alpha) * sum;
            mag *= std::fabs(alpha);
            if (beta != 0.0f) {
                ref += double(beta) * c0[i * ldc + j];
                mag += std::fabs(double(beta) * c0[i * ldc + j]);
            }
            const double got = c[i * ldc + j];
            cr_assert(std::fabs(got - ref) <= 1e-6 * (mag + 1.0) * std::sqrt(double(k) + 1.0),
                      "%s m=%zu n=%zu k=%zu alpha=%g beta=%g: c[%zu,%zu] = %.9g, reference %.9g",
                      what, m, n, k, alpha, beta, i, j, got, ref);
        }
}

} // namespace

// Every row remainder (tiles of 6 and 12 rows), column counts around the
// 8- and 16-wide blocks and, on CPUs with 16-float tiles, the 32-wide ones
// and a 16-wide one after them (40, 48, 56), k = 0, and leading dimensions
// wider than the matrices; there also with the 8-float tiles alone. Columns
// of C past n must stay untouched.
Test(cpu_gemm, small_kernel_matches_reference) {
    const size_t ms[] = {1, 2, 5, 6, 7, 11, 12, 13, 19, 25, 64};
    const size_t ns[] = {1, 3, 7, 8, 9, 15, 16, 17, 24, 33, 40, 48, 56, 64};
    const size_t ks[] = {0, 1, 2, 5, 13, 64};
    const size_t pad = 3;
    unsigned seed = 1;
    for (bool narrow : {false, true}) {
        cpu_kernels::use_8_float_tiles_only(narrow);
        for (int trans_a = 0; trans_a < 2; ++trans_a)
            for (int trans_b = 0; trans_b < 2; ++trans_b)
                for (size_t m : ms)
                    for (size_t n : ns)
                        for (size_t k : ks)
                            for (const Scalars &s : kScalars) {
                                // Stored shapes: A is m x k or k x m, B k x n or n x k.
                                const size_t a_rows = trans_a ? k : m, a_cols = trans_a ? m : k;
                                const size_t b_rows = trans_b ? n : k, b_cols = trans_b ? k : n;
                                const size_t lda = a_cols + pad, ldb = b_cols + pad, ldc = n + pad;
                                const Vec a = random_vec(a_rows * lda, ++seed);
                                const Vec b = random_vec(b_rows * ldb, ++seed);
                                const Vec c0 = s.beta == 0.0f ? Vec(m * ldc, kNaN)
                                                              : random_vec(m * ldc, ++seed);
                                Vec c = c0;
                                cpu_kernels::small_gemm(trans_a, trans_b, m, n, k, s.alpha,
                                                        a.data(), lda, b.data(), ldb, s.beta,
                                                        c.data(), ldc);
                                check_product("small_gemm", m, n, k, s.alpha, a.data(),
                                              trans_a ? 1 : lda, trans_a ? lda : 1, b.data(),
                                              trans_b ? 1 : ldb, trans_b ? ldb : 1, s.beta,
                                              c0.data(), c.data(), ldc);
                                for (size_t i = 0; i < m; ++i)
                                    for (size_t j = n; j < ldc; ++j)
                                        cr_assert(std::memcmp(&c[i * ldc + j], &c0[i * ldc + j],
                                                              sizeof(float)) == 0,
                                                  "small_gemm wrote past column n=%zu", n);
                            }
    }
    cpu_kernels::use_8_float_tiles_only(false);
}

// Both builds of the kernel (16-float tiles where the CPU has them, and
// 8-float ones) give every element the same bits: each adds its steps in
// the same order with the same FMAs.
Test(cpu_gemm, tile_widths_give_the_same_bits) {
#ifndef FLOW_HAS_CLONES
    cr_skip_test("no function clones (sanitizer build): the 8-float kernel is plain "
                 "x86-64, without FMA, and rounds otherwise");
#endif
    const size_t shapes[][3] = {{13, 40, 64}, {64, 64, 256}, {25, 56, 33}, {300, 256, 256}};
    unsigned seed = 900;
    for (const auto &shape : shapes)
        for (int trans_a = 0; trans_a < 2; ++trans_a)
            for (int trans_b = 0; trans_b < 2; ++trans_b) {
                const size_t m = shape[0], n = shape[1], k = shape[2];
                const Vec a = random_vec(m * k, ++seed), b = random_vec(k * n, ++seed);
                Vec c[2];
                for (int narrow = 0; narrow < 2; ++narrow) {
                    cpu_kernels::use_8_float_tiles_only(narrow);
                    c[narrow].assign(m * n, kNaN);
                    cpu_kernels::small_gemm(trans_a, trans_b, m, n, k, 1.0f, a.data(),
                                            trans_a ? m : k, b.data(), trans_b ? k : n, 0.0f,
                                            c[narrow].data(), n);
                }
                cpu_kernels::use_8_float_tiles_only(false);
                cr_assert(std::memcmp(c[0].data(), c[1].data(), m * n * sizeof(float)) == 0,
                          "m=%zu n=%zu k=%zu trans %d%d: the tile widths differ", m, n, k,
                          trans_a, trans_b);
            }
}

// small_gemm_runs against small_gemm over the runs' whole span, with B zero
// between the runs: the same bits (the skipped steps only add zeros), for
// no run, one, and several with gaps of one row and more; B read in place
// and packed (ldb 200), narrow outputs, and a gated store.
Test(cpu_gemm, runs_match_the_whole_product) {
    using cpu_kernels::KRun;
    const std::vector<std::vector<KRun>> layouts = {
        {}, {{0, 40}}, {{3, 9}}, {{0, 1}, {2, 5}, {9, 10}},
        {{1, 30}, {31, 62}, {70, 100}, {130, 161}}};
    const size_t ms[] = {1, 7, 13, 64};
    const size_t ns[] = {5, 8, 13, 16, 24, 40};
    unsigned seed = 700;
    for (int trans_a = 0; trans_a < 2; ++trans_a)
        for (const auto &runs : layouts)
            for (size_t m : ms)
                for (size_t n : ns)
                    for (size_t ldb : {n + 3, size_t(200)})
                        for (bool gated : {false, true}) {
                            const size_t k = runs.empty() ? 0 : runs.back().end;
                            const size_t lda = (trans_a ? m : k) + 2, ldc = n + 1;
                            const Vec a = random_vec((trans_a ? k : m) * lda, ++seed);
                            Vec b(k * ldb, 0.0f);
                            const Vec in_runs = random_vec(k * ldb, ++seed);
                            for (const KRun &r : runs)
                                for (size_t p = r.begin * ldb; p < r.end * ldb; ++p)
                                    b[p] = in_runs[p];
                            const Vec gate = random_vec(m * ldc, ++seed);
                            const cpu_kernels::GemmStore store =
                                gated ? cpu_kernels::GemmStore::gated(gate.data(), 0.25f)
                                      : cpu_kernels::GemmStore();
                            Vec want(m * ldc, kNaN), got(m * ldc, kNaN);
                            cpu_kernels::small_gemm(trans_a, false, m, n, k, 1.0f, a.data(), lda,
                                                    b.data(), ldb, 0.0f, want.data(), ldc, store);
                            cpu_kernels::small_gemm_runs(trans_a, m, n, runs.data(), runs.size(),
                                                         a.data(), lda, b.data(), ldb,
                                                         got.data(), ldc, store);
                            cr_assert(std::memcmp(want.data(), got.data(),
                                                  want.size() * sizeof(float)) == 0,
                                      "small_gemm_runs (%zu runs, trans_a %d, m=%zu n=%zu "
                                      "ldb=%zu gated %d) differs from the whole product",
                                      runs.size(), trans_a, m, n, ldb, int(gated));
                        }
}

// Backend::gemm on the shapes of small flows' layers (forward x W^T, dx = dy
// W, dW = dy^T x), on both sides of each dispatch threshold, and on products
// big enough for OpenBLAS. A, B and C are row blocks of bigger tensors.
Test(cpu_gemm, backend_gemm_matches_reference) {
    struct Shape3 {
        size_t m, n, k;
    };
    const Shape3 shapes[] = {{256, 64, 64}, {256, 8, 64},  {256, 4, 64},   {64, 64, 256},
                             {256, 64, 4},  {8, 64, 256},  {256, 64, 2},   {256, 128, 64},
                             {300, 70, 65}, {63, 65, 64},  {7, 9, 5},      {512, 256, 256},
                             {33, 1, 4096}, {65, 64, 300}, {256, 12, 100}, {1, 1, 1},
                             // forward products split over threads, narrow ones, and
                             // an inner dimension past the small kernel's
                             {2048, 256, 256}, {1000, 5, 300}, {40, 64, 1100},
                             // a D = 8 coupling's first layer's weight gradient
                             // (narrow_weight_gradient), and ragged ones
                             {256, 4, 512}, {70, 3, 900}, {9, 7, 700},
                             // weight gradients with a narrow side (16-64) over a
                             // train step's part (small_kernel_beats_blas)
                             {32, 256, 256}, {256, 16, 512}};
    Backend &be = cpu_backend();
    const size_t skip = 3; // rows before each block
    unsigned seed = 100;
    for (int trans_a = 0; trans_a < 2; ++trans_a)
        for (int trans_b = 0; trans_b < 2; ++trans_b)
            for (const Shape3 &sh : shapes)
                for (const Scalars &s : kScalars) {
                    const size_t m = sh.m, n = sh.n, k = sh.k;
                    const size_t a_rows = trans_a ? k : m, a_cols = trans_a ? m : k;
                    const size_t b_rows = trans_b ? n : k, b_cols = trans_b ? k : n;
                    auto block = [&](size_t rows, size_t cols, const Vec &data) {
                        Tensor whole(be, {rows + 2 * skip, cols});
                        be.upload(whole, data.data());
                        return whole.row_block(skip, rows);
                    };
                    const Vec a = random_vec((a_rows + 2 * skip) * a_cols, ++seed);
                    const Vec b = random_vec((b_rows + 2 * skip) * b_cols, ++seed);
                    const Vec c0 = s.beta == 0.0f ? Vec((m + 2 * skip) * n, kNaN)
                                                  : random_vec((m + 2 * skip) * n, ++seed);
                    Tensor ta = block(a_rows, a_cols, a), tb = block(b_rows, b_cols, b);
                    Tensor whole_c(be, {m + 2 * skip, n});
                    be.upload(whole_c, c0.data());
                    Tensor tc = whole_c.row_block(skip, m);
                    be.gemm(trans_a, trans_b, s.alpha, ta, tb, s.beta, tc);
                    Vec c(c0.size());
                    be.download(whole_c, c.data());
                    const float *pa = a.data() + skip * a_cols, *pb = b.data() + skip * b_cols;
                    check_product("gemm", m, n, k, s.alpha, pa, trans_a ? 1 : a_cols,
                                  trans_a ? a_cols : 1, pb, trans_b ? 1 : b_cols,
                                  trans_b ? b_cols : 1, s.beta, c0.data() + skip * n,
                                  c.data() + skip * n, n);
                    // The rows around the block are untouched.
                    for (size_t i : {size_t(0), skip + m})
                        cr_assert(std::memcmp(&c[i * n], &c0[i * n], skip * n * sizeof(float)) ==
                                      0,
                                  "gemm wrote outside C (m=%zu n=%zu k=%zu)", m, n, k);
                }
}

// A forward product's row (x W^T, the layers' forward pass) must come out the
// same whatever the number of rows in the call: evaluation splits batches
// into blocks by thread count, and results may not depend on it. OpenBLAS
// fails this for outputs narrower than 8 columns; the small kernels must
// not, at any width, depth or thread count.
// The products of an untransposed x, x W^T (forward) and x W (backward dy
// W), give each row the same numbers whatever the number of rows.
Test(cpu_gemm, rows_do_not_depend_on_the_row_count) {
    Backend &be = cpu_backend();
    const size_t widths[] = {1, 2, 3, 4, 6, 7, 8, 9, 16, 24, 64, 256};
    const size_t depths[] = {4, 5, 13, 64, 256};
    const size_t m = 1100, first = 301, rows = 150; // odd: other row pairings and tiles
    unsigned seed = 500;
    for (bool trans_b : {true, false})
        for (size_t n : widths)
            for (size_t k : depths) {
                const Vec x = random_vec(m * k, ++seed), w = random_vec(n * k, ++seed);
                Tensor tx(be, {m, k}), all(be, {m, n}), part(be, {rows, n});
                Tensor tw = trans_b ? Tensor(be, {n, k}) : Tensor(be, {k, n});
                be.upload(tx, x.data());
                be.upload(tw, w.data());
                be.gemm(false, trans_b, 1.0f, tx, tw, 0.0f, all);
                be.gemm(false, trans_b, 1.0f, tx.row_block(first, rows), tw, 0.0f, part);
                Vec c_all(m * n), c_part(rows * n);
                be.download(all, c_all.data());
                be.download(part, c_part.data());
                cr_assert(std::memcmp(c_all.data() + first * n, c_part.data(),
                                      rows * n * sizeof(float)) == 0,
                          "%s with n=%zu k=%zu: rows %zu.. differ between a %zu-row and a "
                          "%zu-row call",
                          trans_b ? "x W^T" : "x W", n, k, first, m, rows);
            }
}
