// A sequential host emulation of the small part of the CUDA runtime and
// cuBLAS that the CUDA backend uses. Compiling the backend's .cu sources as
// C++ against it (cuda_launch.h turns kernel launches into loops) runs every
// kernel body, index computation and cuBLAS argument on the CPU, so parity
// tests check the backend's math on machines without a GPU. It cannot check
// what only hardware shows (races, memory spaces, launch limits): the real
// module is still tested on a GPU.
//
// Memory is host memory; FLOWLIB_CUDA_EMULATION_MEMORY (bytes) caps what
// cudaMalloc hands out, so out-of-memory paths can be tested.
#pragma once

#include <cstddef>

#define __host__
#define __device__
#define __global__
#define __forceinline__ inline

enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInsufficientDriver = 35,
    cudaErrorNoDevice = 100,
};
enum cudaMemcpyKind {
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
};
typedef struct CudaEmulatedStream *cudaStream_t;
#define cudaStreamNonBlocking 0x01

cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaMalloc(void **ptr, size_t bytes);
cudaError_t cudaFree(void *ptr);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream);
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned flags);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaGetLastError(void);
const char *cudaGetErrorString(cudaError_t error);

enum cublasStatus_t {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_INVALID_VALUE = 7,
};
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cublasMath_t { CUBLAS_DEFAULT_MATH = 0 };
typedef struct CudaEmulatedBlas *cublasHandle_t;

cublasStatus_t cublasCreate(cublasHandle_t *handle);
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream);
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode);
// Column-major, as cuBLAS: C = alpha op(A) op(B) + beta C, C m x n.
cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa,
                           cublasOperation_t transb, int m, int n, int k, const float *alpha,
                           const float *A, int lda, const float *B, int ldb, const float *beta,
                           float *C, int ldc);
const char *cublasGetStatusString(cublasStatus_t status);
