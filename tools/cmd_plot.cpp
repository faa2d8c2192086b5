// flowlib plot: the picture of a model (see figure.h).
#include <cstdio>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "data.h"
#include "figure.h"
#include "model_io.h"

namespace cli {

namespace {

const CommandSpec spec = {
    "plot",
    "[options] MODEL [DATA] -o FILE.png",
    "Draws a model. 2-D models: the data (when given, or recorded in the\n"
    "model's sidecar), the learned density as a heat map and samples, side by\n"
    "side on one scale. Image models: a grid of samples beside a grid of\n"
    "training images.",
    {
        {"output", 'o', "FILE.png", "where to write the picture"},
        {"count", 'n', "N", "samples (default 20000 points, or 64 images)"},
        {"seed", 0, "S", "seed of the samples (default 0)"},
        {"temperature", 't', "T", "sampling temperature (default 1)"},
        {"size", 0, "PIXELS", "size of each 2-D panel (default 320)"},
        {"zoom", 0, "Z", "magnification of each image (default 2)"},
        {"shape", 0, "HxW", "draw rows as images of this shape"},
        {"limit", 0, "N", "read only the first N rows of DATA"},
        {"threads", 0, "N", "CPU threads (default: all cores)"},
    },
    "example:\n"
    "  flowlib plot moons.safetensors -o moons.png\n"};

std::string join(const std::vector<size_t> &v) {
    std::string s;
    for (size_t k : v) s += (s.empty() ? "" : ",") + std::to_string(k);
    return s;
}

} // namespace

int cmd_plot(int argc, char **argv) {
    Args a(spec, argc, argv, 2);
    if (a.help_requested()) {
        a.print_help();
        return 0;
    }
    a.expect_positional(1, 2, "MODEL");
    std::string out = a.str("output");
    if (out.empty() || extension(out) != ".png") fail("give -o FILE.png: where to draw the picture");
    apply_threads(a.integer("threads", 0, 0, 4096));
    const std::string &path = a.positional()[0];
    ModelPtr model = load_model(path, FLOW_DEVICE_CPU);
    Sidecar info = read_sidecar(path);
    if (a.has("shape")) info.shape = parse_shape(a.str("shape"), "--shape");

    // The data: as given, else the training data when it is still there.
    std::string source = a.positional().size() > 1 ? a.positional()[1] : info.source;
    Dataset data;
    bool have_data = false;
    if (!source.empty() && (file_exists(source) || is_builtin(source))) {
        DataOptions dopt;
        dopt.columns = join(info.columns);
        dopt.context = join(info.context_columns);
        dopt.limit = (size_t)a.integer("limit", 0, 0, INT64_MAX);
        if (info.format == "builtin" && source == info.source && info.args.count("rows"))
            dopt.builtin_rows = (size_t)parse_int(info.args.at("rows"), "rows", 1, 100000000);
        if (info.args.count("seed")) dopt.builtin_seed = (uint64_t)parse_int(info.args.at("seed"), "seed", 0, INT64_MAX);
        data = load_dataset(source, dopt);
        have_data = true;
    } else if (a.positional().size() > 1) {
        fail(source + ": no such file");
    }
    FigureOptions fo;
    fo.samples = (size_t)a.integer("count", 0, 0, 10000000);
    fo.seed = (uint64_t)a.integer("seed", 0, 0, INT64_MAX);
    fo.temperature = (float)a.number("temperature", 1.0);
    if (!(fo.temperature > 0)) fail("--temperature must be > 0");
    fo.size = (int)a.integer("size", 320, 16, 4096);
    fo.zoom = (int)a.integer("zoom", 2, 1, 64);
    std::string what = write_figure(model.get(), info, have_data ? &data : nullptr, fo, out);
    std::printf("wrote %s: %s\n", out.c_str(), what.c_str());
    return 0;
}

} // namespace cli
