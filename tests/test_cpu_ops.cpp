// The CPU backend, op by op: forward ops against naive double-precision
// references written here, every *_backward op against central finite
// differences of its forward op, Philox against the Random123 known answers,
// and the optimizers against values printed by PyTorch 1.13.
//
// Tolerances: forward ops are float computations compared with double
// references, so they get ~1e-5 relative (more for long sums). Finite
// differences run the float forward with steps of 1e-3..1e-2, whose rounding
// and truncation errors are ~1e-4, so gradients are checked to 2e-3 absolute
// plus 2e-3 relative.
#include <criterion/criterion.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "backend/made_mog_math.h"
#include "backend/philox.h"
#include "core/error.h"
#include "model/param_arena.h"
#include "nn/made.h"

using namespace flow;
using Vec = std::vector<float>;
using Ref = std::vector<double>;
using Loss = std::function<double(const Vec &)>;

static const double kGradTol = 2e-3;

// --- helpers ----------------------------------------------------------------

static Backend &cpu() { return cpu_backend(); }

static Tensor tensor(std::vector<size_t> shape, const Vec &data) {
    Tensor t(cpu(), std::move(shape));
    cr_assert_eq(data.size(), t.size(), "test bug: %zu values for %zu elements", data.size(),
                 t.size());
    cpu().upload(t, data.data());
    return t;
}

static Tensor filled(std::vector<size_t> shape, float value) {
    Tensor t(cpu(), std::move(shape));
    cpu().fill(t, value);
    return t;
}

static Vec values(const Tensor &t) {
    Vec v(t.size());
    cpu().download(t, v.data());
    return v;
}

static Vec random_vec(size_t n, unsigned seed, float lo = -1.0f, float hi = 1.0f) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> dist(lo, hi);
    Vec v(n);
    for (float &x : v) x = dist(gen);
    return v;
}

static double dot(const Vec &a, const Vec &b) {
    double s = 0.0;
    for (size_t k = 0; k < a.size(); ++k) s += double(a[k]) * b[k];
    return s;
}

// |got - want| <= abs_tol + rel_tol * |want| at every element.
static void expect_close(const Vec &got, const Ref &want, double abs_tol, double rel_tol,
                         const char *what) {
    cr_assert_eq(got.size(), want.size(), "%s: %zu values, expected %zu", what, got.size(),
                 want.size());
    for (size_t k = 0; k < got.size(); ++k) {
        const double err = std::fabs(got[k] - want[k]);
        cr_assert(err <= abs_tol + rel_tol * std::fabs(want[k]),
                  "%s[%zu]: got %.9g, expected %.9g (error %.3g)", what, k, got[k], want[k], err);
    }
}

static void expect_close(const Vec &got, const Vec &want, double abs_tol, double rel_tol,
                         const char *what) {
    expect_close(got, Ref(want.begin(), want.end()), abs_tol, rel_tol, what);
}

static void expect_equal(const Vec &got, const Vec &want, const char *what) {
    expect_close(got, want, 0.0, 0.0, what);
}

// Central differences of loss at `at`, one element at a time.
static Ref finite_diff(const Loss &loss, Vec at, float h) {
    Ref grad(at.size());
    for (size_t k = 0; k < at.size(); ++k) {
        const float x0 = at[k];
        at[k] = x0 + h;
        const float up = at[k];
        const double loss_up = loss(at);
        at[k] = x0 - h;
        const float down = at[k];
        const double loss_down = loss(at);
        at[k] = x0;
        grad[k] = (loss_up - loss_down) / (double(up) - double(down));
    }
    return grad;
}

static void expect_grad(const Vec &analytic, const Loss &loss, const Vec &at, float h,
                        const char *what) {
    expect_close(analytic, finite_diff(loss, at, h), kGradTol, kGradTol, what);
}

static bool throws_internal(const std::function<void()> &op) {
    try {
        op();
    } catch (const Error &e) {
        return e.status() == Status::internal;
    }
    return false;
}

// --- memory and copies ------------------------------------------------------

Test(cpu_memory, allocate_is_aligned_and_never_null) {
    cr_assert(cpu().kind() == DeviceKind::cpu);
    for (size_t bytes : {size_t(0), size_t(1), size_t(100), size_t(1) << 20}) {
        void *p = cpu().allocate(bytes);
        cr_assert_not_null(p, "allocate(%zu) returned null", bytes);
        cr_assert_eq(reinterpret_cast<uintptr_t>(p) % 64, 0u, "allocate(%zu) not 64-aligned", bytes);
        cpu().release(p);
    }
    cpu().release(nullptr);
}

Test(cpu_memory, huge_allocation_throws_out_of_memory) {
    try {
        cpu().allocate(std::numeric_limits<size_t>::max() - 8);
        cr_assert_fail("allocation of SIZE_MAX bytes succeeded");
    } catch (const Error &e) {
        cr_assert_eq(int(e.status()), int(Status::out_of_memory));
    }
}

Test(cpu_memory, upload_download_copy_fill) {
    const Vec data = random_vec(12, 1);
    Tensor a = tensor({3, 4}, data), b(cpu(), {3, 4});
    expect_equal(values(a), data, "upload/download");
    cpu().copy(a, b);
    expect_equal(values(b), data, "copy");
    cpu().fill(b, 2.5f);
    expect_equal(values(b), Vec(12, 2.5f), "fill");

    std::vector<int32_t> ints = {3, -1, 7}, back(3);
    Tensor i(cpu(), {3}, DType::i32), j(cpu(), {3}, DType::i32);
    cpu().upload(i, ints.data());
    cpu().copy(i, j);
    cpu().download(j, back.data());
    cr_assert(back == ints, "int32 copy");
    cr_assert(throws_internal([&] { cpu().copy(a, i); }), "copy across dtypes must fail");
}

Test(cpu_memory, shape_errors_are_internal) {
    Tensor x = filled({4, 3}, 1.0f), wrong = filled({4, 2}, 1.0f), row = filled({2}, 1.0f);
    Tensor undefined;
    cr_assert(throws_internal([&] { cpu().add_row_vector(x, row); }));
    cr_assert(throws_internal([&] { cpu().axpy(1.0f, x, wrong); }));
    cr_assert(throws_internal([&] { cpu().gemm(false, false, 1, x, x, 0, wrong); }));
    cr_assert(throws_internal([&] { cpu().activation_forward(Activation::relu, x, wrong); }));
    cr_assert(throws_internal([&] { cpu().normal_log_prob(x, row); }));
    cr_assert(throws_internal([&] { cpu().scale(undefined, 2.0f); }));
}

Test(cpu_memory, empty_batch_is_valid) {
    Tensor x(cpu(), {0, 3}), y(cpu(), {0, 3}), v = filled({3}, 1.0f), ld(cpu(), {0});
    cpu().add_row_vector(x, v);
    cpu().scale_exp(x, v, 1.0f, y);
    cpu().normal_log_prob(x, ld);
    Tensor sums = filled({3}, 5.0f);
    cpu().sum_rows(x, sums, false);
    expect_equal(values(sums), Vec(3, 0.0f), "sum_rows of no rows");
    cpu().upload(x, nullptr);
    cpu().download(x, nullptr);
}

// --- dense algebra ----------------------------------------------------------

