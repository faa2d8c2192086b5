/*
 * Error paths of every function of the C API (include/flowlib.h): NULL
 * pointers, empty batches, bad specs and optimizers, contexts, non-finite and
 * out-of-support data, buffers, files, threads. After every refused call the
 * model must be exactly as before (same parameters, same results).
 */
#define _POSIX_C_SOURCE 200809L
#include "test_util.h"

#include <dirent.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#define SPEC2                                                                              \
    "{\"dim\":2,\"context_dim\":0,\"base\":{\"type\":\"normal\"},\"transforms\":["         \
    "{\"type\":\"affine_coupling\",\"mask\":\"alternate\",\"parity\":0,\"hidden\":[8],"   \
    "\"activation\":\"tanh\"},{\"type\":\"reverse\"},"                                    \
    "{\"type\":\"affine_coupling\",\"mask\":\"alternate\",\"parity\":0,\"hidden\":[8],"   \
    "\"activation\":\"tanh\"}]}"

#define SPEC_COND                                                                          \
    "{\"dim\":2,\"context_dim\":3,\"base\":{\"type\":\"normal\"},\"transforms\":["         \
    "{\"type\":\"affine_coupling\",\"mask\":\"alternate\",\"parity\":0,\"hidden\":[8],"   \
    "\"activation\":\"tanh\"}]}"

#define SPEC_DEQ                                                                           \
    "{\"dim\":2,\"context_dim\":0,\"base\":{\"type\":\"normal\"},\"transforms\":["         \
    "{\"type\":\"dequantize\",\"levels\":256},{\"type\":\"logit\",\"alpha\":0.05},"       \
    "{\"type\":\"affine_coupling\",\"mask\":\"alternate\",\"parity\":0,\"hidden\":[8],"   \
    "\"activation\":\"tanh\"}]}"

/* a failed call must say why */
#define CHECK_FAIL(expr, want)                                                 \
    do {                                                                       \
        CHECK_STATUS(expr, want);                                              \
        cr_assert_neq(flow_last_error()[0], '\0', "%s: empty error message",   \
                      #expr);                                                  \
    } while (0)

static flow_model *model2(void) {
    flow_model *m = tu_model(SPEC2, 1);
    tu_perturb_params(m, 0.3, 2);
    return m;
}

static const float X4[8] = {0.1f, -0.3f, 1.2f, 0.4f, -2.0f, 0.5f, 0.0f, 0.9f};

/* ------------------------------------------------------------------------ */
/* version, status, device, threads                                          */
/* ------------------------------------------------------------------------ */

Test(api, version) {
    cr_assert_not_null(flow_version_string());
    cr_assert_str_eq(flow_version_string(), FLOWLIB_VERSION_STRING);
    cr_assert_eq(flow_version_number(), (uint32_t)FLOWLIB_VERSION_NUMBER);
    cr_assert_eq(FLOWLIB_VERSION_NUMBER,
                 FLOWLIB_VERSION_MAJOR * 10000 + FLOWLIB_VERSION_MINOR * 100 + FLOWLIB_VERSION_PATCH);
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", FLOWLIB_VERSION_MAJOR, FLOWLIB_VERSION_MINOR,
             FLOWLIB_VERSION_PATCH);
    cr_assert_str_eq(flow_version_string(), want);
}

Test(api, status_strings) {
    static const struct {
        flow_status s;
        const char *name;
    } all[] = {
        {FLOW_OK, "FLOW_OK"},
        {FLOW_ERR_INVALID_ARGUMENT, "FLOW_ERR_INVALID_ARGUMENT"},
        {FLOW_ERR_SPEC, "FLOW_ERR_SPEC"},
        {FLOW_ERR_IO, "FLOW_ERR_IO"},
        {FLOW_ERR_FORMAT, "FLOW_ERR_FORMAT"},
        {FLOW_ERR_OUT_OF_MEMORY, "FLOW_ERR_OUT_OF_MEMORY"},
        {FLOW_ERR_DEVICE, "FLOW_ERR_DEVICE"},
        {FLOW_ERR_UNSUPPORTED, "FLOW_ERR_UNSUPPORTED"},
        {FLOW_ERR_NUMERIC, "FLOW_ERR_NUMERIC"},
        {FLOW_ERR_BUFFER_TOO_SMALL, "FLOW_ERR_BUFFER_TOO_SMALL"},
        {FLOW_ERR_INTERNAL, "FLOW_ERR_INTERNAL"},
    };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        const char *s = flow_status_string(all[i].s);
        cr_assert_not_null(s);
        cr_assert_str_eq(s, all[i].name);
    }
    /* a value outside the enum still gives a string */
    cr_assert_not_null(flow_status_string((flow_status)12345));
    cr_assert_not_null(flow_status_string((flow_status)-7777));
}

