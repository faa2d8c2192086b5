#include "idx.h"

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include <zlib.h>

#include "common.h"

namespace cli {

namespace {

// gzread reads plain files too, so one reader serves both.
class GzFile {
public:
    explicit GzFile(const std::string &path) : path_(path) {
        f_ = gzopen(path.c_str(), "rb");
        if (!f_) fail(path + ": " + (errno ? std::strerror(errno) : "cannot open"));
    }
    ~GzFile() {
        if (f_) gzclose(f_);
    }
    GzFile(const GzFile &) = delete;
    GzFile &operator=(const GzFile &) = delete;

    // Reads up to n bytes; fewer only at the end of the data.
    size_t read(void *buf, size_t n) {
        size_t total = 0;
        while (total < n) {
            unsigned chunk = (unsigned)std::min<size_t>(n - total, 1u << 30);
            int got = gzread(f_, (char *)buf + total, chunk);
            // A short read is the end of the data, or a damaged gzip stream.
            int code = Z_OK;
            const char *msg = gzerror(f_, &code);
            if (got < 0 || (code != Z_OK && code != Z_STREAM_END))
                fail(path_ + ": " + (code == Z_ERRNO ? std::strerror(errno) : strip_path(msg)) +
                     (code == Z_BUF_ERROR ? " (the gzip file is truncated)" : " (corrupt gzip data)"));
            if (got == 0) break;
            total += (size_t)got;
        }
        return total;
    }

private:
    // gzerror's message may start with "path: ".
    std::string strip_path(const char *msg) const {
        std::string m = msg ? msg : "gzip error";
        return m.compare(0, path_.size() + 2, path_ + ": ") == 0 ? m.substr(path_.size() + 2) : m;
    }
    std::string path_;
    gzFile f_ = nullptr;
};

size_t type_size(unsigned type) {
    switch (type) {
    case 0x08: case 0x09: return 1; // unsigned / signed byte
    case 0x0B: return 2;            // short
    case 0x0C: return 4;            // int
    case 0x0D: return 4;            // float
    case 0x0E: return 8;            // double
    default: return 0;
    }
}

double decode(const unsigned char *p, unsigned type) {
    switch (type) {
    case 0x08: return p[0];
    case 0x09: return (int8_t)p[0];
    case 0x0B: return (int16_t)(uint16_t)(p[0] << 8 | p[1]);
    case 0x0C: return (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
    case 0x0D: {
        uint32_t u = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        float f;
        std::memcpy(&f, &u, 4);
        return f;
    }
    default: {
        uint64_t u = 0;
        for (int k = 0; k < 8; ++k) u = u << 8 | p[k];
        double d;
        std::memcpy(&d, &u, 8);
        return d;
    }
    }
}

} // namespace

bool looks_like_idx(const std::string &path) {
    FILE *f = std::fopen(path.c_str(), "rb");
    if (!f) return false;
    unsigned char b[4] = {1, 1, 1, 1};
    size_t got = std::fread(b, 1, 4, f);
    std::fclose(f);
    if (got >= 2 && b[0] == 0x1f && b[1] == 0x8b) return true; // gzip
    return got == 4 && b[0] == 0 && b[1] == 0 && type_size(b[2]) != 0;
}

Table read_idx(const std::string &path) {
    GzFile f(path);
    const std::string bad = path + ": not a valid idx file: ";
    unsigned char head[4];
    if (f.read(head, 4) != 4) fail(bad + "shorter than its 4-byte magic");
    if (head[0] != 0 || head[1] != 0) fail(bad + "the magic does not start with two zero bytes");
    unsigned type = head[2], ndim = head[3];
    size_t item = type_size(type);
    if (!item) fail(bad + format("unknown data type 0x%02X", type));
    if (ndim < 1 || ndim > 8) fail(bad + format("%u dimensions (1..8 supported)", ndim));

    std::vector<size_t> dims(ndim);
    for (unsigned k = 0; k < ndim; ++k) {
        unsigned char b[4];
        if (f.read(b, 4) != 4) fail(bad + "truncated in the dimension sizes");
        dims[k] = (size_t)b[0] << 24 | (size_t)b[1] << 16 | (size_t)b[2] << 8 | b[3];
        if (dims[k] == 0) fail(bad + format("dimension %u has size 0", k + 1));
    }
    size_t rows = dims[0], cols = 1;
    for (unsigned k = 1; k < ndim; ++k) {
        if (cols > ((size_t)1 << 40) / dims[k]) fail(bad + "a row is unreasonably large");
        cols *= dims[k];
    }
    if (rows > ((size_t)1 << 40) / cols) fail(bad + "the data are unreasonably large");
    size_t count = rows * cols;

    // Read in pieces: a header that lies about the size costs no memory
    // before the data run out.
    Table t;
    t.rows = rows;
    t.cols = cols;
    t.shape.assign(dims.begin() + 1, dims.end());
    if (t.shape.empty()) t.shape = {1};
    t.integer = type != 0x0D && type != 0x0E;
    if (type == 0x08) t.levels = 256;
    std::vector<unsigned char> buf(1 << 20);
    size_t done = 0;
    while (done < count) {
        size_t want = std::min(count - done, buf.size() / item);
        size_t got = f.read(buf.data(), want * item);
        if (got != want * item)
            fail(bad + format("truncated: the header promises %zu values, the file holds %zu", count,
                              done + got / item));
        for (size_t k = 0; k < want; ++k) {
            double v = decode(buf.data() + k * item, type);
            if (!std::isfinite(v)) fail(path + format(": value %zu is not finite", done + k));
            t.values.push_back((float)v);
        }
        done += want;
    }
    unsigned char extra;
    if (f.read(&extra, 1) != 0) fail(bad + "data continue past the size the header gives");
    return t;
}

} // namespace cli
