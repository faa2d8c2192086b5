// CPU-vs-CUDA parity of the dense algebra (cuda_dense.cu) and the autoregressive
// ops (cuda_autoregressive.cu); see cuda_parity.h for how the suite runs and skips.
#include "cuda_parity.h"

#include <functional>
#include <limits>

using namespace parity;
using flow::Activation;

namespace {

// Elementwise float arithmetic: the GPU may fuse a * b + c, so a few ulp.
constexpr double kArith = 1e-6;
// Ops through exp / tanh / log1p: the CPU's polynomials vs the device's libm.
constexpr double kTranscendental = 1e-5;
// Sums returned to the host in double: the same terms in a near-same order.
constexpr double kHostSum = 1e-12;

// Matrix shapes: one row, odd column counts, and more rows than one
// partial sum of a column reduction (64) covers.
const std::vector<std::vector<size_t>> kShapes = {{1, 7}, {37, 5}, {300, 64}};

// f(backend, member) runs the op on one backend, with `pair.*member` its tensors.
template <class F> void on_both(F f) {
    f(cpu(), &Pair::cpu);
    f(gpu(), &Pair::gpu);
}

using Side = Tensor Pair::*;

std::string label(const char *op, const std::vector<size_t> &shape, const char *extra = "") {
    return std::string(op) + " [" + std::to_string(shape[0]) + ", " + std::to_string(shape[1]) +
           "]" + extra;
}

const Activation kActivations[] = {Activation::relu, Activation::leaky_relu, Activation::elu,
                                   Activation::tanh, Activation::softplus};
const char *const kActivationNames[] = {"relu", "leaky_relu", "elu", "tanh", "softplus"};

} // namespace

// --- row / column algebra ----------------------------------------------------------

Test(cuda_dense, add_row_vector) {
    unsigned seed = 100;
    for (const auto &shape : kShapes) {
        Pair y = random_pair(shape, ++seed), v = random_pair({shape[1]}, ++seed);
        on_both([&](Backend &b, Side s) { b.add_row_vector(y.*s, v.*s); });
        expect_close(y, kArith, label("add_row_vector", shape).c_str());
    }
}

Test(cuda_dense, sum_rows_overwrites_and_accumulates) {
    unsigned seed = 200;
    for (const auto &shape : kShapes)
        for (bool accumulate : {false, true}) {
            Pair x = random_pair(shape, ++seed), out = random_pair({shape[1]}, ++seed);
            on_both([&](Backend &b, Side s) { b.sum_rows(x.*s, out.*s, accumulate); });
            expect_close(out, kArith,
                         label("sum_rows", shape, accumulate ? " accumulate" : "").c_str());
        }
}

Test(cuda_dense, mul_row_vector_overwrites_and_accumulates) {
    unsigned seed = 300;
    for (const auto &shape : kShapes)
        for (bool accumulate : {false, true}) {
            Pair x = random_pair(shape, ++seed), v = random_pair({shape[1]}, ++seed);
            Pair y = random_pair(shape, ++seed);
            on_both([&](Backend &b, Side s) { b.mul_row_vector(x.*s, v.*s, y.*s, accumulate); });
            expect_close(y, kArith,
                         label("mul_row_vector", shape, accumulate ? " accumulate" : "").c_str());
        }
}

Test(cuda_dense, axpy_scale_add_scalar) {
    unsigned seed = 400;
    for (const auto &shape : kShapes) {
        Pair x = random_pair(shape, ++seed), y = random_pair(shape, ++seed);
        on_both([&](Backend &b, Side s) { b.axpy(-0.75f, x.*s, y.*s); });
        expect_close(y, kArith, label("axpy", shape).c_str());
        on_both([&](Backend &b, Side s) { b.scale(y.*s, 1.5f); });
        expect_close(y, kArith, label("scale", shape).c_str());
        on_both([&](Backend &b, Side s) { b.add_scalar(y.*s, -0.3f); });
        expect_close(y, kArith, label("add_scalar", shape).c_str());
    }
}

