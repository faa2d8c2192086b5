/*
 * Autoregressive flows (MADE / MAF / IAF), beyond the table of
 * test_transforms.c (which gives every made_affine row round trip, log-det vs
 * Jacobian, gradients, density, save/load and sample-vs-log_prob):
 *
 *   causality   z_d (MAF forward, IAF inverse: the one-pass directions) moves
 *               with x_j only for j = d or j before d in the order, and only
 *               linearly in x_d: the conditioner's Jacobian is strictly
 *               triangular in the order (checked bit-exactly)
 *   fast_slow   flow_sample's log-density of each sample == flow_log_prob of
 *               it, for MAF (slow sample) and IAF (slow log_prob), D = 8
 *   duality     same MADE weights: IAF inverse == MAF forward and IAF forward
 *               == MAF inverse (values and log-dets)
 *   learning    MAF / IAF on eight_gaussians and two_moons (stated NLLs), and
 *               a conditional MAF that learns p(x | c)
 */
#include "test_util.h"

#define MADE_SPEC(dir, dim, order, act)                                               \
    "{\"dim\":" #dim ",\"context_dim\":0,\"base\":{\"type\":\"normal\"},"              \
    "\"transforms\":[{\"type\":\"made_affine\",\"direction\":\"" dir "\",\"order\":" order \
    ",\"mask_seed\":11,\"hidden\":[24,24],\"activation\":\"" act "\"}]}"

static const int ORDER5[5] = {2, 0, 3, 1, 4};

/* out = f(in) through flow_forward (forward != 0) or flow_inverse */
static void apply(flow_model *m, int forward, const float *in, size_t n, float *out) {
    if (forward)
        CHECK_OK(flow_forward(m, in, NULL, n, out, NULL));
    else
        CHECK_OK(flow_inverse(m, in, NULL, n, out, NULL));
}

static void check_causal(const char *spec, int forward, const char *label) {
    flow_model *m = tu_model(spec, 3);
    tu_perturb_params(m, 0.3, 99);
    enum { D = 5 };
    int rank[D];
    for (int k = 0; k < D; k++) rank[ORDER5[k]] = k;
    tu_rng r = tu_rng_make(5);
    size_t violations = 0, checked = 0;
    for (int p = 0; p < 3; p++) {
        float x[D], x1[D], x2[D], z[D], z1[D], z2[D];
        for (int j = 0; j < D; j++) x[j] = (float)tu_normal(&r);
        apply(m, forward, x, 1, z);
        for (int j = 0; j < D; j++) {
            memcpy(x1, x, sizeof x);
            memcpy(x2, x, sizeof x);
            x1[j] += 0.25f;
            x2[j] += 0.5f;
            apply(m, forward, x1, 1, z1);
            apply(m, forward, x2, 1, z2);
            for (int i = 0; i < D; i++) {
                checked++;
                if (rank[j] > rank[i]) {
                    /* a later input: z_i must not move at all */
                    if (z1[i] != z[i] || z2[i] != z[i]) violations++;
                } else if (i == j) {
                    /* z_i is affine in x_i (mu_i, alpha_i do not see x_i) */
                    double second = (double)z2[i] - 2.0 * z1[i] + z[i];
                    if (fabs(second) > 1e-4 * (1 + fabs(z2[i] - z[i]))) violations++;
                }
            }
        }
    }
    TU_REPORT("[causality] %-28s %zu (output, input) pairs checked, %zu violations", label, checked, violations);
    cr_assert_eq(violations, 0, "%s: %zu causality violations", label, violations);
    flow_model_free(m);
}