Test(api, devices_and_threads) {
    cr_assert_eq(flow_device_available(FLOW_DEVICE_CPU), 1);
    int cuda = flow_device_available(FLOW_DEVICE_CUDA);
    cr_assert(cuda == 0 || cuda == 1);
    cr_assert_eq(flow_device_available((flow_device)42), 0);
    CHECK_FAIL(flow_set_num_threads(-1), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_OK(flow_set_num_threads(0));
    CHECK_OK(flow_set_num_threads(1));
    CHECK_OK(flow_set_num_threads(2));

    flow_model *m = NULL;
    if (!cuda) {
        flow_status st = flow_model_create(&m, SPEC2, FLOW_DEVICE_CUDA, 1);
        cr_assert(st == FLOW_ERR_DEVICE || st == FLOW_ERR_UNSUPPORTED,
                  "CUDA model without a device: %s", flow_status_string(st));
        cr_assert_null(m);
        cr_assert_neq(flow_last_error()[0], '\0');
    }
    flow_status st = flow_model_create(&m, SPEC2, (flow_device)42, 1);
    cr_assert(st == FLOW_ERR_INVALID_ARGUMENT || st == FLOW_ERR_DEVICE || st == FLOW_ERR_UNSUPPORTED,
              "unknown device: %s", flow_status_string(st));
    cr_assert_null(m);
}

/* results must not depend on the thread count */
Test(api, thread_count_does_not_change_results) {
    flow_model *m = tu_model("{\"preset\":\"realnvp\",\"dim\":2,\"layers\":4,\"hidden\":[64,64]}", 3);
    tu_perturb_params(m, 0.1, 3);
    enum { N = 512 };
    static float x[N * 2], a[N], b[N];
    CHECK_OK(flow_toy_data("two_moons", N, 1, x));
    CHECK_OK(flow_set_num_threads(1));
    CHECK_OK(flow_log_prob(m, x, NULL, N, a));
    CHECK_OK(flow_set_num_threads(0));
    CHECK_OK(flow_log_prob(m, x, NULL, N, b));
    cr_assert_eq(memcmp(a, b, sizeof a), 0, "log_prob differs between 1 thread and all cores");
    flow_model_free(m);
}

#if defined(__SSE2__)
#include <xmmintrin.h>

/* MXCSR's control bits, without the sticky exception flags that any float
 * operation (the test's own too) may raise */
static unsigned mode(void) { return _mm_getcsr() & ~0x3Fu; }

/* flowlib flushes subnormal floats while it computes (MXCSR FTZ and DAZ),
 * but the caller's floating-point mode must be its own again after every
 * call, failed ones included */
Test(api, caller_float_mode_kept) {
    const unsigned flags = 0x8040; /* FTZ | DAZ */
    const unsigned before = mode();
    cr_assert_eq(before & flags, 0, "the test expects the default mode");
    flow_model *m = tu_model("{\"preset\":\"made\",\"dim\":4,\"hidden\":[16]}", 5);
    cr_assert_eq(mode(), before, "flow_model_create changed the caller's MXCSR");
    enum { N = 64 };
    static float x[N * 4], lp[N];
    for (int i = 0; i < N * 4; ++i) x[i] = (float)((i * 37 % 101) - 50) / 25.0f;
    CHECK_OK(flow_train_step(m, x, NULL, N, NULL));
    CHECK_OK(flow_log_prob(m, x, NULL, N, lp));
    cr_assert_eq(mode(), before, "a train step or log_prob changed the caller's MXCSR");
    x[0] = NAN;
    CHECK_FAIL(flow_log_prob(m, x, NULL, N, lp), FLOW_ERR_INVALID_ARGUMENT);
    cr_assert_eq(mode(), before, "a refused call changed the caller's MXCSR");
    /* a caller that runs with FTZ and DAZ itself keeps them too */
    _mm_setcsr(_mm_getcsr() | flags);
    CHECK_OK(flow_log_prob(m, x + 4, NULL, N - 1, lp));
    cr_assert_eq(mode(), before | flags, "the caller's own FTZ and DAZ were cleared");
    _mm_setcsr(_mm_getcsr() & ~flags);
    flow_model_free(m);
}
#endif

/* ------------------------------------------------------------------------ */
/* flow_last_error per thread                                                */
/* ------------------------------------------------------------------------ */

struct thread_result {
    char before[256];
    char after[256];
    flow_status st;
};

static void *thread_body(void *arg) {
    struct thread_result *r = arg;
    snprintf(r->before, sizeof r->before, "%s", flow_last_error());
    flow_model *m = NULL;
    r->st = flow_model_create(&m, "{\"dim\":2,\"thread_only_field\":1,\"transforms\":[{\"type\":\"reverse\"}]}", FLOW_DEVICE_CPU, 0);
    snprintf(r->after, sizeof r->after, "%s", flow_last_error());
    flow_model_free(m);
    return NULL;
}

Test(api, last_error_per_thread) {
    cr_assert_not_null(flow_last_error());
    cr_assert_str_eq(flow_last_error(), "", "no call failed yet, but last_error is '%s'", flow_last_error());

    flow_model *m = NULL;
    CHECK_FAIL(flow_model_create(&m, "{\"dim\":2,\"main_only_field\":1,\"transforms\":[{\"type\":\"reverse\"}]}", FLOW_DEVICE_CPU, 0),
               FLOW_ERR_SPEC);
    char mine[256];
    snprintf(mine, sizeof mine, "%s", flow_last_error());
    cr_assert_not_null(strstr(mine, "main_only_field"), "message '%s' does not name the field", mine);

    struct thread_result r;
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, thread_body, &r), 0);
    cr_assert_eq(pthread_join(th, NULL), 0);
    cr_assert_str_eq(r.before, "", "the main thread's error is visible in another thread: '%s'", r.before);
    cr_assert_eq(r.st, FLOW_ERR_SPEC);
    cr_assert_not_null(strstr(r.after, "thread_only_field"), "thread message '%s'", r.after);
    cr_assert_null(strstr(r.after, "main_only_field"));
    /* and the other thread's failure did not overwrite ours */
    cr_assert_str_eq(flow_last_error(), mine);
}

/* ------------------------------------------------------------------------ */
/* flow_model_create: specs                                                  */
/* ------------------------------------------------------------------------ */

/* specs with an unknown field; the message must name it */
static const struct {
    const char *spec;
    const char *field;
} UNKNOWN_FIELDS[] = {
    {"{\"dim\":2,\"bogus_top\":1,\"transforms\":[{\"type\":\"reverse\"}]}", "bogus_top"},
    {"{\"dim\":2,\"transforms\":[{\"type\":\"reverse\",\"bogus_rev\":1}]}", "bogus_rev"},
    {"{\"dim\":2,\"transforms\":[{\"type\":\"affine_coupling\",\"mask\":\"alternate\",\"parity\":0,"
     "\"hidden\":[8],\"activation\":\"relu\",\"hiden\":[8]}]}",
     "hiden"},
    {"{\"dim\":2,\"transforms\":[{\"type\":\"additive_coupling\",\"bogus_add\":true}]}", "bogus_add"},
    {"{\"dim\":2,\"transforms\":[{\"type\":\"batch_norm\",\"momentom\":0.1}]}", "momentom"},
    {"{\"dim\":2,\"transforms\":[{\"type\":\"dequantize\",\"levels\":256,\"lvls\":3}]}", "lvls"},
    {"{\"dim\":2,\"transforms\":[{\"type\":\"logit\",\"alpha\":0.05,\"beta\":1}]}", "beta"},
    {"{\"dim\":2,\"transforms\":[{\"type\":\"permutation\",\"prem\":[1,0]}]}", "prem"},
    {"{\"dim\":2,\"transforms\":[{\"type\":\"diagonal_scale\",\"scale\":1}]}", "scale"},
    {"{\"dim\":2,\"base\":{\"type\":\"normal\",\"sigma\":2},\"transforms\":[{\"type\":\"reverse\"}]}", "sigma"},
    {"{\"preset\":\"realnvp\",\"dim\":2,\"layerz\":4}", "layerz"},
    {"{\"preset\":\"nice\",\"dim\":2,\"bogus_nice\":4}", "bogus_nice"},
};

