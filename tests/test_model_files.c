/*
 * Model files (DESIGN.md section 5): save/load round trips bit for bit, the
 * file is valid safetensors, truncated and corrupted buffers are refused with
 * FLOW_ERR_FORMAT and never crash, and clones are equal but independent.
 */
#define _POSIX_C_SOURCE 200809L
#include "test_util.h"

#include <unistd.h>

/* batch norm gives running statistics, which must survive the file too */
#define SPEC_BN "{\"preset\":\"realnvp\",\"dim\":2,\"layers\":4,\"hidden\":[16,16],\"batch_norm\":true}"
#define SPEC_SMALL                                                                         \
    "{\"dim\":2,\"context_dim\":0,\"base\":{\"type\":\"normal\"},\"transforms\":["         \
    "{\"type\":\"affine_coupling\",\"mask\":\"alternate\",\"parity\":0,\"hidden\":[4],"   \
    "\"activation\":\"tanh\"},{\"type\":\"batch_norm\",\"momentum\":0.1,\"eps\":1e-5},"   \
    "{\"type\":\"reverse\"}]}"

enum { NX = 256 };

/* A model with non-trivial weights, running statistics and optimizer state. */
static flow_model *trained_model(const char *spec, int steps) {
    flow_model *m = tu_model(spec, 31);
    float x[64 * 2];
    for (int s = 0; s < steps; s++) {
        CHECK_OK(flow_toy_data("two_moons", 64, 100 + (uint64_t)s, x));
        CHECK_OK(flow_train_step(m, x, NULL, 64, NULL));
    }
    return m;
}

static void test_points(float *x) { CHECK_OK(flow_toy_data("two_moons", NX, 77, x)); }

static void assert_same_model(flow_model *a, flow_model *b, const char *what) {
    static float x[NX * 2], la[NX], lb[NX];
    test_points(x);
    CHECK_OK(flow_log_prob(a, x, NULL, NX, la));
    CHECK_OK(flow_log_prob(b, x, NULL, NX, lb));
    cr_assert_eq(memcmp(la, lb, sizeof la), 0, "%s: log_prob differs", what);
    size_t p;
    float *wa = tu_get_params(a, &p);
    cr_assert_eq(flow_model_param_count(b), p, "%s: parameter count differs", what);
    float *wb = tu_get_params(b, NULL);
    cr_assert_eq(memcmp(wa, wb, p * sizeof *wa), 0, "%s: parameters differ", what);
    char *sa = tu_spec(a), *sb = tu_spec(b);
    cr_assert_str_eq(sa, sb, "%s: spec differs", what);
    cr_assert_eq(flow_model_step_count(a), flow_model_step_count(b), "%s: step count differs", what);
    cr_assert_eq(flow_model_dim(a), flow_model_dim(b));
    free(wa); free(wb); free(sa); free(sb);
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* ------------------------------------------------------------------------ */

Test(model_files, save_load_file) {
    flow_model *m = trained_model(SPEC_BN, 10), *l = NULL;
    char dir[] = "/tmp/flowlib_files_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK_OK(flow_model_save(m, path));
    CHECK_OK(flow_model_load(&l, path, FLOW_DEVICE_CPU));
    assert_same_model(m, l, "save/load file");
    cr_assert_eq(flow_model_step_count(l), 10);

    /* flow_model_save_buffer gives the same bytes as the file */
    size_t flen, blen;
    unsigned char *fbytes = read_file(path, &flen), *bbytes = tu_save(m, &blen);
    cr_assert_eq(flen, blen, "file has %zu bytes, buffer %zu", flen, blen);
    cr_assert_eq(memcmp(fbytes, bbytes, flen), 0, "file and buffer bytes differ");

    /* saving twice gives the same bytes; saving over an existing file works */
    CHECK_OK(flow_model_save(l, path));
    size_t flen2;
    unsigned char *fbytes2 = read_file(path, &flen2);
    cr_assert_eq(flen2, flen);
    cr_assert_eq(memcmp(fbytes, fbytes2, flen), 0, "a loaded and re-saved model gives different bytes");
    TU_REPORT("[model_files] %zu parameters saved in %zu bytes", flow_model_param_count(m), flen);

    free(fbytes); free(fbytes2); free(bbytes);
    unlink(path);
    rmdir(dir);
    flow_model_free(l);
    flow_model_free(m);
}

/* reads a JSON integer after key in [s, end); returns 0 if absent */
static int parse_offsets(const char *p, const char *end, unsigned long long *a, unsigned long long *b) {
    while (p < end && *p != '[') p++;
    if (p >= end) return 0;
    char *q;
    *a = strtoull(p + 1, &q, 10);
    while (q < end && (*q == ',' || *q == ' ')) q++;
    *b = strtoull(q, &q, 10);
    return q < end && *q == ']';
}

Test(model_files, safetensors_layout) {
    flow_model *m = trained_model(SPEC_BN, 3);
    size_t len;
    unsigned char *buf = tu_save(m, &len);
    cr_assert_gt(len, 8);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i]; /* little endian */
    cr_assert_leq(hlen, len - 8, "header length %llu beyond a %zu-byte file", (unsigned long long)hlen, len);
    char *header = malloc(hlen + 1);
    memcpy(header, buf + 8, hlen);
    header[hlen] = '\0';
    cr_assert_eq(strlen(header), hlen, "NUL byte inside the JSON header");
    /* JSON object, padded with spaces only at the end */
    cr_assert_eq(header[0], '{', "header starts with '%c'", header[0]);
    size_t e = hlen;
    while (e > 0 && header[e - 1] == ' ') e--;
    cr_assert_eq(header[e - 1], '}');
    cr_assert_not_null(strstr(header, "\"__metadata__\""));
    cr_assert_not_null(strstr(header, "\"flowlib.spec\""));
    cr_assert_not_null(strstr(header, "\"flowlib.version\""));
    cr_assert_not_null(strstr(header, "\"flowlib.format\""));

    /* tensors: data_offsets cover the byte buffer exactly, without overlap
     * (they are written in order), and hold at least the parameters */
    const size_t data_len = len - 8 - (size_t)hlen;
    unsigned long long covered = 0, max_end = 0, f32 = 0;
    int tensors = 0;
    for (const char *p = strstr(header, "\"data_offsets\""); p; p = strstr(p + 1, "\"data_offsets\"")) {
        unsigned long long a, b;
        cr_assert(parse_offsets(p, header + hlen, &a, &b), "unreadable data_offsets");
        cr_assert_leq(a, b);
        cr_assert_leq(b, data_len, "tensor [%llu, %llu) beyond the %zu data bytes", a, b, data_len);
        covered += b - a;
        if (b > max_end) max_end = b;
        tensors++;
    }
    for (const char *p = strstr(header, "\"F32\""); p; p = strstr(p + 1, "\"F32\"")) f32++;
    cr_assert_gt(tensors, 0);
    cr_assert_eq(max_end, data_len, "data bytes after the last tensor");
    cr_assert_eq(covered, data_len, "tensors overlap or leave gaps");
    cr_assert_geq(data_len, flow_model_param_count(m) * 4);
    cr_assert_gt(f32, 0);
    TU_REPORT("[model_files] safetensors: header %llu bytes, %d tensors, %zu data bytes",
              (unsigned long long)hlen, tensors, data_len);

    /* the spec stored in the metadata is the model's expanded spec (as a
     * JSON string, so its quotes are escaped): check a distinctive piece */
    cr_assert_not_null(strstr(header, "batch_norm"));
    cr_assert_not_null(strstr(header, "affine_coupling"));
    free(header);
    free(buf);
    flow_model_free(m);
}

