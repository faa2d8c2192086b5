// Whole models on the CUDA device against the same models on the CPU, through
// the public C API, for every preset, base distribution and preprocessing
// (one row of CASES each; adding a model means adding a row):
//
//   evaluate   created on each device with one seed, or cloned CPU -> CUDA:
//              bit-identical parameters; log_prob, forward,
//              inverse, sample (same seed) and loss_grad close to the CPU;
//              CUDA -> CPU clone: bit-identical parameters and log_prob
//   train      the same train steps on both (SGD, Adam, AdamW with clipping):
//              losses and parameters stay close
//   save_load  saved on one device, loaded on the other: bit-identical
//              parameters and saved bytes, close log_prob, training resumes
//              alike (optimizer state)
//   errors     the C API's error paths on CUDA leave the model as it was
//   emulated_out_of_memory   (emulated module only) a capped device memory
//              gives FLOW_ERR_OUT_OF_MEMORY, and everything works afterwards
//
// Errors are normalized, |cuda - cpu| / (1 + |cpu|) (cuda_parity.h), against
// the bounds stated below; float32 GEMMs and reductions sum in another order
// on the GPU, so close means ~1e-5, not bit-identical.
#include "cuda_parity.h"

#include <criterion/parameterized.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "flowlib.h"

namespace {

using parity::Vec;

enum class Data { real, unit, integers };

struct Case {
    const char *name;
    const char *spec;
    Data data = Data::real;
    int levels = 0;    // Data::integers only
    bool warm = false; // batch norm / actnorm / agnostic masks: train a few steps first
};

const Case CASES[] = {
    {"realnvp", R"({"preset":"realnvp","dim":5,"layers":4,"hidden":[24,16]})"},
    {"realnvp_bn", R"({"preset":"realnvp","dim":4,"layers":3,"hidden":[16],"activation":"tanh","batch_norm":true})",
     Data::real, 0, true},
    {"realnvp_dequantize_logit", R"({"preset":"realnvp","dim":3,"layers":2,"hidden":[16],"activation":"tanh","dequantize":256,"logit":0.05})",
     Data::integers, 256},
    {"realnvp_mog", R"({"preset":"realnvp","dim":3,"layers":2,"hidden":[16],"base":{"type":"mog","components":3}})"},
    {"nice", R"({"preset":"nice","dim":5,"layers":4,"hidden":[16,16],"activation":"elu"})"},
    {"made", R"({"preset":"made","dim":5,"hidden":[32,32]})"},
    {"made_mog", R"({"preset":"made","dim":4,"components":3,"hidden":[24],"activation":"tanh"})"},
    {"made_mog_agnostic_ensemble", R"({"preset":"made","dim":3,"components":2,"hidden":[16],"activation":"tanh","agnostic":"both","ensemble":3})",
     Data::real, 0, true},
    {"maf", R"({"preset":"maf","dim":4,"layers":3,"hidden":[16],"activation":"tanh","order":"random"})"},
    {"maf_bn", R"({"preset":"maf","dim":3,"layers":2,"hidden":[16],"batch_norm":true})", Data::real, 0, true},
    {"maf_mog", R"({"preset":"maf","dim":3,"layers":2,"components":2,"hidden":[16],"activation":"tanh"})"},
    {"iaf", R"({"preset":"iaf","dim":4,"layers":2,"hidden":[16],"activation":"tanh"})"},
    {"glow", R"({"preset":"glow","dim":4,"layers":2,"hidden":[16],"activation":"tanh"})", Data::real, 0, true},
    {"glow_plain_logistic", R"({"preset":"glow","dim":3,"layers":2,"hidden":[8],"lu":false,"base":{"type":"logistic"}})",
     Data::real, 0, true},
    {"planar", R"({"preset":"planar","dim":3,"layers":4})"},
    {"radial", R"({"preset":"radial","dim":3,"layers":4})"},
    {"logit_permutation_scale", R"({"dim":4,"base":{"type":"normal"},"transforms":[{"type":"logit","alpha":0.01},{"type":"permutation"},)"
                                R"({"type":"additive_coupling","mask":"half","parity":0,"hidden":[16],"activation":"softplus"},)"
                                R"({"type":"reverse"},{"type":"diagonal_scale"}]})",
     Data::unit},
    // conditional models (a context of context_dim values per row)
    {"realnvp_context", R"({"preset":"realnvp","dim":3,"context_dim":2,"layers":3,"hidden":[16],"activation":"leaky_relu"})"},
    {"maf_context", R"({"preset":"maf","dim":3,"context_dim":2,"layers":2,"hidden":[16],"activation":"tanh"})"},
    {"iaf_context", R"({"preset":"iaf","dim":3,"context_dim":2,"layers":2,"hidden":[16],"activation":"tanh"})"},
    {"made_mog_context", R"({"preset":"made","dim":3,"context_dim":3,"components":2,"hidden":[16],"activation":"tanh"})"},
    {"glow_context", R"({"preset":"glow","dim":4,"context_dim":2,"layers":2,"hidden":[16],"activation":"tanh"})",
     Data::real, 0, true},
};
constexpr size_t NCASES = sizeof CASES / sizeof CASES[0];

// Bounds (normalized errors, see the top of the file).
constexpr double eval_bound = 1e-4;  // log_prob, forward, inverse, sample, gradients
constexpr double train_bound = 1e-4; // losses and parameters after the train steps

// The case a test process runs (Criterion forks one process per test).
const char *g_case = "";

#define CHECK_STATUS(expr, want)                                                        \
    do {                                                                                \
        const flow_status st_ = (expr);                                                 \
        cr_assert_eq(st_, (want), "%s: line %d: %s -> %s (expected %s): '%s'", g_case,   \
                     __LINE__, #expr, flow_status_string(st_), flow_status_string(want), \
                     flow_last_error());                                                \
    } while (0)
#define CHECK_OK(expr) CHECK_STATUS(expr, FLOW_OK)

using ModelPtr = std::unique_ptr<flow_model, decltype(&flow_model_free)>;
using Bytes = std::vector<unsigned char>;

ModelPtr create(const char *spec, flow_device device, uint64_t seed) {
    flow_model *m = nullptr;
    CHECK_OK(flow_model_create(&m, spec, device, seed));
    return ModelPtr(m, flow_model_free);
}

ModelPtr clone(const flow_model *from, flow_device device) {
    flow_model *m = nullptr;
    CHECK_OK(flow_model_clone(&m, from, device));
    cr_assert_eq(flow_model_device(m), device, "%s: clone on the wrong device", g_case);
    return ModelPtr(m, flow_model_free);
}

Vec params(const flow_model *m) {
    Vec w(flow_model_param_count(m));
    CHECK_OK(flow_model_get_params(m, w.data(), w.size()));
    return w;
}

Bytes save(const flow_model *m) {
    size_t len = 0;
    CHECK_STATUS(flow_model_save_buffer(m, nullptr, 0, &len), FLOW_ERR_BUFFER_TOO_SMALL);
    Bytes b(len);
    CHECK_OK(flow_model_save_buffer(m, b.data(), b.size(), &len));
    cr_assert_eq(len, b.size());
    return b;
}

ModelPtr load(const Bytes &b, flow_device device) {
    flow_model *m = nullptr;
    CHECK_OK(flow_model_load_buffer(&m, b.data(), b.size(), device));
    cr_assert_eq(flow_model_device(m), device, "%s: loaded on the wrong device", g_case);
    return ModelPtr(m, flow_model_free);
}

std::string spec_of(const flow_model *m) {
    size_t len = 0;
    CHECK_STATUS(flow_model_spec(m, nullptr, 0, &len), FLOW_ERR_BUFFER_TOO_SMALL);
    std::string s(len + 1, '\0');
    CHECK_OK(flow_model_spec(m, s.data(), s.size(), nullptr));
    s.pop_back();
    return s;
}

// n rows of the case's kind of data, and of context (empty when the model
// has none); `shift` moves real data away from the origin (warm-up batches).
Vec make_data(const Case &c, size_t dim, size_t n, uint64_t seed, float shift = 0.0f) {
    std::mt19937_64 gen(seed);
    std::normal_distribution<float> normal(0.2f + shift, 1.0f + 0.5f * shift);
    std::uniform_real_distribution<float> unit(0.05f, 0.95f);
    std::uniform_int_distribution<int> level(0, c.levels > 0 ? c.levels - 1 : 0);
    Vec x(n * dim);
    for (float &v : x)
        v = c.data == Data::unit ? unit(gen) : c.data == Data::integers ? (float)level(gen) : normal(gen);
    return x;
}

Vec make_context(const flow_model *m, size_t n, uint64_t seed) {
    std::mt19937_64 gen(seed ^ 0xc0ffee);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    Vec ctx(n * flow_model_context_dim(m));
    for (float &v : ctx) v = normal(gen);
    return ctx;
}

const float *ptr(const Vec &v) { return v.empty() ? nullptr : v.data(); }

// One batch for train steps and loss_grad.
struct Batch {
    Vec x, ctx;
    size_t n;
};

Batch make_batch(const Case &c, const flow_model *m, size_t n, uint64_t seed, float shift = 0.0f) {
    return {make_data(c, flow_model_dim(m), n, seed, shift), make_context(m, n, seed), n};
}

float train(flow_model *m, const Batch &b) {
    float loss = 0;
    CHECK_OK(flow_train_step(m, b.x.data(), ptr(b.ctx), b.n, &loss));
    return loss;
}

Vec log_prob(flow_model *m, const Batch &b) {
    Vec lp(b.n);
    CHECK_OK(flow_log_prob(m, b.x.data(), ptr(b.ctx), b.n, lp.data()));
    return lp;
}

// Compares and remembers the error for the test's report line.
struct Report {
    std::string line;
    void close(const Vec &cpu, const Vec &gpu, double bound, const char *what) {
        cr_assert_eq(cpu.size(), gpu.size());
        const double err = parity::normalized_error(cpu, gpu);
        char buf[64];
        std::snprintf(buf, sizeof buf, " %s %.2g", what, err);
        line += buf;
        cr_expect(err <= bound, "%s: %s: normalized error %.3g > %.3g", g_case, what, err, bound);
    }
    void close(double cpu, double gpu, double bound, const char *what) {
        close(Vec{(float)cpu}, Vec{(float)gpu}, bound, what);
    }
    void print(const char *test) const {
        std::printf("[%s] %-28s%s\n", test, g_case, line.c_str());
        std::fflush(stdout);
    }
};

void expect_same(const Vec &a, const Vec &b, const char *what) {
    cr_expect(a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0,
              "%s: %s not bit-identical", g_case, what);
}

void expect_same(const Bytes &a, const Bytes &b, const char *what) {
    cr_expect(a == b, "%s: %s: saved bytes differ (%zu vs %zu bytes)", g_case, what, a.size(), b.size());
}

// The case's model on the CPU: seed 42, parameters perturbed by N(0, 0.2^2)
// (fresh coupling nets are the identity), and when `warm`, a few train steps
// on shifted data (non-trivial running statistics, actnorm initialized).
ModelPtr setup(const Case &c, bool warm) {
    g_case = c.name;
    ModelPtr m = create(c.spec, FLOW_DEVICE_CPU, 42);
    Vec w = params(m.get());
    std::mt19937_64 gen(4242);
    std::normal_distribution<float> normal(0.0f, 0.2f);
    for (float &v : w) v += normal(gen);
    CHECK_OK(flow_model_set_params(m.get(), w.data(), w.size()));
    if (warm && c.warm)
        for (uint64_t s = 0; s < 4; ++s) train(m.get(), make_batch(c, m.get(), 64, 100 + s, 0.7f));
    return m;
}

int *case_rows() {
    static int rows[NCASES];
    for (size_t i = 0; i < NCASES; ++i) rows[i] = (int)i;
    return rows;
}

} // namespace

