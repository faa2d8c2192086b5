/*
 * The properties every transform earns (DESIGN.md section 6), checked through
 * the public C API on a table of small models, one row per transform type and
 * a few combinations. Adding a transform means adding one line to SPECS.
 *
 *   round_trip    inverse(forward(x)) == x, and the inverse log-det is minus
 *                 the forward log-det at corresponding points
 *   jacobian      forward log-det == log|det J| of the finite-difference
 *                 Jacobian of flow_forward (LU in double)
 *   gradients     flow_loss_grad's parameter and input gradients == central
 *                 finite differences of its loss (batch statistics)
 *   density       2-D models: the density summed on a grid is ~1
 *   save_load     save_buffer -> load_buffer: bit-identical log_prob and spec
 *   sampling      flow_sample's log-probs match flow_log_prob, seeds behave,
 *                 temperature shrinks the latent spread by T^2
 *
 * Every model first has its parameters perturbed (N(0, 0.3^2) added), because
 * fresh coupling nets may start as the identity; models with batch norm take a
 * few training steps on shifted data so that their running statistics are
 * not the trivial (0, 1).
 *
 * Models live on TU_DEVICE (test_util.h): test_cuda_transforms.c runs this
 * same file on the CUDA device.
 */
#include "test_util.h"

#include <criterion/parameterized.h>

enum data_kind {
    DATA_REAL, /* N(0.2, 1) per coordinate */
    DATA_UNIT, /* uniform in [0.05, 0.95] (logit-first models) */
    DATA_INT   /* integers 0..levels-1 (dequantizing models) */
};

struct tspec {
    const char *name;
    const char *spec;
    int data;   /* enum data_kind */
    int levels; /* DATA_INT only */
    int warm;   /* take a few train steps first (batch norm statistics) */
    double box; /* density test: integrate over [-box, box]^2 (0: 10) */
};

#define AC(extra) "{\"type\":\"affine_coupling\"," extra "}"
#define ADD(extra) "{\"type\":\"additive_coupling\"," extra "}"
#define EXPLICIT(dim, base, transforms)                                       \
    "{\"dim\":" #dim ",\"context_dim\":0,\"base\":{\"type\":\"" base "\"},"   \
    "\"transforms\":[" transforms "]}"

