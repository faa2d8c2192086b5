#!/usr/bin/env bash
# The GPU check of the CUDA backend, as one run on a machine with an NVIDIA
# GPU: build with nvcc (unless BUILD_DIR is already built and cmake is
# absent), run every CUDA suite on the real module, then benchmark the GPU
# against the CPU. Output lines go to stdout; with $OUT set, the test log and
# the benchmark's JSON lines are also written there.
#
#   bash scripts/gpu-check.sh [BUILD_DIR] [--arch 90] [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."

build=build-gpu arch=90 quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch="$2"; shift ;;
    --quick) quick=1 ;;
    -*) echo "usage: $0 [BUILD_DIR] [--arch SM] [--quick]" >&2; exit 2 ;;
    *) build="$1" ;;
  esac
  shift
done
out="${OUT:-$build/gpu-check}"
mkdir -p "$out"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
if command -v cmake >/dev/null; then
  [ -f "$build/CMakeCache.txt" ] ||
    cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_CUDA_ARCHITECTURES="$arch" -DFLOWLIB_BUILD_TESTS=ON >"$out/configure.log"
  cmake --build "$build" -j "$(nproc)" >"$out/build.log"
fi
[ -f "$build/lib/libflowlib_cuda.so" ] || { echo "no $build/lib/libflowlib_cuda.so: nvcc missing?" >&2; exit 1; }

# Every CUDA suite, real and emulated; a real one that skips here is a failure.
set +e
ctest --test-dir "$build" -L cuda --output-on-failure -j 4 2>&1 | tee "$out/ctest.log"
status=${PIPESTATUS[0]}
set -e
if grep -q "(Skipped)" "$out/ctest.log"; then
  echo "gpu-check: a CUDA suite skipped on a GPU machine (see above)" >&2
  status=1
fi

# RealNVP and MAF over the CPU benchmark's grid, then one image-sized
# RealNVP (Fashion-MNIST's 784 dimensions); GPU lines carry speedup_vs_cpu.
bench=("$build/bench/flowlib_bench" --device cpu,cuda --threads "$(nproc)" --rounds 5
       --round-time 0.1)
"${bench[@]}" --models realnvp,maf --dims 8,64 --hidden 64,256 --batch 256,4096 |
  tee "$out/bench.jsonl"
[ "$quick" = 1 ] ||
  "${bench[@]}" --models realnvp --dims 784 --hidden 1024 --batch 1024 --layers 6 |
    tee -a "$out/bench.jsonl"
exit "$status"
