/*
 * Evaluation on several CPU threads. With more than one thread, flow_log_prob,
 * flow_forward, flow_inverse and flow_sample run row blocks side by side in
 * per-thread replicas of the model (src/model/model.cpp, "lanes"). These tests
 * check that this changes no number (bit for bit, against the same call on
 * one thread) for every kind of transform and base, for batch sizes that
 * leave ragged last blocks and span several sampling chunks, and that an
 * error raised inside one thread's block is reported like any other and
 * leaves the model usable. Training splits batches too (over threads, and
 * into cache-sized parts on each): its steps must be the whole batch's up
 * to the order of float sums.
 */
#include "test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define AC(extra) "{\"type\":\"affine_coupling\"," extra "}"

static const struct {
    const char *name;
    const char *spec;
    size_t dim, context_dim;
} models[] = {
    {"realnvp_d5", "{\"preset\":\"realnvp\",\"dim\":5,\"layers\":4,\"hidden\":[64,64]}", 5, 0},
    {"realnvp_bn_context",
     "{\"preset\":\"realnvp\",\"dim\":4,\"context_dim\":3,\"layers\":3,\"hidden\":[32],"
     "\"batch_norm\":true}",
     4, 3},
    {"nice_logistic", "{\"preset\":\"nice\",\"dim\":6,\"layers\":4,\"hidden\":[64,64]}", 6, 0},
    {"glow_plain", "{\"preset\":\"glow\",\"dim\":6,\"layers\":3,\"hidden\":[64],\"lu\":false}", 6, 0},
    {"maf_mog", "{\"preset\":\"maf\",\"dim\":4,\"layers\":2,\"hidden\":[32,32],\"components\":3}", 4, 0},
    {"iaf_context", "{\"preset\":\"iaf\",\"dim\":3,\"context_dim\":2,\"layers\":2,\"hidden\":[32]}", 3, 2},
    {"planar_radial_mog",
     "{\"dim\":3,\"base\":{\"type\":\"mog\",\"components\":4},\"transforms\":["
     "{\"type\":\"planar\"},{\"type\":\"radial\"},{\"type\":\"planar\"}]}",
     3, 0},
    {"agnostic_made_mog", "{\"preset\":\"made\",\"dim\":4,\"hidden\":[32],\"components\":2,"
                          "\"agnostic\":\"both\",\"ensemble\":3}",
     4, 0},
    {"dequantize_logit",
     "{\"dim\":4,\"base\":{\"type\":\"normal\"},\"transforms\":["
     "{\"type\":\"dequantize\",\"levels\":256},{\"type\":\"logit\",\"alpha\":0.05},"
     AC("\"mask\":\"alternate\",\"parity\":0,\"hidden\":[32]") "]}",
     4, 0},
};

/* 1 and 3 rows: a single block; 300: two blocks of 150; 1100: 512-row
 * blocks and a ragged last one; 4500: two sampling chunks. */
static const size_t batch_sizes[] = {1, 3, 300, 1100, 4500};
enum { max_rows = 4500 };

typedef struct {
    float *log_prob, *z, *z_logdet, *x, *x_logdet, *sample, *sample_lp;
} outputs;

static outputs outputs_alloc(size_t n, size_t dim) {
    outputs o = {malloc(n * sizeof(float)),           malloc(n * dim * sizeof(float)),
                 malloc(n * sizeof(float)),           malloc(n * dim * sizeof(float)),
                 malloc(n * sizeof(float)),           malloc(n * dim * sizeof(float)),
                 malloc(n * sizeof(float))};
    return o;
}

static void outputs_free(outputs *o) {
    free(o->log_prob), free(o->z), free(o->z_logdet), free(o->x), free(o->x_logdet);
    free(o->sample), free(o->sample_lp);
}

