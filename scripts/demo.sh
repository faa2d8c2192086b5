#!/usr/bin/env bash
# The main job: builds flowlib and runs the two-moons C example (trains a
# small RealNVP on the two-moons toy data set).
# Usage: bash scripts/demo.sh [BUILD_DIR]   (default build/)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${1:-build}
jobs=${JOBS:-$(nproc)}

bash "$root/scripts/setup-debian.sh"

cd "$root"
cmake -S . -B "$build_dir" -G Ninja
cmake --build "$build_dir" -j "$jobs" --target two_moons
"$build_dir/examples/two_moons"
