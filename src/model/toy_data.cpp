#include "model/toy_data.h"

#include <cmath>

#include "backend/philox.h"
#include "core/error.h"

namespace flow {

namespace {

const double pi = 3.14159265358979323846;

// Row i draws from stream i, so the first k rows do not depend on n.
float uniform(uint64_t seed, size_t row, uint64_t k) {
    return philox_uniform(philox4x32_10(seed, row, k).v[0]);
}
float normal(uint64_t seed, size_t row, uint64_t k) {
    return philox_normal(philox4x32_10(seed, row, k));
}

// scikit-learn's make_moons with noise 0.1, the angle drawn uniformly.
void two_moons(size_t n, uint64_t seed, float *out) {
    for (size_t i = 0; i < n; ++i) {
        double t = pi * uniform(seed, i, 0);
        bool inner = uniform(seed, i, 1) < 0.5f;
        double x = inner ? 1.0 - std::cos(t) : std::cos(t);
        double y = inner ? 0.5 - std::sin(t) : std::sin(t);
        out[2 * i] = (float)(x + 0.1 * normal(seed, i, 2));
        out[2 * i + 1] = (float)(y + 0.1 * normal(seed, i, 3));
    }
}

// Centres at radius 4 on the directions k*pi/4, std 0.5, all scaled by
// 1/1.414 (as in FFJORD and most flow papers since).
void eight_gaussians(size_t n, uint64_t seed, float *out) {
    for (size_t i = 0; i < n; ++i) {
        int k = (int)(uniform(seed, i, 0) * 8.0f) & 7;
        double angle = k * pi / 4.0;
        out[2 * i] = (float)((4.0 * std::cos(angle) + 0.5 * normal(seed, i, 1)) / 1.414);
        out[2 * i + 1] = (float)((4.0 * std::sin(angle) + 0.5 * normal(seed, i, 2)) / 1.414);
    }
}

} // namespace

void toy_data(const std::string &name, size_t n, uint64_t seed, float *out) {
    if (name == "two_moons") return two_moons(n, seed, out);
    if (name == "eight_gaussians") return eight_gaussians(n, seed, out);
    fail(Status::invalid_argument,
         "unknown data set \"" + name + "\" (known: two_moons, eight_gaussians)");
}

} // namespace flow
