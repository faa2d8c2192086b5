// Branch-free float math for kernels of both backends (FLOW_HD): sqrt, log
// and sin/cos of a fraction of a turn, with no libm inside, so GCC vectorizes
// loops that use them (libflowlib is built with -fmath-errno, which keeps
// sqrtf and logf scalar) and a CUDA kernel runs the very same formula. Only
// +, -, *, exact conversions and bit moves: compiled without contraction into
// FMAs, every build gives the same bits.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#  define FLOW_HD __host__ __device__ __forceinline__
#else
#  define FLOW_HD inline
#endif

namespace flow {

FLOW_HD uint32_t float_as_uint(float f) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
#endif
}

FLOW_HD float uint_as_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
#endif
}

FLOW_HD uint64_t double_as_uint(double d) {
#if defined(__CUDA_ARCH__)
    return (uint64_t)__double_as_longlong(d);
#else
    uint64_t u;
    std::memcpy(&u, &d, sizeof u);
    return u;
#endif
}

FLOW_HD double uint_as_double(uint64_t u) {
#if defined(__CUDA_ARCH__)
    return __longlong_as_double((long long)u);
#else
    double d;
    std::memcpy(&d, &u, sizeof d);
    return d;
#endif
}

// sqrt(v) for v >= 0 (0 gives 0): the classic reciprocal square root guess
// and three Newton steps, relative error below 2e-7.
FLOW_HD float sqrt_newton(float v) {
    float y = uint_as_float(0x5f375a86u - (uint32_t)((int32_t)float_as_uint(v) >> 1));
    const float half = 0.5f * v;
    y = y * (1.5f - half * y * y);
    y = y * (1.5f - half * y * y);
    y = y * (1.5f - half * y * y);
    return v * y;
}

// Cephes' logf on a reduced argument: log(2^e (1 + f)) for 1 + f in
// [sqrt(1/2), sqrt(2)), ln 2 in two parts (the first exact in e * 0.693359375).
FLOW_HD float log_cephes_reduced(float f, float e) {
    const float z = f * f;
    float y = 7.0376836292e-2f;
    y = y * f - 1.1514610310e-1f;
    y = y * f + 1.1676998740e-1f;
    y = y * f - 1.2420140846e-1f;
    y = y * f + 1.4249322787e-1f;
    y = y * f - 1.6668057665e-1f;
    y = y * f + 2.0000714765e-1f;
    y = y * f - 2.4999993993e-1f;
    y = y * f + 3.3333331174e-1f;
    y = y * f * z;
    y += e * -2.12194440e-4f;
    y += -0.5f * z;
    return (f + y) + e * 0.693359375f;
}

// log(x) for a positive normal float, relative error below 1e-7 (~1.5 ulp).
// Subtracting the bits of
// sqrt(1/2) splits x into 2^e m with m in [sqrt(1/2), sqrt(2)) in integer
// arithmetic; m - 1 is exact, so the result is accurate near x = 1 too.
FLOW_HD float log_cephes(float x) {
    const uint32_t kSqrtHalf = 0x3f3504f3u;
    const uint32_t ix = float_as_uint(x) - kSqrtHalf;
    const int32_t e = (int32_t)ix >> 23; // arithmetic shift: negative below sqrt(1/2)
    const float m = uint_as_float((ix & 0x7fffffu) + kSqrtHalf);
    return log_cephes_reduced(m - 1.0f, (float)e);
}

// sin and cos of 2 pi i / 2^24 (i < 2^24, an angle in turns), relative error
// below 1.5e-7, exactly 0 and +-1 at the quarter turns. The reduction is
// exact: q, the nearest quarter turn, and the rest in [-2^21, 2^21) are
// integers; the rest becomes x in [-pi/4, pi/4) with one rounding, Cephes'
// sinf and cosf polynomials take x, and the quarter turn swaps and negates
// them.
FLOW_HD void sincos_turns24(uint32_t i, float *s, float *c) {
    const uint32_t shifted = i + (1u << 21);
    const uint32_t q = (shifted >> 22) & 3u;
    const int32_t rest = (int32_t)(shifted & 0x3fffffu) - (1 << 21);
    const float x = (float)rest * (6.28318530717958647692f / 16777216.0f);
    const float z = x * x;
    const float sx = ((-1.9515295891e-4f * z + 8.3321608736e-3f) * z - 1.6666654611e-1f) * z * x + x;
    const float cx = ((2.443315711809948e-5f * z - 1.388731625493765e-3f) * z +
                      4.166664568298827e-2f) * z * z - 0.5f * z + 1.0f;
    const float sin_q = (q & 1u) ? cx : sx, cos_q = (q & 1u) ? sx : cx;
    *s = (q & 2u) ? -sin_q : sin_q;        // quarters 2, 3
    *c = ((q + 1u) & 2u) ? -cos_q : cos_q; // quarters 1, 2
}

} // namespace flow
