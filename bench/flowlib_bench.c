/* Throughput of flowlib's hot calls, one JSON line per configuration.
 *
 *   flowlib_bench [--threads N] [--rounds R] [--quick]
 *
 * Each configuration warms up, then times R rounds of a fixed number of calls
 * and reports the median round. Throughputs are samples per second. */
#include <flowlib.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct config {
    const char *model; /* preset name */
    int dim, layers, hidden, batch;
};

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void die(const char *what) {
    fprintf(stderr, "flowlib_bench: %s: %s\n", what, flow_last_error());
    exit(1);
}

/* Seconds per call of `op` (0 = train_step, 1 = log_prob, 2 = sample),
 * median over rounds. */
static double time_op(flow_model *m, int op, const float *x, float *out, float *lp, int batch,
                      int calls, int rounds) {
    double *t = malloc((size_t)rounds * sizeof *t);
    for (int r = -1; r < rounds; r++) { /* round -1 warms up */
        double start = now();
        for (int c = 0; c < calls; c++) {
            flow_status s = op == 0   ? flow_train_step(m, x, NULL, (size_t)batch, NULL)
                            : op == 1 ? flow_log_prob(m, x, NULL, (size_t)batch, lp)
                                      : flow_sample(m, (size_t)batch, NULL, 1.0f, (uint64_t)c,
                                                    out, NULL);
            if (s != FLOW_OK) die("call");
        }
        if (r >= 0) t[r] = (now() - start) / calls;
    }
    qsort(t, (size_t)rounds, sizeof *t, compare_doubles);
    double median = t[rounds / 2];
    free(t);
    return median;
}

int main(int argc, char **argv) {
    int threads = 0, rounds = 5, quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else {
            fprintf(stderr, "usage: flowlib_bench [--threads N] [--rounds R] [--quick]\n");
            return 2;
        }
    }
    if (rounds < 1) rounds = 1;
    if (flow_set_num_threads(threads) != FLOW_OK) die("threads");

    static const struct config full[] = {
        {"realnvp", 8, 8, 64, 256},   {"realnvp", 64, 8, 64, 256},
        {"realnvp", 8, 8, 256, 4096}, {"realnvp", 64, 8, 256, 4096},
    };
    static const struct config tiny[] = {{"realnvp", 4, 2, 16, 32}};
    const struct config *configs = quick ? tiny : full;
    size_t count = quick ? 1 : sizeof full / sizeof full[0];
    static const char *const op_names[] = {"train_step", "log_prob", "sample"};

    for (size_t k = 0; k < count; k++) {
        const struct config *c = &configs[k];
        char spec[256];
        snprintf(spec, sizeof spec,
                 "{\"preset\":\"%s\",\"dim\":%d,\"layers\":%d,\"hidden\":[%d,%d]}", c->model,
                 c->dim, c->layers, c->hidden, c->hidden);
        flow_model *m;
        if (flow_model_create(&m, spec, FLOW_DEVICE_CPU, 1) != FLOW_OK) die("create");
        size_t n = (size_t)c->batch * (size_t)c->dim;
        float *x = malloc(n * sizeof *x), *out = malloc(n * sizeof *out);
        float *lp = malloc((size_t)c->batch * sizeof *lp);
        srand(1);
        for (size_t i = 0; i < n; i++) x[i] = (float)rand() / (float)RAND_MAX * 2.0f - 1.0f;
        /* About 50 ms of work per round at ~10 GFLOP/s, at least 2 calls. */
        double flops = 6.0 * (double)flow_model_param_count(m) * c->batch;
        int calls = quick ? 2 : (int)(5e8 / flops) + 2;
        for (int op = 0; op < 3; op++) {
            double sec = time_op(m, op, x, out, lp, c->batch, calls, rounds);
            printf("{\"model\":\"%s\",\"op\":\"%s\",\"dim\":%d,\"layers\":%d,\"hidden\":%d,"
                   "\"batch\":%d,\"threads\":%d,\"params\":%zu,\"ms\":%.4f,"
                   "\"samples_per_s\":%.0f,\"gflops\":%.2f}\n",
                   c->model, op_names[op], c->dim, c->layers, c->hidden, c->batch, threads,
                   flow_model_param_count(m), 1e3 * sec, c->batch / sec,
                   op == 0 ? flops / sec * 1e-9 : flops / 3.0 / sec * 1e-9);
            fflush(stdout);
        }
        free(x);
        free(out);
        free(lp);
        flow_model_free(m);
    }
    return 0;
}
