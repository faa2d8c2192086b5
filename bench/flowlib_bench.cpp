// flowlib_bench: throughput of flowlib's hot calls (train_step, log_prob,
// sample) over a grid of model sizes, one JSON line per configuration and op.
//
//   flowlib_bench [--models realnvp,nice] [--dims 8,64] [--hidden 64,256]
//                 [--batch 256,4096] [--threads 1,2] [--rounds 7]
//                 [--round-time 0.25] [--ops train_step,log_prob,sample]
//                 [--context C] [--device cpu,cuda] [--gemm] [--quick]
//   flowlib_bench --serve      (line protocol for bench/compare.py)
//   flowlib_bench --check DIR  (writes a trained model of every type + reference
//                               outputs for bench/torch_reference.py --check DIR)
//
// Each (configuration, op) is warmed up (>= 2 calls and >= 0.1 s), then timed
// in `rounds` rounds of a fixed number of calls (chosen so a round lasts about
// round-time seconds); the reported time is the median round. GFLOP/s counts
// the dense layers only: 2 x weights x batch per forward pass (log_prob,
// sample) and 6 x weights x batch per train step (forward + two backward
// GEMMs), so it can be compared with the machine's sgemm rate (--gemm).
// peak_rss_mb is the process's peak resident memory while the configuration
// ran (VmHWM, reset per configuration where the kernel allows it).
//
// --device cuda runs each configuration on the GPU too (once: the thread
// count does not apply), after the CPU when both are listed, and adds
// speedup_vs_cpu (against the CPU run with the last --threads value). Every
// timed call returns results to the host, so GPU times include the wait for
// the device.
//
// Models: "realnvp" (K affine couplings), "nice" (K additive couplings +
// diagonal scale), "realnvp_bn" (realnvp with batch norm between couplings),
// "made" (MADE MoG: one MADE whose outputs are a mixture of kMadeComponents
// Gaussians per dimension; K does not apply), and any other preset by name:
// "maf", "iaf" (K MADE layers), "glow" (K actnorm + LU linear + affine
// coupling steps), "planar", "radial" (K layers, no hidden width: H is
// ignored); K = --layers (default 8, 5 for maf / iaf), hidden = [H, H],
// ReLU. --context C > 0 makes every model with a conditioner conditional
// (context_dim C: couplings' nets and MADEs read a context row of C values
// with each row). Data and context: standard normal rows from a
// counter-based generator that bench/torch_reference.py reproduces.
#include <flowlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <sys/resource.h>

// OpenBLAS's Fortran sgemm, only to measure the machine's GEMM rate.
extern "C" void sgemm_(const char *ta, const char *tb, const int *m, const int *n,
                       const int *k, const float *alpha, const float *a, const int *lda,
                       const float *b, const int *ldb, const float *beta, float *c,
                       const int *ldc);

