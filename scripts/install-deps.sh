#!/usr/bin/env sh
# Installs what building llama.cpp through llama-cpp-sys-2 needs besides Rust:
# cmake, a C/C++ compiler, and libclang (for bindgen). Debian/Ubuntu only;
# elsewhere it says what is missing and stops.
set -eu

missing=""
command -v cmake >/dev/null 2>&1 || missing="$missing cmake"
command -v c++ >/dev/null 2>&1 || missing="$missing g++"
# The C ABI test compiles a C program with `cc`.
command -v cc >/dev/null 2>&1 || missing="$missing gcc"
command -v clang >/dev/null 2>&1 || missing="$missing clang"
if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 \
    && ! ldconfig -p 2>/dev/null | grep -q 'libclang.*\.so'; then
    missing="$missing libclang-dev"
fi

[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "smolvlm needs:$missing (install them with your package manager)" >&2
    exit 1
fi
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "installing:$missing" >&2
$sudo apt-get update -qq
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null