Test(api, spec_unknown_fields) {
    for (size_t i = 0; i < sizeof UNKNOWN_FIELDS / sizeof UNKNOWN_FIELDS[0]; i++) {
        flow_model *m = NULL;
        flow_status st = flow_model_create(&m, UNKNOWN_FIELDS[i].spec, FLOW_DEVICE_CPU, 0);
        cr_assert_eq(st, FLOW_ERR_SPEC, "%s -> %s (expected FLOW_ERR_SPEC)", UNKNOWN_FIELDS[i].spec,
                     flow_status_string(st));
        cr_assert_null(m);
        cr_assert_not_null(strstr(flow_last_error(), UNKNOWN_FIELDS[i].field),
                           "message '%s' does not name the field '%s'", flow_last_error(),
                           UNKNOWN_FIELDS[i].field);
    }
}

#define T1(x) "{\"dim\":2,\"transforms\":[" x "]}"
/* a complete affine coupling where exactly one field is wrong */
#define ACF(mask, parity, hidden, act)                                        \
    T1("{\"type\":\"affine_coupling\",\"mask\":" mask ",\"parity\":" parity    \
       ",\"hidden\":" hidden ",\"activation\":" act "}")
#define GOOD_MASK "\"alternate\""
#define GOOD_ACT "\"relu\""

static const char *BAD_SPECS[] = {
    /* malformed JSON */
    "",
    "{",
    "{\"dim\":2,",
    "{\"dim\":2 \"transforms\":[]}",
    "[1,2,3]",
    "42",
    "null",
    "{\"dim\":2,\"transforms\":[{\"type\":\"reverse\"}]} trailing",
    "{'dim':2}",
    /* structure */
    "{\"transforms\":[{\"type\":\"reverse\"}]}", /* no dim */
    "{\"dim\":2,\"transforms\":{\"type\":\"reverse\"}}",
    "{\"dim\":2,\"transforms\":[42]}",
    "{\"dim\":2,\"transforms\":[{\"mask\":\"half\"}]}", /* no type */
    /* dim */
    "{\"dim\":0,\"transforms\":[{\"type\":\"reverse\"}]}",
    "{\"dim\":-2,\"transforms\":[{\"type\":\"reverse\"}]}",
    "{\"dim\":2.5,\"transforms\":[{\"type\":\"reverse\"}]}",
    "{\"dim\":\"2\",\"transforms\":[{\"type\":\"reverse\"}]}",
    "{\"dim\":2,\"context_dim\":-1,\"transforms\":[{\"type\":\"reverse\"}]}",
    /* types, activations, presets, bases */
    T1("{\"type\":\"affine_couplingg\"}"),
    T1("{\"type\":\"\"}"),
    T1("{\"type\":3}"),
    ACF(GOOD_MASK, "0", "[8]", "\"sigmoidd\""),
    ACF(GOOD_MASK, "0", "[8]", "\"RELU\""),
    "{\"preset\":\"realnvpp\",\"dim\":2}",
    "{\"preset\":\"nice\",\"dim\":0}",
    "{\"preset\":\"realnvp\",\"dim\":2,\"layers\":0}",
    "{\"preset\":\"realnvp\",\"dim\":2,\"hidden\":[]}",
    "{\"preset\":\"realnvp\",\"dim\":2,\"activation\":\"swishh\"}",
    "{\"preset\":\"realnvp\",\"dim\":2,\"dequantize\":0}",
    "{\"dim\":2,\"base\":{\"type\":\"cauchy\"},\"transforms\":[{\"type\":\"reverse\"}]}",
    /* coupling fields */
    ACF(GOOD_MASK, "0", "[]", GOOD_ACT),
    ACF(GOOD_MASK, "0", "[0]", GOOD_ACT),
    ACF(GOOD_MASK, "0", "[-4]", GOOD_ACT),
    ACF(GOOD_MASK, "0", "\"64\"", GOOD_ACT),
    ACF(GOOD_MASK, "2", "[8]", GOOD_ACT),
    ACF(GOOD_MASK, "-1", "[8]", GOOD_ACT),
    ACF("[1,0,1]", "0", "[8]", GOOD_ACT),
    ACF("[1]", "0", "[8]", GOOD_ACT),
    ACF("[1,2]", "0", "[8]", GOOD_ACT),
    ACF("\"diagonal\"", "0", "[8]", GOOD_ACT),
    T1("{\"type\":\"additive_coupling\",\"mask\":\"half\",\"parity\":0,\"hidden\":[],\"activation\":\"relu\"}"),
    T1("{\"type\":\"additive_coupling\",\"mask\":\"half\",\"parity\":2,\"hidden\":[8],\"activation\":\"relu\"}"),
    /* other transforms */
    T1("{\"type\":\"permutation\",\"perm\":[0,0]}"),
    T1("{\"type\":\"permutation\",\"perm\":[0,2]}"),
    T1("{\"type\":\"permutation\",\"perm\":[0,1,2]}"),
    T1("{\"type\":\"permutation\",\"perm\":[-1,0]}"),
    T1("{\"type\":\"dequantize\",\"levels\":0}"),
    T1("{\"type\":\"dequantize\",\"levels\":-256}"),
    T1("{\"type\":\"logit\",\"alpha\":0.5}"),
    T1("{\"type\":\"logit\",\"alpha\":-0.1}"),
    T1("{\"type\":\"batch_norm\",\"eps\":-1}"),
    T1("{\"type\":\"batch_norm\",\"momentum\":-0.5}"),
    T1("{\"type\":\"batch_norm\",\"momentum\":1.5}"),
};

Test(api, spec_bad_values) {
    /* control: the complete coupling the bad ones are derived from is fine */
    flow_model *ok = tu_model(ACF(GOOD_MASK, "0", "[8]", GOOD_ACT), 0);
    flow_model_free(ok);
    ok = tu_model(T1("{\"type\":\"additive_coupling\",\"mask\":\"half\",\"parity\":1,\"hidden\":[8],"
                     "\"activation\":\"relu\"}"), 0);
    flow_model_free(ok);
    for (size_t i = 0; i < sizeof BAD_SPECS / sizeof BAD_SPECS[0]; i++) {
        flow_model *m = NULL;
        flow_status st = flow_model_create(&m, BAD_SPECS[i], FLOW_DEVICE_CPU, 0);
        cr_expect_eq(st, FLOW_ERR_SPEC, "spec '%s' -> %s (expected FLOW_ERR_SPEC): '%s'", BAD_SPECS[i],
                     flow_status_string(st), flow_last_error());
        cr_expect_null(m, "spec '%s' returned a model", BAD_SPECS[i]);
        if (st != FLOW_OK) cr_expect_neq(flow_last_error()[0], '\0', "spec '%s': empty message", BAD_SPECS[i]);
        flow_model_free(m);
    }
}

