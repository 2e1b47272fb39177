#!/usr/bin/env bash
# Builds the Debian packages of vr-stream with cargo-deb ([package.metadata.deb] in
# Cargo.toml: the five binaries and vr-stream-fetch-yolo in /usr/bin, the units in
# /lib/systemd/system, /etc/vr-stream/vr-stream.toml as a conffile, the docs in
# /usr/share/doc/vr-stream; Depends from the binaries' shared libraries).
#
#   scripts/package.sh [--prebuilt] [amd64] [arm64]      (default: both)
#
# amd64 is built natively on x86-64; arm64 natively on a Pi, else cross-built for the Pi 5
# (scripts/cross-env.sh: Cortex-A76, so it does not run on a Pi 4; VR_TARGET_CPU=cortex-a72
# builds one that does; scripts/install-cross-deps.sh installs the cross toolchain and
# libx264-dev:arm64, which dpkg-shlibdeps reads for the arm64 Depends). Both have the
# v4l2-m2m feature (scripts/feature-env.sh). Binaries are stripped. Prints the path of each
# .deb on stdout.
# --prebuilt: package the binaries the last build left in target/ (scripts/test.sh's test
# builds) instead of building them again.
# Installs cargo-deb (cargo install --locked --debug) when it is missing: a debug build
# compiles in ~32 s instead of ~78 s here and packages as fast (11 s for the amd64 .deb
# either way: the work is stripping and compressing).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
    cargo install --locked --debug --quiet "cargo-deb@$CARGO_DEB_VERSION" >&2
fi
PREBUILT=
if [ "${1:-}" = --prebuilt ]; then PREBUILT=1; shift; fi
# shellcheck source=scripts/feature-env.sh
. scripts/feature-env.sh
FEATURES=(--features vr-stream/v4l2-m2m)
build() { # build TARGET_DIR CARGO_ARGS...: builds the binaries, or checks they are there
    local dir="$1"
    shift
    if [ -z "$PREBUILT" ]; then
        cargo build --release --workspace --bins "${FEATURES[@]}" "$@" >&2
    fi
    for b in vr-stream vr-receive quick-bench setup dashboard; do
        [ -x "$dir/$b" ] || { echo "package.sh: --prebuilt: no $dir/$b (build first)" >&2; exit 1; }
    done
}
NATIVE="$(dpkg --print-architecture)"
ARCHES=("$@")
[ ${#ARCHES[@]} -gt 0 ] || ARCHES=(amd64 arm64)
for arch in "${ARCHES[@]}"; do
    case "$arch" in
        amd64 | arm64) ;;
        *) echo "package.sh: unknown architecture '$arch' (allowed: amd64, arm64)" >&2; exit 2 ;;
    esac
    if [ "$arch" = "$NATIVE" ]; then
        build target/release
        cargo deb --no-build --strip --output target/debian/ >&2
    elif [ "$arch" = arm64 ]; then
        (
            # shellcheck source=scripts/cross-env.sh
            . scripts/cross-env.sh
            build "target/$TARGET/release" --target "$TARGET"
            cargo deb --no-build --strip --target "$TARGET" --output target/debian/ >&2
        )
    else
        echo "package.sh: $arch cannot be built on $NATIVE (amd64 on x86-64 only)" >&2
        exit 1
    fi
    VERSION="$(cargo metadata --no-deps --format-version 1 | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "vr-stream"))')"
    echo "$PWD/target/debian/vr-stream_${VERSION}-1_${arch}.deb"
done