static Ref gemm_ref(bool ta, bool tb, double alpha, const Vec &a, const Vec &b, double beta,
                    const Vec &c, size_t m, size_t k, size_t n) {
    Ref out(m * n);
    for (size_t i = 0; i < m; ++i)
        for (size_t j = 0; j < n; ++j) {
            double acc = 0.0;
            for (size_t p = 0; p < k; ++p)
                acc += double(ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
            out[i * n + j] = alpha * acc + (beta == 0.0 ? 0.0 : beta * c[i * n + j]);
        }
    return out;
}

Test(cpu_algebra, gemm_all_transposes_and_betas) {
    // Eigen's inline product, one-thread BLAS, and threaded BLAS sizes.
    const size_t shapes[][3] = {{3, 4, 5}, {37, 53, 29}, {1, 64, 1}, {300, 130, 120}};
    for (const auto &s : shapes)
        for (int ta = 0; ta < 2; ++ta)
            for (int tb = 0; tb < 2; ++tb)
                for (float beta : {0.0f, 1.0f, -0.5f}) {
                    const size_t m = s[0], k = s[1], n = s[2];
                    const Vec a = random_vec(m * k, 10), b = random_vec(k * n, 11);
                    // beta = 0 must not read c: poison it with NaN.
                    const Vec c = beta == 0.0f ? Vec(m * n, NAN) : random_vec(m * n, 12);
                    Tensor ta_t = tensor(ta ? std::vector<size_t>{k, m} : std::vector<size_t>{m, k}, a);
                    Tensor tb_t = tensor(tb ? std::vector<size_t>{n, k} : std::vector<size_t>{k, n}, b);
                    Tensor tc = tensor({m, n}, c);
                    cpu().gemm(ta, tb, 1.25f, ta_t, tb_t, beta, tc);
                    expect_close(values(tc), gemm_ref(ta, tb, 1.25, a, b, beta, c, m, k, n), 1e-5,
                                 1e-5, "gemm");
                }
}

// Shapes (m, k, n) that reach each path of gemm: Eigen's inline product,
// the small kernel (which adds the bias as it stores) and OpenBLAS (on two
// threads for the largest when two are allowed).
Test(cpu_algebra, gemm_bias_matches_reference) {
    const size_t shapes[][3] = {{3, 4, 5},      {256, 64, 48}, {256, 64, 64},
                                {13, 300, 160}, {300, 65, 70}, {512, 300, 256}};
    const int threads = omp_get_max_threads();
    for (int t = 1; t <= 2; ++t)
        for (const auto &s : shapes)
            for (int ta = 0; ta < 2; ++ta)
                for (int tb = 0; tb < 2; ++tb) {
                    const size_t m = s[0], k = s[1], n = s[2];
                    const Vec a = random_vec(m * k, 13), b = random_vec(k * n, 14),
                              v = random_vec(n, 15);
                    Tensor ta_t =
                        tensor(ta ? std::vector<size_t>{k, m} : std::vector<size_t>{m, k}, a);
                    Tensor tb_t =
                        tensor(tb ? std::vector<size_t>{n, k} : std::vector<size_t>{k, n}, b);
                    Tensor tc = filled({m, n}, NAN); // overwritten, never read
                    omp_set_num_threads(t);
                    cpu().gemm_bias(ta, tb, ta_t, tb_t, tensor({n}, v), tc);
                    omp_set_num_threads(threads);
                    Vec rows(m * n);
                    for (size_t i = 0; i < m; ++i)
                        for (size_t j = 0; j < n; ++j)
                            rows[i * n + j] = v[j];
                    expect_close(values(tc), gemm_ref(ta, tb, 1.0, a, b, 1.0, rows, m, k, n), 1e-5,
                                 1e-5, "gemm_bias");
                }
    Tensor x = filled({4, 3}, 1.0f), w = filled({2, 3}, 1.0f), c(cpu(), {4, 2});
    cr_assert(throws_internal([&] { cpu().gemm_bias(false, true, x, w, filled({3}, 0.0f), c); }),
              "bias length != columns must fail");
}

// The fused hidden-layer forward against gemm_bias + activation_forward, on
// the small kernels (relu and leaky relu fused in their store; narrow and
// partial-tile outputs too) and on paths that do not fuse (an inner
// dimension past the small kernel's, tanh), with one and two threads
// allowed, with pre and y apart and as one tensor.
Test(cpu_algebra, gemm_bias_activation_matches_the_composition) {
    const size_t shapes[][3] = {{256, 64, 64}, {37, 40, 23}, {13, 300, 160}, {512, 300, 256},
                                {50, 64, 5},   {9, 2000, 24}};
    const Activation acts[] = {Activation::relu, Activation::leaky_relu, Activation::tanh};
    const int threads = omp_get_max_threads();
    for (int t = 1; t <= 2; ++t)
        for (const auto &s : shapes)
            for (Activation act : acts) {
                const size_t m = s[0], k = s[1], n = s[2];
                const Tensor x = tensor({m, k}, random_vec(m * k, 16));
                const Tensor w = tensor({n, k}, random_vec(k * n, 17));
                const Tensor v = tensor({n}, random_vec(n, 18));
                Tensor pre = filled({m, n}, NAN), y = filled({m, n}, NAN);
                Tensor want_pre = filled({m, n}, NAN), want_y = filled({m, n}, NAN);
                omp_set_num_threads(t);
                cpu().gemm_bias_activation(false, true, x, w, v, act, pre, y);
                cpu().gemm_bias(false, true, x, w, v, want_pre);
                cpu().activation_forward(act, want_pre, want_y);
                omp_set_num_threads(threads);
                expect_equal(values(pre), values(want_pre), "gemm_bias_activation pre");
                expect_close(values(y), values(want_y), 1e-6, 1e-6, "gemm_bias_activation y");
                Tensor both = filled({m, n}, NAN);
                omp_set_num_threads(t);
                cpu().gemm_bias_activation(false, true, x, w, v, act, both, both);
                omp_set_num_threads(threads);
                expect_equal(values(both), values(y), "gemm_bias_activation in place");
            }
    Tensor x = filled({4, 3}, 1.0f), w = filled({2, 3}, 1.0f), pre(cpu(), {4, 2}), y(cpu(), {4, 3});
    cr_assert(throws_internal([&] {
                  cpu().gemm_bias_activation(false, true, x, w, filled({2}, 0.0f),
                                             Activation::relu, pre, y);
              }),
              "y of another shape than pre must fail");
}

// The backward of a layer through the activation of its input against
// gemm + activation_backward, bit for bit: relu and leaky relu gated in the
// small kernel's store (tiles, ragged edges, narrow outputs, two threads)
// and the paths that do not gate there (an inner dimension past the small
// kernel's or under 4, tanh, elu); and the same with the weight packed by
// pack_weight_rows where it packs anything (wide rows, ragged widths, few
// rows of dy that would read w in place).
Test(cpu_algebra, gemm_activation_backward_matches_the_composition) {
    const size_t shapes[][3] = {{256, 64, 64}, {37, 40, 23}, {13, 300, 160}, {512, 256, 256},
                                {50, 64, 5},   {9, 2000, 24}, {31, 3, 17}, {4096, 4, 256}};
    const Activation acts[] = {Activation::relu, Activation::leaky_relu, Activation::tanh,
                               Activation::elu};
    const int threads = omp_get_max_threads();
    for (int t = 1; t <= 2; ++t)
        for (const auto &s : shapes)
            for (Activation act : acts) {
                const size_t m = s[0], k = s[1], n = s[2]; // dy [m, k], w [k, n]
                const Tensor dy = tensor({m, k}, random_vec(m * k, 23));
                const Tensor w = tensor({k, n}, random_vec(k * n, 24));
                const Tensor pre = tensor({m, n}, random_vec(m * n, 25));
                Tensor y = filled({m, n}, NAN);
                cpu().activation_forward(act, pre, y);
                Tensor got = filled({m, n}, NAN), want = filled({m, n}, NAN);
                omp_set_num_threads(t);
                cpu().gemm_activation_backward(dy, w, act, pre, y, got);
                cpu().gemm(false, false, 1.0f, dy, w, 0.0f, want);
                cpu().activation_backward(act, pre, y, want, want);
                Tensor packed, got_packed = filled({m, n}, NAN);
                cpu().pack_weight_rows(w, packed);
                if (packed.defined())
                    cpu().gemm_activation_backward(dy, w, act, pre, y, got_packed, &packed);
                omp_set_num_threads(threads);
                expect_equal(values(got), values(want), "gemm_activation_backward");
                if (packed.defined())
                    expect_equal(values(got_packed), values(want), "with packed_w");
            }
    const Tensor dy = filled({4, 2}, 1.0f), w = filled({2, 3}, 1.0f);
    Tensor pre = filled({4, 2}, 1.0f), dx(cpu(), {4, 3});
    cr_assert(throws_internal([&] {
                  cpu().gemm_activation_backward(dy, w, Activation::relu, pre, pre, dx);
              }),
              "pre of another shape than dx must fail");
}

// A layer's packed weight (pack_weight) gives the products exactly what the
// weight itself gives, at every output width the small kernel tiles
// differently (one vector, slabs, a ragged last slab) and with two threads;
// widths and depths it reads in place get nothing packed, and a panel that
// is not b's is refused.
Test(cpu_algebra, packed_weight_products_equal_the_plain_ones) {
    const size_t shapes[][3] = {{256, 64, 64}, {37, 40, 23}, {512, 256, 256},
                                {13, 4, 8},    {300, 65, 9}, {4096, 256, 40}};
    const int threads = omp_get_max_threads();
    for (int t = 1; t <= 2; ++t)
        for (const auto &s : shapes) {
            const size_t m = s[0], k = s[1], n = s[2];
            const Tensor x = tensor({m, k}, random_vec(m * k, 19));
            const Tensor w = tensor({n, k}, random_vec(k * n, 20));
            const Tensor v = tensor({n}, random_vec(n, 21));
            Tensor packed;
            cpu().pack_weight(w, packed);
            cr_assert(packed.defined(), "no packed form for %zu x %zu", n, k);
            Tensor want = filled({m, n}, NAN), got = filled({m, n}, NAN);
            Tensor want_y = filled({m, n}, NAN), got_y = filled({m, n}, NAN);
            omp_set_num_threads(t);
            cpu().gemm_bias(false, true, x, w, v, want);
            cpu().gemm_bias(false, true, x, w, v, got, &packed);
            expect_equal(values(got), values(want), "gemm_bias with packed_b");
            cpu().gemm_bias_activation(false, true, x, w, v, Activation::relu, want, want_y);
            cpu().gemm_bias_activation(false, true, x, w, v, Activation::relu, got, got_y,
                                       &packed);
            omp_set_num_threads(threads);
            expect_equal(values(got_y), values(want_y), "gemm_bias_activation with packed_b");
        }
    const size_t plain[][2] = {{4, 64}, {7, 300}, {64, 3}, {64, 2000}}; // n x k
    for (const auto &s : plain) {
        Tensor packed = filled({1}, 0.0f);
        cpu().pack_weight(tensor({s[0], s[1]}, random_vec(s[0] * s[1], 22)), packed);
        cr_assert(!packed.defined(), "%zu x %zu is read in place: nothing to pack", s[0], s[1]);
    }
    const Tensor x = filled({16, 32}, 1.0f), w = filled({24, 32}, 1.0f), v = filled({24}, 0.0f);
    Tensor other, c(cpu(), {16, 24});
    cpu().pack_weight(filled({16, 32}, 1.0f), other);
    cr_assert(throws_internal([&] { cpu().gemm_bias(false, true, x, w, v, c, &other); }),
              "another weight's panel must fail");
    Tensor packed;
    cpu().pack_weight(w, packed);
    const Tensor wt = filled({32, 24}, 1.0f);
    cr_assert(throws_internal([&] { cpu().gemm_bias(false, false, x, wt, v, c, &packed); }),
              "a panel without trans_b must fail");
}

// pack_weight_rows packs the weights the backward products would copy on
// every call (rows 128 floats or more apart and more than 32 of them, or a
// ragged width) and nothing else; a panel that is not w's is refused.
Test(cpu_algebra, pack_weight_rows_packs_what_the_products_would_copy) {
    const size_t packs[][2] = {{256, 256}, {64, 160}, {40, 23}, {1024, 128}}; // k x n of w
    for (const auto &s : packs) {
        Tensor packed;
        cpu().pack_weight_rows(filled({s[0], s[1]}, 1.0f), packed);
        cr_assert(packed.defined(), "no packed form for %zu x %zu", s[0], s[1]);
    }
    const size_t plain[][2] = {{64, 64}, {256, 120}, {32, 256}, {2000, 256}, {3, 17}, {300, 7}};
    for (const auto &s : plain) {
        Tensor packed = filled({1}, 0.0f);
        cpu().pack_weight_rows(filled({s[0], s[1]}, 1.0f), packed);
        cr_assert(!packed.defined(), "%zu x %zu is read in place: nothing to pack", s[0], s[1]);
    }
    const Tensor dy = filled({8, 64}, 1.0f), w = filled({64, 160}, 1.0f);
    Tensor pre = filled({8, 160}, 1.0f), dx(cpu(), {8, 160}), other;
    cpu().pack_weight_rows(filled({64, 200}, 1.0f), other);
    cr_assert(throws_internal([&] {
                  cpu().gemm_activation_backward(dy, w, Activation::relu, pre, pre, dx, &other);
              }),
              "another weight's panel must fail");
}

Test(cpu_algebra, gemm_empty_inner_dimension_scales_c) {
    Tensor a(cpu(), {2, 0}), b(cpu(), {0, 3}), c = filled({2, 3}, 4.0f);
    cpu().gemm(false, false, 1.0f, a, b, 0.5f, c);
    expect_equal(values(c), Vec(6, 2.0f), "gemm k=0");
}

Test(cpu_algebra, row_vector_ops) {
    const size_t n = 5, d = 3;
    const Vec x = random_vec(n * d, 20), v = random_vec(d, 21), y0 = random_vec(n * d, 22);
    Ref added(n * d), product(n * d), product_acc(n * d), colsum(d, 0.0);
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < d; ++j) {
            const size_t k = i * d + j;
            added[k] = double(x[k]) + v[j];
            product[k] = double(x[k]) * v[j];
            product_acc[k] = y0[k] + product[k];
            colsum[j] += x[k];
        }

    Tensor tx = tensor({n, d}, x), tv = tensor({d}, v);
    cpu().add_row_vector(tx, tv);
    expect_close(values(tx), added, 1e-6, 1e-6, "add_row_vector");

    tx = tensor({n, d}, x);
    Tensor ty = tensor({n, d}, y0);
    cpu().mul_row_vector(tx, tv, ty, false);
    expect_close(values(ty), product, 1e-6, 1e-6, "mul_row_vector");
    ty = tensor({n, d}, y0);
    cpu().mul_row_vector(tx, tv, ty, true);
    expect_close(values(ty), product_acc, 1e-6, 1e-6, "mul_row_vector accumulate");

    Tensor sums = tensor({d}, v);
    cpu().sum_rows(tx, sums, false);
    expect_close(values(sums), colsum, 1e-6, 1e-6, "sum_rows");
    sums = tensor({d}, v);
    cpu().sum_rows(tx, sums, true);
    for (size_t j = 0; j < d; ++j) colsum[j] += v[j];
    expect_close(values(sums), colsum, 1e-6, 1e-6, "sum_rows accumulate");

    Tensor per_row = tensor({n}, Vec(y0.begin(), y0.begin() + n));
    cpu().add_vector_sum(per_row, tv, -2.0f);
    Ref expected(n);
    for (size_t i = 0; i < n; ++i) expected[i] = y0[i] - 2.0 * (double(v[0]) + v[1] + v[2]);
    expect_close(values(per_row), expected, 1e-6, 1e-6, "add_vector_sum");
}

Test(cpu_algebra, elementwise_ops) {
    const Vec x = random_vec(40, 30), y = random_vec(40, 31);
    Ref axpy(40), scaled(40), shifted(40);
    for (size_t k = 0; k < 40; ++k) {
        axpy[k] = y[k] + 0.75 * x[k];
        scaled[k] = -3.0 * x[k];
        shifted[k] = x[k] + 0.25;
    }
    Tensor tx = tensor({8, 5}, x), ty = tensor({8, 5}, y);
    cpu().axpy(0.75f, tx, ty);
    expect_close(values(ty), axpy, 1e-6, 1e-6, "axpy");
    cpu().scale(tx, -3.0f);
    expect_close(values(tx), scaled, 1e-6, 1e-6, "scale");
    tx = tensor({8, 5}, x);
    cpu().add_scalar(tx, 0.25f);
    expect_close(values(tx), shifted, 1e-6, 1e-6, "add_scalar");
}

Test(cpu_algebra, concat_slice_gather) {
    const size_t n = 4;
    const Vec a = random_vec(n * 2, 40), b = random_vec(n * 3, 41);
    Tensor ta = tensor({n, 2}, a), tb = tensor({n, 3}, b), cat(cpu(), {n, 5});
    cpu().concat_cols(ta, tb, cat);
    Vec expected;
    for (size_t i = 0; i < n; ++i) {
        expected.insert(expected.end(), a.begin() + i * 2, a.begin() + i * 2 + 2);
        expected.insert(expected.end(), b.begin() + i * 3, b.begin() + i * 3 + 3);
    }
    expect_equal(values(cat), expected, "concat_cols");

    Tensor back(cpu(), {n, 3});
    cpu().slice_cols(cat, 2, back);
    expect_equal(values(back), b, "slice_cols");
    cr_assert(throws_internal([&] { cpu().slice_cols(cat, 3, back); }), "slice past the end");

    const std::vector<int32_t> index = {4, 0, 0, 2};
    Tensor tidx(cpu(), {4}, DType::i32), gathered(cpu(), {n, 4});
    cpu().upload(tidx, index.data());
    cpu().gather_cols(cat, tidx, gathered);
    Vec want(n * 4);
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < 4; ++j) want[i * 4 + j] = expected[i * 5 + index[j]];
    expect_equal(values(gathered), want, "gather_cols");

    const std::vector<int32_t> bad = {0, 5, 1, 1};
    cpu().upload(tidx, bad.data());
    cr_assert(throws_internal([&] { cpu().gather_cols(cat, tidx, gathered); }), "index 5 of 5");
}

static Tensor index_tensor(const std::vector<int32_t> &index) {
    Tensor t(cpu(), {index.size()}, DType::i32);
    cpu().upload(t, index.data());
    return t;
}

// Sub-matrices by rows, columns and both, and back: scatter overwrites or adds
// at the indexed entries only, reads only the indexed columns' worth of x.
Test(cpu_algebra, gather_scatter_rows_and_cols) {
    const size_t rows = 5, cols = 7;
    const Vec x = random_vec(rows * cols, 42);
    const Tensor tx = tensor({rows, cols}, x);
    const std::vector<int32_t> r = {4, 1, 2}, c = {6, 0, 3, 5};
    const Tensor tr = index_tensor(r), tc = index_tensor(c);
    auto at = [&](size_t i, size_t j) { return x[i * cols + j]; };

    Tensor both(cpu(), {3, 4}), by_rows(cpu(), {3, cols}), by_cols(cpu(), {rows, 4});
    cpu().gather(tx, &tr, &tc, both);
    cpu().gather(tx, &tr, nullptr, by_rows);
    cpu().gather(tx, nullptr, &tc, by_cols);
    Vec want_both, want_rows, want_cols;
    for (size_t i = 0; i < 3; ++i) {
        for (size_t j = 0; j < 4; ++j) want_both.push_back(at(r[i], c[j]));
        for (size_t j = 0; j < cols; ++j) want_rows.push_back(at(r[i], j));
    }
    for (size_t i = 0; i < rows; ++i)
        for (size_t j = 0; j < 4; ++j) want_cols.push_back(at(i, c[j]));
    expect_equal(values(both), want_both, "gather rows and cols");
    expect_equal(values(by_rows), want_rows, "gather rows");
    expect_equal(values(by_cols), want_cols, "gather cols");

    // x [5, 7] into y [5, 8] at 4 columns (x's first 4 columns), then added
    // at rows r of a [6, 7] y.
    const Vec y0 = random_vec(rows * 8, 43);
    Tensor y = tensor({rows, 8}, y0);
    const std::vector<int32_t> wide = {7, 2, 0, 4};
    const Tensor twide = index_tensor(wide);
    cpu().scatter(tx, nullptr, &twide, y, false);
    Vec want = y0;
    for (size_t i = 0; i < rows; ++i)
        for (size_t j = 0; j < 4; ++j) want[i * 8 + wide[j]] = at(i, j);
    expect_equal(values(y), want, "scatter cols");

    const Vec z0 = random_vec(6 * cols, 44);
    Tensor z = tensor({6, cols}, z0);
    cpu().scatter(by_rows, &tr, nullptr, z, true);
    want = z0;
    for (size_t i = 0; i < 3; ++i)
        for (size_t j = 0; j < cols; ++j) want[r[i] * cols + j] += at(r[i], j);
    expect_close(values(z), want, 1e-7, 1e-7, "scatter rows, accumulated");

    const Tensor bad = index_tensor({0, 8, 1, 2});
    cr_assert(throws_internal([&] { cpu().scatter(tx, nullptr, &bad, y, true); }),
              "column 8 of 8");
    cr_assert(throws_internal([&] { cpu().gather(tx, &tc, nullptr, by_rows); }),
              "4 row indices for 3 rows");
}