namespace {

struct Config {
    std::string model = "realnvp";
    int dim = 8, hidden = 64, batch = 256, threads = 1, layers = 8;
    flow_device device = FLOW_DEVICE_CPU;
    int context = 0; // context_dim; 0: unconditional
};

const char *device_name(flow_device d) { return d == FLOW_DEVICE_CUDA ? "cuda" : "cpu"; }

double now() {
    using clock = std::chrono::steady_clock;
    return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

[[noreturn]] void die(const std::string &what) {
    std::fprintf(stderr, "flowlib_bench: %s: %s\n", what.c_str(), flow_last_error());
    std::exit(1);
}

void check(flow_status s, const char *what) {
    if (s != FLOW_OK) die(what);
}

std::vector<std::string> split(const std::string &s, char sep = ',') {
    std::vector<std::string> out;
    std::stringstream in(s);
    for (std::string item; std::getline(in, item, sep);)
        if (!item.empty()) out.push_back(item);
    return out;
}

std::vector<int> split_ints(const std::string &s) {
    std::vector<int> out;
    for (const std::string &item : split(s)) out.push_back(std::atoi(item.c_str()));
    return out;
}

// --- data (bench/torch_reference.py: bench_data) ----------------------------

uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// Element i: Box-Muller on two 24-bit uniforms from splitmix64(2k), (2k+1),
// k = first + i.
std::vector<float> bench_data(size_t rows, size_t dim, uint64_t first = 0) {
    std::vector<float> x(rows * dim);
    const double two_pi = 6.283185307179586;
    for (size_t i = 0; i < x.size(); ++i) {
        const uint64_t k = first + i;
        double u1 = (double(splitmix64(2 * k) >> 40) + 0.5) / 16777216.0;
        double u2 = (double(splitmix64(2 * k + 1) >> 40) + 0.5) / 16777216.0;
        x[i] = float(std::sqrt(-2.0 * std::log(u1)) * std::cos(two_pi * u2));
    }
    return x;
}

// Context rows of conditional models: the same generator further on.
std::vector<float> bench_context(size_t rows, size_t context_dim) {
    return bench_data(rows, context_dim, uint64_t(1) << 40);
}

// --- models -----------------------------------------------------------------

bool autoregressive(const std::string &model) {
    return model == "maf" || model == "iaf" || model == "made";
}

// Planar and radial layers have no conditioner network (no hidden width).
bool conditioner_free(const std::string &model) { return model == "planar" || model == "radial"; }

// The K: 5 MADE layers for maf / iaf, 8 layers otherwise (MADE MoG:
// its one MADE).
int default_layers(const std::string &model) {
    return model == "made" ? 1 : autoregressive(model) ? 5 : 8;
}

// Mixture components per dimension of the "made" model (the MADE MoG of
// Papamakarios et al., "Masked Autoregressive Flow for Density Estimation").
constexpr int kMadeComponents = 10;

std::string spec_json(const Config &c) {
    // realnvp / nice (optionally with batch norm) are the presets of the same
    // name; any other name is passed through as a preset (maf, iaf, glow, ...).
    std::string preset = c.model == "realnvp_bn" ? "realnvp" : c.model;
    std::string spec = "{\"preset\": \"" + preset + "\", \"dim\": " + std::to_string(c.dim);
    if (c.model == "made")
        spec += ", \"components\": " + std::to_string(kMadeComponents);
    else
        spec += ", \"layers\": " + std::to_string(c.layers);
    if (!conditioner_free(c.model))
        spec += ", \"hidden\": [" + std::to_string(c.hidden) + ", " +
                std::to_string(c.hidden) + "]";
    if (c.model == "realnvp_bn") spec += ", \"batch_norm\": true";
    if (c.context) spec += ", \"context_dim\": " + std::to_string(c.context);
    return spec + "}";
}

// Weights of the dense layers (the GEMM work), biases excluded. A MADE
// conditioner (maf, iaf) is the same D -> H -> H -> 2D MLP with masked
// weights, MADE MoG's one MADE D -> H -> H -> 3 C D; a Glow step adds its
// D x D invertible linear map. A context of C values adds C x H weights to
// a coupling's first layer and C x (H + outputs) to a MADE (its first hidden
// layer and its outputs). Planar and radial layers do no GEMM (reported as 0
// GFLOP/s).
double dense_weights(const Config &c) {
    if (conditioner_free(c.model)) return 0.0;
    const double D = c.dim, H = c.hidden, C = c.context;
    const double out = c.model == "nice" ? D : c.model == "made" ? 3 * kMadeComponents * D : 2 * D;
    const double context = C * (H + (autoregressive(c.model) ? out : 0.0));
    return c.layers * (D * H + H * H + H * out + context + (c.model == "glow" ? D * D : 0.0));
}

double flops_per_call(const Config &c, const std::string &op) {
    return (op == "train_step" ? 6.0 : 2.0) * dense_weights(c) * c.batch;
}

// Train steps cycle through this many batches (bench_data rows, the first
// batch being the log_prob data): hundreds of Adam steps on one fixed batch
// overfit it until the loss diverges (IAF within a few hundred, in flowlib
// and PyTorch alike), which no real training run does. (The pool counts in
// peak_rss_mb: 16 x batch x D floats, 16 MiB at batch 4096, D 64.)
constexpr size_t kTrainBatches = 16;

struct Bench {
    Config config;
    flow_model *model = nullptr;
    std::vector<float> train, x, out, lp, first_params;
    // Conditional models: the train batches' context rows and x's (the
    // first batch's); empty otherwise.
    std::vector<float> train_context, context;
    uint64_t sample_seed = 1;
    size_t train_steps = 0;

    explicit Bench(const Config &c) : config(c) {
        check(flow_set_num_threads(c.threads), "flow_set_num_threads");
        check(flow_model_create(&model, spec_json(c).c_str(), c.device, 42),
              "flow_model_create");
        first_params.resize(flow_model_param_count(model));
        check(flow_model_get_params(model, first_params.data(), first_params.size()),
              "flow_model_get_params");
        train = bench_data(kTrainBatches * size_t(c.batch), size_t(c.dim));
        x.assign(train.begin(), train.begin() + ptrdiff_t(size_t(c.batch) * size_t(c.dim)));
        if (c.context) {
            train_context = bench_context(kTrainBatches * size_t(c.batch), size_t(c.context));
            context.assign(train_context.begin(),
                           train_context.begin() + ptrdiff_t(size_t(c.batch) * size_t(c.context)));
        }
        out.resize(x.size());
        lp.resize(size_t(c.batch));
    }
    ~Bench() { flow_model_free(model); }
    Bench(const Bench &) = delete;
    Bench &operator=(const Bench &) = delete;

    // Context rows of x (nullptr: an unconditional model).
    const float *x_context() const { return context.empty() ? nullptr : context.data(); }

    void call(const std::string &op) {
        const size_t n = size_t(config.batch);
        if (op == "train_step") {
            const size_t k = train_steps++ % kTrainBatches;
            const float *batch = train.data() + k * x.size();
            const float *batch_context =
                context.empty() ? nullptr : train_context.data() + k * context.size();
            const flow_status status = flow_train_step(model, batch, batch_context, n, nullptr);
            if (status != FLOW_ERR_NUMERIC) return check(status, "flow_train_step");
            // Thousands of steps over the same few small batches can drive a
            // model until its loss overflows (MAF at batch 64): start again
            // from the first parameters and a fresh optimizer, as a new run
            // would, and go on timing.
            check(flow_model_set_params(model, first_params.data(), first_params.size()),
                  "flow_model_set_params");
            check(flow_model_set_optimizer(model, "{}"), "flow_model_set_optimizer");
        }
        else if (op == "log_prob")
            check(flow_log_prob(model, x.data(), x_context(), n, lp.data()), "flow_log_prob");
        else if (op == "sample")
            check(flow_sample(model, n, x_context(), 1.0f, sample_seed++, out.data(), nullptr),
                  "flow_sample");
        else
            die("unknown op \"" + op + "\"");
    }

    double run(const std::string &op, long calls) {
        const double start = now();
        for (long k = 0; k < calls; ++k) call(op);
        return now() - start;
    }
};

// --- memory -----------------------------------------------------------------

void reset_peak_rss() {
    std::ofstream f("/proc/self/clear_refs");
    if (f) f << "5";
}

double peak_rss_mb() {
    std::ifstream f("/proc/self/status");
    for (std::string line; std::getline(f, line);)
        if (line.rfind("VmHWM:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return double(ru.ru_maxrss) / 1024.0;
}

// --- GEMM rate --------------------------------------------------------------

// Seconds per n x n x n sgemm call.
double time_sgemm(int n, long calls) {
    std::vector<float> a(size_t(n) * n, 0.5f), b(size_t(n) * n, 0.25f), c(size_t(n) * n);
    const float one = 1.0f, zero = 0.0f;
    sgemm_("N", "N", &n, &n, &n, &one, a.data(), &n, b.data(), &n, &zero, c.data(), &n);
    const double start = now();
    for (long k = 0; k < calls; ++k)
        sgemm_("N", "N", &n, &n, &n, &one, a.data(), &n, b.data(), &n, &zero, c.data(), &n);
    return (now() - start) / double(calls);
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const size_t m = v.size() / 2;
    return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

// --- modes ------------------------------------------------------------------

struct Options {
    std::vector<std::string> models{"realnvp", "nice"};
    std::vector<int> dims{8, 64}, hidden{64, 256}, batch{256, 4096}, threads{1, 2};
    std::vector<std::string> ops{"train_step", "log_prob", "sample"};
    std::vector<flow_device> devices{FLOW_DEVICE_CPU};
    int rounds = 7, layers = 0; // 0: K = 8 couplings, 5 MADE layers
    int context = 0;            // context_dim of models with a conditioner
    double round_time = 0.25;
    bool gemm = false;
};

// Times every op of one configuration and prints its JSON lines. CPU times
// go into cpu_seconds; GPU lines report their speed-up over them.
void run_config(const Options &o, const Config &c, std::map<std::string, double> &cpu_seconds) {
    reset_peak_rss();
    Bench b(c);
    for (const std::string &op : o.ops) {
        // Warm-up, which also sizes the rounds.
        long calls = 0;
        double spent = 0.0;
        while (calls < 2 || spent < std::min(0.1, 2 * o.round_time)) {
            spent += b.run(op, 1);
            ++calls;
        }
        const long per_round = std::max(1L, long(o.round_time / (spent / double(calls))));
        std::vector<double> times;
        for (int r = 0; r < o.rounds; ++r)
            times.push_back(b.run(op, per_round) / double(per_round));
        const double s = median(times);
        const auto [lo, hi] = std::minmax_element(times.begin(), times.end());
        std::string speedup;
        if (c.device == FLOW_DEVICE_CPU)
            cpu_seconds[op] = s;
        else if (cpu_seconds.count(op))
            speedup = ", \"speedup_vs_cpu\": " + std::to_string(cpu_seconds[op] / s);
        std::printf("{\"impl\": \"flowlib\", \"device\": \"%s\", \"model\": \"%s\", \"dim\": %d, "
                    "\"hidden\": %d, \"layers\": %d, \"context\": %d, \"batch\": %d, "
                    "\"threads\": %d, "
                    "\"op\": \"%s\", \"ms\": %.4f, \"samples_per_s\": %.1f, "
                    "\"gflops\": %.2f, \"params\": %zu, \"rounds\": %d, "
                    "\"calls_per_round\": %ld, \"spread\": %.3f, "
                    "\"peak_rss_mb\": %.1f%s}\n",
                    device_name(c.device), c.model.c_str(), c.dim, c.hidden, c.layers, c.context,
                    c.batch, c.threads, op.c_str(), 1e3 * s, c.batch / s,
                    flops_per_call(c, op) / s / 1e9,
                    flow_model_param_count(b.model), o.rounds, per_round, (*hi - *lo) / s,
                    peak_rss_mb(), speedup.c_str());
        std::fflush(stdout);
    }
}

void grid(const Options &o) {
    if (o.gemm) {
        for (int t : o.threads) {
            check(flow_set_num_threads(t), "flow_set_num_threads");
            std::vector<double> times;
            for (int r = 0; r < o.rounds; ++r) times.push_back(time_sgemm(1024, 3));
            const double s = median(times);
            std::printf("{\"impl\": \"openblas\", \"op\": \"sgemm\", \"n\": 1024, \"threads\": %d, "
                        "\"ms\": %.4f, \"gflops\": %.2f}\n",
                        t, 1e3 * s, 2.0 * 1024 * 1024 * 1024 / s / 1e9);
            std::fflush(stdout);
        }
    }
    for (const std::string &model : o.models)
        for (int dim : o.dims)
            for (int hidden : o.hidden)
                for (int batch : o.batch) {
                    std::map<std::string, double> cpu_seconds; // per op, last thread count
                    for (flow_device device : o.devices)
                        for (int threads : o.threads) {
                            if (device == FLOW_DEVICE_CUDA && threads != o.threads.front()) continue;
                            Config c{model, dim, hidden, batch, threads,
                                     o.layers ? o.layers : default_layers(model), device,
                                     conditioner_free(model) ? 0 : o.context};
                            run_config(o, c, cpu_seconds);
                        }
                }
}

// Line protocol, one reply line per command:
//   setup MODEL DIM HIDDEN BATCH THREADS LAYERS [CONTEXT]  -> "ok PARAMS"
//   time OP CALLS                                -> seconds for CALLS calls
//   gemm N CALLS                                 -> seconds per sgemm call
//   rss                                          -> peak RSS (MB) since setup
//   quit
int serve() {
    std::unique_ptr<Bench> bench;
    for (std::string line; std::getline(std::cin, line);) {
        std::istringstream in(line);
        std::string cmd;
        in >> cmd;
        if (cmd == "setup") {
            Config c;
            in >> c.model >> c.dim >> c.hidden >> c.batch >> c.threads >> c.layers;
            if (!(in >> c.context)) c.context = 0;
            bench.reset();
            reset_peak_rss();
            bench = std::make_unique<Bench>(c);
            std::printf("ok %zu\n", flow_model_param_count(bench->model));
        } else if (cmd == "time" && bench) {
            std::string op;
            long calls = 1;
            in >> op >> calls;
            std::printf("%.9f\n", bench->run(op, calls));
        } else if (cmd == "gemm") {
            int n = 1024, threads = 1;
            long calls = 1;
            in >> n >> calls >> threads;
            check(flow_set_num_threads(threads), "flow_set_num_threads");
            std::printf("%.9f\n", time_sgemm(n, calls));
        } else if (cmd == "rss") {
            std::printf("%.1f\n", peak_rss_mb());
        } else if (cmd == "quit") {
            break;
        } else {
            std::printf("error unknown command: %s\n", line.c_str());
        }
        std::fflush(stdout);
    }
    return 0;
}

void write_f32(const std::string &path, const std::vector<float> &v) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char *>(v.data()), std::streamsize(v.size() * sizeof(float)));
    if (!f) die("cannot write " + path);
}

// Every model type torch_reference.py mirrors.
const std::vector<std::string> check_models{"realnvp", "nice",   "realnvp_bn", "maf", "iaf",
                                            "made",    "glow",   "planar",     "radial"};

// Context columns of the conditional models --check writes ("<model>_ctx";
// bench/torch_reference.py: CHECK_CONTEXT_DIM).
constexpr int kCheckContext = 3;

// One model: train a few steps so no weight is zero any more, save the
// model as <dir>/<name>.safetensors, then write what flowlib computes from
// it on fresh data: log_prob, forward (z, logdet), inverse of z, loss_grad
// (loss, parameter gradients), and the parameters after one more Adam step.
// (A small D keeps IAF's D-pass training and the D x D Glow matrices cheap.)
void check_model(const std::string &dir, const std::string &name, const Config &c) {
    Bench b(c);
    const size_t n = size_t(c.batch), D = size_t(c.dim), C = size_t(c.context);
    // Over the bench's first 4 training batches (x is the first).
    for (size_t step = 0; step < 30; ++step)
        check(flow_train_step(b.model, b.train.data() + step % 4 * n * D,
                              C ? b.train_context.data() + step % 4 * n * C : nullptr, n, nullptr),
              "train");
    const std::string base = dir + "/" + name;
    check(flow_model_save(b.model, (base + ".safetensors").c_str()), "save");
    const size_t P = flow_model_param_count(b.model);
    const float *context = b.x_context();
    std::vector<float> x = b.x, lp(n), z(n * D), ld(n), xi(n * D), ldi(n), g(P), p(P);
    check(flow_log_prob(b.model, x.data(), context, n, lp.data()), "log_prob");
    check(flow_forward(b.model, x.data(), context, n, z.data(), ld.data()), "forward");
    check(flow_inverse(b.model, x.data(), context, n, xi.data(), ldi.data()), "inverse");
    float loss = 0.0f;
    check(flow_loss_grad(b.model, x.data(), context, n, &loss, g.data(), nullptr), "loss_grad");
    float step_loss = 0.0f;
    check(flow_train_step(b.model, x.data(), context, n, &step_loss), "train_step");
    check(flow_model_get_params(b.model, p.data(), P), "get_params");
    if (C) write_f32(base + ".context.f32", b.context);
    write_f32(base + ".x.f32", x);
    write_f32(base + ".log_prob.f32", lp);
    write_f32(base + ".z.f32", z);
    write_f32(base + ".logdet.f32", ld);
    write_f32(base + ".inverse.f32", xi);
    write_f32(base + ".inverse_logdet.f32", ldi);
    write_f32(base + ".loss.f32", {loss, step_loss});
    write_f32(base + ".grad.f32", g);
    write_f32(base + ".params_after_step.f32", p);
    std::printf("%s: wrote %s.* (%zu params)\n", name.c_str(), base.c_str(), P);
}

// Every model type, and the conditional form of each that has a conditioner.
int check_outputs(const std::string &dir, int layers) {
    for (const std::string &model : check_models) {
        Config c{model, 6, 32, 128, 1, layers ? layers : default_layers(model)};
        check_model(dir, model, c);
        if (conditioner_free(model)) continue;
        c.context = kCheckContext;
        check_model(dir, model + "_ctx", c);
    }
    return 0;
}

void usage() {
    std::fprintf(stderr,
                 "usage: flowlib_bench [--models M,..] [--dims D,..] [--hidden H,..] "
                 "[--batch N,..] [--threads T,..] [--layers K] [--ops OP,..] [--rounds R] "
                 "[--round-time S] [--context C] [--device cpu,cuda] [--gemm] [--quick] | --serve "
                 "| --check DIR\n");
    std::exit(2);
}

} // namespace

int main(int argc, char **argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage();
            return argv[++i];
        };
        if (a == "--serve") return serve();
        if (a == "--check") return check_outputs(value(), o.layers);
        if (a == "--models") o.models = split(value());
        else if (a == "--dims") o.dims = split_ints(value());
        else if (a == "--hidden") o.hidden = split_ints(value());
        else if (a == "--batch") o.batch = split_ints(value());
        else if (a == "--threads") o.threads = split_ints(value());
        else if (a == "--ops") o.ops = split(value());
        else if (a == "--device") {
            o.devices.clear();
            for (const std::string &d : split(value())) {
                if (d != "cpu" && d != "cuda") usage();
                o.devices.push_back(d == "cuda" ? FLOW_DEVICE_CUDA : FLOW_DEVICE_CPU);
            }
        }
        else if (a == "--layers") o.layers = std::atoi(value().c_str());
        else if (a == "--context") o.context = std::max(0, std::atoi(value().c_str()));
        else if (a == "--rounds") o.rounds = std::max(1, std::atoi(value().c_str()));
        else if (a == "--round-time") o.round_time = std::atof(value().c_str());
        else if (a == "--gemm") o.gemm = true;
        else if (a == "--quick") {
            // A smoke run: every model and op on tiny sizes, in well under a second.
            o.models = check_models;
            o.dims = {4};
            o.hidden = {16};
            o.batch = {32};
            o.threads = {1};
            o.layers = 2;
            o.round_time = 0.01;
            o.rounds = std::min(o.rounds, 3);
        } else
            usage();
    }
    grid(o);
    return 0;
}
