#include "npy.h"

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common.h"

namespace cli {

namespace {

const char magic[] = "\x93NUMPY";

struct Header {
    char kind = 0;     // 'f', 'i', 'u', 'b'
    size_t size = 0;   // bytes per item
    bool swap = false; // stored big endian
    bool fortran = false;
    std::vector<size_t> shape;
};

// A tiny parser for the header: a Python dict literal such as
// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }
class DictParser {
public:
    DictParser(const std::string &text, const std::string &path) : s_(text), path_(path) {}

    Header parse() {
        Header h;
        bool have_descr = false, have_order = false, have_shape = false;
        skip();
        expect('{');
        for (;;) {
            skip();
            if (peek() == '}') break;
            std::string key = string();
            skip();
            expect(':');
            skip();
            if (key == "descr") {
                descr(string(), h);
                have_descr = true;
            } else if (key == "fortran_order") {
                h.fortran = boolean();
                have_order = true;
            } else if (key == "shape") {
                h.shape = tuple();
                have_shape = true;
            } else {
                bad("unknown header key '" + key + "'");
            }
            skip();
            if (peek() == ',') ++pos_;
            else if (peek() != '}') bad("expected ',' or '}' in the header");
        }
        if (!have_descr || !have_order || !have_shape)
            bad("header lacks 'descr', 'fortran_order' or 'shape'");
        return h;
    }

private:
    [[noreturn]] void bad(const std::string &what) { fail(path_ + ": not a valid .npy file: " + what); }
    char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
    void skip() {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n')) ++pos_;
    }
    void expect(char c) {
        if (peek() != c) bad(format("expected '%c' in the header", c));
        ++pos_;
    }
    std::string string() {
        char q = peek();
        if (q != '\'' && q != '"') bad("expected a quoted string in the header");
        size_t end = s_.find(q, pos_ + 1);
        if (end == std::string::npos) bad("unterminated string in the header");
        std::string v = s_.substr(pos_ + 1, end - pos_ - 1);
        pos_ = end + 1;
        return v;
    }
    bool boolean() {
        if (s_.compare(pos_, 4, "True") == 0) {
            pos_ += 4;
            return true;
        }
        if (s_.compare(pos_, 5, "False") == 0) {
            pos_ += 5;
            return false;
        }
        bad("fortran_order must be True or False");
    }
    std::vector<size_t> tuple() {
        std::vector<size_t> dims;
        expect('(');
        for (;;) {
            skip();
            if (peek() == ')') break;
            if (!std::isdigit((unsigned char)peek())) bad("shape must be a tuple of integers");
            uint64_t v = 0;
            while (std::isdigit((unsigned char)peek())) {
                if (v > (UINT64_MAX - 9) / 10) bad("a dimension of the shape is too large");
                v = v * 10 + (uint64_t)(s_[pos_++] - '0');
            }
            if (v > SIZE_MAX) bad("a dimension of the shape is too large");
            dims.push_back((size_t)v);
            if (dims.size() > 32) bad("more than 32 dimensions");
            skip();
            if (peek() == ',') ++pos_;
            else if (peek() != ')') bad("expected ',' or ')' in the shape");
        }
        ++pos_;
        return dims;
    }
    void descr(const std::string &d, Header &h) {
        if (d.size() < 3) bad("unsupported dtype '" + d + "'");
        char order = d[0];
        h.kind = d[1];
        std::string digits = d.substr(2);
        if (digits != "1" && digits != "2" && digits != "4" && digits != "8")
            bad("unsupported dtype '" + d + "'");
        h.size = (size_t)(digits[0] - '0');
        bool ok_kind = (h.kind == 'f' && (h.size == 4 || h.size == 8)) || h.kind == 'i' ||
                       h.kind == 'u' || (h.kind == 'b' && h.size == 1);
        if (!ok_kind)
            bad("unsupported dtype '" + d + "' (flowlib reads float32, float64, integers and bool)");
        if (order == '>') h.swap = h.size > 1;
        else if (order != '<' && order != '|' && order != '=') bad("unsupported dtype '" + d + "'");
    }

