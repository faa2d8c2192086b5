// CPU-vs-CUDA parity of the flow-layer ops (cuda_flows.cu): couplings,
// diagonal scaling, batch norm, preprocessing, base densities, random numbers
// and optimizers (see cuda_parity.h for how the suite runs and skips).
//
// Bounds (normalized error, cuda_parity.h):
//   0     the same float ops with no rounding choice (dequantize_inverse);
//   1e-6  the same formulas up to contraction into FMAs or a last-ulp libm
//         difference (Philox fills, dequantize, optimizers, batch-norm
//         running stats, normal density);
//   1e-5  where the CPU uses its polynomial exp/tanh/log1p and the CUDA
//         kernels the real ones, or sums in a different order (everything else).
// Accumulated outputs start from the same nonzero random values on both sides.
#include "cuda_parity.h"

#include <string>

using namespace parity;

namespace {

struct Shape {
    size_t rows, cols;
};

// A single row, odd column counts, and enough rows for several chunks of
// both backends' column reductions (64 rows on CUDA, 256 on the CPU).
const Shape kShapes[] = {{1, 7}, {37, 13}, {300, 64}, {129, 1}};

std::string label(const char *what, Shape s) {
    return std::string(what) + " [" + std::to_string(s.rows) + " x " + std::to_string(s.cols) + "]";
}

void expect(const Pair &p, double bound, const char *what, Shape s) {
    expect_close(p, bound, label(what, s).c_str());
}

constexpr double kExact = 0.0, kSameMath = 1e-6, kApprox = 1e-5;

} // namespace

// --- coupling layers ----------------------------------------------------------

Test(cuda_flows, affine_coupling_forward_and_inverse) {
    unsigned seed = 100;
    for (const Shape s : kShapes)
        for (int inverse = 0; inverse < 2; ++inverse) {
            Pair in = random_pair({s.rows, s.cols}, ++seed, -2.0f, 2.0f);
            Pair h = random_pair({s.rows, 2 * s.cols}, ++seed, -2.0f, 2.0f);
            Pair scale = random_pair({s.cols}, ++seed, -1.5f, 1.5f);
            Pair out = filled_pair({s.rows, s.cols}, 0.0f);
            Pair logdet = random_pair({s.rows}, ++seed); // accumulates
            if (inverse) {
                cpu().affine_coupling_inverse(in.cpu, h.cpu, scale.cpu, out.cpu, logdet.cpu);
                gpu().affine_coupling_inverse(in.gpu, h.gpu, scale.gpu, out.gpu, logdet.gpu);
            } else {
                cpu().affine_coupling_forward(in.cpu, h.cpu, scale.cpu, out.cpu, logdet.cpu);
                gpu().affine_coupling_forward(in.gpu, h.gpu, scale.gpu, out.gpu, logdet.gpu);
            }
            expect(out, kApprox, inverse ? "affine_coupling_inverse x" : "affine_coupling_forward z", s);
            expect(logdet, kApprox, inverse ? "affine_coupling_inverse logdet" : "affine_coupling_forward logdet", s);
        }
}

Test(cuda_flows, affine_coupling_backward) {
    unsigned seed = 200;
    for (const Shape s : kShapes) {
        Pair x = random_pair({s.rows, s.cols}, ++seed, -2.0f, 2.0f);
        Pair h = random_pair({s.rows, 2 * s.cols}, ++seed, -2.0f, 2.0f);
        Pair scale = random_pair({s.cols}, ++seed, -1.5f, 1.5f);
        Pair dz = random_pair({s.rows, s.cols}, ++seed);
        Pair dlogdet = random_pair({s.rows}, ++seed);
        Pair dx = filled_pair({s.rows, s.cols}, 0.0f);
        Pair dh = random_pair({s.rows, 2 * s.cols}, ++seed); // overwritten
        Pair dscale = random_pair({s.cols}, ++seed);         // accumulates
        cpu().affine_coupling_backward(x.cpu, h.cpu, scale.cpu, dz.cpu, dlogdet.cpu, dx.cpu,
                                       dh.cpu, dscale.cpu);
        gpu().affine_coupling_backward(x.gpu, h.gpu, scale.gpu, dz.gpu, dlogdet.gpu, dx.gpu,
                                       dh.gpu, dscale.gpu);
        expect(dx, kApprox, "affine_coupling_backward dx", s);
        expect(dh, kApprox, "affine_coupling_backward dh", s);
        expect(dscale, kApprox, "affine_coupling_backward dscale", s);
    }
}

