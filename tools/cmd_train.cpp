// flowlib train: fits a model to a data set.
//
// The run is a pure function of its options: the validation split and the
// order of every epoch come from (seed, epoch) alone, and the model file
// carries the optimizer state and step count. A checkpoint (a model file plus
// its sidecar, which records the options and the position in the data) thus
// resumes to exactly the parameters an uninterrupted run reaches.
#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>

#include <nlohmann/json.hpp>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "data.h"
#include "figure.h"
#include "model_io.h"
#include "progress.h"

using nlohmann::json;

namespace cli {

namespace {

const CommandSpec spec = {
    "train",
    "[options] DATA -o MODEL\n       flowlib train --resume CHECKPOINT [options]",
    "Trains a normalizing flow on DATA: a .npy, .csv/.tsv or MNIST-style idx(.gz)\n"
    "file, or a built-in data set (two_moons, eight_gaussians, checkerboard,\n"
    "pinwheel, two_spirals, rings). A share of the rows is held out to validate;\n"
    "MODEL always holds the model with the best validation NLL. Data from idx\n"
    "files or uint8 .npy files are images: they are dequantized (256 levels) and\n"
    "logit-transformed, and NLLs are also shown in bits/dim.\n"
    "\n"
    "Ctrl-C saves a checkpoint and stops; --resume continues from it and ends\n"
    "with the same parameters as an uninterrupted run.",
    {
        {"output", 'o', "MODEL", "where to save the model (.safetensors; MODEL.json holds data shape and metrics)"},
        {"spec", 0, "FILE|JSON", "model spec (file or inline JSON); \"dim\" may be left out"},
        {"preset", 0, "NAME", "realnvp (default) or nice, when there is no --spec"},
        {"layers", 0, "N", "coupling layers (preset default: 8 realnvp, 4 nice)"},
        {"hidden", 0, "N,N,..", "hidden widths of each coupling network (default 64,64)"},
        {"activation", 0, "NAME", "relu, leaky_relu, elu, tanh or softplus"},
        {"batch-norm", 0, nullptr, "batch norm between coupling layers"},
        {"base", 0, "NAME", "base distribution: normal or logistic"},
        {"dequantize", 0, "LEVELS", "dequantize integer data 0..LEVELS-1 (auto: 256 for images)"},
        {"logit", 0, "ALPHA", "logit transform after dequantizing (default 0.05; 0 = none)"},
        {"no-dequantize", 0, nullptr, "treat uint8 data as continuous"},
        {"epochs", 'e', "N", "passes over the training rows (default 20)"},
        {"steps", 0, "N", "stop after N steps in all (default: no limit)"},
        {"time", 0, "SECONDS", "stop after this much training time (default: no limit)"},
        {"batch", 'b', "N", "rows per step (default 128)"},
        {"optimizer", 0, "NAME", "adam (default), adamw or sgd"},
        {"lr", 0, "RATE", "learning rate (default 1e-3 adam, 1e-2 sgd)"},
        {"weight-decay", 0, "W", "weight decay (default 0)"},
        {"momentum", 0, "M", "SGD momentum (default 0)"},
        {"clip", 0, "NORM", "clip the gradient to this Euclidean norm (default: off)"},
        {"val", 0, "FRACTION", "share of rows held out for validation (default 0.1; 0 = none)"},
        {"val-every", 0, "STEPS", "validate every N steps (default: once per epoch)"},
        {"patience", 0, "N", "stop after N validations without improvement (default 5; 0 = never)"},
        {"checkpoint", 0, "FILE", "checkpoint file (default MODEL.ckpt)"},
        {"checkpoint-every", 0, "STEPS", "save a checkpoint every N steps (default: at the end and on Ctrl-C)"},
        {"resume", 0, "CHECKPOINT", "continue a run from its checkpoint"},
        {"columns", 0, "COLS", "data columns: \"0,1\", \"2-5\" or header names (default: all but --context)"},
        {"context", 0, "COLS", "columns given as context (a conditional model)"},
        {"header", 0, nullptr, "the CSV file has a header line (default: detected)"},
        {"no-header", 0, nullptr, "the CSV file has no header line"},
        {"limit", 0, "N", "use only the first N rows of the file"},
        {"rows", 0, "N", "rows of a built-in data set (default 20000)"},
        {"seed", 0, "S", "seed of the weights, the split, the data order and noise (default 0)"},
        {"plot", 0, "PNG", "at the end, draw the model (2-D: density; images: samples)"},
        {"threads", 0, "N", "CPU threads (default: all cores)"},
        {"device", 0, "NAME", "cpu (default) or cuda"},
        {"quiet", 'q', nullptr, "no progress line"},
    },
    "examples:\n"
    "  flowlib train two_moons -o moons.safetensors --plot moons.png\n"
    "  flowlib train data.csv --context 2 --hidden 128,128 -o model.safetensors\n"
    "  flowlib train /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz \\\n"
    "      --layers 6 --hidden 1024 --epochs 5 -o fmnist.safetensors\n"
    "  flowlib train --resume fmnist.safetensors.ckpt --epochs 10\n"};

volatile std::sig_atomic_t interrupted = 0;

extern "C" void on_signal(int sig) {
    if (interrupted) { // a second Ctrl-C: stop now
        std::signal(sig, SIG_DFL);
        std::raise(sig);
    }
    interrupted = 1;
}

// The model spec from the options, for data of `dim` columns.
std::string build_spec(const Args &a, const Dataset &d) {
    size_t cdim = d.context.cols;
    json j;
    if (a.has("spec")) {
        std::string s = a.str("spec");
        std::string text = !s.empty() && s[0] == '{' ? s : read_file(s);
        j = json::parse(text, nullptr, false);
        if (!j.is_object()) fail("--spec: " + (s[0] == '{' ? std::string("the JSON") : s) + " is not a JSON object");
        if (!j.contains("dim")) j["dim"] = d.x.cols;
        if (cdim && !j.contains("context_dim")) j["context_dim"] = cdim;
        for (const char *o : {"preset", "layers", "hidden", "activation", "batch-norm", "base",
                              "dequantize", "logit"})
            if (a.has(o)) fail(std::string("--") + o + " and --spec do not go together: put it in the spec");
        return j.dump();
    }
    j["preset"] = a.str("preset", "realnvp");
    j["dim"] = d.x.cols;
    if (cdim) j["context_dim"] = cdim;
    if (a.has("layers")) j["layers"] = a.integer("layers", 0, 1, 1000);
    if (a.has("hidden")) j["hidden"] = parse_int_list(a.str("hidden"), "--hidden", 1, 1 << 20);
    if (a.has("activation")) j["activation"] = a.str("activation");
    if (a.flag("batch-norm")) j["batch_norm"] = true;
    if (a.has("base")) j["base"] = {{"type", a.str("base")}};
    long long levels = a.integer("dequantize", 0, 2, 65536);
    if (!a.has("dequantize") && d.x.levels && !a.flag("no-dequantize")) levels = d.x.levels;
    if (levels) {
        j["dequantize"] = levels;
        double alpha = a.number("logit", 0.05, 0.0, 0.499);
        if (alpha > 0) j["logit"] = alpha;
    } else if (a.has("logit")) {
        double alpha = a.number("logit", 0.05, 0.0, 0.499);
        if (alpha > 0) j["logit"] = alpha;
    }
    return j.dump();
}

std::string optimizer_json(const Args &a) {
    std::string type = a.str("optimizer", "adam");
    if (type != "adam" && type != "adamw" && type != "sgd")
        fail("--optimizer: unknown optimizer \"" + type + "\" (adam, adamw or sgd)");
    json j = {{"type", type}};
    if (a.has("lr")) j["lr"] = a.number("lr", 0, 0, 1e6);
    if (a.has("weight-decay")) j["weight_decay"] = a.number("weight-decay", 0, 0, 1e6);
    if (a.has("momentum")) {
        if (type != "sgd") fail("--momentum is for --optimizer sgd");
        j["momentum"] = a.number("momentum", 0, 0, 1);
    }
    if (a.has("clip")) j["clip_grad_norm"] = a.number("clip", 0, 0, 1e30);
    return j.dump();
}

// Copies rows idx[begin..begin+n) of t into out.
void gather(const Table &t, const std::vector<size_t> &idx, size_t begin, size_t n, float *out) {
    for (size_t r = 0; r < n; ++r)
        std::memcpy(out + r * t.cols, &t.values[idx[begin + r] * t.cols], t.cols * sizeof(float));
}

// Mean NLL (nats per row) of the rows idx. Runs to the end even after
// Ctrl-C, so that an interrupted run has validated where an uninterrupted
// one has.
double mean_nll(flow_model *m, const Dataset &d, const std::vector<size_t> &idx) {
    const size_t chunk = 1024;
    std::vector<float> x(chunk * d.x.cols), c(chunk * d.context.cols), lp(chunk);
    double sum = 0;
    for (size_t b = 0; b < idx.size(); b += chunk) {
        size_t n = std::min(chunk, idx.size() - b);
        gather(d.x, idx, b, n, x.data());
        if (d.context.cols) gather(d.context, idx, b, n, c.data());
        check(flow_log_prob(m, x.data(), d.context.cols ? c.data() : nullptr, n, lp.data()),
              "validation");
        for (size_t i = 0; i < n; ++i) sum -= lp[i];
    }
    return sum / (double)idx.size();
}

} // namespace

int cmd_train(int argc, char **argv) {
    Args a(spec, argc, argv, 2);
    if (a.help_requested()) {
        a.print_help();
        return 0;
    }

    // Resuming: the checkpoint's options are the defaults; the command line
    // may change some (more epochs, a new time budget).
    std::string resume = a.str("resume");
    Sidecar state;
    std::vector<std::string> positional = a.positional();
    if (!resume.empty()) {
        if (!file_exists(resume)) fail(resume + ": no such checkpoint");
        state = read_sidecar(resume);
        if (!state.present)
            fail(resume + ": no " + sidecar_path(resume) + " beside it: not a checkpoint of flowlib train");
        for (const auto &kv : state.args)
            if (kv.first != "resume" && kv.first != "data") a.set_default(kv.first, kv.second);
        if (positional.empty() && state.args.count("data")) positional.push_back(state.args.at("data"));
    }
    if (positional.empty()) fail("missing DATA (usage: flowlib train [options] DATA -o MODEL)");
    if (positional.size() > 1) fail("unexpected argument \"" + positional[1] + "\" (one DATA only)");
    std::string output = a.str("output");
    if (output.empty()) fail("missing -o MODEL: where to save the trained model");
    std::string checkpoint = a.str("checkpoint", output + ".ckpt");

    flow_device device = parse_device(a.str("device", "cpu"));
    apply_threads(a.integer("threads", 0, 0, 4096));
    uint64_t seed = (uint64_t)a.integer("seed", 0, 0, INT64_MAX);
    long long epochs = a.integer("epochs", 20, 1, 1000000);
    long long max_steps = a.integer("steps", 0, 0, INT64_MAX);
    double time_budget = a.number("time", 0, 0, 1e9);
    double val_share = a.number("val", 0.1, 0, 0.9);
    long long patience = a.integer("patience", 5, 0, 1000000);
    bool quiet = a.flag("quiet");

    DataOptions dopt;
    if (a.flag("header") && a.flag("no-header")) fail("--header and --no-header contradict each other");
    dopt.header = a.flag("header") ? "yes" : a.flag("no-header") ? "no" : "auto";
    dopt.columns = a.str("columns");
    dopt.context = a.str("context");
    dopt.limit = (size_t)a.integer("limit", 0, 0, INT64_MAX);
    dopt.builtin_rows = (size_t)a.integer("rows", 20000, 1, 100000000);
    dopt.builtin_seed = seed;
    Progress progress(quiet);
    if (progress.tty()) progress.update("loading " + positional[0] + " ...", true);
    Dataset d = load_dataset(positional[0], dopt);
    progress.message(format("data: %s (%s), %zu rows x %zu columns%s%s", d.source.c_str(),
                            d.format.c_str(), d.x.rows, d.x.cols,
                            d.x.shape.size() > 1 ? (" (" + shape_string(d.x.shape) + " images)").c_str() : "",
                            d.context.cols ? format(", %zu context columns", d.context.cols).c_str() : ""));

    // The model: a fresh one, or the checkpoint's.
    ModelPtr model;
    if (!resume.empty()) {
        model = load_model(resume, device);
        if (flow_model_step_count(model.get()) != state.steps)
            fail(resume + ": the model has taken " + std::to_string(flow_model_step_count(model.get())) +
                 " steps but its sidecar says " + std::to_string(state.steps) + ": they do not belong together");
    } else {
        model = create_model(build_spec(a, d), device, seed);
        check(flow_model_set_optimizer(model.get(), optimizer_json(a).c_str()), "optimizer");
    }
    flow_model *m = model.get();
    if (flow_model_dim(m) != d.x.cols)
        fail(format("the model's dim is %zu but the data have %zu columns (choose them with --columns)",
                    flow_model_dim(m), d.x.cols));
    if (flow_model_context_dim(m) != d.context.cols)
        fail(format("the model takes %zu context columns but --context gives %zu",
                    flow_model_context_dim(m), d.context.cols));
    int levels = model_levels(m);
    size_t dim = d.x.cols;

    // The split: a seeded permutation, its first rows held out.
    std::vector<size_t> perm = permutation(d.x.rows, seed, 0);
    size_t n_val = val_share > 0 ? std::max<size_t>(1, (size_t)std::llround(val_share * (double)d.x.rows)) : 0;
    if (n_val >= d.x.rows) fail(format("%zu rows are too few to hold out a validation share", d.x.rows));
    std::vector<size_t> val_idx(perm.begin(), perm.begin() + (long)n_val);
    std::vector<size_t> train_idx(perm.begin() + (long)n_val, perm.end());
    size_t n_train = train_idx.size();
    size_t batch = (size_t)a.integer("batch", 128, 1, 1 << 24);
    if (batch > n_train) batch = n_train;
    uint64_t per_epoch = n_train / batch;
    uint64_t total = (uint64_t)epochs * per_epoch;
    if (max_steps > 0 && (uint64_t)max_steps < total) total = (uint64_t)max_steps;
    uint64_t val_every = (uint64_t)a.integer("val-every", (long long)per_epoch, 1, INT64_MAX);
    uint64_t ckpt_every = (uint64_t)a.integer("checkpoint-every", 0, 0, INT64_MAX);

    // What the sidecars record: the data, and the options to resume with.
    Sidecar info = state;
    info.present = true;
    info.source = d.source;
    info.format = d.format;
    info.shape = d.x.shape.size() > 1 ? d.x.shape : std::vector<size_t>{};
    info.levels = levels;
    if (!dopt.columns.empty() || !dopt.context.empty()) {
        info.columns = d.data_cols;
        info.context_columns = d.context_cols;
    }
    info.names = d.x.names;
    info.args = a.values();
    info.args.erase("resume");
    info.args["data"] = d.source;
    info.args["output"] = output;
    info.args["checkpoint"] = checkpoint;
    if (resume.empty()) {
        info.position = 0;
        info.best_val = NAN;
        info.bad_evals = 0;
        info.seconds = 0;
    }

    auto per_dim = [&](double nll) {
        return levels ? format("%.3f bits/dim", nll / ((double)dim * std::log(2.0)))
                      : format("%.4f nats", nll);
    };
    double start = now_seconds(); // of this session; info.seconds holds the earlier ones
    auto save_checkpoint = [&]() {
        info.steps = flow_model_step_count(m);
        save_model(m, checkpoint);
        Sidecar now = info;
        now.seconds += now_seconds() - start;
        write_sidecar(checkpoint, now);
    };

    progress.message(format("model: %zu parameters; %zu training rows, %zu validation rows; batch %zu, "
                            "%llu steps per epoch, %llu steps in all%s",
                            flow_model_param_count(m), n_train, n_val, batch,
                            (unsigned long long)per_epoch, (unsigned long long)total,
                            info.position ? format(" (resuming at step %llu)", (unsigned long long)info.position).c_str() : ""));

    struct sigaction sa, old_int, old_term;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    std::string val_text = std::isfinite(info.val_nll) ? per_dim(info.val_nll) : "-";
    // Validates; saves the model to `output` when it is the best so far.
    uint64_t validated_at = UINT64_MAX;
    auto validate = [&]() {
        if (progress.tty())
            progress.update(format("step %llu: validating ...", (unsigned long long)info.position), true);
        double v = mean_nll(m, d, val_idx);
        validated_at = info.position;
        info.val_nll = v;
        val_text = per_dim(v);
        if (v >= info.best_val) return false; // (a NaN best_val: the first)
        info.best_val = v;
        info.best_step = info.position;
        info.bad_evals = 0;
        save_model(m, output);
        Sidecar now = info;
        now.seconds += now_seconds() - start;
        write_sidecar(output, now);
        return true;
    };

    std::vector<float> xb(batch * dim), cb(batch * d.context.cols);
    std::vector<size_t> order;
    uint64_t order_epoch = UINT64_MAX;
    start = now_seconds();
    double eval_time = 0, train_ema = NAN;
    uint64_t start_pos = info.position, skipped = 0;
    std::string stop_reason = "done";

    while (info.position < total) {
        if (interrupted) break;
        double elapsed = info.seconds + (now_seconds() - start);
        if (time_budget > 0 && elapsed >= time_budget) {
            stop_reason = "time budget reached";
            break;
        }
        uint64_t epoch = info.position / per_epoch, k = info.position % per_epoch;
        if (epoch != order_epoch) {
            order = permutation(n_train, seed, 1 + epoch);
            for (size_t &o : order) o = train_idx[o];
            order_epoch = epoch;
        }
        gather(d.x, order, k * batch, batch, xb.data());
        if (d.context.cols) gather(d.context, order, k * batch, batch, cb.data());
        float loss = 0;
        flow_status s = flow_train_step(m, xb.data(), d.context.cols ? cb.data() : nullptr, batch, &loss);
        if (s == FLOW_ERR_NUMERIC) {
            ++skipped; // the library left the model as it was; the batch counts as seen
            progress.message(format("warning: step %llu skipped: %s", (unsigned long long)info.position + 1,
                                    flow_last_error()));
        } else {
            check(s, format("training step %llu", (unsigned long long)info.position + 1));
            train_ema = std::isfinite(train_ema) ? 0.95 * train_ema + 0.05 * loss : loss;
        }
        ++info.position;
        info.train_nll = train_ema;

        if (ckpt_every && info.position % ckpt_every == 0) save_checkpoint();
        bool last = info.position == total;
        bool validated = n_val && (info.position % val_every == 0 || last);
        if (validated) {
            double t0 = now_seconds();
            bool improved = validate();
            eval_time += now_seconds() - t0;
            if (!improved && patience && ++info.bad_evals >= (uint64_t)patience) {
                stop_reason = format("early stop: no improvement in %lld validations", patience);
                info.seconds += now_seconds() - start;
                start = now_seconds();
                break;
            }
        }

        double run = now_seconds() - start - eval_time;
        double rate = (double)(info.position - start_pos) * (double)batch / std::max(run, 1e-9);
        double eta = (double)(total - info.position) * (double)batch / rate;
        if (time_budget > 0) eta = std::min(eta, time_budget - (info.seconds + now_seconds() - start));
        progress.update(format("step %llu/%llu  epoch %llu/%llu  %s samples/s  ETA %s  train %s  val %s",
                               (unsigned long long)info.position, (unsigned long long)total,
                               (unsigned long long)(info.position - 1) / per_epoch + 1,
                               (unsigned long long)((total + per_epoch - 1) / per_epoch),
                               human_count(rate).c_str(), human_duration(eta).c_str(),
                               per_dim(train_ema).c_str(), val_text.c_str()),
                        last || validated);
    }
    // A run cut short by its budget validates where it stopped.
    if (n_val && !interrupted && validated_at != info.position && info.position > start_pos) validate();
    info.seconds += now_seconds() - start;
    start = now_seconds();
    progress.finish();
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);