    const std::string &s_;
    const std::string &path_;
    size_t pos_ = 0;
};

double load_item(const unsigned char *p, const Header &h) {
    unsigned char b[8];
    for (size_t k = 0; k < h.size; ++k) b[k] = h.swap ? p[h.size - 1 - k] : p[k];
    switch (h.kind) {
    case 'f':
        if (h.size == 4) {
            float f;
            std::memcpy(&f, b, 4);
            return f;
        } else {
            double d;
            std::memcpy(&d, b, 8);
            return d;
        }
    case 'b':
    case 'u': {
        uint64_t v = 0;
        for (size_t k = h.size; k-- > 0;) v = (v << 8) | b[k];
        return (double)v;
    }
    default: { // 'i': sign-extend
        uint64_t v = 0;
        for (size_t k = h.size; k-- > 0;) v = (v << 8) | b[k];
        if (h.size < 8 && (v >> (8 * h.size - 1)) & 1) v |= ~0ull << (8 * h.size);
        int64_t s;
        std::memcpy(&s, &v, 8);
        return (double)s;
    }
    }
}

} // namespace

Table read_npy(const std::string &path) {
    std::string data = read_file(path);
    const std::string bad = path + ": not a valid .npy file: ";
    if (data.size() < 10 || data.compare(0, 6, magic, 6) != 0) fail(bad + "no \\x93NUMPY magic");
    unsigned major = (unsigned char)data[6];
    size_t header_len, header_start;
    if (major == 1) {
        header_len = (unsigned char)data[8] | (size_t)(unsigned char)data[9] << 8;
        header_start = 10;
    } else if (major == 2 || major == 3) {
        if (data.size() < 12) fail(bad + "truncated header");
        header_len = 0;
        for (int k = 3; k >= 0; --k) header_len = header_len << 8 | (unsigned char)data[8 + k];
        header_start = 12;
    } else {
        fail(bad + format("format version %u is not supported (1, 2 or 3)", major));
    }
    if (header_len > data.size() - header_start)
        fail(bad + format("the header claims %zu bytes, the file has %zu", header_len,
                          data.size() - header_start));
    std::string header_text = data.substr(header_start, header_len);
    Header h = DictParser(header_text, path).parse();
    if (h.fortran) fail(path + ": Fortran-order arrays are not supported (save with np.ascontiguousarray)");
    if (h.shape.empty()) fail(path + ": a 0-dimensional array holds no rows");

    size_t rows = h.shape[0], cols = 1;
    for (size_t k = 1; k < h.shape.size(); ++k) {
        if (h.shape[k] != 0 && cols > SIZE_MAX / h.shape[k]) fail(bad + "the shape is too large");
        cols *= h.shape[k];
    }
    if (rows == 0 || cols == 0) fail(path + ": the array is empty (shape has a 0)");
    size_t offset = header_start + header_len;
    size_t avail = data.size() - offset;
    if (cols > SIZE_MAX / h.size || rows > SIZE_MAX / (cols * h.size) ||
        rows * cols * h.size != avail)
        fail(bad + format("the shape needs %s bytes of data, the file has %zu",
                          rows > SIZE_MAX / (cols * h.size) ? "more than 2^64"
                                                            : std::to_string(rows * cols * h.size).c_str(),
                          avail));

    Table t;
    t.rows = rows;
    t.cols = cols;
    t.shape.assign(h.shape.begin() + 1, h.shape.end());
    if (t.shape.empty()) t.shape = {1};
    t.integer = h.kind != 'f';
    if (h.kind == 'u' && h.size == 1) t.levels = 256;
    t.values.resize(rows * cols);
    const unsigned char *p = (const unsigned char *)data.data() + offset;
    for (size_t k = 0; k < rows * cols; ++k) {
        double v = load_item(p + k * h.size, h);
        if (!std::isfinite(v))
            fail(path + format(": row %zu, column %zu is not a finite number", k / cols, k % cols));
        t.values[k] = (float)v;
    }
    return t;
}

void write_npy(const std::string &path, const Table &t) {
    std::string dict = format("{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %zu), }",
                              t.rows, t.cols);
    // Pad with spaces so that the data start on a 64-byte boundary.
    size_t total = 10 + dict.size() + 1;
    dict.append((64 - total % 64) % 64, ' ');
    dict += '\n';
    std::string out(magic, 6);
    out += '\x01';
    out += '\x00';
    out += (char)(dict.size() & 0xff);
    out += (char)(dict.size() >> 8);
    out += dict;
    static_assert(sizeof(float) == 4, "float32");
    out.append((const char *)t.values.data(), t.values.size() * sizeof(float)); // little endian
    write_file_atomic(path, out.data(), out.size());
}

} // namespace cli
