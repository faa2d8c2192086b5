// Function multiversioning of the CPU backend's hot kernels: FLOW_CLONES
// builds a function for AVX-512 (x86-64-v4), AVX2 (x86-64-v3) and baseline
// x86-64, and the loader picks one for the CPU it runs on, so the shipped
// library is fast without -march=native. Sanitizer builds and other
// compilers get one plain version. Also the helpers that must be inlined
// into such kernels: copy_floats.
#pragma once

#include <cstddef>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(FLOWLIB_NO_CLONES)
// One AVX-512 (x86-64-v4) build of a kernel, which its caller runs only
// where the CPU has it: no ifunc, so sanitizer builds keep it too.
#define FLOW_TARGET_AVX512 __attribute__((target("arch=x86-64-v4")))
#ifndef __SANITIZE_ADDRESS__
#define FLOW_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
// For kernels written on 8-float vectors, which need no AVX-512 (see
// cpu_small_gemm.cpp).
#define FLOW_CLONES_AVX2 __attribute__((target_clones("arch=x86-64-v3", "default")))
// The loader picks the clones: on an AVX2 CPU the 8-float kernels use FMA.
#define FLOW_HAS_CLONES 1
#endif
#endif
#ifndef FLOW_HAS_CLONES
#define FLOW_CLONES
#define FLOW_CLONES_AVX2
#endif
// Inlined into its (cloned) caller, so compiled for the caller's instruction set.
#define FLOW_INLINE inline __attribute__((always_inline))
// A lambda body inlined into its (cloned) caller: an out-of-line lambda
// would be compiled once, for baseline x86-64.
#define FLOW_INLINE_LAMBDA __attribute__((always_inline))

namespace flow {

// to[0, n) = from[0, n) for short runs (a panel's slab row, a block of a
// row), whole 8-float moves then single floats: GCC turns a plain copy loop
// into a memcpy call, which for 32-64 bytes costs more than the copy.
FLOW_INLINE void copy_floats(const float *from, size_t n, float *to) {
    size_t j = 0;
    for (; j + 8 <= n; j += 8) std::memcpy(to + j, from + j, 8 * sizeof(float));
    for (; j < n; ++j) to[j] = from[j];
}

} // namespace flow
