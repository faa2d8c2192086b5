/*
 * Parameters that some transforms derive before they compute (MADE's
 * weights sorted into degree order and masked, Glow's W composed from its
 * LU factors) are kept between calls while the parameters stay the same
 * (src/model/param_arena.h, generation()). These tests change the
 * parameters every way the API can, after calls that filled those caches,
 * and check that every evaluation call then gives, bit for bit, what a
 * fresh deep copy of the model (flow_model_clone, no caches) gives: on one
 * thread, and on two, whose per-thread replicas keep caches of their own.
 */
#include "test_util.h"

#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    const char *spec;
    size_t dim, context_dim;
} models[] = {
    {"maf", "{\"preset\":\"maf\",\"dim\":5,\"layers\":3,\"hidden\":[32,32]}", 5, 0},
    {"iaf_context", "{\"preset\":\"iaf\",\"dim\":4,\"context_dim\":2,\"layers\":2,\"hidden\":[32]}",
     4, 2},
    {"maf_mog_base", "{\"preset\":\"maf\",\"dim\":3,\"layers\":1,\"hidden\":[16],\"components\":3}",
     3, 0},
    {"glow_lu", "{\"preset\":\"glow\",\"dim\":6,\"layers\":3,\"hidden\":[32]}", 6, 0},
};

enum { N = 700, max_dim = 6, max_context = 2, values_per_row = 3 * max_dim + 4 };

/* Every evaluation call's outputs for N rows, laid end to end. */
static void evaluate(flow_model *m, int threads, const float *x, const float *z, const float *ctx,
                     float *out) {
    const size_t D = flow_model_dim(m);
    float *lp = out, *zf = lp + N, *zl = zf + N * D, *xi = zl + N, *xl = xi + N * D;
    float *s = xl + N, *sl = s + N * D;
    CHECK_OK(flow_set_num_threads(threads));
    CHECK_OK(flow_log_prob(m, x, ctx, N, lp));
    CHECK_OK(flow_forward(m, x, ctx, N, zf, zl));
    CHECK_OK(flow_inverse(m, z, ctx, N, xi, xl));
    CHECK_OK(flow_sample(m, N, ctx, 0.9f, 5, s, sl));
    CHECK_OK(flow_set_num_threads(0));
}

/* m's outputs now equal those of a fresh copy of it. */
static void expect_fresh(flow_model *m, int threads, const float *x, const float *z,
                         const float *ctx, const char *model, const char *after) {
    static float mine[N * values_per_row], fresh[N * values_per_row];
    const size_t count = N * (3 * flow_model_dim(m) + 4);
    flow_model *copy = NULL;
    CHECK_OK(flow_model_clone(&copy, m, FLOW_DEVICE_CPU));
    evaluate(m, threads, x, z, ctx, mine);
    evaluate(copy, threads, x, z, ctx, fresh);
    for (size_t k = 0; k < count; ++k)
        cr_assert(memcmp(&mine[k], &fresh[k], sizeof(float)) == 0,
                  "%s, %d thread(s), after %s: value %zu is %.9g, a fresh copy gives %.9g", model,
                  threads, after, k, mine[k], fresh[k]);
    flow_model_free(copy);
}

Test(derived_params, follow_every_change_of_the_parameters) {
    static float x[N * max_dim], z[N * max_dim], ctx[N * max_context], scratch[N * values_per_row];
    tu_rng r = tu_rng_make(17);
    for (size_t k = 0; k < N * max_dim; ++k) {
        x[k] = (float)tu_normal(&r);
        z[k] = (float)tu_normal(&r);
    }
    for (size_t k = 0; k < N * max_context; ++k) ctx[k] = (float)tu_normal(&r);

    for (size_t i = 0; i < sizeof models / sizeof models[0]; ++i)
        for (int threads = 1; threads <= 2; ++threads) {
            const char *name = models[i].name;
            const float *context = models[i].context_dim ? ctx : NULL;
            flow_model *m = tu_model(models[i].spec, 3);
            cr_assert_eq(flow_model_dim(m), models[i].dim);

            evaluate(m, threads, x, z, context, scratch); /* fills the caches */
            tu_perturb_params(m, 0.1, 40 + i);           /* flow_model_set_params */
            expect_fresh(m, threads, x, z, context, name, "set_params");

            CHECK_OK(flow_train_step(m, x, context, 64, NULL));
            expect_fresh(m, threads, x, z, context, name, "a train step");
            CHECK_OK(flow_train_step(m, x + 64 * models[i].dim, context, 64, NULL));
            expect_fresh(m, threads, x, z, context, name, "a second train step");
            flow_model_free(m);
        }
}