// Column lists that are runs (step 1 or 2, the coupling masks "half" and
// "alternate"; step -1, a MADE layer's reversed order) take copy, strided
// and reversed paths; lists that break the run at their end, or step by 3,
// must still take the general one.
Test(cpu_algebra, gather_scatter_column_runs) {
    const size_t rows = 67, cols = 40;
    const Vec x = random_vec(rows * cols, 45);
    const Tensor tx = tensor({rows, cols}, x);
    std::vector<std::vector<int32_t>> lists = {
        {5},       {3, 4, 5, 6, 7},  {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21}, {0, 2, 4, 6, 9},
        {0, 1, 3}, {2, 5, 8, 11, 14}, {7, 6, 5}, {9, 8, 7, 6, 5, 4, 3, 2, 1, 0},
        {30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14}, {9, 8, 7, 5}};
    // The whole row reversed: vector iterations, then a tail.
    lists.emplace_back();
    for (int32_t j = int32_t(cols) - 1; j >= 0; --j) lists.back().push_back(j);
    // Every other column of the whole row, both parities: 16-float windows,
    // then a tail that reaches the row's last column.
    for (int32_t first : {0, 1}) {
        lists.emplace_back();
        for (int32_t j = first; j < int32_t(cols); j += 2) lists.back().push_back(j);
    }
    for (bool accumulate : {false, true})
        for (const std::vector<int32_t> &c : lists) {
            const size_t w = c.size();
            const Tensor tc = index_tensor(c);
            Tensor got(cpu(), {rows, w});
            cpu().gather(tx, nullptr, &tc, got);
            Vec want;
            for (size_t i = 0; i < rows; ++i)
                for (size_t j = 0; j < w; ++j) want.push_back(x[i * cols + c[j]]);
            expect_equal(values(got), want, "gather of a column list");

            const Vec y0 = random_vec(rows * cols, 46);
            Tensor y = tensor({rows, cols}, y0);
            cpu().scatter(got, nullptr, &tc, y, accumulate);
            want = y0;
            for (size_t i = 0; i < rows; ++i)
                for (size_t j = 0; j < w; ++j) {
                    float &to = want[i * cols + c[j]];
                    to = accumulate ? to + x[i * cols + c[j]] : x[i * cols + c[j]];
                }
            expect_equal(values(y), want, accumulate ? "scatter-add of a column list"
                                                     : "scatter of a column list");
        }
}

// Step-2 columns: every column of one parity of an even width (32, 30, 8,
// 6: a block of rows as one long row, in windows and a tail), and of an
// odd width (31, 7: row by row, windows and a tail, or the plain loop
// alone), on one block of rows and on several (301 rows), and the
// untouched columns kept bit for bit (a -0 there stays -0; adding 0 would
// make it +0).
Test(cpu_algebra, alternate_columns_keep_the_others_exactly) {
    const size_t shapes[][2] = {{5, 32},  {5, 30},  {5, 8},  {5, 6},  {5, 31},
                                {5, 7},   {301, 8}, {301, 30}, {301, 31}}; // rows x cols
    for (const auto &shape : shapes)
        for (int32_t first : {0, 1})
            for (bool accumulate : {false, true}) {
                const size_t rows = shape[0], cols = shape[1];
                std::vector<int32_t> c;
                for (int32_t j = first; j < int32_t(cols); j += 2) c.push_back(j);
                const size_t w = c.size();
                const Tensor tc = index_tensor(c);
                const Vec x = random_vec(rows * w, 47), old = random_vec(rows * cols, 48);
                // The scattered columns start at `old`, the others at -0.
                Vec y0(rows * cols, -0.0f);
                for (size_t k = 0; k < y0.size(); ++k)
                    if ((int32_t(k % cols) - first) % 2 == 0) y0[k] = old[k];
                Tensor y = tensor({rows, cols}, y0);
                cpu().scatter(tensor({rows, w}, x), nullptr, &tc, y, accumulate);
                const Vec got = values(y);
                for (size_t i = 0; i < rows; ++i)
                    for (size_t j = 0; j < cols; ++j) {
                        const float v = got[i * cols + j];
                        if ((int32_t(j) - first) % 2 == 0) {
                            const float want = x[i * w + (j - size_t(first)) / 2];
                            cr_assert(v == (accumulate ? y0[i * cols + j] + want : want),
                                      "(%zu, %zu)", i, j);
                        } else {
                            cr_assert(v == 0.0f && std::signbit(v), "(%zu, %zu) lost its -0", i, j);
                        }
                    }
                Tensor back(cpu(), {rows, w});
                cpu().gather(y, nullptr, &tc, back);
                for (size_t k = 0; k < rows * w; ++k)
                    cr_assert(values(back)[k] == got[(k / w) * cols + size_t(first) + 2 * (k % w)]);
            }
}

// A layer that reads its input columns in place (every other column, a
// run) computes what it computes on them gathered, bit for bit, packed or
// not, at one and two threads, on depths down to the small kernel's
// shallowest and at a partial last tile; lists it cannot read in place
// (reversed, scattered, too shallow) and outputs too narrow for the same
// order of sums are gathered into `gathered`.
Test(cpu_algebra, gemm_on_columns_equals_gather_then_gemm) {
    struct Case {
        size_t rows, cols;
        std::vector<int32_t> index;
        bool in_place;
    };
    auto every_other = [](int32_t first, int32_t end) {
        std::vector<int32_t> c;
        for (int32_t j = first; j < end; j += 2) c.push_back(j);
        return c;
    };
    const Case cases[] = {{256, 64, every_other(0, 64), true},   {256, 64, every_other(1, 64), true},
                          {37, 8, every_other(1, 8), true},      {600, 130, every_other(0, 130), true},
                          {50, 40, {4, 5, 6, 7, 8, 9, 10}, true}, {50, 40, {9, 8, 7, 6, 5, 4}, false},
                          {50, 40, {3, 0, 7, 1, 30}, false},     {50, 40, {1, 3, 5}, false}};
    const int threads = omp_get_max_threads();
    for (int t = 1; t <= 2; ++t)
        for (const Case &c : cases)
            for (size_t n : {64, 24, 5})
                for (bool pack : {false, true}) {
                    const size_t m = c.rows, k = c.index.size();
                    const Tensor x = tensor({m, c.cols}, random_vec(m * c.cols, 23));
                    const Tensor w = tensor({n, k}, random_vec(n * k, 24));
                    const Tensor v = tensor({n}, random_vec(n, 25));
                    const Tensor cols = index_tensor(c.index);
                    Tensor packed;
                    if (pack) cpu().pack_weight(w, packed);
                    const Tensor *pw = if_defined(packed);
                    Tensor want_in(cpu(), {m, k}), want_pre = filled({m, n}, NAN),
                        want_y = filled({m, n}, NAN);
                    Tensor gathered = filled({1}, NAN), pre = filled({m, n}, NAN),
                           y = filled({m, n}, NAN);
                    omp_set_num_threads(t);
                    cpu().gather(x, nullptr, &cols, want_in);
                    cpu().gemm_bias_activation(false, true, want_in, w, v, Activation::relu,
                                               want_pre, want_y, pw);
                    cpu().gemm_bias_activation_cols(x, cols, gathered, w, v, Activation::relu, pre,
                                                    y, pw);
                    omp_set_num_threads(threads);
                    expect_equal(values(pre), values(want_pre), "pre of the columns");
                    expect_equal(values(y), values(want_y), "relu of the columns");
                    // In place, `gathered` is left alone; otherwise it holds the gather.
                    if (c.in_place && n >= 8)
                        cr_assert(gathered.size() == 1 && std::isnan(values(gathered)[0]),
                                  "in place, yet gathered was written");
                    else
                        expect_equal(values(gathered), values(want_in), "gathered columns");
                }
    Tensor x = filled({4, 6}, 1.0f), w = filled({2, 3}, 1.0f), g, pre(cpu(), {4, 2});
    const Tensor out_of_range = index_tensor({0, 2, 6});
    cr_assert(throws_internal([&] {
                  cpu().gemm_bias_activation_cols(x, out_of_range, g, w, filled({2}, 0.0f),
                                                  Activation::relu, pre, pre);
              }),
              "a column past x's must fail");
}

// --- activations ------------------------------------------------------------

static double activation_ref(Activation act, double x) {
    switch (act) {
    case Activation::relu: return x > 0 ? x : 0.0;
    case Activation::leaky_relu: return x > 0 ? x : 0.01 * x;
    case Activation::elu: return x > 0 ? x : std::exp(x) - 1.0;
    case Activation::tanh: return std::tanh(x);
    case Activation::softplus: return x > 30 ? x : std::log(1.0 + std::exp(x));
    }
    return NAN;
}

static const Activation kActivations[] = {Activation::relu, Activation::leaky_relu,
                                          Activation::elu, Activation::tanh,
                                          Activation::softplus};

Test(cpu_activation, forward_matches_reference) {
    Vec x = random_vec(60, 50, -4.0f, 4.0f);
    x.insert(x.end(), {-100.0f, -20.0f, 0.0f, 20.0f, 100.0f, 1e-30f});
    for (Activation act : kActivations) {
        Ref want(x.size());
        for (size_t k = 0; k < x.size(); ++k) want[k] = activation_ref(act, x[k]);
        Tensor tx = tensor({x.size()}, x), ty(cpu(), {x.size()});
        cpu().activation_forward(act, tx, ty);
        expect_close(values(ty), want, 1e-6, 1e-6, "activation_forward");
    }
}

Test(cpu_activation, backward_matches_finite_differences) {
    // Kinks at 0: keep |x| > 0.05 so the 1e-3 step never crosses one.
    Vec x = random_vec(24, 51, 0.05f, 2.0f);
    for (size_t k = 0; k < x.size(); k += 2) x[k] = -x[k];
    const Vec w = random_vec(x.size(), 52);
    for (Activation act : kActivations) {
        const Loss loss = [&](const Vec &at) {
            Tensor y(cpu(), {6, 4});
            cpu().activation_forward(act, tensor({6, 4}, at), y);
            return dot(values(y), w);
        };
        Tensor tx = tensor({6, 4}, x), ty(cpu(), {6, 4}), dy = tensor({6, 4}, w);
        cpu().activation_forward(act, tx, ty);
        cpu().activation_backward(act, tx, ty, dy, dy); // dx aliasing dy is allowed
        expect_grad(values(dy), loss, x, 1e-3f, "activation_backward");
    }
}

// --- reductions -------------------------------------------------------------

Test(cpu_reduction, sum_sum_squares_all_finite) {
    const Vec x = random_vec(100003, 60, -2.0f, 3.0f); // not a multiple of any block size
    double s = 0.0, s2 = 0.0;
    for (float v : x) {
        s += v;
        s2 += double(v) * v;
    }
    Tensor t = tensor({x.size()}, x);
    cr_assert(std::fabs(cpu().sum(t) - s) <= 1e-9 * std::fabs(s) + 1e-9, "sum");
    cr_assert(std::fabs(cpu().sum_squares(t) - s2) <= 1e-9 * s2, "sum_squares");
    cr_assert(cpu().all_finite(t));
    for (float bad : {NAN, INFINITY, -INFINITY}) {
        Vec y = x;
        y[77777] = bad;
        cr_assert_not(cpu().all_finite(tensor({y.size()}, y)), "all_finite missed %g", bad);
    }
}

Test(cpu_reduction, results_do_not_depend_on_thread_count) {
    const size_t n = 4099, d = 37;
    Tensor x = tensor({n, d}, random_vec(n * d, 61, -1.0f, 5.0f));
    // Column sums, batch statistics and the full sum, all in one vector.
    auto run = [&](int threads, double &total) {
        cpu_set_num_threads(threads);
        Tensor col(cpu(), {d}), mean(cpu(), {d}), var(cpu(), {d});
        cpu().sum_rows(x, col, false);
        cpu().batch_norm_stats(x, mean, var);
        total = cpu().sum(x);
        Vec out = values(col);
        for (const Tensor *t : {&mean, &var})
            for (float v : values(*t)) out.push_back(v);
        return out;
    };
    double total_one, total_many;
    const Vec one = run(1, total_one), many = run(4, total_many);
    cpu_set_num_threads(0);
    expect_equal(many, one, "4 threads vs 1");
    cr_assert(total_one == total_many, "sum: %.17g with 1 thread, %.17g with 4", total_one,
              total_many);
}

// --- coupling layers --------------------------------------------------------

// An affine coupling on f free columns: x [n, f], h [n, 2f], scale [f].
struct CouplingCase {
    size_t n, f;
    Vec x, h, scale;
};

static CouplingCase coupling_case(size_t n, size_t f, unsigned seed) {
    return {n, f, random_vec(n * f, seed), random_vec(n * 2 * f, seed + 1, -2.0f, 2.0f),
            random_vec(f, seed + 2, 0.2f, 1.5f)};
}

// The forward's z and logdet, and the backward's dx, dh and dscale for the
// loss weights dz and dl, in double.
struct CouplingRef {
    Ref z, logdet, dx, dh, dscale;
};

static CouplingRef affine_ref(const CouplingCase &c, const Vec &dz, const Vec &dl) {
    const size_t n = c.n, f = c.f;
    CouplingRef r{Ref(n * f), Ref(n, 0.0), Ref(n * f), Ref(n * 2 * f), Ref(f, 0.0)};
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < f; ++j) {
            const size_t k = i * f + j;
            const double th = std::tanh(double(c.h[i * 2 * f + j])), s = c.scale[j] * th;
            const double e = std::exp(s), x = c.x[k];
            r.z[k] = x * e + c.h[i * 2 * f + f + j];
            r.logdet[i] += s;
            r.dx[k] = dz[k] * e;
            const double ds = dz[k] * x * e + dl[i];
            r.dh[i * 2 * f + j] = ds * c.scale[j] * (1.0 - th * th);
            r.dh[i * 2 * f + f + j] = dz[k];
            r.dscale[j] += ds * th;
        }
    return r;
}

