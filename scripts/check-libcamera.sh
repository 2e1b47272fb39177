#!/usr/bin/env bash
# Compile-checks the `libcamera` feature (CSI cameras) on a machine whose own libcamera is
# too old (Debian 12 has 0.0.3; the libcamera crate 0.7 needs >= 0.4): fetches Debian
# trixie's libcamera-dev 0.4 into the cache (scripts/fetch-debs.sh, system apt sources
# untouched), points pkg-config at it and runs `cargo check --features libcamera`.
# Nothing is linked: the cache has no libcamera runtime for this system.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
if pkg-config --atleast-version=0.4 libcamera 2>/dev/null; then
    cargo check --release --features libcamera --all-targets
    exit 0
fi
ROOT=$(bash scripts/fetch-debs.sh libcamera-dev libcamera0.4)
PC="$ROOT/pc"
mkdir -p "$PC"
for f in "$ROOT"/usr/lib/*/pkgconfig/libcamera*.pc; do
    sed "s|^prefix=/usr|prefix=$ROOT/usr|" "$f" > "$PC/$(basename "$f")"
done
PKG_CONFIG_PATH="$PC${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}" cargo check --release --features libcamera --all-targets
echo "check-libcamera: the libcamera source compiles against libcamera $(PKG_CONFIG_PATH="$PC" pkg-config --modversion libcamera)"
