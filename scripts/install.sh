#!/usr/bin/env bash
# Builds vr-stream and setup (release) and installs them in $PREFIX/bin (default
# /usr/local/bin, where systemd/vr-stream.service expects vr-stream). Run it as the normal
# user: it uses sudo only for the copy when $PREFIX/bin is not writable.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX="${PREFIX:-/usr/local}"
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --workspace --bins
SUDO=""
if ! { mkdir -p "$PREFIX/bin" 2>/dev/null && [ -w "$PREFIX/bin" ]; }; then
    SUDO=sudo
fi
$SUDO install -d "$PREFIX/bin"
$SUDO install -m 0755 target/release/vr-stream target/release/setup "$PREFIX/bin/"
echo "installed vr-stream and setup in $PREFIX/bin"