Test(autoregressive, causality_maf_forward) {
    check_causal(MADE_SPEC("maf", 5, "[2,0,3,1,4]", "relu"), 1, "maf forward (one pass)");
}
Test(autoregressive, causality_maf_inverse) {
    /* MAF's D-pass inverse: x_d depends on z_j for j up to d in the order */
    check_causal(MADE_SPEC("maf", 5, "[2,0,3,1,4]", "tanh"), 0, "maf inverse (D passes)");
}
Test(autoregressive, causality_iaf_inverse) {
    check_causal(MADE_SPEC("iaf", 5, "[2,0,3,1,4]", "elu"), 0, "iaf inverse (one pass)");
}
Test(autoregressive, causality_iaf_forward) {
    check_causal(MADE_SPEC("iaf", 5, "[2,0,3,1,4]", "tanh"), 1, "iaf forward (D passes)");
}

static void check_fast_slow(const char *spec, const char *label) {
    flow_model *m = tu_model(spec, 4);
    tu_perturb_params(m, 0.2, 7);
    size_t n = 500, d = flow_model_dim(m);
    float *x = malloc(n * d * sizeof *x), *ls = malloc(n * sizeof *ls), *lp = malloc(n * sizeof *lp);
    CHECK_OK(flow_sample(m, n, NULL, 1.0f, 21, x, ls));
    CHECK_OK(flow_log_prob(m, x, NULL, n, lp));
    double max_err = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)ls[i] - lp[i]) / (1 + fabs(lp[i]));
        if (e > max_err) max_err = e;
    }
    TU_REPORT("[fast_slow] %-28s max |sample log-density - flow_log_prob|/(1+|lp|) = %.3g", label, max_err);
    cr_assert_leq(max_err, 1e-4, "%s: %g", label, max_err);
    free(x); free(ls); free(lp);
    flow_model_free(m);
}

Test(autoregressive, fast_slow_maf) {
    check_fast_slow("{\"preset\":\"maf\",\"dim\":8,\"layers\":3,\"hidden\":[32],\"activation\":\"tanh\"}", "maf d8 (sample slow)");
}
Test(autoregressive, fast_slow_iaf) {
    check_fast_slow("{\"preset\":\"iaf\",\"dim\":8,\"layers\":3,\"hidden\":[32],\"activation\":\"tanh\"}", "iaf d8 (log_prob slow)");
}

Test(autoregressive, maf_iaf_duality) {
    const char *maf_spec = MADE_SPEC("maf", 5, "[2,0,3,1,4]", "relu");
    const char *iaf_spec = MADE_SPEC("iaf", 5, "[2,0,3,1,4]", "relu");
    flow_model *maf = tu_model(maf_spec, 8), *iaf = tu_model(iaf_spec, 9);
    tu_perturb_params(maf, 0.3, 17);
    size_t pc = 0;
    float *w = tu_get_params(maf, &pc);
    cr_assert_eq(flow_model_param_count(iaf), pc);
    CHECK_OK(flow_model_set_params(iaf, w, pc));
    enum { N = 64, D = 5 };
    float in[N * D], a[N * D], b[N * D], la[N], lb[N];
    tu_rng r = tu_rng_make(3);
    for (size_t i = 0; i < N * D; i++) in[i] = (float)tu_normal(&r);
    double e1 = 0, e2 = 0, l1 = 0, l2 = 0;
    CHECK_OK(flow_inverse(iaf, in, NULL, N, a, la));
    CHECK_OK(flow_forward(maf, in, NULL, N, b, lb));
    for (size_t i = 0; i < N * D; i++) e1 = fmax(e1, fabs((double)a[i] - b[i]));
    for (size_t i = 0; i < N; i++) l1 = fmax(l1, fabs((double)la[i] - lb[i]));
    CHECK_OK(flow_forward(iaf, in, NULL, N, a, la));
    CHECK_OK(flow_inverse(maf, in, NULL, N, b, lb));
    for (size_t i = 0; i < N * D; i++) e2 = fmax(e2, fabs((double)a[i] - b[i]));
    for (size_t i = 0; i < N; i++) l2 = fmax(l2, fabs((double)la[i] - lb[i]));
    TU_REPORT("[duality] |IAF inverse - MAF forward| = %.3g (logdet %.3g); |IAF forward - MAF inverse| = %.3g (logdet %.3g)",
              e1, l1, e2, l2);
    cr_assert_eq(e1, 0.0);
    cr_assert_eq(l1, 0.0);
    cr_assert_leq(e2, 1e-6);
    cr_assert_leq(l2, 1e-6);
    free(w);
    flow_model_free(maf);
    flow_model_free(iaf);
}

