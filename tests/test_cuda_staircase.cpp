// CPU-vs-CUDA parity of the staircase products (cuda_staircase.cu): MADE
// layers narrower and wider than one cuBLAS panel (128 units), rising,
// falling and unordered prefixes, prefixes of 0 and of whole rows, one batch
// row, no batch rows, a forward whose x is narrower than w, weight
// gradients added at permuted rows or in order, and the forward with its
// activation; see cuda_parity.h for how the suite runs and skips.
#include "cuda_parity.h"

#include <algorithm>
#include <functional>
#include <limits>

using namespace parity;
using Prefix = std::vector<size_t>;

namespace {

// Sums of up to a few hundred products in another order.
constexpr double kProduct = 1e-5;

struct Case {
    const char *what;
    size_t rows, inputs;
    Prefix prefix;
    size_t width; // columns of the forward's x
};

Prefix random_prefix(size_t units, size_t hi, unsigned seed, bool sorted = true) {
    std::mt19937 gen(seed);
    std::uniform_int_distribution<size_t> dist(0, hi);
    Prefix p(units);
    for (size_t &v : p) v = dist(gen);
    if (sorted) std::sort(p.begin(), p.end());
    return p;
}

std::vector<Case> cases() {
    Prefix falling = random_prefix(150, 60, 3);
    std::reverse(falling.begin(), falling.end());
    Prefix runs = random_prefix(70, 90, 5);
    runs.insert(runs.end(), runs.begin(), runs.end());
    return {
        {"one row", 1, 9, {0, 2, 2, 9}, 9},
        {"no batch rows", 0, 12, random_prefix(20, 12, 1), 12},
        {"all prefixes 0", 6, 10, Prefix(30, 0), 10},
        {"whole rows", 7, 33, Prefix(140, 33), 33},
        {"one panel", 37, 64, random_prefix(64, 64, 2), 64},
        {"panels, falling", 19, 60, falling, 60},
        {"panels, two runs", 23, 90, runs, 90},
        {"panels, no order", 11, 50, random_prefix(300, 50, 7, false), 50},
        {"x narrower than w", 13, 200, random_prefix(260, 140, 9), 150},
    };
}

// w random on the staircase and 0 past it.
Vec staircase_weight(const Case &c, unsigned seed) {
    Vec w = random_vec(c.prefix.size() * c.inputs, seed);
    for (size_t u = 0; u < c.prefix.size(); ++u)
        std::fill(w.begin() + u * c.inputs + c.prefix[u], w.begin() + (u + 1) * c.inputs, 0.0f);
    return w;
}

} // namespace

std::vector<int32_t> permutation(size_t n, unsigned seed) {
    std::vector<int32_t> p(n);
    for (size_t k = 0; k < n; ++k) p[k] = int32_t(k);
    std::shuffle(p.begin(), p.end(), std::mt19937(seed));
    return p;
}

Test(cuda_staircase, products_match_the_cpu) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    unsigned seed = 100;
    for (const Case &c : cases())
        for (bool in_order : {false, true}) {
            const size_t n = c.rows, units = c.prefix.size(), in = c.inputs;
            Pair w = pair({units, in}, staircase_weight(c, ++seed));
            Pair bias = random_pair({units}, ++seed), dy = random_pair({n, units}, ++seed);
            Pair x = random_pair({n, in}, ++seed), xw = random_pair({n, c.width}, ++seed);
            Pair rows = index_pair(permutation(units, ++seed));
            Pair cols = index_pair(permutation(in, ++seed));
            // y and dx start as NaN: every element must be written. dw is
            // added to.
            Pair y = pair({n, units}, Vec(n * units, nan)), dx = pair({n, in}, Vec(n * in, nan));
            Pair dw = random_pair({units, in}, ++seed);
            const size_t *p = c.prefix.data();
            cpu().staircase_forward(xw.cpu, w.cpu, bias.cpu, p, y.cpu);
            gpu().staircase_forward(xw.gpu, w.gpu, bias.gpu, p, y.gpu);
            cpu().staircase_backward_input(dy.cpu, w.cpu, p, dx.cpu);
            gpu().staircase_backward_input(dy.gpu, w.gpu, p, dx.gpu);
            cpu().staircase_backward_weight(dy.cpu, x.cpu, p, in_order ? nullptr : &rows.cpu,
                                            cols.cpu, dw.cpu);
            gpu().staircase_backward_weight(dy.gpu, x.gpu, p, in_order ? nullptr : &rows.gpu,
                                            cols.gpu, dw.gpu);
            const std::string what = std::string(c.what) + (in_order ? ", rows in order" : "");
            expect_close(y, kProduct, (what + ": y").c_str());
            expect_close(dx, kProduct, (what + ": dx").c_str());
            expect_close(dw, kProduct, (what + ": dw").c_str());
        }
}

