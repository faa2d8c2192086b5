// Argument checks shared by every backend's ops. The layers call ops with
// tensors they shaped themselves, so a failure is a bug of the calling
// layer: Status::internal, naming the op, never a crash.
#pragma once

#include <string>

#include "backend/tensor.h"
#include "core/error.h"

namespace flow {

inline void op_check(bool ok, const char *op, const char *what) {
    if (!ok) fail(Status::internal, std::string(op) + ": " + what);
}

// The float data of t (host or device memory, as the backend keeps it).
inline float *op_f32(const Tensor &t, const char *op) {
    op_check(t.defined(), op, "undefined tensor");
    return t.f32();
}

inline void check_same_shape(const Tensor &a, const Tensor &b, const char *op) {
    op_check(a.rows() == b.rows() && a.cols() == b.cols(), op, "shape mismatch");
}

inline void check_row_vector(const Tensor &v, const Tensor &matrix, const char *op) {
    op_check(v.size() == matrix.cols(), op, "row vector length != columns");
}

inline void check_per_row(const Tensor &p, const Tensor &matrix, const char *op) {
    op_check(p.size() == matrix.rows(), op, "per-row tensor length != rows");
}

// x and y defined and of one shape; per_row (nullable) one value per row.
inline void check_rows(const Tensor &x, const Tensor &y, const Tensor *per_row, const char *op) {
    op_check(x.defined() && y.defined(), op, "undefined tensor");
    check_same_shape(x, y, op);
    if (per_row) op_check(per_row->size() == x.rows(), op, "per-row size mismatch");
}

// The MADE affine ops: h [n, 2D] from x [n, D], out [n, D].
inline void check_made(const Tensor &x, const Tensor &h, const Tensor &out, const char *op) {
    op_check(h.rows() == x.rows() && h.cols() == 2 * x.cols(), op, "h must be [n, 2D]");
    check_same_shape(x, out, op);
}

} // namespace flow
