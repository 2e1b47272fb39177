# Sourced (". scripts/feature-env.sh") by the scripts that build (test.sh, test-aarch64.sh,
# build-libcamera.sh, package.sh): what the optional features need on a Debian 12 machine,
# fetched into the cache by scripts/fetch-debs.sh (Debian trixie packages, unpacked; the
# system's apt sources are untouched). Raspberry Pi OS Bookworm's header is new enough:
# there nothing is fetched.
#
# v4l2-m2m: v4l2r generates its bindings from <linux/videodev2.h> and needs a newer one than
#   Debian 12's (6.1 lacks the AV1 controls it wraps): trixie's linux-libc-dev, given to
#   v4l2r through V4L2R_VIDEODEV2_H_PATH (exported).
# libcamera: not here. Debian 12 cannot link libcamera >= 0.4; the feature is built and run
#   in a Debian trixie root (scripts/libcamera-root.sh, scripts/build-libcamera.sh), and
#   checked for aarch64 against trixie-backports' arm64 headers (scripts/test-aarch64.sh).
if ! grep -qs V4L2_CID_STATELESS_AV1_FRAME /usr/include/linux/v4l2-controls.h; then
    _root=$(bash scripts/fetch-debs.sh linux-libc-dev)
    export V4L2R_VIDEODEV2_H_PATH="$_root/usr/include"
    # v4l2r's build script includes <linux/videodev2.h> from -I$V4L2R_VIDEODEV2_H_PATH but
    # watches $V4L2R_VIDEODEV2_H_PATH/videodev2.h (rerun-if-changed). A watched file that
    # does not exist makes cargo rebuild v4l2r, and vr-stream and every test binary after
    # it, on each invocation (1-2 min per cargo command in CI): give it that file.
    [ -e "$_root/usr/include/videodev2.h" ] || ln -s linux/videodev2.h "$_root/usr/include/videodev2.h"
fi
unset _root
