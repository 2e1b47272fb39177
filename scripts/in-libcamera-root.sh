#!/usr/bin/env bash
# Runs a command in the libcamera root (scripts/libcamera-root.sh), with libcamera's virtual
# cameras described by a configuration file and the /dev/udmabuf test double preloaded.
# Needs root (mount namespace, chroot).
#
#   scripts/in-libcamera-root.sh ROOT [--cameras FILE] [--bind DIR]... -- COMMAND [ARG]...
#
# --cameras FILE  libcamera's virtual pipeline configuration (virtual.yaml: cameras with
#                 supported_formats, test_pattern or frames), seen at the path the virtual
#                 pipeline handler reads it from (/usr/share/libcamera/pipeline/virtual/).
# --bind DIR      DIR of this machine at the same path inside (the repository, the Rust
#                 toolchain, a test's directory); repeatable.
#
# Everything happens in a mount namespace of its own: /proc, /dev, /sys and the binds are
# mounted there and vanish with it, and /dev/shm is a private tmpfs, so the shared-memory
# segments of the stages inside never mix with this machine's (a test checks it is empty
# afterwards by running `ls /dev/shm` inside). The network is this machine's.
#
# The /dev/udmabuf test double (tests/support/udmabuf_double.c, built here into the root)
# stands in for a dma-buf allocator: this CI kernel has none, the Pi has /dev/dma_heap.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$#" -ge 1 ] || { echo "usage: $0 ROOT [--cameras FILE] [--bind DIR]... -- COMMAND..." >&2; exit 2; }
ROOT="$1"
shift
CAMERAS=
BINDS=()
while [ "$#" -gt 0 ]; do
    case "$1" in
        --cameras) CAMERAS="$(realpath "$2")"; shift 2 ;;
        --bind) BINDS+=("$(realpath "$2")"); shift 2 ;;
        --) shift; break ;;
        *) echo "in-libcamera-root: unknown argument '$1' (allowed: --cameras FILE, --bind DIR, --)" >&2; exit 2 ;;
    esac
done
[ "$#" -ge 1 ] || { echo "in-libcamera-root: no command after --" >&2; exit 2; }
[ -f "$ROOT/.vr-stream-root" ] || { echo "in-libcamera-root: $ROOT is not a root made by scripts/libcamera-root.sh" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "in-libcamera-root: needs root (mount namespace, chroot)" >&2; exit 1; }
DOUBLE=usr/local/lib/vr-stream-udmabuf-double.so
SRC=tests/support/udmabuf_double.c
if [ ! -f "$ROOT/$DOUBLE" ] || [ "$SRC" -nt "$ROOT/$DOUBLE" ]; then
    cc -shared -fPIC -O2 -Wall -Wextra -Werror -o "$ROOT/$DOUBLE.tmp" "$SRC" -ldl
    mv "$ROOT/$DOUBLE.tmp" "$ROOT/$DOUBLE"
fi
exec unshare -m --propagation private bash -euc '
    R=$1 CAMERAS=$2 NBINDS=$3
    shift 3
    mount -t proc proc "$R/proc"
    mount --rbind /dev "$R/dev"
    mount -t tmpfs -o size=1g,mode=1777 tmpfs "$R/dev/shm"
    mount --rbind /sys "$R/sys"
    for _ in $(seq "$NBINDS"); do
        mkdir -p "$R$1"
        mount --rbind "$1" "$R$1"
        shift
    done
    VIRTUAL=/usr/share/libcamera/pipeline/virtual
    mkdir -p "$R$VIRTUAL"
    touch "$R$VIRTUAL/virtual.yaml"
    if [ -n "$CAMERAS" ]; then mount --bind "$CAMERAS" "$R$VIRTUAL/virtual.yaml"; fi
    exec chroot "$R" env LD_PRELOAD=/'"$DOUBLE"' "$@"
' bash "$ROOT" "$CAMERAS" "${#BINDS[@]}" "${BINDS[@]}" "$@"