// --- diagonal scaling ---------------------------------------------------------

Test(cuda_flows, scale_exp_both_signs) {
    unsigned seed = 400;
    for (const Shape s : kShapes)
        for (float sign : {1.0f, -1.0f}) {
            Pair x = random_pair({s.rows, s.cols}, ++seed, -3.0f, 3.0f);
            Pair sc = random_pair({s.cols}, ++seed, -2.0f, 2.0f);
            Pair y = filled_pair({s.rows, s.cols}, 0.0f);
            cpu().scale_exp(x.cpu, sc.cpu, sign, y.cpu);
            gpu().scale_exp(x.gpu, sc.gpu, sign, y.gpu);
            expect(y, kApprox, "scale_exp", s);
        }
}

Test(cuda_flows, scale_exp_backward) {
    unsigned seed = 500;
    for (const Shape s : kShapes) {
        Pair x = random_pair({s.rows, s.cols}, ++seed, -3.0f, 3.0f);
        Pair sc = random_pair({s.cols}, ++seed, -2.0f, 2.0f);
        Pair dz = random_pair({s.rows, s.cols}, ++seed);
        Pair dlogdet = random_pair({s.rows}, ++seed);
        Pair dx = filled_pair({s.rows, s.cols}, 0.0f);
        Pair ds = random_pair({s.cols}, ++seed); // accumulates
        cpu().scale_exp_backward(x.cpu, sc.cpu, dz.cpu, dlogdet.cpu, dx.cpu, ds.cpu);
        gpu().scale_exp_backward(x.gpu, sc.gpu, dz.gpu, dlogdet.gpu, dx.gpu, ds.gpu);
        expect(dx, kApprox, "scale_exp_backward dx", s);
        expect(ds, kApprox, "scale_exp_backward ds", s);
    }
}

// --- batch normalization ----------------------------------------------------------

Test(cuda_flows, batch_norm_stats_with_an_offset_mean) {
    unsigned seed = 600;
    for (const Shape s : kShapes) {
        Pair x = random_pair({s.rows, s.cols}, ++seed, 3.0f, 5.0f);
        Pair mean = filled_pair({s.cols}, 0.0f), var = filled_pair({s.cols}, 0.0f);
        cpu().batch_norm_stats(x.cpu, mean.cpu, var.cpu);
        gpu().batch_norm_stats(x.gpu, mean.gpu, var.gpu);
        expect(mean, kApprox, "batch_norm_stats mean", s);
        expect(var, kApprox, "batch_norm_stats var", s);
    }
}

Test(cuda_flows, batch_norm_forward_and_inverse) {
    unsigned seed = 700;
    const float eps = 1e-5f;
    for (const Shape s : kShapes)
        for (int inverse = 0; inverse < 2; ++inverse) {
            Pair in = random_pair({s.rows, s.cols}, ++seed, -3.0f, 3.0f);
            Pair mean = random_pair({s.cols}, ++seed);
            Pair var = random_pair({s.cols}, ++seed, 0.1f, 2.0f);
            Pair log_gamma = random_pair({s.cols}, ++seed);
            Pair beta = random_pair({s.cols}, ++seed);
            Pair out = filled_pair({s.rows, s.cols}, 0.0f);
            Pair logdet = random_pair({s.rows}, ++seed); // accumulates
            if (inverse) {
                cpu().batch_norm_inverse(in.cpu, mean.cpu, var.cpu, log_gamma.cpu, beta.cpu, eps,
                                         out.cpu, logdet.cpu);
                gpu().batch_norm_inverse(in.gpu, mean.gpu, var.gpu, log_gamma.gpu, beta.gpu, eps,
                                         out.gpu, logdet.gpu);
            } else {
                cpu().batch_norm_forward(in.cpu, mean.cpu, var.cpu, log_gamma.cpu, beta.cpu, eps,
                                         out.cpu, logdet.cpu);
                gpu().batch_norm_forward(in.gpu, mean.gpu, var.gpu, log_gamma.gpu, beta.gpu, eps,
                                         out.gpu, logdet.gpu);
            }
            expect(out, kApprox, inverse ? "batch_norm_inverse x" : "batch_norm_forward z", s);
            expect(logdet, kApprox, inverse ? "batch_norm_inverse logdet" : "batch_norm_forward logdet", s);
        }
}

