// Invertible linear layer (Glow's invertible 1x1 convolution, for vectors):
// z = x W^T, logdet[i] += log|det W|.
//
// "lu": W = P L (U + diag(sign * exp(log_s))) with P a fixed permutation
// (from the spec), L unit lower triangular (its strict lower part is the
// parameter "<name>.lower", entries on and above the diagonal are masked
// out), U strictly upper ("<name>.upper"), log_s ("<name>.log_s") and the
// fixed signs (buffer "<name>.sign"). log|det W| = sum(log_s): forward and
// backward stay on the device with no host round trip.
// Plain: W ("<name>.weight") is a full matrix. log|det W| and W^-T (for the
// gradient of the log-det) come from an LU decomposition with partial
// pivoting in double precision on the host, on the downloaded D x D matrix,
// whenever W has changed since the last: fine for the small D of vector data.
//
// Both start from a random rotation Q drawn from the model seed (Gaussian
// matrix, Gram-Schmidt, as Glow's QR init). For "lu", Q = P0 L0 U0 (partial
// pivoting) gives L, U, log_s and sign; the initial W = P P0^T Q is then a
// rotation too (log|det W| = 0).
//
// The inverse x = z W^-T, for both variants, inverts W on the host in double
// (O(D^3), D small), then multiplies on the device; the inverse is kept
// until W changes.
#include <cmath>
#include <numeric>
#include <utility>
#include <vector>

#include "backend/philox.h"
#include "core/error.h"
#include "flows/glow.h"