Test(cuda_dense, concat_slice_gather_cols) {
    unsigned seed = 500;
    for (size_t rows : {1, 37}) {
        Pair a = random_pair({rows, 3}, ++seed), b = random_pair({rows, 6}, ++seed);
        Pair ab = random_pair({rows, 9}, ++seed);
        on_both([&](Backend &be, Side s) { be.concat_cols(a.*s, b.*s, ab.*s); });
        cr_expect(values(ab.gpu) == values(ab.cpu), "concat_cols rows %zu", rows);

        // (begin, columns): all of x, a middle piece, the last column.
        for (const auto &[begin, cols] : {std::pair<size_t, size_t>{0, 9}, {2, 4}, {8, 1}}) {
            Pair out = random_pair({rows, cols}, ++seed);
            on_both([&](Backend &be, Side s) { be.slice_cols(ab.*s, begin, out.*s); });
            cr_expect(values(out.gpu) == values(out.cpu), "slice_cols rows %zu begin %zu", rows,
                      begin);
        }

        // A permutation with repeats, as many columns as x has or fewer.
        Pair index = index_pair({8, 0, 3, 3, 1});
        Pair y = random_pair({rows, 5}, ++seed);
        on_both([&](Backend &be, Side s) { be.gather_cols(ab.*s, index.*s, y.*s); });
        cr_expect(values(y.gpu) == values(y.cpu), "gather_cols rows %zu", rows);
    }
}

// Sub-matrices by rows, columns and both, and back: overwritten and added,
// x wider than the column index (its first columns are scattered).
Test(cuda_dense, gather_scatter_rows_and_cols) {
    unsigned seed = 520;
    for (size_t rows : {1, 37}) {
        Pair x = random_pair({rows, 9}, ++seed);
        std::vector<int32_t> reversed(rows);
        for (size_t i = 0; i < rows; ++i) reversed[i] = int32_t(rows - 1 - i);
        Pair r = index_pair(reversed), c = index_pair({8, 0, 3, 5});
        Pair both = random_pair({rows, 4}, ++seed), by_rows = random_pair({rows, 9}, ++seed);
        on_both([&](Backend &be, Side s) { be.gather(x.*s, &(r.*s), &(c.*s), both.*s); });
        cr_expect(values(both.gpu) == values(both.cpu), "gather rows and cols, rows %zu", rows);
        on_both([&](Backend &be, Side s) { be.gather(x.*s, &(r.*s), nullptr, by_rows.*s); });
        cr_expect(values(by_rows.gpu) == values(by_rows.cpu), "gather rows, rows %zu", rows);

        for (bool accumulate : {false, true}) {
            Pair y = random_pair({rows, 11}, ++seed), z = random_pair({rows, 9}, ++seed);
            Pair wide = index_pair({10, 2, 0, 4});
            on_both([&](Backend &be, Side s) {
                be.scatter(x.*s, nullptr, &(wide.*s), y.*s, accumulate);
                be.scatter(by_rows.*s, &(r.*s), nullptr, z.*s, accumulate);
            });
            expect_close(y, kArith, ("scatter cols, rows " + std::to_string(rows)).c_str());
            expect_close(z, kArith, ("scatter rows, rows " + std::to_string(rows)).c_str());
        }
    }
}

// The GPU cannot check device-resident indices without waiting for the
// stream: an out-of-range column reads as NaN instead of an exception.
Test(cuda_dense, gather_cols_out_of_range_gives_nan_not_a_crash) {
    Pair x = random_pair({4, 3}, 550);
    Pair index = index_pair({1, 3, -1});
    Tensor y(gpu(), {4, 3});
    gpu().gather_cols(x.gpu, index.gpu, y);
    const Vec got = values(y), in = values(x.gpu);
    for (size_t i = 0; i < 4; ++i) {
        cr_expect_eq(got[i * 3], in[i * 3 + 1], "row %zu: the valid column", i);
        cr_expect(std::isnan(got[i * 3 + 1]) && std::isnan(got[i * 3 + 2]), "row %zu", i);
    }
}

Test(cuda_dense, add_vector_sum_both_signs) {
    unsigned seed = 600;
    // 5000 > one 4096-element chunk of the CPU's reduction.
    for (size_t n : {1, 13, 5000})
        for (float sign : {1.0f, -1.0f}) {
            Pair per_row = random_pair({37}, ++seed), v = random_pair({n}, ++seed);
            on_both([&](Backend &b, Side s) { b.add_vector_sum(per_row.*s, v.*s, sign); });
            const std::string what = "add_vector_sum n " + std::to_string(n);
            expect_close(per_row, kArith, what.c_str());
        }
}

// --- activations -------------------------------------------------------------------

Test(cuda_dense, activation_forward_every_kind) {
    unsigned seed = 700;
    for (size_t a = 0; a < 5; ++a)
        for (const auto &shape : kShapes) {
            // Both signs and the saturated ends of tanh / softplus / elu.
            Pair x = random_pair(shape, ++seed, -12.0f, 12.0f), y = random_pair(shape, ++seed);
            on_both([&](Backend &b, Side s) { b.activation_forward(kActivations[a], x.*s, y.*s); });
            expect_close(y, kTranscendental, label(kActivationNames[a], shape).c_str());
        }
}

