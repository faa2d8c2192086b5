// CUDA ops of the dense algebra: row/column arithmetic, activations, reductions to the host.
#include <cmath>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_launch.h"
#include "backend/philox.h"

namespace flow {

namespace {

// act(v), the CPU's definitions (cpu_kernels.cpp) with the device's own exp and tanh.
FLOW_HD float activation_value(Activation act, float v) {
    switch (act) {
    case Activation::relu: return v > 0.0f ? v : 0.0f;
    case Activation::leaky_relu: return v > 0.0f ? v : kLeakyReluSlope * v;
    case Activation::elu: return v > 0.0f ? v : expm1f(v);
    case Activation::tanh: return tanhf(v);
    case Activation::softplus: break;
    }
    return fmaxf(v, 0.0f) + log1pf(expf(-fabsf(v))); // softplus, stable at both ends
}

// act'(v) given out = act(v).
FLOW_HD float activation_derivative(Activation act, float v, float out) {
    switch (act) {
    case Activation::relu: return v > 0.0f ? 1.0f : 0.0f;
    case Activation::leaky_relu: return v > 0.0f ? 1.0f : kLeakyReluSlope;
    case Activation::elu: return v > 0.0f ? 1.0f : out + 1.0f;
    case Activation::tanh: return 1.0f - out * out;
    case Activation::softplus: break;
    }
    // softplus' = sigmoid(v), stable at both ends
    const float e = expf(-fabsf(v));
    const float s = 1.0f / (1.0f + e);
    return v >= 0.0f ? s : e * s;
}

} // namespace

void CudaBackend::add_row_vector(Tensor &y, const Tensor &v) {
    const char *op = "add_row_vector";
    check_row_vector(v, y, op);
    float *py = op_f32(y, op);
    const float *pv = op_f32(v, op);
    const size_t cols = v.size();
    cuda_for_each(y.size(), [=] __device__(size_t k) { py[k] += pv[k % cols]; });
}

void CudaBackend::sum_rows(const Tensor &x, Tensor &out, bool accumulate) {
    const char *op = "sum_rows";
    check_row_vector(out, x, op);
    const float *px = op_f32(x, op);
    float *po = op_f32(out, op);
    const size_t cols = out.size();
    cuda_column_reduce(
        x.rows(), cols, [=] __device__(size_t i, size_t j) { return (double)px[i * cols + j]; },
        [=] __device__(size_t j, double total) {
            po[j] = (float)((accumulate ? (double)po[j] : 0.0) + total);
        });
}

void CudaBackend::mul_row_vector(const Tensor &x, const Tensor &v, Tensor &y, bool accumulate) {
    const MulRowVectorArgs a = mul_row_vector_args(x, v, y, "mul_row_vector");
    const float *px = a.x, *pv = a.v;
    float *py = a.y;
    const size_t cols = a.cols;
    cuda_for_each(x.size(), [=] __device__(size_t k) {
        py[k] = (accumulate ? py[k] : 0.0f) + px[k] * pv[k % cols];
    });
}

void CudaBackend::axpy(float alpha, const Tensor &x, Tensor &y) {
    op_check(x.size() == y.size(), "axpy", "size mismatch");
    const float *px = op_f32(x, "axpy");
    float *py = op_f32(y, "axpy");
    cuda_for_each(x.size(), [=] __device__(size_t k) { py[k] += alpha * px[k]; });
}

void CudaBackend::scale(Tensor &x, float alpha) {
    float *px = op_f32(x, "scale");
    cuda_for_each(x.size(), [=] __device__(size_t k) { px[k] *= alpha; });
}

void CudaBackend::concat_cols(const Tensor &a, const Tensor &b, Tensor &out) {
    const ConcatColsArgs c = concat_cols_args(a, b, out, "concat_cols");
    const float *pa = c.a, *pb = c.b;
    float *po = c.out;
    const size_t ca = c.cols_a, cb = c.cols_b, co = c.cols_out;
    cuda_for_each(out.size(), [=] __device__(size_t k) {
        const size_t i = k / co, j = k % co;
        po[k] = j < ca ? pa[i * ca + j] : pb[i * cb + (j - ca)];
    });
}

void CudaBackend::slice_cols(const Tensor &x, size_t begin, Tensor &out) {
    const SliceColsArgs a = slice_cols_args(x, begin, out, "slice_cols");
    const float *px = a.x;
    float *po = a.out;
    const size_t cx = a.cols_x, co = a.cols_out;
    cuda_for_each(out.size(), [=] __device__(size_t k) {
        po[k] = px[k / co * cx + begin + k % co];
    });
}

namespace {

// The device data of an optional i32 index of `count` entries (null: the
// identity, which needs count == limit). The entries live on the device:
// checking them here would wait for the stream, so the kernels check them.
const int32_t *index_data(const Tensor *index, size_t count, size_t limit, const char *op) {
    if (!index) {
        op_check(count == limit, op, "shape mismatch");
        return nullptr;
    }
    op_check(index->defined() && index->dtype() == DType::i32, op, "index is not int32");
    op_check(index->size() == count, op, "index length mismatch");
    return index->i32();
}

// Entry k of an optional index, or k itself; -1 when out of [0, limit).
FLOW_HD long index_at(const int32_t *index, size_t k, size_t limit) {
    const long v = index ? (long)index[k] : (long)k;
    return v >= 0 && (size_t)v < limit ? v : -1;
}

} // namespace

void CudaBackend::gather(const Tensor &x, const Tensor *rows, const Tensor *cols, Tensor &y) {
    const char *op = "gather";
    const size_t rx = x.rows(), cx = x.cols(), cy = y.cols();
    const int32_t *row_idx = index_data(rows, y.rows(), rx, op);
    const int32_t *col_idx = index_data(cols, cy, cx, op);
    const float *px = op_f32(x, op);
    float *py = op_f32(y, op);
    // An index out of range gives NaN.
    cuda_for_each(y.size(), [=] __device__(size_t k) {
        const long r = index_at(row_idx, k / cy, rx), c = index_at(col_idx, k % cy, cx);
        py[k] = r >= 0 && c >= 0 ? px[(size_t)r * cx + (size_t)c] : nanf("");
    });
}

void CudaBackend::scatter(const Tensor &x, const Tensor *rows, const Tensor *cols, Tensor &y,
                          bool accumulate) {
    const char *op = "scatter";
    const size_t cx = x.cols(), ry = y.rows(), cy = y.cols();
    const size_t width = cols ? cols->size() : cx;
    op_check(width <= cx, op, "more column indices than columns");
    const int32_t *row_idx = index_data(rows, x.rows(), ry, op);
    const int32_t *col_idx = index_data(cols, width, cy, op);
    const float *px = op_f32(x, op);
    float *py = op_f32(y, op);
    // Distinct indices: every element of y has one writer. Out of range: skipped.
    cuda_for_each(x.rows() * width, [=] __device__(size_t k) {
        const size_t i = k / width, j = k % width;
        const long r = index_at(row_idx, i, ry), c = index_at(col_idx, j, cy);
        if (r < 0 || c < 0) return;
        float &out = py[(size_t)r * cy + (size_t)c];
        out = accumulate ? out + px[i * cx + j] : px[i * cx + j];
    });
}

void CudaBackend::add_scalar(Tensor &y, float c) {
    float *py = op_f32(y, "add_scalar");
    cuda_for_each(y.size(), [=] __device__(size_t k) { py[k] += c; });
}

void CudaBackend::add_vector_sum(Tensor &per_row, const Tensor &v, float sign) {
    const float *pv = op_f32(v, "add_vector_sum");
    float *pr = op_f32(per_row, "add_vector_sum");
    const size_t n = v.size();
    // Every row sums v itself (a short row vector): no wait for the host.
    cuda_for_each(per_row.size(), [=] __device__(size_t i) {
        double total = 0.0;
        for (size_t k = 0; k < n; ++k) total += pv[k];
        pr[i] = (float)(pr[i] + sign * total);
    });
}

void CudaBackend::activation_forward(Activation act, const Tensor &x, Tensor &y) {
    const char *op = "activation_forward";
    op_check(x.size() == y.size(), op, "size mismatch");
    const float *px = op_f32(x, op);
    float *py = op_f32(y, op);
    cuda_for_each(x.size(), [=] __device__(size_t k) { py[k] = activation_value(act, px[k]); });
}

void CudaBackend::activation_backward(Activation act, const Tensor &x, const Tensor &y,
                                      const Tensor &dy, Tensor &dx) {
    const char *op = "activation_backward";
    op_check(x.size() == y.size() && x.size() == dy.size() && x.size() == dx.size(), op,
                 "size mismatch");
    const float *px = op_f32(x, op), *py = op_f32(y, op), *pdy = op_f32(dy, op);
    float *pdx = op_f32(dx, op); // may alias pdy: element k reads dy[k] before writing dx[k]
    cuda_for_each(x.size(), [=] __device__(size_t k) {
        pdx[k] = pdy[k] * activation_derivative(act, px[k], py[k]);
    });
}

double CudaBackend::sum(const Tensor &x) {
    const float *px = op_f32(x, "sum");
    return cuda_sum_to_host(x.size(), [=] __device__(size_t k) { return (double)px[k]; });
}

double CudaBackend::sum_squares(const Tensor &x) {
    const float *px = op_f32(x, "sum_squares");
    return cuda_sum_to_host(x.size(), [=] __device__(size_t k) {
        const double v = px[k];
        return v * v;
    });
}

bool CudaBackend::all_finite(const Tensor &x) {
    const float *px = op_f32(x, "all_finite");
    // Counts the elements that are inf or NaN (x * 0 is 0 only for finite x).
    return cuda_sum_to_host(x.size(), [=] __device__(size_t k) {
               return px[k] * 0.0f == 0.0f ? 0.0 : 1.0;
           }) == 0.0;
}

} // namespace flow