Test(api, create_null_arguments) {
    flow_model *m = NULL;
    CHECK_FAIL(flow_model_create(NULL, SPEC2, FLOW_DEVICE_CPU, 0), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_model_create(&m, NULL, FLOW_DEVICE_CPU, 0), FLOW_ERR_INVALID_ARGUMENT);
    cr_assert_null(m);
    flow_model_free(NULL); /* fine */

    /* the valid specs used in this file do work */
    CHECK_OK(flow_model_create(&m, SPEC2, FLOW_DEVICE_CPU, 0));
    cr_assert_eq(flow_model_dim(m), 2);
    cr_assert_eq(flow_model_context_dim(m), 0);
    cr_assert_gt(flow_model_param_count(m), 0);
    cr_assert_eq(flow_model_device(m), FLOW_DEVICE_CPU);
    cr_assert_eq(flow_model_step_count(m), 0);
    flow_model_free(m);
    m = tu_model(SPEC_COND, 0);
    cr_assert_eq(flow_model_context_dim(m), 3);
    flow_model_free(m);

    /* accessors on NULL */
    cr_assert_eq(flow_model_dim(NULL), 0);
    cr_assert_eq(flow_model_context_dim(NULL), 0);
    cr_assert_eq(flow_model_param_count(NULL), 0);
    cr_assert_eq(flow_model_device(NULL), FLOW_DEVICE_CPU);
}

Test(api, clone_errors) {
    flow_model *m = model2(), *c = NULL;
    CHECK_FAIL(flow_model_clone(NULL, m, FLOW_DEVICE_CPU), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_model_clone(&c, NULL, FLOW_DEVICE_CPU), FLOW_ERR_INVALID_ARGUMENT);
    cr_assert_null(c);
    flow_status st = flow_model_clone(&c, m, (flow_device)42);
    cr_assert(st == FLOW_ERR_INVALID_ARGUMENT || st == FLOW_ERR_DEVICE || st == FLOW_ERR_UNSUPPORTED,
              "clone to an unknown device: %s", flow_status_string(st));
    cr_assert_null(c);
    if (!flow_device_available(FLOW_DEVICE_CUDA)) {
        st = flow_model_clone(&c, m, FLOW_DEVICE_CUDA);
        cr_assert(st == FLOW_ERR_DEVICE || st == FLOW_ERR_UNSUPPORTED, "%s", flow_status_string(st));
        cr_assert_null(c);
    }
    flow_model_free(m);
}

/* ------------------------------------------------------------------------ */
/* flow_model_spec, params                                                   */
/* ------------------------------------------------------------------------ */

