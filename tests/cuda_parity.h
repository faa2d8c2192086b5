// Harness of the CPU-vs-CUDA parity suites (tests/test_cuda_*.cpp): the same
// host data goes to a tensor on each backend, the op runs on both, and the
// results are compared with a normalized error,
//     err = max_i |cuda_i - cpu_i| / (1 + |cpu_i|),
// against a bound each test states.
//
// The suites run twice under ctest: against the real module (a GPU machine)
// and against the emulated one (FLOWLIB_CUDA_MODULE names it; it runs the
// same kernel sources on the host). Where no CUDA device is available the
// suite exits 77, which ctest reports as skipped, with the reason printed.
// The check runs in a child process, so the parent (which Criterion forks
// per test) never initializes CUDA.
#pragma once

#include <criterion/criterion.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/device.h"
#include "core/error.h"

namespace parity {

using flow::Backend;
using flow::Tensor;
using Vec = std::vector<float>;

inline Backend &cpu() { return flow::cpu_backend(); }
inline Backend &gpu() { return flow::backend_for(flow::DeviceKind::cuda); }

// One tensor per backend holding the same values.
struct Pair {
    Tensor cpu, gpu;
};

inline Pair pair(std::vector<size_t> shape, const Vec &data) {
    Pair p{Tensor(parity::cpu(), shape), Tensor(parity::gpu(), shape)};
    cr_assert_eq(data.size(), p.cpu.size(), "test bug: %zu values for %zu elements",
                 data.size(), p.cpu.size());
    parity::cpu().upload(p.cpu, data.data());
    parity::gpu().upload(p.gpu, data.data());
    return p;
}

inline Vec random_vec(size_t n, unsigned seed, float lo = -1.0f, float hi = 1.0f) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> dist(lo, hi);
    Vec v(n);
    for (float &x : v) x = dist(gen);
    return v;
}

inline Pair random_pair(std::vector<size_t> shape, unsigned seed, float lo = -1.0f,
                        float hi = 1.0f) {
    return pair(shape, random_vec(flow::shape_size(shape), seed, lo, hi));
}

inline Pair filled_pair(std::vector<size_t> shape, float value) {
    return pair(shape, Vec(flow::shape_size(shape), value));
}

// An i32 tensor (gather indices) on both backends.
inline Pair index_pair(const std::vector<int32_t> &index) {
    std::vector<size_t> shape{index.size()};
    Pair p{Tensor(parity::cpu(), shape, flow::DType::i32),
           Tensor(parity::gpu(), shape, flow::DType::i32)};
    parity::cpu().upload(p.cpu, index.data());
    parity::gpu().upload(p.gpu, index.data());
    return p;
}

inline Vec values(const Tensor &t) {
    Vec v(t.size());
    t.backend().download(t, v.data());
    return v;
}

inline double normalized_error(const Vec &cpu, const Vec &gpu) {
    double err = 0;
    for (size_t i = 0; i < cpu.size(); ++i) {
        const double e = std::fabs((double)gpu[i] - cpu[i]) / (1.0 + std::fabs(cpu[i]));
        if (!(e <= err)) err = e; // NaN on either side is an error
    }
    return err;
}

// Fails the test when the two halves of p differ by more than bound.
inline void expect_close(const Pair &p, double bound, const char *what) {
    const Vec c = values(p.cpu), g = values(p.gpu);
    const double err = normalized_error(c, g);
    cr_expect(err <= bound, "%s: normalized error %.3g > %.3g", what, err, bound);
}

inline void expect_close(double cpu, double gpu, double bound, const char *what) {
    const double err = std::fabs(gpu - cpu) / (1.0 + std::fabs(cpu));
    cr_expect(err <= bound, "%s: cpu %.17g cuda %.17g (normalized error %.3g > %.3g)", what,
              cpu, gpu, err, bound);
}

enum class Availability { yes, no, check_failed };

// Whether a CUDA device is available, asked in a child process; why not in
// `why`.
inline Availability cuda_available(std::string &why) {
    int fd[2];
    if (pipe(fd) != 0) {
        why = "pipe failed";
        return Availability::check_failed;
    }
    const pid_t child = fork();
    if (child == 0) {
        close(fd[0]);
        std::string reason;
        try {
            flow::backend_for(flow::DeviceKind::cuda);
        } catch (const flow::Error &e) {
            reason = e.what();
        }
        const char ok = reason.empty() ? '1' : '0';
        if (write(fd[1], &ok, 1) != 1 ||
            write(fd[1], reason.data(), reason.size()) != (ssize_t)reason.size())
            _exit(1);
        _exit(0);
    }
    close(fd[1]);
    char buf[1024];
    std::string out;
    ssize_t got;
    while ((got = read(fd[0], buf, sizeof buf)) > 0) out.append(buf, (size_t)got);
    close(fd[0]);
    int status = 0;
    waitpid(child, &status, 0);
    if (out.empty() || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        why = "the device check crashed";
        return Availability::check_failed;
    }
    why = out.substr(1);
    return out[0] == '1' ? Availability::yes : Availability::no;
}

} // namespace parity

// The suite's main: skipped (exit 77) without a device, Criterion otherwise.
int main(int argc, char *argv[]) {
    std::string why;
    switch (parity::cuda_available(why)) {
    case parity::Availability::yes: break;
    case parity::Availability::no:
        std::printf("SKIPPED: no CUDA device for the parity suite: %s\n", why.c_str());
        return 77;
    case parity::Availability::check_failed:
        std::printf("FAILED: %s\n", why.c_str());
        return 1;
    }
    struct criterion_test_set *tests = criterion_initialize();
    int result = 0;
    if (criterion_handle_args(argc, argv, true)) result = !criterion_run_all_tests(tests);
    criterion_finalize(tests);
    return result;
}
