// The CUDA module's entry point, per-thread contexts, memory and GEMM.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_launch.h"
#include "backend/cuda/cuda_module.h"
#include "flowlib_version.h"

namespace flow {

// --- errors ---------------------------------------------------------------------

void cuda_check(cudaError_t error, const char *what) {
    if (error == cudaSuccess) return;
    cudaGetLastError(); // clear it: a failed call must not poison the next one
    const Status status =
        error == cudaErrorMemoryAllocation ? Status::out_of_memory : Status::device;
    fail(status, std::string(what) + ": " + cudaGetErrorString(error));
}

void cublas_check(cublasStatus_t status, const char *what) {
    if (status == CUBLAS_STATUS_SUCCESS) return;
    fail(Status::device, std::string(what) + ": " + cublasGetStatusString(status));
}

// --- per-thread context ---------------------------------------------------------

// Contexts are never destroyed: a thread_local destructor would run after the
// CUDA runtime has been torn down at process exit. The driver frees them
// with the process.
CudaContext &cuda_context() {
    thread_local CudaContext *context = nullptr;
    if (context) return *context;
    CudaContext made;
    cuda_check(cudaSetDevice(0), "cudaSetDevice");
    cuda_check(cudaStreamCreateWithFlags(&made.stream, cudaStreamNonBlocking),
               "cudaStreamCreate");
    cublas_check(cublasCreate(&made.blas), "cublasCreate");
    cublas_check(cublasSetStream(made.blas, made.stream), "cublasSetStream");
    // Plain FP32 (no TF32 tensor cores), so results match the CPU backend.
    cublas_check(cublasSetMathMode(made.blas, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    context = new CudaContext(made);
    return *context;
}

// Grows a per-thread buffer to at least `bytes`. cudaFree waits for the
// device, so no queued kernel still uses the old one.
static void *grow(void *&buffer, size_t &capacity, size_t bytes, const char *what) {
    if (bytes <= capacity) return buffer;
    cuda_check(cudaFree(buffer), "cudaFree");
    buffer = nullptr;
    capacity = 0;
    const size_t grown = bytes < 4096 ? 4096 : bytes + bytes / 2;
    cuda_check(cudaMalloc(&buffer, grown), what);
    capacity = grown;
    return buffer;
}

void *cuda_scratch(size_t bytes) {
    CudaContext &c = cuda_context();
    return grow(c.scratch, c.scratch_bytes, bytes, "scratch allocation");
}

void *cuda_workspace(size_t bytes) {
    CudaContext &c = cuda_context();
    return grow(c.workspace, c.workspace_bytes, bytes, "workspace allocation");
}

void cuda_download_bytes(void *host, const void *device, size_t bytes) {
    if (bytes == 0) return;
    cudaStream_t s = cuda_context().stream;
    cuda_check(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, s), "download");
    cuda_check(cudaStreamSynchronize(s), "download");
}

// --- memory ---------------------------------------------------------------------

void *CudaBackend::allocate(size_t bytes) {
    void *ptr = nullptr;
    // 0 bytes still gets a real pointer so empty tensors need no special case.
    const cudaError_t e = cudaMalloc(&ptr, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        cudaGetLastError();
        fail(e == cudaErrorMemoryAllocation ? Status::out_of_memory : Status::device,
             "cannot allocate " + std::to_string(bytes) + " bytes of GPU memory: " +
                 cudaGetErrorString(e));
    }
    return ptr;
}

void CudaBackend::release(void *ptr) noexcept { cudaFree(ptr); }

static size_t tensor_bytes(const Tensor &t) { return t.size() * sizeof(float); }

// The device address of t's first element, whatever its dtype (both are 4 bytes).
static void *raw(const Tensor &t, const char *op) {
    op_check(t.defined(), op, "undefined tensor");
    return t.dtype() == DType::f32 ? (void *)t.f32() : (void *)t.i32();
}

void CudaBackend::upload(Tensor &dst, const void *host) {
    if (dst.size() == 0) return;
    // From pageable memory the copy is staged before the call returns, so the
    // caller may reuse its buffer at once; no wait for the stream is needed.
    cuda_check(cudaMemcpyAsync(raw(dst, "upload"), host, tensor_bytes(dst),
                               cudaMemcpyHostToDevice, cuda_context().stream),
               "upload");
}

void CudaBackend::download(const Tensor &src, void *host) {
    cuda_download_bytes(host, raw(src, "download"), tensor_bytes(src));
}

void CudaBackend::copy(const Tensor &src, Tensor &dst) {
    op_check(src.size() == dst.size() && src.dtype() == dst.dtype(), "copy",
                 "size or dtype mismatch");
    if (src.size() == 0) return;
    cuda_check(cudaMemcpyAsync(raw(dst, "copy"), raw(src, "copy"), tensor_bytes(src),
                               cudaMemcpyDeviceToDevice, cuda_context().stream),
               "copy");
}

void CudaBackend::fill(Tensor &t, float value) {
    float *p = op_f32(t, "fill");
    cuda_for_each(t.size(), [=] __device__(size_t i) { p[i] = value; });
}

void CudaBackend::synchronize() {
    cuda_check(cudaStreamSynchronize(cuda_context().stream), "cudaStreamSynchronize");
}

// --- GEMM -----------------------------------------------------------------------

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLAS
// gets B first, with the same transpose flags, and no data moves.
void CudaBackend::gemm(bool trans_a, bool trans_b, float alpha, const Tensor &a,
                       const Tensor &b, float beta, Tensor &c) {
    const char *op = "gemm";
    const size_t m = c.rows(), n = c.cols();
    const size_t k = trans_a ? a.rows() : a.cols();
    op_check((trans_a ? a.cols() : a.rows()) == m, op, "rows of op(a) != rows of c");
    op_check((trans_b ? b.rows() : b.cols()) == n, op, "cols of op(b) != cols of c");
    op_check((trans_b ? b.cols() : b.rows()) == k, op, "inner dimensions differ");
    if (m == 0 || n == 0) return;
    // cuBLAS wants leading dimensions >= 1 even where k = 0 (a layer that
    // reads no input columns) leaves the matrix empty.
    const int ldb = (int)std::max<size_t>(b.cols(), 1), lda = (int)std::max<size_t>(a.cols(), 1);
    cublas_check(cublasSgemm(cuda_context().blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                             trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, (int)n, (int)m, (int)k,
                             &alpha, op_f32(b, op), ldb, op_f32(a, op), lda, &beta,
                             op_f32(c, op), (int)n),
                 "cublasSgemm");
}

void CudaBackend::gemm_bias(bool trans_a, bool trans_b, const Tensor &a, const Tensor &b,
                            const Tensor &v, Tensor &c, const Tensor *) {
    const char *op = "gemm_bias";
    op_check(v.size() == c.cols(), op, "bias size != cols of c");
    float *pc = op_f32(c, op);
    const float *pv = op_f32(v, op);
    const size_t cols = c.cols();
    cuda_for_each(c.size(), [=] __device__(size_t i) { pc[i] = pv[i % cols]; });
    gemm(trans_a, trans_b, 1.0f, a, b, 1.0f, c);
}

} // namespace flow

// --- the module's entry point ---------------------------------------------------

extern "C" __attribute__((visibility("default"))) flow::Backend *
flowlib_cuda_open(uint32_t version, char *error, size_t cap) {
    auto say = [&](const std::string &why) {
        if (cap) std::snprintf(error, cap, "%s", why.c_str());
        return nullptr;
    };
    if (version != FLOWLIB_VERSION_NUMBER)
        return say("libflowlib_cuda.so is from flowlib " + std::to_string(FLOWLIB_VERSION_NUMBER) +
                   ", not " + std::to_string(version));
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return say(std::string("no usable CUDA device: ") + cudaGetErrorString(e));
    }
    if (count == 0) return say("no CUDA device found");
    static flow::CudaBackend backend;
    return &backend;
}