Test(api, spec_buffer) {
    flow_model *m = model2();
    size_t len = 0;
    CHECK_FAIL(flow_model_spec(NULL, NULL, 0, &len), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(flow_model_spec(m, NULL, 0, &len), FLOW_ERR_BUFFER_TOO_SMALL);
    cr_assert_gt(len, 10);
    char *buf = malloc(len + 1);
    /* one byte short (no room for the NUL): too small, *len still set */
    size_t len2 = 0;
    memset(buf, 'x', len + 1);
    CHECK_STATUS(flow_model_spec(m, buf, len, &len2), FLOW_ERR_BUFFER_TOO_SMALL);
    cr_assert_eq(len2, len);
    CHECK_STATUS(flow_model_spec(m, buf, 1, NULL), FLOW_ERR_BUFFER_TOO_SMALL);
    /* a NULL buffer with a capacity is an error */
    CHECK_FAIL(flow_model_spec(m, NULL, 16, &len2), FLOW_ERR_INVALID_ARGUMENT);
    /* exact size works, *len nullable */
    len2 = 0;
    CHECK_OK(flow_model_spec(m, buf, len + 1, &len2));
    cr_assert_eq(len2, len);
    cr_assert_eq(strlen(buf), len);
    CHECK_OK(flow_model_spec(m, buf, len + 1, NULL));
    cr_assert_eq(buf[0], '{');
    cr_assert_not_null(strstr(buf, "affine_coupling"));
    free(buf);
    flow_model_free(m);
}

Test(api, params_errors) {
    flow_model *m = model2();
    size_t p = 0;
    float *w = tu_get_params(m, &p), *w2 = malloc((p + 1) * sizeof *w2);
    CHECK_FAIL(flow_model_get_params(NULL, w2, p), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_model_get_params(m, NULL, p), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_model_get_params(m, w2, p - 1), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_model_get_params(m, w2, p + 1), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_model_set_params(NULL, w, p), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_model_set_params(m, NULL, p), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_model_set_params(m, w, p - 1), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_model_set_params(m, w, p + 1), FLOW_ERR_INVALID_ARGUMENT);
    /* non-finite values are refused and nothing changes */
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    for (int b = 0; b < 3; b++) {
        memcpy(w2, w, p * sizeof *w);
        for (size_t i = 0; i < p; i++) w2[i] += 0.5f; /* all other values differ too */
        w2[p / 2] = bad[b];
        CHECK_FAIL(flow_model_set_params(m, w2, p), FLOW_ERR_INVALID_ARGUMENT);
        CHECK_OK(flow_model_get_params(m, w2, p));
        cr_assert_eq(memcmp(w, w2, p * sizeof *w), 0, "refused set_params changed the parameters");
    }
    free(w);
    free(w2);
    flow_model_free(m);
}

/* ------------------------------------------------------------------------ */
/* densities, sampling, transforms                                           */
/* ------------------------------------------------------------------------ */

static const float NONFINITE[3] = {NAN, INFINITY, -INFINITY};

Test(api, log_prob_errors) {
    flow_model *m = model2();
    float lp[4], before[4], ctx[12] = {0}, x[8];
    CHECK_OK(flow_log_prob(m, X4, NULL, 4, before));
    CHECK_FAIL(flow_log_prob(NULL, X4, NULL, 4, lp), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_log_prob(m, NULL, NULL, 4, lp), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_log_prob(m, X4, NULL, 4, NULL), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_log_prob(m, X4, NULL, 0, lp), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_log_prob(m, X4, ctx, 4, lp), FLOW_ERR_INVALID_ARGUMENT);
    for (int b = 0; b < 3; b++)
        for (int pos = 0; pos < 8; pos += 5) {
            memcpy(x, X4, sizeof x);
            x[pos] = NONFINITE[b];
            CHECK_FAIL(flow_log_prob(m, x, NULL, 4, lp), FLOW_ERR_INVALID_ARGUMENT);
        }
    CHECK_OK(flow_log_prob(m, X4, NULL, 4, lp));
    cr_assert_eq(memcmp(lp, before, sizeof lp), 0, "results changed after refused calls");
    flow_model_free(m);
}

Test(api, sample_errors) {
    flow_model *m = model2();
    float x[8], lp[4], ctx[12] = {0};
    CHECK_FAIL(flow_sample(NULL, 4, NULL, 1.0f, 1, x, lp), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_sample(m, 0, NULL, 1.0f, 1, x, lp), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_sample(m, 4, NULL, 1.0f, 1, NULL, lp), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_sample(m, 4, ctx, 1.0f, 1, x, lp), FLOW_ERR_INVALID_ARGUMENT);
    const float bad_t[] = {0.0f, -0.0f, -1.0f, NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof bad_t / sizeof bad_t[0]; i++)
        CHECK_FAIL(flow_sample(m, 4, NULL, bad_t[i], 1, x, lp), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_OK(flow_sample(m, 4, NULL, 1.0f, 1, x, NULL));
    CHECK_OK(flow_sample(m, 4, NULL, 1e-3f, 1, x, lp));
    flow_model_free(m);
}

Test(api, forward_inverse_errors) {
    flow_model *m = model2();
    float z[8], x[8], ld[4], ctx[12] = {0}, zb[8], ldb[4];
    CHECK_OK(flow_forward(m, X4, NULL, 4, zb, ldb));
    CHECK_FAIL(flow_forward(NULL, X4, NULL, 4, z, ld), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_forward(m, NULL, NULL, 4, z, ld), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_forward(m, X4, NULL, 4, NULL, ld), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_forward(m, X4, NULL, 0, z, ld), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_forward(m, X4, ctx, 4, z, ld), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_inverse(NULL, X4, NULL, 4, x, ld), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_inverse(m, NULL, NULL, 4, x, ld), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_inverse(m, X4, NULL, 4, NULL, ld), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_inverse(m, X4, NULL, 0, x, ld), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_inverse(m, X4, ctx, 4, x, ld), FLOW_ERR_INVALID_ARGUMENT);
    for (int b = 0; b < 3; b++) {
        memcpy(x, X4, sizeof x);
        x[3] = NONFINITE[b];
        CHECK_FAIL(flow_forward(m, x, NULL, 4, z, ld), FLOW_ERR_INVALID_ARGUMENT);
        CHECK_FAIL(flow_inverse(m, x, NULL, 4, z, ld), FLOW_ERR_INVALID_ARGUMENT);
    }
    /* out_logdet is nullable; results unchanged */
    CHECK_OK(flow_forward(m, X4, NULL, 4, z, NULL));
    cr_assert_eq(memcmp(z, zb, sizeof z), 0);
    CHECK_OK(flow_forward(m, X4, NULL, 4, z, ld));
    cr_assert_eq(memcmp(ld, ldb, sizeof ld), 0);
    CHECK_OK(flow_inverse(m, z, NULL, 4, x, NULL));
    flow_model_free(m);
}

/* a model with context_dim > 0 needs a context everywhere */
Test(api, context_required) {
    flow_model *m = tu_model(SPEC_COND, 5);
    tu_perturb_params(m, 0.3, 5);
    float ctx[12], lp[4], z[8], x[8], loss;
    for (int i = 0; i < 12; i++) ctx[i] = 0.25f * (float)(i % 5) - 0.5f;
    CHECK_FAIL(flow_log_prob(m, X4, NULL, 4, lp), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_sample(m, 4, NULL, 1.0f, 1, x, lp), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_forward(m, X4, NULL, 4, z, NULL), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_inverse(m, X4, NULL, 4, z, NULL), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_train_step(m, X4, NULL, 4, &loss), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_loss_grad(m, X4, NULL, 4, &loss, NULL, NULL), FLOW_ERR_INVALID_ARGUMENT);
    cr_assert_eq(flow_model_step_count(m), 0);
    /* non-finite context */
    float badctx[12];
    memcpy(badctx, ctx, sizeof ctx);
    badctx[7] = NAN;
    CHECK_FAIL(flow_log_prob(m, X4, badctx, 4, lp), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_train_step(m, X4, badctx, 4, &loss), FLOW_ERR_INVALID_ARGUMENT);
    /* with a context everything works, and the context matters */
    CHECK_OK(flow_log_prob(m, X4, ctx, 4, lp));
    float lp2[4], ctx2[12];
    for (int i = 0; i < 12; i++) ctx2[i] = ctx[i] + 1.0f;
    CHECK_OK(flow_log_prob(m, X4, ctx2, 4, lp2));
    cr_assert_neq(memcmp(lp, lp2, sizeof lp), 0, "the context does not change log_prob");
    CHECK_OK(flow_sample(m, 4, ctx, 1.0f, 1, x, lp));
    CHECK_OK(flow_forward(m, X4, ctx, 4, z, NULL));
    CHECK_OK(flow_inverse(m, z, ctx, 4, x, NULL));
    for (int i = 0; i < 8; i++) cr_assert_float_eq(x[i], X4[i], 1e-4);
    CHECK_OK(flow_train_step(m, X4, ctx, 4, &loss));
    cr_assert_eq(flow_model_step_count(m), 1);
    flow_model_free(m);
}

/* dequantizing models accept only integers 0..levels-1 */
Test(api, dequantize_support) {
    flow_model *m = tu_model(SPEC_DEQ, 6);
    float good[8] = {0, 255, 17, 3, 128, 0, 254, 1}, lp[4], lpb[4], z[8], loss;
    CHECK_OK(flow_log_prob(m, good, NULL, 4, lpb));
    const float bad_values[] = {-1.0f, 256.0f, 0.5f, 1000.0f, -0.25f, 255.5f, NAN};
    for (size_t i = 0; i < sizeof bad_values / sizeof bad_values[0]; i++) {
        float x[8];
        memcpy(x, good, sizeof x);
        x[5] = bad_values[i];
        CHECK_FAIL(flow_log_prob(m, x, NULL, 4, lp), FLOW_ERR_INVALID_ARGUMENT);
        CHECK_FAIL(flow_train_step(m, x, NULL, 4, &loss), FLOW_ERR_INVALID_ARGUMENT);
        CHECK_FAIL(flow_forward(m, x, NULL, 4, z, NULL), FLOW_ERR_INVALID_ARGUMENT);
        CHECK_FAIL(flow_loss_grad(m, x, NULL, 4, &loss, NULL, NULL), FLOW_ERR_INVALID_ARGUMENT);
    }
    cr_assert_eq(flow_model_step_count(m), 0);
    CHECK_OK(flow_log_prob(m, good, NULL, 4, lp));
    cr_assert_eq(memcmp(lp, lpb, sizeof lp), 0);
    flow_model_free(m);

    /* logit-first models accept only [0, 1] */
    m = tu_model("{\"dim\":2,\"transforms\":[{\"type\":\"logit\",\"alpha\":0.05}]}", 1);
    float unit[4] = {0.2f, 0.7f, 0.0f, 1.0f}, outside[4] = {0.2f, 1.5f, -0.1f, 0.5f};
    CHECK_OK(flow_log_prob(m, unit, NULL, 2, lp));
    CHECK_FAIL(flow_log_prob(m, outside, NULL, 2, lp), FLOW_ERR_INVALID_ARGUMENT);
    flow_model_free(m);
}

/* ------------------------------------------------------------------------ */
/* training                                                                  */
/* ------------------------------------------------------------------------ */

static const char *BAD_OPTIMIZERS[] = {
    "",
    "{",
    "[]",
    "{\"type\":\"rmsprop\"}",
    "{\"type\":\"sgd\",\"nesterov\":true}", /* Nesterov without momentum */
    "{\"type\":\"adam\",\"lr\":0}",
    "{\"type\":\"adam\",\"lr\":-1}",
    "{\"type\":\"adam\",\"lr\":\"big\"}",
    "{\"type\":\"adam\",\"betas\":[0.9]}",
    "{\"type\":\"adam\",\"betas\":[0.9,1.5]}",
    "{\"type\":\"adam\",\"eps\":-1}",
    "{\"type\":\"adam\",\"weight_decay\":-0.1}",
    "{\"type\":\"adamw\",\"clip_grad_norm\":-1}",
    "{\"type\":\"adam\",\"momentum\":0.9}", /* an SGD field */
    "{\"type\":\"adam\",\"learning_rate\":1e-3}",
    "{\"type\":\"sgd\",\"momentum\":-0.5}",
    "{\"type\":\"sgd\",\"nesterov\":\"yes\"}",
    "{\"type\":\"sgd\",\"betas\":[0.9,0.99]}", /* an Adam field */
};

Test(api, optimizer_errors) {
    flow_model *a = model2(), *b = model2();
    CHECK_FAIL(flow_model_set_optimizer(NULL, "{\"type\":\"sgd\"}"), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_model_set_optimizer(a, NULL), FLOW_ERR_INVALID_ARGUMENT);
    for (size_t i = 0; i < sizeof BAD_OPTIMIZERS / sizeof BAD_OPTIMIZERS[0]; i++) {
        flow_status st = flow_model_set_optimizer(a, BAD_OPTIMIZERS[i]);
        cr_expect_eq(st, FLOW_ERR_SPEC, "optimizer '%s' -> %s", BAD_OPTIMIZERS[i], flow_status_string(st));
    }
    CHECK_STATUS(flow_model_set_optimizer(a, "{\"type\":\"adam\",\"bogus_opt\":1}"), FLOW_ERR_SPEC);
    cr_assert_not_null(strstr(flow_last_error(), "bogus_opt"), "message '%s'", flow_last_error());

    /* valid ones ("type" defaults to adam) */
    CHECK_OK(flow_model_set_optimizer(a, "{\"lr\":1e-3}"));
    CHECK_OK(flow_model_set_optimizer(a, "{\"type\":\"adamw\",\"lr\":2e-3,\"betas\":[0.8,0.99],\"eps\":1e-7,"
                                         "\"weight_decay\":0.01,\"clip_grad_norm\":1}"));
    CHECK_OK(flow_model_set_optimizer(a, "{\"type\":\"sgd\",\"lr\":0.01,\"momentum\":0.9,\"weight_decay\":0,"
                                         "\"nesterov\":true,\"clip_grad_norm\":0}"));
    /* a refused optimizer leaves the previous one in place: a and b train
     * identically although a saw all the bad ones */
    CHECK_OK(flow_model_set_optimizer(a, "{\"type\":\"sgd\",\"lr\":0.05,\"momentum\":0.9}"));
    CHECK_OK(flow_model_set_optimizer(b, "{\"type\":\"sgd\",\"lr\":0.05,\"momentum\":0.9}"));
    float la, lb;
    CHECK_OK(flow_train_step(a, X4, NULL, 4, &la));
    CHECK_OK(flow_train_step(b, X4, NULL, 4, &lb));
    CHECK_STATUS(flow_model_set_optimizer(a, "{\"type\":\"sgd\",\"lr\":-5}"), FLOW_ERR_SPEC);
    CHECK_STATUS(flow_model_set_optimizer(a, "{\"type\":\"sgd\",\"lr\":5,\"oops\":1}"), FLOW_ERR_SPEC);
    CHECK_OK(flow_train_step(a, X4, NULL, 4, &la));
    CHECK_OK(flow_train_step(b, X4, NULL, 4, &lb));
    size_t p;
    float *wa = tu_get_params(a, &p), *wb = tu_get_params(b, NULL);
    cr_assert_eq(memcmp(wa, wb, p * sizeof *wa), 0, "a refused set_optimizer changed the optimizer");
    free(wa);
    free(wb);
    flow_model_free(a);
    flow_model_free(b);
}

Test(api, train_step_errors) {
    flow_model *m = model2();
    float loss, x[8], lpb[4], lp[4];
    size_t p;
    float *w0 = tu_get_params(m, &p), *w = malloc(p * sizeof *w);
    CHECK_OK(flow_log_prob(m, X4, NULL, 4, lpb));
    CHECK_FAIL(flow_train_step(NULL, X4, NULL, 4, &loss), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_train_step(m, NULL, NULL, 4, &loss), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_train_step(m, X4, NULL, 0, &loss), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_train_step(m, X4, X4, 4, &loss), FLOW_ERR_INVALID_ARGUMENT);
    for (int b = 0; b < 3; b++) {
        memcpy(x, X4, sizeof x);
        x[6] = NONFINITE[b];
        CHECK_FAIL(flow_train_step(m, x, NULL, 4, &loss), FLOW_ERR_INVALID_ARGUMENT);
    }
    cr_assert_eq(flow_model_step_count(m), 0);
    CHECK_OK(flow_model_get_params(m, w, p));
    cr_assert_eq(memcmp(w, w0, p * sizeof *w), 0);
    CHECK_OK(flow_log_prob(m, X4, NULL, 4, lp));
    cr_assert_eq(memcmp(lp, lpb, sizeof lp), 0);
    /* out_loss is nullable */
    CHECK_OK(flow_train_step(m, X4, NULL, 4, NULL));
    cr_assert_eq(flow_model_step_count(m), 1);
    free(w);
    free(w0);
    flow_model_free(m);
}

Test(api, loss_grad_errors) {
    flow_model *m = model2();
    size_t p = flow_model_param_count(m);
    float loss, *g = malloc(p * sizeof *g), xg[8], x[8];
    CHECK_FAIL(flow_loss_grad(NULL, X4, NULL, 4, &loss, g, xg), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_loss_grad(m, NULL, NULL, 4, &loss, g, xg), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_loss_grad(m, X4, NULL, 0, &loss, g, xg), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_loss_grad(m, X4, X4, 4, &loss, g, xg), FLOW_ERR_INVALID_ARGUMENT);
    memcpy(x, X4, sizeof x);
    x[1] = NAN;
    CHECK_FAIL(flow_loss_grad(m, x, NULL, 4, &loss, g, xg), FLOW_ERR_INVALID_ARGUMENT);
    /* both gradient outputs are nullable */
    CHECK_OK(flow_loss_grad(m, X4, NULL, 4, &loss, NULL, NULL));
    CHECK_OK(flow_loss_grad(m, X4, NULL, 4, &loss, NULL, xg));
    cr_assert(isfinite(loss));
    cr_assert_eq(flow_model_step_count(m), 0);
    free(g);
    flow_model_free(m);
}

/* A step whose loss or gradient is not finite is skipped: parameters,
 * statistics, optimizer state and step count stay exactly as they were. */
static void check_numeric_step(flow_model *m, flow_model *twin, const float *bad_x, size_t n,
                               const char *what) {
    size_t p;
    float *w0 = tu_get_params(m, &p), *w1 = malloc(p * sizeof *w1);
    uint64_t steps = flow_model_step_count(m);
    float lp0[4], lp1[4], loss = 0;
    flow_status st0 = flow_log_prob(m, X4, NULL, 4, lp0);

    flow_status st = flow_train_step(m, bad_x, NULL, n, &loss);
    cr_assert_eq(st, FLOW_ERR_NUMERIC, "%s: train_step -> %s (loss %g), expected FLOW_ERR_NUMERIC: '%s'", what,
                 flow_status_string(st), loss, flow_last_error());
    cr_assert_neq(flow_last_error()[0], '\0');
    CHECK_OK(flow_model_get_params(m, w1, p));
    cr_assert_eq(memcmp(w0, w1, p * sizeof *w0), 0, "%s: parameters changed by a skipped step", what);
    cr_assert_eq(flow_model_step_count(m), steps, "%s: step count changed", what);
    flow_status st1 = flow_log_prob(m, X4, NULL, 4, lp1);
    cr_assert_eq(st1, st0);
    if (st0 == FLOW_OK) cr_assert_eq(memcmp(lp0, lp1, sizeof lp0), 0, "%s: log_prob changed", what);

    /* the optimizer state is unchanged too: one more good step on both the
     * model and its twin (which never saw the bad batch) agrees bit for bit */
    if (twin) {
        CHECK_OK(flow_train_step(m, X4, NULL, 4, NULL));
        CHECK_OK(flow_train_step(twin, X4, NULL, 4, NULL));
        float *wt = tu_get_params(twin, NULL);
        CHECK_OK(flow_model_get_params(m, w1, p));
        cr_assert_eq(memcmp(wt, w1, p * sizeof *wt), 0, "%s: optimizer state changed by a skipped step", what);
        free(wt);
    }
    free(w0);
    free(w1);
}

Test(api, numeric_failure_huge_data) {
    const char *spec = "{\"preset\":\"realnvp\",\"dim\":2,\"layers\":4,\"hidden\":[16],\"batch_norm\":true}";
    flow_model *m = tu_model(spec, 8), *twin = tu_model(spec, 8);
    tu_perturb_params(m, 0.1, 8);
    tu_perturb_params(twin, 0.1, 8);
    /* a few good steps so that Adam has state and batch norm statistics */
    for (int s = 0; s < 3; s++) {
        CHECK_OK(flow_train_step(m, X4, NULL, 4, NULL));
        CHECK_OK(flow_train_step(twin, X4, NULL, 4, NULL));
    }
    float huge[8];
    for (int i = 0; i < 8; i++) huge[i] = (i % 2 ? -1e30f : 1e30f) * (float)(i + 1) / 8.0f;
    check_numeric_step(m, twin, huge, 4, "data 1e30");
    flow_model_free(m);
    flow_model_free(twin);
}

Test(api, numeric_failure_huge_params) {
    flow_model *m = model2();
    size_t p;
    float *w = tu_get_params(m, &p);
    for (size_t i = 0; i < p; i++) w[i] = (i % 3 == 0) ? 1e30f : -1e30f;
    CHECK_OK(flow_model_set_params(m, w, p)); /* finite: accepted */
    /* the model has never stepped, so it has no optimizer yet; a failed
     * first step must not leave one behind (the saved bytes show it) */
    size_t len0 = 0, len1 = 0;
    CHECK_STATUS(flow_model_save_buffer(m, NULL, 0, &len0), FLOW_ERR_BUFFER_TOO_SMALL);
    check_numeric_step(m, NULL, X4, 4, "parameters 1e30");
    CHECK_STATUS(flow_model_save_buffer(m, NULL, 0, &len1), FLOW_ERR_BUFFER_TOO_SMALL);
    cr_assert_eq(len1, len0, "a failed first step changed the saved size (%zu -> %zu)", len0, len1);
    free(w);
    flow_model_free(m);
}

/* ------------------------------------------------------------------------ */
/* saving and loading                                                        */
/* ------------------------------------------------------------------------ */

static int dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) count++;
    closedir(d);
    return count;
}

