/*
 * flowlib — normalizing flows and their autoregressive relatives, in C.
 *
 * One opaque handle (flow_model) per model. Every function that can fail
 * returns a flow_status; on failure flow_last_error() holds a sentence that
 * says why, and the model is left exactly as it was before the call.
 *
 * Conventions
 *   - Data are float32, row-major, batch first: x is [n, dim] flattened.
 *     A context (conditional models) is [n, context_dim]; pass NULL when the
 *     model has no context (flow_model_context_dim() == 0).
 *   - forward  = data -> latent (the normalizing direction, used for log_prob);
 *     inverse  = latent -> data (generation).
 *     log p(x) = log base(z) + logdet_forward(x).
 *   - flow_train_step uses batch statistics (batch norm); every other call uses
 *     running statistics. There is no train/eval flag to forget.
 *   - Randomness is counter based (Philox-4x32-10): the same seed gives the
 *     same numbers on every backend and every thread count.
 *   - On the CPU, flow_log_prob, flow_forward, flow_inverse and flow_sample
 *     give the same bits at every thread count and batch split.
 *     flow_train_step on several threads gives each thread a part of the
 *     batch (at least 32 rows, and one per 16384 parameters), and each
 *     thread takes big parts through in cache-sized pieces (256 to 512
 *     rows), adding up their gradients: the step of the whole batch at once
 *     up to the order of float sums, the same bits for the same thread count
 *     and batch size. Models with batch norm, and actnorm's first step, use
 *     the whole batch at once and give the same bits at every thread count.
 *
 * Threads
 *   One thread at a time per model. Different models are independent, so give
 *   each worker its own model (flow_model_clone). flow_last_error() is per
 *   thread. The library never prints, aborts or exits.
 *
 * Errors common to every function taking pointers: a NULL pointer that is not
 * documented as nullable gives FLOW_ERR_INVALID_ARGUMENT. A function whose
 * batch size n is 0 returns FLOW_ERR_INVALID_ARGUMENT. An internal failure
 * that should never happen returns FLOW_ERR_INTERNAL.
 *
 * Model specs (JSON)
 *   Either a preset or an explicit list of transforms:
 *
 *   {"preset": "realnvp", "dim": 2, "layers": 8, "hidden": [64, 64]}
 *
 *   {"dim": 2, "context_dim": 0, "base": {"type": "normal"},
 *    "transforms": [
 *      {"type": "affine_coupling", "mask": "alternate", "parity": 0,
 *       "hidden": [64, 64], "activation": "relu"},
 *      {"type": "batch_norm", "momentum": 0.1, "eps": 1e-5},
 *      {"type": "reverse"}]}
 *
 *   Unknown fields are errors (FLOW_ERR_SPEC naming the field).
 *   flow_model_spec() returns the expanded, explicit form, from which the same
 *   model (same parameter set) can always be rebuilt. See README.md for every
 *   transform, preset and option.
 *
 * Fast and slow calls (autoregressive models)
 *   A "maf" / "made" model (made_affine, direction "maf") computes
 *   flow_log_prob, flow_forward, flow_train_step and flow_loss_grad in one
 *   pass per layer; flow_sample and flow_inverse take D sequential passes per
 *   layer (D = dim). An "iaf" model is the other way round: flow_sample and
 *   flow_inverse take one pass, flow_log_prob, flow_forward and
 *   flow_train_step D passes (training also D - 1 extra backward sweeps).
 *   Every other transform is one pass both ways.
 */
#ifndef FLOWLIB_H
#define FLOWLIB_H

#include <stddef.h>
#include <stdint.h>

#include "flowlib_version.h"

#if defined(_WIN32)
#  if defined(FLOWLIB_BUILDING)
#    define FLOW_API __declspec(dllexport)
#  else
#    define FLOW_API __declspec(dllimport)
#  endif
#else
#  define FLOW_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Status, errors, version                                                  */
/* ------------------------------------------------------------------------ */

