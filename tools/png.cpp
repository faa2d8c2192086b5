#include "png.h"

#include <zlib.h>

#include "common.h"

namespace cli {

Image::Image(int w, int h, Rgb fill) : width(w), height(h), pixels((size_t)w * h * 3) {
    for (size_t k = 0; k < (size_t)w * h; ++k) {
        pixels[3 * k] = fill.r;
        pixels[3 * k + 1] = fill.g;
        pixels[3 * k + 2] = fill.b;
    }
}

void Image::set(int x, int y, Rgb c) {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    uint8_t *p = &pixels[((size_t)y * width + x) * 3];
    p[0] = c.r;
    p[1] = c.g;
    p[2] = c.b;
}

Rgb Image::get(int x, int y) const {
    const uint8_t *p = &pixels[((size_t)y * width + x) * 3];
    return {p[0], p[1], p[2]};
}

void Image::paste(const Image &src, int x0, int y0) {
    for (int y = 0; y < src.height; ++y)
        for (int x = 0; x < src.width; ++x) set(x0 + x, y0 + y, src.get(x, y));
}

namespace {

void put_u32(std::string &out, uint32_t v) {
    out += (char)(v >> 24);
    out += (char)(v >> 16);
    out += (char)(v >> 8);
    out += (char)v;
}

// length, type, data, CRC of type + data.
void chunk(std::string &out, const char type[4], const std::string &data) {
    put_u32(out, (uint32_t)data.size());
    std::string body(type, 4);
    body += data;
    out += body;
    put_u32(out, (uint32_t)crc32(0L, (const Bytef *)body.data(), (uInt)body.size()));
}

} // namespace

void write_png(const std::string &path, const Image &img) {
    if (img.width <= 0 || img.height <= 0) fail(path + ": cannot write an empty image");
    // Each scanline: filter type 0 (none), then RGB bytes.
    size_t stride = (size_t)img.width * 3;
    std::string raw;
    raw.reserve((stride + 1) * img.height);
    for (int y = 0; y < img.height; ++y) {
        raw += '\0';
        raw.append((const char *)&img.pixels[y * stride], stride);
    }
    uLongf zlen = compressBound((uLong)raw.size());
    std::string z(zlen, '\0');
    if (compress2((Bytef *)&z[0], &zlen, (const Bytef *)raw.data(), (uLong)raw.size(), 6) != Z_OK)
        fail(path + ": zlib could not compress the image");
    z.resize(zlen);

    std::string ihdr;
    put_u32(ihdr, (uint32_t)img.width);
    put_u32(ihdr, (uint32_t)img.height);
    ihdr += '\x08'; // bit depth
    ihdr += '\x02'; // colour type: RGB
    ihdr += '\0';   // compression
    ihdr += '\0';   // filter
    ihdr += '\0';   // no interlace

    std::string out("\x89PNG\r\n\x1a\n", 8);
    chunk(out, "IHDR", ihdr);
    chunk(out, "IDAT", z);
    chunk(out, "IEND", "");
    write_file_atomic(path, out.data(), out.size());
}

} // namespace cli
