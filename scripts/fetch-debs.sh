#!/usr/bin/env bash
# Downloads Debian packages from another suite (default: trixie) into a cache directory and
# unpacks them there, without touching the system's apt sources: apt runs with its own
# source list, lists and cache under the cache directory.
#   scripts/fetch-debs.sh [--suite trixie] PKG[:ARCH] ...   -> prints the unpacked root
# Cache: ${VR_STREAM_CACHE:-~/.cache/vr-stream}/debs/SUITE/{root,apt}.
set -euo pipefail
SUITE=trixie
if [ "${1:-}" = "--suite" ]; then SUITE="$2"; shift 2; fi
[ "$#" -gt 0 ] || { echo "usage: $0 [--suite SUITE] PKG[:ARCH]..." >&2; exit 2; }
CACHE="${VR_STREAM_CACHE:-$HOME/.cache/vr-stream}/debs/$SUITE"
APTDIR="$CACHE/apt"
ROOT="$CACHE/root"
mkdir -p "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial" "$APTDIR/debs" "$ROOT"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $SUITE main" > "$APTDIR/sources.list"
APT=(-o "Dir::Etc::SourceList=$APTDIR/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
     -o "Dir::State::Lists=$APTDIR/lists" -o "Dir::Cache=$APTDIR/cache"
     -o "APT::Architectures::=amd64" -o "APT::Architectures::=arm64" -o "APT::Sandbox::User=root")
# Refresh the package lists at most once a day; each .deb is unpacked once.
if [ -z "$(find "$APTDIR/lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
    apt-get "${APT[@]}" update -qq >&2
fi
cd "$APTDIR/debs"
for p in "$@"; do
    name="${p%%:*}"
    if ! ls "${name}"_*.deb >/dev/null 2>&1; then
        apt-get "${APT[@]}" download "$p/$SUITE" >&2
    fi
done
# Each .deb is unpacked once (a stamp per file name): every script that sources
# feature-env.sh runs this, and unpacking again rewrote the same headers each time, while
# scripts/test.sh's background aarch64 build may be reading them.
mkdir -p "$ROOT/.unpacked"
for d in "$APTDIR"/debs/*.deb; do
    stamp="$ROOT/.unpacked/$(basename "$d")"
    [ -e "$stamp" ] && continue
    dpkg-deb -x "$d" "$ROOT"
    touch "$stamp"
done
echo "$ROOT"