// Rows of no free column, of one, of a few (several rows per kernel block,
// the last block partial), of a whole block each, and wider than a block
// (column slices).
Test(cpu_coupling, affine_ops_match_reference) {
    const struct {
        size_t n, f;
    } shapes[] = {{4, 0}, {5, 1}, {3000, 4}, {301, 6}, {37, 200}, {9, 300}, {3, 1300}};
    unsigned seed = 70;
    for (const auto &shape : shapes) {
        const size_t n = shape.n, f = shape.f;
        const CouplingCase c = coupling_case(n, f, seed += 5);
        const Vec dz = random_vec(n * f, seed + 3), dl = random_vec(n, seed + 4);
        CouplingRef r = affine_ref(c, dz, dl);
        const double ld_tol = 1e-5 + 1e-6 * double(f); // a float sum of f log-scales
        Tensor x = tensor({n, f}, c.x), h = tensor({n, 2 * f}, c.h), scale = tensor({f}, c.scale);
        Tensor z(cpu(), {n, f}), ld = filled({n}, 1.0f);
        cpu().affine_coupling_forward(x, h, scale, z, ld);
        expect_close(values(z), r.z, 1e-5, 1e-5, "affine_coupling_forward z");
        for (double &v : r.logdet) v += 1.0; // logdet accumulates
        expect_close(values(ld), r.logdet, ld_tol, 1e-5, "affine_coupling_forward logdet");

        Tensor back(cpu(), {n, f});
        cpu().affine_coupling_inverse(z, h, scale, back, ld);
        expect_close(values(back), c.x, 1e-5, 1e-5, "affine_coupling_inverse round trip");
        expect_close(values(ld), Vec(n, 1.0f), ld_tol, 0, "affine_coupling_inverse logdet");

        Tensor dx(cpu(), {n, f}), dh = filled({n, 2 * f}, NAN), dscale = filled({f}, 0.5f);
        cpu().affine_coupling_backward(x, h, scale, tensor({n, f}, dz), tensor({n}, dl), dx, dh,
                                       dscale);
        expect_close(values(dx), r.dx, 1e-5, 1e-5, "affine_coupling_backward dx");
        expect_close(values(dh), r.dh, 1e-5, 1e-5, "affine_coupling_backward dh");
        for (double &v : r.dscale) v += 0.5; // dscale accumulates
        expect_close(values(dscale), r.dscale, 1e-4, 1e-5, "affine_coupling_backward dscale");
    }
}

Test(cpu_coupling, results_do_not_depend_on_thread_count) {
    const size_t n = 20000, f = 4; // enough work for several threads
    const CouplingCase c = coupling_case(n, f, 95);
    const Tensor x = tensor({n, f}, c.x), h = tensor({n, 2 * f}, c.h), scale = tensor({f}, c.scale);
    const Tensor dz = tensor({n, f}, random_vec(n * f, 96)), dl = tensor({n}, random_vec(n, 97));
    auto run = [&](int threads) {
        cpu_set_num_threads(threads);
        Tensor z(cpu(), {n, f}), ld = filled({n}, 0.0f), dx(cpu(), {n, f}), dh(cpu(), {n, 2 * f});
        Tensor dscale = filled({f}, 0.0f);
        cpu().affine_coupling_forward(x, h, scale, z, ld);
        cpu().affine_coupling_backward(x, h, scale, dz, dl, dx, dh, dscale);
        Vec out;
        for (const Tensor *t : {&z, &ld, &dx, &dh, &dscale})
            for (float v : values(*t)) out.push_back(v);
        return out;
    };
    const Vec one = run(1), many = run(4);
    cpu_set_num_threads(0);
    expect_equal(many, one, "4 threads vs 1");
}

// The inlined exp / tanh / sqrt of the vectorized kernels against libm.
Test(cpu_kernels, approximations_match_libm) {
    double worst_exp = 0, worst_tanh = 0, worst_sqrt = 0, worst_log1p = 0;
    for (int k = -200000; k <= 200000; ++k) {
        const float x = float(k) * 4.3e-4f; // [-86, 86]
        const double e = std::exp(double(x));
        worst_exp = std::max(worst_exp, std::fabs(cpu_kernels::exp_approx(x) - e) / e);
        const float t = float(k) * 1e-4f; // [-20, 20]
        worst_tanh = std::max(worst_tanh,
                              std::fabs(cpu_kernels::tanh_approx(t) - std::tanh(double(t))));
        const float u = float(k + 200000) / 400000.0f * std::ldexp(1.0f, -(std::abs(k) % 30)); // [0, 1]
        worst_log1p = std::max(worst_log1p, std::fabs(cpu_kernels::log1p_unit_approx(u) -
                                                      std::log1p(double(u))) /
                                                std::max(1e-30, std::log1p(double(u))));
        const float v = std::ldexp(1.0f + float(k + 200000) / 400001.0f, k % 60);
        worst_sqrt = std::max(worst_sqrt, std::fabs(cpu_kernels::sqrt_approx(v) -
                                                    std::sqrt(double(v))) / std::sqrt(double(v)));
    }
    cr_assert(worst_exp < 4e-7, "exp: relative error %g", worst_exp);
    cr_assert(worst_tanh < 4e-7, "tanh: absolute error %g", worst_tanh);
    cr_assert(worst_sqrt < 4e-7, "sqrt: relative error %g", worst_sqrt);
    cr_assert(worst_log1p < 4e-7, "log1p: relative error %g", worst_log1p);
    cr_assert_eq(cpu_kernels::sqrt_approx(0.0f), 0.0f);
    cr_assert(std::isnan(cpu_kernels::exp_approx(NAN)) && std::isnan(cpu_kernels::tanh_approx(NAN)));
    cr_assert_eq(cpu_kernels::tanh_approx(100.0f), 1.0f);
    cr_assert_eq(cpu_kernels::tanh_approx(-100.0f), -1.0f);
    cr_assert(cpu_kernels::exp_approx(-200.0f) >= 0.0f && cpu_kernels::exp_approx(-200.0f) < 2e-38f);
    cr_assert(std::isfinite(cpu_kernels::exp_approx(200.0f)));
}

Test(cpu_coupling, affine_backward_matches_finite_differences) {
    const size_t n = 4, f = 5;
    const CouplingCase c = coupling_case(n, f, 80);
    const Vec wz = random_vec(n * f, 81), wld = random_vec(n, 82);
    // The loss sum(wz * z) + sum(wld * logdet) as a function of one input.
    auto loss_of = [&](const Vec &x, const Vec &h, const Vec &scale) {
        Tensor z(cpu(), {n, f}), ld = filled({n}, 0.0f);
        cpu().affine_coupling_forward(tensor({n, f}, x), tensor({n, 2 * f}, h),
                                      tensor({f}, scale), z, ld);
        return dot(values(z), wz) + dot(values(ld), wld);
    };
    Tensor dx(cpu(), {n, f}), dh = filled({n, 2 * f}, NAN), dscale = filled({f}, 0.5f);
    cpu().affine_coupling_backward(tensor({n, f}, c.x), tensor({n, 2 * f}, c.h),
                                   tensor({f}, c.scale), tensor({n, f}, wz), tensor({n}, wld), dx,
                                   dh, dscale);
    expect_grad(values(dx), [&](const Vec &x) { return loss_of(x, c.h, c.scale); }, c.x, 1e-2f,
                "affine dx");
    expect_grad(values(dh), [&](const Vec &h) { return loss_of(c.x, h, c.scale); }, c.h, 1e-2f,
                "affine dh");
    Vec dscale_got = values(dscale);
    for (float &v : dscale_got) v -= 0.5f; // dscale accumulates
    expect_grad(dscale_got, [&](const Vec &s) { return loss_of(c.x, c.h, s); }, c.scale, 1e-2f,
                "affine dscale");
}

Test(cpu_coupling, scale_exp_and_backward) {
    const size_t n = 4, d = 3;
    const Vec x = random_vec(n * d, 100), s = random_vec(d, 101);
    for (float sign : {1.0f, -1.0f}) {
        Tensor y(cpu(), {n, d});
        cpu().scale_exp(tensor({n, d}, x), tensor({d}, s), sign, y);
        Ref want(n * d);
        for (size_t k = 0; k < n * d; ++k) want[k] = x[k] * std::exp(sign * double(s[k % d]));
        expect_close(values(y), want, 1e-6, 1e-6, "scale_exp");
    }

    // Forward with logdet_i += sum(s), as the NICE layer defines it.
    const Vec wz = random_vec(n * d, 102), wld = random_vec(n, 103);
    auto loss_of = [&](const Vec &xv, const Vec &sv) {
        Tensor y(cpu(), {n, d});
        cpu().scale_exp(tensor({n, d}, xv), tensor({d}, sv), 1.0f, y);
        double ld = 0.0;
        for (float v : sv) ld += v;
        double wld_sum = 0.0;
        for (float v : wld) wld_sum += v;
        return dot(values(y), wz) + ld * wld_sum;
    };
    Tensor dx(cpu(), {n, d}), ds = filled({d}, 0.0f);
    cpu().scale_exp_backward(tensor({n, d}, x), tensor({d}, s), tensor({n, d}, wz),
                             tensor({n}, wld), dx, ds);
    expect_grad(values(dx), [&](const Vec &xv) { return loss_of(xv, s); }, x, 1e-2f, "scale_exp dx");
    expect_grad(values(ds), [&](const Vec &sv) { return loss_of(x, sv); }, s, 1e-2f, "scale_exp ds");
}

// --- batch normalization ----------------------------------------------------

struct BatchNormCase {
    size_t n, d;
    Vec x, log_gamma, beta;
    float eps;
};

static BatchNormCase batch_norm_case(size_t n, size_t d, unsigned seed) {
    Vec x = random_vec(n * d, seed, -1.0f, 1.0f);
    for (size_t k = 0; k < x.size(); ++k) x[k] = x[k] * float(1 + k % d) + float(k % d); // varied columns
    return {n, d, x, random_vec(d, seed + 1, -0.5f, 0.5f), random_vec(d, seed + 2), 1e-4f};
}

Test(cpu_batch_norm, stats_forward_inverse_match_reference) {
    const BatchNormCase c = batch_norm_case(7, 3, 110);
    Ref mean(c.d, 0.0), var(c.d, 0.0);
    for (size_t i = 0; i < c.n; ++i)
        for (size_t j = 0; j < c.d; ++j) mean[j] += c.x[i * c.d + j] / double(c.n);
    for (size_t i = 0; i < c.n; ++i)
        for (size_t j = 0; j < c.d; ++j)
            var[j] += std::pow(c.x[i * c.d + j] - mean[j], 2) / double(c.n);
    Tensor x = tensor({c.n, c.d}, c.x), tmean(cpu(), {c.d}), tvar(cpu(), {c.d});
    cpu().batch_norm_stats(x, tmean, tvar);
    expect_close(values(tmean), mean, 1e-6, 1e-6, "batch_norm_stats mean");
    expect_close(values(tvar), var, 1e-6, 1e-6, "batch_norm_stats var");

    Ref z(c.n * c.d), ld(c.n, 0.0);
    double ld_row = 0.0;
    for (size_t j = 0; j < c.d; ++j) ld_row += c.log_gamma[j] - 0.5 * std::log(var[j] + c.eps);
    for (size_t i = 0; i < c.n; ++i) {
        ld[i] = ld_row;
        for (size_t j = 0; j < c.d; ++j)
            z[i * c.d + j] = (c.x[i * c.d + j] - mean[j]) / std::sqrt(var[j] + c.eps) *
                                 std::exp(double(c.log_gamma[j])) + c.beta[j];
    }
    Tensor lg = tensor({c.d}, c.log_gamma), beta = tensor({c.d}, c.beta);
    Tensor tz(cpu(), {c.n, c.d}), tld = filled({c.n}, 0.0f);
    cpu().batch_norm_forward(x, tmean, tvar, lg, beta, c.eps, tz, tld);
    expect_close(values(tz), z, 1e-5, 1e-5, "batch_norm_forward z");
    expect_close(values(tld), ld, 1e-5, 1e-5, "batch_norm_forward logdet");

    Tensor back(cpu(), {c.n, c.d});
    cpu().batch_norm_inverse(tz, tmean, tvar, lg, beta, c.eps, back, tld);
    expect_close(values(back), c.x, 1e-5, 1e-5, "batch_norm_inverse round trip");
    expect_close(values(tld), Vec(c.n, 0.0f), 1e-5, 0, "batch_norm_inverse logdet");
}

// Gradient check of batch_norm_backward; batch_stats: mean and var come from x.
static void check_batch_norm_backward(bool batch_stats) {
    const BatchNormCase c = batch_norm_case(6, 3, 120);
    const Vec fixed_mean = {0.1f, 1.2f, 1.9f}, fixed_var = {0.4f, 1.1f, 2.5f};
    const Vec wz = random_vec(c.n * c.d, 121), wld = random_vec(c.n, 122);
    auto loss_of = [&](const Vec &xv, const Vec &lgv, const Vec &bv) {
        Tensor x = tensor({c.n, c.d}, xv), mean = tensor({c.d}, fixed_mean),
               var = tensor({c.d}, fixed_var);
        if (batch_stats) cpu().batch_norm_stats(x, mean, var);
        Tensor z(cpu(), {c.n, c.d}), ld = filled({c.n}, 0.0f);
        cpu().batch_norm_forward(x, mean, var, tensor({c.d}, lgv), tensor({c.d}, bv), c.eps, z, ld);
        return dot(values(z), wz) + dot(values(ld), wld);
    };
    Tensor x = tensor({c.n, c.d}, c.x), mean = tensor({c.d}, fixed_mean),
           var = tensor({c.d}, fixed_var);
    if (batch_stats) cpu().batch_norm_stats(x, mean, var);
    Tensor dx = filled({c.n, c.d}, NAN), dlg = filled({c.d}, 0.0f), dbeta = filled({c.d}, 0.0f);
    cpu().batch_norm_backward(x, mean, var, tensor({c.d}, c.log_gamma), c.eps, batch_stats,
                              tensor({c.n, c.d}, wz), tensor({c.n}, wld), dx, dlg, dbeta);
    expect_grad(values(dx), [&](const Vec &v) { return loss_of(v, c.log_gamma, c.beta); }, c.x,
                3e-3f, "batch_norm dx");
    expect_grad(values(dlg), [&](const Vec &v) { return loss_of(c.x, v, c.beta); }, c.log_gamma,
                1e-2f, "batch_norm dlog_gamma");
    expect_grad(values(dbeta), [&](const Vec &v) { return loss_of(c.x, c.log_gamma, v); }, c.beta,
                1e-2f, "batch_norm dbeta");
}

Test(cpu_batch_norm, backward_with_batch_stats) { check_batch_norm_backward(true); }
Test(cpu_batch_norm, backward_with_fixed_stats) { check_batch_norm_backward(false); }

Test(cpu_batch_norm, update_running) {
    const Vec mean = {1.0f, -2.0f}, var = {0.5f, 2.0f};
    Tensor rm = tensor({2}, {0.0f, 1.0f}), rv = tensor({2}, {1.0f, 1.0f});
    cpu().batch_norm_update_running(tensor({2}, mean), tensor({2}, var), 0.1f, 5, rm, rv);
    expect_close(values(rm), Ref{0.1, 0.9 - 0.2}, 1e-6, 1e-6, "running mean");
    expect_close(values(rv), Ref{0.9 + 0.1 * 0.5 * 1.25, 0.9 + 0.1 * 2.0 * 1.25}, 1e-6, 1e-6,
                 "running var (unbiased)");
    cpu().batch_norm_update_running(tensor({2}, mean), tensor({2}, var), 1.0f, 1, rm, rv);
    expect_close(values(rv), var, 1e-6, 1e-6, "running var with n = 1");
}

