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

// FFJORD's checkerboard: uniform on the black squares of a 4x4 board over
// [-4, 4]^2 (x uniform in [-4, 4); y in a square of the other parity).
void checkerboard(size_t n, uint64_t seed, float *out) {
    for (size_t i = 0; i < n; ++i) {
        double x1 = 4.0 * uniform(seed, i, 0) - 2.0;
        double x2 = uniform(seed, i, 1) - (uniform(seed, i, 2) < 0.5f ? 0.0 : 2.0);
        x2 += std::fmod(std::floor(x1) + 4.0, 2.0);   // floor(x1) mod 2, non-negative
        out[2 * i] = (float)(2.0 * x1);
        out[2 * i + 1] = (float)(2.0 * x2);
    }
}

// FFJORD's pinwheel: 5 arms; radial std 0.3, tangential std 0.1, each point
// turned by 0.25 * exp(its radial offset) past its arm's angle, scaled by 2.
void pinwheel(size_t n, uint64_t seed, float *out) {
    for (size_t i = 0; i < n; ++i) {
        double r = 1.0 + 0.3 * normal(seed, i, 0);
        double t = 0.1 * normal(seed, i, 1);
        int arm = (int)(uniform(seed, i, 2) * 5.0f) % 5;
        double angle = 2.0 * pi * arm / 5.0 + 0.25 * std::exp(r);
        double c = std::cos(angle), s = std::sin(angle);
        out[2 * i] = (float)(2.0 * (c * r - s * t));
        out[2 * i + 1] = (float)(2.0 * (s * r + c * t));
    }
}

// FFJORD's two spirals: angle sqrt(u) * 3 pi, the second spiral the first
// turned by pi, uniform jitter 0.5 and normal noise 0.1, divided by 3.
void two_spirals(size_t n, uint64_t seed, float *out) {
    for (size_t i = 0; i < n; ++i) {
        double a = std::sqrt((double)uniform(seed, i, 0)) * 540.0 * (2.0 * pi) / 360.0;
        double x = -std::cos(a) * a + 0.5 * uniform(seed, i, 1);
        double y = std::sin(a) * a + 0.5 * uniform(seed, i, 2);
        double sign = uniform(seed, i, 3) < 0.5f ? 1.0 : -1.0;
        out[2 * i] = (float)(sign * x / 3.0 + 0.1 * normal(seed, i, 4));
        out[2 * i + 1] = (float)(sign * y / 3.0 + 0.1 * normal(seed, i, 5));
    }
}

// FFJORD's rings: four concentric circles of radii 3, 2.25, 1.5 and 0.75,
// equally likely, angle uniform, normal noise 0.08.
void rings(size_t n, uint64_t seed, float *out) {
    for (size_t i = 0; i < n; ++i) {
        int ring = (int)(uniform(seed, i, 0) * 4.0f) & 3;
        double radius = 0.75 * (ring + 1);
        double angle = 2.0 * pi * uniform(seed, i, 1);
        out[2 * i] = (float)(radius * std::cos(angle) + 0.08 * normal(seed, i, 2));
        out[2 * i + 1] = (float)(radius * std::sin(angle) + 0.08 * normal(seed, i, 3));
    }
}

} // namespace

const char *const toy_data_names =
    "two_moons, eight_gaussians, checkerboard, pinwheel, two_spirals, rings";

void toy_data(const std::string &name, size_t n, uint64_t seed, float *out) {
    if (name == "two_moons") return two_moons(n, seed, out);
    if (name == "eight_gaussians") return eight_gaussians(n, seed, out);
    if (name == "checkerboard") return checkerboard(n, seed, out);
    if (name == "pinwheel") return pinwheel(n, seed, out);
    if (name == "two_spirals") return two_spirals(n, seed, out);
    if (name == "rings") return rings(n, seed, out);
    fail(Status::invalid_argument,
         "unknown data set \"" + name + "\" (known: " + toy_data_names + ")");
}

} // namespace flow
