// The CPU staircase products (Backend::staircase_*) against a dense masked
// reference in double: prefixes of 0 and of whole rows, staircases across
// and along the panels (16 units, and 32 where the kernel has 16-float
// tiles: both are run there), the output layers of MADE (two rising runs,
// falling runs, no order), one batch row, batches of several row blocks,
// with one thread and two, a forward whose x is narrower than w, weight
// gradients added at permuted rows and columns, the fused activations, the
// forward from a packed weight, and the argument checks. w holds NaN where
// the op must never read it and y and dx start as NaN, so a read past the
// contract or an unwritten element shows.
#include <criterion/criterion.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_small_gemm.h"
#include "core/error.h"

using namespace flow;
using Vec = std::vector<float>;
using Prefix = std::vector<size_t>;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();

Vec random_vec(size_t n, std::mt19937 &gen) {
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    Vec v(n);
    for (float &x : v) x = dist(gen);
    return v;
}

Tensor tensor(std::vector<size_t> shape, const Vec &data) {
    Tensor t(cpu_backend(), shape);
    cpu_backend().upload(t, data.data());
    return t;
}

Vec values(const Tensor &t) {
    Vec v(t.size());
    cpu_backend().download(t, v.data());
    return v;
}

// `units` random values in [lo, hi], sorted when `sorted`.
Prefix random_prefix(size_t units, size_t lo, size_t hi, std::mt19937 &gen,
                     bool sorted = true) {
    std::uniform_int_distribution<size_t> dist(lo, hi);
    Prefix p(units);
    for (size_t &v : p) v = dist(gen);
    if (sorted) std::sort(p.begin(), p.end());
    return p;
}

// Two runs of `half` rising values: a MADE output layer, natural order.
Prefix two_runs(size_t half, size_t hi, std::mt19937 &gen) {
    Prefix p = random_prefix(half, 0, hi, gen);
    p.insert(p.end(), p.begin(), p.end());
    return p;
}

struct Case {
    const char *what;
    size_t rows, inputs;
    Prefix prefix;
    size_t width; // columns of the forward's x (prefix.back() <= width <= inputs)
};

// w [units, inputs]: random on the staircase, 0 past it up to `width`, NaN
// beyond (never read by the forward).
Vec staircase_weight(const Case &c, std::mt19937 &gen) {
    const size_t units = c.prefix.size();
    Vec w = random_vec(units * c.inputs, gen);
    for (size_t u = 0; u < units; ++u)
        for (size_t p = c.prefix[u]; p < c.inputs; ++p)
            w[u * c.inputs + p] = p < c.width ? 0.0f : kNaN;
    return w;
}

// |got - want| within float rounding of a sum of `terms` terms of total
// magnitude mag.
void expect_near(float got, double want, double mag, size_t terms, const char *what,
                 const char *op, size_t i, size_t j) {
    const double tol = 1e-6 * (mag + 1.0) * std::sqrt(double(terms) + 1.0);
    cr_assert(std::fabs(double(got) - want) <= tol, "%s: %s[%zu, %zu] = %.9g, reference %.9g",
              what, op, i, j, got, want);
}

// A random permutation of [0, n).
std::vector<int32_t> permutation(size_t n, std::mt19937 &gen) {
    std::vector<int32_t> p(n);
    for (size_t k = 0; k < n; ++k) p[k] = int32_t(k);
    std::shuffle(p.begin(), p.end(), gen);
    return p;
}

Tensor index_tensor(const std::vector<int32_t> &values) {
    Tensor t(cpu_backend(), {values.size()}, DType::i32);
    cpu_backend().upload(t, values.data());
    return t;
}