// --- preprocessing ----------------------------------------------------------

Test(cpu_preprocess, dequantize_forward_inverse) {
    const size_t n = 50;
    Vec x(n);
    for (size_t k = 0; k < n; ++k) x[k] = float(k * 37 % 256);
    Tensor tx = tensor({5, 10}, x), ty(cpu(), {5, 10}), back(cpu(), {5, 10});
    cpu().dequantize_forward(tx, 256.0f, 42, 7, 0, ty);
    const Vec y = values(ty);
    Ref want(n);
    for (size_t k = 0; k < n; ++k) {
        const double u = (philox4x32_10(42, 7, k).v[0] >> 8) / 16777216.0;
        want[k] = (x[k] + u) / 256.0;
    }
    expect_close(y, want, 1e-7, 1e-6, "dequantize_forward");
    // Rows 2..4 alone, counted from their first element, draw what they
    // draw in the whole.
    Tensor part(cpu(), {3, 10});
    cpu().dequantize_forward(tx.row_block(2, 3), 256.0f, 42, 7, 20, part);
    expect_equal(values(part), Vec(y.begin() + 20, y.end()), "dequantize_forward of rows 2..4");
    cpu().dequantize_inverse(ty, 256.0f, back);
    expect_equal(values(back), x, "dequantize_inverse");

    Tensor edges = tensor({4}, {-0.5f, 0.0f, 1.0f, 7.0f}), clamped(cpu(), {4});
    cpu().dequantize_inverse(edges, 256.0f, clamped);
    expect_equal(values(clamped), {0.0f, 0.0f, 255.0f, 255.0f}, "dequantize_inverse clamps");
}

Test(cpu_preprocess, logit_forward_inverse) {
    for (float alpha : {0.05f, 0.0f}) {
        Vec x = random_vec(18, 130, 0.0f, 1.0f);
        x[0] = 0.0f; // the ends of [0, 1] must stay finite even with alpha = 0
        x[1] = 1.0f;
        Ref z(x.size()), ld(3, 0.0);
        for (size_t k = 0; k < x.size(); ++k) {
            const double y = std::min(std::max(alpha + (1.0 - 2.0 * alpha) * x[k], 1e-12), 1 - 1e-12);
            z[k] = std::log(y / (1 - y));
            ld[k / 6] += std::log((1 - 2.0 * alpha) / (y * (1 - y)));
        }
        Tensor tx = tensor({3, 6}, x), tz(cpu(), {3, 6}), tld = filled({3}, 0.0f);
        cpu().logit_forward(tx, alpha, tz, tld);
        expect_close(values(tz), z, 1e-5, 1e-5, "logit_forward z");
        expect_close(values(tld), ld, 1e-4, 1e-5, "logit_forward logdet");
        cr_assert(cpu().all_finite(tz) && cpu().all_finite(tld), "logit at the ends");

        Tensor back(cpu(), {3, 6});
        cpu().logit_inverse(tz, alpha, back, tld);
        expect_close(values(back), x, 1e-6, 1e-5, "logit_inverse round trip");
        expect_close(values(tld), Vec(3, 0.0f), 1e-3, 0, "logit_inverse logdet");
    }
    // Large |z|: the inverse's logdet must not overflow.
    Tensor z = tensor({1, 2}, {-200.0f, 200.0f}), x(cpu(), {1, 2}), ld = filled({1}, 0.0f);
    cpu().logit_inverse(z, 0.0f, x, ld);
    expect_close(values(ld), Ref{-400.0}, 1e-3, 1e-6, "logit_inverse logdet at |z| = 200");
}

Test(cpu_preprocess, logit_backward_matches_finite_differences) {
    const float alpha = 0.05f;
    const Vec x = random_vec(12, 140, 0.1f, 0.9f), wz = random_vec(12, 141), wld = random_vec(3, 142);
    const Loss loss = [&](const Vec &xv) {
        Tensor z(cpu(), {3, 4}), ld = filled({3}, 0.0f);
        cpu().logit_forward(tensor({3, 4}, xv), alpha, z, ld);
        return dot(values(z), wz) + dot(values(ld), wld);
    };
    Tensor dx(cpu(), {3, 4});
    cpu().logit_backward(tensor({3, 4}, x), alpha, tensor({3, 4}, wz), tensor({3}, wld), dx);
    expect_grad(values(dx), loss, x, 1e-3f, "logit_backward");
}

// --- base distributions -----------------------------------------------------

// Checks a per-row log density op and its backward.
static void check_log_prob(void (Backend::*forward)(const Tensor &, Tensor &),
                           void (Backend::*backward)(const Tensor &, const Tensor &, Tensor &),
                           double (*log_density)(double), const Vec &z, const char *what) {
    const size_t n = z.size() / 4;
    Ref want(n, 0.0);
    for (size_t k = 0; k < z.size(); ++k) want[k / 4] += log_density(z[k]);
    Tensor out = filled({n}, 123.0f); // overwritten, not accumulated
    (cpu().*forward)(tensor({n, 4}, z), out);
    expect_close(values(out), want, 1e-5, 1e-6, what);

    const Vec w = random_vec(n, 150);
    const Loss loss = [&](const Vec &zv) {
        Tensor lp(cpu(), {n});
        (cpu().*forward)(tensor({n, 4}, zv), lp);
        return dot(values(lp), w);
    };
    Tensor dz(cpu(), {n, 4});
    (cpu().*backward)(tensor({n, 4}, z), tensor({n}, w), dz);
    expect_grad(values(dz), loss, z, 1e-2f, what);
}

static double normal_density_ref(double z) { return -0.5 * z * z - 0.5 * std::log(2 * M_PI); }
static double logistic_density_ref(double z) {
    return z > 0 ? -z - 2 * std::log1p(std::exp(-z)) : z - 2 * std::log1p(std::exp(z));
}

Test(cpu_base, normal_log_prob) {
    check_log_prob(&Backend::normal_log_prob, &Backend::normal_log_prob_backward,
                   normal_density_ref, random_vec(20, 160, -3.0f, 3.0f), "normal_log_prob");
}

Test(cpu_base, logistic_log_prob) {
    Vec z = random_vec(20, 170, -6.0f, 6.0f);
    check_log_prob(&Backend::logistic_log_prob, &Backend::logistic_log_prob_backward,
                   logistic_density_ref, z, "logistic_log_prob");
    // Rows of every width: several short rows per pass, one, and rows wider
    // than the kernel's buffer; and the same result at one and two threads.
    const int threads = omp_get_max_threads();
    for (size_t D : {1, 8, 64, 1000, 2500})
        for (size_t n : {1, 37, 300}) {
            if (n * D > 400000) continue;
            const Vec zz = random_vec(n * D, 171, -8.0f, 8.0f);
            Ref want(n, 0.0);
            for (size_t k = 0; k < zz.size(); ++k) want[k / D] += logistic_density_ref(zz[k]);
            Tensor one = filled({n}, NAN), two = filled({n}, NAN);
            omp_set_num_threads(1);
            cpu().logistic_log_prob(tensor({n, D}, zz), one);
            omp_set_num_threads(2);
            cpu().logistic_log_prob(tensor({n, D}, zz), two);
            omp_set_num_threads(threads);
            expect_close(values(one), want, 1e-6, 1e-6, "logistic_log_prob of wide batches");
            expect_equal(values(two), values(one), "logistic_log_prob at two threads");
        }
    z = {-500.0f, 500.0f, -90.0f, 90.0f};
    Tensor out(cpu(), {1});
    cpu().logistic_log_prob(tensor({1, 4}, z), out);
    expect_close(values(out), Ref{-1180.0}, 1e-3, 1e-6, "logistic_log_prob at large |z|");
}

// --- random numbers ---------------------------------------------------------

