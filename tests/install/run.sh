#!/usr/bin/env bash
# ctest install_consumers: install the current build into a fresh prefix and
# check that a C program builds and runs against it (a) with nothing but
# pkg-config and (b) through find_package(flowlib).
# Usage: run.sh BUILD_DIR [CMAKE_GENERATOR] [CC] [EXTRA_CFLAGS]
set -euo pipefail

build_dir=$1
generator=${2:-}
cc=${3:-cc}
extra_cflags=${4:-}   # sanitizer flags when the library is sanitized
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/flowlib-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

echo "== cmake --install into $prefix"
cmake --install "$build_dir" --prefix "$prefix"

libdir=$(dirname "$(find "$prefix" -name 'flowlib.pc' -print -quit)")/..
libdir=$(cd "$libdir" && pwd)

echo "== (a) pkg-config"
export PKG_CONFIG_PATH=$libdir/pkgconfig
pkg-config --print-errors --exists flowlib
echo "pkg-config --cflags --libs flowlib: $(pkg-config --cflags --libs flowlib)"
# shellcheck disable=SC2046,SC2086  # word splitting is intended
"$cc" $extra_cflags "$here/main.c" -o "$work/main_pc" $(pkg-config --cflags --libs flowlib) -lm
LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$work/main_pc"

echo "== (b) find_package(flowlib)"
gen_args=()
if [[ -n $generator ]]; then gen_args=(-G "$generator"); fi
cmake -S "$here/cmake_consumer" -B "$work/consumer" "${gen_args[@]}" \
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_C_FLAGS="$extra_cflags" -DCMAKE_BUILD_TYPE=Release
cmake --build "$work/consumer"
# No LD_LIBRARY_PATH here: the imported target's location must be enough.
"$work/consumer/consumer"

echo "install consumers OK"