/* Every evaluation call on x (data), z (latents) and ctx, at `threads` threads. */
static void evaluate(flow_model *m, int threads, const float *x, const float *z, const float *ctx,
                     size_t n, outputs *o) {
    CHECK_OK(flow_set_num_threads(threads));
    CHECK_OK(flow_log_prob(m, x, ctx, n, o->log_prob));
    CHECK_OK(flow_forward(m, x, ctx, n, o->z, o->z_logdet));
    CHECK_OK(flow_inverse(m, z, ctx, n, o->x, o->x_logdet));
    CHECK_OK(flow_sample(m, n, ctx, 0.8f, 11, o->sample, o->sample_lp));
    CHECK_OK(flow_set_num_threads(0));
}

/* Model i with perturbed parameters, and random inputs for it: data x
 * (integer levels for dequantizing models), latents z (nullable) and
 * context, max_rows rows of each. */
static flow_model *model_and_inputs(size_t i, uint64_t seed, float *x, float *z, float *ctx) {
    flow_model *m = tu_model(models[i].spec, 5);
    tu_perturb_params(m, 0.05, 7);
    const size_t D = models[i].dim, C = models[i].context_dim;
    tu_rng r = tu_rng_make(seed);
    /* Dequantization expects integer levels in [0, 255]. */
    const int levels = strstr(models[i].spec, "dequantize") != NULL;
    for (size_t k = 0; k < max_rows * D; ++k) {
        x[k] = levels ? (float)tu_below(&r, 256) : (float)tu_normal(&r);
        if (z) z[k] = (float)tu_normal(&r);
    }
    for (size_t k = 0; k < max_rows * C; ++k) ctx[k] = (float)tu_normal(&r);
    return m;
}

static void assert_same(const float *a, const float *b, size_t count, const char *model,
                        const char *what, size_t n) {
    if (memcmp(a, b, count * sizeof(float)) == 0) return;
    size_t k = 0;
    while (k < count && memcmp(a + k, b + k, sizeof(float)) == 0) ++k;
    cr_assert_fail("%s, n = %zu: %s differs between 1 and 2 threads at element %zu: %.9g vs %.9g",
                   model, n, what, k, a[k], b[k]);
}

Test(threads, two_threads_give_the_numbers_of_one) {
    static float x[max_rows * 6], z[max_rows * 6], ctx[max_rows * 3];
    for (size_t i = 0; i < sizeof models / sizeof models[0]; ++i) {
        flow_model *m = model_and_inputs(i, 100 + i, x, z, ctx);
        const size_t D = models[i].dim;
        const float *context = models[i].context_dim ? ctx : NULL;
        /* A few steps first: batch-norm running statistics and the actnorm
         * initialization are then part of what the lanes must read. */
        for (int s = 0; s < 2; ++s) CHECK_OK(flow_train_step(m, x, context, 64, NULL));

        for (size_t b = 0; b < sizeof batch_sizes / sizeof batch_sizes[0]; ++b) {
            const size_t n = batch_sizes[b];
            outputs one = outputs_alloc(n, D), two = outputs_alloc(n, D);
            evaluate(m, 1, x, z, context, n, &one);
            evaluate(m, 2, x, z, context, n, &two);
            const char *name = models[i].name;
            assert_same(one.log_prob, two.log_prob, n, name, "log_prob", n);
            assert_same(one.z, two.z, n * D, name, "forward z", n);
            assert_same(one.z_logdet, two.z_logdet, n, name, "forward logdet", n);
            assert_same(one.x, two.x, n * D, name, "inverse x", n);
            assert_same(one.x_logdet, two.x_logdet, n, name, "inverse logdet", n);
            assert_same(one.sample, two.sample, n * D, name, "sample", n);
            assert_same(one.sample_lp, two.sample_lp, n, name, "sample log_prob", n);
            cr_assert(tu_all_finite(two.log_prob, n) && tu_all_finite(two.sample, n * D),
                      "%s, n = %zu: non-finite results", name, n);
            outputs_free(&one);
            outputs_free(&two);
        }
        flow_model_free(m);
    }
}

