#include "plot.h"

#include <algorithm>
#include <cmath>

#include "common.h"
#include "model_io.h"

namespace cli {

Rgb colormap(double t) {
    // viridis at t = 0, 1/8, ..., 1
    static const double stops[9][3] = {{68, 1, 84},    {71, 44, 122},  {59, 81, 139},
                                       {44, 113, 142}, {33, 144, 141}, {39, 173, 129},
                                       {92, 200, 99},  {170, 220, 50}, {253, 231, 37}};
    if (!(t > 0)) t = 0; // NaN too
    if (t > 1) t = 1;
    double f = t * 8;
    int k = std::min(7, (int)f);
    f -= k;
    Rgb c;
    c.r = (uint8_t)std::lround(stops[k][0] + f * (stops[k + 1][0] - stops[k][0]));
    c.g = (uint8_t)std::lround(stops[k][1] + f * (stops[k + 1][1] - stops[k][1]));
    c.b = (uint8_t)std::lround(stops[k][2] + f * (stops[k + 1][2] - stops[k][2]));
    return c;
}

static double quantile(std::vector<float> v, double q) {
    size_t k = (size_t)(q * (double)(v.size() - 1));
    std::nth_element(v.begin(), v.begin() + (long)k, v.end());
    return v[k];
}

View view_of(const Table &points) {
    std::vector<float> xs(points.rows), ys(points.rows);
    for (size_t r = 0; r < points.rows; ++r) {
        xs[r] = points.values[r * points.cols];
        ys[r] = points.values[r * points.cols + 1];
    }
    double x0 = quantile(xs, 0.005), x1 = quantile(xs, 0.995);
    double y0 = quantile(ys, 0.005), y1 = quantile(ys, 0.995);
    double cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
    double half = 0.6 * std::max({x1 - x0, y1 - y0, 1e-6});
    return {cx - half, cx + half, cy - half, cy + half};
}

Image density_panel(flow_model *m, const View &v, int size, const float *context) {
    size_t n = (size_t)size * size, cdim = flow_model_context_dim(m);
    std::vector<float> grid(2 * n), lp(n), ctx;
    for (int py = 0; py < size; ++py)
        for (int px = 0; px < size; ++px) {
            size_t k = (size_t)py * size + px;
            grid[2 * k] = (float)(v.x0 + (px + 0.5) * (v.x1 - v.x0) / size);
            grid[2 * k + 1] = (float)(v.y1 - (py + 0.5) * (v.y1 - v.y0) / size); // y up
        }
    if (cdim) {
        ctx.resize(n * cdim);
        for (size_t k = 0; k < n; ++k) std::copy(context, context + cdim, ctx.begin() + (long)(k * cdim));
    }
    check(flow_log_prob(m, grid.data(), cdim ? ctx.data() : nullptr, n, lp.data()), "density");
    double top = -INFINITY;
    for (float l : lp)
        if (std::isfinite(l)) top = std::max(top, (double)l);
    Image img(size, size, {0, 0, 0});
    for (int py = 0; py < size; ++py)
        for (int px = 0; px < size; ++px)
            img.set(px, py, colormap(std::exp(lp[(size_t)py * size + px] - top)));
    return img;
}

Image histogram_panel(const Table &points, const View &v, int size) {
    int bins = size / 2;
    std::vector<double> h((size_t)bins * bins, 0.0);
    for (size_t r = 0; r < points.rows; ++r) {
        double x = points.values[r * points.cols], y = points.values[r * points.cols + 1];
        int bx = (int)std::floor((x - v.x0) / (v.x1 - v.x0) * bins);
        int by = (int)std::floor((v.y1 - y) / (v.y1 - v.y0) * bins);
        if (bx >= 0 && by >= 0 && bx < bins && by < bins) h[(size_t)by * bins + bx] += 1;
    }
    double top = *std::max_element(h.begin(), h.end());
    Image img(size, size, {0, 0, 0});
    for (int py = 0; py < size; ++py)
        for (int px = 0; px < size; ++px) {
            double c = h[(size_t)(py * bins / size) * bins + (size_t)(px * bins / size)];
            img.set(px, py, colormap(top > 0 ? std::sqrt(c / top) : 0));
        }
    return img;
}

bool is_image_shape(const std::vector<size_t> &s) {
    return s.size() == 2 || (s.size() == 3 && (s[0] == 1 || s[0] == 3));
}

Image image_grid(const float *rows, size_t n, const std::vector<size_t> &shape, int levels,
                 int columns, int zoom) {
    if (!is_image_shape(shape))
        fail("rows of shape " + shape_string(shape) + " are not images (give --shape HxW)");
    size_t channels = shape.size() == 3 ? shape[0] : 1;
    int h = (int)shape[shape.size() - 2], w = (int)shape[shape.size() - 1];
    size_t dim = channels * (size_t)h * (size_t)w;
    double lo = 0, hi = levels > 0 ? levels - 1 : 1;
    if (levels <= 0) {
        lo = INFINITY;
        hi = -INFINITY;
        for (size_t k = 0; k < n * dim; ++k) {
            lo = std::min(lo, (double)rows[k]);
            hi = std::max(hi, (double)rows[k]);
        }
        if (lo >= 0 && hi <= 1) lo = 0, hi = 1; // already [0, 1] images
        if (!(hi > lo)) hi = lo + 1;
    }
    int cols = columns > 0 ? columns : (int)std::ceil(std::sqrt((double)n));
    int grid_rows = (int)((n + (size_t)cols - 1) / (size_t)cols);
    int gap = 2, cw = w * zoom, ch = h * zoom;
    Image img(gap + cols * (cw + gap), gap + grid_rows * (ch + gap), {128, 128, 128});
    for (size_t i = 0; i < n; ++i) {
        int gx = gap + (int)(i % (size_t)cols) * (cw + gap), gy = gap + (int)(i / (size_t)cols) * (ch + gap);
        const float *px = rows + i * dim;
        for (int y = 0; y < ch; ++y)
            for (int x = 0; x < cw; ++x) {
                size_t at = (size_t)(y / zoom) * w + (size_t)(x / zoom);
                uint8_t c[3];
                for (size_t k = 0; k < 3; ++k) {
                    double v = px[(channels == 3 ? k : 0) * (size_t)h * w + at];
                    double t = std::clamp((v - lo) / (hi - lo), 0.0, 1.0);
                    c[k] = (uint8_t)std::lround(255 * t);
                }
                img.set(gx + x, gy + y, {c[0], c[1], c[2]});
            }
    }
    return img;
}

Image side_by_side(const std::vector<Image> &panels, int margin) {
    int w = margin, h = 0;
    for (const Image &p : panels) {
        w += p.width + margin;
        h = std::max(h, p.height);
    }
    Image out(w, h + 2 * margin, {255, 255, 255});
    int x = margin;
    for (const Image &p : panels) {
        out.paste(p, x, margin + (h - p.height) / 2);
        x += p.width + margin;
    }
    return out;
}

} // namespace cli