typedef enum flow_status {
    FLOW_OK = 0,
    FLOW_ERR_INVALID_ARGUMENT = -1, /* NULL, n = 0, wrong size, NaN data... */
    FLOW_ERR_SPEC = -2,             /* the model or optimizer JSON is wrong */
    FLOW_ERR_IO = -3,               /* a file could not be read or written */
    FLOW_ERR_FORMAT = -4,           /* a model file or buffer is malformed */
    FLOW_ERR_OUT_OF_MEMORY = -5,
    FLOW_ERR_DEVICE = -6,           /* the device failed or is absent */
    FLOW_ERR_UNSUPPORTED = -7,      /* valid request this build cannot do */
    FLOW_ERR_NUMERIC = -8,          /* a result was not finite */
    FLOW_ERR_BUFFER_TOO_SMALL = -9, /* *len tells the size needed */
    FLOW_ERR_INTERNAL = -100,
    /* Widens the enum to all of int, so that any value a C caller passes is
     * a valid flow_status in C++ too (not a status). */
    FLOW_STATUS_MAX_ENUM_ = 0x7fffffff
} flow_status;

typedef enum flow_device {
    FLOW_DEVICE_CPU = 0,
    FLOW_DEVICE_CUDA = 1,
    FLOW_DEVICE_MAX_ENUM_ = 0x7fffffff /* as above; not a device */
} flow_device;

typedef struct flow_model flow_model; /* opaque */

/* "1.2.3", static storage. */
FLOW_API const char *flow_version_string(void);
/* FLOWLIB_VERSION_NUMBER of the library actually loaded (major*10000 +
 * minor*100 + patch); compare with the macro to detect header mismatch. */
FLOW_API uint32_t flow_version_number(void);
/* A short constant name for a status ("FLOW_ERR_SPEC"); never NULL. */
FLOW_API const char *flow_status_string(flow_status s);
/* The message of the last failed call on this thread, or "" if none failed.
 * Never NULL; valid until the next flowlib call on this thread. */
FLOW_API const char *flow_last_error(void);

/* 1 if models can be created on device d in this process, else 0. Never
 * prints, never fails. FLOW_DEVICE_CUDA: the first call loads the CUDA
 * backend, libflowlib_cuda.so, from the folder libflowlib.so is in (then
 * the loader's search path; the environment variable FLOWLIB_CUDA_MODULE
 * names another file) and asks the driver for a GPU; the answer is 0 where
 * the module, the CUDA libraries, the driver or a GPU is missing, and
 * flow_model_create on that device then says which. Models on the GPU use
 * device 0; each calling thread gets its own CUDA stream. */
FLOW_API int flow_device_available(flow_device d);
/* Threads used by the CPU backend, for every model in the process. 0 = all
 * cores. Errors: FLOW_ERR_INVALID_ARGUMENT if n < 0. */
FLOW_API flow_status flow_set_num_threads(int n);

/* ------------------------------------------------------------------------ */
/* Models                                                                   */
/* ------------------------------------------------------------------------ */

/* Builds a model from a spec (see the top of this file). seed fixes the
 * initial weights and any random masks or permutations the spec leaves open.
 * *out is owned by the caller: free it with flow_model_free.
 * Errors: FLOW_ERR_SPEC (message names the field), FLOW_ERR_DEVICE /
 * FLOW_ERR_UNSUPPORTED for an unavailable device, FLOW_ERR_OUT_OF_MEMORY. */
FLOW_API flow_status flow_model_create(flow_model **out, const char *spec_json,
                                       flow_device device, uint64_t seed);
/* Frees a model; NULL is fine. */
FLOW_API void flow_model_free(flow_model *m);
/* An independent deep copy (weights, running statistics, optimizer state) on
 * the given device. Errors as flow_model_create. */
FLOW_API flow_status flow_model_clone(flow_model **out, const flow_model *m,
                                      flow_device device);

