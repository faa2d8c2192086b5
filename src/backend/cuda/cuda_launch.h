// The three shapes every CUDA kernel of the backend takes, written once:
//   cuda_for_each(n, f)                 f(i) for every i < n (elementwise, per row)
//   cuda_column_reduce(rows, cols, t, f) f(j, sum_i t(i, j)) for every column j
//   cuda_sum_to_host(n, t)              sum_i t(i), returned to the host
// Bodies are __device__ lambdas capturing raw device pointers and scalars
// (never Tensors). Sums are in double and in a fixed order, so results do
// not depend on the launch shape. Under FLOWLIB_CUDA_EMULATION the launches
// are plain loops on the host (see emulation/cuda_emulation.h).
#pragma once

#include <cstddef>
#include <vector>

#include "backend/cuda/cuda_backend.h"

namespace flow {

#if defined(FLOWLIB_CUDA_EMULATION)

template <class F> void cuda_for_each(size_t n, F f) {
    for (size_t i = 0; i < n; ++i) f(i);
}

#else

template <class F> __global__ void cuda_for_each_kernel(size_t n, F f) {
    const size_t stride = (size_t)blockDim.x * gridDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) f(i);
}

template <class F> void cuda_for_each(size_t n, F f) {
    if (n == 0) return;
    constexpr unsigned kThreads = 256;
    constexpr size_t kMaxBlocks = 16384; // grid-stride beyond this
    size_t blocks = (n + kThreads - 1) / kThreads;
    if (blocks > kMaxBlocks) blocks = kMaxBlocks;
    cuda_for_each_kernel<<<(unsigned)blocks, kThreads, 0, cuda_context().stream>>>(n, f);
    cuda_check(cudaGetLastError(), "kernel launch");
}

#endif

// Rows per partial sum of a column reduction: enough parallel partials for a
// GPU at batch 256 and up, few enough that the second pass is short.
constexpr size_t kReduceChunk = 64;

template <class Term, class Finish>
void cuda_column_reduce(size_t rows, size_t cols, Term term, Finish finish) {
    if (cols == 0) return;
    const size_t chunks = rows == 0 ? 1 : (rows + kReduceChunk - 1) / kReduceChunk;
    double *partial = static_cast<double *>(cuda_scratch(chunks * cols * sizeof(double)));
    cuda_for_each(chunks * cols, [=] __device__(size_t t) {
        const size_t c = t / cols, j = t % cols;
        const size_t begin = c * kReduceChunk;
        const size_t end = begin + kReduceChunk < rows ? begin + kReduceChunk : rows;
        double s = 0;
        for (size_t i = begin; i < end; ++i) s += term(i, j);
        partial[t] = s;
    });
    cuda_for_each(cols, [=] __device__(size_t j) {
        double s = 0;
        for (size_t c = 0; c < chunks; ++c) s += partial[c * cols + j];
        finish(j, s);
    });
}

// Elements per partial of a reduction to the host.
constexpr size_t kHostChunk = 4096;

template <class Term> double cuda_sum_to_host(size_t n, Term term) {
    if (n == 0) return 0.0;
    const size_t chunks = (n + kHostChunk - 1) / kHostChunk;
    double *partial = static_cast<double *>(cuda_scratch(chunks * sizeof(double)));
    cuda_for_each(chunks, [=] __device__(size_t c) {
        const size_t begin = c * kHostChunk;
        const size_t end = begin + kHostChunk < n ? begin + kHostChunk : n;
        double s = 0;
        for (size_t i = begin; i < end; ++i) s += term(i);
        partial[c] = s;
    });
    std::vector<double> host(chunks);
    cuda_download_bytes(host.data(), partial, chunks * sizeof(double));
    double total = 0;
    for (double s : host) total += s;
    return total;
}

} // namespace flow
