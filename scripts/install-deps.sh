#!/usr/bin/env bash
# Install what building, running and testing vr-stream needs on Debian 12 / Raspberry Pi OS
# (Bookworm): the x264 library and bindgen's clang, ffmpeg (the independent receiver of the
# tests), GStreamer (second receiver in the tests: sdpdemux, openh264dec; the baseline of the
# sender benchmark), tmux (the dashboard's integration test), util-linux (setpriv, mount for
# setup's tests), python3-pip and python3-venv (scripts/fetch-yolo.sh: ONNX Runtime, the
# detectors, their references), python3-jsonschema (the reference validator the quick-bench
# test checks its --json and vr-stream's --json summary with), debootstrap (the Debian trixie
# root with libcamera 0.7 where the libcamera source is built and run: scripts/libcamera-root.sh),
# and a Rust toolchain if none.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    build-essential pkg-config clang libclang-dev libx264-dev \
    ffmpeg gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
    gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad iproute2 nftables procps ca-certificates curl debootstrap dpkg-dev tmux util-linux python3 python3-pip python3-venv python3-jsonschema >/dev/null
if ! command -v cargo >/dev/null 2>&1; then
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