/* ------------------------------------------------------------------------ */
/* learning                                                                  */
/* ------------------------------------------------------------------------ */

enum { TEST_N = 10000 };
#define EIGHT_GAUSSIANS_ENTROPY 2.838

static double test_nll(flow_model *m, const char *dataset) {
    static float x[TEST_N * 2], lp[TEST_N];
    CHECK_OK(flow_toy_data(dataset, TEST_N, 987654321, x));
    CHECK_OK(flow_log_prob(m, x, NULL, TEST_N, lp));
    double s = 0;
    for (int i = 0; i < TEST_N; i++) s -= lp[i];
    return s / TEST_N;
}

static double train_toy(flow_model *m, const char *dataset, int steps, int batch, double lr1, double lr2,
                        const char *label) {
    float *x = malloc((size_t)batch * 2 * sizeof *x);
    char opt[96];
    for (int step = 0; step < steps; step++) {
        if (step == 0 || step == steps * 3 / 4) {
            snprintf(opt, sizeof opt, "{\"type\":\"adam\",\"lr\":%g}", step == 0 ? lr1 : lr2);
            CHECK_OK(flow_model_set_optimizer(m, opt));
        }
        CHECK_OK(flow_toy_data(dataset, (size_t)batch, 1000 + (uint64_t)step, x));
        float loss = 0;
        CHECK_OK(flow_train_step(m, x, NULL, (size_t)batch, &loss));
        cr_assert(isfinite(loss));
    }
    free(x);
    double nll = test_nll(m, dataset);
    TU_REPORT("[learning] %-24s %d steps of %d: test NLL %.4f", label, steps, batch, nll);
    return nll;
}

Test(autoregressive, maf_eight_gaussians, .timeout = 600) {
    flow_model *m = tu_model("{\"preset\":\"maf\",\"dim\":2,\"layers\":8,\"hidden\":[32,32]}", 11);
    double nll = train_toy(m, "eight_gaussians", 4000, 256, 3e-3, 1e-3, "maf/eight_gaussians");
    TU_REPORT("[learning] MAF on eight_gaussians: test NLL %.4f (entropy %.3f, bound %.3f)", nll,
              EIGHT_GAUSSIANS_ENTROPY, EIGHT_GAUSSIANS_ENTROPY + 0.2);
    cr_assert_leq(nll, EIGHT_GAUSSIANS_ENTROPY + 0.2);
    cr_assert_geq(nll, EIGHT_GAUSSIANS_ENTROPY - 0.05);
    flow_model_free(m);
}

/* measured (these seeds and schedules): MAF two_moons 1.054, IAF two_moons
 * 1.058, IAF eight_gaussians 3.004; MAF eight_gaussians 2.943 */
#define TWO_MOONS_MAF_MAX 1.20
#define TWO_MOONS_IAF_MAX 1.20
#define EIGHT_GAUSSIANS_IAF_MAX 3.15

Test(autoregressive, maf_two_moons, .timeout = 600) {
    flow_model *m = tu_model("{\"preset\":\"maf\",\"dim\":2,\"layers\":5,\"hidden\":[64,64]}", 12);
    double nll = train_toy(m, "two_moons", 1500, 256, 3e-3, 1e-3, "maf/two_moons");
    cr_assert_leq(nll, TWO_MOONS_MAF_MAX, "MAF reached %.4f on two_moons", nll);
    flow_model_free(m);
}