static struct tspec SPECS[] = {
    /* affine coupling (RealNVP), every mask and activation */
    {"affine_alternate_relu_d2",
     EXPLICIT(2, "normal", AC("\"mask\":\"alternate\",\"parity\":0,\"hidden\":[16,16],\"activation\":\"relu\"")),
     DATA_REAL, 0, 0, 0},
    {"affine_half_tanh_d5",
     EXPLICIT(5, "normal", AC("\"mask\":\"half\",\"parity\":1,\"hidden\":[16],\"activation\":\"tanh\"")),
     DATA_REAL, 0, 0, 0},
    {"affine_random_elu_d6",
     EXPLICIT(6, "normal", AC("\"mask\":\"random\",\"parity\":0,\"hidden\":[16,16],\"activation\":\"elu\"")),
     DATA_REAL, 0, 0, 0},
    {"affine_explicit_softplus_d4",
     EXPLICIT(4, "normal", AC("\"mask\":[1,0,0,1],\"parity\":0,\"hidden\":[12],\"activation\":\"softplus\"")),
     DATA_REAL, 0, 0, 0},
    {"affine_pair_leaky_d3",
     EXPLICIT(3, "normal",
              AC("\"mask\":\"alternate\",\"parity\":0,\"hidden\":[16],\"activation\":\"leaky_relu\"") ","
              AC("\"mask\":\"alternate\",\"parity\":1,\"hidden\":[16],\"activation\":\"leaky_relu\"")),
     DATA_REAL, 0, 0, 0},
    /* additive coupling + diagonal scaling (NICE) */
    {"additive_alternate_tanh_d2",
     EXPLICIT(2, "normal", ADD("\"mask\":\"alternate\",\"parity\":1,\"hidden\":[16,16],\"activation\":\"tanh\"")),
     DATA_REAL, 0, 0, 0},
    {"additive_half_scale_d4",
     EXPLICIT(4, "normal",
              ADD("\"mask\":\"half\",\"parity\":0,\"hidden\":[16],\"activation\":\"elu\"") ","
              "{\"type\":\"diagonal_scale\"}"),
     DATA_REAL, 0, 0, 0},
    {"diagonal_scale_d3", EXPLICIT(3, "normal", "{\"type\":\"diagonal_scale\"}"), DATA_REAL, 0, 0, 0},
    /* normalization and mixing */
    {"batch_norm_d3",
     EXPLICIT(3, "normal", "{\"type\":\"batch_norm\",\"momentum\":0.1,\"eps\":1e-5}"),
     DATA_REAL, 0, 1, 0},
    {"batch_norm_coupling_d2",
     EXPLICIT(2, "normal",
              AC("\"mask\":\"alternate\",\"parity\":0,\"hidden\":[16],\"activation\":\"tanh\"") ","
              "{\"type\":\"batch_norm\",\"momentum\":0.5,\"eps\":1e-5}"),
     DATA_REAL, 0, 1, 0},
    {"reverse_d3",
     EXPLICIT(3, "normal",
              "{\"type\":\"reverse\"}," AC("\"mask\":\"half\",\"parity\":0,\"hidden\":[8],\"activation\":\"tanh\"")),
     DATA_REAL, 0, 0, 0},
    {"reverse_only_d2", EXPLICIT(2, "normal", "{\"type\":\"reverse\"}"), DATA_REAL, 0, 0, 0},
    {"permutation_given_d4",
     EXPLICIT(4, "normal",
              "{\"type\":\"permutation\",\"perm\":[2,0,3,1]}," AC("\"mask\":\"half\",\"parity\":0,\"hidden\":[8],\"activation\":\"tanh\"")),
     DATA_REAL, 0, 0, 0},
    {"permutation_random_d5",
     EXPLICIT(5, "normal",
              "{\"type\":\"permutation\"}," AC("\"mask\":\"alternate\",\"parity\":0,\"hidden\":[8],\"activation\":\"elu\"")),
     DATA_REAL, 0, 0, 0},
    /* preprocessing */
    {"logit_d2", EXPLICIT(2, "normal", "{\"type\":\"logit\",\"alpha\":0.001}"), DATA_UNIT, 0, 0, 0},
    {"logit_coupling_d2",
     EXPLICIT(2, "normal",
              "{\"type\":\"logit\",\"alpha\":0.001}," AC("\"mask\":\"alternate\",\"parity\":1,\"hidden\":[16],\"activation\":\"tanh\"")),
     DATA_UNIT, 0, 0, 0},
    {"logit_coupling_d3",
     EXPLICIT(3, "normal",
              "{\"type\":\"logit\",\"alpha\":0.05}," AC("\"mask\":\"alternate\",\"parity\":0,\"hidden\":[16],\"activation\":\"softplus\"")),
     DATA_UNIT, 0, 0, 0},
    {"dequantize_d3", EXPLICIT(3, "normal", "{\"type\":\"dequantize\",\"levels\":16}"), DATA_INT, 16, 0, 0},
    {"dequantize_logit_coupling_d2",
     EXPLICIT(2, "normal",
              "{\"type\":\"dequantize\",\"levels\":256},{\"type\":\"logit\",\"alpha\":0.05},"
              AC("\"mask\":\"alternate\",\"parity\":0,\"hidden\":[16],\"activation\":\"tanh\"")),
     DATA_INT, 256, 0, 0},
    /* other base */
    {"logistic_affine_d2", /* heavy tails: 8% of the mass lies outside [-10, 10]^2 */
     EXPLICIT(2, "logistic", AC("\"mask\":\"alternate\",\"parity\":0,\"hidden\":[16],\"activation\":\"softplus\"")),
     DATA_REAL, 0, 0, 40},
    {"logistic_only_d2", EXPLICIT(2, "logistic", "{\"type\":\"reverse\"}"), DATA_REAL, 0, 0, 40},
    /* presets */
    {"realnvp_bn_d2",
     "{\"preset\":\"realnvp\",\"dim\":2,\"layers\":4,\"hidden\":[16,16],\"batch_norm\":true}",
     DATA_REAL, 0, 1, 0},
    {"realnvp_tanh_d4",
     "{\"preset\":\"realnvp\",\"dim\":4,\"layers\":3,\"hidden\":[8],\"activation\":\"tanh\"}",
     DATA_REAL, 0, 0, 0},
    {"nice_d2", "{\"preset\":\"nice\",\"dim\":2,\"layers\":4,\"hidden\":[16,16]}", DATA_REAL, 0, 0, 0},
    {"nice_logistic_d3",
     "{\"preset\":\"nice\",\"dim\":3,\"layers\":3,\"hidden\":[8],\"activation\":\"elu\",\"base\":{\"type\":\"logistic\"}}",
     DATA_REAL, 0, 0, 0},
    /* autoregressive: MADE Gaussian layers (MAF direction, IAF direction), presets.
     * alpha (the log-scale) is unbounded as in the MAF paper, so with relu
     * nets and perturbed weights the tails can be so heavy that the 2-D grid
     * misses mass or samples overflow: the 2-D rows with several layers use tanh. */
    {"made_affine_maf_natural_d2",
     EXPLICIT(2, "normal", "{\"type\":\"made_affine\",\"direction\":\"maf\",\"order\":\"natural\",\"hidden\":[16,16],\"activation\":\"relu\"}"),
     DATA_REAL, 0, 0, 0},
    {"made_affine_maf_random_tanh_d5",
     EXPLICIT(5, "normal", "{\"type\":\"made_affine\",\"order\":\"random\",\"hidden\":[16],\"activation\":\"tanh\"}"),
     DATA_REAL, 0, 0, 0},
    {"made_affine_iaf_explicit_elu_d4",
     EXPLICIT(4, "normal", "{\"type\":\"made_affine\",\"direction\":\"iaf\",\"order\":[2,0,3,1],\"mask_seed\":7,\"hidden\":[12,12],\"activation\":\"elu\"}"),
     DATA_REAL, 0, 0, 0},
    {"made_affine_iaf_natural_d2",
     EXPLICIT(2, "normal", "{\"type\":\"made_affine\",\"direction\":\"iaf\",\"hidden\":[16],\"activation\":\"tanh\"}"),
     DATA_REAL, 0, 0, 0},
    {"maf_bn_d2", "{\"preset\":\"maf\",\"dim\":2,\"layers\":3,\"hidden\":[16,16],\"activation\":\"tanh\",\"batch_norm\":true}",
     DATA_REAL, 0, 1, 40},
    {"maf_bn_relu_d3", "{\"preset\":\"maf\",\"dim\":3,\"layers\":2,\"hidden\":[8],\"batch_norm\":true}",
     DATA_REAL, 0, 1, 0},
    {"maf_random_d3", "{\"preset\":\"maf\",\"dim\":3,\"layers\":2,\"hidden\":[8],\"order\":\"random\",\"activation\":\"tanh\"}",
     DATA_REAL, 0, 0, 0},
    {"iaf_d3", "{\"preset\":\"iaf\",\"dim\":3,\"layers\":2,\"hidden\":[8],\"activation\":\"tanh\"}",
     DATA_REAL, 0, 0, 0},
    {"made_d4", "{\"preset\":\"made\",\"dim\":4,\"hidden\":[16,16]}", DATA_REAL, 0, 0, 0},
    {"realnvp_dequant_logit_d2",
     "{\"preset\":\"realnvp\",\"dim\":2,\"layers\":2,\"hidden\":[8],\"activation\":\"tanh\",\"dequantize\":256,\"logit\":0.05}",
     DATA_INT, 256, 0, 0},
    /* Glow steps for vectors: actnorm (data-dependent init on the first
     * training batch, hence warm), invertible linear (LU and plain) */
    {"actnorm_d3", EXPLICIT(3, "normal", "{\"type\":\"actnorm\"}"), DATA_REAL, 0, 1, 0},
    {"actnorm_coupling_d2",
     EXPLICIT(2, "normal",
              "{\"type\":\"actnorm\"}," AC("\"mask\":\"alternate\",\"parity\":0,\"hidden\":[16],\"activation\":\"tanh\"")),
     DATA_REAL, 0, 1, 0},
    {"invlinear_lu_d2", EXPLICIT(2, "normal", "{\"type\":\"invertible_linear\",\"lu\":true,\"perm\":[1,0]}"),
     DATA_REAL, 0, 0, 0},
    {"invlinear_lu_random_perm_d5",
     EXPLICIT(5, "normal",
              "{\"type\":\"invertible_linear\"}," AC("\"mask\":\"half\",\"parity\":0,\"hidden\":[8],\"activation\":\"elu\"")),
     DATA_REAL, 0, 0, 0},
    {"invlinear_plain_d2", /* the perturbed W has a small singular value: wide density */
     EXPLICIT(2, "normal", "{\"type\":\"invertible_linear\",\"lu\":false}"), DATA_REAL, 0, 0, 40},
    {"invlinear_plain_d4",
     EXPLICIT(4, "normal",
              "{\"type\":\"invertible_linear\",\"lu\":false}," AC("\"mask\":\"half\",\"parity\":1,\"hidden\":[8],\"activation\":\"tanh\"")),
     DATA_REAL, 0, 0, 0},
    {"glow_d2", "{\"preset\":\"glow\",\"dim\":2,\"layers\":3,\"hidden\":[16],\"activation\":\"tanh\"}", DATA_REAL, 0, 1, 0},
    {"glow_plain_d4", "{\"preset\":\"glow\",\"dim\":4,\"layers\":2,\"hidden\":[8],\"lu\":false}",
     DATA_REAL, 0, 1, 0},
    /* planar and radial flows (inverse solved numerically / as a root) */
    {"planar_d2", EXPLICIT(2, "normal", "{\"type\":\"planar\"},{\"type\":\"planar\"},{\"type\":\"planar\"}"),
     DATA_REAL, 0, 0, 0},
    {"planar_d4", EXPLICIT(4, "normal", "{\"type\":\"planar\"},{\"type\":\"planar\"}"), DATA_REAL, 0, 0, 0},
    {"radial_d2", EXPLICIT(2, "normal", "{\"type\":\"radial\"},{\"type\":\"radial\"},{\"type\":\"radial\"}"),
     DATA_REAL, 0, 0, 0},
    {"radial_d3", EXPLICIT(3, "normal", "{\"type\":\"radial\"},{\"type\":\"radial\"}"), DATA_REAL, 0, 0, 0},
    {"planar_preset_d2", "{\"preset\":\"planar\",\"dim\":2,\"layers\":4}", DATA_REAL, 0, 0, 0},
    {"radial_preset_d2", "{\"preset\":\"radial\",\"dim\":2,\"layers\":4}", DATA_REAL, 0, 0, 0},
    /* mixture-of-Gaussians base */
    {"mog_only_d2", "{\"dim\":2,\"base\":{\"type\":\"mog\",\"components\":3},\"transforms\":[{\"type\":\"reverse\"}]}", DATA_REAL, 0, 0, 0},
    {"mog_affine_d3",
     "{\"dim\":3,\"base\":{\"type\":\"mog\",\"components\":4},\"transforms\":["
     AC("\"mask\":\"alternate\",\"parity\":0,\"hidden\":[8],\"activation\":\"tanh\"") "]}",
     DATA_REAL, 0, 0, 0},
    {"mog_realnvp_d2",
     "{\"preset\":\"realnvp\",\"dim\":2,\"layers\":2,\"hidden\":[8],\"base\":{\"type\":\"mog\",\"components\":2}}",
     DATA_REAL, 0, 0, 0},
    {"mog_glow_d2",
     "{\"preset\":\"glow\",\"dim\":2,\"layers\":2,\"hidden\":[8],\"base\":{\"type\":\"mog\",\"components\":3}}",
     DATA_REAL, 0, 1, 0},
    /* MADE MoG base (per dimension a mixture of Gaussians from a MADE):
     * alone (MADE MoG), through the presets, and under MAF layers (MAF MoG) */
    {"made_mog_only_d2",
     "{\"dim\":2,\"base\":{\"type\":\"made_mog\",\"components\":3,\"hidden\":[16,16],\"activation\":\"tanh\"},\"transforms\":[]}",
     DATA_REAL, 0, 0, 0},
    {"made_mog_explicit_relu_d4",
     "{\"dim\":4,\"base\":{\"type\":\"made_mog\",\"components\":2,\"order\":[2,0,3,1],\"mask_seed\":5,\"hidden\":[12],\"activation\":\"relu\"},"
     "\"transforms\":[{\"type\":\"reverse\"}]}",
     DATA_REAL, 0, 0, 0},
    {"made_mog_preset_d2", "{\"preset\":\"made\",\"dim\":2,\"components\":4,\"hidden\":[16],\"activation\":\"elu\"}",
     DATA_REAL, 0, 0, 0},
    {"made_mog_preset_random_d5", "{\"preset\":\"made\",\"dim\":5,\"mog\":3,\"hidden\":[16,16],\"order\":\"random\"}",
     DATA_REAL, 0, 0, 0},
    {"maf_mog_d2", "{\"preset\":\"maf\",\"dim\":2,\"layers\":2,\"components\":3,\"hidden\":[16],\"activation\":\"tanh\"}",
     DATA_REAL, 0, 0, 0},
    /* agnostic training (warm: 5 steps, each with other masks; evaluation
     * then uses the spec's masks) */
    {"made_mog_agnostic_both_d2",
     "{\"preset\":\"made\",\"dim\":2,\"components\":3,\"hidden\":[16],\"activation\":\"tanh\",\"agnostic\":\"both\"}",
     DATA_REAL, 0, 1, 0},
    {"made_mog_agnostic_order_d4",
     "{\"dim\":4,\"base\":{\"type\":\"made_mog\",\"components\":2,\"hidden\":[12,12],\"agnostic\":\"order\"},\"transforms\":[]}",
     DATA_REAL, 0, 1, 0},
    /* evaluation ensembles: the density is the mean over K mask draws */
    {"made_mog_ensemble_d2",
     "{\"preset\":\"made\",\"dim\":2,\"components\":3,\"hidden\":[16],\"activation\":\"tanh\",\"agnostic\":\"both\",\"ensemble\":4}",
     DATA_REAL, 0, 0, 0},
    {"made_mog_ensemble_warm_d2",
     "{\"preset\":\"made\",\"dim\":2,\"components\":2,\"hidden\":[16,16],\"agnostic\":\"connectivity\",\"ensemble\":3}",
     DATA_REAL, 0, 1, 0},
    {"made_mog_ensemble_order_d4",
     "{\"dim\":4,\"base\":{\"type\":\"made_mog\",\"components\":2,\"hidden\":[12],\"activation\":\"elu\",\"agnostic\":\"order\",\"ensemble\":3},\"transforms\":[]}",
     DATA_REAL, 0, 0, 0},
    {"maf_mog_ensemble_d2",
     "{\"preset\":\"maf\",\"dim\":2,\"layers\":2,\"components\":2,\"hidden\":[16],\"activation\":\"tanh\",\"agnostic\":\"both\",\"ensemble\":3}",
     DATA_REAL, 0, 0, 0},
    {"maf_mog_d3", "{\"preset\":\"maf\",\"dim\":3,\"layers\":2,\"components\":2,\"hidden\":[8],\"activation\":\"tanh\"}",
     DATA_REAL, 0, 0, 0},
};

