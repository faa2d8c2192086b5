// flowlib eval: the log-likelihood of a data set under a model.
#include <cmath>
#include <cstdio>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "data.h"
#include "model_io.h"
#include "progress.h"

namespace cli {

namespace {

const CommandSpec spec = {
    "eval",
    "[options] MODEL DATA",
    "Prints the mean log-likelihood of the rows of DATA under MODEL, in nats\n"
    "per row and, for models of discrete data (images), in bits per dimension.\n"
    "The columns the model was trained on (its MODEL.json sidecar) are used\n"
    "unless --columns/--context say otherwise.",
    {
        {"out", 'o', "FILE", "also write each row's log-density (nats) to FILE (.npy or .csv)"},
        {"columns", 0, "COLS", "data columns (default: as in training)"},
        {"context", 0, "COLS", "context columns (default: as in training)"},
        {"header", 0, nullptr, "the CSV file has a header line (default: detected)"},
        {"no-header", 0, nullptr, "the CSV file has no header line"},
        {"limit", 0, "N", "use only the first N rows"},
        {"batch", 'b', "N", "rows per call (default 1000)"},
        {"threads", 0, "N", "CPU threads (default: all cores)"},
        {"device", 0, "NAME", "cpu (default) or cuda"},
        {"quiet", 'q', nullptr, "no progress line"},
    },
    "example:\n"
    "  flowlib eval fmnist.safetensors /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz\n"};

std::string join(const std::vector<size_t> &v) {
    std::string s;
    for (size_t k : v) s += (s.empty() ? "" : ",") + std::to_string(k);
    return s;
}

} // namespace

int cmd_eval(int argc, char **argv) {
    Args a(spec, argc, argv, 2);
    if (a.help_requested()) {
        a.print_help();
        return 0;
    }
    a.expect_positional(2, 2, "MODEL and DATA");
    const std::string &model_path = a.positional()[0], &data_path = a.positional()[1];
    flow_device device = parse_device(a.str("device", "cpu"));
    apply_threads(a.integer("threads", 0, 0, 4096));
    size_t batch = (size_t)a.integer("batch", 1000, 1, 1 << 24);

    ModelPtr model = load_model(model_path, device);
    flow_model *m = model.get();
    Sidecar info = read_sidecar(model_path);

    DataOptions dopt;
    dopt.header = a.flag("header") ? "yes" : a.flag("no-header") ? "no" : "auto";
    dopt.limit = (size_t)a.integer("limit", 0, 0, INT64_MAX);
    if (a.has("columns") || a.has("context")) {
        dopt.columns = a.str("columns");
        dopt.context = a.str("context");
    } else {
        dopt.columns = join(info.columns);
        dopt.context = join(info.context_columns);
    }
    Dataset d = load_dataset(data_path, dopt);
    size_t dim = flow_model_dim(m), cdim = flow_model_context_dim(m);
    if (d.x.cols != dim)
        fail(format("%s: %zu data columns, but the model takes %zu (choose them with --columns)",
                    data_path.c_str(), d.x.cols, dim));
    if (d.context.cols != cdim)
        fail(format("%s: %zu context columns, but the model takes %zu (choose them with --context)",
                    data_path.c_str(), d.context.cols, cdim));

    Table lp;
    lp.rows = d.x.rows;
    lp.cols = 1;
    lp.names = {"log_prob"};
    lp.values.resize(d.x.rows);
    Progress progress(a.flag("quiet"));
    double start = now_seconds();
    for (size_t b = 0; b < d.x.rows; b += batch) {
        size_t n = std::min(batch, d.x.rows - b);
        flow_status s = flow_log_prob(m, &d.x.values[b * dim], cdim ? &d.context.values[b * cdim] : nullptr,
                                      n, &lp.values[b]);
        check(s, format("%s, rows %zu..%zu", data_path.c_str(), b, b + n - 1));
        double t = now_seconds() - start;
        progress.update(format("evaluating: %zu/%zu rows  %s rows/s", b + n, d.x.rows,
                               human_count((double)(b + n) / std::max(t, 1e-9)).c_str()));
    }
    progress.finish();

    double sum = 0, sum2 = 0;
    for (float v : lp.values) {
        sum += v;
        sum2 += (double)v * v;
    }
    double n = (double)d.x.rows, mean = sum / n;
    double se = n > 1 ? std::sqrt(std::max(0.0, (sum2 / n - mean * mean) * n / (n - 1)) / n) : 0;
    int levels = model_levels(m);
    std::printf("model:    %s (dim %zu)\n", model_path.c_str(), dim);
    std::printf("data:     %s (%zu rows)\n", data_path.c_str(), d.x.rows);
    std::printf("log-likelihood: %.4f nats per row (standard error %.4f)\n", mean, se);
    std::printf("NLL:      %.4f nats per row, %.5f nats/dim\n", -mean, -mean / (double)dim);
    if (levels)
        std::printf("bits/dim: %.4f (discrete data, %d levels)\n", -mean / ((double)dim * std::log(2.0)), levels);
    if (a.has("out")) {
        write_table(a.str("out"), lp);
        std::printf("wrote %s: %zu log-densities\n", a.str("out").c_str(), lp.rows);
    }
    return 0;
}

} // namespace cli
