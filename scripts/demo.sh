#!/usr/bin/env bash
# The main job: on a fresh Debian 12 machine, installs what flowlib needs,
# builds the library and the `flowlib` program, trains a RealNVP on
# Fashion-MNIST (Debian package dataset-fashion-mnist) with a live progress
# line, reports the test set's bits/dim and draws samples beside training
# images. With the default budget (4 minutes of training) it finishes in under
# ten minutes on 2 cores, build included.
#
# Usage: bash scripts/demo.sh [--full] [--time SECONDS] [BUILD_DIR]
#   --time S   training budget in seconds (default 240)
#   --full     no time budget: 20 epochs over all 60000 images, early
#              stopping on the validation set (hours on 2 cores)
#   BUILD_DIR  default build-demo/ (only the library and the program)
# Results go to demo-out/ (OUT=dir to change): fmnist.safetensors (+ .json),
# fmnist.png (samples left, training images right).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
budget=(--time 240)
build_dir=build-demo
while (($#)); do
    case $1 in
    --full) budget=(--epochs 20) ;;
    --time) budget=(--time "${2:?--time needs seconds}"); shift ;;
    -h | --help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "demo.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) build_dir=$1 ;;
    esac
    shift
done
out=${OUT:-demo-out}
jobs=${JOBS:-$(nproc)}
data=/usr/share/datasets/fashion-mnist
start=$SECONDS

bash "$root/scripts/setup-debian.sh" --demo

cd "$root"
echo "== building flowlib and the flowlib program in $build_dir/"
cmake -S . -B "$build_dir" -G Ninja -DFLOWLIB_BUILD_TESTS=OFF \
    -DFLOWLIB_BUILD_EXAMPLES=OFF -DFLOWLIB_BUILD_BENCH=OFF >/dev/null
cmake --build "$build_dir" -j "$jobs" --target flowlib_cli
flowlib=$build_dir/bin/flowlib
echo "   built in $((SECONDS - start)) s"

mkdir -p "$out"
echo "== training a RealNVP on Fashion-MNIST (${budget[*]})"
# 784-D rows of 0..255: dequantized (256 levels) and logit-transformed
# automatically because the data come from idx files. 5% of the images are
# held out; the model with the best validation bits/dim is kept.
"$flowlib" train "$data/train-images-idx3-ubyte.gz" -o "$out/fmnist.safetensors" \
    --layers 6 --hidden 1024 --batch 128 --lr 3e-4 --val 0.05 --val-every 250 \
    "${budget[@]}"

echo "== test set (10000 images)"
"$flowlib" eval "$out/fmnist.safetensors" "$data/t10k-images-idx3-ubyte.gz"

echo "== pictures"
"$flowlib" plot "$out/fmnist.safetensors" -o "$out/fmnist.png" -n 64 -t 0.8
"$flowlib" info "$out/fmnist.safetensors" | grep -v '^spec:'
echo "== done in $((SECONDS - start)) s"