namespace flow {

namespace {

using Mat = std::vector<double>; // row-major n x n

// A random rotation: Gram-Schmidt on a Gaussian matrix from Philox(seed,
// stream), columns signed so the distribution is Haar (as with QR).
Mat random_rotation(size_t n, uint64_t seed, uint64_t stream) {
    Mat a(n * n), q(n * n, 0.0);
    for (size_t k = 0; k < n * n; ++k) a[k] = philox_normal(philox4x32_10(seed, stream, k));
    for (size_t j = 0; j < n; ++j) {
        std::vector<double> v(n);
        for (size_t i = 0; i < n; ++i) v[i] = a[i * n + j];
        for (int pass = 0; pass < 2; ++pass) // re-orthogonalize once
            for (size_t c = 0; c < j; ++c) {
                double d = 0;
                for (size_t i = 0; i < n; ++i) d += q[i * n + c] * v[i];
                for (size_t i = 0; i < n; ++i) v[i] -= d * q[i * n + c];
            }
        double norm = 0;
        for (double e : v) norm += e * e;
        norm = std::sqrt(norm);
        if (!(norm > 1e-12)) { // (probability zero) fall back to a unit vector
            std::fill(v.begin(), v.end(), 0.0);
            v[j] = 1.0;
            norm = 1.0;
        }
        for (size_t i = 0; i < n; ++i) q[i * n + j] = v[i] / norm;
    }
    return q;
}

// a = P L U with partial pivoting, in place: a holds L (strict lower, unit
// diagonal implied) and U; row[i] = the row of the original in position i.
// Returns false when a pivot is exactly zero.
bool lu_decompose(Mat &a, size_t n, std::vector<size_t> &row) {
    row.resize(n);
    std::iota(row.begin(), row.end(), 0);
    for (size_t k = 0; k < n; ++k) {
        size_t p = k;
        for (size_t i = k + 1; i < n; ++i)
            if (std::fabs(a[i * n + k]) > std::fabs(a[p * n + k])) p = i;
        if (a[p * n + k] == 0.0 || !std::isfinite(a[p * n + k])) return false;
        if (p != k) {
            for (size_t j = 0; j < n; ++j) std::swap(a[k * n + j], a[p * n + j]);
            std::swap(row[k], row[p]);
        }
        for (size_t i = k + 1; i < n; ++i) {
            double f = a[i * n + k] / a[k * n + k];
            a[i * n + k] = f;
            for (size_t j = k + 1; j < n; ++j) a[i * n + j] -= f * a[k * n + j];
        }
    }
    return true;
}

// The host side of an inversion, kept between them: W changes on every train
// step, and vectors that keep their size allocate nothing.
struct HostInverse {
    std::vector<float> f; // W or W^T downloaded, then W^-T to upload
    Mat a, inv_t;
    std::vector<size_t> row;
    std::vector<double> y;
};

// log|det w| and (w^-1)^T into h.inv_t, by LU in double, for w in h.a
// (overwritten). Throws Status::numeric when w is singular.
double inverse_transpose(HostInverse &h, size_t n) {
    Mat &a = h.a, &inv_t = h.inv_t;
    std::vector<size_t> &row = h.row;
    if (!lu_decompose(a, n, row))
        fail(Status::numeric, "invertible_linear: the weight matrix is singular");
    double logdet = 0;
    for (size_t k = 0; k < n; ++k) logdet += std::log(std::fabs(a[k * n + k]));
    // Solve W X = I column by column: P L U X = I.
    inv_t.assign(n * n, 0.0);
    std::vector<double> &y = h.y;
    y.resize(n);
    for (size_t c = 0; c < n; ++c) {
        for (size_t i = 0; i < n; ++i) y[i] = row[i] == c ? 1.0 : 0.0;
        for (size_t i = 0; i < n; ++i)
            for (size_t k = 0; k < i; ++k) y[i] -= a[i * n + k] * y[k];
        for (size_t i = n; i-- > 0;) {
            for (size_t k = i + 1; k < n; ++k) y[i] -= a[i * n + k] * y[k];
            y[i] /= a[i * n + i];
        }
        // column c of W^-1 is y: row c of W^-T
        for (size_t i = 0; i < n; ++i) inv_t[c * n + i] = y[i];
    }
    if (!std::isfinite(logdet))
        fail(Status::numeric, "invertible_linear: the weight matrix is singular");
    return logdet;
}

// The initial L, U, log_s and sign of the LU variant (from the rotation).
struct LuInit {
    Mat lower, upper;
    std::vector<double> log_s, sign;
};

LuInit lu_init(size_t n, uint64_t seed, uint64_t stream) {
    Mat a = random_rotation(n, seed, stream);
    std::vector<size_t> row;
    if (!lu_decompose(a, n, row)) fail(Status::internal, "invertible_linear: singular rotation");
    LuInit r{Mat(n * n, 0.0), Mat(n * n, 0.0), std::vector<double>(n), std::vector<double>(n)};
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < n; ++j) {
            if (i > j) r.lower[i * n + j] = a[i * n + j];
            if (i < j) r.upper[i * n + j] = a[i * n + j];
        }
    for (size_t k = 0; k < n; ++k) {
        r.log_s[k] = std::log(std::fabs(a[k * n + k]));
        r.sign[k] = a[k * n + k] < 0 ? -1.0 : 1.0;
    }
    return r;
}

void to_float(const std::vector<double> &v, float *dst) {
    for (size_t k = 0; k < v.size(); ++k) dst[k] = (float)v[k];
}

class InvertibleLinear final : public Transform {
public:
    InvertibleLinear(Backend &be, ParamArena &params, ParamArena &buffers, const std::string &name,
                     size_t dim, bool lu, const std::vector<int> &perm, uint64_t stream)
        : dim_(dim), lu_(lu), perm_(perm) {
        const size_t n = dim;
        if (lu_) {
            lower_ = params.declare_custom(name + ".lower", {n, n}, [n, stream](uint64_t seed, float *d) {
                to_float(lu_init(n, seed, stream).lower, d);
            });
            upper_ = params.declare_custom(name + ".upper", {n, n}, [n, stream](uint64_t seed, float *d) {
                to_float(lu_init(n, seed, stream).upper, d);
            });
            log_s_ = params.declare_custom(name + ".log_s", {n}, [n, stream](uint64_t seed, float *d) {
                to_float(lu_init(n, seed, stream).log_s, d);
            });
            sign_ = buffers.declare_custom(name + ".sign", {n}, [n, stream](uint64_t seed, float *d) {
                to_float(lu_init(n, seed, stream).sign, d);
            });
            std::vector<float> ml(n * n, 0.0f), mu(n * n, 0.0f), eye(n * n, 0.0f);
            for (size_t i = 0; i < n; ++i)
                for (size_t j = 0; j < n; ++j) {
                    ml[i * n + j] = i > j ? 1.0f : 0.0f;
                    mu[i * n + j] = i < j ? 1.0f : 0.0f;
                    eye[i * n + j] = i == j ? 1.0f : 0.0f;
                }
            mask_lower_ = upload(be, {n * n}, ml);
            mask_upper_ = upload(be, {n * n}, mu);
            eye_ = upload(be, {n, n}, eye);
            std::vector<int32_t> fwd(perm.begin(), perm.end()), inv(n);
            for (size_t j = 0; j < n; ++j) inv[perm[j]] = (int32_t)j;
            perm_index_ = Tensor(be, {n}, DType::i32);
            inv_perm_index_ = Tensor(be, {n}, DType::i32);
            be.upload(perm_index_, fwd.data());
            be.upload(inv_perm_index_, inv.data());
        } else {
            weight_ = params.declare_custom(name + ".weight", {n, n}, [n, stream](uint64_t seed, float *d) {
                to_float(random_rotation(n, seed, stream), d);
            });
        }
    }

