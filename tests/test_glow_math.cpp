// The building blocks of backend/glow_math.h that both backends share: the
// fixed summation order of row_sum, and branchless_tanh / branchless_log1p
// against libm (a few ulp over their whole range, libm's special values).
#include <criterion/criterion.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "backend/glow_math.h"

using namespace flow::glow;

namespace {

constexpr double kUlp = std::numeric_limits<double>::epsilon();
constexpr double kInf = std::numeric_limits<double>::infinity();

// Largest |got - want| / |want| over the values v of draw(gen) (|got| where want is 0).
template <class Draw, class Got, class Want>
double worst_relative_error(Draw draw, Got got, Want want, double *at) {
    std::mt19937_64 gen(7);
    double worst = 0;
    for (int k = 0; k < 300000; ++k) {
        const double v = draw(gen), g = got(v), w = want(v);
        const double e = w == 0 ? std::fabs(g) : std::fabs(g - w) / std::fabs(w);
        if (e > worst) {
            worst = e;
            *at = v;
        }
    }
    return worst;
}

// Uniform in [lo, hi).
double uniform(std::mt19937_64 &gen, double lo, double hi) {
    return std::uniform_real_distribution<double>(lo, hi)(gen);
}

// Magnitudes from 1 down to 2^-60, either sign.
double tiny(std::mt19937_64 &gen) { return std::ldexp(uniform(gen, -1, 1), -(int)(gen() % 61)); }

} // namespace

Test(glow_math, row_sum_adds_in_lanes_then_a_tree_then_the_tail) {
    // terms of very different sizes, so any other order rounds differently
    std::vector<double> t(21);
    std::mt19937_64 gen(3);
    for (double &v : t) v = std::ldexp(uniform(gen, -1, 1), (int)(gen() % 100) - 50);
    double s[8];
    for (size_t l = 0; l < 8; ++l) s[l] = (0.0 + t[l]) + t[8 + l];
    double want = ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
    for (size_t j = 16; j < 21; ++j) want += t[j];
    const double got = row_sum(t.size(), [&](size_t j) { return t[j]; });
    cr_expect(got == want, "row_sum %.17g, the documented order %.17g", got, want);

    double head = 0; // fewer terms than lanes: the tail alone
    for (size_t j = 0; j < 5; ++j) head += t[j];
    cr_expect(row_sum(5, [&](size_t j) { return t[j]; }) == head);
    cr_expect(row_sum(0, [&](size_t j) { return t[j]; }) == 0.0);
}

Test(glow_math, branchless_tanh_matches_libm) {
    double at = 0;
    const auto tanh_ = [](double a) { return branchless_tanh(a); };
    const auto libm = [](double a) { return std::tanh(a); };
    double e = worst_relative_error([](auto &g) { return uniform(g, -25, 25); }, tanh_, libm, &at);
    cr_expect(e <= 8 * kUlp, "tanh on [-25, 25]: relative error %.3g at %.17g", e, at);
    e = worst_relative_error([](auto &g) { return tiny(g); }, tanh_, libm, &at);
    cr_expect(e <= 8 * kUlp, "tanh near 0: relative error %.3g at %.17g", e, at);

    cr_expect(branchless_tanh(40.0) == 1.0 && branchless_tanh(-kInf) == -1.0);
    cr_expect(branchless_tanh(kInf) == 1.0);
    cr_expect(branchless_tanh(0.0) == 0.0 && std::signbit(branchless_tanh(-0.0)));
    cr_expect(std::isnan(branchless_tanh(NAN)));
}

Test(glow_math, branchless_log1p_matches_libm) {
    double at = 0;
    const auto log1p_ = [](double y) { return branchless_log1p(y); };
    const auto libm = [](double y) { return std::log1p(y); };
    double e = worst_relative_error([](auto &g) { return tiny(g); }, log1p_, libm, &at);
    cr_expect(e <= 8 * kUlp, "log1p near 0: relative error %.3g at %.17g", e, at);
    // just above -1, where 1 + y is tiny
    const auto near_minus_one = [](auto &g) {
        return -1 + std::ldexp(uniform(g, 0, 1), -(int)(g() % 53));
    };
    e = worst_relative_error(near_minus_one, log1p_, libm, &at);
    cr_expect(e <= 8 * kUlp, "log1p near -1: relative error %.3g at %.17g", e, at);
    e = worst_relative_error([](auto &g) { return std::exp(uniform(g, -5, 700)); }, log1p_, libm,
                             &at);
    cr_expect(e <= 8 * kUlp, "log1p of large y: relative error %.3g at %.17g", e, at);

    cr_expect(branchless_log1p(0.0) == 0.0 && branchless_log1p(1e-300) == 1e-300);
    cr_expect(branchless_log1p(-1.0) == -kInf && branchless_log1p(kInf) == kInf);
    cr_expect(std::isnan(branchless_log1p(-2.0)) && std::isnan(branchless_log1p(NAN)));
}