ParameterizedTestParameters(cuda_models, evaluate) { return cr_make_param_array(int, case_rows(), NCASES); }
ParameterizedTestParameters(cuda_models, train) { return cr_make_param_array(int, case_rows(), NCASES); }
ParameterizedTestParameters(cuda_models, save_load) { return cr_make_param_array(int, case_rows(), NCASES); }
ParameterizedTestParameters(cuda_models, errors) { return cr_make_param_array(int, case_rows(), NCASES); }

ParameterizedTest(int *idx, cuda_models, evaluate) {
    const Case &c = CASES[*idx];
    ModelPtr cpu = setup(c, true);
    ModelPtr gpu = clone(cpu.get(), FLOW_DEVICE_CUDA);
    const size_t dim = flow_model_dim(cpu.get()), n = 64;
    expect_same(params(cpu.get()), params(gpu.get()), "parameters after the clone to CUDA");
    expect_same(params(create(c.spec, FLOW_DEVICE_CUDA, 42).get()), params(create(c.spec, FLOW_DEVICE_CPU, 42).get()),
                "initial parameters created on each device");
    cr_expect_eq(flow_model_step_count(gpu.get()), flow_model_step_count(cpu.get()));
    cr_expect(spec_of(gpu.get()) == spec_of(cpu.get()), "%s: spec changed by the clone", g_case);
    Report r;

    const Batch b = make_batch(c, cpu.get(), n, 1);
    const Vec lp_cpu = log_prob(cpu.get(), b);
    r.close(lp_cpu, log_prob(gpu.get(), b), eval_bound, "log_prob");

    // forward (z, logdet), then inverse of the CPU's z
    Vec z[2], ld[2], x[2], ldi[2];
    flow_model *models[2] = {cpu.get(), gpu.get()};
    for (int d = 0; d < 2; ++d) {
        z[d].resize(n * dim), ld[d].resize(n), x[d].resize(n * dim), ldi[d].resize(n);
        CHECK_OK(flow_forward(models[d], b.x.data(), ptr(b.ctx), n, z[d].data(), ld[d].data()));
        CHECK_OK(flow_inverse(models[d], z[0].data(), ptr(b.ctx), n, x[d].data(), ldi[d].data()));
    }
    r.close(z[0], z[1], eval_bound, "forward_z");
    r.close(ld[0], ld[1], eval_bound, "forward_logdet");
    r.close(x[0], x[1], eval_bound, "inverse_x");
    r.close(ldi[0], ldi[1], eval_bound, "inverse_logdet");

    // samples with one seed, at temperature 1 (with log-probs) and 0.7
    for (float temperature : {1.0f, 0.7f}) {
        Vec xs[2], lps[2];
        for (int d = 0; d < 2; ++d) {
            xs[d].resize(n * dim), lps[d].resize(n);
            CHECK_OK(flow_sample(models[d], n, ptr(b.ctx), temperature, 7, xs[d].data(), lps[d].data()));
        }
        if (c.data == Data::integers) {
            // Integers: a value within rounding of a level boundary may land
            // on the neighbouring level; at most 1% may, by one level.
            size_t off = 0;
            for (size_t i = 0; i < xs[0].size(); ++i) {
                cr_expect(std::fabs(xs[0][i] - xs[1][i]) <= 1.0f, "%s: sample %zu: %g vs %g", g_case, i,
                          xs[0][i], xs[1][i]);
                off += xs[0][i] != xs[1][i];
            }
            cr_expect(off * 100 <= xs[0].size(), "%s: %zu integer samples differ", g_case, off);
        } else {
            r.close(xs[0], xs[1], eval_bound, temperature == 1.0f ? "sample_x" : "sample_x_T0.7");
            r.close(lps[0], lps[1], eval_bound, temperature == 1.0f ? "sample_lp" : "sample_lp_T0.7");
        }
    }

    // the loss and its gradients (batch statistics)
    const size_t pc = flow_model_param_count(cpu.get());
    Vec pg[2], xg[2];
    float loss[2];
    for (int d = 0; d < 2; ++d) {
        pg[d].resize(pc), xg[d].resize(n * dim);
        CHECK_OK(flow_loss_grad(models[d], b.x.data(), ptr(b.ctx), n, &loss[d], pg[d].data(), xg[d].data()));
    }
    r.close(loss[0], loss[1], eval_bound, "loss");
    r.close(pg[0], pg[1], eval_bound, "param_grad");
    if (c.data != Data::integers) r.close(xg[0], xg[1], eval_bound, "x_grad");

    // nothing above changed either model; back on the CPU, all is identical
    expect_same(params(cpu.get()), params(gpu.get()), "parameters after evaluating");
    ModelPtr back = clone(gpu.get(), FLOW_DEVICE_CPU);
    expect_same(params(back.get()), params(cpu.get()), "parameters after the clone back to the CPU");
    expect_same(log_prob(back.get(), b), lp_cpu, "log_prob after the clone back to the CPU");
    expect_same(save(back.get()), save(cpu.get()), "CPU -> CUDA -> CPU clone");
    r.print("evaluate");
}