/* Writes the expanded spec as a NUL-terminated JSON string into buf.
 * *len (nullable) receives the length without the NUL. buf may be NULL when
 * cap is 0, to query the length. Errors: FLOW_ERR_BUFFER_TOO_SMALL when
 * cap < length + 1 (*len is still set). */
FLOW_API flow_status flow_model_spec(const flow_model *m, char *buf, size_t cap,
                                     size_t *len);
/* Dimension of x; 0 when m is NULL. */
FLOW_API size_t flow_model_dim(const flow_model *m);
/* Dimension of the context vector (0 = unconditional); 0 when m is NULL. */
FLOW_API size_t flow_model_context_dim(const flow_model *m);
/* Number of trainable parameters; 0 when m is NULL. */
FLOW_API size_t flow_model_param_count(const flow_model *m);
/* The device the model lives on (FLOW_DEVICE_CPU when m is NULL). */
FLOW_API flow_device flow_model_device(const flow_model *m);

/* Copies all trainable parameters, in the model's fixed order, to out
 * (count must equal flow_model_param_count). Errors: FLOW_ERR_INVALID_ARGUMENT
 * for a wrong count. */
FLOW_API flow_status flow_model_get_params(const flow_model *m, float *out,
                                           size_t count);
/* Replaces all trainable parameters. Refuses non-finite values
 * (FLOW_ERR_INVALID_ARGUMENT) and a wrong count. */
FLOW_API flow_status flow_model_set_params(flow_model *m, const float *params,
                                           size_t count);

/* ------------------------------------------------------------------------ */
/* Densities, sampling, transforms                                          */
/* ------------------------------------------------------------------------ */

/* out_log_prob[i] = log p(x_i | context_i) in nats, for n rows.
 * x is [n, dim], context [n, context_dim] or NULL for unconditional models,
 * out_log_prob [n]. Data that are not finite, or outside the support of the
 * first transform (e.g. not in 0..levels-1 for a dequantizing model), give
 * FLOW_ERR_INVALID_ARGUMENT. */
FLOW_API flow_status flow_log_prob(flow_model *m, const float *x,
                                   const float *context, size_t n,
                                   float *out_log_prob);

/* Draws n samples: z from the base with its scale multiplied by temperature
 * (> 0; 1 = the model itself), x = inverse(z). Same seed, same samples.
 * out_x is [n, dim]; out_log_prob (nullable) receives log p(x_i) of each
 * sample under the model (temperature 1), computed alongside. */
FLOW_API flow_status flow_sample(flow_model *m, size_t n, const float *context,
                                 float temperature, uint64_t seed, float *out_x,
                                 float *out_log_prob);

/* z = forward(x) and out_logdet[i] = log|det dz/dx| at row i (nullable).
 * The base density is not included. */
FLOW_API flow_status flow_forward(flow_model *m, const float *x,
                                  const float *context, size_t n, float *out_z,
                                  float *out_logdet);
/* x = inverse(z) and out_logdet[i] = log|det dx/dz| at row i (nullable). */
FLOW_API flow_status flow_inverse(flow_model *m, const float *z,
                                  const float *context, size_t n, float *out_x,
                                  float *out_logdet);

/* ------------------------------------------------------------------------ */
/* Training                                                                 */
/* ------------------------------------------------------------------------ */

/* Chooses the optimizer and resets its state. Until called, a model trains
 * with {"type": "adam", "lr": 1e-3}. Fields:
 *   {"type": "adam" | "adamw", "lr": 1e-3, "betas": [0.9, 0.999],
 *    "eps": 1e-8, "weight_decay": 0, "clip_grad_norm": 0}
 *   {"type": "sgd", "lr": 1e-2, "momentum": 0, "weight_decay": 0,
 *    "nesterov": false, "clip_grad_norm": 0}
 * Omitted fields take the values shown ("type" defaults to "adam").
 * "adam" adds weight_decay * w to the gradient (L2); "adamw" decays the
 * weights directly. clip_grad_norm > 0 rescales the whole gradient to at most
 * that Euclidean norm. Errors: FLOW_ERR_SPEC. */
