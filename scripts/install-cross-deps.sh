#!/usr/bin/env bash
# What scripts/test-aarch64.sh needs on a Debian 12 x86-64 machine: the aarch64 cross
# compilers (C, and C++ for libcamera-sys's shim in the libcamera check) and C library, qemu-user-static (runs the aarch64 tests), the arm64 x264
# library through Debian multiarch (pkg-config finds it in /usr/lib/aarch64-linux-gnu) and
# LLVM's lld, the cross link's linker (scripts/cross-env.sh).
# Nothing to do on an aarch64 machine.
set -euo pipefail
[ "$(uname -m)" = "aarch64" ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    $SUDO dpkg --add-architecture arm64
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static binfmt-support libx264-dev:arm64 lld >/dev/null
if command -v rustup >/dev/null 2>&1 || [ -f "$HOME/.cargo/env" ]; then
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
    rustup target add aarch64-unknown-linux-gnu >/dev/null
fi