// The same train steps on both devices from the same start, with each
// optimizer and its options. Adam's eps is raised from 1e-8 to 1e-4: Adam
// divides by the gradient's running RMS, so an entry that is analytically
// zero (rounding noise, ~1e-8: e.g. a batch-norm shift feeding a MADE
// layer's first output) would step by +-lr with the sign of the noise.
ParameterizedTest(int *idx, cuda_models, train) {
    const Case &c = CASES[*idx];
    Report r;
    const struct {
        const char *name, *json;
    } optimizers[] = {
        {"sgd", R"({"type":"sgd","lr":0.01,"momentum":0.9,"nesterov":true,"weight_decay":0.001})"},
        {"adam", R"({"type":"adam","lr":0.001,"eps":1e-4,"weight_decay":0.001})"},
        {"adamw_clip", R"({"type":"adamw","lr":0.002,"eps":1e-4,"weight_decay":0.01,"clip_grad_norm":1.0})"},
    };
    for (const auto &opt : optimizers) {
        ModelPtr cpu = setup(c, false);
        ModelPtr gpu = clone(cpu.get(), FLOW_DEVICE_CUDA);
        CHECK_OK(flow_model_set_optimizer(cpu.get(), opt.json));
        CHECK_OK(flow_model_set_optimizer(gpu.get(), opt.json));
        const std::string name = opt.name;
        Vec losses[2];
        for (uint64_t s = 0; s < 5; ++s) {
            const Batch b = make_batch(c, cpu.get(), 64, 200 + s, c.warm ? 0.7f : 0.0f);
            losses[0].push_back(train(cpu.get(), b));
            losses[1].push_back(train(gpu.get(), b));
        }
        cr_expect_eq(flow_model_step_count(gpu.get()), 5u);
        r.close(losses[0], losses[1], train_bound, (name + "_losses").c_str());
        r.close(params(cpu.get()), params(gpu.get()), train_bound, (name + "_params").c_str());
        // running statistics and masks moved alike: evaluation agrees too
        const Batch b = make_batch(c, cpu.get(), 64, 9);
        r.close(log_prob(cpu.get(), b), log_prob(gpu.get(), b), train_bound, (name + "_log_prob").c_str());
    }
    r.print("train");
}