Test(api, save_load_errors) {
    flow_model *m = model2(), *l = NULL;
    char dir[] = "/tmp/flowlib_test_api_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[512];

    CHECK_FAIL(flow_model_save(NULL, "/tmp/x.safetensors"), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_model_save(m, NULL), FLOW_ERR_INVALID_ARGUMENT);

    /* a directory that does not exist: FLOW_ERR_IO, nothing written */
    snprintf(path, sizeof path, "%s/missing/model.safetensors", dir);
    CHECK_FAIL(flow_model_save(m, path), FLOW_ERR_IO);
    struct stat sb;
    cr_assert_neq(stat(path, &sb), 0);
    cr_assert_eq(dir_entries(dir), 0);

    /* the target is an existing directory: the final rename fails, and the
     * temporary file must be cleaned up */
    snprintf(path, sizeof path, "%s/adir", dir);
    cr_assert_eq(mkdir(path, 0700), 0);
    CHECK_FAIL(flow_model_save(m, path), FLOW_ERR_IO);
    cr_assert_eq(dir_entries(dir), 1, "a failed save left a file behind in %s", dir);

    /* loading */
    snprintf(path, sizeof path, "%s/nothere.safetensors", dir);
    CHECK_FAIL(flow_model_load(&l, path, FLOW_DEVICE_CPU), FLOW_ERR_IO);
    cr_assert_null(l);
    cr_assert_not_null(strstr(flow_last_error(), "nothere"), "message '%s' should name the file", flow_last_error());
    CHECK_FAIL(flow_model_load(NULL, path, FLOW_DEVICE_CPU), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_model_load(&l, NULL, FLOW_DEVICE_CPU), FLOW_ERR_INVALID_ARGUMENT);
    snprintf(path, sizeof path, "%s/adir", dir);
    flow_status st = flow_model_load(&l, path, FLOW_DEVICE_CPU);
    cr_assert(st == FLOW_ERR_IO || st == FLOW_ERR_FORMAT, "loading a directory: %s", flow_status_string(st));
    cr_assert_null(l);
    /* an empty file and a text file */
    snprintf(path, sizeof path, "%s/empty.safetensors", dir);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fclose(f);
    CHECK_FAIL(flow_model_load(&l, path, FLOW_DEVICE_CPU), FLOW_ERR_FORMAT);
    cr_assert_null(l);
    f = fopen(path, "wb");
    fputs("this is not a model file, just text of some length\n", f);
    fclose(f);
    CHECK_FAIL(flow_model_load(&l, path, FLOW_DEVICE_CPU), FLOW_ERR_FORMAT);
    cr_assert_null(l);
    unlink(path);

    /* a good save works and leaves exactly one file */
    snprintf(path, sizeof path, "%s/good.safetensors", dir);
    CHECK_OK(flow_model_save(m, path));
    cr_assert_eq(dir_entries(dir), 2);
    CHECK_OK(flow_model_load(&l, path, FLOW_DEVICE_CPU));
    flow_model_free(l);
    unlink(path);
    snprintf(path, sizeof path, "%s/adir", dir);
    rmdir(path);
    rmdir(dir);
    flow_model_free(m);
}