/* One SGD step (lr 0.01) of a copy of m at `threads` threads on n rows:
 * the loss, and the parameters' change (-lr x the gradient) in delta. */
static double sgd_step(const flow_model *m, int threads, const float *x, const float *ctx,
                       size_t n, float *delta) {
    flow_model *copy = NULL;
    CHECK_OK(flow_model_clone(&copy, m, FLOW_DEVICE_CPU));
    CHECK_OK(flow_model_set_optimizer(copy, "{\"type\": \"sgd\", \"lr\": 0.01}"));
    size_t count = 0;
    float *before = tu_get_params(copy, &count);
    float loss = 0.0f;
    CHECK_OK(flow_set_num_threads(threads));
    CHECK_OK(flow_train_step(copy, x, ctx, n, &loss));
    CHECK_OK(flow_set_num_threads(0));
    float *after = tu_get_params(copy, &count);
    for (size_t k = 0; k < count; ++k) delta[k] = after[k] - before[k];
    free(before);
    free(after);
    flow_model_free(copy);
    return loss;
}

/* Training on several threads gives each thread a part of the batch and adds
 * up the parts' gradients (src/model/model.cpp, lanes), so two threads must
 * give one thread's step up to the order of float sums: the same loss to
 * 1e-6 and the same parameter change to 1e-4 of the largest (each part's
 * dequantization noise is that of its rows in the whole batch). A model
 * that cannot split a batch (batch norm) gives it bit for bit, as does a
 * batch too small to split (63 rows). */
Test(threads, training_on_two_threads_matches_one) {
    static float x[max_rows * 6], ctx[max_rows * 3];
    const size_t sizes[] = {63, 64, 300, 4500};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; ++i) {
        flow_model *m = model_and_inputs(i, 200 + i, x, NULL, ctx);
        const float *context = models[i].context_dim ? ctx : NULL;
        /* A first step: actnorm's initializing step uses the whole batch. */
        CHECK_OK(flow_set_num_threads(1));
        CHECK_OK(flow_train_step(m, x, context, 64, NULL));
        CHECK_OK(flow_set_num_threads(0));
        const int whole_batch = strstr(models[i].spec, "batch_norm") != NULL;

        size_t count = 0;
        free(tu_get_params(m, &count));
        float *one = malloc(count * sizeof(float)), *two = malloc(count * sizeof(float));
        for (size_t b = 0; b < sizeof sizes / sizeof sizes[0]; ++b) {
            const size_t n = sizes[b];
            const double loss_one = sgd_step(m, 1, x, context, n, one);
            const double loss_two = sgd_step(m, 2, x, context, n, two);
            const char *name = models[i].name;
            if (whole_batch || n < 64) {
                cr_assert(loss_one == loss_two, "%s, n = %zu: loss %.9g vs %.9g", name, n,
                          loss_one, loss_two);
                assert_same(one, two, count, name, "the step", n);
                continue;
            }
            cr_assert(fabs(loss_two - loss_one) <= 1e-6 * fabs(loss_one), "%s, n = %zu: loss %.9g vs %.9g",
                      name, n, loss_one, loss_two);
            double largest = 0.0, worst = 0.0;
            for (size_t k = 0; k < count; ++k) {
                largest = fmax(largest, fabs(one[k]));
                worst = fmax(worst, fabs(two[k] - one[k]));
            }
            cr_assert(largest > 0.0 && worst <= 1e-4 * largest,
                      "%s, n = %zu: parameter changes differ by %.3g (largest %.3g)", name, n,
                      worst, largest);
        }
        free(one);
        free(two);
        flow_model_free(m);
    }
}

/* A train step takes a big batch through in cache-sized parts (at most 256
 * rows for these narrow models) and adds up their gradients, so its step
 * must be that of the whole batch at once, which flow_loss_grad computes:
 * the same loss to 1e-6 and the SGD change -lr * gradient to 1e-4 of the
 * largest. 601 rows: parts of 200, 200 and 201; 1100: five of 220.
 * (Dequantizing and agnostic models draw other noise and masks in
 * flow_loss_grad.) */
