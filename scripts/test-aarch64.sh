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
# Then `cargo clippy -p vr-source --features libcamera` for aarch64 against libcamera 0.7.1's
# arm64 headers (the libcamera source compiled for the Pi's architecture; it runs on x86-64
# in tests/libcamera.rs).
# One build: the binaries it leaves in target/aarch64-unknown-linux-gnu/release are the
# ones scripts/package.sh --prebuilt puts in the arm64 .deb. Only the test targets run here
# are built (the others and the benchmarks are the x86-64 build's: the same source).
# Left native-only: the tests that count frames against the clock (emulated x264 is too
# slow to keep 60-120 fps, so latest-wins drops frames, correctly), ffmpeg PSNR runs,
# network namespaces, the soak and the benchmarks.
# Tests that start aarch64 children (setup's binary, vr-stream's stages) need qemu
# registered in binfmt_misc: this script does that when it can (root).
#
#   scripts/test-aarch64.sh [--build-only | --run-only]
#
# --build-only builds and stops; --run-only runs what a --build-only left (scripts/test.sh
# builds in the background while the x86-64 tests run). With CARGO_TARGET_DIR set, the
# build goes there and the run copies the five programs to target/aarch64-unknown-linux-gnu/
# release, where scripts/package.sh --prebuilt takes them from.
# On an aarch64 machine (a Pi) there is nothing to emulate: it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
MODE=all
case "${1:-}" in
    "") ;;
    --build-only) MODE=build ;;
    --run-only) MODE=run ;;
    *) echo "test-aarch64: unknown argument '$1' (allowed: --build-only, --run-only)" >&2; exit 2 ;;
esac
if [ "$(uname -m)" = "aarch64" ]; then
    echo "test-aarch64: this machine is aarch64; the native test run covers it"
    exit 0
fi
. scripts/feature-env.sh
. scripts/cross-env.sh
# No debug info (the profile's line tables): the arm64 .deb strips it anyway, and leaving it
# out of every crate saves compile and link time on this, CI's longest build (with lld,
# scripts/cross-env.sh: 934 CPU-s instead of 1027, 481 s instead of 534 on two idle CPUs).
# Set for both modes: the run must find the build it left, not rebuild.
export CARGO_PROFILE_RELEASE_DEBUG=false

# Every command is --workspace with the same features (named test targets are picked from
# whichever package has them): a `-p PACKAGE` run, or other features, resolve features
# differently and would rebuild the crates.
FEATURES=(--features vr-stream/v4l2-m2m)
# One selection for the build and the run, so that the run builds nothing more: the unit
# tests of every member and five test targets; the two stages tests that count frames
# against the clock (end_of_file…, missing_realtime_privileges…) are skipped by name.
# Building those test targets builds their packages' programs too (cargo builds a
# package's binaries for its integration tests): all six that scripts/package.sh
# --prebuilt puts in the arm64 .deb. No `cargo build` in between: without the tests'
# dev-dependencies it resolves other features, and rebuilt serde, tokio, str0m… (1m56s),
# after which the test run rebuilt vr-stream again (58 s).
SEL=(--workspace "${FEATURES[@]}" --lib --test render --test roots --test bad_input --test encoder --test stages)
OUT="${CARGO_TARGET_DIR:-target}/$TARGET/release"
PROGRAMS=(vr-stream vr-receive quick-bench setup dashboard)
if [ "$MODE" != run ]; then
    cargo test --release --target "$TARGET" "${SEL[@]}" --no-run
    for p in "${PROGRAMS[@]}"; do
        [ -x "$OUT/$p" ] ||
            { echo "test-aarch64: the test build did not leave $OUT/$p" >&2; exit 1; }
    done
    echo "test-aarch64: built in $OUT"
    # The libcamera feature for the Pi's architecture: vr-source linted (clippy, warnings as
    # errors) against libcamera 0.7.1's arm64 headers from Debian trixie-backports, which
    # fetch-debs.sh unpacks into the cache. A check, not a link: this machine has no arm64
    # libcamera runtime of a matching glibc. Its own target directory: the changed
    # PKG_CONFIG_LIBDIR would make cargo rerun the test build's pkg-config build scripts.
    LC="$(bash scripts/fetch-debs.sh --suite trixie-backports libcamera-dev:arm64 libcamera0.7:arm64)"
    mkdir -p "$LC/pc-arm64"
    for f in "$LC"/usr/lib/aarch64-linux-gnu/pkgconfig/libcamera*.pc; do
        sed "s|^prefix=/usr|prefix=$LC/usr|" "$f" >"$LC/pc-arm64/$(basename "$f")"
    done
    PKG_CONFIG_LIBDIR="$LC/pc-arm64:$PKG_CONFIG_LIBDIR" \
        CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/libcamera-check" \
        cargo clippy --release --target "$TARGET" -p vr-source --features libcamera -- -D warnings
    echo "test-aarch64: vr-source with libcamera checked for $TARGET against $(cat "$LC"/usr/lib/aarch64-linux-gnu/pkgconfig/libcamera.pc | sed -n 's/^Version: //p')"
fi
[ "$MODE" != build ] || exit 0
# Not at the end of a background build: writing them to disk then would start writeback
# under the x86-64 timing tests (docs/testing.md).
if [ "$OUT" != "target/$TARGET/release" ]; then
    mkdir -p "target/$TARGET/release"
    for p in "${PROGRAMS[@]}"; do cp -p "$OUT/$p" "target/$TARGET/release/$p"; done
fi
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] ||
    { echo "test-aarch64: no binfmt_misc entry for aarch64 (needs root to register qemu-user)" >&2; exit 1; }
cargo test --release --target "$TARGET" "${SEL[@]}" -- \
    --skip end_of_file_ends_the_stream --skip missing_realtime_privileges
echo "test-aarch64: cross-build and emulated tests passed"
