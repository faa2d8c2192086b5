// Register-blocked GEMM: each tile of C (6 rows x 16 columns, or 12 x 8) is
// kept in vector accumulators while k runs, every step one row of op(B)
// loaded and one element of op(A) broadcast per row. op(B) is read in place
// when it is already row-major with whole vectors per row; otherwise (B
// transposed, or a partial last vector) it is first copied into a padded
// k x n panel, which costs k * n against the product's m * k * n.
#include "backend/cpu/cpu_small_gemm.h"
#include "backend/cpu/cpu_clones.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace flow::cpu_kernels {

namespace {

constexpr size_t kLanes = 8;
// Eight floats: one AVX register, so that the AVX2 and AVX-512 clones share
// the tiles (tuned on Zen 4, whose FMA units are 256 bits wide either way).
// may_alias and 4-byte alignment: loads and stores straight from float
// arrays at any offset.
typedef float Vec
    __attribute__((vector_size(kLanes * sizeof(float)), aligned(alignof(float)), may_alias));
// Rows in a tile: enough independent accumulators to hide the FMA latency,
// and AVX2's 16 registers still enough for the tile, one row of op(B) and a
// broadcast.
template <size_t V> constexpr size_t kRows = V == 1 ? 12 : 6;

// What a finished accumulator becomes: c = alpha * acc + beta * c (beta = 0
// never reads c), plus the caller's GemmStore. bias and act point at the
// block being stored: bias at its first column, act at its first element.
struct Epilogue {
    float alpha, beta;
    GemmStore store;

