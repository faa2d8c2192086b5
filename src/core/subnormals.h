// Subnormal floats flushed to zero while flowlib computes (x86's MXCSR flags
// FTZ: results that would be subnormal become 0, and DAZ: subnormal inputs
// read as 0), as TensorFlow's CPU threads run. On Intel cores every
// operation with a subnormal input or result takes a microcode assist of
// about a hundred cycles: a small MADE MoG train step, whose mixture
// gradients underflow as it trains, took 0.8-1.25 ms instead of 0.36-0.57
// ms on a Xeon (Emerald Rapids), and its rounds swung by 2x. Values this
// small (below 1.2e-38) change no result that matters.
//
// The mode belongs to the thread, so a guard sets it for its scope and
// puts the caller's back: the C API holds one for every call, and each
// OpenMP parallel region one per thread, since a pool thread keeps its mode
// after the region into the caller's other OpenMP code.
#pragma once

#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

namespace flow {

class FlushSubnormals {
public:
#if defined(__SSE2__)
    FlushSubnormals() : saved_(_mm_getcsr()) {
        _mm_setcsr(saved_ | kFlushToZero | kDenormalsAreZero);
    }
    ~FlushSubnormals() { _mm_setcsr(saved_); }
#else
    FlushSubnormals() {}
#endif
    FlushSubnormals(const FlushSubnormals &) = delete;
    FlushSubnormals &operator=(const FlushSubnormals &) = delete;

private:
#if defined(__SSE2__)
    static constexpr unsigned kFlushToZero = 0x8000, kDenormalsAreZero = 0x0040;
    unsigned saved_;
#endif
};

} // namespace flow
