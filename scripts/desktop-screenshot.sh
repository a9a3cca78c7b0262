#!/usr/bin/env sh
# Runs the desktop example under a virtual X server on the testkit's tiny
# model, captions the sample photo, asks a follow-up, and saves a screenshot
# of the window once the answer is done: proof that the UI works without a
# screen.
#
#   sh scripts/desktop-screenshot.sh [OUT.png]   (default target/desktop-screenshot.png)
#
# Needs Xvfb and Mesa's software OpenGL; on Debian/Ubuntu it installs them
# (xvfb, libgl1-mesa-dri, libglx-mesa0, libegl1, xauth) when missing.
set -eu
cd "$(dirname "$0")/.."
out="${1:-target/desktop-screenshot.png}"

if ! command -v xvfb-run >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
        $sudo_ apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq xvfb libgl1-mesa-dri libglx-mesa0 libegl1 xauth
    else
        echo "install Xvfb and Mesa's OpenGL (xvfb-run must be on PATH)" >&2
        exit 1
    fi
fi

cargo build --release --workspace
dir="$(cargo run --release --example tiny_model_dir)"
rm -f "$out"
# Mesa's software renderer; no GPU needed.
LIBGL_ALWAYS_SOFTWARE=1 timeout 120 xvfb-run -a -s "-screen 0 800x700x24" \
    target/release/smolvlm-desktop --model "$dir/model.gguf" --mmproj "$dir/mmproj.gguf" \
    --screenshot "$out" --ask "What colour is the cup?" examples/images/coffee.jpg
if [ ! -s "$out" ]; then
    echo "no screenshot was written to $out" >&2
    exit 1
fi
echo "$out"
