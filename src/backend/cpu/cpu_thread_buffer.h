// Per-thread scratch of the CPU ops. A train step or an evaluation makes
// many small op calls; scratch taken from the heap on each would allocate on
// every call (tests/alloc/steady_state.c counts). thread_buffer<T, Slot>(n)
// is this thread's buffer number Slot of Ts, grown to the largest n asked
// for and kept for the thread's life; its contents do not survive to the
// next op. One buffer has one use at a time, so an op that calls another
// (small_gemm inside most) takes slots that one does not use:
//   float   0, 1  per-column values of an op (cpu_backend.cpp)
//   float   2     small_gemm's copy of op(B) (cpu_small_gemm.cpp)
//   float   3     a staircase weight-gradient panel (cpu_staircase.cpp)
//   float   4     the MADE MoG kernels' per-component arrays (cpu_kernels.cpp)
//   float   5     a narrow weight gradient's transpose (cpu_gemm.cpp)
//   double  0     partial sums (cpu_backend.cpp, cpu_glow.cpp)
//   double  1, 2  sums kept alongside them, a layer's host values
//   char    0     all_finite's per-chunk flags
//   KRun    0     the runs of a staircase panel (cpu_staircase.cpp)
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

namespace flow {

template <class T, unsigned Slot = 0> T *thread_buffer(size_t count) {
    thread_local std::vector<T> buffer;
    if (buffer.size() < count) buffer.resize(count);
    return buffer.data();
}

// count zeroed doubles for the partial sums of one op (double slot 0).
inline double *partial_sums(size_t count) {
    double *sums = thread_buffer<double>(count);
    std::fill(sums, sums + count, 0.0);
    return sums;
}

} // namespace flow