Test(cuda_staircase, forward_activation_matches_the_cpu) {
    const Case c = {"activation", 40, 70, random_prefix(150, 70, 21), 70};
    const size_t n = c.rows, units = c.prefix.size();
    Pair w = pair({units, c.inputs}, staircase_weight(c, 22)), b = random_pair({units}, 23);
    Pair x = random_pair({n, c.inputs}, 24);
    for (flow::Activation act : {flow::Activation::relu, flow::Activation::leaky_relu,
                                 flow::Activation::softplus}) {
        Pair pre = filled_pair({n, units}, 0.0f), y = filled_pair({n, units}, 0.0f);
        cpu().staircase_forward_activation(x.cpu, w.cpu, b.cpu, c.prefix.data(), act, pre.cpu,
                                           y.cpu);
        gpu().staircase_forward_activation(x.gpu, w.gpu, b.gpu, c.prefix.data(), act, pre.gpu,
                                           y.gpu);
        expect_close(pre, kProduct, "staircase_forward_activation pre");
        expect_close(y, kProduct, "staircase_forward_activation y");
    }
}

Test(cuda_staircase, bad_arguments_are_internal_errors) {
    Tensor x(gpu(), {4, 6}), w(gpu(), {3, 6}), bias(gpu(), {3}), y(gpu(), {4, 3});
    Tensor dx(gpu(), {4, 6}), dw(gpu(), {3, 6}), dy(gpu(), {4, 3}), narrow(gpu(), {4, 2});
    const Pair rows = index_pair({2, 0, 1}), cols = index_pair({5, 4, 3, 2, 1, 0});
    const Pair short_cols = index_pair({0, 1, 2});
    const Prefix too_deep = {1, 7, 2}, ok = {1, 6, 2};
    const std::vector<std::pair<const char *, std::function<void()>>> calls = {
        {"forward, prefix past x",
         [&] { gpu().staircase_forward(x, w, bias, too_deep.data(), y); }},
        {"forward, narrow x", [&] { gpu().staircase_forward(narrow, w, bias, ok.data(), y); }},
        {"forward, null prefix", [&] { gpu().staircase_forward(x, w, bias, nullptr, y); }},
        {"forward, bias", [&] { gpu().staircase_forward(x, w, dy, ok.data(), y); }},
        {"backward_input, dx", [&] { gpu().staircase_backward_input(dy, w, ok.data(), y); }},
        {"backward_weight, x",
         [&] { gpu().staircase_backward_weight(dy, narrow, ok.data(), &rows.gpu, cols.gpu, dw); }},
        {"backward_weight, cols",
         [&] { gpu().staircase_backward_weight(dy, x, ok.data(), &rows.gpu, short_cols.gpu, dw); }},
        {"backward_weight, float cols",
         [&] { gpu().staircase_backward_weight(dy, x, ok.data(), nullptr, bias, dw); }},
    };
    for (const auto &[name, call] : calls) {
        try {
            call();
            cr_expect_fail("%s accepted bad arguments", name);
        } catch (const flow::Error &e) {
            cr_expect_eq(e.status(), flow::Status::internal, "%s: %s", name, e.what());
        }
    }
}
