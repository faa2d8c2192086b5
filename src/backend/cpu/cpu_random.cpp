// The kernels of Backend::fill_normal and fill_logistic (declared in
// cpu_kernels.h), in a file of their own for one flag: the float math
// (float_math.h) is compiled here without contraction into FMAs, so every clone gives the bits of the baseline build,
// of the scalar callers of philox_normal and of the emulated CUDA kernels, and
// element k does not depend on which code path drew it. GCC inlines a
// function only into functions compiled with the same flags, hence philox.h
// after the pragma.
#include "backend/cpu/cpu_clones.h"
#include "backend/cpu/cpu_kernels.h"

#include <algorithm>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("-ffp-contract=off")
#endif

#include "backend/philox.h"

namespace flow::cpu_kernels {

namespace {

// out[k] = scale * draw(k) for k in [k0, k1), draw(k) being value k % 4 of
// four(block k / 4).
template <class Four>
FLOW_INLINE void four_per_block(uint64_t seed, uint64_t stream, float scale, float *out,
                                size_t k0, size_t k1, Four four) {
    // Partial blocks at either end: the same formula, one element at a time.
    const auto partial = [&](size_t a, size_t b) {
        for (size_t k = a; k < b; ++k)
            out[k] = four(philox4x32_10(seed, stream, k / 4)).v[k % 4] * scale;
    };
    const size_t m0 = std::min(k1, (k0 + 3) & ~size_t(3));
    const size_t m1 = std::max(m0, k1 & ~size_t(3));
    partial(k0, m0);
    // Whole blocks: GCC vectorizes Philox and the float math across blocks
    // (16 per iteration in the AVX-512 clone) and interleaves the lanes at
    // the store.
    for (size_t j = m0 / 4; j < m1 / 4; ++j) {
        const PhiloxNormals z = four(philox4x32_10(seed, stream, j));
        for (size_t l = 0; l < 4; ++l) out[4 * j + l] = z.v[l] * scale;
    }
    partial(m1, k1);
}

} // namespace

FLOW_CLONES
void normal_range(uint64_t seed, uint64_t stream, float stddev, float *out, size_t k0,
                  size_t k1) {
    four_per_block(seed, stream, stddev, out, k0, k1,
                   [](PhiloxBlock b) FLOW_INLINE_LAMBDA { return philox_normal4(b); });
}

FLOW_CLONES
void logistic_range(uint64_t seed, uint64_t stream, float scale, float *out, size_t k0,
                    size_t k1) {
    four_per_block(seed, stream, scale, out, k0, k1,
                   [](PhiloxBlock b) FLOW_INLINE_LAMBDA { return philox_logistic4(b); });
}

} // namespace flow::cpu_kernels
