// GEMM for the products of the layers' forward passes (x W^T at any batch
// size) and for the small products of small flows' backward passes, where a
// BLAS call spends more on its set-up (argument checks, packing both
// operands, thread hand-off) than on the arithmetic. Each row of C is
// computed the same way whatever m is. Used by CpuBackend::gemm.
#pragma once

#include <cstddef>

namespace flow::cpu_kernels {

// What small_gemm adds as it stores C: bias[j] to column j (bias
// non-null), and act (non-null; [m, n] with rows ldc apart, like C) =
// v > 0 ? v : slope * v of each stored value v: relu (slope 0) or leaky relu.
// act may be C itself: C then holds only the activated values.
// gate (non-null; laid out like C, without bias or act): C gets
// gate > 0 ? v : slope * v instead of v, the backward through a relu or
// leaky relu whose input was gate.
struct GemmStore {
    const float *bias;
    float *act;
    float slope;
    const float *gate = nullptr;

    GemmStore(const float *bias_ = nullptr, float *act_ = nullptr, float slope_ = 0.0f)
        : bias(bias_), act(act_), slope(slope_) {}
    static GemmStore gated(const float *gate, float slope) {
        GemmStore s(nullptr, nullptr, slope);
        s.gate = gate;
        return s;
    }
};

// C[m, n] = alpha * op(A) op(B) + beta * C, then `store`; row-major, lda, ldb
// and ldc are the lengths of the stored rows of A, B and C. op(A) is m x k,
// op(B) k x n. beta = 0 never reads C. One thread (splitting products this
// small measured slower at two threads when serial work separates them;
// the caller splits big ones by rows). Rows go in blocks that keep their
// part of op(A) in L2; op(B) is read whole for each block, so it should fit
// in L2 too (k up to ~1024 for the layers' widths).
// b_panel, when non-null, is op(B) already packed: b^T by
// pack_transposed_panel (trans_b, n >= 8) or b by pack_plain_panel (not
// trans_b): the product reads it instead of copying b into a panel of its
// own, with the same result.
void small_gemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
                const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
                size_t ldc, const GemmStore &store = {}, const float *b_panel = nullptr);

// small_gemm for an op(A) whose element (r, p) is a[r * a_row + p * a_step]
// (small_gemm's A is a_row = lda, a_step = 1, or transposed a_row = 1,
// a_step = lda): also every other column of a wider matrix, so that a layer
// reads a gathered input in place. Products of fewer than kNarrow columns
// whose op(A) rows are contiguous (a_step 1) add along k in another order
// (dot products of vectors), so only from kNarrow columns on is the result
// that of the same product on a contiguous copy of op(A).
constexpr size_t kNarrow = 8;
void small_gemm_strided(size_t m, size_t n, size_t k, float alpha, const float *a,
                        size_t a_row, size_t a_step, bool trans_b, const float *b, size_t ldb,
                        float beta, float *c, size_t ldc, const GemmStore &store = {},
                        const float *b_panel = nullptr);

// small_gemm(false, true, m, n, k, 1, a, lda, b, ldb, 0, c, ldc, store,
// b_panel) for one panel of a staircase product (a MADE layer's units in
// degree order), where op(B) = b^T is zero from row k_low on in its first 8
// columns (units that reach fewer inputs than the panel's deepest one): the
// tiles of those columns stop there instead of adding zero products. The
// same result for finite op(A). b_panel: a band of a panel packed for
// panel_k >= k rows (transposed_panel_slab), or null.
void small_gemm_staircase(size_t m, size_t n, size_t k_low, size_t k, const float *a,
                          size_t lda, const float *b, size_t ldb, float *c, size_t ldc,
                          const GemmStore &store, const float *b_panel, size_t panel_k);
// Columns of the kernel's widest tile on this CPU: 32 where it runs 16-float
// vectors, else 16. Each element of op(A) a tile broadcasts feeds one FMA
// per vector of columns, so products that many columns wide (a staircase's
// panels) load least per FMA.
size_t widest_tile_columns();
// Whether the kernel runs its 16-float tiles here (Intel's AVX-512 cores),
// twice the flops a cycle of the 8-float ones: callers that size cache
// blocks by arithmetic against memory traffic (model.cpp) ask.
bool runs_16_float_tiles();
// For the tests: while on, the kernel runs its 8-float tiles only (and
// widest_tile_columns() is 16, runs_16_float_tiles() false), as on a CPU
// without AVX-512, so that one machine checks both builds. Off at start;
// not for use while products run.
void use_8_float_tiles_only(bool on);

// small_gemm(trans_a, false, m, n, k, 1, a, lda, b, ldb, 0, c, ldc, store)
// for a B [k, n] whose rows are zero outside the runs [begin, end) (in
// increasing order; k = the last run's end): only their steps are added,
// with the same result for finite op(A). A MADE output layer's units are
// not in degree order, so the rows that reach a column of its weight are
// one run per block of outputs, not one run.
struct KRun {
    size_t begin, end;
};
void small_gemm_runs(bool trans_a, size_t m, size_t n, const KRun *runs, size_t count,
                     const float *a, size_t lda, const float *b, size_t ldb, float *c,
                     size_t ldc, const GemmStore &store = {});

// For products that reuse one transposed op(B) = b^T (b [n, k], rows ldb
// apart), as a layer's weight is reused block after block: the panel
// small_gemm would copy it into for every call, made once. Its size in
// floats, 0 when small_gemm reads such a B in place (n < 8). Packs only its
// first `depth` (<= k) rows: a staircase band is read no deeper.
size_t transposed_panel_size(size_t n, size_t k);
void pack_transposed_panel(const float *b, size_t ldb, size_t n, size_t k, float *panel,
                           size_t depth);

// The same for an untransposed op(B) = b (b [k, n], rows n apart), as a
// layer's backward products dy W reuse its weight part after part. Its
// size is 0 where small_gemm reads such a B in place whatever m (fewer than
// kNarrow columns, or rows near enough or few); a product of few rows
// given the panel reads it where it would have read b, with the same result.
size_t plain_panel_size(size_t n, size_t k);
void pack_plain_panel(const float *b, size_t n, size_t k, float *panel);

// Where columns [j0, j0 + count) of such a panel (of b [n, k]) start, for
// small_gemm_staircase's b_panel (panel_k = k) in a product of those `count`
// columns and any depth up to k (a MADE layer's staircase panels: bands of
// the rows of one weight, each packed only as deep as it is read). kNoSlab
// where that product's panel would be laid out otherwise.
constexpr size_t kNoSlab = ~size_t(0);
size_t transposed_panel_slab(size_t n, size_t k, size_t j0, size_t count);

} // namespace flow::cpu_kernels
