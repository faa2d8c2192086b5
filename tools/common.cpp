#include "common.h"

#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include <sys/stat.h>

namespace cli {

void fail(const std::string &message) { throw Error(message); }

void check(flow_status s, const std::string &what) {
    if (s != FLOW_OK) fail(what + ": " + flow_last_error());
}

std::string format(const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = std::vsnprintf(nullptr, 0, fmt, ap);
    va_end(ap);
    std::string s(n > 0 ? (size_t)n : 0, '\0');
    if (n > 0) std::vsnprintf(&s[0], (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return s;
}

bool ends_with(const std::string &s, const std::string &suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string extension(const std::string &path) {
    std::string p = path;
    for (char &c : p) c = (char)std::tolower((unsigned char)c);
    if (ends_with(p, ".gz")) p.resize(p.size() - 3);
    size_t slash = p.find_last_of('/');
    size_t dot = p.find_last_of('.');
    if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
    return p.substr(dot);
}

bool file_exists(const std::string &path) {
    struct stat st;
    return stat(path.c_str(), &st) == 0;
}

long long parse_int(const std::string &text, const std::string &what, long long lo, long long hi) {
    errno = 0;
    char *end = nullptr;
    long long v = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno == ERANGE)
        fail(what + ": \"" + text + "\" is not an integer");
    if (v < lo || v > hi) fail(what + format(": %lld is out of range (%lld..%lld)", v, lo, hi));
    return v;
}

double parse_number(const std::string &text, const std::string &what) {
    errno = 0;
    char *end = nullptr;
    double v = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v))
        fail(what + ": \"" + text + "\" is not a finite number");
    return v;
}

static std::vector<std::string> split_commas(const std::string &text) {
    std::vector<std::string> parts;
    size_t start = 0;
    for (;;) {
        size_t comma = text.find(',', start);
        parts.push_back(text.substr(start, comma - start));
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return parts;
}

std::vector<long long> parse_int_list(const std::string &text, const std::string &what,
                                      long long lo, long long hi) {
    std::vector<long long> out;
    for (const std::string &p : split_commas(text)) out.push_back(parse_int(p, what, lo, hi));
    return out;
}

std::vector<float> parse_float_list(const std::string &text, const std::string &what) {
    std::vector<float> out;
    for (const std::string &p : split_commas(text)) out.push_back((float)parse_number(p, what));
    return out;
}

std::string read_file(const std::string &path) {
    FILE *f = std::fopen(path.c_str(), "rb");
    if (!f) fail(path + ": " + std::strerror(errno));
    std::string data;
    char buf[1 << 16];
    size_t got;
    while ((got = std::fread(buf, 1, sizeof buf, f)) > 0) data.append(buf, got);
    bool bad = std::ferror(f);
    int err = errno;
    std::fclose(f);
    if (bad) fail(path + ": read error: " + std::strerror(err));
    return data;
}

void write_file_atomic(const std::string &path, const void *data, size_t size) {
    std::string tmp = path + ".tmp";
    FILE *f = std::fopen(tmp.c_str(), "wb");
    if (!f) fail(path + ": cannot write: " + std::strerror(errno));
    bool ok = std::fwrite(data, 1, size, f) == size;
    int err = errno;
    if (std::fclose(f) != 0 && ok) {
        ok = false;
        err = errno;
    }
    if (!ok) {
        std::remove(tmp.c_str());
        fail(path + ": write failed: " + std::strerror(err));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        err = errno;
        std::remove(tmp.c_str());
        fail(path + ": cannot rename the temporary file into place: " + std::strerror(err));
    }
}

std::string human_count(double n) {
    if (n >= 1e9) return format("%.2fG", n / 1e9);
    if (n >= 1e6) return format("%.2fM", n / 1e6);
    if (n >= 1e4) return format("%.1fk", n / 1e3);
    return format("%.0f", n);
}

std::string human_duration(double s) {
    if (!std::isfinite(s) || s < 0) return "?";
    long t = (long)(s + 0.5);
    if (t < 60) return format("%lds", t);
    if (t < 3600) return format("%ldm%02lds", t / 60, t % 60);
    return format("%ldh%02ldm", t / 3600, (t / 60) % 60);
}

double now_seconds() {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

uint64_t Rng::next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

size_t Rng::below(size_t n) {
    // Lemire's multiply-shift; the tiny bias is irrelevant for shuffles.
    return (size_t)(((unsigned __int128)next() * n) >> 64);
}

std::vector<size_t> permutation(size_t n, uint64_t seed, uint64_t stream) {
    Rng rng(seed * 0xD1B54A32D192ED03ull ^ (stream + 0x8CB92BA72F3D8DD7ull));
    rng.next();
    std::vector<size_t> p(n);
    for (size_t i = 0; i < n; ++i) p[i] = i;
    for (size_t i = n; i > 1; --i) std::swap(p[i - 1], p[rng.below(i)]);
    return p;
}

} // namespace cli
