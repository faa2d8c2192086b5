// NumPy .npy files (format versions 1, 2 and 3): C-order arrays of float32,
// float64 or (un)signed integers of 1..8 bytes, either byte order.
#pragma once

#include <string>

#include "table.h"

namespace cli {

// An array of shape (n,) becomes n rows of 1 column; (n, d1, d2, ...) becomes
// n rows of d1*d2*... columns with shape {d1, d2, ...}.
Table read_npy(const std::string &path);
// Writes float32, shape (rows, cols), format version 1.0.
void write_npy(const std::string &path, const Table &t);

} // namespace cli