#define NSPECS (sizeof SPECS / sizeof SPECS[0])

/* Criterion runs each parameterized test in a fresh process and copies the
 * parameters there as raw bytes: pass row indices, not pointers. */
static int ROWS[NSPECS];

static int *rows(void) {
    for (size_t i = 0; i < NSPECS; i++) ROWS[i] = (int)i;
    return ROWS;
}

/* ------------------------------------------------------------------------ */

static void make_data(const struct tspec *t, size_t dim, size_t n, uint64_t seed,
                      float *x) {
    tu_rng r = tu_rng_make(seed);
    for (size_t i = 0; i < n * dim; i++) {
        switch (t->data) {
        case DATA_UNIT: x[i] = (float)(0.05 + 0.9 * tu_uniform(&r)); break;
        case DATA_INT: x[i] = (float)tu_below(&r, (size_t)t->levels); break;
        default: x[i] = (float)(0.2 + tu_normal(&r)); break;
        }
    }
}

/* Creates the model of row t with perturbed parameters (and, for batch norm,
 * non-trivial running statistics). */
static flow_model *setup(const struct tspec *t) {
    flow_model *m = tu_model(t->spec, 42);
    if (flow_model_param_count(m) > 0) tu_perturb_params(m, 0.3, 4242);
    if (t->warm) {
        size_t dim = flow_model_dim(m), n = 64;
        float *x = malloc(n * dim * sizeof *x);
        for (int s = 0; s < 5; s++) {
            make_data(t, dim, n, 100 + (uint64_t)s, x);
            for (size_t i = 0; i < n * dim; i++) x[i] = 1.5f * x[i] + 0.7f;
            CHECK_OK(flow_train_step(m, x, NULL, n, NULL));
        }
        free(x);
    }
    return m;
}

