#!/usr/bin/env sh
# Builds llama.cpp's own `llama-mtmd-cli` from the llama.cpp tree vendored in
# the llama-cpp-sys-2 version that Cargo.lock pins, for the parity test
# (tests/parity.rs, SMOLVLM_MTMD_CLI). Prints the binary's absolute path as
# its last stdout line; everything else goes to stderr. Reuses an earlier
# build when the binary is newer than the copied tree.
#
#   SMOLVLM_MTMD_CLI="$(sh scripts/build-mtmd-cli.sh | tail -n 1)"
#
# Needs what scripts/install-deps.sh installs (cmake, a C/C++ compiler).
set -eu

cd "$(dirname "$0")/.."
root="$(pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
work="$target/mtmd-cli"
src="$work/src"
build="$work/build"
bin="$build/bin/llama-mtmd-cli"
stamp="$src/.smolvlm-source"

log() { printf 'build-mtmd-cli: %s\n' "$*" >&2; }

# The llama-cpp-sys-2 version from Cargo.lock: the `version` line that follows
# its `name` line.
version="$(awk '
    $0 == "name = \"llama-cpp-sys-2\"" { found = 1; next }
    found && /^version = / { gsub(/"/, "", $3); print $3; exit }
    /^\[\[package\]\]/ { found = 0 }
' Cargo.lock)"
if [ -z "$version" ]; then
    log "no llama-cpp-sys-2 entry in Cargo.lock"
    exit 1
fi
crate="llama-cpp-sys-2-$version"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"

find_crate_dir() {
    for dir in "$cargo_home"/registry/src/*/"$crate"; do
        if [ -f "$dir/llama.cpp/CMakeLists.txt" ]; then
            printf '%s\n' "$dir"
            return 0
        fi
    done
    return 1
}

crate_dir="$(find_crate_dir || true)"
if [ -z "$crate_dir" ]; then
    log "$crate is not unpacked under $cargo_home/registry/src; running cargo fetch"
    cargo fetch --locked >&2 || log "cargo fetch failed"
    crate_dir="$(find_crate_dir || true)"
fi
if [ -z "$crate_dir" ]; then
    # Older or unusual cargo setups keep only the .crate archive.
    for archive in "$cargo_home"/registry/cache/*/"$crate.crate"; do
        if [ -f "$archive" ]; then
            mkdir -p "$work/crate"
            tar -xzf "$archive" -C "$work/crate"
            crate_dir="$work/crate/$crate"
            break
        fi
    done
fi
if [ -z "$crate_dir" ] || [ ! -f "$crate_dir/llama.cpp/CMakeLists.txt" ]; then
    log "cannot find the sources of $crate (looked under $cargo_home/registry)"
    exit 1
fi

# The copy is stamped with the crate's name and version, so another
# CARGO_HOME holding the same version reuses the build.
if [ -x "$bin" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$crate" ] \
    && [ "$bin" -nt "$stamp" ]; then
    log "up to date: $bin"
    printf '%s\n' "$bin"
    exit 0
fi

# A fresh copy when the pinned version changed or the copy is missing.
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$crate" ]; then
    log "copying $crate_dir/llama.cpp to $src"
    rm -rf "$src" "$build"
    mkdir -p "$work"
    cp -R "$crate_dir/llama.cpp" "$src"
    chmod -R u+w "$src"
    # The crate ships only tools/mtmd, but tools/CMakeLists.txt still adds
    # every tool, so configuring with LLAMA_BUILD_TOOLS=ON fails as shipped.
    printf '%s\n' \
        '# Reduced by scripts/build-mtmd-cli.sh: the crate ships only tools/mtmd.' \
        'add_subdirectory(mtmd)' >"$src/tools/CMakeLists.txt"
    printf '%s\n' "$crate" >"$stamp"
fi

# Match how llama-cpp-sys-2's build.rs compiles ggml for our library, so both
# sides run the same CPU kernels: GGML_NATIVE=OFF (ggml then enables its
# portable x86 set: SSE4.2, AVX, AVX2, BMI2, FMA, F16C; no AVX-512) unless the
# Rust build targets the native CPU, a static build, and any GGML_* variables
# from the environment, which build.rs forwards too.
native=OFF
case "${RUSTFLAGS:-} ${CARGO_ENCODED_RUSTFLAGS:-}" in
    *target-cpu=native*) native=ON ;;
esac
set --
for var in $(env | sed -n 's/^\(GGML_[A-Za-z0-9_]*\)=.*/\1/p'); do
    eval "value=\${$var-}"
    # shellcheck disable=SC2154 # assigned by the eval above
    set -- "$@" "-D$var=$value"
done
# LLAMA_CURL is deprecated (ignored with a warning) in recent trees; pass it
# only where the tree still has it as a real option.
if grep -q 'option(LLAMA_CURL' "$src/CMakeLists.txt"; then
    set -- "$@" -DLLAMA_CURL=OFF
fi

log "configuring in $build"
cmake -S "$src" -B "$build" \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE="$native" \
    -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_SERVER=OFF \
    -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_UI=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_OPENSSL=OFF \
    "$@" >&2

jobs="${MTMD_CLI_JOBS:-$(nproc 2>/dev/null || echo 2)}"
log "building llama-mtmd-cli with $jobs jobs"
cmake --build "$build" --config Release -j "$jobs" --target llama-mtmd-cli >&2

if [ ! -x "$bin" ]; then
    log "the build finished but $bin is missing"
    exit 1
fi
# Make the binary newer than the stamp even on coarse-mtime file systems.
touch "$bin"
printf '%s\n' "$bin"