Test(threads, training_in_parts_matches_the_whole_batch) {
    static float x[max_rows * 6], ctx[max_rows * 3];
    const size_t sizes[] = {601, 1100};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; ++i) {
        if (strstr(models[i].spec, "dequantize") || strstr(models[i].spec, "agnostic")) continue;
        flow_model *m = model_and_inputs(i, 300 + i, x, NULL, ctx);
        const float *context = models[i].context_dim ? ctx : NULL;
        CHECK_OK(flow_train_step(m, x, context, 64, NULL)); /* actnorm's initializing step */
        size_t count = 0;
        free(tu_get_params(m, &count));
        float *delta = malloc(count * sizeof(float)), *grad = malloc(count * sizeof(float));
        for (size_t b = 0; b < sizeof sizes / sizeof sizes[0]; ++b) {
            const size_t n = sizes[b];
            const char *name = models[i].name;
            const double loss = sgd_step(m, 1, x, context, n, delta);
            float whole = 0.0f;
            CHECK_OK(flow_loss_grad(m, x, context, n, &whole, grad, NULL));
            cr_assert(fabs(loss - whole) <= 1e-6 * fabs(whole), "%s, n = %zu: loss %.9g vs %.9g",
                      name, n, loss, whole);
            double largest = 0.0, worst = 0.0;
            for (size_t k = 0; k < count; ++k) {
                largest = fmax(largest, fabs(0.01 * grad[k]));
                worst = fmax(worst, fabs(delta[k] + 0.01 * grad[k]));
            }
            cr_assert(largest > 0.0 && worst <= 1e-4 * largest,
                      "%s, n = %zu: the step differs from -lr * gradient by %.3g (largest %.3g)",
                      name, n, worst, largest);
        }
        free(delta);
        free(grad);
        flow_model_free(m);
    }
}

/* A singular W fails inside the threads' blocks: the call reports it, and
 * once W is mended every call works again with the earlier results. */
Test(threads, an_error_in_a_block_is_reported_and_the_model_stays_usable) {
    enum { N = 2000, D = 3 };
    flow_model *m = tu_model("{\"dim\":3,\"base\":{\"type\":\"normal\"},\"transforms\":["
                             "{\"type\":\"invertible_linear\",\"lu\":false}]}",
                             2);
    size_t count = 0;
    float *good = tu_get_params(m, &count);
    cr_assert_eq(count, (size_t)(D * D));
    static float x[N * D], before[N], after[N], xs[N * D];
    tu_rng r = tu_rng_make(4);
    for (size_t k = 0; k < N * D; ++k) x[k] = (float)tu_normal(&r);
    CHECK_OK(flow_set_num_threads(2));
    CHECK_OK(flow_log_prob(m, x, NULL, N, before));

    float singular[D * D] = {1, 2, 3, 2, 4, 6, 0, 1, 0}; /* row 2 = 2 x row 1 */
    CHECK_OK(flow_model_set_params(m, singular, D * D));
    CHECK_STATUS(flow_log_prob(m, x, NULL, N, after), FLOW_ERR_NUMERIC);
    cr_assert_not_null(strstr(flow_last_error(), "singular"), "message: %s", flow_last_error());
    CHECK_STATUS(flow_sample(m, N, NULL, 1.0f, 3, xs, NULL), FLOW_ERR_NUMERIC);
    CHECK_STATUS(flow_inverse(m, x, NULL, N, xs, NULL), FLOW_ERR_NUMERIC);

    CHECK_OK(flow_model_set_params(m, good, count));
    CHECK_OK(flow_log_prob(m, x, NULL, N, after));
    cr_assert_eq(memcmp(before, after, sizeof before), 0, "log_prob changed after the failed calls");
    CHECK_OK(flow_set_num_threads(0));
    free(good);
    flow_model_free(m);
}
