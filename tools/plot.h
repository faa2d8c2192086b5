// Pictures: a 2-D model's density as a heat map beside its data and its
// samples, and grids of images. Everything is drawn into an Image (png.h).
#pragma once

#include <flowlib.h>

#include <vector>

#include "png.h"
#include "table.h"

namespace cli {

// The viridis colour map at t in [0, 1].
Rgb colormap(double t);

// The square region [x0, x1] x [y0, y1] that holds 99% of the points, with a
// margin: the same view for every panel of one figure.
struct View {
    double x0, x1, y0, y1;
};
View view_of(const Table &points);

// A size x size heat map of p(x) = exp(log_prob) over the view; context is
// one row (or nullptr) used for every pixel.
Image density_panel(flow_model *m, const View &v, int size, const float *context);
// A 2-D histogram of the first two columns, drawn with the same colour map.
Image histogram_panel(const Table &points, const View &v, int size);

// Rows as images of `shape` ({H, W} grey, {1, H, W} grey or {3, H, W} colour)
// in a grid of `columns` (0: square-ish); pixel values scaled from [0, levels-1]
// when levels > 0, else from the rows' own range. Each image is drawn `zoom`
// times larger.
Image image_grid(const float *rows, size_t n, const std::vector<size_t> &shape, int levels,
                 int columns, int zoom);

// True when shape can be drawn as an image.
bool is_image_shape(const std::vector<size_t> &shape);

// Panels left to right with a margin, on a white background.
Image side_by_side(const std::vector<Image> &panels, int margin);

} // namespace cli
