// The checked arguments of ops whose CPU and CUDA versions take the same
// tensors: each function runs the op's shape checks (op_checks.h) and returns
// the raw data pointers (host or device memory) and sizes. The structs hold
// nothing else, so CUDA kernels can copy their fields into device lambdas.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/op_checks.h"

namespace flow {

// --- dense algebra ------------------------------------------------------------

// concat_cols: out [n, ca + cb] from a [n, ca] and b [n, cb].
struct ConcatColsArgs {
    const float *a, *b;
    float *out;
    size_t rows, cols_a, cols_b, cols_out;
};

inline ConcatColsArgs concat_cols_args(const Tensor &a, const Tensor &b, Tensor &out,
                                       const char *op) {
    const size_t ca = a.cols(), cb = b.cols(), co = ca + cb;
    op_check(a.rows() == b.rows() && out.rows() == a.rows() && out.cols() == co, op,
             "shape mismatch");
    return {op_f32(a, op), op_f32(b, op), op_f32(out, op), a.rows(), ca, cb, co};
}

// slice_cols: out [n, co] = columns [begin, begin + co) of x [n, cx].
struct SliceColsArgs {
    const float *x;
    float *out;
    size_t rows, cols_x, cols_out;
};

inline SliceColsArgs slice_cols_args(const Tensor &x, size_t begin, Tensor &out,
                                     const char *op) {
    const size_t cx = x.cols(), co = out.cols();
    op_check(x.rows() == out.rows() && begin <= cx && co <= cx - begin, op,
             "slice out of range");
    return {op_f32(x, op), op_f32(out, op), x.rows(), cx, co};
}

// mul_row_vector: y [n, D] (+)= x [n, D] * v [D].
struct MulRowVectorArgs {
    const float *x, *v;
    float *y;
    size_t rows, cols;
};

inline MulRowVectorArgs mul_row_vector_args(const Tensor &x, const Tensor &v, Tensor &y,
                                            const char *op) {
    check_same_shape(x, y, op);
    check_row_vector(v, x, op);
    return {op_f32(x, op), op_f32(v, op), op_f32(y, op), x.rows(), v.size()};
}

// --- coupling layers ------------------------------------------------------------

// The inputs every affine coupling op shares, checked against the [n, F]
// matrix `in`: h [n, 2F], scale [F], per_row [n].
struct CouplingArgs {
    const float *in, *h, *scale, *per_row;
    size_t rows, cols;
};

inline CouplingArgs coupling_args(const Tensor &in, const Tensor &h, const Tensor &scale,
                                  const Tensor &per_row, const char *op) {
    check_row_vector(scale, in, op);
    check_per_row(per_row, in, op);
    const size_t cols = in.cols();
    op_check(h.rows() == in.rows() && h.cols() == 2 * cols, op, "h must be [n, 2F]");
    return {op_f32(in, op), op_f32(h, op), op_f32(scale, op), op_f32(per_row, op), in.rows(),
            cols};
}

// affine_coupling_backward: coupling_args of x plus dz, dx [n, F], dh [n, 2F],
// dscale [F].
struct CouplingBackwardArgs {
    CouplingArgs in;
    const float *dz;
    float *dx, *dh, *dscale;
};

inline CouplingBackwardArgs coupling_backward_args(const Tensor &x, const Tensor &h,
                                                   const Tensor &scale, const Tensor &dz,
                                                   const Tensor &dlogdet, Tensor &dx, Tensor &dh,
                                                   Tensor &dscale, const char *op) {
    check_same_shape(x, dz, op);
    check_same_shape(x, dx, op);
    check_same_shape(h, dh, op);
    check_row_vector(dscale, x, op);
    const CouplingArgs in = coupling_args(x, h, scale, dlogdet, op);
    return {in, op_f32(dz, op), op_f32(dx, op), op_f32(dh, op), op_f32(dscale, op)};
}

// --- diagonal scaling -------------------------------------------------------------

// scale_exp_backward: x, dz, dx [n, D]; s, ds [D]; dlogdet [n].
struct ScaleExpBackwardArgs {
    const float *x, *s, *dz, *dlogdet;
    float *dx, *ds;
    size_t rows, cols;
};

inline ScaleExpBackwardArgs scale_exp_backward_args(const Tensor &x, const Tensor &s,
                                                    const Tensor &dz, const Tensor &dlogdet,
                                                    Tensor &dx, Tensor &ds, const char *op) {
    check_same_shape(x, dz, op);
    check_same_shape(x, dx, op);
    check_row_vector(s, x, op);
    check_row_vector(ds, x, op);
    check_per_row(dlogdet, x, op);
    return {op_f32(x, op),  op_f32(s, op),  op_f32(dz, op), op_f32(dlogdet, op),
            op_f32(dx, op), op_f32(ds, op), x.rows(),       x.cols()};
}

// --- batch normalization ----------------------------------------------------------

// batch_norm_forward / _inverse: in, out [n, D]; the statistics and
// parameters [D]; logdet [n].
struct BatchNormArgs {
    const float *in, *mean, *var, *log_gamma, *beta;
    float *out, *logdet;
    size_t rows, cols;
};

inline BatchNormArgs batch_norm_args(const Tensor &in, const Tensor &mean, const Tensor &var,
                                     const Tensor &log_gamma, const Tensor &beta, Tensor &out,
                                     Tensor &logdet, const char *op) {
    check_same_shape(in, out, op);
    for (const Tensor *v : {&mean, &var, &log_gamma, &beta}) check_row_vector(*v, in, op);
    check_per_row(logdet, in, op);
    return {op_f32(in, op),        op_f32(mean, op), op_f32(var, op),
            op_f32(log_gamma, op), op_f32(beta, op), op_f32(out, op),
            op_f32(logdet, op),    in.rows(),        in.cols()};
}

// batch_norm_backward: x, dz, dx [n, D]; the statistics, log_gamma and their
// gradients [D]; dlogdet [n].
struct BatchNormBackwardArgs {
    const float *x, *mean, *var, *log_gamma, *dz, *dlogdet;
    float *dx, *dlog_gamma, *dbeta;
    size_t rows, cols;
};

inline BatchNormBackwardArgs batch_norm_backward_args(const Tensor &x, const Tensor &mean,
                                                      const Tensor &var, const Tensor &log_gamma,
                                                      const Tensor &dz, const Tensor &dlogdet,
                                                      Tensor &dx, Tensor &dlog_gamma,
                                                      Tensor &dbeta, const char *op) {
    check_same_shape(x, dz, op);
    check_same_shape(x, dx, op);
    check_per_row(dlogdet, x, op);
    for (const Tensor *v : {&mean, &var, &log_gamma}) check_row_vector(*v, x, op);
    check_row_vector(dlog_gamma, x, op);
    check_row_vector(dbeta, x, op);
    return {op_f32(x, op),          op_f32(mean, op),  op_f32(var, op),
            op_f32(log_gamma, op),  op_f32(dz, op),    op_f32(dlogdet, op),
            op_f32(dx, op),         op_f32(dlog_gamma, op), op_f32(dbeta, op),
            x.rows(),               x.cols()};
}

// --- logit preprocessing ------------------------------------------------------------

// logit_forward / _inverse: in, out [n, D], logdet [n].
struct LogitArgs {
    const float *in;
    float *out, *logdet;
    size_t rows, cols;
};

inline LogitArgs logit_args(const Tensor &in, Tensor &out, Tensor &logdet, const char *op) {
    check_same_shape(in, out, op);
    check_per_row(logdet, in, op);
    return {op_f32(in, op), op_f32(out, op), op_f32(logdet, op), in.rows(), in.cols()};
}

// logit_backward: x, dz, dx [n, D], dlogdet [n].
struct LogitBackwardArgs {
    const float *x, *dz, *dlogdet;
    float *dx;
    size_t rows, cols;
};

inline LogitBackwardArgs logit_backward_args(const Tensor &x, const Tensor &dz,
                                             const Tensor &dlogdet, Tensor &dx, const char *op) {
    check_same_shape(x, dz, op);
    check_same_shape(x, dx, op);
    check_per_row(dlogdet, x, op);
    return {op_f32(x, op), op_f32(dz, op), op_f32(dlogdet, op), op_f32(dx, op), x.rows(),
            x.cols()};
}

// --- MADE affine layer --------------------------------------------------------------

// made_affine_forward / _inverse: in, out [n, D], h [n, 2D] (mu then alpha),
// logdet [n] (null when the op is given none).
struct MadeAffineArgs {
    const float *in, *h;
    float *out, *logdet;
    size_t rows, cols;
};

inline MadeAffineArgs made_affine_args(const Tensor &in, const Tensor &h, Tensor &out,
                                       Tensor *logdet, const char *op) {
    check_made(in, h, out, op);
    if (logdet) check_per_row(*logdet, in, op);
    return {op_f32(in, op), op_f32(h, op), op_f32(out, op),
            logdet ? op_f32(*logdet, op) : nullptr, in.rows(), in.cols()};
}

// made_affine_backward: x, dz, dx [n, D], h, dh [n, 2D], dlogdet [n] (null
// when the op is given none).
struct MadeAffineBackwardArgs {
    const float *x, *h, *dz, *dlogdet;
    float *dx, *dh;
    size_t rows, cols;
};

inline MadeAffineBackwardArgs made_affine_backward_args(const Tensor &x, const Tensor &h,
                                                        const Tensor &dz, const Tensor *dlogdet,
                                                        Tensor &dx, Tensor &dh, const char *op) {
    check_made(x, h, dz, op);
    check_made(x, h, dx, op);
    op_check(dh.rows() == x.rows() && dh.cols() == 2 * x.cols(), op, "dh must be [n, 2D]");
    if (dlogdet) check_per_row(*dlogdet, x, op);
    return {op_f32(x, op),
            op_f32(h, op),
            op_f32(dz, op),
            dlogdet ? op_f32(*dlogdet, op) : nullptr,
            op_f32(dx, op),
            op_f32(dh, op),
            x.rows(),
            x.cols()};
}

// --- MADE staircase products ---------------------------------------------------------

// The operands of staircase_forward / _backward_input / _backward_weight:
// w [units, inputs] with its prefix (host, `units` values); x [rows, width]
// (width = inputs but in the forward); dy [rows, units]; out is y, dx or
// dw; row_index (nullable) and col_index place dw's rows and columns. What
// an op does not take is null.
struct StaircaseArgs {
    const float *x, *w, *dy, *bias;
    float *out;
    const size_t *prefix;
    const int32_t *row_index, *col_index;
    size_t rows, units, inputs, width;
};

// prefix: `units` values, each at most `limit`.
inline void check_staircase(const size_t *prefix, size_t units, size_t limit, const char *op) {
    if (units == 0) return;
    op_check(prefix != nullptr, op, "null prefix");
    for (size_t u = 0; u < units; ++u)
        op_check(prefix[u] <= limit, op, "prefix past the input columns");
}

// The entries of an i32 index of `count` entries (their values are the
// backend's to check: they may live on the device).
inline const int32_t *staircase_index(const Tensor &index, size_t count, const char *op) {
    op_check(index.defined() && index.dtype() == DType::i32, op, "index is not int32");
    op_check(index.size() == count, op, "index length mismatch");
    return index.i32();
}

inline StaircaseArgs staircase_forward_args(const Tensor &x, const Tensor &w, const Tensor &bias,
                                            const size_t *prefix, Tensor &y, const char *op) {
    const size_t units = w.rows(), inputs = w.cols(), width = x.cols();
    op_check(width <= inputs, op, "x wider than w");
    op_check(y.rows() == x.rows() && y.cols() == units, op, "y must be [n, out]");
    op_check(bias.size() == units, op, "bias length != out");
    check_staircase(prefix, units, width, op);
    return {op_f32(x, op), op_f32(w, op), nullptr, op_f32(bias, op), op_f32(y, op), prefix,
            nullptr, nullptr, x.rows(), units, inputs, width};
}

inline StaircaseArgs staircase_backward_input_args(const Tensor &dy, const Tensor &w,
                                                   const size_t *prefix, Tensor &dx,
                                                   const char *op) {
    const size_t units = w.rows(), inputs = w.cols();
    op_check(dy.cols() == units, op, "dy must be [n, out]");
    op_check(dx.rows() == dy.rows() && dx.cols() == inputs, op, "dx must be [n, in]");
    check_staircase(prefix, units, inputs, op);
    return {nullptr, op_f32(w, op), op_f32(dy, op), nullptr, op_f32(dx, op), prefix,
            nullptr, nullptr, dy.rows(), units, inputs, inputs};
}

inline StaircaseArgs staircase_backward_weight_args(const Tensor &dy, const Tensor &x,
                                                    const size_t *prefix, const Tensor *rows,
                                                    const Tensor &cols, Tensor &dw,
                                                    const char *op) {
    const size_t units = dw.rows(), inputs = dw.cols();
    op_check(dy.cols() == units, op, "dy must be [n, out]");
    op_check(x.rows() == dy.rows() && x.cols() == inputs, op, "x must be [n, in]");
    check_staircase(prefix, units, inputs, op);
    return {op_f32(x, op),
            nullptr,
            op_f32(dy, op),
            nullptr,
            op_f32(dw, op),
            prefix,
            rows ? staircase_index(*rows, units, op) : nullptr,
            staircase_index(cols, inputs, op),
            dy.rows(),
            units,
            inputs,
            inputs};
}

// --- MADE mixture-of-Gaussians base ---------------------------------------------------

// z [n, D] and h [n, 3 C D] of the MADE MoG ops: C components per dimension.
struct MadeMogArgs {
    const float *z, *h;
    size_t rows, dims, components;
};

inline MadeMogArgs made_mog_args(const Tensor &z, const Tensor &h, const char *op) {
    op_check(z.defined() && h.defined(), op, "undefined tensor");
    const size_t D = z.cols();
    op_check(D > 0 && h.rows() == z.rows() && h.cols() % (3 * D) == 0 && h.cols() >= 3 * D, op,
             "h must be [n, 3 C D]");
    return {z.f32(), h.f32(), z.rows(), D, h.cols() / (3 * D)};
}

// made_mog_log_prob: made_mog_args plus out [n].
struct MadeMogLogProbArgs {
    MadeMogArgs in;
    float *out;
};

inline MadeMogLogProbArgs made_mog_log_prob_args(const Tensor &z, const Tensor &h, Tensor &out,
                                                 const char *op) {
    const MadeMogArgs in = made_mog_args(z, h, op);
    op_check(out.size() == z.rows(), op, "per-row tensor length != rows");
    return {in, op_f32(out, op)};
}

// made_mog_log_prob_backward: made_mog_args plus dlogp [n], dz like z, dh
// like h, and the optional out [n] (null when none).
struct MadeMogBackwardArgs {
    MadeMogArgs in;
    const float *dlogp;
    float *dz, *dh, *out;
};

inline MadeMogBackwardArgs made_mog_backward_args(const Tensor &z, const Tensor &h,
                                                  const Tensor &dlogp, Tensor &dz, Tensor &dh,
                                                  Tensor *out, const char *op) {
    const MadeMogArgs in = made_mog_args(z, h, op);
    op_check(dlogp.size() == z.rows(), op, "per-row tensor length != rows");
    op_check(dz.rows() == z.rows() && dz.cols() == z.cols(), op, "dz shape mismatch");
    op_check(dh.rows() == h.rows() && dh.cols() == h.cols(), op, "dh shape mismatch");
    op_check(!out || out->size() == z.rows(), op, "per-row tensor length != rows");
    return {in, op_f32(dlogp, op), op_f32(dz, op), op_f32(dh, op), out ? op_f32(*out, op) : nullptr};
}

// made_mog_sample: made_mog_args with z written at one column, and the
// optional per-row member ids (null when none).
struct MadeMogSampleArgs {
    MadeMogArgs in;
    float *z;
    const float *member;
};

inline MadeMogSampleArgs made_mog_sample_args(Tensor &z, const Tensor &h, size_t column,
                                              const Tensor *member, size_t members,
                                              const char *op) {
    const MadeMogArgs in = made_mog_args(z, h, op);
    op_check(column < z.cols(), op, "column out of range");
    if (member)
        op_check(member->size() == z.rows() && members > 0, op, "member must be per-row");
    return {in, z.f32(), member ? op_f32(*member, op) : nullptr};
}

} // namespace flow