Test(cpu_random, philox_known_answers) {
    // Random123's kat_vectors for philox4x32_10. Counter = {index lo, index
    // hi, stream lo, stream hi}, key = {seed lo, seed hi}.
    struct Kat {
        uint64_t seed, stream, index;
        uint32_t out[4];
    } kats[] = {
        {0, 0, 0, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {~0ull, ~0ull, ~0ull, {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {0x299f31d0a4093822ull, 0x0370734413198a2eull, 0x85a308d3243f6a88ull,
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (const Kat &k : kats) {
        const PhiloxBlock b = philox4x32_10(k.seed, k.stream, k.index);
        for (int w = 0; w < 4; ++w)
            cr_assert_eq(b.v[w], k.out[w], "word %d: got %08x, expected %08x", w, b.v[w], k.out[w]);
    }
}

// The normal of element k, recomputed here: normal k % 4 of block k / 4.
static float normal_element(uint64_t seed, uint64_t stream, size_t k) {
    return philox_normal4(philox4x32_10(seed, stream, k / 4)).v[k % 4];
}

// Likewise the logistic draw of element k.
static float logistic_element(uint64_t seed, uint64_t stream, size_t k) {
    return philox_logistic4(philox4x32_10(seed, stream, k / 4)).v[k % 4];
}

Test(cpu_random, fills_use_counter_k_for_element_k) {
    const size_t n = 1000;
    Tensor t(cpu(), {10, 100});
    Vec normal(n);
    Ref uniform(n), logistic(n);
    for (size_t k = 0; k < n; ++k) {
        const PhiloxBlock b = philox4x32_10(9, 3, k);
        normal[k] = normal_element(9, 3, k) * 0.5f;
        uniform[k] = -2.0 + 5.0 * ((b.v[0] >> 8) / 16777216.0);
        // Logistic: word k % 4 of block k / 4, as normals take their blocks.
        const double u = ((philox4x32_10(9, 3, k / 4).v[k % 4] >> 9) + 0.5) / 8388608.0;
        logistic[k] = 2.0 * std::log(u / (1 - u));
        // philox_normal (one normal per block) is normal 0 of the four.
        cr_assert_eq(philox_normal(b), philox_normal4(b).v[0]);
    }
    // Bit for bit: the kernel's float math is compiled without FMAs, and so is
    // this file (baseline x86-64 has none to contract into).
    cpu().fill_normal(t, 9, 3, 0.5f);
    expect_equal(values(t), normal, "fill_normal");
    cpu().fill_uniform(t, 9, 3, -2.0f, 3.0f);
    expect_close(values(t), uniform, 1e-6, 1e-6, "fill_uniform");
    cpu().fill_logistic(t, 9, 3, 2.0f);
    expect_close(values(t), logistic, 1e-5, 1e-5, "fill_logistic");
}

// Element k depends on (seed, stream, k) alone: not on the tensor's size, on
// where a kernel call starts and ends (partial blocks at either end go a
// scalar way, whole blocks a vectorized one), nor on the thread count.
Test(cpu_random, fills_do_not_depend_on_size_split_or_threads) {
    struct Fill {
        const char *name;
        float (*element)(uint64_t, uint64_t, size_t);
        void (Backend::*fill)(Tensor &, uint64_t, uint64_t, float);
        void (*range)(uint64_t, uint64_t, float, float *, size_t, size_t);
    };
    const Fill fills[] = {
        {"fill_normal", normal_element, &Backend::fill_normal, cpu_kernels::normal_range},
        {"fill_logistic", logistic_element, &Backend::fill_logistic, cpu_kernels::logistic_range}};
    const size_t n = (size_t(1) << 17) + 3; // enough chunks to run on threads
    for (const Fill &f : fills) {
        Vec want(n);
        for (size_t k = 0; k < n; ++k) want[k] = f.element(5, 8, k) * 2.0f;
        for (size_t size : {size_t(1), size_t(10), size_t(1001), size_t(4096)}) {
            Tensor t(cpu(), {size});
            (cpu().*f.fill)(t, 5, 8, 2.0f);
            expect_equal(values(t), Vec(want.begin(), want.begin() + size), f.name);
        }
        for (size_t k0 = 0; k0 < 9; ++k0)
            for (size_t k1 = k0; k1 < k0 + 70; ++k1) {
                Vec got(k1, 0.0f);
                f.range(5, 8, 2.0f, got.data(), k0, k1);
                expect_equal(Vec(got.begin() + k0, got.end()),
                             Vec(want.begin() + k0, want.begin() + k1), f.name);
            }
        Tensor t(cpu(), {n});
        for (int threads : {1, 2}) {
            cpu_set_num_threads(threads);
            (cpu().*f.fill)(t, 5, 8, 2.0f);
            expect_equal(values(t), want, f.name);
        }
        cpu_set_num_threads(0);
    }
}

// The logistic draw against double libm for every uniform the sampler can
// give it (2^-24 to 1 - 2^-24): the float ratio u / (1 - u) rounds once,
// then log_cephes. Bound: 1.8e-7 of max(1, |value|), 1.5x the worst seen.
Test(cpu_random, logistic_float_math_matches_libm) {
    double worst = 0;
    for (uint32_t k = 0; k < (1u << 23); ++k) {
        const PhiloxBlock b = {{k << 9, 0, 0, 0}};
        const double u = ((b.v[0] >> 9) + 0.5) / 8388608.0;
        const double ref = std::log(u / (1 - u));
        const float got = philox_logistic4(b).v[0];
        worst = std::max(worst, std::fabs(got - ref) / std::max(1.0, std::fabs(ref)));
    }
    cr_assert(worst < 1.8e-7, "logistic draw: error %.3g", worst);
    cr_log_info("logistic draw: worst error %.3g of max(1, |value|)", worst);
}

// The float log and sin/cos of the normal sampler against double libm on
// every input the sampler can give them: all 2^23 uniforms (from 2^-24 to
// 1 - 2^-24) and all 2^24 angles. Relative bounds, about 1.5x the worst
// error seen: log 1.2e-7 (also near u = 1, where log u is tiny), sin and cos
// 2e-7 (exact at the quarter turns), the normals (products of both and a
// Newton sqrt) 5e-7.
Test(cpu_random, normal_float_math_matches_libm) {
    double worst_log = 0, worst_sin = 0, worst_cos = 0, worst_normal = 0;
    for (uint32_t k = 0; k < (1u << 23); ++k) {
        const float u = philox_uniform_open(k << 9);
        const double ref = std::log(double(u));
        worst_log = std::max(worst_log, std::fabs(log_cephes(u) - ref) / -ref);
    }
    for (uint32_t i = 0; i < (1u << 24); ++i) {
        float s, c;
        sincos_turns24(i, &s, &c);
        if (i % (1u << 22) == 0) { // quarter turns
            const float want_s[4] = {0, 1, 0, -1}, want_c[4] = {1, 0, -1, 0};
            cr_assert(s == want_s[i >> 22] && c == want_c[i >> 22], "sincos(%u): %g %g", i, s, c);
            continue;
        }
        const double a = 2.0 * M_PI * (i / 16777216.0);
        worst_sin = std::max(worst_sin, std::fabs(s - std::sin(a)) / std::fabs(std::sin(a)));
        worst_cos = std::max(worst_cos, std::fabs(c - std::cos(a)) / std::fabs(std::cos(a)));
    }
    for (uint64_t j = 0; j < 100000; ++j) {
        const PhiloxBlock b = philox4x32_10(77, 5, j);
        const PhiloxNormals z = philox_normal4(b);
        for (int p = 0; p < 2; ++p) {
            const double u = ((b.v[2 * p] >> 9) + 0.5) / 8388608.0;
            const double a = 2.0 * M_PI * ((b.v[2 * p + 1] >> 8) / 16777216.0);
            const double r = std::sqrt(-2.0 * std::log(u));
            const double want[2] = {r * std::cos(a), r * std::sin(a)};
            for (int l = 0; l < 2; ++l) // relative, absolute near 0 (r cos(pi / 2) = 1e-16 r)
                worst_normal = std::max(worst_normal, std::fabs(z.v[2 * p + l] - want[l]) /
                                                          std::max(std::fabs(want[l]), 1e-6));
        }
    }
    cr_assert(worst_log < 1.2e-7, "log: relative error %g", worst_log);
    cr_assert(worst_sin < 2e-7, "sin: relative error %g", worst_sin);
    cr_assert(worst_cos < 2e-7, "cos: relative error %g", worst_cos);
    cr_assert(worst_normal < 5e-7, "normals: relative error %g", worst_normal);
}

Test(cpu_random, open_uniform_never_reaches_0_or_1) {
    for (uint32_t bits : {0u, 0xffffffffu, 0xfffffe00u, 0x1ffu}) {
        const float u = philox_uniform_open(bits);
        cr_assert(u > 0.0f && u < 1.0f, "philox_uniform_open(%08x) = %.9g", bits, u);
    }
    cr_assert(philox_uniform(0xffffffffu) < 1.0f);
}

// Mean and variance of t's values.
static void moments(const Tensor &t, double &mean, double &var) {
    const Vec v = values(t);
    mean = var = 0.0;
    for (float x : v) mean += x / double(v.size());
    for (float x : v) var += (x - mean) * (x - mean) / double(v.size());
}

Test(cpu_random, distributions_have_the_right_moments) {
    Tensor t(cpu(), {100000});
    double mean, var;
    cpu().fill_normal(t, 1234, 0, 1.0f);
    moments(t, mean, var);
    cr_assert(std::fabs(mean) < 0.02 && std::fabs(var - 1.0) < 0.03, "normal: mean %g var %g", mean, var);

    cpu().fill_uniform(t, 1234, 1, 2.0f, 4.0f);
    moments(t, mean, var);
    cr_assert(std::fabs(mean - 3.0) < 0.01 && std::fabs(var - 1.0 / 3.0) < 0.01,
              "uniform: mean %g var %g", mean, var);
    const Vec u = values(t);
    for (float x : u) cr_assert(x >= 2.0f && x < 4.0f, "uniform draw %g outside [2, 4)", x);

    cpu().fill_logistic(t, 1234, 2, 1.0f);
    moments(t, mean, var);
    cr_assert(std::fabs(mean) < 0.03 && std::fabs(var - M_PI * M_PI / 3.0) < 0.1,
              "logistic: mean %g var %g", mean, var);
    cr_assert(cpu().all_finite(t));

    Tensor other(cpu(), {100000});
    cpu().fill_normal(other, 1234, 5, 1.0f);
    cpu().fill_normal(t, 1234, 0, 1.0f);
    cr_assert(values(other) != values(t), "streams must differ");
}

// Kolmogorov-Smirnov distance between the sample v (sorted here) and N(0, 1).
static double ks_normal(Vec v) {
    std::sort(v.begin(), v.end());
    const double n = double(v.size());
    double d = 0;
    for (size_t i = 0; i < v.size(); ++i) {
        const double cdf = 0.5 * std::erfc(-v[i] / std::sqrt(2.0));
        d = std::max({d, (i + 1) / n - cdf, cdf - i / n});
    }
    return d;
}

// Chi-square of the pairs (v[2m], v[2m + 1]) over 64 cells that are equally
// likely for two independent N(0, 1): 8 angle sectors times 8 rings of equal
// probability (r^2 of such a pair is exponential with mean 2).
static double chi_square_pairs(const Vec &v) {
    const int sectors = 8, rings = 8;
    std::vector<double> count(sectors * rings, 0.0);
    const size_t pairs = v.size() / 2;
    for (size_t m = 0; m < pairs; ++m) {
        const double x = v[2 * m], y = v[2 * m + 1];
        const double turn = std::atan2(y, x) / (2.0 * M_PI) + 0.5; // [0, 1]
        const double p_ring = 1.0 - std::exp(-0.5 * (x * x + y * y)); // [0, 1)
        const int s = std::min(sectors - 1, int(turn * sectors));
        const int r = std::min(rings - 1, int(p_ring * rings));
        count[s * rings + r] += 1.0;
    }
    const double expected = double(pairs) / (sectors * rings);
    double chi2 = 0;
    for (double c : count) chi2 += (c - expected) * (c - expected) / expected;
    return chi2;
}

// fill_normal's draws against N(0, 1): the marginal by Kolmogorov-Smirnov,
// the Box-Muller pairs (r cos, r sin) jointly by chi-square. Thresholds are
// the 1e-4 upper quantiles under N(0, 1) (KS: 2.2253 / sqrt(n); chi-square
// with 63 degrees of freedom: 113.5); the seed is fixed, so the test is
// deterministic. Each statistic must also reject a plausible bug: a 5% wrong
// scale, and a sign lost in the quadrant logic (sin always >= 0).
Test(cpu_random, normals_pass_kolmogorov_smirnov_and_chi_square) {
    const size_t n = 100000;
    Tensor t(cpu(), {n});
    cpu().fill_normal(t, 2024, 3, 1.0f);
    const Vec z = values(t);
    const double ks_bound = 2.2253 / std::sqrt(double(n)), chi2_bound = 113.5;
    const double ks = ks_normal(z), chi2 = chi_square_pairs(z);
    cr_assert(ks < ks_bound, "KS distance %g >= %g", ks, ks_bound);
    cr_assert(chi2 < chi2_bound, "chi-square of pairs %g >= %g", chi2, chi2_bound);

    Vec wide = z, folded = z;
    for (float &x : wide) x *= 1.05f;
    for (size_t m = 0; m < n / 2; ++m) folded[2 * m + 1] = std::fabs(folded[2 * m + 1]);
    cr_assert(ks_normal(wide) > ks_bound, "KS misses a 5%% scale error");
    cr_assert(chi_square_pairs(folded) > chi2_bound, "chi-square misses a folded sine");
}

// --- optimizers -------------------------------------------------------------

static const Vec kParams = {1.0f, -2.0f, 0.5f};
static const Vec kGrads[3] = {{0.5f, 0.1f, -0.3f}, {-0.2f, 0.4f, 0.3f}, {0.1f, -0.1f, 0.05f}};

// Parameters after each of three steps, printed by torch.optim in PyTorch 1.13
// for kParams and kGrads (the tests' comments give the optimizer's arguments).
using Trajectory = Vec[3];

static void check_adam(float lr, float beta1, float beta2, float eps, float l2, float decay,
                       const Trajectory &want, const char *what) {
    Tensor p = tensor({3}, kParams), m = filled({3}, 0.0f), v = filled({3}, 0.0f);
    for (uint64_t step = 1; step <= 3; ++step) {
        cpu().adam_update(p, tensor({3}, kGrads[step - 1]), m, v, lr, beta1, beta2, eps, l2,
                          decay, step);
        expect_close(values(p), want[step - 1], 1e-6, 1e-6, what);
    }
}

Test(cpu_optim, adam_matches_pytorch) {
    // Adam(lr=0.1, betas=(0.9, 0.999), eps=1e-8)
    check_adam(0.1f, 0.9f, 0.999f, 1e-8f, 0.0f, 0.0f,
               {{0.900000036f, -2.0999999f, 0.599999964f},
                {0.865439475f, -2.18843746f, 0.594736814f},
                {0.827500284f, -2.23980737f, 0.583214104f}},
               "adam");
    // Adam(lr=0.1, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)
    check_adam(0.1f, 0.8f, 0.99f, 1e-6f, 0.1f, 0.0f,
               {{0.900000155f, -1.90000093f, 0.599999607f},
                {0.852232277f, -1.94384372f, 0.571343541f},
                {0.798431575f, -1.90792084f, 0.534303546f}},
               "adam + l2");
    // AdamW(lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)
    check_adam(0.1f, 0.9f, 0.999f, 1e-8f, 0.0f, 0.05f,
               {{0.895000041f, -2.08999991f, 0.597499967f},
                {0.855964482f, -2.16798759f, 0.589249313f},
                {0.813745499f, -2.20851755f, 0.574780345f}},
               "adamw");
}

static void check_sgd(float lr, float momentum, float l2, bool nesterov, const Trajectory &want,
                      const char *what) {
    Tensor p = tensor({3}, kParams), buf = filled({3}, NAN); // unread at the first step
    for (int step = 0; step < 3; ++step) {
        cpu().sgd_update(p, tensor({3}, kGrads[step]), buf, lr, momentum, l2, nesterov, step == 0);
        expect_close(values(p), want[step], 1e-6, 1e-6, what);
    }
}

Test(cpu_optim, sgd_matches_pytorch) {
    // SGD(lr=0.1)
    check_sgd(0.1f, 0.0f, 0.0f, false,
              {{0.949999988f, -2.00999999f, 0.530000031f},
               {0.969999969f, -2.04999995f, 0.5f},
               {0.959999979f, -2.03999996f, 0.495000005f}},
              "sgd");
    // SGD(lr=0.1, momentum=0.9, weight_decay=0.01)
    check_sgd(0.1f, 0.9f, 0.01f, false,
              {{0.949000001f, -2.0079999f, 0.529500008f},
               {0.922151029f, -2.0531919f, 0.525520504f},
               {0.887064755f, -2.08181143f, 0.51641345f}},
              "sgd momentum + l2");
    // SGD(lr=0.1, momentum=0.9, nesterov=True)
    check_sgd(0.1f, 0.9f, 0.0f, true,
              {{0.904999971f, -2.01900005f, 0.556999981f},
               {0.902499974f, -2.10310006f, 0.524299979f},
               {0.863249958f, -2.12379003f, 0.51236999f}},
              "sgd nesterov");
}

// --- planar, radial, mixture of Gaussians (cpu_glow.cpp) ----------------------
//
// Each op against a naive double reference written here; inverses against
// their forward op; backward ops against central finite differences of
// L = sum(wz * z) + sum(wl * logdet) (or sum(wl * log_prob)) in the inputs
// and in the packed parameters.

namespace {

// A flow op family on packed parameters P, for rows of D values.
struct FlowOps {
    size_t D, nparams;
    std::function<void(const Vec &x, const Vec &P, Vec &z, Vec &logdet)> forward;
    std::function<void(const Vec &x, const Vec &P, Ref &z, Ref &logdet)> reference;
    std::function<void(const Vec &z, const Vec &P, Vec &x, Vec &logdet)> inverse;
    std::function<void(const Vec &x, const Vec &P, const Vec &dz, const Vec &dl, Vec &dx,
                       Vec &dP)>
        backward;
};

void check_flow_ops(const FlowOps &f, const Vec &x, const Vec &P, const char *what) {
    const size_t n = x.size() / f.D;
    Vec z, ld;
    Ref zr, ldr;
    f.forward(x, P, z, ld);
    f.reference(x, P, zr, ldr);
    expect_close(z, zr, 1e-5, 1e-5, what);
    expect_close(ld, ldr, 1e-5, 1e-5, what);

    Vec x2, ldi;
    f.inverse(z, P, x2, ldi);
    expect_close(x2, x, 1e-4, 1e-4, what);
    Vec neg(n);
    for (size_t i = 0; i < n; ++i) neg[i] = -ld[i];
    expect_close(ldi, neg, 1e-4, 1e-4, what);

    const Vec wz = random_vec(n * f.D, 301), wl = random_vec(n, 302);
    auto loss_at = [&](const Vec &xv, const Vec &Pv) {
        Vec zz, ll;
        f.forward(xv, Pv, zz, ll);
        return dot(zz, wz) + dot(ll, wl);
    };
    Vec dx, dP;
    f.backward(x, P, wz, wl, dx, dP);
    expect_grad(dx, [&](const Vec &xv) { return loss_at(xv, P); }, x, 1e-3f, what);
    expect_grad(dP, [&](const Vec &Pv) { return loss_at(x, Pv); }, P, 1e-3f, what);
}

double softplus_ref(double a) { return std::log1p(std::exp(a)); }

// P = [w (D), u (D), b]
FlowOps planar_ops(size_t D) {
    FlowOps f;
    f.D = D;
    f.nparams = 2 * D + 1;
    auto split = [D](const Vec &P, Tensor &w, Tensor &u, Tensor &b) {
        w = tensor({D}, Vec(P.begin(), P.begin() + D));
        u = tensor({D}, Vec(P.begin() + D, P.begin() + 2 * D));
        b = tensor({1}, Vec(P.begin() + 2 * D, P.end()));
    };
    f.forward = [=](const Vec &x, const Vec &P, Vec &z, Vec &ld) {
        const size_t n = x.size() / D;
        Tensor w, u, b, zt(cpu(), {n, D}), lt = filled({n}, 0.0f);
        split(P, w, u, b);
        cpu().planar_forward(tensor({n, D}, x), w, u, b, zt, lt);
        z = values(zt);
        ld = values(lt);
    };
    f.reference = [=](const Vec &x, const Vec &P, Ref &z, Ref &ld) {
        const size_t n = x.size() / D;
        double wu = 0, ww = 0;
        for (size_t j = 0; j < D; ++j) {
            wu += double(P[j]) * P[D + j];
            ww += double(P[j]) * P[j];
        }
        Ref uh(D);
        double psi = 0;
        for (size_t j = 0; j < D; ++j) {
            uh[j] = P[D + j] + (-1.0 + softplus_ref(wu) - wu) * P[j] / ww;
            psi += uh[j] * P[j];
        }
        z.assign(n * D, 0.0);
        ld.assign(n, 0.0);
        for (size_t i = 0; i < n; ++i) {
            double a = P[2 * D];
            for (size_t j = 0; j < D; ++j) a += double(P[j]) * x[i * D + j];
            for (size_t j = 0; j < D; ++j) z[i * D + j] = x[i * D + j] + uh[j] * std::tanh(a);
            ld[i] = std::log(std::fabs(1.0 + psi / (std::cosh(a) * std::cosh(a))));
        }
    };
    f.inverse = [=](const Vec &z, const Vec &P, Vec &x, Vec &ld) {
        const size_t n = z.size() / D;
        Tensor w, u, b, xt(cpu(), {n, D}), lt = filled({n}, 0.0f);
        split(P, w, u, b);
        cpu().planar_inverse(tensor({n, D}, z), w, u, b, 1e-10, xt, lt);
        x = values(xt);
        ld = values(lt);
    };
    f.backward = [=](const Vec &x, const Vec &P, const Vec &dz, const Vec &dl, Vec &dx, Vec &dP) {
        const size_t n = x.size() / D;
        Tensor w, u, b, dxt(cpu(), {n, D});
        split(P, w, u, b);
        Tensor dw = filled({D}, 0.0f), du = filled({D}, 0.0f), db = filled({1}, 0.0f);
        cpu().planar_backward(tensor({n, D}, x), w, u, b, tensor({n, D}, dz), tensor({n}, dl), dxt,
                              dw, du, db);
        dx = values(dxt);
        dP = values(dw);
        for (float v : values(du)) dP.push_back(v);
        dP.push_back(values(db)[0]);
    };
    return f;
}

// P = [x0 (D), alpha_raw, beta_raw]
FlowOps radial_ops(size_t D) {
    FlowOps f;
    f.D = D;
    f.nparams = D + 2;
    auto split = [D](const Vec &P, Tensor &x0, Tensor &a, Tensor &b) {
        x0 = tensor({D}, Vec(P.begin(), P.begin() + D));
        a = tensor({1}, {P[D]});
        b = tensor({1}, {P[D + 1]});
    };
    f.forward = [=](const Vec &x, const Vec &P, Vec &z, Vec &ld) {
        const size_t n = x.size() / D;
        Tensor x0, a, b, zt(cpu(), {n, D}), lt = filled({n}, 0.0f);
        split(P, x0, a, b);
        cpu().radial_forward(tensor({n, D}, x), x0, a, b, zt, lt);
        z = values(zt);
        ld = values(lt);
    };
    f.reference = [=](const Vec &x, const Vec &P, Ref &z, Ref &ld) {
        const size_t n = x.size() / D;
        const double alpha = softplus_ref(P[D]), beta = -alpha + softplus_ref(P[D + 1]);
        z.assign(n * D, 0.0);
        ld.assign(n, 0.0);
        for (size_t i = 0; i < n; ++i) {
            double r2 = 0;
            for (size_t j = 0; j < D; ++j) r2 += std::pow(x[i * D + j] - double(P[j]), 2);
            const double r = std::sqrt(r2), h = 1.0 / (alpha + r), hp = -h * h;
            for (size_t j = 0; j < D; ++j) z[i * D + j] = x[i * D + j] + beta * h * (x[i * D + j] - P[j]);
            // the paper's form: (D-1) log(1 + beta h) + log(1 + beta h + beta h' r)
            ld[i] = double(D - 1) * std::log(1 + beta * h) + std::log(1 + beta * h + beta * hp * r);
        }
    };
    f.inverse = [=](const Vec &z, const Vec &P, Vec &x, Vec &ld) {
        const size_t n = z.size() / D;
        Tensor x0, a, b, xt(cpu(), {n, D}), lt = filled({n}, 0.0f);
        split(P, x0, a, b);
        cpu().radial_inverse(tensor({n, D}, z), x0, a, b, xt, lt);
        x = values(xt);
        ld = values(lt);
    };
    f.backward = [=](const Vec &x, const Vec &P, const Vec &dz, const Vec &dl, Vec &dx, Vec &dP) {
        const size_t n = x.size() / D;
        Tensor x0, a, b, dxt(cpu(), {n, D});
        split(P, x0, a, b);
        Tensor dx0 = filled({D}, 0.0f), da = filled({1}, 0.0f), db = filled({1}, 0.0f);
        cpu().radial_backward(tensor({n, D}, x), x0, a, b, tensor({n, D}, dz), tensor({n}, dl), dxt,
                              dx0, da, db);
        dx = values(dxt);
        dP = values(dx0);
        dP.push_back(values(da)[0]);
        dP.push_back(values(db)[0]);
    };
    return f;
}

} // namespace

// Widths below the 8 lanes of the row sums, of lanes and a tail, of lanes
// only; rows in one chunk of the CPU kernels, and (n = 150) in three.
Test(cpu_classic, planar_forward_inverse_backward) {
    for (size_t D : {1, 2, 5, 13}) {
        Vec P = random_vec(2 * D + 1, 310 + (unsigned)D);
        check_flow_ops(planar_ops(D), random_vec(7 * D, 320, -2.0f, 2.0f), P, "planar");
        // w.u very negative: w.u_hat close to -1 (the constraint is active)
        for (size_t j = 0; j < D; ++j) P[D + j] = -2.0f * P[j];
        check_flow_ops(planar_ops(D), random_vec(7 * D, 321, -2.0f, 2.0f), P, "planar (constrained)");
    }
    const size_t D = 16;
    check_flow_ops(planar_ops(D), random_vec(150 * D, 322, -2.0f, 2.0f),
                   random_vec(2 * D + 1, 323, -0.5f, 0.5f), "planar (3 chunks)");
}

Test(cpu_classic, radial_forward_inverse_backward) {
    for (size_t D : {1, 2, 4, 13}) {
        Vec P = random_vec(D + 2, 330 + (unsigned)D);
        check_flow_ops(radial_ops(D), random_vec(7 * D, 340, -2.0f, 2.0f), P, "radial");
        P[D + 1] = -4.0f; // beta near its bound -alpha: contracting
        check_flow_ops(radial_ops(D), random_vec(7 * D, 341, -2.0f, 2.0f), P, "radial (beta ~ -alpha)");
    }
    const size_t D = 16;
    check_flow_ops(radial_ops(D), random_vec(150 * D, 342, -2.0f, 2.0f), random_vec(D + 2, 343),
                   "radial (3 chunks)");
}

// Rows go in fixed chunks and parameter gradients are summed per chunk, then
// the chunks in order: 2 threads give the bits of 1.
Test(cpu_classic, results_do_not_depend_on_thread_count) {
    const size_t n = 3000, D = 13; // many chunks a thread; D not a multiple of 8
    const Vec x = random_vec(n * D, 360, -2.0f, 2.0f), dz = random_vec(n * D, 361);
    const Vec dl = random_vec(n, 362);
    const std::pair<const char *, FlowOps> flows[] = {{"planar", planar_ops(D)},
                                                      {"radial", radial_ops(D)}};
    for (const auto &flow : flows) {
        const FlowOps &f = flow.second; // (a lambda may not capture a structured binding in C++17)
        const Vec P = random_vec(f.nparams, 363);
        auto run = [&](int threads) {
            cpu_set_num_threads(threads);
            Vec z, ld, xi, ldi, dx, dP;
            f.forward(x, P, z, ld);
            f.inverse(z, P, xi, ldi);
            f.backward(x, P, dz, dl, dx, dP);
            Vec out;
            for (const Vec *v : {&z, &ld, &xi, &ldi, &dx, &dP})
                out.insert(out.end(), v->begin(), v->end());
            return out;
        };
        const Vec one = run(1), two = run(2);
        cpu_set_num_threads(0);
        expect_equal(two, one, flow.first);
    }
}

Test(cpu_base, mog_log_prob_and_backward) {
    const size_t n = 9, D = 3, K = 4;
    const Vec z = random_vec(n * D, 350, -2.0f, 2.0f), logits = random_vec(K, 351),
              means = random_vec(K * D, 352), log_scales = random_vec(K * D, 353, -0.5f, 0.5f);
    auto run = [&](const Vec &zv, const Vec &lg, const Vec &mu, const Vec &ls) {
        Tensor out = filled({n}, 123.0f);
        cpu().mog_log_prob(tensor({n, D}, zv), tensor({K}, lg), tensor({K, D}, mu),
                           tensor({K, D}, ls), out);
        return values(out);
    };
    // reference: sum_k pi_k prod_j N(z_j; mu, sigma), summed directly
    Ref want(n);
    double norm = 0;
    for (float l : logits) norm += std::exp(double(l));
    for (size_t i = 0; i < n; ++i) {
        double p = 0;
        for (size_t k = 0; k < K; ++k) {
            double c = std::exp(double(logits[k])) / norm;
            for (size_t j = 0; j < D; ++j) {
                const double s = std::exp(double(log_scales[k * D + j]));
                const double d = (z[i * D + j] - means[k * D + j]) / s;
                c *= std::exp(-0.5 * d * d) / (s * std::sqrt(2 * M_PI));
            }
            p += c;
        }
        want[i] = std::log(p);
    }
    expect_close(run(z, logits, means, log_scales), want, 1e-5, 1e-5, "mog_log_prob");

    const Vec w = random_vec(n, 354);
    Tensor dz(cpu(), {n, D});
    Tensor dl = filled({K}, 0.0f), dm = filled({K, D}, 0.0f), ds = filled({K, D}, 0.0f);
    cpu().mog_log_prob_backward(tensor({n, D}, z), tensor({K}, logits), tensor({K, D}, means),
                                tensor({K, D}, log_scales), tensor({n}, w), dz, dl, dm, ds);
    expect_grad(values(dz), [&](const Vec &v) { return dot(run(v, logits, means, log_scales), w); }, z,
                1e-3f, "mog dz");
    expect_grad(values(dl), [&](const Vec &v) { return dot(run(z, v, means, log_scales), w); }, logits,
                1e-3f, "mog dlogits");
    expect_grad(values(dm), [&](const Vec &v) { return dot(run(z, logits, v, log_scales), w); }, means,
                1e-3f, "mog dmeans");
    expect_grad(values(ds), [&](const Vec &v) { return dot(run(z, logits, means, v), w); }, log_scales,
                1e-3f, "mog dlog_scales");
}

Test(cpu_base, mog_sample_moments) {
    // one component: z = mean + T * sigma * N(0, 1), the normal of counter k
    const size_t n = 64, D = 2;
    Tensor z(cpu(), {n, D});
    cpu().mog_sample(z, tensor({1}, {0.3f}), tensor({1, D}, {1.0f, -2.0f}),
                     tensor({1, D}, {std::log(0.5f), 0.0f}), 7, 11, 0.5f);
    Ref want(n * D);
    for (size_t k = 0; k < n * D; ++k)
        want[k] = (k % 2 ? -2.0 : 1.0) +
                  0.5 * (k % 2 ? 1.0 : 0.5) * philox_normal(philox4x32_10(7, 11, k));
    expect_close(values(z), want, 1e-5, 1e-5, "mog_sample");
}

// --- autoregressive flows (MADE / MAF / IAF) --------------------------------

Test(cpu_autoregressive, mul_elementwise_and_accumulate) {
    const Vec a = random_vec(12, 61), b = random_vec(12, 62);
    Tensor y = filled({3, 4}, 0.0f);
    cpu().mul_elementwise(tensor({3, 4}, a), tensor({3, 4}, b), y, false);
    Ref want(12);
    for (size_t k = 0; k < 12; ++k) want[k] = double(a[k]) * b[k];
    expect_close(values(y), want, 1e-7, 1e-6, "mul_elementwise");
    cpu().mul_elementwise(tensor({3, 4}, a), tensor({3, 4}, b), y, true);
    for (double &w : want) w *= 2.0;
    expect_close(values(y), want, 1e-7, 1e-6, "mul_elementwise accumulate");
    // y may alias a
    Tensor ya = tensor({3, 4}, a);
    cpu().mul_elementwise(ya, tensor({3, 4}, b), ya, false);
    for (double &w : want) w *= 0.5;
    expect_close(values(ya), want, 1e-7, 1e-6, "mul_elementwise in place");
}

Test(cpu_autoregressive, made_affine_forward_inverse_match_reference) {
    const size_t n = 5, D = 3;
    const Vec x = random_vec(n * D, 71, -2.0f, 2.0f), h = random_vec(n * 2 * D, 72, -1.5f, 1.5f);
    Tensor z(cpu(), {n, D}), xb(cpu(), {n, D}), ld = filled({n}, 0.5f), ldi = filled({n}, 0.0f);
    cpu().made_affine_forward(tensor({n, D}, x), tensor({n, 2 * D}, h), z, ld);
    Ref zr(n * D), lr(n);
    for (size_t i = 0; i < n; ++i) {
        lr[i] = 0.5;
        for (size_t j = 0; j < D; ++j) {
            const double mu = h[i * 2 * D + j], al = h[i * 2 * D + D + j];
            zr[i * D + j] = (x[i * D + j] - mu) * std::exp(-al);
            lr[i] -= al;
        }
    }
    expect_close(values(z), zr, 1e-6, 1e-5, "made_affine_forward z");
    expect_close(values(ld), lr, 1e-6, 1e-5, "made_affine_forward logdet");
    cpu().made_affine_inverse(z, tensor({n, 2 * D}, h), xb, &ldi);
    expect_close(values(xb), Ref(x.begin(), x.end()), 1e-5, 1e-5, "made_affine_inverse x");
    for (size_t i = 0; i < n; ++i) lr[i] = 0.5 - lr[i];
    expect_close(values(ldi), lr, 1e-6, 1e-5, "made_affine_inverse logdet");
    // column: only that column is written, the log-det still sums every alpha
    Tensor xc = filled({n, D}, 7.0f);
    cpu().made_affine_inverse(z, tensor({n, 2 * D}, h), xc, nullptr, 1);
    const Vec got = values(xc);
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < D; ++j)
            cr_assert(j == 1 ? std::fabs(got[i * D + j] - x[i * D + j]) < 1e-5 : got[i * D + j] == 7.0f,
                      "made_affine_inverse column: [%zu, %zu] = %g", i, j, got[i * D + j]);
    cr_assert(throws_internal([&] { cpu().made_affine_inverse(z, tensor({n, 2 * D}, h), xc, nullptr, 3); }));
    cr_assert(throws_internal([&] { cpu().made_affine_forward(z, tensor({n, D}, Vec(n * D)), xc, ld); }));
}

Test(cpu_autoregressive, made_affine_backward_matches_finite_differences) {
    const size_t n = 4, D = 3;
    const Vec x = random_vec(n * D, 81, -2.0f, 2.0f), h = random_vec(n * 2 * D, 82, -1.0f, 1.0f);
    const Vec wz = random_vec(n * D, 83), wl = random_vec(n, 84);
    // loss = sum wz * z + sum wl * logdet
    auto loss = [&](const Vec &xv, const Vec &hv) {
        Tensor z(cpu(), {n, D}), ld = filled({n}, 0.0f);
        cpu().made_affine_forward(tensor({n, D}, xv), tensor({n, 2 * D}, hv), z, ld);
        return dot(values(z), wz) + dot(values(ld), wl);
    };
    Tensor dx(cpu(), {n, D}), dh(cpu(), {n, 2 * D});
    const Tensor dl = tensor({n}, wl);
    cpu().made_affine_backward(tensor({n, D}, x), tensor({n, 2 * D}, h), tensor({n, D}, wz), &dl, dx,
                               dh);
    expect_grad(values(dx), [&](const Vec &v) { return loss(v, h); }, x, 1e-3f, "made_affine dx");
    expect_grad(values(dh), [&](const Vec &v) { return loss(x, v); }, h, 1e-3f, "made_affine dh");
    // dlogdet nullable = 0
    cpu().made_affine_backward(tensor({n, D}, x), tensor({n, 2 * D}, h), tensor({n, D}, wz), nullptr,
                               dx, dh);
    auto loss0 = [&](const Vec &hv) {
        Tensor z(cpu(), {n, D}), ld = filled({n}, 0.0f);
        cpu().made_affine_forward(tensor({n, D}, x), tensor({n, 2 * D}, hv), z, ld);
        return dot(values(z), wz);
    };
    expect_grad(values(dh), loss0, h, 1e-3f, "made_affine dh without dlogdet");
}

// --- MADE mixture-of-Gaussians base (MADE MoG, MAF MoG) ----------------------

// out[i] = sum_d log sum_c softmax_c N(z; mean, sigma^2), summed directly.
static Ref made_mog_ref(const Vec &z, const Vec &h, size_t n, size_t D, size_t C) {
    Ref out(n, 0.0);
    for (size_t i = 0; i < n; ++i) {
        const float *hi = h.data() + i * 3 * C * D;
        for (size_t d = 0; d < D; ++d) {
            double norm = 0, p = 0;
            for (size_t c = 0; c < C; ++c) norm += std::exp(double(hi[c * D + d]));
            for (size_t c = 0; c < C; ++c) {
                const double s = std::exp(double(hi[(2 * C + c) * D + d]));
                const double u = (z[i * D + d] - hi[(C + c) * D + d]) / s;
                p += std::exp(double(hi[c * D + d])) / norm * std::exp(-0.5 * u * u) /
                     (s * std::sqrt(2 * M_PI));
            }
            out[i] += std::log(p);
        }
    }
    return out;
}

Test(cpu_made_mog, log_prob_and_backward_match_reference) {
    const size_t n = 6, D = 3, C = 4;
    const Vec z = random_vec(n * D, 401, -2.0f, 2.0f), h = random_vec(n * 3 * C * D, 402, -1.0f, 1.0f);
    auto run = [&](const Vec &zv, const Vec &hv) {
        Tensor out = filled({n}, 123.0f);
        cpu().made_mog_log_prob(tensor({n, D}, zv), tensor({n, 3 * C * D}, hv), out);
        return values(out);
    };
    expect_close(run(z, h), made_mog_ref(z, h, n, D, C), 1e-5, 1e-5, "made_mog_log_prob");
    // one component: a Gaussian per dimension, the logits do not matter
    const Vec h1 = random_vec(n * 3 * D, 403, -1.0f, 1.0f);
    Tensor out1 = filled({n}, 0.0f);
    cpu().made_mog_log_prob(tensor({n, D}, z), tensor({n, 3 * D}, h1), out1);
    expect_close(values(out1), made_mog_ref(z, h1, n, D, 1), 1e-5, 1e-5, "made_mog_log_prob C=1");

    const Vec w = random_vec(n, 404);
    Tensor dz = filled({n, D}, 9.0f), dh = filled({n, 3 * C * D}, 9.0f);
    cpu().made_mog_log_prob_backward(tensor({n, D}, z), tensor({n, 3 * C * D}, h), tensor({n}, w), dz,
                                     dh, nullptr);
    expect_grad(values(dz), [&](const Vec &v) { return dot(run(v, h), w); }, z, 1e-3f, "made_mog dz");
    expect_grad(values(dh), [&](const Vec &v) { return dot(run(z, v), w); }, h, 1e-3f, "made_mog dh");
    cr_assert(throws_internal([&] {
        Tensor o = filled({n}, 0.0f);
        cpu().made_mog_log_prob(tensor({n, D}, z), tensor({n, 2 * D}, Vec(n * 2 * D)), o);
    }));
}

// The float kernels take rows in chunks of 64 dimensions, a vector of
// dimensions at a time: rows of several chunks and ragged ones, one and many
// components, against the direct double sum for the density and the double
// math of made_mog_math.h (the CUDA backend's) for the gradients. The values
// are far apart: logits in [-30, 30], scales from e^-4 to e^3, so that
// components differ by many orders of magnitude.
Test(cpu_made_mog, wide_rows_and_far_apart_components_match_the_double_math) {
    const struct {
        size_t D, C;
    } shapes[] = {{7, 10}, {150, 10}, {65, 3}, {64, 1}, {9, 40}};
    const size_t n = 5;
    for (auto [D, C] : shapes) {
        const unsigned seed = unsigned(D * 100 + C);
        const Vec z = random_vec(n * D, seed, -4.0f, 4.0f);
        Vec h = random_vec(n * 3 * C * D, seed + 1, -3.0f, 3.0f);
        for (size_t i = 0; i < n; ++i)
            for (size_t k = 0; k < C * D; ++k) {
                float *row = h.data() + i * 3 * C * D;
                row[k] *= 10.0f;                                            // logits
                row[2 * C * D + k] = -0.5f + 7.0f / 6.0f * row[2 * C * D + k]; // log-scales
            }
        Tensor out = filled({n}, 123.0f);
        cpu().made_mog_log_prob(tensor({n, D}, z), tensor({n, 3 * C * D}, h), out);
        char what[64];
        std::snprintf(what, sizeof what, "made_mog_log_prob D=%zu C=%zu", D, C);
        expect_close(values(out), made_mog_ref(z, h, n, D, C), 1e-4, 1e-5, what);

        const Vec g = random_vec(n, seed + 2);
        // The density made along with the gradient is made_mog_log_prob's, bit for bit.
        Tensor dz = filled({n, D}, 9.0f), dh = filled({n, 3 * C * D}, 9.0f);
        Tensor along = filled({n}, 123.0f);
        cpu().made_mog_log_prob_backward(tensor({n, D}, z), tensor({n, 3 * C * D}, h),
                                         tensor({n}, g), dz, dh, &along);
        std::snprintf(what, sizeof what, "made_mog out along D=%zu C=%zu", D, C);
        cr_assert(values(along) == values(out), "%s differs from made_mog_log_prob", what);
        Vec want_dh(n * 3 * C * D);
        Ref want_dz(n * D);
        for (size_t i = 0; i < n; ++i)
            for (size_t d = 0; d < D; ++d) {
                const MogDim m{h.data() + i * 3 * C * D, C, D, d};
                want_dz[i * D + d] = m.backward(z[i * D + d], g[i], want_dh.data() + i * 3 * C * D);
            }
        std::snprintf(what, sizeof what, "made_mog dz D=%zu C=%zu", D, C);
        expect_close(values(dz), want_dz, 1e-5, 1e-4, what);
        std::snprintf(what, sizeof what, "made_mog dh D=%zu C=%zu", D, C);
        expect_close(values(dh), want_dh, 1e-5, 1e-4, what);
    }
}

Test(cpu_made_mog, sample_writes_one_column_from_its_philox_block) {
    const size_t n = 400, D = 3, C = 2;
    // component 0 of column 1 has weight sigmoid(1.5); means -3 / 3, scales 0.5 / 2
    Vec h(n * 3 * C * D, 0.0f);
    for (size_t i = 0; i < n; ++i) {
        float *hi = h.data() + i * 3 * C * D;
        hi[0 * D + 1] = 1.5f;
        hi[(C + 0) * D + 1] = -3.0f;
        hi[(C + 1) * D + 1] = 3.0f;
        hi[(2 * C + 0) * D + 1] = std::log(0.5f);
        hi[(2 * C + 1) * D + 1] = std::log(2.0f);
    }
    Tensor z = filled({n, D}, 7.0f);
    cpu().made_mog_sample(z, tensor({n, 3 * C * D}, h), 1, 5, 9, 0.5f, nullptr, 0, 0);
    const Vec zv = values(z);
    const double w0 = 1.0 / (1.0 + std::exp(-1.5));
    for (size_t i = 0; i < n; ++i) {
        cr_assert(zv[i * D] == 7.0f && zv[i * D + 2] == 7.0f, "made_mog_sample wrote another column");
        const PhiloxBlock b = philox4x32_10(5, 9, i * D + 1);
        const bool first = philox_uniform(b.v[2]) < w0;
        const double want = first ? -3.0 + 0.5 * 0.5 * philox_normal(b) : 3.0 + 0.5 * 2.0 * philox_normal(b);
        cr_assert(std::fabs(zv[i * D + 1] - want) < 1e-5, "made_mog_sample row %zu: %g, expected %g", i,
                  zv[i * D + 1], want);
    }
    cr_assert(throws_internal([&] { cpu().made_mog_sample(z, tensor({n, 3 * C * D}, h), 3, 5, 9, 1.0f, nullptr, 0, 0); }));
    // member rows: only the rows of member 1 of 3 (values 1.x; 7.5 clamps to 2)
    Vec member(n);
    for (size_t i = 0; i < n; ++i) member[i] = i % 3 == 0 ? 1.25f : i % 3 == 1 ? 0.5f : 7.5f;
    Tensor zm = filled({n, D}, 7.0f);
    cpu().made_mog_sample(zm, tensor({n, 3 * C * D}, h), 1, 5, 9, 0.5f, nullptr, 0, 0);
    const Vec all = values(zm);
    Tensor zs = filled({n, D}, 7.0f);
    const Tensor mt = tensor({n}, member);
    cpu().made_mog_sample(zs, tensor({n, 3 * C * D}, h), 1, 5, 9, 0.5f, &mt, 3, 1);
    const Vec some = values(zs);
    for (size_t i = 0; i < n; ++i)
        cr_assert(some[i * D + 1] == (i % 3 == 0 ? all[i * D + 1] : 7.0f), "member row %zu", i);
}

Test(cpu_made_mog, log_mean_exp_and_backward) {
    const size_t K = 3, n = 5;
    const Vec lp = random_vec(K * n, 421, -30.0f, 2.0f), w = random_vec(n, 422);
    auto run = [&](const Vec &v) {
        Tensor out = filled({n}, 0.0f);
        cpu().log_mean_exp(tensor({K, n}, v), out);
        return values(out);
    };
    Ref want(n);
    for (size_t i = 0; i < n; ++i) {
        double s = 0;
        for (size_t k = 0; k < K; ++k) s += std::exp(double(lp[k * n + i]));
        want[i] = std::log(s / K);
    }
    const Vec out = run(lp);
    expect_close(out, want, 1e-5, 1e-5, "log_mean_exp");
    Tensor dlp(cpu(), {K, n});
    cpu().log_mean_exp_backward(tensor({K, n}, lp), tensor({n}, out), tensor({n}, w), dlp);
    expect_grad(values(dlp), [&](const Vec &v) { return dot(run(v), w); }, lp, 1e-3f, "log_mean_exp dlp");
}

// The MADE MoG base's conditioner (a MadeNet with 3C outputs per dimension
// and a context, as model/base_distribution.cpp builds it): every output
// block of dimension d is bit-identical when an input of the same or a later
// rank in the order moves, and the context reaches every output.
Test(cpu_made_mog, conditioner_is_causal_in_every_block) {
    const size_t D = 5, C = 3, n = 4, ctx = 2;
    const std::vector<int> order = {2, 0, 3, 1, 4};
    int rank[D];
    for (size_t k = 0; k < D; ++k) rank[order[k]] = (int)k;
    MadeConfig config;
    config.order = order;
    config.hidden = {12, 12};
    config.activation = Activation::tanh;
    config.context_dim = ctx;
    config.mask_seed = 3;
    config.blocks = 3 * C;
    ParamArena params(true);
    MadeNet net(cpu(), params, "base.made", config);
    params.allocate(cpu(), 17);
    cpu().upload(params.values(), random_vec(params.count(), 411).data()); // no zero layer
    const Vec x = random_vec(n * D, 412, -2.0f, 2.0f), c = random_vec(n * ctx, 413);
    auto run = [&](const Vec &xv, const Vec &cv) {
        return values(net.forward(params, tensor({n, D}, xv), tensor({n, ctx}, cv)));
    };
    const Vec h = run(x, c);
    size_t violations = 0, moved = 0;
    for (size_t j = 0; j < D; ++j) {
        Vec x2 = x;
        for (size_t i = 0; i < n; ++i) x2[i * D + j] += 0.75f;
        const Vec h2 = run(x2, c);
        for (size_t i = 0; i < n; ++i)
            for (size_t b = 0; b < 3 * C; ++b)
                for (size_t d = 0; d < D; ++d) {
                    const size_t k = i * 3 * C * D + b * D + d;
                    if (rank[j] >= rank[d]) violations += h2[k] != h[k];
                    else moved += h2[k] != h[k];
                }
    }
    cr_assert_eq(violations, 0u, "%zu outputs see an input of the same or a later rank", violations);
    cr_assert_gt(moved, 0u, "no output depends on an earlier input");
    Vec c2 = c;
    for (float &v : c2) v += 0.5f;
    const Vec hc = run(x, c2);
    size_t unchanged = 0;
    for (size_t k = 0; k < h.size(); ++k) unchanged += hc[k] == h[k];
    cr_assert_eq(unchanged, 0u, "%zu outputs ignore the context", unchanged);
}