// Both gradient paths: through the batch's own mean and variance, and with
// fixed (running) statistics.
Test(cuda_flows, batch_norm_backward_with_and_without_batch_stats) {
    unsigned seed = 800;
    const float eps = 1e-5f;
    for (const Shape s : kShapes)
        for (bool batch_stats : {true, false}) {
            Pair x = random_pair({s.rows, s.cols}, ++seed, -3.0f, 3.0f);
            Pair mean = filled_pair({s.cols}, 0.0f), var = filled_pair({s.cols}, 0.0f);
            cpu().batch_norm_stats(x.cpu, mean.cpu, var.cpu);
            // The same statistics on both sides, so only the backward is compared.
            gpu().upload(mean.gpu, values(mean.cpu).data());
            gpu().upload(var.gpu, values(var.cpu).data());
            Pair log_gamma = random_pair({s.cols}, ++seed);
            Pair dz = random_pair({s.rows, s.cols}, ++seed);
            Pair dlogdet = random_pair({s.rows}, ++seed);
            Pair dx = random_pair({s.rows, s.cols}, ++seed); // overwritten
            Pair dlog_gamma = random_pair({s.cols}, ++seed), dbeta = random_pair({s.cols}, ++seed);
            cpu().batch_norm_backward(x.cpu, mean.cpu, var.cpu, log_gamma.cpu, eps, batch_stats,
                                      dz.cpu, dlogdet.cpu, dx.cpu, dlog_gamma.cpu, dbeta.cpu);
            gpu().batch_norm_backward(x.gpu, mean.gpu, var.gpu, log_gamma.gpu, eps, batch_stats,
                                      dz.gpu, dlogdet.gpu, dx.gpu, dlog_gamma.gpu, dbeta.gpu);
            const std::string tag = batch_stats ? " (batch stats)" : " (fixed stats)";
            expect(dx, kApprox, ("batch_norm_backward dx" + tag).c_str(), s);
            expect(dlog_gamma, kApprox, ("batch_norm_backward dlog_gamma" + tag).c_str(), s);
            expect(dbeta, kApprox, ("batch_norm_backward dbeta" + tag).c_str(), s);
        }
}

Test(cuda_flows, batch_norm_update_running_unbiases_the_variance) {
    unsigned seed = 900;
    for (size_t n : {size_t(1), size_t(2), size_t(256)}) {
        const Shape s{n, 13};
        Pair mean = random_pair({s.cols}, ++seed), var = random_pair({s.cols}, ++seed, 0.1f, 2.0f);
        Pair rmean = random_pair({s.cols}, ++seed), rvar = random_pair({s.cols}, ++seed, 0.1f, 2.0f);
        cpu().batch_norm_update_running(mean.cpu, var.cpu, 0.1f, n, rmean.cpu, rvar.cpu);
        gpu().batch_norm_update_running(mean.gpu, var.gpu, 0.1f, n, rmean.gpu, rvar.gpu);
        expect(rmean, kSameMath, "batch_norm_update_running mean", s);
        expect(rvar, kSameMath, "batch_norm_update_running var", s);
    }
}

// --- preprocessing ----------------------------------------------------------------

Test(cuda_flows, dequantize_draws_the_cpu_philox_numbers) {
    unsigned seed = 1000;
    for (const Shape s : kShapes)
        for (uint64_t stream : {uint64_t(0), uint64_t(7), (uint64_t(1) << 40) + 3}) {
            Vec pixels = random_vec(s.rows * s.cols, ++seed, 0.0f, 256.0f);
            for (float &v : pixels) v = std::floor(v);
            Pair x = pair({s.rows, s.cols}, pixels);
            Pair y = filled_pair({s.rows, s.cols}, 0.0f);
            const uint64_t key = 0x9E3779B97F4A7C15ull + seed;
            cpu().dequantize_forward(x.cpu, 256.0f, key, stream, 5, y.cpu);
            gpu().dequantize_forward(x.gpu, 256.0f, key, stream, 5, y.gpu);
            expect(y, kSameMath, "dequantize_forward", s);
        }
}