/* Loads a private copy of exactly len bytes (so that AddressSanitizer sees any
 * read past the end). */
static flow_status load_copy(const unsigned char *bytes, size_t len, flow_model **out) {
    unsigned char *copy = malloc(len ? len : 1);
    memcpy(copy, bytes, len);
    flow_status st = flow_model_load_buffer(out, copy, len, FLOW_DEVICE_CPU);
    free(copy);
    return st;
}

Test(model_files, every_truncation, .timeout = 600) {
    flow_model *m = trained_model(SPEC_SMALL, 2);
    size_t len;
    unsigned char *buf = tu_save(m, &len);
    for (size_t t = 0; t < len; t++) {
        flow_model *l = NULL;
        flow_status st = load_copy(buf, t, &l);
        if (t == 0)
            cr_assert(st == FLOW_ERR_FORMAT || st == FLOW_ERR_INVALID_ARGUMENT, "0 bytes: %s",
                      flow_status_string(st));
        else
            cr_assert_eq(st, FLOW_ERR_FORMAT, "truncated to %zu of %zu bytes: %s (%s)", t, len,
                         flow_status_string(st), flow_last_error());
        cr_assert_null(l, "truncated to %zu bytes: a model came back", t);
        cr_assert_neq(flow_last_error()[0], '\0');
    }
    flow_model *l = NULL;
    CHECK_OK(load_copy(buf, len, &l));
    assert_same_model(m, l, "full buffer");
    TU_REPORT("[model_files] all %zu truncations refused with FLOW_ERR_FORMAT", len);
    flow_model_free(l);
    free(buf);
    flow_model_free(m);
}