// Saved on one device, loaded on the other (buffers, and a file once).
ParameterizedTest(int *idx, cuda_models, save_load) {
    const Case &c = CASES[*idx];
    ModelPtr cpu = setup(c, true);
    CHECK_OK(flow_model_set_optimizer(cpu.get(), R"({"type":"adam","eps":1e-4})")); // see train
    ModelPtr gpu = clone(cpu.get(), FLOW_DEVICE_CUDA);
    // two steps each, so that the optimizer state is not trivial
    for (uint64_t s = 0; s < 2; ++s) {
        const Batch b = make_batch(c, cpu.get(), 32, 300 + s);
        train(cpu.get(), b);
        train(gpu.get(), b);
    }
    const Batch b = make_batch(c, cpu.get(), 64, 3), next = make_batch(c, cpu.get(), 32, 310);
    Report r;
    struct Way {
        flow_model *from;
        flow_device to;
        const char *what;
    };
    for (const Way &w : {Way{gpu.get(), FLOW_DEVICE_CPU, "cuda_to_cpu"}, Way{cpu.get(), FLOW_DEVICE_CUDA, "cpu_to_cuda"}}) {
        const flow_device from_device = flow_model_device(w.from);
        const Bytes bytes = save(w.from);
        ModelPtr loaded = load(bytes, w.to);
        expect_same(params(loaded.get()), params(w.from), w.what);
        cr_expect_eq(flow_model_step_count(loaded.get()), flow_model_step_count(w.from));
        cr_expect(spec_of(loaded.get()) == spec_of(w.from), "%s: %s: spec differs", g_case, w.what);
        expect_same(save(loaded.get()), bytes, w.what);
        r.close(log_prob(w.from, b), log_prob(loaded.get(), b), eval_bound, w.what);
        // training resumes alike (optimizer state): one more step on each
        ModelPtr twin = clone(w.from, from_device);
        const float loss_from = train(twin.get(), next), loss_loaded = train(loaded.get(), next);
        r.close(loss_from, loss_loaded, train_bound, "resumed_loss");
        r.close(params(twin.get()), params(loaded.get()), train_bound, "resumed_params");
    }
    // a file written from CUDA holds the same bytes, and loads on the CPU
    const std::string path = std::string("cuda_models_") + c.name + ".flow";
    CHECK_OK(flow_model_save(gpu.get(), path.c_str()));
    flow_model *m = nullptr;
    CHECK_OK(flow_model_load(&m, path.c_str(), FLOW_DEVICE_CPU));
    ModelPtr from_file(m, flow_model_free);
    expect_same(save(from_file.get()), save(gpu.get()), "file saved from CUDA");
    std::remove(path.c_str());
    r.print("save_load");
}

