// Register-blocked GEMM: each tile of C (6 rows x 16 columns, or 12 x 8; on
// CPUs with 512-bit FMA units 12 x 32 or 12 x 16) is kept in vector
// accumulators while k runs, every step one row of op(B) loaded and one
// element of op(A) broadcast per row. op(B) is read in place
// when it is already row-major with whole vectors per row; otherwise (B
// transposed, or a partial last vector) it is first copied into a padded
// panel, which costs k * n against the product's m * k * n. The panel holds
// op(B) in slabs of 16 columns, each slab's k rows back to back: rows of a
// wide op(B) read in place lie n floats apart, and at n = 256 the 1 KB
// stride maps them all onto a few L1 sets. Rows of C go in blocks whose
// op(A) rows stay in L2 while every slab passes over them.
#include "backend/cpu/cpu_small_gemm.h"
#include "backend/cpu/cpu_clones.h"
#include "backend/cpu/cpu_thread_buffer.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <type_traits>

// The helpers that return vectors are always inlined into their clone, so
// no call passes a vector between code built with and without AVX, which
// is what GCC's note about the changed ABI warns of.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace flow::cpu_kernels {

namespace {

constexpr size_t kLanes = 8;
// A tile's vectors: W::lanes floats of type W::Vec. may_alias and 4-byte
// alignment: loads and stores straight from float arrays at any offset.
template <size_t L> struct Width {
    static constexpr size_t lanes = L;
    typedef float Vec
        __attribute__((vector_size(L * sizeof(float)), aligned(alignof(float)), may_alias));
};
// Eight floats: one AVX register (tuned on Zen 4, whose FMA units are 256
// bits wide either way), the width of everything but multiply_zmm. These
// kernels are cloned for AVX2 and baseline only (FLOW_CLONES_AVX2): an
// AVX-512 clone of the same code measured up to 12% slower on Zen 4, its
// register allocation putting the broadcasts and rows of op(B) into
// ymm16-31 (EVEX encoding) instead of the accumulators.
using Ymm = Width<kLanes>;
// Sixteen floats, for the CPUs whose FMA units are 512 bits wide (Intel's
// AVX-512 cores): twice the flops a cycle of Ymm (see multiply_zmm).
using Zmm = Width<2 * kLanes>;
using Vec = Ymm::Vec;
typedef int Index __attribute__((vector_size(kLanes * sizeof(int)))); // shuffle masks
// Rows in a tile: enough independent accumulators to hide the FMA latency,
// and the registers still enough for the tile, one row of op(B) and a
// broadcast: AVX2's 16 for Ymm, AVX-512's 32 for Zmm (12 x 2 vectors).
template <class W, size_t V> constexpr size_t kRows = V == 1 || W::lanes > kLanes ? 12 : 6;

// How a call stores C, decided once per call: the layers' forward products
// (alpha 1, beta 0, a bias, and relu or leaky relu in place of C or no
// activation), their backward products through a relu (a gate), the plain
// C = op(A) op(B) and C += op(A) op(B) (gradients added up over parts, a
// context's term added to a layer's output) take a few vector ops a vector;
// anything else tests alpha, beta, bias, act and gate at each vector, which
// costs as much as the arithmetic of a tile with a short k.
enum class Finish { general, plain, add, bias, bias_act, gated };

// What a finished accumulator becomes: c = alpha * acc + beta * c (beta = 0
// never reads c), plus the caller's GemmStore. bias and act point at the
// block being stored: bias at its first column, act at its first element.
struct Epilogue {
    float alpha, beta;
    GemmStore store;
    Finish finish;

