/*
 * Steady state allocates nothing: once a model has answered a call (and, on
 * two threads, each thread's replica exists), flow_log_prob, flow_forward,
 * flow_inverse, flow_sample and flow_train_step make no heap allocation, for
 * every kind of transform and base, on one and two threads (README,
 * Performance). A train step changes every parameter, so what is derived
 * from them (masked, packed, composed or inverted weights) is made again on
 * each, in place.
 *
 * A plain program against libflowlib.so: it defines malloc and its siblings
 * itself, which the library's calls (and libstdc++'s operator new) then
 * reach, and counts the calls made while counting is on. Not built with the
 * sanitizers, whose runtime owns these functions.
 */
#include <flowlib.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static atomic_int counting;
static atomic_long allocations;

static void note(void) {
    if (atomic_load(&counting)) atomic_fetch_add(&allocations, 1);
}

void *malloc(size_t n) {
    note();
    return __libc_malloc(n);
}
void *calloc(size_t n, size_t size) {
    note();
    return __libc_calloc(n, size);
}
void *realloc(void *p, size_t n) {
    note();
    return __libc_realloc(p, n);
}
void *aligned_alloc(size_t alignment, size_t n) {
    note();
    return __libc_memalign(alignment, n);
}
void *memalign(size_t alignment, size_t n) {
    note();
    return __libc_memalign(alignment, n);
}
int posix_memalign(void **out, size_t alignment, size_t n) {
    note();
    void *p = __libc_memalign(alignment, n);
    if (!p) return 12; /* ENOMEM */
    *out = p;
    return 0;
}

#define AC(extra) "{\"type\":\"affine_coupling\"," extra "}"

static const struct {
    const char *name, *spec;
    size_t dim;
} models[] = {
    {"realnvp", "{\"preset\":\"realnvp\",\"dim\":6,\"layers\":4,\"hidden\":[32,32]}", 6},
    {"realnvp_bn", "{\"preset\":\"realnvp\",\"dim\":6,\"layers\":3,\"hidden\":[32],\"batch_norm\":true}",
     6},
    {"nice", "{\"preset\":\"nice\",\"dim\":6,\"layers\":4,\"hidden\":[32,32]}", 6},
    {"glow_lu", "{\"preset\":\"glow\",\"dim\":6,\"layers\":3,\"hidden\":[32]}", 6},
    {"glow_plain", "{\"preset\":\"glow\",\"dim\":6,\"layers\":3,\"hidden\":[32],\"lu\":false}", 6},
    {"maf_mog", "{\"preset\":\"maf\",\"dim\":5,\"layers\":2,\"hidden\":[32,32],\"components\":3}", 5},
    {"iaf", "{\"preset\":\"iaf\",\"dim\":4,\"layers\":2,\"hidden\":[32]}", 4},
    {"made_mog", "{\"preset\":\"made\",\"dim\":4,\"hidden\":[32],\"components\":2}", 4},
    {"planar_radial_mog",
     "{\"dim\":3,\"base\":{\"type\":\"mog\",\"components\":4},\"transforms\":["
     "{\"type\":\"planar\"},{\"type\":\"radial\"},{\"type\":\"planar\"}]}",
     3},
    {"dequantize_logit",
     "{\"dim\":4,\"base\":{\"type\":\"normal\"},\"transforms\":["
     "{\"type\":\"dequantize\",\"levels\":256},{\"type\":\"logit\",\"alpha\":0.05},"
     AC("\"mask\":\"alternate\",\"parity\":0,\"hidden\":[32]") "]}",
     4},
};

enum { rows = 1100 }; /* 512-row blocks and a ragged last one; 5 training parts */
static const char *const ops[] = {"log_prob", "forward", "inverse", "sample", "train_step"};
enum { op_count = sizeof ops / sizeof ops[0] };

static flow_status call(flow_model *m, int op, const float *x, float *out, float *per_row) {
    switch (op) {
    case 0: return flow_log_prob(m, x, NULL, rows, per_row);
    case 1: return flow_forward(m, x, NULL, rows, out, per_row);
    case 2: return flow_inverse(m, x, NULL, rows, out, per_row);
    case 3: return flow_sample(m, rows, NULL, 1.0f, 7, out, per_row);
    default: return flow_train_step(m, x, NULL, rows, NULL);
    }
}

int main(void) {
    int failures = 0;
    for (int threads = 1; threads <= 2; ++threads) {
        if (flow_set_num_threads(threads) != FLOW_OK) {
            fprintf(stderr, "flow_set_num_threads(%d): %s\n", threads, flow_last_error());
            return 1;
        }
        for (size_t i = 0; i < sizeof models / sizeof models[0]; ++i) {
            flow_model *m = NULL;
            if (flow_model_create(&m, models[i].spec, FLOW_DEVICE_CPU, 3) != FLOW_OK) {
                fprintf(stderr, "%s: %s\n", models[i].name, flow_last_error());
                return 1;
            }
            const size_t n = rows * models[i].dim;
            float *x = malloc(n * sizeof *x), *out = malloc(n * sizeof *out);
            float *per_row = malloc(rows * sizeof *per_row);
            /* In every model's domain: the unit interval (dequantization
             * wants integers, which the noise then moves inside it). */
            for (size_t k = 0; k < n; ++k) x[k] = (float)(k * 37 % 200) / 256.0f;
            if (models[i].name[0] == 'd')
                for (size_t k = 0; k < n; ++k) x[k] = (float)(k * 37 % 256);
            for (int op = 0; op < op_count; ++op) {
                /* The first calls size the workspaces and make the replicas. */
                for (int warm = 0; warm < 2; ++warm)
                    if (call(m, op, x, out, per_row) != FLOW_OK) {
                        fprintf(stderr, "%s %s: %s\n", models[i].name, ops[op], flow_last_error());
                        return 1;
                    }
                /* Threads take blocks as they come free, so on a busy machine
                 * a replica may meet its first full-size block (and size its
                 * workspaces) only later: a few windows of 3 calls, of which
                 * one must allocate nothing. An allocation made by every
                 * call fails them all. */
                long made = 0;
                for (int window = 0; window < 5; ++window) {
                    atomic_store(&allocations, 0);
                    atomic_store(&counting, 1);
                    for (int r = 0; r < 3; ++r) call(m, op, x, out, per_row);
                    atomic_store(&counting, 0);
                    made = atomic_load(&allocations);
                    if (made == 0) break;
                }
                if (made != 0) {
                    fprintf(stderr, "%s, %s, %d thread(s): %ld allocations in 3 calls\n",
                            models[i].name, ops[op], threads, made);
                    ++failures;
                }
            }
            free(x), free(out), free(per_row);
            flow_model_free(m);
        }
    }
    if (failures) return 1;
    printf("no allocation in steady state: %zu models x %d calls x 1, 2 threads\n",
           sizeof models / sizeof models[0], op_count);
    return 0;
}
