/*
 * Fashion-MNIST density benchmark: trains MADE, MADE MoG, RealNVP, MAF and
 * MAF MoG on the 784-dimensional pixel vectors (uniform dequantization, then the MAF paper's
 * logit preprocessing with lambda = 1e-6) and prints the test log-likelihood
 * in nats (of the discrete 8-bit data: the dequantized density, a lower
 * bound) and in bits/dim, one JSON line per model, next to the MNIST figures
 * of the MAF paper for reference (a different data set: a rough yardstick).
 *
 *   fmnist_density [--dir /usr/share/datasets/fashion-mnist] [--steps 2000]
 *                  [--batch 100] [--test 10000] [--quick]
 *
 * MADE MoG and MAF MoG use 10 components per dimension, as in the MAF paper.
 * The idx files are read through `gzip -dc` (no zlib dependency).
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flowlib.h"

static float *read_images(const char *dir, const char *name, size_t *n_out) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "gzip -dc '%s/%s'", dir, name);
    FILE *f = popen(cmd, "r");
    if (!f) return NULL;
    unsigned char h[16];
    if (fread(h, 1, 16, f) != 16) { pclose(f); return NULL; }
    size_t n = ((size_t)h[4] << 24) | ((size_t)h[5] << 16) | ((size_t)h[6] << 8) | h[7];
    size_t d = 784;
    unsigned char *raw = malloc(n * d);
    float *x = malloc(n * d * sizeof *x);
    if (!raw || !x || fread(raw, 1, n * d, f) != n * d) { pclose(f); free(raw); free(x); return NULL; }
    pclose(f);
    for (size_t i = 0; i < n * d; i++) x[i] = raw[i];
    free(raw);
    *n_out = n;
    return x;
}

int main(int argc, char **argv) {
    const char *dir = "/usr/share/datasets/fashion-mnist";
    int steps = 2000, batch = 100, ntest = 10000, quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--test") && i + 1 < argc) ntest = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else { fprintf(stderr, "usage: %s [--dir D] [--steps N] [--batch N] [--test N] [--quick]\n", argv[0]); return 2; }
    }
    if (quick) { steps = 20; ntest = 200; }
    size_t ntrain = 0, nt = 0;
    float *train = read_images(dir, "train-images-idx3-ubyte.gz", &ntrain);
    float *test = read_images(dir, "t10k-images-idx3-ubyte.gz", &nt);
    if (!train || !test) { fprintf(stderr, "cannot read Fashion-MNIST from %s\n", dir); return 1; }
    if ((size_t)ntest > nt) ntest = (int)nt;
    const size_t D = 784;

    /* name, spec, and the MAF paper's MNIST test log-likelihood (nats, in its
     * logit space) and bits/pixel for the same model */
    struct { const char *name, *spec; double paper_nats, paper_bpd; } models[] = {
        {"MADE", "{\"preset\":\"made\",\"dim\":784,\"hidden\":[1024],\"dequantize\":256,\"logit\":1e-6}", -1380.8, 2.04},
        {"MADE MoG", "{\"preset\":\"made\",\"dim\":784,\"hidden\":[1024],\"components\":10,\"dequantize\":256,\"logit\":1e-6}", -1038.5, 1.41},
        {"RealNVP (5)", "{\"preset\":\"realnvp\",\"dim\":784,\"layers\":5,\"hidden\":[1024],\"batch_norm\":true,\"dequantize\":256,\"logit\":1e-6}", -1323.2, 1.93},
        {"MAF (5)", "{\"preset\":\"maf\",\"dim\":784,\"layers\":5,\"hidden\":[1024],\"batch_norm\":true,\"dequantize\":256,\"logit\":1e-6}", -1300.5, 1.89},
        {"MAF MoG (5)", "{\"preset\":\"maf\",\"dim\":784,\"layers\":5,\"hidden\":[1024],\"components\":10,\"batch_norm\":true,\"dequantize\":256,\"logit\":1e-6}", -1100.3, 1.52},
    };
    float *lp = malloc((size_t)ntest * sizeof *lp);
    for (size_t k = 0; k < sizeof models / sizeof models[0]; k++) {
        flow_model *m = NULL;
        if (flow_model_create(&m, models[k].spec, FLOW_DEVICE_CPU, 1) != FLOW_OK) {
            fprintf(stderr, "%s: %s\n", models[k].name, flow_last_error());
            return 1;
        }
        flow_model_set_optimizer(m, "{\"type\":\"adam\",\"lr\":1e-4}");
        clock_t t0 = clock();
        uint64_t s = 12345;
        float *xb = malloc((size_t)batch * D * sizeof *xb);
        for (int step = 0; step < steps; step++) {
            for (int i = 0; i < batch; i++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                memcpy(xb + (size_t)i * D, train + ((s >> 33) % ntrain) * D, D * sizeof *xb);
            }
            if (flow_train_step(m, xb, NULL, (size_t)batch, NULL) != FLOW_OK) {
                fprintf(stderr, "%s step %d: %s\n", models[k].name, step, flow_last_error());
                break;
            }
        }
        free(xb);
        if (flow_log_prob(m, test, NULL, (size_t)ntest, lp) != FLOW_OK) {
            fprintf(stderr, "%s: %s\n", models[k].name, flow_last_error());
            return 1;
        }
        double ll = 0;
        for (int i = 0; i < ntest; i++) ll += lp[i] / ntest;
        printf("{\"model\":\"%s\",\"steps\":%d,\"batch\":%d,\"params\":%zu,\"test_rows\":%d,"
               "\"test_loglik_nats\":%.2f,\"bits_per_dim\":%.4f,\"cpu_s\":%.1f,"
               "\"paper_mnist_nats\":%.1f,\"paper_mnist_bpd\":%.2f}\n",
               models[k].name, steps, batch, flow_model_param_count(m), ntest, ll, -ll / (D * log(2.0)),
               (double)(clock() - t0) / CLOCKS_PER_SEC, models[k].paper_nats, models[k].paper_bpd);
        fflush(stdout);
        flow_model_free(m);
    }
    free(lp); free(train); free(test);
    return 0;
}