ParameterizedTestParameters(transforms, round_trip) {
    return cr_make_param_array(int, rows(), NSPECS);
}
ParameterizedTestParameters(transforms, jacobian) {
    return cr_make_param_array(int, rows(), NSPECS);
}
ParameterizedTestParameters(transforms, gradients) {
    return cr_make_param_array(int, rows(), NSPECS);
}
ParameterizedTestParameters(transforms, density) {
    return cr_make_param_array(int, rows(), NSPECS);
}
ParameterizedTestParameters(transforms, save_load) {
    return cr_make_param_array(int, rows(), NSPECS);
}
ParameterizedTestParameters(transforms, sampling) {
    return cr_make_param_array(int, rows(), NSPECS);
}

/* ------------------------------------------------------------------------ */
/* (1) round trip                                                           */
/* ------------------------------------------------------------------------ */

ParameterizedTest(int *idx, transforms, round_trip) {
    const struct tspec *t = &SPECS[*idx];
    flow_model *m = setup(t);
    size_t dim = flow_model_dim(m), n = 64;
    float *x = malloc(n * dim * sizeof *x), *z = malloc(n * dim * sizeof *z),
          *x2 = malloc(n * dim * sizeof *x2);
    float ldf[64], ldi[64];
    make_data(t, dim, n, 1, x);

    CHECK_OK(flow_forward(m, x, NULL, n, z, ldf));
    cr_assert(tu_all_finite(z, n * dim) && tu_all_finite(ldf, n), "%s: forward not finite", t->name);
    CHECK_OK(flow_inverse(m, z, NULL, n, x2, ldi));
    cr_assert(tu_all_finite(ldi, n), "%s: inverse logdet not finite", t->name);

    double max_err = 0, max_rel = 0, max_ld = 0;
    for (size_t i = 0; i < n * dim; i++) {
        double e = fabs((double)x2[i] - x[i]);
        if (e > max_err) max_err = e;
        double rel = e / (1.0 + fabs(x[i]));
        if (rel > max_rel) max_rel = rel;
    }
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)ldi[i] + ldf[i]) / (1.0 + fabs(ldf[i]));
        if (e > max_ld) max_ld = e;
    }
    TU_REPORT("[round_trip] %-30s max |x - inv(fwd(x))| = %.3g (rel %.3g), "
              "max |ld_inv + ld_fwd|/(1+|ld|) = %.3g",
              t->name, max_err, max_rel, max_ld);
    if (t->data == DATA_INT)
        cr_assert_eq(max_err, 0.0, "%s: dequantized round trip must give back the integers (max err %g)",
                     t->name, max_err);
    else
        cr_assert_leq(max_rel, 1e-4, "%s: round trip error %g", t->name, max_rel);
    cr_assert_leq(max_ld, 2e-4, "%s: inverse logdet != -forward logdet (%g)", t->name, max_ld);

    /* flow_forward is deterministic (dequantize: fixed noise stream) */
    float ldf2[64];
    CHECK_OK(flow_forward(m, x, NULL, n, z, ldf2));
    cr_assert_eq(memcmp(ldf, ldf2, n * sizeof *ldf), 0, "%s: flow_forward not deterministic", t->name);

    free(x); free(z); free(x2);
    flow_model_free(m);
}

