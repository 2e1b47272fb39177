#!/usr/bin/env bash
# Builds vr-stream, vr-receive, setup, quick-bench and dashboard (release) and installs them,
# with scripts/fetch-yolo.sh as vr-stream-fetch-yolo, in $PREFIX/bin (default /usr/local/bin, where systemd/vr-stream.service expects vr-stream).
# --pi5: build with -C target-cpu=cortex-a76 (`cargo pi5`, run it on the Pi 5 itself).
# --pi4: build with the v4l2-m2m feature (the hardware H.264 encoder at /dev/video11 of the
#        Pi 4 / 3 / Zero 2) and -C target-cpu=cortex-a72.
# Run it as the normal user: it uses sudo only for the copy when $PREFIX/bin is not writable.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX="${PREFIX:-/usr/local}"
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
if [ "${1:-}" = "--pi5" ]; then
    cargo pi5
elif [ "${1:-}" = "--pi4" ]; then
    cargo pi4
else
    cargo build --release --workspace --bins
fi
SUDO=""
if ! { mkdir -p "$PREFIX/bin" 2>/dev/null && [ -w "$PREFIX/bin" ]; }; then
    SUDO=sudo
fi
$SUDO install -d "$PREFIX/bin"
$SUDO install -m 0755 target/release/vr-stream target/release/vr-receive target/release/setup target/release/quick-bench target/release/dashboard "$PREFIX/bin/"
$SUDO install -m 0755 scripts/fetch-yolo.sh "$PREFIX/bin/vr-stream-fetch-yolo"
# The configuration vr-stream.service runs with; an existing one (your edits) is kept.
if [ ! -e /etc/vr-stream/vr-stream.toml ]; then
    sudo_etc=""
    [ "$(id -u)" -eq 0 ] || sudo_etc=sudo
    $sudo_etc install -D -m 0644 packaging/vr-stream.toml /etc/vr-stream/vr-stream.toml
    echo "installed /etc/vr-stream/vr-stream.toml (set stream.ip, the headset's address)"
fi
echo "installed vr-stream, vr-receive, setup, quick-bench, dashboard and vr-stream-fetch-yolo in $PREFIX/bin"
