#!/usr/bin/env bash
# Cross-builds the workspace for the Raspberry Pi 5 (aarch64-unknown-linux-gnu with
# -C target-cpu=cortex-a76, scripts/cross-env.sh; feature v4l2-m2m too) and runs a
# representative set of tests under qemu-user (scripts/install-cross-deps.sh installs what
# this needs):
#   - the unit tests of vr-stream, setup and dashboard (parsers, packetizer, rings, config,
#     RTP/SDP, budget, rendering, the V4L2 M2M encoder's decisions...),
#   - setup/tests/roots.rs (setup's binary on Raspberry Pi OS trees),
#   - dashboard/tests/render.rs (drawing, the stats segment version check),
#   - tests/bad_input.rs, tests/encoder.rs (x264 read back by the host's ffmpeg) and the
#     stages tests that do not depend on speed (pinning/SCHED_FIFO read back, signals,
#     bitrate and IDR requests): whole multi-process pipelines, emulated.
# One build: the binaries it leaves in target/aarch64-unknown-linux-gnu/release are the
# ones scripts/package.sh --prebuilt puts in the arm64 .deb. Only the test targets run here
# are built (the others and the benchmarks are the x86-64 build's: the same source).
# Left native-only: the tests that count frames against the clock (emulated x264 is too
# slow to keep 60-120 fps, so latest-wins drops frames, correctly), ffmpeg PSNR runs,
# network namespaces, the soak and the benchmarks.
# Tests that start aarch64 children (setup's binary, vr-stream's stages) need qemu
# registered in binfmt_misc: this script does that when it can (root).
# On an aarch64 machine (a Pi) there is nothing to emulate: it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
if [ "$(uname -m)" = "aarch64" ]; then
    echo "test-aarch64: this machine is aarch64; the native test run covers it"
    exit 0
fi
. scripts/feature-env.sh
. scripts/cross-env.sh

# Every command is --workspace with the same features (named test targets are picked from
# whichever package has them): a `-p PACKAGE` run, or other features, resolve features
# differently and would rebuild the crates.
FEATURES=(--features vr-stream/v4l2-m2m)
cargo build --release --target "$TARGET" --workspace "${FEATURES[@]}" \
    --lib --bins --test render --test roots --test bad_input --test encoder --test stages
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] ||
    { echo "test-aarch64: no binfmt_misc entry for aarch64 (needs root to register qemu-user)" >&2; exit 1; }
cargo test --release --target "$TARGET" --workspace "${FEATURES[@]}" \
    --lib --test render --test roots --test bad_input --test encoder
cargo test --release --target "$TARGET" --workspace "${FEATURES[@]}" --test stages -- \
    stages_are_pinned sigint_and_sighup bitrate_and_idr
echo "test-aarch64: cross-build and emulated tests passed"
