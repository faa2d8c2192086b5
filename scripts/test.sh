#!/usr/bin/env bash
# Builds flowlib and runs every test: bash scripts/test.sh [BUILD_DIR] [CMAKE_ARGS...]
# BUILD_DIR defaults to build/ (relative to the repository root); extra
# arguments go to the CMake configure step, e.g.
#   bash scripts/test.sh build-asan -DFLOWLIB_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
# JOBS sets build and test parallelism (default: number of cores).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${1:-build}
shift $(($# > 0 ? 1 : 0))
jobs=${JOBS:-$(nproc)}

bash "$root/scripts/setup-debian.sh"

cd "$root"
cmake -S . -B "$build_dir" -G Ninja -DFLOWLIB_BUILD_TESTS=ON "$@"
cmake --build "$build_dir" -j "$jobs"
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs"
