#!/usr/bin/env bash
# Builds the Debian packages of vr-stream with cargo-deb ([package.metadata.deb] in
# Cargo.toml: the five binaries and vr-stream-fetch-yolo in /usr/bin, the units in
# /lib/systemd/system, /etc/vr-stream/vr-stream.toml as a conffile, the docs in
# /usr/share/doc/vr-stream; Depends from the binaries' shared libraries).
#
#   scripts/package.sh [amd64] [arm64]      (default: both)
#
# amd64 is built natively on x86-64; arm64 natively on a Pi, else cross-built
# (scripts/cross-env.sh; scripts/install-cross-deps.sh installs the cross toolchain and
# libx264-dev:arm64, which dpkg-shlibdeps reads for the arm64 Depends). The arm64 package is
# built for generic ARMv8-A, so it runs on a Pi 4 and 3 too (`cargo pi5` builds for the
# Cortex-A76 only). Binaries are stripped. Prints the path of each .deb on stdout.
# Installs cargo-deb (cargo install --locked) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
    cargo install --locked --quiet "cargo-deb@$CARGO_DEB_VERSION" >&2
fi
NATIVE="$(dpkg --print-architecture)"
ARCHES=("$@")
[ ${#ARCHES[@]} -gt 0 ] || ARCHES=(amd64 arm64)
for arch in "${ARCHES[@]}"; do
    case "$arch" in
        amd64 | arm64) ;;
        *) echo "package.sh: unknown architecture '$arch' (allowed: amd64, arm64)" >&2; exit 2 ;;
    esac
    if [ "$arch" = "$NATIVE" ]; then
        cargo build --release --workspace --bins >&2
        cargo deb --no-build --strip --output target/debian/ >&2
    elif [ "$arch" = arm64 ]; then
        (
            # shellcheck source=scripts/cross-env.sh
            . scripts/cross-env.sh
            cargo build --release --target "$TARGET" --workspace --bins >&2
            cargo deb --no-build --strip --target "$TARGET" --output target/debian/ >&2
        )
    else
        echo "package.sh: $arch cannot be built on $NATIVE (amd64 on x86-64 only)" >&2
        exit 1
    fi
    VERSION="$(cargo metadata --no-deps --format-version 1 | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "vr-stream"))')"
    echo "$PWD/target/debian/vr-stream_${VERSION}-1_${arch}.deb"
done