/* ------------------------------------------------------------------------ */
/* (2) log-det against the brute-force Jacobian                              */
/* ------------------------------------------------------------------------ */

/* log|det A| of an n x n row-major matrix (destroyed), LU with partial
 * pivoting. */
static double log_abs_det(double *a, size_t n) {
    double acc = 0;
    for (size_t k = 0; k < n; k++) {
        size_t p = k;
        for (size_t i = k + 1; i < n; i++)
            if (fabs(a[i * n + k]) > fabs(a[p * n + k])) p = i;
        if (a[p * n + k] == 0) return -INFINITY;
        if (p != k)
            for (size_t j = 0; j < n; j++) {
                double tmp = a[k * n + j];
                a[k * n + j] = a[p * n + j];
                a[p * n + j] = tmp;
            }
        acc += log(fabs(a[k * n + k]));
        for (size_t i = k + 1; i < n; i++) {
            double f = a[i * n + k] / a[k * n + k];
            for (size_t j = k; j < n; j++) a[i * n + j] -= f * a[k * n + j];
        }
    }
    return acc;
}

ParameterizedTest(int *idx, transforms, jacobian) {
    const struct tspec *t = &SPECS[*idx];
    if (t->data == DATA_INT) {
        /* dequantizing models only accept integer data, so flow_forward cannot
         * be differentiated numerically in x; their log-det (-D log levels
         * plus the following transforms) is covered by round_trip. */
        cr_skip_test("%s: dequantize accepts only integers", t->name);
    }
    flow_model *m = setup(t);
    size_t dim = flow_model_dim(m), npts = 4;
    const double h = 2e-3;
    float *x = malloc(npts * dim * sizeof *x);
    float *xp = malloc(2 * dim * dim * sizeof *xp), *zp = malloc(2 * dim * dim * sizeof *zp);
    double *jac = malloc(dim * dim * sizeof *jac);
    float *z = malloc(npts * dim * sizeof *z), ld[4];
    make_data(t, dim, npts, 2, x);
    CHECK_OK(flow_forward(m, x, NULL, npts, z, ld));

    double max_err = 0;
    for (size_t p = 0; p < npts; p++) {
        const float *x0 = x + p * dim;
        /* rows 2j and 2j+1 are x0 + h e_j and x0 - h e_j */
        for (size_t j = 0; j < dim; j++)
            for (int s = 0; s < 2; s++) {
                float *row = xp + (2 * j + (size_t)s) * dim;
                memcpy(row, x0, dim * sizeof *row);
                row[j] += (float)(s == 0 ? h : -h);
            }
        CHECK_OK(flow_forward(m, xp, NULL, 2 * dim, zp, NULL));
        for (size_t j = 0; j < dim; j++) {
            /* the step actually taken in float */
            double step = (double)xp[2 * j * dim + j] - (double)xp[(2 * j + 1) * dim + j];
            for (size_t i = 0; i < dim; i++)
                jac[i * dim + j] = ((double)zp[2 * j * dim + i] - (double)zp[(2 * j + 1) * dim + i]) / step;
        }
        double fd = log_abs_det(jac, dim);
        double err = fabs(fd - ld[p]);
        TU_REPORT("[jacobian]   %-30s point %zu: logdet %.6f, finite differences %.6f, |diff| %.3g",
                  t->name, p, ld[p], fd, err);
        if (err > max_err) max_err = err;
        cr_assert_leq(err, 1e-2 + 2e-3 * fabs(fd), "%s: logdet %g vs finite-difference Jacobian %g",
                      t->name, ld[p], fd);
    }
    free(x); free(xp); free(zp); free(jac); free(z);
    flow_model_free(m);
}