// dw starts random and gets the staircase product added at permuted rows
// (or rows in order, `in_order`) and columns.
void check_case(const Case &c, unsigned seed, bool in_order) {
    Backend &be = cpu_backend();
    std::mt19937 gen(seed);
    const size_t n = c.rows, units = c.prefix.size(), in = c.inputs, width = c.width;
    const Vec w = staircase_weight(c, gen);
    const Vec bias = random_vec(units, gen), dy = random_vec(n * units, gen);
    const Vec x = random_vec(n * in, gen), dw0 = random_vec(units * in, gen);
    Vec xw(n * width); // the forward's x: the first `width` columns of x
    for (size_t i = 0; i < n; ++i)
        std::copy_n(x.begin() + i * in, width, xw.begin() + i * width);
    const std::vector<int32_t> rows = permutation(units, gen), cols = permutation(in, gen);

    Tensor tw = tensor({units, in}, w), tb = tensor({units}, bias);
    Tensor tdy = tensor({n, units}, dy), tx = tensor({n, in}, x), txw = tensor({n, width}, xw);
    Tensor ty = tensor({n, units}, Vec(n * units, kNaN));
    Tensor tdx = tensor({n, in}, Vec(n * in, kNaN));
    Tensor tdw = tensor({units, in}, dw0), trows = index_tensor(rows), tcols = index_tensor(cols);
    // Past the staircase w is 0 (or NaN past width): the dx product reads a
    // zeroed copy.
    Vec w0 = w;
    for (float &v : w0)
        if (std::isnan(v)) v = 0.0f;
    Tensor tw0 = tensor({units, in}, w0);
    be.staircase_forward(txw, tw, tb, c.prefix.data(), ty);
    be.staircase_backward_input(tdy, tw0, c.prefix.data(), tdx);
    be.staircase_backward_weight(tdy, tx, c.prefix.data(), in_order ? nullptr : &trows, tcols,
                                 tdw);
    const Vec y = values(ty), dx = values(tdx), dw = values(tdw);

    for (size_t i = 0; i < n; ++i)
        for (size_t u = 0; u < units; ++u) {
            double sum = bias[u], mag = std::fabs(bias[u]);
            for (size_t p = 0; p < c.prefix[u]; ++p) {
                const double t = double(x[i * in + p]) * w[u * in + p];
                sum += t;
                mag += std::fabs(t);
            }
            expect_near(y[i * units + u], sum, mag, c.prefix[u], c.what, "y", i, u);
        }
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < in; ++j) {
            double sum = 0.0, mag = 0.0;
            for (size_t u = 0; u < units; ++u) {
                const double t = double(dy[i * units + u]) * w0[u * in + j];
                sum += t;
                mag += std::fabs(t);
            }
            expect_near(dx[i * in + j], sum, mag, units, c.what, "dx", i, j);
        }
    for (size_t u = 0; u < units; ++u)
        for (size_t p = 0; p < in; ++p) {
            const size_t at = (in_order ? u : size_t(rows[u])) * in + size_t(cols[p]);
            if (p >= c.prefix[u]) {
                cr_assert(dw[at] == dw0[at], "%s: dw[%zu, %zu] changed past the prefix %zu",
                          c.what, u, p, c.prefix[u]);
                continue;
            }
            double sum = dw0[at], mag = std::fabs(dw0[at]);
            for (size_t i = 0; i < n; ++i) {
                const double t = double(dy[i * units + u]) * x[i * in + p];
                sum += t;
                mag += std::fabs(t);
            }
            expect_near(dw[at], sum, mag, n, c.what, "dw", u, p);
        }
}

std::vector<Case> cases() {
    std::mt19937 gen(7);
    std::vector<Case> all;
    auto add = [&](const char *what, size_t rows, size_t inputs, Prefix prefix, size_t width) {
        all.push_back({what, rows, inputs, std::move(prefix), width});
    };
    add("one row", 1, 7, {0, 0, 3, 3, 7}, 7);
    add("all prefixes 0", 5, 9, Prefix(20, 0), 9);
    add("whole rows", 13, 21, Prefix(35, 21), 21);
    add("no units", 4, 6, {}, 6);
    add("no inputs", 4, 0, Prefix(3, 0), 0);
    add("no batch rows", 0, 10, random_prefix(17, 0, 10, gen), 10);
    // Steps on and next to the 16- and 32-unit panel boundaries.
    Prefix steps(72);
    for (size_t u = 0; u < steps.size(); ++u)
        steps[u] = u < 15 ? 1 : u < 16 ? 16 : u < 31 ? 17 : u < 32 ? 30 : u < 33 ? 31 : 40;
    add("steps at panel boundaries", 37, 40, steps, 40);
    add("MADE-like, 33 units", 29, 40, random_prefix(33, 0, 40, gen), 40);
    add("MADE-like, 64 x 64", 256, 64, random_prefix(64, 1, 63, gen), 64);
    add("x narrower than w", 19, 50, random_prefix(40, 0, 30, gen), 33);
    add("odd widths", 23, 13, random_prefix(11, 0, 13, gen), 13);
    add("two rising runs", 31, 40, two_runs(40, 40, gen), 40);
    Prefix falling = two_runs(24, 30, gen);
    std::reverse(falling.begin(), falling.end());
    add("falling runs", 17, 30, falling, 30);
    add("no order", 21, 36, random_prefix(50, 0, 36, gen, false), 36);
    add("row blocks", 1000, 200, random_prefix(40, 100, 200, gen), 200);
    return all;
}

} // namespace

