// flowlib sample: draws from a model into a table or a picture.
#include <cstdio>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "data.h"
#include "model_io.h"
#include "plot.h"

namespace cli {

namespace {

const CommandSpec spec = {
    "sample",
    "[options] MODEL -o FILE",
    "Draws N samples from MODEL and writes them to FILE: .npy or .csv (one row\n"
    "per sample), or .png: a grid of images for image-shaped models (their shape\n"
    "comes from the MODEL.json sidecar that flowlib train writes, or from\n"
    "--shape), a 2-D histogram for 2-D models. The same seed gives the same\n"
    "samples; a temperature below 1 draws from the more likely part of the model.",
    {
        {"output", 'o', "FILE", "where to write (.npy, .csv or .png)"},
        {"count", 'n', "N", "number of samples (default 64 for images, else 1000)"},
        {"seed", 0, "S", "seed (default 0)"},
        {"temperature", 't', "T", "scale of the base distribution (default 1)"},
        {"context", 0, "V,V,..", "the context of every sample (conditional models)"},
        {"context-file", 0, "FILE", "one context row per sample (.npy or .csv)"},
        {"shape", 0, "HxW", "draw rows as images of this shape (e.g. 28x28 or 3x32x32)"},
        {"columns", 0, "N", "images per row of the PNG grid (default: square)"},
        {"zoom", 0, "Z", "magnification of each image in the PNG (default 2)"},
        {"log-prob", 0, nullptr, "add each sample's log-density as a last column (.npy/.csv)"},
        {"threads", 0, "N", "CPU threads (default: all cores)"},
        {"device", 0, "NAME", "cpu (default) or cuda"},
    },
    "examples:\n"
    "  flowlib sample moons.safetensors -n 5000 -o samples.csv\n"
    "  flowlib sample fmnist.safetensors -n 100 -t 0.7 -o samples.png\n"};

} // namespace

int cmd_sample(int argc, char **argv) {
    Args a(spec, argc, argv, 2);
    if (a.help_requested()) {
        a.print_help();
        return 0;
    }
    a.expect_positional(1, 1, "MODEL");
    std::string out = a.str("output");
    if (out.empty()) fail("missing -o FILE: where to write the samples (.npy, .csv or .png)");
    std::string ext = extension(out);
    bool png = ext == ".png";
    if (!png && !is_table_path(out)) fail(out + ": unknown output type (use .npy, .csv or .png)");

    flow_device device = parse_device(a.str("device", "cpu"));
    apply_threads(a.integer("threads", 0, 0, 4096));
    ModelPtr model = load_model(a.positional()[0], device);
    flow_model *m = model.get();
    Sidecar info = read_sidecar(a.positional()[0]);
    size_t dim = flow_model_dim(m), cdim = flow_model_context_dim(m);
    std::vector<size_t> shape = a.has("shape") ? parse_shape(a.str("shape"), "--shape") : info.shape;
    if (a.has("shape")) {
        size_t prod = 1;
        for (size_t s : shape) prod *= s;
        if (prod != dim) fail(format("--shape %s holds %zu values, the model's rows %zu", a.str("shape").c_str(), prod, dim));
    }
    bool images = is_image_shape(shape) && dim > 2;
    size_t n = (size_t)a.integer("count", images && png ? 64 : 1000, 1, 100000000);
    uint64_t seed = (uint64_t)a.integer("seed", 0, 0, INT64_MAX);
    float temperature = (float)a.number("temperature", 1.0);
    if (!(temperature > 0)) fail("--temperature must be > 0");

    std::vector<float> ctx;
    if (cdim) {
        if (a.has("context-file")) {
            Table c = read_table(a.str("context-file"), "auto");
            if (c.cols != cdim || c.rows != n)
                fail(format("%s: %zu x %zu values, expected %zu rows (-n) of %zu context values",
                            a.str("context-file").c_str(), c.rows, c.cols, n, cdim));
            ctx = c.values;
        } else if (a.has("context")) {
            std::vector<float> one = parse_float_list(a.str("context"), "--context");
            if (one.size() != cdim) fail(format("--context: %zu values given, the model takes %zu", one.size(), cdim));
            for (size_t i = 0; i < n; ++i) ctx.insert(ctx.end(), one.begin(), one.end());
        } else {
            fail(format("the model is conditional: give its %zu context values with --context or --context-file", cdim));
        }
    } else if (a.has("context") || a.has("context-file")) {
        fail("the model takes no context");
    }

    Table t;
    t.rows = n;
    t.cols = dim;
    t.values.resize(n * dim);
    std::vector<float> lp(n);
    check(flow_sample(m, n, cdim ? ctx.data() : nullptr, temperature, seed, t.values.data(), lp.data()),
          "sampling");

    if (png) {
        Image img;
        if (images) {
            img = image_grid(t.values.data(), n, shape, info.levels, (int)a.integer("columns", 0, 0, 100000),
                             (int)a.integer("zoom", 2, 1, 64));
        } else if (dim == 2) {
            img = histogram_panel(t, view_of(t), 320);
        } else {
            fail(format("%zu-D samples make no picture: give --shape HxW for images, or write .npy/.csv", dim));
        }
        write_png(out, img);
        std::printf("wrote %s: %zu samples%s\n", out.c_str(), n,
                    images ? (" as " + shape_string(shape) + " images").c_str() : " as a 2-D histogram");
        return 0;
    }
    if (info.names.size() == dim) t.names = info.names;
    else if (extension(out) != ".npy")
        for (size_t c = 0; c < dim; ++c) t.names.push_back("x" + std::to_string(c));
    if (a.flag("log-prob")) {
        Table w;
        w.rows = n;
        w.cols = dim + 1;
        for (size_t r = 0; r < n; ++r) {
            w.values.insert(w.values.end(), t.values.begin() + (long)(r * dim), t.values.begin() + (long)((r + 1) * dim));
            w.values.push_back(lp[r]);
        }
        w.names = t.names;
        if (!w.names.empty()) w.names.push_back("log_prob");
        t = std::move(w);
    }
    write_table(out, t);
    std::printf("wrote %s: %zu samples of dim %zu\n", out.c_str(), n, dim);
    return 0;
}

} // namespace cli