/* IAF trained by maximum likelihood through its slow (D-pass) direction */
Test(autoregressive, iaf_two_moons, .timeout = 600) {
    flow_model *m = tu_model("{\"preset\":\"iaf\",\"dim\":2,\"layers\":5,\"hidden\":[64,64]}", 13);
    double nll = train_toy(m, "two_moons", 1500, 256, 3e-3, 1e-3, "iaf/two_moons");
    cr_assert_leq(nll, TWO_MOONS_IAF_MAX, "IAF reached %.4f on two_moons", nll);
    flow_model_free(m);
}

Test(autoregressive, iaf_eight_gaussians, .timeout = 600) {
    flow_model *m = tu_model("{\"preset\":\"iaf\",\"dim\":2,\"layers\":5,\"hidden\":[64,64]}", 14);
    double nll = train_toy(m, "eight_gaussians", 3000, 256, 3e-3, 1e-3, "iaf/eight_gaussians");
    cr_assert_leq(nll, EIGHT_GAUSSIANS_IAF_MAX, "IAF reached %.4f on eight_gaussians", nll);
    cr_assert_geq(nll, EIGHT_GAUSSIANS_ENTROPY - 0.05);
    flow_model_free(m);
}

/* Conditional MAF: c in {-1, +1}, x | c ~ N(2c (1, 1), 0.5^2 I). The true
 * conditional NLL (entropy) is log(2 pi 0.25) + 1 = 1.452 nats; a model that
 * ignores c can do no better than the mixture, 1.452 + log 2 = 2.145. */
static void cond_batch(size_t n, uint64_t seed, float *x, float *c) {
    tu_rng r = tu_rng_make(seed);
    for (size_t i = 0; i < n; i++) {
        c[i] = tu_uniform(&r) < 0.5 ? -1.0f : 1.0f;
        x[2 * i] = (float)(2.0 * c[i] + 0.5 * tu_normal(&r));
        x[2 * i + 1] = (float)(2.0 * c[i] + 0.5 * tu_normal(&r));
    }
}

Test(autoregressive, conditional_maf_learns_p_x_given_c, .timeout = 600) {
    flow_model *m = tu_model("{\"preset\":\"maf\",\"dim\":2,\"context_dim\":1,\"layers\":3,\"hidden\":[32,32]}", 15);
    cr_assert_eq(flow_model_context_dim(m), 1u);
    enum { B = 128, N = 4000 };
    static float x[N * 2], c[N], lp[N];
    CHECK_OK(flow_model_set_optimizer(m, "{\"type\":\"adam\",\"lr\":1e-3}"));
    for (int step = 0; step < 800; step++) {
        cond_batch(B, 100 + (uint64_t)step, x, c);
        float loss = 0;
        CHECK_OK(flow_train_step(m, x, c, B, &loss));
        cr_assert(isfinite(loss));
    }
    cond_batch(N, 777, x, c);
    CHECK_OK(flow_log_prob(m, x, c, N, lp));
    double nll = 0;
    for (int i = 0; i < N; i++) nll -= lp[i] / N;
    /* samples for each context land around 2c (1, 1) */
    double mean[2] = {0, 0};
    for (int s = 0; s < 2; s++) {
        float cc = s ? 1.0f : -1.0f;
        for (int i = 0; i < N; i++) c[i] = cc;
        CHECK_OK(flow_sample(m, N, c, 1.0f, 5 + (uint64_t)s, x, NULL));
        for (int i = 0; i < 2 * N; i++) mean[s] += x[i] / (2.0 * N);
    }
    TU_REPORT("[learning] conditional MAF: test NLL of x | c %.4f (entropy 1.452, best without c 2.145); "
              "sample means %.3f for c = -1, %.3f for c = +1",
              nll, mean[0], mean[1]);
    cr_assert_leq(nll, 1.452 + 0.1);
    cr_assert_geq(nll, 1.452 - 0.05);
    cr_assert(fabs(mean[0] + 2.0) < 0.15 && fabs(mean[1] - 2.0) < 0.15);
    flow_model_free(m);
}