// dx = dy * act'(x), with y = act(x) from the CPU on both sides; once into a
// separate dx, once in place (dx aliasing dy).
Test(cuda_dense, activation_backward_every_kind_and_in_place) {
    unsigned seed = 800;
    for (size_t a = 0; a < 5; ++a)
        for (const auto &shape : kShapes) {
            const Activation act = kActivations[a];
            const Vec xv = random_vec(flow::shape_size(shape), ++seed, -12.0f, 12.0f);
            Tensor yc(cpu(), shape), xc(cpu(), shape);
            cpu().upload(xc, xv.data());
            cpu().activation_forward(act, xc, yc);
            Pair x = pair(shape, xv), y = pair(shape, values(yc));
            Pair dy = random_pair(shape, ++seed), dx = random_pair(shape, ++seed);
            on_both(
                [&](Backend &b, Side s) { b.activation_backward(act, x.*s, y.*s, dy.*s, dx.*s); });
            expect_close(dx, kTranscendental,
                         label(kActivationNames[a], shape, " backward").c_str());
            on_both(
                [&](Backend &b, Side s) { b.activation_backward(act, x.*s, y.*s, dy.*s, dy.*s); });
            expect_close(dy, kTranscendental,
                         label(kActivationNames[a], shape, " backward in place").c_str());
        }
}

// --- reductions to the host --------------------------------------------------------

Test(cuda_dense, sum_and_sum_squares) {
    unsigned seed = 900;
    // 10007 spans three 4096-element partials.
    for (size_t n : {1, 4095, 10007}) {
        Pair x = random_pair({n}, ++seed, -3.0f, 5.0f);
        const std::string what = " of " + std::to_string(n);
        expect_close(cpu().sum(x.cpu), gpu().sum(x.gpu), kHostSum, ("sum" + what).c_str());
        expect_close(cpu().sum_squares(x.cpu), gpu().sum_squares(x.gpu), kHostSum,
                     ("sum_squares" + what).c_str());
    }
    Tensor empty(gpu(), {0, 4});
    cr_expect_eq(gpu().sum(empty), 0.0);
}

Test(cuda_dense, all_finite_finds_inf_and_nan_anywhere) {
    const size_t n = 10007;
    Vec v = random_vec(n, 950, -1e30f, 1e30f);
    cr_expect(gpu().all_finite(pair({n}, v).gpu), "finite values");
    const float bad[] = {std::numeric_limits<float>::infinity(),
                         -std::numeric_limits<float>::infinity(),
                         std::numeric_limits<float>::quiet_NaN()};
    for (float b : bad)
        for (size_t at : {size_t(0), size_t(4096), n - 1}) {
            Vec w = v;
            w[at] = b;
            Pair p = pair({n}, w);
            cr_expect(!cpu().all_finite(p.cpu), "cpu: %g at %zu", b, at);
            cr_expect(!gpu().all_finite(p.gpu), "cuda: %g at %zu", b, at);
        }
}

// --- autoregressive ----------------------------------------------------------------

Test(cuda_autoregressive, mul_elementwise_accumulates_and_aliases) {
    unsigned seed = 1000;
    for (const auto &shape : kShapes) {
        for (bool accumulate : {false, true}) {
            Pair a = random_pair(shape, ++seed), b = random_pair(shape, ++seed);
            Pair y = random_pair(shape, ++seed);
            on_both([&](Backend &be, Side s) { be.mul_elementwise(a.*s, b.*s, y.*s, accumulate); });
            expect_close(y, kArith,
                         label("mul_elementwise", shape, accumulate ? " accumulate" : "").c_str());
            // y aliasing a, then b.
            on_both([&](Backend &be, Side s) { be.mul_elementwise(a.*s, b.*s, a.*s, accumulate); });
            expect_close(a, kArith, label("mul_elementwise", shape, " y = a").c_str());
            on_both([&](Backend &be, Side s) { be.mul_elementwise(a.*s, b.*s, b.*s, accumulate); });
            expect_close(b, kArith, label("mul_elementwise", shape, " y = b").c_str());
        }
    }
}

Test(cuda_autoregressive, made_affine_forward) {
    unsigned seed = 1100;
    for (const auto &shape : kShapes) {
        const size_t n = shape[0], D = shape[1];
        Pair x = random_pair(shape, ++seed, -3.0f, 3.0f), h = random_pair({n, 2 * D}, ++seed);
        Pair z = random_pair(shape, ++seed), logdet = random_pair({n}, ++seed);
        on_both([&](Backend &b, Side s) { b.made_affine_forward(x.*s, h.*s, z.*s, logdet.*s); });
        expect_close(z, kTranscendental, label("made_affine_forward z", shape).c_str());
        expect_close(logdet, kArith, label("made_affine_forward logdet", shape).c_str());
    }
}