    save_checkpoint();
    if (!n_val || !file_exists(output)) { // no validation: the model is the last one
        save_model(m, output);
        write_sidecar(output, info);
    }
    if (interrupted) {
        std::fprintf(stderr,
                     "flowlib train: interrupted at step %llu; checkpoint saved to %s\n"
                     "  resume with: flowlib train --resume %s\n",
                     (unsigned long long)info.position, checkpoint.c_str(), checkpoint.c_str());
        return 130;
    }
    if (skipped)
        std::fprintf(stderr, "warning: %llu steps were skipped (non-finite loss); try a lower --lr or --clip\n",
                     (unsigned long long)skipped);

    std::printf("trained %llu steps in %s (%s)\n", (unsigned long long)info.position,
                human_duration(info.seconds).c_str(), stop_reason.c_str());
    if (n_val)
        std::printf("best validation NLL %s at step %llu -> %s\n", per_dim(info.best_val).c_str(),
                    (unsigned long long)info.best_step, output.c_str());
    else
        std::printf("final training NLL %s -> %s\n", per_dim(train_ema).c_str(), output.c_str());

    if (a.has("plot")) {
        ModelPtr best = load_model(output, device);
        FigureOptions fo;
        fo.seed = seed;
        std::string what = write_figure(best.get(), info, &d, fo, a.str("plot"));
        std::printf("wrote %s: %s\n", a.str("plot").c_str(), what.c_str());
    }
    return 0;
}

} // namespace cli
