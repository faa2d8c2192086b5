/*
 * Small helpers shared by the flowlib Criterion suites (header only).
 *
 *   CHECK_OK(expr)          asserts that a flowlib call returned FLOW_OK and
 *                           otherwise reports the status and flow_last_error().
 *   CHECK_STATUS(expr, st)  asserts a given (error) status.
 *   tu_rng                  a tiny reproducible generator (splitmix64) for
 *                           test data, independent of the library's Philox.
 *   tu_model                creates a model or fails the test with the reason.
 *   tu_perturb_params       adds scale * N(0,1) to every parameter, so that
 *                           coupling nets whose last layer starts at zero are
 *                           no longer the identity.
 *   TU_DEVICE               the device tu_model creates models on (define it
 *                           before including this header; default CPU).
 *   TU_CUDA_SUITE           defined before including this header: main() is
 *                           the CUDA suites' (exit 77 with the reason when no
 *                           CUDA device is available, Criterion otherwise).
 */
#ifndef FLOWLIB_TEST_UTIL_H
#define FLOWLIB_TEST_UTIL_H

#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flowlib.h"

#ifndef TU_DEVICE
#define TU_DEVICE FLOW_DEVICE_CPU
#endif

#define CHECK_OK(expr)                                                        \
    do {                                                                      \
        flow_status st_ = (expr);                                             \
        cr_assert_eq(st_, FLOW_OK, "%s:%d: %s -> %s: %s", __FILE__, __LINE__, \
                     #expr, flow_status_string(st_), flow_last_error());      \
    } while (0)

#define CHECK_STATUS(expr, want)                                              \
    do {                                                                      \
        flow_status st_ = (expr);                                             \
        cr_assert_eq(st_, (want), "%s:%d: %s -> %s (expected %s): '%s'",      \
                     __FILE__, __LINE__, #expr, flow_status_string(st_),      \
                     flow_status_string(want), flow_last_error());            \
    } while (0)

/* Measured figures go to stdout (visible in ctest --output-on-failure / -V). */
#define TU_REPORT(...)                                                        \
    do {                                                                      \
        printf(__VA_ARGS__);                                                  \
        printf("\n");                                                         \
        fflush(stdout);                                                       \
    } while (0)

typedef struct tu_rng {
    uint64_t s;
} tu_rng;

static inline tu_rng tu_rng_make(uint64_t seed) {
    tu_rng r;
    r.s = seed * 0x9E3779B97F4A7C15ull + 0x1234567ull;
    return r;
}

static inline uint64_t tu_next(tu_rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* uniform in [0, 1) */
static inline double tu_uniform(tu_rng *r) {
    return (double)(tu_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static inline double tu_normal(tu_rng *r) {
    double u1 = tu_uniform(r), u2 = tu_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static inline size_t tu_below(tu_rng *r, size_t n) {
    return (size_t)(tu_next(r) % (uint64_t)n);
}

static inline flow_model *tu_model(const char *spec, uint64_t seed) {
    flow_model *m = NULL;
    flow_status st = flow_model_create(&m, spec, TU_DEVICE, seed);
    cr_assert_eq(st, FLOW_OK, "flow_model_create(%s) -> %s: %s", spec,
                 flow_status_string(st), flow_last_error());
    cr_assert_not_null(m);
    cr_assert_eq(flow_model_device(m), TU_DEVICE);
    return m;
}

/* The parameters as a malloc'ed array (*count receives the length). */
static inline float *tu_get_params(const flow_model *m, size_t *count) {
    size_t p = flow_model_param_count(m);
    float *w = malloc((p ? p : 1) * sizeof *w);
    cr_assert_not_null(w);
    CHECK_OK(flow_model_get_params(m, w, p));
    if (count) *count = p;
    return w;
}

static inline void tu_perturb_params(flow_model *m, double scale, uint64_t seed) {
    size_t p = 0;
    float *w = tu_get_params(m, &p);
    tu_rng r = tu_rng_make(seed);
    for (size_t i = 0; i < p; i++) w[i] += (float)(scale * tu_normal(&r));
    CHECK_OK(flow_model_set_params(m, w, p));
    free(w);
}

/* The expanded spec as a malloc'ed string. */
static inline char *tu_spec(const flow_model *m) {
    size_t len = 0;
    CHECK_STATUS(flow_model_spec(m, NULL, 0, &len), FLOW_ERR_BUFFER_TOO_SMALL);
    char *s = malloc(len + 1);
    cr_assert_not_null(s);
    CHECK_OK(flow_model_spec(m, s, len + 1, NULL));
    cr_assert_eq(strlen(s), len);
    return s;
}

/* The saved bytes of a model as a malloc'ed buffer (*len receives the size). */
static inline unsigned char *tu_save(const flow_model *m, size_t *len) {
    size_t need = 0;
    CHECK_STATUS(flow_model_save_buffer(m, NULL, 0, &need),
                 FLOW_ERR_BUFFER_TOO_SMALL);
    cr_assert_gt(need, 8);
    unsigned char *buf = malloc(need);
    cr_assert_not_null(buf);
    size_t got = 0;
    CHECK_OK(flow_model_save_buffer(m, buf, need, &got));
    cr_assert_eq(got, need);
    *len = got;
    return buf;
}

static inline int tu_all_finite(const float *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

#ifdef TU_CUDA_SUITE
#include <sys/wait.h>
#include <unistd.h>

/* The CUDA suites' main: whether a CUDA device is available is asked in a
 * child process (the reason when not: flow_model_create's error), so that
 * the Criterion parent never initializes CUDA. */
int main(int argc, char *argv[]) {
    int fd[2];
    if (pipe(fd) != 0) return printf("FAILED: pipe\n"), 1;
    pid_t child = fork();
    if (child == 0) {
        char out[1024] = "1";
        flow_model *m = NULL;
        if (!flow_device_available(FLOW_DEVICE_CUDA) &&
            flow_model_create(&m, "{\"dim\":1,\"transforms\":[]}", FLOW_DEVICE_CUDA, 0) != FLOW_OK)
            snprintf(out, sizeof out, "0%s", flow_last_error());
        flow_model_free(m);
        _exit(write(fd[1], out, strlen(out)) != (ssize_t)strlen(out));
    }
    close(fd[1]);
    char got[1024] = "";
    ssize_t len = read(fd[0], got, sizeof got - 1);
    int status = 0;
    waitpid(child, &status, 0);
    if (len <= 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return printf("FAILED: the CUDA device check crashed\n"), 1;
    got[len] = 0;
    if (got[0] != '1') return printf("SKIPPED: no CUDA device for the CUDA suite: %s\n", got + 1), 77;
    struct criterion_test_set *tests = criterion_initialize();
    int result = 0;
    if (criterion_handle_args(argc, argv, true)) result = !criterion_run_all_tests(tests);
    criterion_finalize(tests);
    return result;
}
#endif

#endif /* FLOWLIB_TEST_UTIL_H */
