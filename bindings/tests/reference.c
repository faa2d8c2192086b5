/* The C side of the bindings' cross-language checks.
 *
 * Usage: flowlib_binding_reference DIR
 * Trains a small RealNVP a few steps and writes, into DIR:
 *   model_c.safetensors   the model
 *   data.f32              64 rows of two-moons data (raw float32, [64, 2])
 *   logprob_c.f32         log p of those rows as libflowlib computes them
 * Each binding loads the model and must reproduce logprob_c.f32 bit for bit;
 * each then leaves its own model_<lang>.safetensors / logprob_<lang>.f32
 * for the others to load. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <flowlib.h>

#define ROWS 64

static void check(flow_status s, const char *what) {
    if (s != FLOW_OK) {
        fprintf(stderr, "%s: %s: %s\n", what, flow_status_string(s), flow_last_error());
        exit(1);
    }
}

static void write_floats(const char *dir, const char *name, const float *v, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(v, sizeof *v, n, f) != n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    flow_model *m = NULL;
    check(flow_model_create(&m, "{\"preset\":\"realnvp\",\"dim\":2,\"layers\":4,"
                                "\"hidden\":[16,16],\"batch_norm\":true}",
                            FLOW_DEVICE_CPU, 7),
          "create");
    static float batch[128 * 2], data[ROWS * 2], lp[ROWS];
    for (int step = 0; step < 20; step++) {
        check(flow_toy_data("two_moons", 128, (uint64_t)step, batch), "toy_data");
        check(flow_train_step(m, batch, NULL, 128, NULL), "train_step");
    }
    check(flow_toy_data("two_moons", ROWS, 99, data), "toy_data");
    check(flow_log_prob(m, data, NULL, ROWS, lp), "log_prob");

    char path[4096];
    snprintf(path, sizeof path, "%s/model_c.safetensors", dir);
    check(flow_model_save(m, path), "save");
    write_floats(dir, "data.f32", data, ROWS * 2);
    write_floats(dir, "logprob_c.f32", lp, ROWS);
    flow_model_free(m);
    printf("reference model, data and log-densities written to %s\n", dir);
    return 0;
}