    // The block `offset` elements into C, `col` columns in.
    Epilogue at(size_t offset, size_t col) const {
        GemmStore s = store;
        if (s.bias) s.bias += col;
        if (s.act) s.act += offset;
        if (s.gate) s.gate += offset;
        return {alpha, beta, s, finish};
    }
};

Finish finish_of(float alpha, float beta, const GemmStore &store, const float *c) {
    const bool extras = store.bias || store.act || store.gate;
    if (alpha == 1.0f && beta == 1.0f && !extras) return Finish::add;
    if (alpha != 1.0f || beta != 0.0f) return Finish::general;
    if (store.gate) return store.bias || store.act ? Finish::general : Finish::gated;
    if (!store.act) return store.bias ? Finish::bias : Finish::plain;
    return store.bias && store.act == c ? Finish::bias_act : Finish::general;
}

// Rows [0, rows) x columns [0, cols) of C (rows ldc apart) from acc (rows
// of `width` floats), for any finish: whole vectors, then single floats.
// Out of line, so that the tiles keep their registers for the common
// finishes.
FLOW_CLONES_AVX2 __attribute__((noinline))
void finish_general(const float *acc, size_t rows, size_t width, size_t cols, Epilogue e,
                    float *c, size_t ldc) {
    const Vec zero = {};
    for (size_t r = 0; r < rows; ++r) {
        const float *from = acc + r * width;
        float *to = c + r * ldc;
        float *act = e.store.act ? e.store.act + r * ldc : nullptr;
        const float *gate = e.store.gate ? e.store.gate + r * ldc : nullptr;
        size_t j = 0;
        for (; j + kLanes <= cols; j += kLanes) {
            Vec value = e.alpha * *reinterpret_cast<const Vec *>(from + j);
            if (e.beta != 0.0f) value += e.beta * *reinterpret_cast<const Vec *>(to + j);
            if (e.store.bias) value += *reinterpret_cast<const Vec *>(e.store.bias + j);
            if (gate)
                value = *reinterpret_cast<const Vec *>(gate + j) > zero ? value
                                                                        : e.store.slope * value;
            if (act != to) *reinterpret_cast<Vec *>(to + j) = value; // act in place: one store
            if (act) *reinterpret_cast<Vec *>(act + j) = value > zero ? value : e.store.slope * value;
        }
        for (; j < cols; ++j) {
            float value = e.alpha * from[j];
            if (e.beta != 0.0f) value += e.beta * to[j];
            if (e.store.bias) value += e.store.bias[j];
            if (gate && !(gate[j] > 0.0f)) value *= e.store.slope;
            if (act != to) to[j] = value;
            if (act) act[j] = value > 0.0f ? value : e.store.slope * value;
        }
    }
}

// A whole tile's accumulators to C, for a call whose finish F is not general.
template <class W, Finish F, size_t R, size_t V>
FLOW_INLINE void finish(const typename W::Vec (&acc)[R][V], const Epilogue &e, float *c,
                        size_t ldc) {
    using Vec = typename W::Vec;
    constexpr size_t kLanes = W::lanes;
    const Vec zero = {};
    for (size_t r = 0; r < R; ++r)
        for (size_t v = 0; v < V; ++v) {
            Vec value = acc[r][v];
            if constexpr (F == Finish::add)
                value += *reinterpret_cast<const Vec *>(c + r * ldc + v * kLanes);
            if constexpr (F == Finish::bias || F == Finish::bias_act)
                value += *reinterpret_cast<const Vec *>(e.store.bias + v * kLanes);
            if constexpr (F == Finish::bias_act)
                value = value > zero ? value : e.store.slope * value;
            if constexpr (F == Finish::gated) {
                const Vec gate = *reinterpret_cast<const Vec *>(e.store.gate + r * ldc + v * kLanes);
                value = gate > zero ? value : e.store.slope * value;
            }
            *reinterpret_cast<Vec *>(c + r * ldc + v * kLanes) = value;
        }
}

// The steps p of k a product adds up: all of [0, k), where the first vector
// of columns stops at k_low (<= k) because op(B) is zero below it there (a
// staircase panel whose first units reach fewer inputs); or, when runs is
// non-null, only the steps of runs[0, count), in order.
struct Depth {
    size_t k_low, k;
    const KRun *runs = nullptr;
    size_t count = 0;

