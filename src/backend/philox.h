// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
// 3", SC'11). Counter based: the value for element i of stream s under key k
// is a pure function of (k, s, i), so every backend and thread count draws the
// same numbers. Header-only and free of host-only code so CUDA kernels can
// include it.
#pragma once

#include <cstdint>

#include "backend/float_math.h"

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

// Box-Muller: r cos and r sin of one angle are two independent standard
// normals, r = sqrt(-2 log u) with u in (0, 1) from radius_bits and the angle
// from the top 24 bits of angle_bits. |z| stays below 5.8 (u >= 2^-24).
FLOW_HD void philox_box_muller(uint32_t radius_bits, uint32_t angle_bits, float *z_cos,
                               float *z_sin) {
    const float r = sqrt_newton(-2.0f * log_cephes(philox_uniform_open(radius_bits)));
    float s, c;
    sincos_turns24(angle_bits >> 8, &s, &c);
    *z_cos = r * c;
    *z_sin = r * s;
}

// Four standard normals from one block: Box-Muller on words (0, 1) and (2, 3).
// Backend::fill_normal's element k is normal k % 4 of block k / 4.
struct PhiloxNormals { // four floats of one block (also philox_logistic4's)
    float v[4];
};

FLOW_HD PhiloxNormals philox_normal4(PhiloxBlock b) {
    PhiloxNormals z;
    philox_box_muller(b.v[0], b.v[1], &z.v[0], &z.v[1]);
    philox_box_muller(b.v[2], b.v[3], &z.v[2], &z.v[3]);
    return z;
}

// Four standard logistic draws, log(u / (1 - u)), one per word: u is in
// (0, 1), so u / (1 - u) is a positive normal float for log_cephes.
// Backend::fill_logistic's element k is draw k % 4 of block k / 4.
FLOW_HD PhiloxNormals philox_logistic4(PhiloxBlock b) {
    PhiloxNormals z;
    for (int w = 0; w < 4; ++w) {
        const float u = philox_uniform_open(b.v[w]);
        z.v[w] = log_cephes(u / (1.0f - u));
    }
    return z;
}

// One standard normal from a block: normal 0 of philox_normal4 (words 0, 1
// only, so a caller may use words 2, 3 for something else).
FLOW_HD float philox_normal(PhiloxBlock b) {
    float z_cos, z_sin;
    philox_box_muller(b.v[0], b.v[1], &z_cos, &z_sin);
    return z_cos;
}

} // namespace flow
