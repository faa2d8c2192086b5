// The figure of a trained model: for 2-D data the learned density as a heat
// map between the data and samples; for images a grid of samples beside a
// grid of training images.
#pragma once

#include <flowlib.h>

#include <cstdint>
#include <string>

#include "data.h"
#include "model_io.h"

namespace cli {

struct FigureOptions {
    size_t samples = 0;   // 0: 20000 points (2-D) or 64 images
    float temperature = 1.0f;
    uint64_t seed = 0;
    int size = 320;       // pixels per 2-D panel
    int zoom = 2;         // image magnification
};

// data may be null (the data panel is left out). Returns a one-line
// description of what was drawn.
std::string write_figure(flow_model *m, const Sidecar &info, const Dataset *data,
                         const FigureOptions &opt, const std::string &path);

} // namespace cli