/* ------------------------------------------------------------------------ */
/* (3) gradients of flow_loss_grad                                           */
/* ------------------------------------------------------------------------ */

static double loss_at(flow_model *m, const float *x, size_t n) {
    float loss = 0;
    CHECK_OK(flow_loss_grad(m, x, NULL, n, &loss, NULL, NULL));
    return loss;
}

static int close_to(double g, double fd) {
    return fabs(g - fd) <= 3e-3 + 2e-2 * fmax(fabs(g), fabs(fd));
}

/* The gradient g at w agrees with the central difference (lm, l0, lp at
 * w - hm, w, w + hp) -- or, when a ReLU kink lies inside [w - hm, w + hp],
 * with the one-sided difference on the kink-free side. A wrong gradient
 * matches none of the three. */
static int grad_close(double g, double lm, double l0, double lp, double hm, double hp) {
    return close_to(g, (lp - lm) / (hp + hm)) || close_to(g, (l0 - lm) / hm) || close_to(g, (lp - l0) / hp);
}

ParameterizedTest(int *idx, transforms, gradients) {
    const struct tspec *t = &SPECS[*idx];
    flow_model *m = setup(t);
    size_t dim = flow_model_dim(m), n = 16;
    size_t pc = flow_model_param_count(m);
    float *x = malloc(n * dim * sizeof *x);
    float *pg = malloc((pc ? pc : 1) * sizeof *pg), *xg = malloc(n * dim * sizeof *xg);
    make_data(t, dim, n, 3, x);
    float loss = 0;
    CHECK_OK(flow_loss_grad(m, x, NULL, n, &loss, pg, xg));
    cr_assert(isfinite(loss), "%s: loss not finite", t->name);

    /* The loss is the mean NLL of the batch: compare with log_prob when the
     * model has no batch norm (log_prob uses running statistics). */
    if (!t->warm) {
        float *lp = malloc(n * sizeof *lp);
        CHECK_OK(flow_log_prob(m, x, NULL, n, lp));
        double mean = 0;
        for (size_t i = 0; i < n; i++) mean -= lp[i];
        mean /= (double)n;
        cr_assert_leq(fabs(mean - loss), 1e-4 * (1 + fabs(mean)),
                      "%s: loss %g != mean NLL from flow_log_prob %g", t->name, loss, mean);
        free(lp);
    }

    /* parameters: all of them for small models, else 64 random coordinates */
    const double h = 5e-3;
    size_t ncheck = pc <= 400 ? pc : 64, bad = 0;
    double max_abs = 0;
    float *w = pc ? tu_get_params(m, NULL) : NULL;
    tu_rng r = tu_rng_make(77);
    for (size_t c = 0; c < ncheck; c++) {
        size_t k = pc <= 400 ? c : tu_below(&r, pc);
        float w0 = w[k];
        w[k] = w0 + (float)h;
        CHECK_OK(flow_model_set_params(m, w, pc));
        double lp_ = loss_at(m, x, n);
        double hp = (double)w[k] - w0;
        w[k] = w0 - (float)h;
        CHECK_OK(flow_model_set_params(m, w, pc));
        double lm_ = loss_at(m, x, n);
        double hm = w0 - (double)w[k];
        w[k] = w0;
        double fd = (lp_ - lm_) / (hp + hm);
        double e = fabs(fd - pg[k]);
        if (e > max_abs) max_abs = e;
        if (!grad_close(pg[k], lm_, loss, lp_, hm, hp)) {
            bad++;
            TU_REPORT("[gradients]  %-30s param %zu: grad %.6g, finite differences %.6g", t->name, k, pg[k], fd);
        }
    }
    if (pc) CHECK_OK(flow_model_set_params(m, w, pc));
    TU_REPORT("[gradients]  %-30s %zu/%zu parameter coordinates checked, max |grad - central fd| = %.3g, %zu outside tolerance",
              t->name, ncheck, pc, max_abs, bad);
    cr_assert_eq(bad, 0, "%s: %zu parameter gradients disagree with finite differences", t->name, bad);

    /* inputs (not for dequantizing models: they accept only integers) */
    if (t->data != DATA_INT) {
        double max_x = 0;
        size_t badx = 0;
        for (size_t k = 0; k < n * dim; k++) {
            float x0 = x[k];
            x[k] = x0 + (float)h;
            double lp_ = loss_at(m, x, n), hp = (double)x[k] - x0;
            x[k] = x0 - (float)h;
            double lm_ = loss_at(m, x, n), hm = x0 - (double)x[k];
            x[k] = x0;
            double fd = (lp_ - lm_) / (hp + hm);
            double e = fabs(fd - xg[k]);
            if (e > max_x) max_x = e;
            if (!grad_close(xg[k], lm_, loss, lp_, hm, hp)) {
                badx++;
                TU_REPORT("[gradients]  %-30s x[%zu]: grad %.6g, finite differences %.6g", t->name, k, xg[k], fd);
            }
        }
        TU_REPORT("[gradients]  %-30s %zu input coordinates, max |grad - central fd| = %.3g, %zu outside tolerance",
                  t->name, n * dim, max_x, badx);
        cr_assert_eq(badx, 0, "%s: %zu input gradients disagree with finite differences", t->name, badx);
    }

    /* flow_loss_grad does not change the model */
    float loss2 = 0;
    float *pg2 = malloc((pc ? pc : 1) * sizeof *pg2);
    CHECK_OK(flow_loss_grad(m, x, NULL, n, &loss2, pg2, NULL));
    cr_assert_eq(memcmp(&loss, &loss2, sizeof loss), 0, "%s: loss changed between calls", t->name);
    cr_assert_eq(memcmp(pg, pg2, pc * sizeof *pg), 0, "%s: gradient changed between calls", t->name);
    cr_assert_eq(flow_model_step_count(m), t->warm ? 5u : 0u);

    free(pg2); free(w); free(x); free(pg); free(xg);
    flow_model_free(m);
}

