/* Per-call cost of flow_log_prob on 1 row (and of flow_model_dim, a call
 * that does nothing), called straight from C: the baseline the bindings'
 * overhead is measured against. Usage: overhead SPEC CALLS ROUNDS (run.sh
 * passes the same to every language). Prints one JSON line per call: the
 * median over ROUNDS rounds of CALLS calls, in ns per call. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <flowlib.h>

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define MAX_ROUNDS 100

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s SPEC CALLS ROUNDS\n", argv[0]);
        return 2;
    }
    const char *spec = argv[1];
    int calls = atoi(argv[2]), nrounds = atoi(argv[3]);
    if (calls < 1 || nrounds < 1 || nrounds > MAX_ROUNDS) return 2;
    flow_model *m = NULL;
    if (flow_model_create(&m, spec, FLOW_DEVICE_CPU, 1) != FLOW_OK) {
        fprintf(stderr, "create: %s\n", flow_last_error());
        return 1;
    }
    float x[2] = {0.5f, -0.25f}, lp;
    double rounds[MAX_ROUNDS];
    size_t dims = 0;
    for (int i = 0; i < calls; i++) flow_log_prob(m, x, NULL, 1, &lp); /* warm-up */
    for (int r = 0; r < nrounds; r++) {
        double t = now_ns();
        for (int i = 0; i < calls; i++) flow_log_prob(m, x, NULL, 1, &lp);
        rounds[r] = (now_ns() - t) / calls;
    }
    qsort(rounds, nrounds, sizeof *rounds, cmp);
    printf("{\"lang\": \"C\", \"layer\": \"C API\", \"call\": \"log_prob 1 row\", \"ns\": %.1f}\n",
           rounds[nrounds / 2]);
    for (int r = 0; r < nrounds; r++) {
        double t = now_ns();
        for (int i = 0; i < calls; i++) dims += flow_model_dim(m);
        rounds[r] = (now_ns() - t) / calls;
    }
    qsort(rounds, nrounds, sizeof *rounds, cmp);
    printf("{\"lang\": \"C\", \"layer\": \"C API\", \"call\": \"model_dim\", \"ns\": %.1f}\n",
           rounds[nrounds / 2] + (dims == 0)); /* dims keeps the loop alive */
    flow_model_free(m);
    return 0;
}
