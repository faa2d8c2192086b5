// CPU staircase products (Backend::staircase_*, cut into panels as
// staircase.h describes): each panel is a product of the small kernel
// (cpu_small_gemm.cpp) on strided operands, as wide as the kernel's widest
// tile, a shape OpenBLAS runs far below its speed. The batch goes in blocks
// of rows that stay in L2 while every panel uses them, so the kernel needs
// no cache blocking of its own, at any size. Threads split the batch (y,
// dx) or the panels (dw): every element is summed in one order whatever
// the thread count.
#include <omp.h>

#include <algorithm>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_small_gemm.h"
#include "backend/cpu/cpu_thread_buffer.h"
#include "backend/staircase.h"

namespace flow {

namespace {

// Units (or inputs) per panel: the kernel's widest tile, 16 or 32 columns.
// Narrower panels skip more zeros, but each element of the other operand a
// tile broadcasts then feeds fewer FMAs. On an Emerald Rapids core the
// 16-float tiles ran x^T dy (256 x 16 x 512) at 82 GFLOP/s and 256 x 32 x
// 512 at 134; x W^T (512 x n x 256) at 129 and 166. 32-unit panels add
// 5-10% of zeros to a hidden width of 256, 20-25% to one of 64.
size_t panel_units() { return cpu_kernels::widest_tile_columns(); }
// small_gemm_staircase's k_low covers a panel's first 8 units.
constexpr size_t kLowUnits = 8;
// Batch rows per block: a block of x or dy 256 units wide takes 256 KiB.
// Blocks split between threads are a multiple of the kernel's tile heights.
constexpr size_t kRowBlock = 256, kRowGrain = 12;
// Products of more multiply-adds are split across the threads (a hand-off
// costs about a microsecond).
constexpr double kParallelWork = 256.0 * 1024;

// Multiply-adds of a product over the staircase of a, batch rows included.
double staircase_work(const StaircaseArgs &a) {
    double sum = 0.0;
    for (size_t u = 0; u < a.units; ++u) sum += double(a.prefix[u]);
    return sum * double(a.rows);
}

// Threads for `work` multiply-adds in `parts` independent pieces.
size_t threads_for(double work, size_t parts) {
    if (work < kParallelWork || omp_in_parallel()) return 1;
    return std::min((size_t)omp_get_max_threads(), parts);
}

// f(begin, end) on blocks of the batch rows, at least one per thread.
template <class F> void row_blocks(size_t rows, double work, F f) {
    const size_t threads = threads_for(work, rows / kRowGrain);
    const size_t blocks = std::max(panel_count(rows, kRowBlock), threads);
    const size_t step = panel_count(panel_count(rows, blocks), kRowGrain) * kRowGrain;
    auto block = [&](size_t b) {
        const size_t begin = b * step, end = std::min(rows, begin + step);
        if (begin < end) f(begin, end);
    };
    if (threads < 2) {
        for (size_t b = 0; b < blocks; ++b) block(b);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
        const FlushSubnormals flush;
#pragma omp for schedule(static)
        for (size_t b = 0; b < blocks; ++b) block(b);
    }
}

// pack_staircase's panel of w [units, inputs], or null.
const float *packed_panel(const StaircaseArgs &a, const Tensor *packed, const char *op) {
    if (!packed) return nullptr;
    op_check(packed->size() == cpu_kernels::transposed_panel_size(a.units, a.inputs), op,
             "packed_w is not pack_staircase's form of w");
    return op_f32(*packed, op);
}

// Where the band of w^T [inputs, units] of row panel p lies in
// pack_staircase's panel, or kNoSlab.
size_t band_at(size_t units, size_t inputs, const RowPanel &p) {
    return cpu_kernels::transposed_panel_slab(units, inputs, p.begin, p.end - p.begin);
}

// Inputs the first kLowUnits units of panel p reach: the rest of its band
// is zero there, and its tiles stop at it.
size_t low_depth(const size_t *prefix, const RowPanel &p) {
    const size_t end = std::min(p.end, p.begin + kLowUnits);
    return *std::max_element(prefix + p.begin, prefix + end);
}

// y = x w^T + bias, and when act is non-null act = y above 0, slope * y below.
// packed: pack_staircase's panel, or null (each panel transposes its band
// of w then).
void forward(const StaircaseArgs &a, const float *packed, float *act, float slope) {
    const size_t span = panel_units(), panels = panel_count(a.units, span);
    row_blocks(a.rows, staircase_work(a), [&](size_t r0, size_t r1) {
        for (size_t i = 0; i < panels; ++i) {
            const RowPanel p = row_panel(a.prefix, a.units, span, i);
            const size_t at = r0 * a.units + p.begin, count = p.end - p.begin;
            const size_t at_band = packed ? band_at(a.units, a.inputs, p) : cpu_kernels::kNoSlab;
            const float *band = at_band == cpu_kernels::kNoSlab ? nullptr : packed + at_band;
            cpu_kernels::small_gemm_staircase(
                r1 - r0, count, low_depth(a.prefix, p), p.depth, a.x + r0 * a.width, a.width,
                a.w + p.begin * a.inputs, a.inputs, a.out + at, a.units,
                {a.bias + p.begin, act ? act + at : nullptr, slope}, band, a.inputs);
        }
    });
}

} // namespace

void CpuBackend::staircase_forward(const Tensor &x, const Tensor &w, const Tensor &bias,
                                   const size_t *prefix, Tensor &y, const Tensor *packed_w) {
    const char *op = "staircase_forward";
    const StaircaseArgs a = staircase_forward_args(x, w, bias, prefix, y, op);
    forward(a, packed_panel(a, packed_w, op), nullptr, 0.0f);
}

// Only the piecewise-linear activations are fused, as in gemm_bias_activation,
// and only in whole panels: the kernel stores a partial one element by
// element, where the activation's branch costs more than a separate pass
// (forward_dimension's products end in one, and ran 1.4x slower fused).
void CpuBackend::staircase_forward_activation(const Tensor &x, const Tensor &w,
                                              const Tensor &bias, const size_t *prefix,
                                              Activation act, Tensor &pre, Tensor &y,
                                              const Tensor *packed_w) {
    const char *op = "staircase_forward_activation";
    const StaircaseArgs a = staircase_forward_args(x, w, bias, prefix, pre, op);
    check_same_shape(pre, y, op);
    const bool fused = applied_in_store(act) && a.units % panel_units() == 0;
    forward(a, packed_panel(a, packed_w, op), fused ? op_f32(y, op) : nullptr,
            negative_slope(act));
    if (!fused) activation_forward(act, pre, y);
}

// Each band as deep as forward() reads it, where small_gemm's panel of the
// whole w^T would hold it.
void CpuBackend::pack_staircase(const Tensor &w, const size_t *prefix, Tensor &packed) {
    const char *op = "pack_staircase";
    const size_t units = w.rows(), inputs = w.cols();
    check_staircase(prefix, units, inputs, op);
    const size_t size = cpu_kernels::transposed_panel_size(units, inputs);
    if (size == 0) {
        packed = Tensor();
        return;
    }
    packed.ensure(*this, {size});
    const float *pw = op_f32(w, op);
    const size_t span = panel_units();
    for (size_t i = 0; i < panel_count(units, span); ++i) {
        const RowPanel p = row_panel(prefix, units, span, i);
        const size_t at = band_at(units, inputs, p);
        if (at != cpu_kernels::kNoSlab)
            cpu_kernels::pack_transposed_panel(pw + p.begin * inputs, inputs, p.end - p.begin,
                                               inputs, packed.f32() + at, p.depth);
    }
}

namespace {

// The runs of rows of w that reach column `column`, into runs (units / 2 +
// 1 of them at most); returns how many. One run for units in degree order,
// one per block of a MADE's outputs.
size_t runs_reaching(const size_t *prefix, size_t units, size_t column,
                     cpu_kernels::KRun *runs) {
    size_t count = 0;
    for (size_t u = 0; u < units;) {
        if (prefix[u] <= column) {
            ++u;
            continue;
        }
        const size_t begin = u;
        while (u < units && prefix[u] > column) ++u;
        runs[count++] = {begin, u};
    }
    return count;
}

// dx = dy w, each panel of dx stored through `store` (gate: dx's layout),
// summed over the rows of w that reach it. The zeros between them are
// skipped: summing over a MADE output layer's whole span of rows took 1.7x
// as long as the forward (256 x 1920 x 64, units unsorted).
void backward_input(const StaircaseArgs &a, const cpu_kernels::GemmStore &store) {
    const size_t span = panel_units(), panels = panel_count(a.inputs, span);
    row_blocks(a.rows, staircase_work(a), [&](size_t r0, size_t r1) {
        cpu_kernels::KRun *runs = thread_buffer<cpu_kernels::KRun>(a.units / 2 + 1);
        for (size_t i = 0; i < panels; ++i) {
            const size_t j0 = i * span, j1 = std::min(a.inputs, j0 + span);
            cpu_kernels::GemmStore part = store;
            if (part.gate) part.gate += r0 * a.inputs + j0;
            // No row reaches these columns: no runs, and C gets zeros.
            cpu_kernels::small_gemm_runs(false, r1 - r0, j1 - j0, runs,
                                         runs_reaching(a.prefix, a.units, j0, runs),
                                         a.dy + r0 * a.units, a.units, a.w + j0, a.inputs,
                                         a.out + r0 * a.inputs + j0, a.inputs, part);
        }
    });
}

} // namespace

void CpuBackend::staircase_backward_input(const Tensor &dy, const Tensor &w,
                                          const size_t *prefix, Tensor &dx) {
    backward_input(staircase_backward_input_args(dy, w, prefix, dx, "staircase_backward_input"),
                   {});
}

void CpuBackend::staircase_activation_backward(const Tensor &dy, const Tensor &w,
                                               const size_t *prefix, Activation act,
                                               const Tensor &pre, const Tensor &y, Tensor &dx) {
    const char *op = "staircase_activation_backward";
    if (!applied_in_store(act))
        return Backend::staircase_activation_backward(dy, w, prefix, act, pre, y, dx);
    const StaircaseArgs a = staircase_backward_input_args(dy, w, prefix, dx, op);
    check_same_shape(pre, dx, op);
    backward_input(a, cpu_kernels::GemmStore::gated(op_f32(pre, op), negative_slope(act)));
}

// Each panel is computed transposed, dw^T = x^T dy: its columns are then
// one 16-wide tile and its rows (the inputs) many, the kernel's best shape.
// It sums over the batch block by block, then adds its staircase to dw at
// the rows and columns of the index. Panels hold distinct rows of dw, so
// threads never add to one element.
void CpuBackend::staircase_backward_weight(const Tensor &dy, const Tensor &x,
                                           const size_t *prefix, const Tensor *rows,
                                           const Tensor &cols, Tensor &dw) {
    const char *op = "staircase_backward_weight";
    const StaircaseArgs a = staircase_backward_weight_args(dy, x, prefix, rows, cols, dw, op);
    const int32_t *row_index = a.row_index, *col_index = a.col_index;
    for (size_t u = 0; row_index && u < a.units; ++u)
        op_check(row_index[u] >= 0 && size_t(row_index[u]) < a.units, op, "index out of range");
    for (size_t j = 0; j < a.inputs; ++j)
        op_check(col_index[j] >= 0 && size_t(col_index[j]) < a.inputs, op, "index out of range");
    if (a.rows == 0) return;
    const size_t span = panel_units(), panels = panel_count(a.units, span);
    auto panel = [&](size_t i) {
        const RowPanel p = row_panel(a.prefix, a.units, span, i);
        const size_t width = p.end - p.begin;
        float *t = thread_buffer<float, 3>(p.depth * width);
        for (size_t r0 = 0; r0 < a.rows; r0 += kRowBlock)
            cpu_kernels::small_gemm(true, false, p.depth, width, std::min(a.rows - r0, kRowBlock),
                                    1.0f, a.x + r0 * a.inputs, a.inputs,
                                    a.dy + r0 * a.units + p.begin, a.units, r0 ? 1.0f : 0.0f,
                                    t, width);
        for (size_t u = p.begin; u < p.end; ++u) {
            float *row = a.out + (row_index ? size_t(row_index[u]) : u) * a.inputs;
            for (size_t j = 0; j < a.prefix[u]; ++j)
                row[col_index[j]] += t[j * width + (u - p.begin)];
        }
    };
    const size_t threads = threads_for(staircase_work(a), panels);
    if (threads < 2) {
        for (size_t i = 0; i < panels; ++i) panel(i);
        return;
    }
    // The deepest panels first, so that the threads finish together.
#pragma omp parallel num_threads(threads)
    {
        const FlushSubnormals flush;
#pragma omp for schedule(dynamic, 1)
        for (size_t i = 0; i < panels; ++i) panel(panels - 1 - i);
    }
}

} // namespace flow
