#!/usr/bin/env bash
# Installs the Debian packages flowlib needs to build and test (with --demo:
# only what the main job needs). Idempotent:
# does nothing (and needs no network) when they are all present. Runs as
# root, or through sudo otherwise.
set -euo pipefail

# The library, the flowlib program and the main job's data ...
packages=(
    g++ gcc binutils cmake ninja-build pkg-config
    libeigen3-dev nlohmann-json3-dev libopenblas-openmp-dev
    zlib1g-dev dataset-fashion-mnist
)
# ... and, unless --demo, the tests and the language bindings.
if [[ ${1:-} != --demo ]]; then
    packages+=(
        libcriterion-dev
        swig python3-dev python3-numpy python3-pytest default-jdk-headless mono-mcs
    )
fi

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
    echo "setup-debian: all packages present"
    exit 0
fi

if ((EUID == 0)); then
    sudo=()
elif command -v sudo >/dev/null; then
    sudo=(sudo)
else
    echo "setup-debian: need root or sudo to install: ${missing[*]}" >&2
    exit 1
fi

echo "setup-debian: installing ${missing[*]}"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
