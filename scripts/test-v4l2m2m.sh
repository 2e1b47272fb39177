#!/usr/bin/env bash
# Builds and tests the `v4l2-m2m` feature (the V4L2 memory-to-memory H.264 encoder of the
# Raspberry Pi 4 family, crate v4l2r). v4l2r generates its bindings from
# <linux/videodev2.h> and needs a newer one than Debian 12's (6.1 lacks the AV1 controls it
# wraps): Debian trixie's linux-libc-dev is fetched into the cache (scripts/fetch-debs.sh,
# system apt sources untouched) and given to v4l2r through V4L2R_VIDEODEV2_H_PATH.
# Raspberry Pi OS Bookworm's own headers are new enough: there nothing is fetched.
#   1. native: the encoder module's tests with the feature (the pure negotiation tests run
#      without it too), among them the device-open error paths (an absent device, a file
#      that is not a V4L2 device) and the control ids against the kernel header;
#   2. aarch64: cross-build of the binaries with the feature, and the same tests under
#      qemu-user (skipped on an aarch64 machine, where step 1 is the native run).
# No V4L2 encoder exists here: the streaming path is compiled, not run (docs/raspberry-pi.md).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
if ! grep -qs V4L2_CID_STATELESS_AV1_FRAME /usr/include/linux/v4l2-controls.h; then
    ROOT=$(bash scripts/fetch-debs.sh linux-libc-dev)
    export V4L2R_VIDEODEV2_H_PATH="$ROOT/usr/include"
    echo "test-v4l2m2m: kernel headers from $(ls "$ROOT"/../apt/debs/linux-libc-dev_*.deb | xargs -n1 basename)"
fi
cargo test --release --features v4l2-m2m --lib encode::
if [ "$(uname -m)" != "aarch64" ]; then
    . scripts/cross-env.sh
    cargo build --release --target "$TARGET" --features v4l2-m2m --bins
    cargo test --release --target "$TARGET" --features v4l2-m2m --lib encode::
fi
echo "test-v4l2m2m: the v4l2-m2m feature builds and its tests pass"