FLOW_API flow_status flow_model_set_optimizer(flow_model *m,
                                              const char *optimizer_json);

/* One optimizer step on the mean negative log-likelihood of the batch, using
 * batch statistics; *out_loss (nullable) receives that mean (nats).
 * Dequantizing models draw fresh noise every step.
 * Errors: FLOW_ERR_INVALID_ARGUMENT for non-finite or out-of-support data;
 * FLOW_ERR_NUMERIC when the loss or a gradient is not finite — the step is
 * then skipped and parameters, statistics and optimizer state are exactly
 * as before. */
FLOW_API flow_status flow_train_step(flow_model *m, const float *x,
                                     const float *context, size_t n,
                                     float *out_loss);

/* The mean negative log-likelihood of the batch as flow_train_step computes
 * it (batch statistics, the fixed noise of flow_log_prob), and its gradients,
 * without changing the model. out_param_grad [param_count] and out_x_grad
 * [n, dim] are nullable. Useful for custom optimizers and for checking. */
FLOW_API flow_status flow_loss_grad(flow_model *m, const float *x,
                                    const float *context, size_t n,
                                    float *out_loss, float *out_param_grad,
                                    float *out_x_grad);

/* Number of successful train steps taken (saved with the model). */
FLOW_API uint64_t flow_model_step_count(const flow_model *m);

/* ------------------------------------------------------------------------ */
/* Saving and loading (safetensors)                                         */
/* ------------------------------------------------------------------------ */

/* Saves weights, running statistics, the expanded spec, the optimizer and
 * its state, so that training resumes exactly. The file is written to a
 * temporary name and renamed: a failure never leaves a partial file.
 * Errors: FLOW_ERR_IO with the system's reason. */
FLOW_API flow_status flow_model_save(const flow_model *m, const char *path);
/* Loads a model saved by flow_model_save onto device. Every field is checked;
 * a truncated, corrupted or hostile file gives FLOW_ERR_FORMAT (or
 * FLOW_ERR_IO if it cannot be read), never a crash. */
FLOW_API flow_status flow_model_load(flow_model **out, const char *path,
                                     flow_device device);
/* The same bytes as flow_model_save, into memory. buf may be NULL when cap is
 * 0 to query the size; *len (nullable) receives it. Errors:
 * FLOW_ERR_BUFFER_TOO_SMALL (with *len set). */
FLOW_API flow_status flow_model_save_buffer(const flow_model *m, void *buf,
                                            size_t cap, size_t *len);
FLOW_API flow_status flow_model_load_buffer(flow_model **out, const void *buf,
                                            size_t len, flow_device device);

/* ------------------------------------------------------------------------ */
/* Built-in data sets                                                       */
/* ------------------------------------------------------------------------ */

/* Writes n rows of a synthetic 2-D data set into out [n, 2], reproducibly
 * from seed. Names: "two_moons" (noise 0.1, as scikit-learn's make_moons),
 * "eight_gaussians" (centres at radius 4 on the directions k*pi/4, std 0.5,
 * all divided by 1.414), and as in FFJORD (Grathwohl et al. 2019):
 * "checkerboard" (uniform on alternate squares of a 4x4 board over [-4, 4]^2),
 * "pinwheel" (5 curved arms), "two_spirals" (two interleaved spirals, noise
 * 0.1), "rings" (4 concentric circles of radii 0.75..3, noise 0.08).
 * Errors: FLOW_ERR_INVALID_ARGUMENT for an unknown name (the message lists
 * the known ones). */
FLOW_API flow_status flow_toy_data(const char *name, size_t n, uint64_t seed,
                                   float *out);

#ifdef __cplusplus
}
#endif

#endif /* FLOWLIB_H */
