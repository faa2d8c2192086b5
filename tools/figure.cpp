#include "figure.h"

#include <algorithm>
#include <vector>

#include "common.h"
#include "plot.h"

namespace cli {

std::string write_figure(flow_model *m, const Sidecar &info, const Dataset *data,
                         const FigureOptions &opt, const std::string &path) {
    size_t dim = flow_model_dim(m), cdim = flow_model_context_dim(m);
    // Conditional models are drawn at one context: the data's first row, or 0.
    std::vector<float> ctx(cdim, 0.0f);
    if (cdim && data && data->context.cols == cdim)
        std::copy(data->context.values.begin(), data->context.values.begin() + (long)cdim, ctx.begin());

    if (is_image_shape(info.shape) && dim > 2) {
        size_t n = opt.samples ? opt.samples : 64;
        std::vector<float> x(n * dim), c;
        for (size_t i = 0; cdim && i < n; ++i) c.insert(c.end(), ctx.begin(), ctx.end());
        check(flow_sample(m, n, cdim ? c.data() : nullptr, opt.temperature, opt.seed, x.data(), nullptr),
              "sampling");
        std::vector<Image> panels = {image_grid(x.data(), n, info.shape, info.levels, 0, opt.zoom)};
        std::string what = format("%zu samples (left)", n);
        if (data && data->x.cols == dim) {
            size_t k = std::min(n, data->x.rows);
            panels.push_back(image_grid(data->x.values.data(), k, info.shape, info.levels, 0, opt.zoom));
            what += format(" beside %zu training images (right)", k);
        }
        write_png(path, side_by_side(panels, 12));
        return what;
    }
    if (dim != 2)
        fail(format("a %zu-D model cannot be drawn: only 2-D models and image-shaped models "
                    "(trained on idx files, or give --shape HxW) have pictures", dim));

    size_t n = opt.samples ? opt.samples : 20000;
    Table samples;
    samples.rows = n;
    samples.cols = 2;
    samples.values.resize(2 * n);
    std::vector<float> c;
    for (size_t i = 0; cdim && i < n; ++i) c.insert(c.end(), ctx.begin(), ctx.end());
    check(flow_sample(m, n, cdim ? c.data() : nullptr, opt.temperature, opt.seed, samples.values.data(), nullptr),
          "sampling");
    bool have_data = data && data->x.cols == 2;
    View v = view_of(have_data ? data->x : samples);
    std::vector<Image> panels;
    std::string what;
    if (have_data) {
        panels.push_back(histogram_panel(data->x, v, opt.size));
        what = "data (left), ";
    }
    panels.push_back(density_panel(m, v, opt.size, cdim ? ctx.data() : nullptr));
    panels.push_back(histogram_panel(samples, v, opt.size));
    what += format("model density (%s), %zu samples (right); x in [%.2f, %.2f], y in [%.2f, %.2f]",
                   have_data ? "middle" : "left", n, v.x0, v.x1, v.y0, v.y1);
    write_png(path, side_by_side(panels, 12));
    return what;
}

} // namespace cli
