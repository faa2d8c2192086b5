/*
 * Behaviour specific to the Glow steps, the planar flow's numerical inverse
 * and the mixture-of-Gaussians base, beyond the per-transform properties of
 * test_transforms.c:
 *
 *   actnorm         identity before training; data-dependent init on the
 *                   first successful training batch (zero mean, unit
 *                   variance); a failed step initializes nothing; the flag
 *                   is saved, so neither a later step nor a loaded model
 *                   initializes again
 *   invertible_linear  starts as a rotation (log-det 0, norms kept); the
 *                   inverse follows the weights through changes
 *   planar          the inverse stays accurate near the invertibility limit
 *                   w.u_hat -> -1
 *   mog             sampling: component frequencies, means, and spreads
 *                   scaled by the temperature
 */
#include "test_util.h"

static const char *ACTNORM = "{\"dim\":3,\"transforms\":[{\"type\":\"actnorm\"}]}";
static const float SHIFT[3] = {1.0f, -2.0f, 5.0f}, SCALE[3] = {2.0f, 0.5f, 3.0f};

static void actnorm_batch(float *x, size_t n, uint64_t seed, float offset) {
    tu_rng r = tu_rng_make(seed);
    for (size_t i = 0; i < n * 3; i++) x[i] = (float)(SHIFT[i % 3] + SCALE[i % 3] * tu_normal(&r)) + offset;
}

/* Per-column mean and (biased) variance of z [n, 3]. */
static void column_stats(const float *z, size_t n, double *mean, double *var) {
    for (int j = 0; j < 3; j++) {
        mean[j] = var[j] = 0;
        for (size_t i = 0; i < n; i++) mean[j] += z[i * 3 + j] / (double)n;
        for (size_t i = 0; i < n; i++) var[j] += (z[i * 3 + j] - mean[j]) * (z[i * 3 + j] - mean[j]) / (double)n;
    }
}

