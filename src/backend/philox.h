// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
// 3", SC'11). Counter based: the value for element i of stream s under key k
// is a pure function of (k, s, i), so every backend and thread count draws the
// same numbers. Header-only and free of host-only code so CUDA kernels can
// include it.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#  define FLOW_HD __host__ __device__ __forceinline__
#else
#  define FLOW_HD inline
#endif

namespace flow {

struct PhiloxBlock {
    uint32_t v[4];
};

FLOW_HD uint32_t philox_mulhilo(uint32_t a, uint32_t b, uint32_t *hi) {
    uint64_t p = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

// One 128-bit block of randomness for (key = seed, counter = {index, stream}).
FLOW_HD PhiloxBlock philox4x32_10(uint64_t seed, uint64_t stream, uint64_t index) {
    uint32_t c0 = (uint32_t)index, c1 = (uint32_t)(index >> 32);
    uint32_t c2 = (uint32_t)stream, c3 = (uint32_t)(stream >> 32);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; ++round) {
        uint32_t hi0, hi1;
        uint32_t lo0 = philox_mulhilo(0xD2511F53u, c0, &hi0);
        uint32_t lo1 = philox_mulhilo(0xCD9E8D57u, c2, &hi1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    PhiloxBlock b = {{c0, c1, c2, c3}};
    return b;
}

// Uniform in the open interval (0, 1) from 32 random bits. 23 are used: the
// half-step offset takes a 24th mantissa bit, so the value is exact in float
// and never 0 or 1 (with 24 bits, 2^24 - 0.5 would round up to exactly 1).
FLOW_HD float philox_uniform_open(uint32_t bits) {
    return ((float)(bits >> 9) + 0.5f) * (1.0f / 8388608.0f);
}

// Uniform in [0, 1) (never 1).
FLOW_HD float philox_uniform(uint32_t bits) {
    return (float)(bits >> 8) * (1.0f / 16777216.0f);
}

// Standard normal by Box-Muller from one block (two of its words), computed in
// double so host and device agree to the last bit on the rounding of float.
FLOW_HD float philox_normal(PhiloxBlock b) {
    double u1 = ((double)(b.v[0] >> 8) + 0.5) * (1.0 / 16777216.0);
    double u2 = (double)(b.v[1] >> 8) * (1.0 / 16777216.0);
    const double two_pi = 6.283185307179586476925286766559;
    return (float)(sqrt(-2.0 * log(u1)) * cos(two_pi * u2));
}

} // namespace flow
