// An RGB image in memory and a PNG writer (8-bit RGB, zlib from the system,
// chunk framing and CRCs here).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cli {

struct Rgb {
    uint8_t r, g, b;
};

struct Image {
    int width = 0, height = 0;
    std::vector<uint8_t> pixels; // [height, width, 3]

    Image() = default;
    Image(int w, int h, Rgb fill);
    void set(int x, int y, Rgb c); // ignores pixels outside the image
    Rgb get(int x, int y) const;
    // Copies src with its top-left corner at (x, y), clipped.
    void paste(const Image &src, int x, int y);
};

void write_png(const std::string &path, const Image &img);

} // namespace cli