Test(cpu_staircase, products_match_dense_masked_reference) {
    const int threads = omp_get_max_threads();
    unsigned seed = 1;
    for (bool narrow : {false, true})
        for (int t : {1, 2}) {
            cpu_kernels::use_8_float_tiles_only(narrow);
            omp_set_num_threads(t);
            for (const Case &c : cases())
                for (bool in_order : {false, true}) check_case(c, ++seed, in_order);
        }
    cpu_kernels::use_8_float_tiles_only(false);
    omp_set_num_threads(threads);
}

// The fused activations write what the products and the activation ops
// write, to the bit: the forward's, and the backward's through the
// activation of the layer's input (relu and leaky relu gated in the
// product's store, tanh through the pass), with columns no unit reaches
// (prefixes from 0) and several row blocks.
Test(cpu_staircase, activations_match_the_composition) {
    Backend &be = cpu_backend();
    const int threads = omp_get_max_threads();
    std::mt19937 gen(11);
    const Case c = {"activation", 700, 70, random_prefix(90, 0, 60, gen), 70};
    const size_t n = c.rows, units = c.prefix.size();
    Tensor w = tensor({units, c.inputs}, staircase_weight(c, gen));
    Tensor b = tensor({units}, random_vec(units, gen));
    Tensor x = tensor({n, c.inputs}, random_vec(n * c.inputs, gen));
    Tensor dy = tensor({n, units}, random_vec(n * units, gen));
    Tensor pre(be, {n, units}), y(be, {n, units}), pre0(be, {n, units}), y0(be, {n, units});
    Tensor x_act(be, {n, c.inputs}), dx(be, {n, c.inputs}), dx0(be, {n, c.inputs});
    for (int t : {1, 2})
        for (Activation act : {Activation::relu, Activation::leaky_relu, Activation::tanh}) {
            omp_set_num_threads(t);
            be.staircase_forward_activation(x, w, b, c.prefix.data(), act, pre, y);
            be.staircase_forward(x, w, b, c.prefix.data(), pre0);
            be.activation_forward(act, pre0, y0);
            // x as the pre-activation of the layer's input x_act.
            be.activation_forward(act, x, x_act);
            be.fill(dx, kNaN);
            be.staircase_activation_backward(dy, w, c.prefix.data(), act, x, x_act, dx);
            be.staircase_backward_input(dy, w, c.prefix.data(), dx0);
            be.activation_backward(act, x, x_act, dx0, dx0);
            cr_assert(values(pre) == values(pre0), "activation %d, %d threads: pre differs",
                      int(act), t);
            cr_assert(values(y) == values(y0), "activation %d, %d threads: y differs", int(act),
                      t);
            cr_assert(values(dx) == values(dx0), "activation %d, %d threads: dx differs",
                      int(act), t);
        }
    omp_set_num_threads(threads);
}

