// MNIST-style idx files (http://yann.lecun.com/exdb/mnist/), plain or
// gzip-compressed: magic 0 0 TYPE NDIM, NDIM big-endian uint32 sizes, data.
#pragma once

#include <string>

#include "table.h"

namespace cli {

// The first dimension is the rows; the others are the shape of one row
// (idx3 images of 28x28 give 784 columns with shape {28, 28}).
Table read_idx(const std::string &path);

// True when the file starts like an idx or a gzip file.
bool looks_like_idx(const std::string &path);

} // namespace cli