/* ------------------------------------------------------------------------ */
/* (4) the density integrates to one (2-D models)                            */
/* ------------------------------------------------------------------------ */

ParameterizedTest(int *idx, transforms, density) {
    const struct tspec *t = &SPECS[*idx];
    if (t->data == DATA_INT) {
        /* A dequantizing model is a distribution over integers whose log_prob
         * is a single-noise-sample estimate (a lower bound in expectation)
         * and is defined only on integer points: there is no density to
         * integrate on a grid. */
        cr_skip_test("%s: dequantize has no continuous density", t->name);
    }
    flow_model *m = setup(t);
    if (flow_model_dim(m) != 2) {
        flow_model_free(m);
        cr_skip_test("%s: grid integration only for 2-D models", t->name);
    }
    /* logit-first models live on (0,1)^2, the others on R^2 (cut to [-10,10]^2) */
    const int unit = t->data == DATA_UNIT;
    const double box = t->box > 0 ? t->box : 10.0;
    const size_t cells = unit ? 400 : (size_t)(box / 0.025 + 0.5); /* step 1/400 or 0.05 */
    const double lo = unit ? 0.0 : -box, hi = unit ? 1.0 : box;
    const double step = (hi - lo) / (double)cells;
    float *row = malloc(cells * 2 * sizeof *row), *lp = malloc(cells * sizeof *lp);
    double mass = 0; /* midpoint rule */
    for (size_t i = 0; i < cells; i++) {
        for (size_t j = 0; j < cells; j++) {
            row[2 * j] = (float)(lo + (i + 0.5) * step);
            row[2 * j + 1] = (float)(lo + (j + 0.5) * step);
        }
        CHECK_OK(flow_log_prob(m, row, NULL, cells, lp));
        for (size_t j = 0; j < cells; j++) {
            cr_assert(isfinite(lp[j]), "%s: log_prob not finite at (%g, %g)", t->name, row[2 * j], row[2 * j + 1]);
            mass += exp((double)lp[j]);
        }
    }
    mass *= step * step;
    TU_REPORT("[density]    %-30s integral over [%g,%g]^2 = %.6f", t->name, lo, hi, mass);
    cr_assert_leq(fabs(mass - 1.0), 1e-2, "%s: density integrates to %g", t->name, mass);
    free(row); free(lp);
    flow_model_free(m);
}

/* ------------------------------------------------------------------------ */
/* (5) save -> load -> identical log_prob                                    */
/* ------------------------------------------------------------------------ */

ParameterizedTest(int *idx, transforms, save_load) {
    const struct tspec *t = &SPECS[*idx];
    flow_model *m = setup(t);
    size_t dim = flow_model_dim(m), n = 64;
    float *x = malloc(n * dim * sizeof *x), lp1[64], lp2[64], lp3[64];
    make_data(t, dim, n, 5, x);
    CHECK_OK(flow_log_prob(m, x, NULL, n, lp1));
    cr_assert(tu_all_finite(lp1, n), "%s: log_prob not finite", t->name);
    /* log_prob is deterministic (for dequantize: fixed noise stream) */
    CHECK_OK(flow_log_prob(m, x, NULL, n, lp3));
    cr_assert_eq(memcmp(lp1, lp3, sizeof lp1), 0, "%s: log_prob differs between two calls", t->name);

    size_t len = 0;
    unsigned char *buf = tu_save(m, &len);
    flow_model *m2 = NULL;
    CHECK_OK(flow_model_load_buffer(&m2, buf, len, TU_DEVICE));
    CHECK_OK(flow_log_prob(m2, x, NULL, n, lp2));
    cr_assert_eq(memcmp(lp1, lp2, sizeof lp1), 0, "%s: log_prob after load_buffer differs", t->name);

    char *s1 = tu_spec(m), *s2 = tu_spec(m2);
    cr_assert_str_eq(s1, s2, "%s: spec differs after loading", t->name);
    cr_assert_eq(flow_model_param_count(m), flow_model_param_count(m2));
    cr_assert_eq(flow_model_step_count(m), flow_model_step_count(m2));

    /* the expanded spec alone rebuilds a model with the same parameter set */
    flow_model *m3 = tu_model(s1, 9);
    cr_assert_eq(flow_model_param_count(m3), flow_model_param_count(m), "%s: spec does not rebuild", t->name);
    cr_assert_eq(flow_model_dim(m3), dim);
    char *s3 = tu_spec(m3);
    cr_assert_str_eq(s1, s3, "%s: expanded spec is not a fixed point", t->name);
    TU_REPORT("[save_load]  %-30s %zu bytes, %zu parameters, log_prob bit-identical", t->name, len,
              flow_model_param_count(m));

    free(s1); free(s2); free(s3); free(buf); free(x);
    flow_model_free(m3);
    flow_model_free(m2);
    flow_model_free(m);
}