    void forward(const ParamArena &params, const ParamArena &buffers, const Tensor &x,
                 const Tensor &, Tensor &z, Tensor &logdet, const Pass &) override {
        Backend &be = x.backend();
        if (lu_) {
            compose(be, params, buffers);
            be.gemm(false, false, 1.0f, x, wt_, 0.0f, z);
            be.add_vector_sum(logdet, params.value(log_s_), 1.0f);
        } else {
            const double ld = invert(be, params, buffers);
            be.gemm(false, true, 1.0f, x, params.value(weight_), 0.0f, z);
            be.add_scalar(logdet, (float)ld);
        }
        x_ = x;
    }

    void inverse(const ParamArena &params, const ParamArena &buffers, const Tensor &z,
                 const Tensor &, Tensor &x, Tensor &logdet) override {
        Backend &be = z.backend();
        const double ld = invert(be, params, buffers);
        be.gemm(false, false, 1.0f, z, inv_t_, 0.0f, x); // x = z W^-T
        if (lu_)
            be.add_vector_sum(logdet, params.value(log_s_), -1.0f);
        else
            be.add_scalar(logdet, (float)-ld);
    }

    void backward(const ParamArena &params, const ParamArena &, const Tensor &dz,
                  const Tensor &dlogdet, Tensor &dx) override {
        Backend &be = dz.backend();
        const size_t n = dim_;
        if (!lu_) {
            // z = x W^T: dx = dz W, dW += dz^T x + (sum_i dlogdet_i) W^-T
            Tensor dw = params.grad(weight_);
            be.gemm(false, false, 1.0f, dz, params.value(weight_), 0.0f, dx);
            be.gemm(true, false, 1.0f, dz, x_, 1.0f, dw);
            be.axpy((float)be.sum(dlogdet), inv_t_, dw);
            return;
        }
        // z = x WT: dx = dz WT^T, dWT = x^T dz
        be.gemm(false, true, 1.0f, dz, wt_, 0.0f, dx);
        dwt_.ensure(be, {n, n});
        be.gemm(true, false, 1.0f, x_, dz, 0.0f, dwt_);
        // WT[:, i] = MT[:, perm[i]]  =>  dMT[:, j] = dWT[:, inv_perm[j]]
        dmt_.ensure(be, {n, n});
        be.gather_cols(dwt_, inv_perm_index_, dmt_);
        // M = Lf Uf, MT = dM^T: dLf = dMT^T Uf^T, dUf = Lf^T dMT^T
        dlf_.ensure(be, {n, n});
        duf_.ensure(be, {n, n});
        be.gemm(true, true, 1.0f, dmt_, uf_, 0.0f, dlf_);
        be.gemm(true, true, 1.0f, lf_, dmt_, 0.0f, duf_);
        Tensor dlower = params.grad(lower_).view(0, {n * n});
        Tensor dupper = params.grad(upper_).view(0, {n * n});
        const Tensor duf_flat = duf_.view(0, {n * n});
        be.mul_row_vector(dlf_.view(0, {n * n}), mask_lower_, dlower, true);
        be.mul_row_vector(duf_flat, mask_upper_, dupper, true);
        // d log_s[j] += dUf[j, j] * sign_j exp(log_s_j) + sum_i dlogdet_i
        tmp_.ensure(be, {n, n});
        Tensor tmp_flat = tmp_.view(0, {n * n});
        be.mul_row_vector(duf_flat, eye_.view(0, {n * n}), tmp_flat, false);
        diag_.ensure(be, {n});
        be.sum_rows(tmp_, diag_, false);
        Tensor dlog_s = params.grad(log_s_);
        be.mul_row_vector(diag_, d_, dlog_s, true);
        be.add_scalar(dlog_s, (float)be.sum(dlogdet));
    }

private:
    static Tensor upload(Backend &be, std::vector<size_t> shape, const std::vector<float> &v) {
        Tensor t(be, std::move(shape));
        be.upload(t, v.data());
        return t;
    }