static double max_param_change(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

Test(glow, actnorm_data_dependent_init) {
    enum { N = 512 };
    static float x[N * 3], z[N * 3], bad[N * 3];
    float ld[N];
    flow_model *m = tu_model(ACTNORM, 1);
    /* a learning rate so small that parameters stay where the init put them */
    CHECK_OK(flow_model_set_optimizer(m, "{\"type\":\"sgd\",\"lr\":1e-12}"));
    actnorm_batch(x, N, 1, 0.0f);

    /* identity before the first training step */
    CHECK_OK(flow_forward(m, x, NULL, N, z, ld));
    cr_assert_eq(memcmp(x, z, sizeof x), 0, "actnorm is not the identity before training");
    cr_assert_eq(ld[0], 0.0f);

    /* a failed first step (its variance overflows: the loss is not finite)
     * changes nothing and initializes nothing */
    for (size_t i = 0; i < N * 3; i++) bad[i] = (i % 3 == 0) ? ((i / 3) % 2 ? 3e38f : -3e38f) : 0.0f;
    CHECK_STATUS(flow_train_step(m, bad, NULL, N, NULL), FLOW_ERR_NUMERIC);
    cr_assert_eq(flow_model_step_count(m), 0u);
    size_t p;
    float *w = tu_get_params(m, &p);
    for (size_t i = 0; i < p; i++) cr_assert_eq(w[i], 0.0f, "a failed step changed parameter %zu", i);
    free(w);

    /* the first successful step initializes from its batch */
    CHECK_OK(flow_train_step(m, x, NULL, N, NULL));
    CHECK_OK(flow_forward(m, x, NULL, N, z, ld));
    double mean[3], var[3];
    column_stats(z, N, mean, var);
    TU_REPORT("[actnorm] after init: column means %.2g %.2g %.2g, variances %.6f %.6f %.6f", mean[0], mean[1],
              mean[2], var[0], var[1], var[2]);
    for (int j = 0; j < 3; j++) {
        cr_assert_leq(fabs(mean[j]), 1e-5, "column %d mean %g after init", j, mean[j]);
        cr_assert_leq(fabs(var[j] - 1.0), 1e-5, "column %d variance %g after init", j, var[j]);
    }

    /* a later step on very different data does not initialize again */
    float *w1 = tu_get_params(m, NULL);
    actnorm_batch(x, N, 2, 10.0f);
    CHECK_OK(flow_train_step(m, x, NULL, N, NULL));
    float *w2 = tu_get_params(m, NULL);
    cr_assert_leq(max_param_change(w1, w2, p), 1e-6, "actnorm initialized twice");

    /* nor does a loaded model: the flag is saved with it */
    size_t len = 0;
    unsigned char *buf = tu_save(m, &len);
    flow_model *r = NULL;
    CHECK_OK(flow_model_load_buffer(&r, buf, len, FLOW_DEVICE_CPU));
    CHECK_OK(flow_train_step(r, x, NULL, N, NULL));
    float *w3 = tu_get_params(r, NULL);
    cr_assert_leq(max_param_change(w2, w3, p), 1e-6, "a loaded actnorm initialized again");

    /* while a fresh model initializes on that data */
    flow_model *f = tu_model(ACTNORM, 1);
    CHECK_OK(flow_model_set_optimizer(f, "{\"type\":\"sgd\",\"lr\":1e-12}"));
    CHECK_OK(flow_train_step(f, x, NULL, N, NULL));
    float *w4 = tu_get_params(f, NULL);
    cr_assert_geq(max_param_change(w2, w4, p), 1.0, "fresh model did not initialize");

    free(w1); free(w2); free(w3); free(w4); free(buf);
    flow_model_free(f);
    flow_model_free(r);
    flow_model_free(m);
}

Test(glow, invertible_linear_starts_as_rotation) {
    const char *specs[] = {"{\"dim\":6,\"transforms\":[{\"type\":\"invertible_linear\"}]}",
                           "{\"dim\":6,\"transforms\":[{\"type\":\"invertible_linear\",\"lu\":false}]}"};
    for (int s = 0; s < 2; s++) {
        flow_model *m = tu_model(specs[s], 5);
        float x[16 * 6], z[16 * 6], ld[16];
        tu_rng r = tu_rng_make(3);
        for (int i = 0; i < 16 * 6; i++) x[i] = (float)tu_normal(&r);
        CHECK_OK(flow_forward(m, x, NULL, 16, z, ld));
        double max_norm_err = 0;
        for (int i = 0; i < 16; i++) {
            double nx = 0, nz = 0;
            for (int j = 0; j < 6; j++) {
                nx += (double)x[i * 6 + j] * x[i * 6 + j];
                nz += (double)z[i * 6 + j] * z[i * 6 + j];
            }
            max_norm_err = fmax(max_norm_err, fabs(sqrt(nx) - sqrt(nz)));
            cr_assert_leq(fabs(ld[i]), 1e-5, "%s: initial log-det %g", specs[s], ld[i]);
        }
        TU_REPORT("[invertible_linear] %s: initial max | |z| - |x| | = %.3g", s ? "plain" : "lu", max_norm_err);
        cr_assert_leq(max_norm_err, 1e-5);
        cr_assert_neq(memcmp(x, z, sizeof x), 0, "the initial W is the identity");
        flow_model_free(m);
    }
}

/* The inverse keeps W^-T between calls while W stays the same: it must
 * follow W through a parameter change and a train step. */
Test(glow, invertible_linear_inverse_follows_the_weights) {
    const char *specs[] = {"{\"dim\":5,\"transforms\":[{\"type\":\"invertible_linear\"}]}",
                           "{\"dim\":5,\"transforms\":[{\"type\":\"invertible_linear\",\"lu\":false}]}"};
    for (int s = 0; s < 2; s++) {
        flow_model *m = tu_model(specs[s], 11);
        float x[32 * 5], z[32 * 5], back[32 * 5], ld[32], ld_back[32];
        tu_rng r = tu_rng_make(4);
        for (int i = 0; i < 32 * 5; i++) x[i] = (float)tu_normal(&r);
        for (int change = 0; change < 3; change++) {
            if (change == 1) tu_perturb_params(m, 0.3, 9);
            if (change == 2) CHECK_OK(flow_train_step(m, x, NULL, 32, NULL));
            CHECK_OK(flow_forward(m, x, NULL, 32, z, ld));
            CHECK_OK(flow_inverse(m, z, NULL, 32, back, ld_back));
            for (int i = 0; i < 32 * 5; i++)
                cr_assert_leq(fabs(back[i] - x[i]), 1e-4, "%s after change %d: x %g, round trip %g",
                              specs[s], change, x[i], back[i]);
            for (int i = 0; i < 32; i++)
                cr_assert_leq(fabs(ld[i] + ld_back[i]), 1e-4, "%s after change %d: log-dets %g, %g",
                              specs[s], change, ld[i], ld_back[i]);
        }
        flow_model_free(m);
    }
}

Test(glow, planar_inverse_near_the_limit) {
    /* params: w [2], u [2], b: w = (1, 0), w.u = -8 gives w.u_hat =
     * -1 + softplus(-8) = -0.99966: forward is nearly flat around a = 0 */
    flow_model *m = tu_model("{\"dim\":2,\"transforms\":[{\"type\":\"planar\"}]}", 1);
    const float params[5] = {1.0f, 0.0f, -8.0f, 0.3f, 0.1f};
    CHECK_OK(flow_model_set_params(m, params, 5));
    enum { N = 201 };
    float x[N * 2], z[N * 2], x2[N * 2], ldf[N], ldi[N];
    for (int i = 0; i < N; i++) {
        x[2 * i] = -3.0f + 6.0f * (float)i / (N - 1);
        x[2 * i + 1] = 0.5f;
    }
    CHECK_OK(flow_forward(m, x, NULL, N, z, ldf));
    CHECK_OK(flow_inverse(m, z, NULL, N, x2, ldi));
    double max_err = 0, max_ld = 0;
    for (int i = 0; i < 2 * N; i++) max_err = fmax(max_err, fabs((double)x2[i] - x[i]));
    for (int i = 0; i < N; i++) max_ld = fmax(max_ld, fabs((double)ldf[i] + ldi[i]));
    TU_REPORT("[planar] near w.u_hat = -1: max round-trip error %.3g, max |ld_f + ld_i| %.3g, min ld %.3f",
              max_err, max_ld, ldf[N / 2]);
    /* z is insensitive to x near a = 0 (dz/dx ~ 3e-4 there), so float
     * rounding of z is amplified by ~3000 in x */
    cr_assert_leq(max_err, 2e-3, "planar inverse error %g", max_err);
    cr_assert_leq(max_ld, 1e-3);
    flow_model_free(m);
}

Test(glow, mog_sampling) {
    /* params: logits [2], means [2, 2], log_scales [2, 2] */
    flow_model *m = tu_model("{\"dim\":2,\"base\":{\"type\":\"mog\",\"components\":2},\"transforms\":[]}", 1);
    const float ls0 = (float)log(0.5), ls1 = (float)log(2.0);
    const float params[10] = {0.0f, (float)log(3.0), 10.0f, 10.0f, -10.0f, -10.0f, ls0, ls0, ls1, ls1};
    CHECK_OK(flow_model_set_params(m, params, 10));
    enum { N = 40000 };
    static float x[N * 2];
    for (int t = 0; t < 2; t++) {
        const double temp = t ? 0.5 : 1.0;
        CHECK_OK(flow_sample(m, N, NULL, (float)temp, 9, x, NULL));
        double cnt[2] = {0}, mean[2] = {0}, sq[2] = {0};
        for (int i = 0; i < N; i++) {
            int k = x[2 * i] + x[2 * i + 1] < 0; /* component 1 sits at (-10, -10) */
            cnt[k]++;
            mean[k] += x[2 * i];
            sq[k] += (double)x[2 * i] * x[2 * i];
        }
        double frac = cnt[1] / N;
        double m0 = mean[0] / cnt[0], m1 = mean[1] / cnt[1];
        double s0 = sqrt(sq[0] / cnt[0] - m0 * m0), s1 = sqrt(sq[1] / cnt[1] - m1 * m1);
        TU_REPORT("[mog] T=%.1f: weight of component 1 %.4f (0.75), means %.3f %.3f (10, -10), stds %.3f %.3f (%.2f, %.2f)",
                  temp, frac, m0, m1, s0, s1, 0.5 * temp, 2.0 * temp);
        cr_assert_leq(fabs(frac - 0.75), 0.01);
        cr_assert_leq(fabs(m0 - 10.0), 0.03);
        cr_assert_leq(fabs(m1 + 10.0), 0.05);
        cr_assert_leq(fabs(s0 / (0.5 * temp) - 1.0), 0.03);
        cr_assert_leq(fabs(s1 / (2.0 * temp) - 1.0), 0.03);
    }
    flow_model_free(m);
}