/* ------------------------------------------------------------------------ */
/* (6) sampling                                                              */
/* ------------------------------------------------------------------------ */

ParameterizedTest(int *idx, transforms, sampling) {
    const struct tspec *t = &SPECS[*idx];
    flow_model *m = setup(t);
    size_t dim = flow_model_dim(m), n = 2000;
    float *xa = malloc(n * dim * sizeof *xa), *xb = malloc(n * dim * sizeof *xb);
    float *xc = malloc(n * dim * sizeof *xc);
    float *la = malloc(n * sizeof *la), *lb = malloc(n * sizeof *lb), *lc = malloc(n * sizeof *lc);

    CHECK_OK(flow_sample(m, n, NULL, 1.0f, 7, xa, la));
    cr_assert(tu_all_finite(xa, n * dim) && tu_all_finite(la, n), "%s: samples not finite", t->name);
    CHECK_OK(flow_sample(m, n, NULL, 1.0f, 7, xb, lb));
    cr_assert_eq(memcmp(xa, xb, n * dim * sizeof *xa), 0, "%s: same seed, different samples", t->name);
    cr_assert_eq(memcmp(la, lb, n * sizeof *la), 0, "%s: same seed, different log-probs", t->name);
    CHECK_OK(flow_sample(m, n, NULL, 1.0f, 8, xc, NULL)); /* out_log_prob is nullable */
    cr_assert_neq(memcmp(xa, xc, n * dim * sizeof *xa), 0, "%s: different seeds, same samples", t->name);

    if (t->data == DATA_INT) {
        /* samples are the integers of the data space; their log_prob adds
         * flow_log_prob's own dequantization noise, so it is not the value
         * computed alongside the sample and is not compared. */
        for (size_t i = 0; i < n * dim; i++) {
            cr_assert(xa[i] == floorf(xa[i]) && xa[i] >= 0 && xa[i] <= t->levels - 1,
                      "%s: sample %g is not an integer in 0..%d", t->name, xa[i], t->levels - 1);
        }
        CHECK_OK(flow_log_prob(m, xa, NULL, n, lc));
        cr_assert(tu_all_finite(lc, n));
        TU_REPORT("[sampling]   %-30s %zu integer samples in range", t->name, n);
    } else {
        if (t->data == DATA_UNIT) {
            /* samples of a logit-first model lie in the image of the logit's
             * inverse, (-a/(1-2a), (1-a)/(1-2a)) (a <= 0.05 in this table),
             * which flow_log_prob must accept (checked just below) */
            const double lo = -0.05 / 0.9, hi = 0.95 / 0.9;
            size_t outside = 0;
            for (size_t i = 0; i < n * dim; i++) outside += !(xa[i] > lo && xa[i] < hi);
            cr_assert_eq(outside, 0, "%s: %zu of %zu sampled values lie outside the logit's image",
                         t->name, outside, n * dim);
        }
        CHECK_OK(flow_log_prob(m, xa, NULL, n, lc));
        double max_err = 0;
        for (size_t i = 0; i < n; i++) {
            double e = fabs((double)lc[i] - la[i]) / (1.0 + fabs(lc[i]));
            if (e > max_err) max_err = e;
        }
        TU_REPORT("[sampling]   %-30s max |sample log_prob - flow_log_prob|/(1+|lp|) = %.3g", t->name, max_err);
        cr_assert_leq(max_err, 1e-4, "%s: flow_sample's log_prob disagrees with flow_log_prob (%g)", t->name,
                      max_err);

        /* temperature scales the base: E|z|^2 shrinks by T^2 = 0.25 */
        float *za = malloc(n * dim * sizeof *za), *zc = malloc(n * dim * sizeof *zc);
        CHECK_OK(flow_sample(m, n, NULL, 0.5f, 7, xc, NULL));
        CHECK_OK(flow_forward(m, xa, NULL, n, za, NULL));
        CHECK_OK(flow_forward(m, xc, NULL, n, zc, NULL));
        double ea = 0, ec = 0, va = 0, vc = 0, ma[8] = {0}, mc[8] = {0};
        for (size_t i = 0; i < n * dim; i++) {
            ea += (double)za[i] * za[i];
            ec += (double)zc[i] * zc[i];
            ma[i % dim] += xa[i] / (double)n;
            mc[i % dim] += xc[i] / (double)n;
        }
        for (size_t i = 0; i < n * dim; i++) {
            va += (xa[i] - ma[i % dim]) * (xa[i] - ma[i % dim]);
            vc += (xc[i] - mc[i % dim]) * (xc[i] - mc[i % dim]);
        }
        double ratio = ec / ea;
        TU_REPORT("[sampling]   %-30s T=0.5 vs T=1: latent E|z|^2 ratio %.3f (expect 0.25), data variance ratio %.3f",
                  t->name, ratio, vc / va);
        /* a mixture-of-Gaussians base (mog, made_mog, the "mog" preset
         * field): T scales the components' spreads,
         * not their means, so E|z|^2 does not shrink by T^2 */
        if (!strstr(t->spec, "mog") && !strstr(t->spec, "components"))
            cr_assert(ratio > 0.24 && ratio < 0.26, "%s: temperature 0.5 gives latent spread ratio %g", t->name, ratio);
        cr_assert_lt(vc, va, "%s: temperature 0.5 does not shrink the samples", t->name);
        free(za); free(zc);
    }
    free(xa); free(xb); free(xc); free(la); free(lb); free(lc);
    flow_model_free(m);
}