// With pack_staircase's panel the forward (and the fused activation) writes
// what it writes without, to the bit, for every case and 8-, 24- and
// 40-unit layers (one 8-wide slab; a last band narrower than its slab; a
// band of two slabs, then one of 8 units); and it does read the panel: a
// poisoned one shows in y.
Test(cpu_staircase, packed_forward_equals_the_plain_one) {
    Backend &be = cpu_backend();
    const int threads = omp_get_max_threads();
    std::mt19937 gen(13);
    std::vector<Case> all = cases();
    all.push_back({"8 units", 9, 12, random_prefix(8, 0, 12, gen), 12});
    all.push_back({"24 units", 9, 30, random_prefix(24, 0, 30, gen), 30});
    all.push_back({"40 units", 30, 50, random_prefix(40, 0, 50, gen), 50});
    bool poisoned_shows = false;
    for (int t : {1, 2}) {
        // Two threads with the 8-float tiles (16-unit panels where the
        // kernel has wider ones).
        cpu_kernels::use_8_float_tiles_only(t == 2);
        omp_set_num_threads(t);
        for (const Case &c : all) {
            const size_t n = c.rows, units = c.prefix.size();
            Tensor w = tensor({units, c.inputs}, staircase_weight(c, gen));
            Tensor b = tensor({units}, random_vec(units, gen));
            Tensor x = tensor({n, c.width}, random_vec(n * c.width, gen));
            Tensor y(be, {n, units}), y0(be, {n, units}), pre(be, {n, units});
            Tensor act(be, {n, units}), act0(be, {n, units}), packed;
            be.pack_staircase(w, c.prefix.data(), packed);
            const Tensor *panel = if_defined(packed);
            be.staircase_forward(x, w, b, c.prefix.data(), y, panel);
            be.staircase_forward(x, w, b, c.prefix.data(), y0);
            cr_assert(values(y) == values(y0), "%s, %d threads: packed y differs", c.what, t);
            be.staircase_forward_activation(x, w, b, c.prefix.data(), Activation::relu, pre,
                                            act, panel);
            be.activation_forward(Activation::relu, y0, act0);
            cr_assert(values(act) == values(act0), "%s, %d threads: packed relu differs",
                      c.what, t);
            if (!panel || n == 0) continue;
            be.fill(packed, kNaN);
            be.staircase_forward(x, w, b, c.prefix.data(), y, panel);
            const Vec poisoned = values(y);
            poisoned_shows |= std::any_of(poisoned.begin(), poisoned.end(),
                                          [](float v) { return std::isnan(v); });
        }
    }
    cpu_kernels::use_8_float_tiles_only(false);
    omp_set_num_threads(threads);
    cr_assert(poisoned_shows, "no forward read its packed panel");
    // A panel of another weight is refused.
    const Prefix p = random_prefix(32, 0, 20, gen);
    Tensor w(be, {32, 20}), other(be, {32, 24}), x(be, {4, 20}), b(be, {32}), y(be, {4, 32});
    Tensor packed;
    be.pack_staircase(other, Prefix(32, 0).data(), packed);
    try {
        be.staircase_forward(x, w, b, p.data(), y, &packed);
        cr_assert_fail("a panel of another weight was accepted");
    } catch (const Error &e) {
        cr_assert_eq(e.status(), Status::internal);
    }
}

Test(cpu_staircase, bad_arguments_are_internal_errors) {
    Backend &be = cpu_backend();
    Tensor x(be, {4, 6}), w(be, {3, 6}), bias(be, {3}), y(be, {4, 3}), dx(be, {4, 6});
    Tensor dw(be, {3, 6}), dy(be, {4, 3}), narrow(be, {4, 2});
    Tensor rows = index_tensor({2, 0, 1}), cols = index_tensor({5, 4, 3, 2, 1, 0});
    Tensor bad_rows = index_tensor({2, 3, 1}), short_cols = index_tensor({0, 1, 2});
    auto internal = [](auto op) {
        try {
            op();
        } catch (const Error &e) {
            return e.status() == Status::internal;
        }
        return false;
    };
    const Prefix too_deep = {1, 7, 2}, ok = {1, 6, 2};
    cr_assert(internal([&] { be.staircase_forward(x, w, bias, too_deep.data(), y); }));
    cr_assert(internal([&] { be.staircase_forward(narrow, w, bias, ok.data(), y); }));
    cr_assert(internal([&] { be.staircase_forward(x, w, bias, nullptr, y); }));
    cr_assert(internal([&] { be.staircase_forward(x, w, dy, ok.data(), y); }));
    cr_assert(internal([&] { be.staircase_backward_input(dy, w, too_deep.data(), dx); }));
    cr_assert(internal([&] { be.staircase_backward_input(dy, w, ok.data(), y); }));
    auto weight = [&](const Tensor &in, const Prefix &p, const Tensor *r, const Tensor &c) {
        return internal([&] { be.staircase_backward_weight(dy, in, p.data(), r, c, dw); });
    };
    cr_assert(weight(x, too_deep, &rows, cols));
    cr_assert(weight(narrow, ok, &rows, cols));
    cr_assert(weight(x, ok, &bad_rows, cols));
    cr_assert(weight(x, ok, &rows, short_cols));
    cr_assert(weight(x, ok, nullptr, bias));
}
