// Small things every part of the flowlib program uses: the error type, number
// parsing with messages, whole-file I/O, and a seeded random permutation.
#pragma once

#include <flowlib.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace cli {

// Every failure is one of these; main() prints its text as one line.
struct Error : std::runtime_error {
    explicit Error(const std::string &what) : std::runtime_error(what) {}
};

[[noreturn]] void fail(const std::string &message);
// Throws with "what: <flow_last_error()>" unless s is FLOW_OK.
void check(flow_status s, const std::string &what);

// printf into a std::string.
std::string format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

bool ends_with(const std::string &s, const std::string &suffix);
// Lower-cased extension with the dot (".npy"), "" when there is none; a
// trailing ".gz" is skipped (".csv" for "a.csv.gz").
std::string extension(const std::string &path);
bool file_exists(const std::string &path);

// Parsing of option values; `what` names the option in the message.
long long parse_int(const std::string &text, const std::string &what, long long lo,
                    long long hi);
double parse_number(const std::string &text, const std::string &what);
// "1,2,3" -> {1,2,3}.
std::vector<long long> parse_int_list(const std::string &text, const std::string &what,
                                      long long lo, long long hi);
std::vector<float> parse_float_list(const std::string &text, const std::string &what);

// The whole file, or an error naming it and the system's reason.
std::string read_file(const std::string &path);
// Writes to path.tmp and renames, so a reader never sees half a file.
void write_file_atomic(const std::string &path, const void *data, size_t size);

// 1234567 -> "1.23M"; 93 -> "1m33s".
std::string human_count(double n);
std::string human_duration(double seconds);

double now_seconds();

// A small, fast, seeded generator (SplitMix64) for shuffles and splits.
struct Rng {
    uint64_t state;
    explicit Rng(uint64_t seed) : state(seed) {}
    uint64_t next();
    size_t below(size_t n); // uniform in [0, n)
};
// A random permutation of 0..n-1 that is a pure function of (seed, stream).
std::vector<size_t> permutation(size_t n, uint64_t seed, uint64_t stream);

} // namespace cli
