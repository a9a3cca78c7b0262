#!/usr/bin/env sh
# Memory safety, checked rather than assumed: the engine layer's tests and
# the C program of crates/capi run under valgrind's memcheck, which fails on
# any invalid read or write, use of uninitialised memory, or definite leak.
# About a minute on 2 cores with OpenMP's idle threads sleeping (see below;
# 16 minutes with them spinning). `.ci/run` calls it; installs valgrind with
# apt-get when it is missing.
#
# One engine test is left out: loads_report_progress_and_stop_when_asked
# stops an mmproj load midway and loads a mismatched projector, and on both
# failure paths llama.cpp's clip loader leaks (clip_init: the clip context
# and its weights when mtmd's constructor throws, and a std::map of
# clip_model_loader::load_tensors when a load is cancelled). Those leaks are
# llama.cpp's; smolvlm refuses a mismatched pair before mtmd sees it, and a
# cancelled projector load is the one way to reach them (crates/engine/README.md).
set -eu
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq valgrind
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq valgrind
    fi
fi

# valgrind runs one thread at a time, so an OpenMP worker that spins at a
# barrier (libgomp's default before it sleeps) holds up the thread it waits
# for: the checked programs' workers sleep at once instead. It changes no
# memory access, only how idle threads wait.
export OMP_WAIT_POLICY=PASSIVE

memcheck="valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite"

started=$(date +%s)
echo "memcheck: the engine layer's tests" >&2
# --workspace: the features of the README's test command, whose build this
# reuses (-p alone would unify others and build again).
engine_tests="$(cargo test --release --workspace --test engine --no-run 2>&1 |
    sed -n 's/.*Executable .* (\(.*\))$/\1/p' | tail -n 1)"
if [ ! -x "$engine_tests" ]; then
    echo "memcheck: cannot find the engine test binary" >&2
    exit 1
fi
# One test thread: valgrind runs threads one at a time anyway.
$memcheck "$engine_tests" --test-threads=1 --skip loads_report_progress_and_stop_when_asked

echo "memcheck: the engine layer's tests took $(($(date +%s) - started)) s" >&2
started=$(date +%s)
echo "memcheck: the C program, linked against the shared library" >&2
SMOLVLM_C_WRAPPER="$memcheck" cargo test --release --workspace --test c_api \
    a_c_program_linked_against_the_shared_library_captions_like_rust
echo "memcheck: the C program took $(($(date +%s) - started)) s" >&2