Test(cuda_flows, dequantize_inverse_clamps) {
    unsigned seed = 1100;
    for (const Shape s : kShapes) {
        Pair y = random_pair({s.rows, s.cols}, ++seed, -0.1f, 1.1f);
        Pair x = filled_pair({s.rows, s.cols}, 0.0f);
        cpu().dequantize_inverse(y.cpu, 256.0f, x.cpu);
        gpu().dequantize_inverse(y.gpu, 256.0f, x.gpu);
        expect(x, kExact, "dequantize_inverse", s);
    }
}

// Values of x in (0, 1) plus exact 0 and 1, which with alpha = 0 hit the clamp.
static Vec logit_inputs(Shape s, unsigned seed) {
    Vec v = random_vec(s.rows * s.cols, seed, 0.0f, 1.0f);
    for (size_t k = 0; k < v.size(); k += 5) v[k] = float(k / 5 % 2);
    return v;
}

Test(cuda_flows, logit_forward_and_backward) {
    unsigned seed = 1200;
    for (const Shape s : kShapes)
        for (float alpha : {0.0f, 0.05f}) {
            Pair x = pair({s.rows, s.cols}, logit_inputs(s, ++seed));
            Pair z = filled_pair({s.rows, s.cols}, 0.0f);
            Pair logdet = random_pair({s.rows}, ++seed); // accumulates
            cpu().logit_forward(x.cpu, alpha, z.cpu, logdet.cpu);
            gpu().logit_forward(x.gpu, alpha, z.gpu, logdet.gpu);
            expect(z, kApprox, "logit_forward z", s);
            expect(logdet, kApprox, "logit_forward logdet", s);

            // The clamp's 1 / (y (1 - y)) is 1e12 at x = 0 with alpha = 0:
            // the backward is compared on the open interval only.
            Pair xo = random_pair({s.rows, s.cols}, ++seed, 0.01f, 0.99f);
            Pair dz = random_pair({s.rows, s.cols}, ++seed);
            Pair dlogdet = random_pair({s.rows}, ++seed);
            Pair dx = filled_pair({s.rows, s.cols}, 0.0f);
            cpu().logit_backward(xo.cpu, alpha, dz.cpu, dlogdet.cpu, dx.cpu);
            gpu().logit_backward(xo.gpu, alpha, dz.gpu, dlogdet.gpu, dx.gpu);
            expect(dx, kApprox, "logit_backward dx", s);
        }
}

Test(cuda_flows, logit_inverse) {
    unsigned seed = 1300;
    for (const Shape s : kShapes)
        for (float alpha : {0.0f, 0.05f}) {
            Pair z = random_pair({s.rows, s.cols}, ++seed, -8.0f, 8.0f);
            Pair x = filled_pair({s.rows, s.cols}, 0.0f);
            Pair logdet = random_pair({s.rows}, ++seed); // accumulates
            cpu().logit_inverse(z.cpu, alpha, x.cpu, logdet.cpu);
            gpu().logit_inverse(z.gpu, alpha, x.gpu, logdet.gpu);
            expect(x, kApprox, "logit_inverse x", s);
            expect(logdet, kApprox, "logit_inverse logdet", s);
        }
}

// --- base distributions -------------------------------------------------------------

Test(cuda_flows, normal_log_prob_and_backward) {
    unsigned seed = 1400;
    for (const Shape s : kShapes) {
        Pair z = random_pair({s.rows, s.cols}, ++seed, -3.0f, 3.0f);
        Pair out = filled_pair({s.rows}, 0.0f);
        cpu().normal_log_prob(z.cpu, out.cpu);
        gpu().normal_log_prob(z.gpu, out.gpu);
        expect(out, kSameMath, "normal_log_prob", s);
        Pair dlogp = random_pair({s.rows}, ++seed);
        Pair dz = random_pair({s.rows, s.cols}, ++seed); // overwritten
        cpu().normal_log_prob_backward(z.cpu, dlogp.cpu, dz.cpu);
        gpu().normal_log_prob_backward(z.gpu, dlogp.gpu, dz.gpu);
        expect(dz, kSameMath, "normal_log_prob_backward", s);
    }
}

