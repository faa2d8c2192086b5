// CUDA staircase products (Backend::staircase_*, cut into panels as
// staircase.h describes): one cublasSgemm per panel on strided operands.
// Each call costs a launch, so panels are wide: a layer of up to 128 units
// is one dense product (its zeros multiplied like any weight), a wider one
// at most 8 panels, which still skips 7/16 of the weight.
#include <algorithm>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_launch.h"
#include "backend/staircase.h"

namespace flow {

namespace {

size_t panel_width(size_t length) { return std::max<size_t>(128, panel_count(length, 8)); }

// Row-major c[m, n] = op(a) op(b) + beta * c, the operands' rows lda, ldb
// and ldc apart: column-major C^T = op(B)^T op(A)^T, as CudaBackend::gemm.
void product(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, const float *a,
             size_t lda, const float *b, size_t ldb, float beta, float *c, size_t ldc) {
    const float one = 1.0f;
    cublas_check(cublasSgemm(cuda_context().blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                             trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, (int)n, (int)m, (int)k, &one, b,
                             (int)ldb, a, (int)lda, &beta, c, (int)ldc),
                 "cublasSgemm");
}

// c[i, j] = 0 for i < rows, j in [begin, end) (rows ldc apart).
void zero_columns(float *c, size_t rows, size_t ldc, size_t begin, size_t end) {
    const size_t width = end - begin;
    if (width == 0) return;
    cuda_for_each(rows * width,
                  [=] __device__(size_t k) { c[k / width * ldc + begin + k % width] = 0.0f; });
}

} // namespace

void CudaBackend::staircase_forward(const Tensor &x, const Tensor &w, const Tensor &bias,
                                    const size_t *prefix, Tensor &y, const Tensor *) {
    const StaircaseArgs a = staircase_forward_args(x, w, bias, prefix, y, "staircase_forward");
    float *py = a.out;
    const float *pb = a.bias;
    const size_t units = a.units;
    cuda_for_each(a.rows * units, [=] __device__(size_t k) { py[k] = pb[k % units]; });
    if (a.rows == 0) return;
    const size_t width = panel_width(units);
    for (size_t i = 0; i < panel_count(units, width); ++i) {
        const RowPanel p = row_panel(a.prefix, units, width, i);
        if (p.depth == 0) continue; // the bias alone
        product(false, true, a.rows, p.end - p.begin, p.depth, a.x, a.width,
                a.w + p.begin * a.inputs, a.inputs, 1.0f, py + p.begin, units);
    }
}

void CudaBackend::staircase_backward_input(const Tensor &dy, const Tensor &w,
                                           const size_t *prefix, Tensor &dx) {
    const StaircaseArgs a =
        staircase_backward_input_args(dy, w, prefix, dx, "staircase_backward_input");
    if (a.rows == 0) return;
    const size_t reach = staircase_reach(a.prefix, a.units), width = panel_width(reach);
    for (size_t i = 0; i < panel_count(reach, width); ++i) {
        const size_t j0 = i * width, j1 = std::min(reach, j0 + width);
        const RowRange r = rows_reaching(a.prefix, a.units, j0);
        product(false, false, a.rows, j1 - j0, r.end - r.begin, a.dy + r.begin, a.units,
                a.w + r.begin * a.inputs + j0, a.inputs, 0.0f, a.out + j0, a.inputs);
    }
    zero_columns(a.out, a.rows, a.inputs, reach, a.inputs);
}

// The panels' products go to a workspace in w's layout; one kernel then
// adds each row's staircase (the prefix uploaded beside them) to dw. An index
// entry out of range is skipped.
void CudaBackend::staircase_backward_weight(const Tensor &dy, const Tensor &x,
                                            const size_t *prefix, const Tensor *rows,
                                            const Tensor &cols, Tensor &dw) {
    const StaircaseArgs a = staircase_backward_weight_args(dy, x, prefix, rows, cols, dw,
                                                           "staircase_backward_weight");
    const size_t units = a.units, inputs = a.inputs;
    if (a.rows == 0 || units == 0 || inputs == 0) return;
    float *products = static_cast<float *>(
        cuda_workspace(units * inputs * sizeof(float) + units * sizeof(int32_t)));
    int32_t *depth = reinterpret_cast<int32_t *>(products + units * inputs);
    std::vector<int32_t> host(a.prefix, a.prefix + units);
    cuda_check(cudaMemcpyAsync(depth, host.data(), units * sizeof(int32_t),
                               cudaMemcpyHostToDevice, cuda_context().stream),
               "staircase prefix upload");
    const size_t width = panel_width(units);
    for (size_t i = 0; i < panel_count(units, width); ++i) {
        const RowPanel p = row_panel(a.prefix, units, width, i);
        if (p.depth == 0) continue; // nothing of it is added
        product(true, false, p.end - p.begin, p.depth, a.rows, a.dy + p.begin, units, a.x, inputs,
                0.0f, products + p.begin * inputs, inputs);
    }
    const int32_t *row_index = a.row_index, *col_index = a.col_index;
    float *out = a.out;
    cuda_for_each(units * inputs, [=] __device__(size_t k) {
        const size_t u = k / inputs, j = k % inputs;
        if (j >= (size_t)depth[u]) return;
        const long r = row_index ? (long)row_index[u] : (long)u, c = (long)col_index[j];
        if (r < 0 || c < 0 || (size_t)r >= units || (size_t)c >= inputs) return;
        out[(size_t)r * inputs + (size_t)c] += products[k];
    });
}

} // namespace flow
