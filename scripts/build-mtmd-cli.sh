#!/usr/bin/env sh
# Builds llama.cpp's own `llama-mtmd-cli` from the llama.cpp tree vendored in
# the llama-cpp-sys-2 version that Cargo.lock pins, for the parity test
# (tests/parity.rs, SMOLVLM_MTMD_CLI). Prints the binary's absolute path as
# its last stdout line; everything else goes to stderr. After a cargo build
# it links the libraries that build left (seconds); otherwise it builds the
# tool with cmake (minutes). Reuses an earlier build when it is newer than
# its inputs.
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

# The fast way (seconds): when cargo has built the library, compile only
# mtmd-cli.cpp and link it against the static libraries llama-cpp-sys-2's
# build left (llama, mtmd, common, ggml): the very objects the library runs,
# so both sides run the same kernels by construction. The newest such build
# of this version is taken.
sys_build=""
for cache in "$target"/release/build/llama-cpp-sys-2-*/out/build/CMakeCache.txt; do
    [ -f "$cache" ] || continue
    grep -q "$crate/llama.cpp" "$cache" || continue
    dir="$(dirname "$cache")"
    [ -f "$dir/tools/mtmd/libmtmd.a" ] && [ -f "$dir/common/libllama-common.a" ] || continue
    if [ -z "$sys_build" ] || [ "$dir/src/libllama.a" -nt "$sys_build/src/libllama.a" ]; then
        sys_build="$dir"
    fi
done
if [ -n "$sys_build" ]; then
    linked="$work/linked/llama-mtmd-cli"
    cached() { sed -n "s/^$1:[A-Z]*=//p" "$sys_build/CMakeCache.txt" | head -n 1; }
    libs=""
    for lib in tools/mtmd/libmtmd.a common/libllama-common.a common/libllama-common-base.a \
        vendor/cpp-httplib/libcpp-httplib.a vendor/hash/libvendor-hash.a src/libllama.a \
        ggml/src/libggml.a ggml/src/libggml-cpu.a ggml/src/libggml-base.a; do
        [ -f "$sys_build/$lib" ] && libs="$libs $sys_build/$lib"
    done
    fresh=yes
    for lib in $libs "$crate_dir/llama.cpp/tools/mtmd/mtmd-cli.cpp"; do
        if [ ! -x "$linked" ] || [ "$lib" -nt "$linked" ]; then fresh=no; fi
    done
    if [ "$fresh" = yes ]; then
        log "up to date: $linked (linked against $sys_build)"
        printf '%s\n' "$linked"
        exit 0
    fi
    extra=""
    [ "$(cached GGML_OPENMP)" = ON ] && extra="$extra -fopenmp"
    for var in OPENSSL_SSL_LIBRARY OPENSSL_CRYPTO_LIBRARY; do
        value="$(cached "$var")"
        case "$value" in ''|*NOTFOUND*) ;; *) extra="$extra $value" ;; esac
    done
    src_dir="$crate_dir/llama.cpp"
    mkdir -p "$work/linked"
    log "compiling mtmd-cli.cpp against the libraries in $sys_build"
    # shellcheck disable=SC2086 # word splitting of the library lists is meant
    if "${CXX:-c++}" -O3 -DNDEBUG -std=c++17 \
        -I "$src_dir/common" -I "$src_dir/include" -I "$src_dir/ggml/include" \
        -I "$src_dir/tools/mtmd" -I "$src_dir/vendor" \
        "$src_dir/tools/mtmd/mtmd-cli.cpp" -o "$linked" $libs $extra -lpthread -ldl >&2; then
        printf '%s\n' "$linked"
        exit 0
    fi
    log "linking against $sys_build failed; building with cmake instead"
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
