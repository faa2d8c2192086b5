// CPU-vs-CUDA parity of the MADE mixture-of-Gaussians ops and ensembles
// (cuda_made_mog.cu) and of the planar and radial flows and the mixture of
// Gaussians base (cuda_glow.cu); see cuda_parity.h for how the suite runs and
// skips. Every output is compared, accumulated ones starting from the same
// nonzero values; sampling must draw the CPU's samples for the same seed.
// Bound: 1e-5 normalized error everywhere (double per-row math on both
// sides; only the order of the parameter sums, the device's exp/log and
// contractions into FMAs differ: the CPU's planar and radial kernels run in
// FMA-capable clones where the CPU has them, the emulated module does not).
#include "cuda_parity.h"

#include <algorithm>
#include <string>

using namespace parity;

namespace {

constexpr double kBound = 1e-5;

struct Shape {
    size_t n, D;
};

// A single row, odd widths, and more rows than one chunk of a column reduction.
const Shape kShapes[] = {{1, 1}, {1, 5}, {9, 2}, {33, 17}, {150, 7}};

// "%g" of v, for labels.
std::string num(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

std::string label(const char *op, Shape s, const std::string &extra = "") {
    return std::string(op) + " n=" + num((double)s.n) + " D=" + num((double)s.D) + extra;
}

void expect(const Pair &p, const std::string &what) { expect_close(p, kBound, what.c_str()); }

unsigned seed_of(Shape s, unsigned salt) { return (unsigned)(s.n * 131 + s.D * 7 + salt); }

} // namespace

// --- MADE mixture of Gaussians -----------------------------------------------

// h [n, 3 C D]: logits and means in [-2, 2], log-scales (the third block) in
// [-1.2, 1.2], as a MADE would output.
static Pair made_mog_h(Shape s, size_t C, unsigned seed) {
    Vec h = random_vec(s.n * 3 * C * s.D, seed, -2.0f, 2.0f);
    for (size_t i = 0; i < s.n; ++i)
        for (size_t k = 2 * C * s.D; k < 3 * C * s.D; ++k) h[i * 3 * C * s.D + k] *= 0.6f;
    return pair({s.n, 3 * C * s.D}, h);
}

Test(cuda_made_mog, log_prob_and_backward_match_the_cpu) {
    for (Shape s : kShapes)
        for (size_t C : {1, 3, 5}) {
            const unsigned seed = seed_of(s, (unsigned)C);
            const std::string tag = " C=" + num((double)C);
            Pair z = random_pair({s.n, s.D}, seed, -3.0f, 3.0f), h = made_mog_h(s, C, seed + 1);
            Pair out = random_pair({s.n}, seed + 2);
            cpu().made_mog_log_prob(z.cpu, h.cpu, out.cpu);
            gpu().made_mog_log_prob(z.gpu, h.gpu, out.gpu);
            expect(out, label("made_mog_log_prob", s, tag));

            Pair dlogp = random_pair({s.n}, seed + 3);
            Pair dz = random_pair({s.n, s.D}, seed + 4);
            Pair dh = random_pair({s.n, 3 * C * s.D}, seed + 5);
            Pair along = random_pair({s.n}, seed + 6);
            cpu().made_mog_log_prob_backward(z.cpu, h.cpu, dlogp.cpu, dz.cpu, dh.cpu, &along.cpu);
            gpu().made_mog_log_prob_backward(z.gpu, h.gpu, dlogp.gpu, dz.gpu, dh.gpu, &along.gpu);
            expect(dz, label("made_mog_log_prob_backward dz", s, tag));
            expect(dh, label("made_mog_log_prob_backward dh", s, tag));
            expect(along, label("made_mog_log_prob_backward out", s, tag));
        }
}

Test(cuda_made_mog, sample_draws_the_cpu_samples) {
    for (Shape s : kShapes)
        for (size_t C : {1, 4}) {
            const unsigned seed = seed_of(s, 10 + (unsigned)C);
            Pair h = made_mog_h(s, C, seed);
            // Untouched columns keep these values; every column is drawn once.
            Pair z = random_pair({s.n, s.D}, seed + 1);
            for (size_t col = 0; col < s.D; ++col) {
                cpu().made_mog_sample(z.cpu, h.cpu, col, 1234 + C, 5, 0.7f, nullptr, 0, 0);
                gpu().made_mog_sample(z.gpu, h.gpu, col, 1234 + C, 5, 0.7f, nullptr, 0, 0);
            }
            expect(z, label("made_mog_sample", s, " C=" + num((double)C)));

            // Ensemble members: only the rows of member 1 of 3 change;
            // member values below 0 and above members - 1 are clamped.
            Pair member = random_pair({s.n}, seed + 2, -1.5f, 4.5f);
            Pair zm = random_pair({s.n, s.D}, seed + 3);
            cpu().made_mog_sample(zm.cpu, h.cpu, s.D / 2, 99, 3, 1.0f, &member.cpu, 3, 1);
            gpu().made_mog_sample(zm.gpu, h.gpu, s.D / 2, 99, 3, 1.0f, &member.gpu, 3, 1);
            expect(zm, label("made_mog_sample member 1 of 3", s));
        }
}

Test(cuda_made_mog, log_mean_exp_and_backward_match_the_cpu) {
    for (size_t K : {1, 2, 5})
        for (size_t n : {1, 7, 300}) {
            const unsigned seed = (unsigned)(K * 1000 + n);
            const std::string tag = " K=" + num((double)K) + " n=" + num((double)n);
            // log-densities far apart, as ensemble members' can be
            Pair lp = random_pair({K, n}, seed, -40.0f, 5.0f), out = random_pair({n}, seed + 1);
            cpu().log_mean_exp(lp.cpu, out.cpu);
            gpu().log_mean_exp(lp.gpu, out.gpu);
            expect(out, "log_mean_exp" + tag);

            // Both backwards get the CPU's forward result.
            Pair fwd = pair({n}, values(out.cpu)), dout = random_pair({n}, seed + 2);
            Pair dlp = random_pair({K, n}, seed + 3);
            cpu().log_mean_exp_backward(lp.cpu, fwd.cpu, dout.cpu, dlp.cpu);
            gpu().log_mean_exp_backward(lp.gpu, fwd.gpu, dout.gpu, dlp.gpu);
            expect(dlp, "log_mean_exp_backward" + tag);
        }
}

// --- planar -----------------------------------------------------------------

// Planar parameters at scale `scale` (small: psi near w.u; large: u_hat
// constrained), or w = 0 (u_hat = u).
struct PlanarParams {
    Pair w, u, b;
};

static PlanarParams planar_params(size_t D, float scale, unsigned seed) {
    PlanarParams p{random_pair({D}, seed, -scale, scale),
                   random_pair({D}, seed + 1, -scale, scale), random_pair({1}, seed + 2)};
    if (scale == 0.0f) p.u = random_pair({D}, seed + 1);
    return p;
}

Test(cuda_glow, planar_forward_inverse_backward_match_the_cpu) {
    for (Shape s : kShapes)
        for (float scale : {0.0f, 0.4f, 3.0f}) {
            const unsigned seed = seed_of(s, 20 + (unsigned)(scale * 10));
            const std::string tag = " scale=" + num(scale);
            const PlanarParams p = planar_params(s.D, scale, seed);
            Pair x = random_pair({s.n, s.D}, seed + 3, -2.0f, 2.0f);
            Pair z = random_pair({s.n, s.D}, seed + 4), logdet = random_pair({s.n}, seed + 5);
            cpu().planar_forward(x.cpu, p.w.cpu, p.u.cpu, p.b.cpu, z.cpu, logdet.cpu);
            gpu().planar_forward(x.gpu, p.w.gpu, p.u.gpu, p.b.gpu, z.gpu, logdet.gpu);
            expect(z, label("planar_forward z", s, tag));
            expect(logdet, label("planar_forward logdet", s, tag));

            for (double tol : {1e-10, 1e-6}) {
                Pair zin = random_pair({s.n, s.D}, seed + 6, -2.0f, 2.0f);
                Pair xi = random_pair({s.n, s.D}, seed + 7), ld = random_pair({s.n}, seed + 8);
                cpu().planar_inverse(zin.cpu, p.w.cpu, p.u.cpu, p.b.cpu, tol, xi.cpu, ld.cpu);
                gpu().planar_inverse(zin.gpu, p.w.gpu, p.u.gpu, p.b.gpu, tol, xi.gpu, ld.gpu);
                const std::string t = tag + " tol=" + num(tol);
                expect(xi, label("planar_inverse x", s, t));
                expect(ld, label("planar_inverse logdet", s, t));
            }

            Pair dz = random_pair({s.n, s.D}, seed + 9), dlogdet = random_pair({s.n}, seed + 10);
            Pair dx = random_pair({s.n, s.D}, seed + 11), dw = random_pair({s.D}, seed + 12);
            Pair du = random_pair({s.D}, seed + 13), db = random_pair({1}, seed + 14);
            cpu().planar_backward(x.cpu, p.w.cpu, p.u.cpu, p.b.cpu, dz.cpu, dlogdet.cpu, dx.cpu,
                                  dw.cpu, du.cpu, db.cpu);
            gpu().planar_backward(x.gpu, p.w.gpu, p.u.gpu, p.b.gpu, dz.gpu, dlogdet.gpu, dx.gpu,
                                  dw.gpu, du.gpu, db.gpu);
            expect(dx, label("planar_backward dx", s, tag));
            expect(dw, label("planar_backward dw", s, tag));
            expect(du, label("planar_backward du", s, tag));
            expect(db, label("planar_backward db", s, tag));
        }
}

// --- radial -----------------------------------------------------------------

Test(cuda_glow, radial_forward_inverse_backward_match_the_cpu) {
    // (a, b): ordinary, strong contraction (beta near -alpha), strong expansion
    const float raw[][2] = {{0.3f, 0.5f}, {1.0f, -6.0f}, {-1.0f, 3.0f}};
    for (Shape s : kShapes)
        for (size_t v = 0; v < 3; ++v) {
            const unsigned seed = seed_of(s, 40 + (unsigned)v);
            const std::string tag = " a=" + num(raw[v][0]) + " b=" + num(raw[v][1]);
            Pair x0 = random_pair({s.D}, seed), a = filled_pair({1}, raw[v][0]);
            Pair b = filled_pair({1}, raw[v][1]);
            // row 0 sits on the center (r = 0)
            Vec xv = random_vec(s.n * s.D, seed + 1, -2.0f, 2.0f), x0v = values(x0.cpu);
            std::copy(x0v.begin(), x0v.end(), xv.begin());
            Pair x = pair({s.n, s.D}, xv);
            Pair z = random_pair({s.n, s.D}, seed + 2), logdet = random_pair({s.n}, seed + 3);
            cpu().radial_forward(x.cpu, x0.cpu, a.cpu, b.cpu, z.cpu, logdet.cpu);
            gpu().radial_forward(x.gpu, x0.gpu, a.gpu, b.gpu, z.gpu, logdet.gpu);
            expect(z, label("radial_forward z", s, tag));
            expect(logdet, label("radial_forward logdet", s, tag));

            Pair zin = pair({s.n, s.D}, xv); // includes the center row
            Pair xi = random_pair({s.n, s.D}, seed + 4), ld = random_pair({s.n}, seed + 5);
            cpu().radial_inverse(zin.cpu, x0.cpu, a.cpu, b.cpu, xi.cpu, ld.cpu);
            gpu().radial_inverse(zin.gpu, x0.gpu, a.gpu, b.gpu, xi.gpu, ld.gpu);
            expect(xi, label("radial_inverse x", s, tag));
            expect(ld, label("radial_inverse logdet", s, tag));

            Pair dz = random_pair({s.n, s.D}, seed + 6), dlogdet = random_pair({s.n}, seed + 7);
            Pair dx = random_pair({s.n, s.D}, seed + 8), dx0 = random_pair({s.D}, seed + 9);
            Pair da = random_pair({1}, seed + 10), db = random_pair({1}, seed + 11);
            cpu().radial_backward(x.cpu, x0.cpu, a.cpu, b.cpu, dz.cpu, dlogdet.cpu, dx.cpu,
                                  dx0.cpu, da.cpu, db.cpu);
            gpu().radial_backward(x.gpu, x0.gpu, a.gpu, b.gpu, dz.gpu, dlogdet.gpu, dx.gpu,
                                  dx0.gpu, da.gpu, db.gpu);
            expect(dx, label("radial_backward dx", s, tag));
            expect(dx0, label("radial_backward dx0", s, tag));
            expect(da, label("radial_backward da", s, tag));
            expect(db, label("radial_backward db", s, tag));
        }
}

// --- mixture of Gaussians ----------------------------------------------------

Test(cuda_glow, mog_log_prob_backward_and_sample_match_the_cpu) {
    for (Shape s : kShapes)
        for (size_t K : {1, 4}) {
            const unsigned seed = seed_of(s, 60 + (unsigned)K);
            const std::string tag = " K=" + num((double)K);
            Pair logits = random_pair({K}, seed, -2.0f, 2.0f);
            Pair means = random_pair({K, s.D}, seed + 1, -2.0f, 2.0f);
            Pair log_scales = random_pair({K, s.D}, seed + 2, -1.0f, 0.5f);
            Pair z = random_pair({s.n, s.D}, seed + 3, -3.0f, 3.0f);
            Pair out = random_pair({s.n}, seed + 4);
            cpu().mog_log_prob(z.cpu, logits.cpu, means.cpu, log_scales.cpu, out.cpu);
            gpu().mog_log_prob(z.gpu, logits.gpu, means.gpu, log_scales.gpu, out.gpu);
            expect(out, label("mog_log_prob", s, tag));

            Pair dlogp = random_pair({s.n}, seed + 5), dz = random_pair({s.n, s.D}, seed + 6);
            Pair dlogits = random_pair({K}, seed + 7), dmeans = random_pair({K, s.D}, seed + 8);
            Pair dls = random_pair({K, s.D}, seed + 9);
            cpu().mog_log_prob_backward(z.cpu, logits.cpu, means.cpu, log_scales.cpu, dlogp.cpu,
                                        dz.cpu, dlogits.cpu, dmeans.cpu, dls.cpu);
            gpu().mog_log_prob_backward(z.gpu, logits.gpu, means.gpu, log_scales.gpu, dlogp.gpu,
                                        dz.gpu, dlogits.gpu, dmeans.gpu, dls.gpu);
            expect(dz, label("mog_log_prob_backward dz", s, tag));
            expect(dlogits, label("mog_log_prob_backward dlogits", s, tag));
            expect(dmeans, label("mog_log_prob_backward dmeans", s, tag));
            expect(dls, label("mog_log_prob_backward dlog_scales", s, tag));

            Pair sample = random_pair({s.n, s.D}, seed + 10);
            cpu().mog_sample(sample.cpu, logits.cpu, means.cpu, log_scales.cpu, 77 + K, 2, 0.8f);
            gpu().mog_sample(sample.gpu, logits.gpu, means.gpu, log_scales.gpu, 77 + K, 2, 0.8f);
            expect(sample, label("mog_sample", s, tag));
        }
}

// --- errors ------------------------------------------------------------------

Test(cuda_glow, shape_errors_are_internal_errors) {
    Tensor x(gpu(), {4, 3}), z(gpu(), {4, 3}), logdet(gpu(), {4});
    Tensor w(gpu(), {2}), u(gpu(), {3}), b(gpu(), {1}), h(gpu(), {4, 8});
    auto internal = [](auto &&call, const char *what) {
        try {
            call();
            cr_expect_fail("%s: no error", what);
        } catch (const flow::Error &e) {
            cr_expect_eq(e.status(), flow::Status::internal, "%s: %s", what, e.what());
        }
    };
    internal([&] { gpu().planar_forward(x, w, u, b, z, logdet); }, "planar w of the wrong size");
    internal([&] { gpu().radial_forward(x, w, b, b, z, logdet); }, "radial x0 of the wrong size");
    internal([&] { gpu().made_mog_log_prob(x, h, logdet); }, "made_mog h not [n, 3 C D]");
}
