#!/usr/bin/env bash
# Checks the build prerequisites and, when running as root with apt-get, installs the missing
# ones: a Rust toolchain (must already exist), Python 3 with pip, cmake, a C/C++ compiler and
# libclang (bindgen generates llama.cpp's bindings with it).
set -euo pipefail

missing=()
command -v cargo >/dev/null || { echo "cargo not found: install a Rust toolchain (rustup)" >&2; exit 1; }
command -v python3 >/dev/null || missing+=(python3 python3-pip)
command -v cmake >/dev/null || missing+=(cmake)
command -v c++ >/dev/null || missing+=(g++)
# bindgen needs libclang.so somewhere the clang-sys crate looks.
if ! ls /usr/lib/llvm-*/lib/libclang*.so* /usr/lib/x86_64-linux-gnu/libclang*.so* /usr/lib/aarch64-linux-gnu/libclang*.so* >/dev/null 2>&1; then
    missing+=(libclang-dev clang)
fi

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing ${missing[*]} ..." >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    else
        echo "missing prerequisites: ${missing[*]} (install them with your package manager)" >&2
        exit 1
    fi
fi
