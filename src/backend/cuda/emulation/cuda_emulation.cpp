// Host emulation of the CUDA runtime and cuBLAS subset (see cuda_emulation.h).
#include "backend/cuda/emulation/cuda_emulation.h"

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>

// The Fortran BLAS entry point (OpenBLAS): column-major like cuBLAS.
extern "C" void sgemm_(const char *transa, const char *transb, const int *m, const int *n,
                       const int *k, const float *alpha, const float *a, const int *lda,
                       const float *b, const int *ldb, const float *beta, float *c,
                       const int *ldc);

namespace {

// Bytes handed out, and a header before each block that remembers its size.
std::atomic<size_t> g_allocated{0};
constexpr size_t kHeader = 64;

size_t memory_limit() {
    const char *s = std::getenv("FLOWLIB_CUDA_EMULATION_MEMORY");
    return s && *s ? (size_t)std::strtoull(s, nullptr, 10) : (size_t)16 << 30;
}

cudaError_t g_last = cudaSuccess;

cudaError_t record(cudaError_t e) {
    if (e != cudaSuccess) g_last = e;
    return e;
}

} // namespace

struct CudaEmulatedStream {};
struct CudaEmulatedBlas {};
static CudaEmulatedStream g_stream;

cudaError_t cudaGetDeviceCount(int *count) {
    *count = 1;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
    return record(device == 0 ? cudaSuccess : cudaErrorInvalidValue);
}

cudaError_t cudaMalloc(void **ptr, size_t bytes) {
    *ptr = nullptr;
    if (bytes > memory_limit() || g_allocated.load() + bytes > memory_limit())
        return record(cudaErrorMemoryAllocation);
    auto *block = static_cast<unsigned char *>(std::malloc(kHeader + bytes));
    if (!block) return record(cudaErrorMemoryAllocation);
    std::memcpy(block, &bytes, sizeof bytes);
    g_allocated += bytes;
    *ptr = block + kHeader;
    return cudaSuccess;
}

cudaError_t cudaFree(void *ptr) {
    if (!ptr) return cudaSuccess;
    auto *block = static_cast<unsigned char *>(ptr) - kHeader;
    size_t bytes;
    std::memcpy(&bytes, block, sizeof bytes);
    g_allocated -= bytes;
    std::free(block);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind,
                            cudaStream_t) {
    if (bytes) std::memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t) {
    if (bytes) std::memset(dst, value, bytes);
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned) {
    *stream = &g_stream;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

cudaError_t cudaGetLastError(void) {
    cudaError_t e = g_last;
    g_last = cudaSuccess;
    return e;
}

const char *cudaGetErrorString(cudaError_t error) {
    switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInsufficientDriver:
        return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    }
    return "unrecognized error code";
}

cublasStatus_t cublasCreate(cublasHandle_t *handle) {
    static CudaEmulatedBlas blas;
    *handle = &blas;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }

cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }

cublasStatus_t cublasSgemm(cublasHandle_t, cublasOperation_t transa, cublasOperation_t transb,
                           int m, int n, int k, const float *alpha, const float *A, int lda,
                           const float *B, int ldb, const float *beta, float *C, int ldc) {
    // cuBLAS's own argument rules, so a wrong leading dimension fails here
    // as it would on the GPU.
    const int rows_a = transa == CUBLAS_OP_N ? m : k;
    const int rows_b = transb == CUBLAS_OP_N ? k : n;
    if (m < 0 || n < 0 || k < 0 || lda < (rows_a > 1 ? rows_a : 1) ||
        ldb < (rows_b > 1 ? rows_b : 1) || ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    const char ta = transa == CUBLAS_OP_N ? 'N' : 'T', tb = transb == CUBLAS_OP_N ? 'N' : 'T';
    sgemm_(&ta, &tb, &m, &n, &k, alpha, A, &lda, B, &ldb, beta, C, &ldc);
    return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusString(cublasStatus_t status) {
    return status == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS"
                                           : "CUBLAS_STATUS_INVALID_VALUE";
}
