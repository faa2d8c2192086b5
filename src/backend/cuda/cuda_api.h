// The CUDA runtime and cuBLAS as the backend sees them: the real headers under
// nvcc, or the host emulation when the same sources are compiled as plain C++
// (FLOWLIB_CUDA_EMULATION) so the backend's logic is tested on machines
// without a GPU. Backend sources include this, never the CUDA headers.
#pragma once

#if defined(FLOWLIB_CUDA_EMULATION)
#  include "backend/cuda/emulation/cuda_emulation.h"
#else
#  include <cublas_v2.h>
#  include <cuda_runtime.h>
#endif
