#!/usr/bin/env bash
# Takes the README's screenshot of the desktop app on the demo zoo: assets/screenshot.png.
#
# Runs the app in a virtual X server (Xvfb) with Mesa's software OpenGL, so it works on a headless
# machine. On Debian/Ubuntu it installs what it needs (as root); elsewhere install Xvfb, ImageMagick
# and Mesa yourself.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v Xvfb >/dev/null || ! command -v import >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb imagemagick libgl1-mesa-dri libegl1 libgl1 \
        libxkbcommon-x11-0 libxcursor1 libxrandr2 libxi6 >/dev/null
fi

out=${SCREENSHOT_DEMO:-target/screenshot-demo}
cargo build --quiet
bin=${CARGO_TARGET_DIR:-target}/debug/lineage
# Train and analyse the demo zoo (headless); the app then reads every result from the cache.
"$bin" demo --no-gui --out "$out" >/dev/null

display=:97
Xvfb "$display" -screen 0 1400x880x24 -nolisten tcp >/dev/null 2>&1 &
xvfb=$!
trap 'kill $app $xvfb 2>/dev/null || true' EXIT
sleep 1
DISPLAY=$display LIBGL_ALWAYS_SOFTWARE=1 XDG_CONFIG_HOME=$(mktemp -d) XDG_DATA_HOME=$(mktemp -d) \
    "$bin" open "$out/zoo-families" >/dev/null 2>&1 &
app=$!
sleep "${SCREENSHOT_WAIT:-8}"
DISPLAY=$display import -window root assets/screenshot.png
echo "wrote assets/screenshot.png"
