# Sourced (". scripts/feature-env.sh") by scripts/test.sh and scripts/test-aarch64.sh: what
# the two optional features need on a Debian 12 machine, fetched into the cache by
# scripts/fetch-debs.sh (Debian trixie packages, unpacked; the system's apt sources are
# untouched). Raspberry Pi OS Bookworm has both already: there nothing is fetched.
#
# v4l2-m2m: v4l2r generates its bindings from <linux/videodev2.h> and needs a newer one than
#   Debian 12's (6.1 lacks the AV1 controls it wraps): trixie's linux-libc-dev, given to
#   v4l2r through V4L2R_VIDEODEV2_H_PATH (exported).
# libcamera: the libcamera crate 0.7 needs libcamera >= 0.4 (Debian 12 has 0.0.3): trixie's
#   libcamera-dev 0.4 headers, with .pc files pointing into the cache, in
#   VR_LIBCAMERA_PKG_CONFIG_PATH (exported, empty when the system's libcamera will do; give
#   it to pkg-config as PKG_CONFIG_PATH for a `cargo check`/`clippy` with the feature).
#   Nothing can be linked against it: the cache has no libcamera runtime for this system.
if ! grep -qs V4L2_CID_STATELESS_AV1_FRAME /usr/include/linux/v4l2-controls.h; then
    _root=$(bash scripts/fetch-debs.sh linux-libc-dev)
    export V4L2R_VIDEODEV2_H_PATH="$_root/usr/include"
    # v4l2r's build script includes <linux/videodev2.h> from -I$V4L2R_VIDEODEV2_H_PATH but
    # watches $V4L2R_VIDEODEV2_H_PATH/videodev2.h (rerun-if-changed). A watched file that
    # does not exist makes cargo rebuild v4l2r, and vr-stream and every test binary after
    # it, on each invocation (1-2 min per cargo command in CI): give it that file.
    [ -e "$_root/usr/include/videodev2.h" ] || ln -s linux/videodev2.h "$_root/usr/include/videodev2.h"
fi
VR_LIBCAMERA_PKG_CONFIG_PATH=
if ! pkg-config --atleast-version=0.4 libcamera 2>/dev/null; then
    _root=$(bash scripts/fetch-debs.sh libcamera-dev libcamera0.4)
    VR_LIBCAMERA_PKG_CONFIG_PATH="$_root/pc"
    mkdir -p "$VR_LIBCAMERA_PKG_CONFIG_PATH"
    for _f in "$_root"/usr/lib/*/pkgconfig/libcamera*.pc; do
        sed "s|^prefix=/usr|prefix=$_root/usr|" "$_f" >"$VR_LIBCAMERA_PKG_CONFIG_PATH/$(basename "$_f")"
    done
    unset _f
fi
export VR_LIBCAMERA_PKG_CONFIG_PATH
unset _root