    // The block `offset` elements into C, `col` columns in.
    Epilogue at(size_t offset, size_t col) const {
        GemmStore s = store;
        if (s.bias) s.bias += col;
        if (s.act) s.act += offset;
        return {alpha, beta, s};
    }
};

FLOW_INLINE void store_vector(const Vec &acc, float *c, const Epilogue &e) {
    Vec *out = reinterpret_cast<Vec *>(c);
    Vec value = e.alpha * acc;
    if (e.beta != 0.0f) value += e.beta * *out;
    if (e.store.bias) value += *reinterpret_cast<const Vec *>(e.store.bias);
    *out = value;
    if (e.store.act) {
        const Vec zero = {};
        *reinterpret_cast<Vec *>(e.store.act) = value > zero ? value : e.store.slope * value;
    }
}

// The first `cols` floats of acc to c. Out of line (and taking acc by
// reference) so that the tile's accumulators stay in registers.
__attribute__((noinline)) void store_part(const Vec &acc, float *c, size_t cols, Epilogue e) {
    float part[kLanes];
    std::memcpy(part, &acc, sizeof(part));
    for (size_t j = 0; j < cols; ++j) {
        float v = e.alpha * part[j];
        if (e.beta != 0.0f) v += e.beta * c[j];
        if (e.store.bias) v += e.store.bias[j];
        c[j] = v;
        if (e.store.act) e.store.act[j] = v > 0.0f ? v : e.store.slope * v;
    }
}

// Rows [0, R) x columns [0, V * kLanes) of C (rows ldc apart), of which the
// first `cols` are stored. op(A)(r, p) = a[r * a_row + p * a_step]; b is
// op(B), row-major with rows ldb apart and V * kLanes readable floats in each.
template <size_t R, size_t V>
FLOW_INLINE void tile(const float *a, size_t a_row, size_t a_step, const float *b, size_t ldb,
                      size_t k, Epilogue e, float *c, size_t ldc, size_t cols) {
    Vec acc[R][V] = {};
    for (size_t p = 0; p < k; ++p, a += a_step, b += ldb) {
        Vec bv[V];
        for (size_t v = 0; v < V; ++v) bv[v] = *reinterpret_cast<const Vec *>(b + v * kLanes);
        for (size_t r = 0; r < R; ++r) {
            const float ar = a[r * a_row];
            for (size_t v = 0; v < V; ++v) acc[r][v] += ar * bv[v];
        }
    }
    for (size_t r = 0; r < R; ++r)
        for (size_t v = 0; v < V; ++v) {
            const size_t at = r * ldc + v * kLanes;
            if (cols == V * kLanes)
                store_vector(acc[r][v], c + at, e.at(at, v * kLanes));
            else if (cols > v * kLanes)
                store_part(acc[r][v], c + at, std::min(cols - v * kLanes, kLanes),
                           e.at(at, v * kLanes));
        }
}

// A tile of `rows` (1..R) rows.
template <size_t R, size_t V>
FLOW_INLINE void tile_of(size_t rows, const float *a, size_t a_row, size_t a_step,
                         const float *b, size_t ldb, size_t k, Epilogue e, float *c, size_t ldc,
                         size_t cols) {
    if (rows == R) return tile<R, V>(a, a_row, a_step, b, ldb, k, e, c, ldc, cols);
    if constexpr (R > 1) tile_of<R - 1, V>(rows, a, a_row, a_step, b, ldb, k, e, c, ldc, cols);
}

// All m rows of one block of V * kLanes columns (cols of them stored).
template <size_t V>
FLOW_INLINE void column_block(size_t m, size_t k, const float *a, size_t a_row, size_t a_step,
                              const float *b, size_t ldb, Epilogue e, float *c, size_t ldc,
                              size_t cols) {
    constexpr size_t R = kRows<V>;
    size_t i = 0;
    for (; i + 2 * R <= m; i += R)
        tile<R, V>(a + i * a_row, a_row, a_step, b, ldb, k, e.at(i * ldc, 0), c + i * ldc, ldc,
                   cols);
    // The last R + 1 .. 2R - 1 rows go as two tiles of about equal size
    // rather than a full one and a thin one with too few accumulators.
    for (size_t left = m - i; left > 0; left = m - i) {
        const size_t rows = left > R ? left / 2 : left;
        tile_of<R, V>(rows, a + i * a_row, a_row, a_step, b, ldb, k, e.at(i * ldc, 0),
                      c + i * ldc, ldc, cols);
        i += rows;
    }
}

// b: op(B) row-major, rows ldb apart, readable to n rounded up to kLanes.
FLOW_CLONES
void multiply(size_t m, size_t n, size_t k, const float *a, size_t a_row, size_t a_step,
              const float *b, size_t ldb, Epilogue e, float *c, size_t ldc) {
    constexpr size_t wide = 2 * kLanes;
    size_t j = 0;
    for (; j + wide <= n; j += wide)
        column_block<2>(m, k, a, a_row, a_step, b + j, ldb, e.at(j, j), c + j, ldc, wide);
    if (n - j > kLanes)
        column_block<2>(m, k, a, a_row, a_step, b + j, ldb, e.at(j, j), c + j, ldc, n - j);
    else if (j < n)
        column_block<1>(m, k, a, a_row, a_step, b + j, ldb, e.at(j, j), c + j, ldc, n - j);
}

// panel[p * width + j] = b[j * ldb + p] for j < n, p < k: B^T for the
// forward products x W^T. Whole 8 x 8 blocks go through registers: each of
// three rounds swaps the off-diagonal sub-blocks of size d (4, 2, 1) between
// rows d apart.
FLOW_CLONES
void transpose_into(const float *b, size_t ldb, size_t n, size_t k, float *panel, size_t width) {
    typedef int Index __attribute__((vector_size(kLanes * sizeof(int))));
    static_assert(kLanes == 8, "the shuffles below transpose 8 x 8 blocks");
    const Index lo4 = {0, 1, 2, 3, 8, 9, 10, 11}, hi4 = {4, 5, 6, 7, 12, 13, 14, 15};
    const Index lo2 = {0, 1, 8, 9, 4, 5, 12, 13}, hi2 = {2, 3, 10, 11, 6, 7, 14, 15};
    const Index lo1 = {0, 8, 2, 10, 4, 12, 6, 14}, hi1 = {1, 9, 3, 11, 5, 13, 7, 15};
    size_t j0 = 0;
    for (; j0 + kLanes <= n; j0 += kLanes) {
        size_t p0 = 0;
        for (; p0 + kLanes <= k; p0 += kLanes) {
            Vec r[kLanes];
            for (size_t i = 0; i < kLanes; ++i)
                r[i] = *reinterpret_cast<const Vec *>(b + (j0 + i) * ldb + p0);
            auto round = [&](size_t d, Index lo, Index hi) {
                for (size_t i = 0; i < kLanes; ++i)
                    if ((i & d) == 0) {
                        const Vec x = r[i], y = r[i + d];
                        r[i] = __builtin_shuffle(x, y, lo);
                        r[i + d] = __builtin_shuffle(x, y, hi);
                    }
            };
            round(4, lo4, hi4);
            round(2, lo2, hi2);
            round(1, lo1, hi1);
            for (size_t i = 0; i < kLanes; ++i)
                *reinterpret_cast<Vec *>(panel + (p0 + i) * width + j0) = r[i];
        }
        for (size_t p = p0; p < k; ++p)
            for (size_t j = j0; j < j0 + kLanes; ++j) panel[p * width + j] = b[j * ldb + p];
    }
    for (size_t p = 0; p < k; ++p)
        for (size_t j = j0; j < n; ++j) panel[p * width + j] = b[j * ldb + p];
}

} // namespace

void small_gemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
                const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
                size_t ldc, const GemmStore &store) {
    if (m == 0 || n == 0) return;
    const Epilogue e = {alpha, beta, store};
    const size_t a_row = trans_a ? 1 : lda, a_step = trans_a ? lda : 1;
    if (!trans_b && n % kLanes == 0)
        return multiply(m, n, k, a, a_row, a_step, b, ldb, e, c, ldc);

    // Grows to the largest panel this thread has needed. The padding feeds
    // only accumulators that are never stored; it is zeroed so that stale
    // values cannot be slow (subnormal) operands.
    thread_local std::vector<float> panel;
    const size_t width = (n + kLanes - 1) / kLanes * kLanes;
    if (panel.size() < k * width) panel.resize(k * width);
    for (size_t p = 0; p < k; ++p) std::fill_n(panel.data() + p * width + n, width - n, 0.0f);
    if (!trans_b) {
        for (size_t p = 0; p < k; ++p) std::copy_n(b + p * ldb, n, panel.data() + p * width);
    } else {
        transpose_into(b, ldb, n, k, panel.data(), width);
    }
    multiply(m, n, k, a, a_row, a_step, panel.data(), width, e, c, ldc);
}

} // namespace flow::cpu_kernels