// Every failing call on a CUDA model leaves it exactly as it was (same saved
// bytes: parameters, statistics, optimizer state, step count) and usable.
ParameterizedTest(int *idx, cuda_models, errors) {
    const Case &c = CASES[*idx];
    ModelPtr cpu = setup(c, true);
    ModelPtr gpu = clone(cpu.get(), FLOW_DEVICE_CUDA);
    flow_model *m = gpu.get();
    const size_t dim = flow_model_dim(m), n = 16;
    const Batch b = make_batch(c, m, n, 5);
    train(m, b); // an optimizer state to keep
    const Bytes before = save(m);
    const Vec lp_before = log_prob(m, b);
    Vec out(n * dim), lp(n);
    const float *x = b.x.data(), *ctx = ptr(b.ctx);
    const auto unchanged = [&](const char *after) {
        cr_expect(save(m) == before, "%s: the model changed after %s", g_case, after);
    };

    CHECK_STATUS(flow_log_prob(nullptr, x, ctx, n, lp.data()), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(flow_log_prob(m, nullptr, ctx, n, lp.data()), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(flow_log_prob(m, x, ctx, n, nullptr), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(flow_log_prob(m, x, ctx, 0, lp.data()), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(flow_forward(m, x, ctx, n, nullptr, nullptr), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(flow_inverse(m, nullptr, ctx, n, out.data(), nullptr), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(flow_sample(m, n, ctx, 1.0f, 1, nullptr, nullptr), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(flow_sample(m, n, ctx, 0.0f, 1, out.data(), nullptr), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(flow_train_step(m, nullptr, ctx, n, nullptr), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(flow_model_get_params(m, nullptr, flow_model_param_count(m)), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(flow_model_save_buffer(nullptr, nullptr, 0, nullptr), FLOW_ERR_INVALID_ARGUMENT);
    unchanged("NULL arguments");

    // context: required exactly when the model has one
    const Vec wrong_ctx(n * 3, 0.5f);
    CHECK_STATUS(flow_log_prob(m, x, ctx ? nullptr : wrong_ctx.data(), n, lp.data()), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(flow_train_step(m, x, ctx ? nullptr : wrong_ctx.data(), n, nullptr), FLOW_ERR_INVALID_ARGUMENT);
    unchanged("a wrong context");

    // non-finite data, context and parameters; data outside the support
    Vec bad = b.x;
    bad[dim + 1] = NAN;
    CHECK_STATUS(flow_log_prob(m, bad.data(), ctx, n, lp.data()), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(flow_train_step(m, bad.data(), ctx, n, nullptr), FLOW_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(flow_inverse(m, bad.data(), ctx, n, out.data(), nullptr), FLOW_ERR_INVALID_ARGUMENT);
    if (ctx) {
        Vec bad_ctx = b.ctx;
        bad_ctx.back() = INFINITY;
        CHECK_STATUS(flow_loss_grad(m, x, bad_ctx.data(), n, nullptr, nullptr, nullptr), FLOW_ERR_INVALID_ARGUMENT);
    }
    Vec w = params(m);
    w[w.size() / 2] = NAN;
    CHECK_STATUS(flow_model_set_params(m, w.data(), w.size()), FLOW_ERR_INVALID_ARGUMENT);
    if (c.data != Data::real) {
        bad = b.x;
        bad[0] = c.data == Data::integers ? 0.5f : 2.0f; // not an integer level / outside (0, 1)
        CHECK_STATUS(flow_log_prob(m, bad.data(), ctx, n, lp.data()), FLOW_ERR_INVALID_ARGUMENT);
        CHECK_STATUS(flow_train_step(m, bad.data(), ctx, n, nullptr), FLOW_ERR_INVALID_ARGUMENT);
    }
    unchanged("invalid values");

    // finite data whose loss overflows: FLOW_ERR_NUMERIC on the device, the
    // step skipped, as on the CPU
    if (c.data == Data::real) {
        bad = b.x;
        for (size_t j = 0; j < dim; ++j) bad[j] = 3e38f;
        const flow_status want = flow_train_step(cpu.get(), bad.data(), ctx, n, nullptr);
        cr_expect_eq(want, FLOW_ERR_NUMERIC, "%s: the CPU gives %s for an overflowing loss", g_case,
                     flow_status_string(want));
        CHECK_STATUS(flow_train_step(m, bad.data(), ctx, n, nullptr), want);
        CHECK_STATUS(flow_loss_grad(m, bad.data(), ctx, n, nullptr, nullptr, nullptr), want);
        unchanged("an overflowing loss");
    }

    // still usable, and still the same model
    expect_same(log_prob(m, b), lp_before, "log_prob after the errors");
    train(m, b);
    cr_expect_eq(flow_model_step_count(m), flow_model_step_count(cpu.get()) + 2);
}

// A capped device memory (the emulated module's FLOWLIB_CUDA_EMULATION_MEMORY):
// model creation, cloning, loading, evaluation and training that do not fit
// fail with FLOW_ERR_OUT_OF_MEMORY, leave everything as it was, and all works
// again once the memory is there.
Test(cuda_models, emulated_out_of_memory) {
    const char *module = std::getenv("FLOWLIB_CUDA_MODULE");
    if (!module || !std::strstr(module, "emulation"))
        cr_skip_test("the device memory can only be capped on the emulated module");
    const char *big = R"({"preset":"realnvp","dim":64,"layers":4,"hidden":[512,512]})"; // ~5.8 MB of parameters
    const Case small_case{"small", R"({"preset":"realnvp","dim":8,"layers":2,"hidden":[256]})"};
    ModelPtr small = clone(setup(small_case, false).get(), FLOW_DEVICE_CUDA);
    g_case = "out_of_memory";
    const Batch b = make_batch(small_case, small.get(), 32, 1);
    const Batch wide = make_batch(small_case, small.get(), 4096, 2); // 4 MB per hidden activation
    train(small.get(), b); // (a first step that fails still creates the optimizer)
    const Vec lp = log_prob(small.get(), b);
    const Bytes before = save(small.get());
    ModelPtr big_cpu = create(big, FLOW_DEVICE_CPU, 1);
    const Bytes big_bytes = save(big_cpu.get());

    cr_assert_eq(setenv("FLOWLIB_CUDA_EMULATION_MEMORY", "2000000", 1), 0);
    const auto out_of_memory = [](flow_status st, const char *what) {
        cr_expect_eq(st, FLOW_ERR_OUT_OF_MEMORY, "%s: %s (%s)", what, flow_status_string(st), flow_last_error());
        cr_expect(std::strstr(flow_last_error(), "memory"), "%s: the message does not say memory: '%s'", what,
                  flow_last_error());
    };
    flow_model *m = nullptr;
    out_of_memory(flow_model_create(&m, big, FLOW_DEVICE_CUDA, 1), "create");
    out_of_memory(flow_model_clone(&m, big_cpu.get(), FLOW_DEVICE_CUDA), "clone");
    out_of_memory(flow_model_load_buffer(&m, big_bytes.data(), big_bytes.size(), FLOW_DEVICE_CUDA), "load");
    cr_expect_null(m);
    Vec wide_lp(wide.n);
    out_of_memory(flow_log_prob(small.get(), wide.x.data(), nullptr, wide.n, wide_lp.data()), "log_prob");
    out_of_memory(flow_train_step(small.get(), wide.x.data(), nullptr, wide.n, nullptr), "train_step");
    cr_expect(save(small.get()) == before, "the model changed after running out of memory");
    expect_same(log_prob(small.get(), b), lp, "log_prob within the cap");

    cr_assert_eq(unsetenv("FLOWLIB_CUDA_EMULATION_MEMORY"), 0);
    ModelPtr big_gpu = create(big, FLOW_DEVICE_CUDA, 1);
    expect_same(params(big_gpu.get()), params(big_cpu.get()), "parameters of the big model");
    CHECK_OK(flow_log_prob(small.get(), wide.x.data(), nullptr, wide.n, wide_lp.data()));
    train(small.get(), wide);
    cr_expect_eq(flow_model_step_count(small.get()), 2u);
}