Test(cuda_autoregressive, made_affine_inverse_all_columns) {
    unsigned seed = 1200;
    for (const auto &shape : kShapes)
        for (bool with_logdet : {true, false}) {
            const size_t n = shape[0], D = shape[1];
            Pair z = random_pair(shape, ++seed, -3.0f, 3.0f), h = random_pair({n, 2 * D}, ++seed);
            Pair x = random_pair(shape, ++seed), logdet = random_pair({n}, ++seed);
            on_both([&](Backend &b, Side s) {
                b.made_affine_inverse(z.*s, h.*s, x.*s, with_logdet ? &(logdet.*s) : nullptr);
            });
            expect_close(x, kTranscendental, label("made_affine_inverse x", shape).c_str());
            expect_close(logdet, kArith, label("made_affine_inverse logdet", shape).c_str());
        }
}

// One column at a time: the others keep their (random) values.
Test(cuda_autoregressive, made_affine_inverse_one_column) {
    unsigned seed = 1300;
    for (const auto &shape : kShapes)
        for (bool with_logdet : {true, false}) {
            const size_t n = shape[0], D = shape[1];
            Pair z = random_pair(shape, ++seed, -3.0f, 3.0f), h = random_pair({n, 2 * D}, ++seed);
            Pair x = random_pair(shape, ++seed), logdet = random_pair({n}, ++seed);
            for (long column : {0L, (long)D / 2, (long)D - 1}) {
                on_both([&](Backend &b, Side s) {
                    b.made_affine_inverse(z.*s, h.*s, x.*s, with_logdet ? &(logdet.*s) : nullptr,
                                          column);
                });
                const std::string col = " column " + std::to_string(column);
                expect_close(x, kTranscendental,
                             label("made_affine_inverse x", shape, col.c_str()).c_str());
                expect_close(logdet, kArith,
                             label("made_affine_inverse logdet", shape, col.c_str()).c_str());
            }
        }
}

Test(cuda_autoregressive, made_affine_backward) {
    unsigned seed = 1400;
    for (const auto &shape : kShapes)
        for (bool with_dlogdet : {true, false}) {
            const size_t n = shape[0], D = shape[1];
            Pair x = random_pair(shape, ++seed, -3.0f, 3.0f), h = random_pair({n, 2 * D}, ++seed);
            Pair dz = random_pair(shape, ++seed), dlogdet = random_pair({n}, ++seed);
            Pair dx = random_pair(shape, ++seed), dh = random_pair({n, 2 * D}, ++seed);
            on_both([&](Backend &b, Side s) {
                b.made_affine_backward(x.*s, h.*s, dz.*s, with_dlogdet ? &(dlogdet.*s) : nullptr,
                                       dx.*s, dh.*s);
            });
            const char *extra = with_dlogdet ? "" : " no dlogdet";
            expect_close(dx, kTranscendental,
                         label("made_affine_backward dx", shape, extra).c_str());
            expect_close(dh, kTranscendental,
                         label("made_affine_backward dh", shape, extra).c_str());
        }
}

// --- shape errors ------------------------------------------------------------------

Test(cuda_dense, shape_errors_are_internal_errors) {
    Tensor x(gpu(), {4, 3}), v(gpu(), {5}), out(gpu(), {4, 3}), bad_h(gpu(), {4, 5}),
        h(gpu(), {4, 6}), logdet(gpu(), {4});
    const std::vector<std::pair<const char *, std::function<void()>>> calls = {
        {"add_row_vector", [&] { gpu().add_row_vector(x, v); }},
        {"sum_rows", [&] { gpu().sum_rows(x, v, false); }},
        {"slice_cols", [&] { gpu().slice_cols(x, 2, out); }},
        {"made_affine_forward", [&] { gpu().made_affine_forward(x, bad_h, out, logdet); }},
        {"made_affine_inverse column", [&] { gpu().made_affine_inverse(x, h, out, nullptr, 3); }},
    };
    for (const auto &[name, call] : calls) {
        try {
            call();
            cr_expect_fail("%s accepted a bad shape", name);
        } catch (const flow::Error &e) {
            cr_expect_eq(e.status(), flow::Status::internal, "%s: %s", name, e.what());
        }
    }
}
