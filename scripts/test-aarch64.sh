#!/usr/bin/env bash
# Cross-builds the whole workspace (every target: libs, binaries, tests, benches) for
# aarch64-unknown-linux-gnu, the Raspberry Pi's architecture, and runs a representative set
# of tests under qemu-user (scripts/install-cross-deps.sh installs what this needs):
#   - the unit tests of vr-stream, setup and dashboard (parsers, packetizer, rings, config,
#     RTP/SDP, budget, rendering...),
#   - setup/tests/roots.rs (setup's binary on Raspberry Pi OS trees),
#   - dashboard/tests/render.rs (drawing, the stats segment version check),
#   - tests/bad_input.rs, tests/encoder.rs (x264 read back by the host's ffmpeg) and the
#     stages tests that do not depend on speed (pinning/SCHED_FIFO read back, signals,
#     bitrate and IDR requests): whole multi-process pipelines, emulated.
# Left native-only: the tests that count frames against the clock (emulated x264 is too
# slow to keep 60-120 fps, so latest-wins drops frames, correctly), ffmpeg PSNR runs,
# network namespaces, the soak and the benchmarks (they are built, not run).
# Also builds the Pi 5 binaries with -C target-cpu=cortex-a76 (`cargo pi5`, see
# .cargo/config.toml) and runs one under qemu.
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
. scripts/cross-env.sh

cargo build --release --target "$TARGET" --workspace --all-targets
# Every run is --workspace (named test targets are picked from whichever package has
# them): a `-p PACKAGE` run resolves features per package and would rebuild the crates.
if [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    cargo test --release --target "$TARGET" --workspace --lib --test render --test roots --test bad_input --test encoder
    cargo test --release --target "$TARGET" --workspace --test stages -- \
        stages_are_pinned sigint_and_sighup bitrate_and_idr
else
    echo "test-aarch64: no binfmt_misc for aarch64 here (not root?): skipping the tests that start aarch64 children"
    cargo test --release --target "$TARGET" --workspace --lib --test render
fi
cargo pi5 --target "$TARGET" --target-dir target/pi5
qemu-aarch64-static -L / target/pi5/$TARGET/release/vr-stream --print-config >/dev/null
echo "test-aarch64: cross-build and emulated tests passed"