Test(model_files, random_corruptions, .timeout = 600) {
    flow_model *m = trained_model(SPEC_SMALL, 2);
    size_t len;
    unsigned char *buf = tu_save(m, &len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    unsigned char *bad = malloc(len);
    tu_rng r = tu_rng_make(2024);
    float x[NX * 2], lp[NX];
    test_points(x);
    int ok = 0, format = 0, lp_ok = 0;
    for (int trial = 0; trial < 3000; trial++) {
        memcpy(bad, buf, len);
        int edits = 1 + (int)tu_below(&r, 4);
        for (int e = 0; e < edits; e++) {
            /* two thirds of the edits hit the length prefix and the JSON
             * header, where the parser lives; the rest hit tensor data */
            size_t pos = tu_below(&r, 3) ? tu_below(&r, (size_t)hlen + 8) : tu_below(&r, len);
            switch (tu_below(&r, 3)) {
            case 0: bad[pos] ^= (unsigned char)(1u << tu_below(&r, 8)); break;  /* one bit */
            case 1: bad[pos] = (unsigned char)tu_below(&r, 256); break;          /* a random byte */
            default: bad[pos] = (unsigned char)"{}[]\",:0123456789e-"[tu_below(&r, 19)]; break; /* JSON */
            }
        }
        flow_model *l = NULL;
        flow_status st = load_copy(bad, len, &l);
        cr_assert(st == FLOW_OK || st == FLOW_ERR_FORMAT, "corruption %d: %s (%s)", trial, flow_status_string(st),
                  flow_last_error());
        if (st == FLOW_OK) {
            ok++;
            cr_assert_not_null(l);
            /* the model must work (corrupted weights may give any value) */
            flow_status s2 = flow_log_prob(l, x, NULL, NX, lp);
            cr_assert(s2 == FLOW_OK || s2 == FLOW_ERR_NUMERIC, "corruption %d: loaded, but log_prob -> %s", trial,
                      flow_status_string(s2));
            lp_ok += s2 == FLOW_OK;
            flow_model_free(l);
        } else {
            format++;
            cr_assert_null(l);
        }
    }
    TU_REPORT("[model_files] 3000 corruptions: %d loaded (log_prob OK for %d), %d refused with FLOW_ERR_FORMAT", ok,
              lp_ok, format);
    cr_assert_gt(format, 0);
    free(bad);
    free(buf);
    flow_model_free(m);
}

Test(model_files, clone_is_equal_and_independent) {
    flow_model *m = trained_model(SPEC_BN, 5), *c = NULL;
    CHECK_OK(flow_model_clone(&c, m, FLOW_DEVICE_CPU));
    cr_assert_neq(c, m);
    assert_same_model(m, c, "clone");

    /* the clone carries the optimizer state: one more step on each agrees */
    flow_model *c2 = NULL;
    CHECK_OK(flow_model_clone(&c2, m, FLOW_DEVICE_CPU));
    float x[64 * 2];
    CHECK_OK(flow_toy_data("two_moons", 64, 555, x));
    CHECK_OK(flow_train_step(c2, x, NULL, 64, NULL));
    flow_model *m2 = NULL;
    CHECK_OK(flow_model_clone(&m2, m, FLOW_DEVICE_CPU));
    CHECK_OK(flow_train_step(m2, x, NULL, 64, NULL));
    assert_same_model(m2, c2, "clones after one step");
    flow_model_free(m2);
    flow_model_free(c2);

    /* training the clone leaves the original alone (weights, statistics,
     * step count) */
    size_t p;
    float *w0 = tu_get_params(m, &p);
    static float xt[NX * 2], l0[NX], l1[NX];
    test_points(xt);
    CHECK_OK(flow_log_prob(m, xt, NULL, NX, l0));
    for (int s = 0; s < 5; s++) {
        CHECK_OK(flow_toy_data("two_moons", 64, 600 + (uint64_t)s, x));
        CHECK_OK(flow_train_step(c, x, NULL, 64, NULL));
    }
    float *w1 = tu_get_params(m, NULL), *wc = tu_get_params(c, NULL);
    cr_assert_eq(memcmp(w0, w1, p * sizeof *w0), 0, "training the clone changed the original");
    cr_assert_neq(memcmp(w0, wc, p * sizeof *w0), 0, "the clone did not train");
    CHECK_OK(flow_log_prob(m, xt, NULL, NX, l1));
    cr_assert_eq(memcmp(l0, l1, sizeof l0), 0);
    cr_assert_eq(flow_model_step_count(m), 5);
    cr_assert_eq(flow_model_step_count(c), 10);

    /* and the clone outlives the original */
    flow_model_free(m);
    CHECK_OK(flow_log_prob(c, xt, NULL, NX, l1));
    free(w0); free(w1); free(wc);
    flow_model_free(c);
}