    // The same steps for every vector of columns.
    Depth whole() const { return {k, k, runs, count}; }
};

// Rows [0, R) x columns [0, V * W::lanes) of C (rows ldc apart), of which
// the first `cols` are stored. op(A)(r, p) = a[r * a_row + p * a_step]; b is
// op(B), row-major with rows ldb apart, its vector v of a row b_next * v
// floats after the first (readable floats all). Tall tiles (R > 6) run
// every vector to d.k_low: their callers give V > 1 ones whole depths.
template <class W, size_t R, size_t V>
FLOW_INLINE void tile(const float *a, size_t a_row, size_t a_step, const float *b, size_t ldb,
                      size_t b_next, const Depth &d, Epilogue e, float *c, size_t ldc,
                      size_t cols) {
    using Vec = typename W::Vec;
    constexpr size_t kLanes = W::lanes;
    // Zeroed one by one: `= {}` on an array this size becomes a rep stos
    // that costs as much as a short tile's whole k loop.
    Vec acc[R][V];
    for (size_t r = 0; r < R; ++r)
        for (size_t v = 0; v < V; ++v) acc[r][v] = Vec{};
    // The gate is read only as the tile is stored, and in a backward pass it
    // was written long before (L3 or memory): its rows for this tile and
    // the next one down are fetched now, so that they are there by then
    // (4096 x 256 x 64 with a cold gate: 25% slower without).
    if (e.store.gate)
        for (size_t r = 0; r < 2 * R; ++r) {
            __builtin_prefetch(e.store.gate + r * ldc);
            __builtin_prefetch(e.store.gate + r * ldc + V * kLanes - 1);
        }
    if constexpr (R <= 6) {
        // Steps [p0, p1) for the vectors of columns from `first` on.
        auto steps = [&](size_t p0, size_t p1, auto first) FLOW_INLINE_LAMBDA {
            const float *ap = a + p0 * a_step, *bp = b + p0 * ldb;
            for (size_t p = p0; p < p1; ++p, ap += a_step, bp += ldb) {
                Vec bv[V];
                for (size_t v = first; v < V; ++v)
                    bv[v] = *reinterpret_cast<const Vec *>(bp + v * b_next);
                for (size_t r = 0; r < R; ++r) {
                    const float ar = ap[r * a_row];
                    for (size_t v = first; v < V; ++v) acc[r][v] += ar * bv[v];
                }
            }
        };
        using All = std::integral_constant<size_t, 0>;
        if (d.runs) {
            for (size_t i = 0; i < d.count; ++i) steps(d.runs[i].begin, d.runs[i].end, All{});
        } else {
            steps(0, d.k_low, All{});
            if constexpr (V > 1) // the other vectors run on to k
                steps(d.k_low, d.k, std::integral_constant<size_t, 1>{});
        }
    } else {
        // Row r of op(A) read as row[r / 3][(r % 3) * a_row]: a pointer per
        // three rows and two strides fit x86 addressing, where twelve row
        // offsets would not fit the integer registers and reload every step.
        constexpr size_t G = (R + 2) / 3;
        const size_t one = a_row, two = 2 * a_row;
        auto steps = [&](size_t p0, size_t p1) FLOW_INLINE_LAMBDA {
            const float *row[G];
            for (size_t g = 0; g < G; ++g) row[g] = a + 3 * g * a_row + p0 * a_step;
            const float *bp = b + p0 * ldb;
            for (size_t p = p0; p < p1; ++p, bp += ldb) {
                Vec bv[V];
                for (size_t v = 0; v < V; ++v)
                    bv[v] = *reinterpret_cast<const Vec *>(bp + v * b_next);
                for (size_t r = 0; r < R; ++r) {
                    const float *q = row[r / 3];
                    const float ar = r % 3 == 0 ? q[0] : r % 3 == 1 ? q[one] : q[two];
                    for (size_t v = 0; v < V; ++v) acc[r][v] += ar * bv[v];
                }
                for (size_t g = 0; g < G; ++g) row[g] += a_step;
            }
        };
        if (d.runs)
            for (size_t i = 0; i < d.count; ++i) steps(d.runs[i].begin, d.runs[i].end);
        else
            steps(0, d.k_low);
    }
    if (cols == V * kLanes) {
        switch (e.finish) {
        case Finish::plain: return finish<W, Finish::plain>(acc, e, c, ldc);
        case Finish::add: return finish<W, Finish::add>(acc, e, c, ldc);
        case Finish::bias: return finish<W, Finish::bias>(acc, e, c, ldc);
        case Finish::bias_act: return finish<W, Finish::bias_act>(acc, e, c, ldc);
        case Finish::gated: return finish<W, Finish::gated>(acc, e, c, ldc);
        case Finish::general: break;
        }
    }
    float out[R * V * kLanes];
    for (size_t r = 0; r < R; ++r)
        for (size_t v = 0; v < V; ++v)
            *reinterpret_cast<Vec *>(out + (r * V + v) * kLanes) = acc[r][v];
    finish_general(out, R, V * kLanes, cols, e, c, ldc);
}

// A tile of `rows` (1..R) rows.
template <class W, size_t R, size_t V>
FLOW_INLINE void tile_of(size_t rows, const float *a, size_t a_row, size_t a_step,
                         const float *b, size_t ldb, size_t b_next, const Depth &d, Epilogue e,
                         float *c, size_t ldc, size_t cols) {
    if (rows == R) return tile<W, R, V>(a, a_row, a_step, b, ldb, b_next, d, e, c, ldc, cols);
    if constexpr (R > 1)
        tile_of<W, R - 1, V>(rows, a, a_row, a_step, b, ldb, b_next, d, e, c, ldc, cols);
}

// All m rows of one block of V * W::lanes columns (cols of them stored).
template <class W, size_t V>
FLOW_INLINE void column_block(size_t m, const Depth &d, const float *a, size_t a_row,
                              size_t a_step, const float *b, size_t ldb, size_t b_next,
                              Epilogue e, float *c, size_t ldc, size_t cols) {
    constexpr size_t R = kRows<W, V>;
    size_t i = 0;
    for (; i + 2 * R <= m; i += R)
        tile<W, R, V>(a + i * a_row, a_row, a_step, b, ldb, b_next, d, e.at(i * ldc, 0),
                      c + i * ldc, ldc, cols);
    // The last R + 1 .. 2R - 1 rows go as two tiles of about equal size
    // rather than a full one and a thin one with too few accumulators.
    for (size_t left = m - i; left > 0; left = m - i) {
        const size_t rows = left > R ? left / 2 : left;
        tile_of<W, R, V>(rows, a + i * a_row, a_row, a_step, b, ldb, b_next, d,
                         e.at(i * ldc, 0), c + i * ldc, ldc, cols);
        i += rows;
    }
}

constexpr size_t kSlab = 2 * kLanes; // columns of op(B) per slab
// Bytes of op(A) rows per row block: well inside L2 next to the slab.
constexpr size_t kRowBlockBytes = 128 * 1024;

// b: op(B) in slabs of kSlab columns, slab s at b + s * slab, its rows ldb
// apart, readable to n rounded up to kLanes, over the steps of d. W = Zmm
// runs each pair of whole slabs as one block of 2 x 16 columns and a last
// whole slab as one of 16; they add every step to k (d.k_low only skips
// zeros), and the rest of a slab goes as with Ymm.
template <class W>
FLOW_INLINE void multiply_rows(size_t m, size_t n, const Depth &d, const float *a, size_t a_row,
                               size_t a_step, const float *b, size_t ldb, size_t slab,
                               Epilogue e, float *c, size_t ldc) {
    // A multiple of both tile heights, so that only the last block has a
    // ragged end.
    constexpr size_t tiles = 2 * kRows<Ymm, 2>;
    const size_t step = std::max(
        tiles, kRowBlockBytes / sizeof(float) / std::max<size_t>(d.k, 1) / tiles * tiles);
    for (size_t i = 0; i < m; i += step) {
        const size_t rows = std::min(step, m - i);
        const float *ai = a + i * a_row;
        float *ci = c + i * ldc;
        const Epilogue ei = e.at(i * ldc, 0);
        auto block = [&](size_t j, auto width, auto vectors, size_t cols) FLOW_INLINE_LAMBDA {
            using Wj = decltype(width);
            column_block<Wj, vectors>(rows, j || Wj::lanes > kLanes ? d.whole() : d, ai, a_row,
                                      a_step, b + j / kSlab * slab, ldb,
                                      Wj::lanes > kLanes ? slab : kLanes, ei.at(j, j), ci + j, ldc,
                                      cols);
        };
        using One = std::integral_constant<size_t, 1>;
        using Two = std::integral_constant<size_t, 2>;
        size_t j = 0;
        if constexpr (W::lanes > kLanes) {
            for (; j + 2 * kSlab <= n; j += 2 * kSlab) block(j, Zmm{}, Two{}, 2 * kSlab);
            if (j + kSlab <= n) {
                block(j, Zmm{}, One{}, kSlab);
                j += kSlab;
            }
        }
        for (; j + kSlab <= n; j += kSlab) block(j, Ymm{}, Two{}, kSlab);
        if (n - j > kLanes)
            block(j, Ymm{}, Two{}, n - j);
        else if (j < n)
            block(j, Ymm{}, One{}, n - j);
    }
}

FLOW_CLONES_AVX2
void multiply_ymm(size_t m, size_t n, const Depth &d, const float *a, size_t a_row,
                  size_t a_step, const float *b, size_t ldb, size_t slab, Epilogue e, float *c,
                  size_t ldc) {
    multiply_rows<Ymm>(m, n, d, a, a_row, a_step, b, ldb, slab, e, c, ldc);
}

#ifdef FLOW_TARGET_AVX512
// On a core with two 512-bit FMA units (Intel Xeon from Skylake-SP on)
// 16-float vectors double the flops a cycle. Tiles of 12 rows x 32 columns:
// each step loads two vectors of op(B) and broadcasts 12 elements of op(A)
// into 24 FMAs, so the loads (2 a cycle) keep up with the FMAs (2 a cycle).
// On one Xeon (Emerald Rapids) core, FMA peak 95 GFLOP/s on 8-float
// vectors and 175 on 16-float ones: a NICE D = 8 log_prob (4096 rows,
// hidden 256) 55 -> 32 ms, 78 -> 134 GFLOP/s.
FLOW_TARGET_AVX512
void multiply_zmm(size_t m, size_t n, const Depth &d, const float *a, size_t a_row,
                  size_t a_step, const float *b, size_t ldb, size_t slab, Epilogue e, float *c,
                  size_t ldc) {
    multiply_rows<Zmm>(m, n, d, a, a_row, a_step, b, ldb, slab, e, c, ldc);
}

// use_8_float_tiles_only's switch.
std::atomic<bool> ymm_only{false};

// Zen 4 splits each 512-bit FMA in two: no more flops a cycle than Ymm, and
// its Ymm tiles were tuned there.
bool zmm_tiles() {
    static const bool cpu = __builtin_cpu_supports("avx512f") &&
                            __builtin_cpu_supports("avx512vl") &&
                            __builtin_cpu_supports("avx512bw") &&
                            __builtin_cpu_supports("avx512dq") && !__builtin_cpu_is("amd");
    return cpu && !ymm_only.load(std::memory_order_relaxed);
}
#endif

// The same result on either width: every element adds its steps in the
// same order, with the same fused multiply-adds.
void multiply(size_t m, size_t n, const Depth &d, const float *a, size_t a_row, size_t a_step,
              const float *b, size_t ldb, size_t slab, Epilogue e, float *c, size_t ldc) {
#ifdef FLOW_TARGET_AVX512
    if (zmm_tiles()) return multiply_zmm(m, n, d, a, a_row, a_step, b, ldb, slab, e, c, ldc);
#endif
    multiply_ymm(m, n, d, a, a_row, a_step, b, ldb, slab, e, c, ldc);
}

// Where element (p, j) of a k-row op(B) lies in a panel of slabs `width`
// columns wide.
FLOW_INLINE size_t slab_index(size_t k, size_t width, size_t p, size_t j) {
    return j / width * width * k + p * width + j % width;
}

// panel(p, j) = b[j * ldb + p] for j < n, p < depth: B^T for the forward
// products x W^T, in a panel laid out for k >= depth rows. Whole 8 x 8
// blocks go through registers: each of three rounds swaps the off-diagonal
// sub-blocks of size d (4, 2, 1) between rows d apart.
FLOW_CLONES_AVX2
void transpose_into(const float *b, size_t ldb, size_t n, size_t k, size_t depth, float *panel,
                    size_t width) {
    static_assert(kLanes == 8, "the shuffles below transpose 8 x 8 blocks");
    const Index lo4 = {0, 1, 2, 3, 8, 9, 10, 11}, hi4 = {4, 5, 6, 7, 12, 13, 14, 15};
    const Index lo2 = {0, 1, 8, 9, 4, 5, 12, 13}, hi2 = {2, 3, 10, 11, 6, 7, 14, 15};
    const Index lo1 = {0, 8, 2, 10, 4, 12, 6, 14}, hi1 = {1, 9, 3, 11, 5, 13, 7, 15};
    size_t j0 = 0;
    for (; j0 + kLanes <= n; j0 += kLanes) {
        size_t p0 = 0;
        for (; p0 + kLanes <= depth; p0 += kLanes) {
            Vec r[kLanes];
            for (size_t i = 0; i < kLanes; ++i)
                r[i] = *reinterpret_cast<const Vec *>(b + (j0 + i) * ldb + p0);
            auto round = [&](size_t d, const Index &lo, const Index &hi) {
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
                *reinterpret_cast<Vec *>(panel + slab_index(k, width, p0 + i, j0)) = r[i];
        }
        for (size_t p = p0; p < depth; ++p)
            for (size_t j = j0; j < j0 + kLanes; ++j) panel[slab_index(k, width, p, j)] = b[j * ldb + p];
    }
    for (size_t p = 0; p < depth; ++p)
        for (size_t j = j0; j < n; ++j) panel[slab_index(k, width, p, j)] = b[j * ldb + p];
}

// --- narrow products: C = A B^T with fewer than kLanes columns -------------

// The first `cols` (<= kLanes) floats at p as a vector (the rest zero), and
// back: one vector move, or at most three (4, 2 and 1 floats), never past
// p + cols.
FLOW_INLINE Vec load_first(const float *p, size_t cols) {
    if (cols == kLanes) return *reinterpret_cast<const Vec *>(p);
    float part[kLanes] = {};
    if (cols & 4) std::memcpy(part, p, 4 * sizeof(float));
    if (cols & 2) std::memcpy(part + (cols & 4), p + (cols & 4), 2 * sizeof(float));
    if (cols & 1) part[cols - 1] = p[cols - 1];
    Vec v;
    std::memcpy(&v, part, sizeof(v));
    return v;
}

FLOW_INLINE void store_first(const Vec &v, float *p, size_t cols) {
    if (cols == kLanes) {
        *reinterpret_cast<Vec *>(p) = v;
        return;
    }
    float part[kLanes];
    std::memcpy(part, &v, sizeof(part));
    if (cols & 4) std::memcpy(p, part, 4 * sizeof(float));
    if (cols & 2) std::memcpy(p + (cols & 4), part + (cols & 4), 2 * sizeof(float));
    if (cols & 1) p[cols - 1] = part[cols - 1];
}

// Pairwise sums within each half: x0+x1, x2+x3, y0+y1, y2+y3 | the same
// for the upper halves (vhaddps).
FLOW_INLINE Vec pair_sums(const Vec &x, const Vec &y) {
    const Index even = {0, 2, 8, 10, 4, 6, 12, 14}, odd = {1, 3, 9, 11, 5, 7, 13, 15};
    return __builtin_shuffle(x, y, even) + __builtin_shuffle(x, y, odd);
}

// out[j] = the lanes of v[j] added up, for j < 8: a tree of pair sums, the
// same order for every row.
FLOW_INLINE Vec lane_sums(const Vec (&v)[kLanes]) {
    const Vec lo = pair_sums(pair_sums(v[0], v[1]), pair_sums(v[2], v[3]));
    const Vec hi = pair_sums(pair_sums(v[4], v[5]), pair_sums(v[6], v[7]));
    const Index first = {0, 1, 2, 3, 8, 9, 10, 11}, second = {4, 5, 6, 7, 12, 13, 14, 15};
    return __builtin_shuffle(lo, hi, first) + __builtin_shuffle(lo, hi, second);
}

// R rows of C, N (< kLanes) columns: dot products of A's rows with B's rows
// along k, kLanes products at a time in one accumulator per output; the
// k % kLanes rest as one zero-padded step (b_rest: B's rests, padded once
// per call); then one vector epilogue per row.
template <size_t R, size_t N>
FLOW_INLINE void narrow_rows(size_t k, const float *a, size_t lda, const float *b, size_t ldb,
                             const Vec (&b_rest)[N], const Vec &bias, const Epilogue &e, float *c,
                             size_t ldc) {
    Vec acc[R][kLanes]; // zeroed one by one, as in tile()
    for (size_t r = 0; r < R; ++r)
        for (size_t j = 0; j < kLanes; ++j) acc[r][j] = Vec{};
    size_t p = 0;
    for (; p + kLanes <= k; p += kLanes) {
        Vec av[R];
        for (size_t r = 0; r < R; ++r) av[r] = *reinterpret_cast<const Vec *>(a + r * lda + p);
        for (size_t j = 0; j < N; ++j) {
            const Vec bv = *reinterpret_cast<const Vec *>(b + j * ldb + p);
            for (size_t r = 0; r < R; ++r) acc[r][j] += av[r] * bv;
        }
    }
    if (p < k)
        for (size_t r = 0; r < R; ++r) {
            const Vec av = load_first(a + r * lda + p, k - p);
            for (size_t j = 0; j < N; ++j) acc[r][j] += av * b_rest[j];
        }
    for (size_t r = 0; r < R; ++r) {
        Vec value = e.alpha * lane_sums(acc[r]);
        if (e.beta != 0.0f) value += e.beta * load_first(c + r * ldc, N);
        value += bias;
        if (e.store.gate) {
            const Vec zero = {};
            value = load_first(e.store.gate + r * ldc, N) > zero ? value : e.store.slope * value;
        }
        if (e.store.act != c) store_first(value, c + r * ldc, N);
        if (e.store.act) {
            const Vec zero = {};
            store_first(value > zero ? value : e.store.slope * value, e.store.act + r * ldc, N);
        }
    }
}

// R rows at a time share each load of B: as many as AVX2's 16 registers
// hold with their N accumulators, their vector of A and one of B (R (N + 1)
// + 1 <= 16), but no more than 4 (7 rows of one output measured slower).
// 512 x 4 x 256: 57 -> 100 GFLOP/s with 3 rows instead of 2; one output:
// 38 -> 47 with 4 rows instead of 2.
template <size_t N>
FLOW_INLINE void narrow_product(size_t m, size_t k, const float *a, size_t lda, const float *b,
                                size_t ldb, const Epilogue &e, float *c, size_t ldc) {
    constexpr size_t R = N <= 2 ? 4 : N <= 4 ? 3 : N <= 6 ? 2 : 1;
    const Vec bias = e.store.bias ? load_first(e.store.bias, N) : Vec{};
    Vec b_rest[N] = {};
    const size_t p = k / kLanes * kLanes;
    if (p < k)
        for (size_t j = 0; j < N; ++j) b_rest[j] = load_first(b + j * ldb + p, k - p);
    size_t i = 0;
    for (; i + R <= m; i += R)
        narrow_rows<R, N>(k, a + i * lda, lda, b, ldb, b_rest, bias, e.at(i * ldc, 0),
                          c + i * ldc, ldc);
    for (; i < m; ++i)
        narrow_rows<1, N>(k, a + i * lda, lda, b, ldb, b_rest, bias, e.at(i * ldc, 0),
                          c + i * ldc, ldc);
}

FLOW_CLONES_AVX2
void multiply_narrow(size_t m, size_t n, size_t k, const float *a, size_t lda, const float *b,
                     size_t ldb, Epilogue e, float *c, size_t ldc) {
    switch (n) {
    case 1: return narrow_product<1>(m, k, a, lda, b, ldb, e, c, ldc);
    case 2: return narrow_product<2>(m, k, a, lda, b, ldb, e, c, ldc);
    case 3: return narrow_product<3>(m, k, a, lda, b, ldb, e, c, ldc);
    case 4: return narrow_product<4>(m, k, a, lda, b, ldb, e, c, ldc);
    case 5: return narrow_product<5>(m, k, a, lda, b, ldb, e, c, ldc);
    case 6: return narrow_product<6>(m, k, a, lda, b, ldb, e, c, ldc);
    default: return narrow_product<7>(m, k, a, lda, b, ldb, e, c, ldc);
    }
}

// Rows of an untransposed op(B) read in place lie ldb floats apart: from
// 128 (512 bytes) on they fall on 8 or fewer of L1's 64 sets, and more than
// 32 of them (a slab's k rows) evict each other; such op(B)s are packed
// instead (4096 x 256 x 256: 77 -> 106 GFLOP/s), unless few tiles read them
// (the staircase weight gradients, m <= kFewTileRows: 5-8% faster in place
// than packed for the call).
constexpr size_t kFarRows = 128, kFewSteps = 32, kFewTileRows = 64;
bool reads_in_place(size_t n, size_t k, size_t ldb) {
    return n % kLanes == 0 && (ldb < kFarRows || k <= kFewSteps);
}

// This thread's copy of op(B) in another layout: at least `count` floats.
float *scratch(size_t count) { return thread_buffer<float, 2>(count); }

// Slab width of the panel of an n-column op(B): one vector when that holds
// op(B), as the tiles then read only one.
size_t panel_width(size_t n) { return n <= kLanes ? kLanes : kSlab; }

size_t panel_size(size_t n, size_t k) {
    const size_t width = panel_width(n);
    return (n + width - 1) / width * width * k;
}

// op(B) (k x n: b itself, or b^T when trans_b) copied into a panel of
// panel_size(n, k) floats: the rows of d's steps (of d's runs only, which
// b^T never has; of its first `depth` only, for b^T). The padding of the
// last slab feeds only accumulators that are never stored; it is zeroed so
// that stale values cannot be slow (subnormal) operands.
void fill_panel(bool trans_b, const float *b, size_t ldb, size_t n, const Depth &d,
                float *panel, size_t depth) {
    const size_t k = d.k, width = panel_width(n);
    const size_t padded = panel_size(n, k) / std::max<size_t>(k, 1);
    for (size_t p = 0; p < depth; ++p)
        for (size_t j = n; j < padded; ++j) panel[slab_index(k, width, p, j)] = 0.0f;
    if (trans_b) return transpose_into(b, ldb, n, k, depth, panel, width);
    // Each slab's rows: a copy of `width` floats of a row of B.
    auto rows = [&](size_t p0, size_t p1) {
        for (size_t j0 = 0; j0 < n; j0 += width) {
            const size_t w = std::min(width, n - j0);
            for (size_t p = p0; p < p1; ++p)
                copy_floats(b + p * ldb + j0, w, panel + slab_index(k, width, p, j0));
        }
    };
    if (!d.runs) return rows(0, k);
    for (size_t i = 0; i < d.count; ++i) rows(d.runs[i].begin, d.runs[i].end);
}

} // namespace

size_t transposed_panel_size(size_t n, size_t k) { return n < kLanes ? 0 : panel_size(n, k); }

void pack_transposed_panel(const float *b, size_t ldb, size_t n, size_t k, float *panel,
                           size_t depth) {
    fill_panel(true, b, ldb, n, Depth{k, k}, panel, std::min(depth, k));
}

size_t plain_panel_size(size_t n, size_t k) {
    return n < kNarrow || reads_in_place(n, k, n) ? 0 : panel_size(n, k);
}

void pack_plain_panel(const float *b, size_t n, size_t k, float *panel) {
    fill_panel(false, b, n, n, Depth{k, k}, panel, k);
}

// A product of `count` columns reads slabs of panel_width(count) columns,
// its rows that wide apart: the panel's slabs from j0's on when the widths
// agree.
size_t transposed_panel_slab(size_t n, size_t k, size_t j0, size_t count) {
    const size_t width = panel_width(n);
    if (n < kLanes || j0 % width || count == 0 || j0 + count > n || panel_width(count) != width)
        return kNoSlab;
    return j0 / width * width * k;
}

void use_8_float_tiles_only(bool on) {
#ifdef FLOW_TARGET_AVX512
    ymm_only.store(on, std::memory_order_relaxed);
#else
    (void)on;
#endif
}

bool runs_16_float_tiles() {
#ifdef FLOW_TARGET_AVX512
    return zmm_tiles();
#else
    return false;
#endif
}

size_t widest_tile_columns() { return runs_16_float_tiles() ? 2 * kSlab : kSlab; }

namespace {

// small_gemm_strided over the steps of d; b_panel, when given, packed for
// panel_k rows.
void product(size_t m, size_t n, const Depth &d, float alpha, const float *a, size_t a_row,
             size_t a_step, bool trans_b, const float *b, size_t ldb, float beta, float *c,
             size_t ldc, const GemmStore &store, const float *b_panel, size_t panel_k) {
    if (m == 0 || n == 0) return;
    const Epilogue e = {alpha, beta, store, finish_of(alpha, beta, store, c)};
    const size_t k = d.k, width = panel_width(n);
    if (b_panel)
        return multiply(m, n, d, a, a_row, a_step, b_panel, width, width * panel_k, e, c, ldc);
    if (!trans_b && (reads_in_place(n, k, ldb) || (n % kLanes == 0 && m <= kFewTileRows)))
        return multiply(m, n, d, a, a_row, a_step, b, ldb, kSlab, e, c, ldc);
    // The narrow kernel reads rows of op(A) as vectors, all k of them (a
    // product over runs adds the zero rows of op(B) between them).
    if (a_step == 1 && n < kNarrow) {
        if (trans_b) return multiply_narrow(m, n, k, a, a_row, b, ldb, e, c, ldc);
        // B (k x n) transposed: n rows of k for the same dot products.
        float *rows = scratch(n * k);
        for (size_t p = 0; p < k; ++p)
            for (size_t j = 0; j < n; ++j) rows[j * k + p] = b[p * ldb + j];
        return multiply_narrow(m, n, k, a, a_row, rows, k, e, c, ldc);
    }
    float *panel = scratch(panel_size(n, k));
    fill_panel(trans_b, b, ldb, n, d, panel, k);
    multiply(m, n, d, a, a_row, a_step, panel, width, width * k, e, c, ldc);
}

} // namespace

void small_gemm_strided(size_t m, size_t n, size_t k, float alpha, const float *a,
                        size_t a_row, size_t a_step, bool trans_b, const float *b, size_t ldb,
                        float beta, float *c, size_t ldc, const GemmStore &store,
                        const float *b_panel) {
    product(m, n, Depth{k, k}, alpha, a, a_row, a_step, trans_b, b, ldb, beta, c, ldc, store,
            b_panel, k);
}

void small_gemm_staircase(size_t m, size_t n, size_t k_low, size_t k, const float *a,
                          size_t lda, const float *b, size_t ldb, float *c, size_t ldc,
                          const GemmStore &store, const float *b_panel, size_t panel_k) {
    product(m, n, Depth{std::min(k_low, k), k}, 1.0f, a, lda, 1, true, b, ldb, 0.0f, c, ldc,
            store, b_panel, panel_k);
}

void small_gemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
                const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
                size_t ldc, const GemmStore &store, const float *b_panel) {
    small_gemm_strided(m, n, k, alpha, a, trans_a ? 1 : lda, trans_a ? lda : 1, trans_b, b, ldb,
                       beta, c, ldc, store, b_panel);
}

void small_gemm_runs(bool trans_a, size_t m, size_t n, const KRun *runs, size_t count,
                     const float *a, size_t lda, const float *b, size_t ldb, float *c,
                     size_t ldc, const GemmStore &store) {
    const size_t k = count ? runs[count - 1].end : 0;
    product(m, n, Depth{k, k, runs, count}, 1.0f, a, trans_a ? 1 : lda, trans_a ? lda : 1,
            false, b, ldb, 0.0f, c, ldc, store, nullptr, k);
}

} // namespace flow::cpu_kernels