Test(api, buffer_errors) {
    flow_model *m = model2(), *l = NULL;
    size_t len = 0, len2 = 0;
    CHECK_FAIL(flow_model_save_buffer(NULL, NULL, 0, &len), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(flow_model_save_buffer(m, NULL, 0, &len), FLOW_ERR_BUFFER_TOO_SMALL);
    cr_assert_gt(len, 8);
    unsigned char *buf = malloc(len);
    CHECK_FAIL(flow_model_save_buffer(m, NULL, 100, &len2), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(flow_model_save_buffer(m, buf, len - 1, &len2), FLOW_ERR_BUFFER_TOO_SMALL);
    cr_assert_eq(len2, len);
    CHECK_STATUS(flow_model_save_buffer(m, buf, 8, NULL), FLOW_ERR_BUFFER_TOO_SMALL);
    CHECK_OK(flow_model_save_buffer(m, buf, len, NULL));

    CHECK_FAIL(flow_model_load_buffer(NULL, buf, len, FLOW_DEVICE_CPU), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_model_load_buffer(&l, NULL, len, FLOW_DEVICE_CPU), FLOW_ERR_INVALID_ARGUMENT);
    flow_status st = flow_model_load_buffer(&l, buf, 0, FLOW_DEVICE_CPU);
    cr_assert(st == FLOW_ERR_FORMAT || st == FLOW_ERR_INVALID_ARGUMENT, "empty buffer: %s", flow_status_string(st));
    cr_assert_null(l);
    st = flow_model_load_buffer(&l, buf, len, (flow_device)42);
    cr_assert(st == FLOW_ERR_INVALID_ARGUMENT || st == FLOW_ERR_DEVICE || st == FLOW_ERR_UNSUPPORTED,
              "unknown device: %s", flow_status_string(st));
    cr_assert_null(l);
    CHECK_OK(flow_model_load_buffer(&l, buf, len, FLOW_DEVICE_CPU));
    flow_model_free(l);
    free(buf);
    flow_model_free(m);
}

/* ------------------------------------------------------------------------ */
/* toy data                                                                  */
/* ------------------------------------------------------------------------ */

Test(api, toy_data) {
    float out[200], again[200];
    CHECK_FAIL(flow_toy_data("three_moons", 100, 1, out), FLOW_ERR_INVALID_ARGUMENT);
    cr_assert_not_null(strstr(flow_last_error(), "two_moons"), "message '%s' should list the known names",
                       flow_last_error());
    cr_assert_not_null(strstr(flow_last_error(), "eight_gaussians"));
    CHECK_FAIL(flow_toy_data(NULL, 100, 1, out), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_toy_data("two_moons", 100, 1, NULL), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_FAIL(flow_toy_data("two_moons", 0, 1, out), FLOW_ERR_INVALID_ARGUMENT);
    const char *names[] = {"two_moons", "eight_gaussians", "checkerboard",
                           "pinwheel",  "two_spirals",     "rings"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        CHECK_OK(flow_toy_data(names[k], 100, 1, out));
        CHECK_OK(flow_toy_data(names[k], 100, 1, again));
        cr_assert_eq(memcmp(out, again, sizeof out), 0, "%s: same seed, different data", names[k]);
        cr_assert(tu_all_finite(out, 200));
        CHECK_OK(flow_toy_data(names[k], 100, 2, again));
        cr_assert_neq(memcmp(out, again, sizeof out), 0, "%s: different seeds, same data", names[k]);
    }
    /* eight gaussians: centres at radius 4/1.414, so the mean radius is ~2.83 */
    static float eg[2 * 4000];
    CHECK_OK(flow_toy_data("eight_gaussians", 4000, 3, eg));
    double r = 0, mx = 0, my = 0;
    for (int i = 0; i < 4000; i++) {
        r += sqrt((double)eg[2 * i] * eg[2 * i] + (double)eg[2 * i + 1] * eg[2 * i + 1]) / 4000;
        mx += eg[2 * i] / 4000.0;
        my += eg[2 * i + 1] / 4000.0;
    }
    cr_assert(r > 2.6 && r < 3.1, "eight_gaussians mean radius %g", r);
    cr_assert(fabs(mx) < 0.15 && fabs(my) < 0.15, "eight_gaussians mean (%g, %g)", mx, my);
    /* two moons (scikit-learn): x in about [-1, 2], y in about [-0.5, 1] */
    static float tm[2 * 4000];
    CHECK_OK(flow_toy_data("two_moons", 4000, 3, tm));
    mx = my = 0;
    for (int i = 0; i < 4000; i++) {
        mx += tm[2 * i] / 4000.0;
        my += tm[2 * i + 1] / 4000.0;
        cr_assert(tm[2 * i] > -1.6f && tm[2 * i] < 2.6f && tm[2 * i + 1] > -1.0f && tm[2 * i + 1] < 1.5f,
                  "two_moons point (%g, %g)", tm[2 * i], tm[2 * i + 1]);
    }
    cr_assert(fabs(mx - 0.5) < 0.1 && fabs(my - 0.25) < 0.1, "two_moons mean (%g, %g)", mx, my);
}