    // inv_t_ = W^-T on the device; returns log|det W|. The host LU is
    // O(D^3) in double, most of a Glow sampling call at D = 64, so it is
    // redone only when either arena's generation changed: sampling or
    // evaluating a model whose parameters stay put inverts once, and the
    // calls after that download, allocate and compare nothing.
    double invert(Backend &be, const ParamArena &params, const ParamArena &buffers) {
        if (inverted_.current(params, &buffers)) return inverted_logdet_;
        const size_t n = dim_;
        std::vector<float> &f = host_.f;
        f.resize(n * n);
        host_.a.resize(n * n);
        if (lu_) {
            compose(be, params, buffers);
            be.download(wt_, f.data());
            for (size_t i = 0; i < n; ++i)
                for (size_t j = 0; j < n; ++j) host_.a[i * n + j] = f[j * n + i];
        } else {
            be.download(params.value(weight_), f.data());
            std::copy(f.begin(), f.end(), host_.a.begin());
        }
        inverted_logdet_ = inverse_transpose(host_, n);
        std::copy(host_.inv_t.begin(), host_.inv_t.end(), f.begin());
        inv_t_.ensure(be, {n, n});
        be.upload(inv_t_, f.data());
        inverted_.made(params, &buffers);
        return inverted_logdet_;
    }

    // lf_ = L * mask + I, uf_ = U * mask + diag(sign * exp(log_s)),
    // wt_ = W^T = gather_cols((Lf Uf)^T, perm); kept while neither arena's
    // generation changes.
    void compose(Backend &be, const ParamArena &params, const ParamArena &buffers) {
        if (composed_.current(params, &buffers)) return;
        const size_t n = dim_;
        lf_.ensure(be, {n, n});
        uf_.ensure(be, {n, n});
        mt_.ensure(be, {n, n});
        wt_.ensure(be, {n, n});
        d_.ensure(be, {n});
        Tensor lf_flat = lf_.view(0, {n * n}), uf_flat = uf_.view(0, {n * n});
        be.mul_row_vector(params.value(lower_).view(0, {n * n}), mask_lower_, lf_flat, false);
        be.axpy(1.0f, eye_, lf_);
        be.scale_exp(buffers.value(sign_), params.value(log_s_), 1.0f, d_);
        be.mul_row_vector(params.value(upper_).view(0, {n * n}), mask_upper_, uf_flat, false);
        be.mul_row_vector(eye_, d_, uf_, true);
        be.gemm(true, true, 1.0f, uf_, lf_, 0.0f, mt_);
        be.gather_cols(mt_, perm_index_, wt_);
        composed_.made(params, &buffers);
    }

    size_t dim_;
    bool lu_;
    std::vector<int> perm_;
    size_t lower_ = 0, upper_ = 0, log_s_ = 0, sign_ = 0, weight_ = 0;
    Tensor mask_lower_, mask_upper_, eye_, perm_index_, inv_perm_index_;
    Tensor lf_, uf_, mt_, wt_, d_, x_, inv_t_;
    Derived composed_; // when lf_ ... wt_ were composed
    Derived inverted_; // when inv_t_ was inverted
    double inverted_logdet_ = 0.0;
    HostInverse host_;
    Tensor dwt_, dmt_, dlf_, duf_, tmp_, diag_;
};

} // namespace

std::unique_ptr<Transform> make_invertible_linear(Backend &backend, ParamArena &params,
                                                  ParamArena &buffers, const std::string &name,
                                                  size_t dim, bool lu,
                                                  const std::vector<int> &perm,
                                                  uint64_t init_stream) {
    return std::make_unique<InvertibleLinear>(backend, params, buffers, name, dim, lu, perm,
                                              init_stream);
}

} // namespace flow
