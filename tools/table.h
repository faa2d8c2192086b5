// A table of float rows: what every data reader returns and every writer
// takes.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace cli {

struct Table {
    size_t rows = 0, cols = 0;
    std::vector<float> values;      // [rows, cols], row-major
    std::vector<std::string> names; // column names (CSV header), or empty
    std::vector<size_t> shape;      // shape of one row (e.g. {28, 28}); empty = {cols}
    bool integer = false;           // every value is an integer
    int levels = 0;                 // 256 for uint8 storage (images): discrete data
};

} // namespace cli