Test(cuda_flows, logistic_log_prob_and_backward) {
    unsigned seed = 1500;
    for (const Shape s : kShapes) {
        Pair z = random_pair({s.rows, s.cols}, ++seed, -10.0f, 10.0f);
        Pair out = filled_pair({s.rows}, 0.0f);
        cpu().logistic_log_prob(z.cpu, out.cpu);
        gpu().logistic_log_prob(z.gpu, out.gpu);
        expect(out, kApprox, "logistic_log_prob", s);
        Pair dlogp = random_pair({s.rows}, ++seed);
        Pair dz = random_pair({s.rows, s.cols}, ++seed); // overwritten
        cpu().logistic_log_prob_backward(z.cpu, dlogp.cpu, dz.cpu);
        gpu().logistic_log_prob_backward(z.gpu, dlogp.gpu, dz.gpu);
        expect(dz, kApprox, "logistic_log_prob_backward", s);
    }
}

// --- random numbers -------------------------------------------------------------------

Test(cuda_flows, fills_draw_the_cpu_philox_numbers) {
    const uint64_t key = 0x0123456789ABCDEFull;
    for (const Shape s : {Shape{1, 1}, Shape{37, 13}, Shape{1000, 3}})
        for (uint64_t stream : {uint64_t(0), uint64_t(5), (uint64_t(1) << 40) + 3}) {
            Pair t = filled_pair({s.rows, s.cols}, 0.0f);
            cpu().fill_normal(t.cpu, key, stream, 0.5f);
            gpu().fill_normal(t.gpu, key, stream, 0.5f);
            expect(t, kSameMath, "fill_normal", s);
            cpu().fill_logistic(t.cpu, key, stream, 2.0f);
            gpu().fill_logistic(t.gpu, key, stream, 2.0f);
            expect(t, kSameMath, "fill_logistic", s);
            cpu().fill_uniform(t.cpu, key, stream, -3.0f, 5.0f);
            gpu().fill_uniform(t.gpu, key, stream, -3.0f, 5.0f);
            expect(t, kSameMath, "fill_uniform", s);
        }
}

// --- optimizers -------------------------------------------------------------------------

// Several steps in a row, each with a new gradient, so the moments and the
// bias corrections of later steps are compared too.
Test(cuda_flows, adam_several_steps_with_l2_and_decoupled_decay) {
    const size_t n = 1001;
    const Shape s{1, n};
    struct Decay {
        float l2, decoupled;
    };
    unsigned seed = 1600;
    for (const Decay d : {Decay{0.0f, 0.0f}, Decay{0.01f, 0.0f}, Decay{0.0f, 0.1f}}) {
        Pair p = random_pair({n}, ++seed), m = filled_pair({n}, 0.0f), v = filled_pair({n}, 0.0f);
        for (uint64_t step = 1; step <= 5; ++step) {
            Pair g = random_pair({n}, ++seed);
            cpu().adam_update(p.cpu, g.cpu, m.cpu, v.cpu, 1e-2f, 0.9f, 0.999f, 1e-8f, d.l2,
                              d.decoupled, step);
            gpu().adam_update(p.gpu, g.gpu, m.gpu, v.gpu, 1e-2f, 0.9f, 0.999f, 1e-8f, d.l2,
                              d.decoupled, step);
            const std::string tag = " step " + std::to_string(step) + " l2 " +
                                    std::to_string(d.l2) + " decay " + std::to_string(d.decoupled);
            expect(p, kSameMath, ("adam param" + tag).c_str(), s);
            expect(m, kSameMath, ("adam m" + tag).c_str(), s);
            expect(v, kSameMath, ("adam v" + tag).c_str(), s);
        }
    }
}

