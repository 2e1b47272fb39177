#!/usr/bin/env bash
# Fetch the real camera clip the tests and benchmarks use, and derive the 720p60 Y4M.
#
# Source: Debian package `opencv-doc` (4.6.0+dfsg-12, Apache-2.0 AND BSD-3-Clause), file
# /usr/share/doc/opencv-doc/opencv4/html/box.mp4.gz: a 15 s handheld indoor camera clip,
# 640x480 at 29.97 fps (see ../shared/ASSETS.md). Nothing is installed: the .deb is downloaded
# with `apt-get download` and unpacked with dpkg-deb into the cache.
#
# Output (outside the repository), in $VR_STREAM_ASSETS (default ~/.cache/vr-stream/assets):
#   box.mp4            the original clip (sha256 checked)
#   box-720p60.y4m     1280x720 I420, 60 fps, 600 frames: scaled to 1280x960, centre-cropped
#                      to 1280x720, retimed to 60 fps and followed by itself reversed, so the
#                      600 frames have no scene cut (~830 MB)
#
# Usage: scripts/fetch-assets.sh        (idempotent: does nothing when the outputs are there)
# Needs: apt-get (Debian), dpkg-deb, ffmpeg, sha256sum.
set -euo pipefail

CACHE="${VR_STREAM_ASSETS:-$HOME/.cache/vr-stream/assets}"
MP4_SHA256=62b744b99403f899707c43398a3822441add6160379ab6dd6c12bde9e3075f8d
FRAMES=600
mkdir -p "$CACHE"
cd "$CACHE"

if ! echo "$MP4_SHA256  box.mp4" | sha256sum -c --status 2>/dev/null; then
    work=$(mktemp -d "$CACHE/deb.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    echo "fetch-assets: downloading opencv-doc (~96 MB) for box.mp4" >&2
    (cd "$work" && apt-get download opencv-doc >/dev/null 2>&1) || {
        echo "fetch-assets: 'apt-get download opencv-doc' failed (run 'apt-get update' first?)" >&2
        exit 1
    }
    dpkg-deb --fsys-tarfile "$work"/opencv-doc_*.deb |
        tar -x -C "$work" ./usr/share/doc/opencv-doc/opencv4/html/box.mp4.gz
    gunzip -c "$work/usr/share/doc/opencv-doc/opencv4/html/box.mp4.gz" >"$work/box.mp4"
    if ! echo "$MP4_SHA256  $work/box.mp4" | sha256sum -c --status; then
        echo "fetch-assets: box.mp4 checksum mismatch (expected $MP4_SHA256)" >&2
        exit 1
    fi
    mv "$work/box.mp4" box.mp4
fi

Y4M=box-720p60.y4m
# 1280*720*3/2 bytes per frame + "FRAME\n"; header is one line.
frame_bytes=$((1280 * 720 * 3 / 2 + 6))
if [ -f "$Y4M" ]; then
    hdr=$(head -c 200 "$Y4M" | head -n 1 | wc -c)
    want=$((hdr + FRAMES * frame_bytes))
    have=$(stat -c %s "$Y4M")
    [ "$have" -eq "$want" ] && { echo "$CACHE/$Y4M"; exit 0; }
    echo "fetch-assets: $Y4M has $have bytes, expected $want: regenerating" >&2
fi
tmp="$Y4M.tmp.$$"
ffmpeg -nostdin -loglevel fatal -y -i box.mp4 -filter_complex \
    "[0:v]scale=1280:960,crop=1280:720,setpts=N/(60*TB),split[a][b];[b]reverse[r];[a][r]concat=n=2:v=1:a=0,trim=end_frame=${FRAMES},format=yuv420p[out]" \
    -map "[out]" -r 60 -f yuv4mpegpipe -strict -1 "$tmp"
mv "$tmp" "$Y4M"
echo "$CACHE/$Y4M"
