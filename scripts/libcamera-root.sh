#!/usr/bin/env bash
# Makes (once) and prints a Debian trixie root with libcamera 0.7 (trixie-backports), where
# vr-stream's libcamera source is built and run against libcamera's virtual camera
# (tests/libcamera.rs). Needs root (debootstrap, chroot) and deb.debian.org.
#
#   scripts/libcamera-root.sh            -> prints the root's path
#
# Why a root: Debian 12 has libcamera 0.0.3 (the libcamera crate needs >= 0.4), trixie's
# own 0.4.0 virtual pipeline completes requests with empty metadata (sequence 0, bytesused
# 0), and 0.7 needs glibc 2.38, newer than this machine's (docs/testing.md).
#
# Cache: ${VR_STREAM_CACHE:-~/.cache/vr-stream}/libcamera-root/trixie, outside the
# repository; reused while its stamp matches PACKAGES below. It is built under a temporary
# name and renamed when complete, so an interrupted run leaves no half-made root. The host
# is not changed: apt runs inside the root, in a mount namespace of its own (its /proc and
# /dev mounts end with it).
# Inside: libcamera-tools (cam) and libcamera-dev from trixie-backports; the compilers,
# pkg-config, libclang (bindgen) and libx264-dev that building vr-stream there needs.
set -euo pipefail
cd "$(dirname "$0")/.."
MIRROR=http://deb.debian.org/debian
BACKPORTS=(libcamera-tools libcamera-dev)
PACKAGES=(gcc g++ pkg-config libclang-dev libx264-dev ca-certificates)
STAMP="trixie; backports: ${BACKPORTS[*]}; ${PACKAGES[*]}"
DIR="${VR_STREAM_CACHE:-$HOME/.cache/vr-stream}/libcamera-root"
ROOT="$DIR/trixie"
if [ -f "$ROOT/.vr-stream-root" ] && [ "$(cat "$ROOT/.vr-stream-root")" = "$STAMP" ]; then
    echo "$ROOT"
    exit 0
fi
[ "$(id -u)" = 0 ] || { echo "libcamera-root: needs root (debootstrap, chroot)" >&2; exit 1; }
command -v debootstrap >/dev/null ||
    { echo "libcamera-root: debootstrap missing (apt-get install debootstrap)" >&2; exit 1; }
mkdir -p "$DIR"
TMP="$DIR/trixie.partial"
rm -rf "$TMP"
echo "libcamera-root: making a Debian trixie root in $ROOT (about 2 min)" >&2
debootstrap --variant=minbase trixie "$TMP" "$MIRROR" >&2
echo "deb $MIRROR trixie-backports main" >"$TMP/etc/apt/sources.list.d/backports.list"
# apt inside the root, with /proc and /dev of a private mount namespace.
BACKPORTS="${BACKPORTS[*]}" PACKAGES="${PACKAGES[*]}" unshare -m --propagation private bash -euc '
    R=$1
    mount -t proc proc "$R/proc"
    mount --rbind /dev "$R/dev"
    export DEBIAN_FRONTEND=noninteractive
    chroot "$R" apt-get update -q
    chroot "$R" apt-get install -y -q --no-install-recommends -t trixie-backports $BACKPORTS
    chroot "$R" apt-get install -y -q --no-install-recommends $PACKAGES
    chroot "$R" apt-get clean
' bash "$TMP" >&2
echo "$STAMP" >"$TMP/.vr-stream-root"
rm -rf "$ROOT"
mv "$TMP" "$ROOT"
echo "$ROOT"