Test(cuda_flows, sgd_several_steps_plain_and_nesterov) {
    const size_t n = 1001;
    const Shape s{1, n};
    unsigned seed = 1700;
    for (bool nesterov : {false, true}) {
        // Velocity starts from garbage: the first step must overwrite it.
        Pair p = random_pair({n}, ++seed), buf = random_pair({n}, ++seed, 10.0f, 20.0f);
        for (int step = 0; step < 5; ++step) {
            Pair g = random_pair({n}, ++seed);
            cpu().sgd_update(p.cpu, g.cpu, buf.cpu, 0.05f, 0.9f, 0.01f, nesterov, step == 0);
            gpu().sgd_update(p.gpu, g.gpu, buf.gpu, 0.05f, 0.9f, 0.01f, nesterov, step == 0);
            const std::string tag = std::string(nesterov ? " nesterov" : "") + " step " +
                                    std::to_string(step);
            expect(p, kSameMath, ("sgd param" + tag).c_str(), s);
            expect(buf, kSameMath, ("sgd velocity" + tag).c_str(), s);
        }
    }
}

// An empty batch: the column reductions add nothing to the accumulated
// gradients (and write no rows).
Test(cuda_flows, empty_batches_leave_accumulated_gradients_unchanged) {
    const Shape s{0, 5};
    Pair x = filled_pair({0, 5}, 0.0f), dz = filled_pair({0, 5}, 0.0f), dx = filled_pair({0, 5}, 0.0f);
    Pair dlogdet = filled_pair({0}, 0.0f);
    Pair h = filled_pair({0, 10}, 0.0f), dh = filled_pair({0, 10}, 0.0f);
    Pair params = random_pair({5}, 1800);
    Pair grad_a = random_pair({5}, 1801), grad_b = random_pair({5}, 1802);
    cpu().affine_coupling_backward(x.cpu, h.cpu, params.cpu, dz.cpu, dlogdet.cpu, dx.cpu,
                                   dh.cpu, grad_a.cpu);
    gpu().affine_coupling_backward(x.gpu, h.gpu, params.gpu, dz.gpu, dlogdet.gpu, dx.gpu,
                                   dh.gpu, grad_a.gpu);
    expect(grad_a, kExact, "affine_coupling_backward dscale", s);
    cpu().scale_exp_backward(x.cpu, params.cpu, dz.cpu, dlogdet.cpu, dx.cpu, grad_a.cpu);
    gpu().scale_exp_backward(x.gpu, params.gpu, dz.gpu, dlogdet.gpu, dx.gpu, grad_a.gpu);
    expect(grad_a, kExact, "scale_exp_backward ds", s);
    Pair var = random_pair({5}, 1803, 0.1f, 2.0f);
    cpu().batch_norm_backward(x.cpu, params.cpu, var.cpu, params.cpu, 1e-5f, true, dz.cpu,
                              dlogdet.cpu, dx.cpu, grad_a.cpu, grad_b.cpu);
    gpu().batch_norm_backward(x.gpu, params.gpu, var.gpu, params.gpu, 1e-5f, true, dz.gpu,
                              dlogdet.gpu, dx.gpu, grad_a.gpu, grad_b.gpu);
    expect(grad_a, kExact, "batch_norm_backward dlog_gamma", s);
    expect(grad_b, kExact, "batch_norm_backward dbeta", s);
}

// --- errors -----------------------------------------------------------------------------

Test(cuda_flows, shape_errors_are_internal_errors) {
    Tensor x(gpu(), {4, 3}), scale(gpu(), {3}), z(gpu(), {4, 3});
    Tensor bad_h(gpu(), {4, 5}), logdet(gpu(), {4});
    try {
        gpu().affine_coupling_forward(x, bad_h, scale, z, logdet);
        cr_assert_fail("an affine coupling with h of the wrong width succeeded");
    } catch (const flow::Error &e) {
        cr_expect_eq(e.status(), flow::Status::internal, "%s", e.what());
    }
    Tensor empty(gpu(), {0, 3}), mean(gpu(), {3}), var(gpu(), {3});
    try {
        gpu().batch_norm_stats(empty, mean, var);
        cr_assert_fail("batch norm statistics of an empty batch succeeded");
    } catch (const flow::Error &e) {
        cr_expect_eq(e.status(), flow::Status::internal, "%s", e.what());
    }
}
