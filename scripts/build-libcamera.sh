#!/usr/bin/env bash
# Builds vr-stream with the libcamera feature inside the libcamera root
# (scripts/libcamera-root.sh: Debian trixie, libcamera 0.7), for tests/libcamera.rs. Needs
# root. Prints the directory of the programs (target/libcamera/release).
#
#   scripts/build-libcamera.sh
#
# This machine's Debian 12 cannot link libcamera >= 0.4 (it needs glibc 2.38), so the
# feature is built in the root, with this machine's Rust toolchain bound in at the same
# paths. To build only what the feature changes (libcamera-sys, libcamera, vr-source,
# vr-stream: ~2 min instead of ~8), target/libcamera starts from the x86-64 test build's
# dependencies in target/release (scripts/test.sh's build step): the same compiler, the same
# paths, the same environment and the same feature resolution (a test target is selected,
# so dev-dependencies unify as in the test build) make cargo find them fresh.
# The dependencies' compiled crates are hard links (no copy of ~5 GB: a fresh unit's files are
# only read); fingerprints and build-script outputs, which cargo rewrites in place, are
# copies (~1 GB), and what the feature changes is left out, so that nothing this build
# writes changes target/release.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
# The host's feature environment (V4L2R_VIDEODEV2_H_PATH), passed in unchanged: a different
# value would make cargo rerun v4l2r's build script.
. scripts/feature-env.sh
ROOT="$(bash scripts/libcamera-root.sh)"
# Every crate is downloaded here, on this machine, and the build in the root is --offline:
# the root has only Debian's CA certificates, so a registry reached through a proxy or
# mirror with a CA of its own, which this machine trusts, failed there ("SSL certificate
# problem: self-signed certificate in certificate chain", downloading bindgen for
# libcamera-sys). ~/.cargo, where they land, is bound into the root.
cargo fetch --locked --target "$(rustc -vV | sed -n 's/^host: //p')" >&2
SRC=target/release
DST=target/libcamera/release
if [ -d "$SRC/deps" ]; then
    mkdir -p "$DST/deps" "$DST/build" "$DST/.fingerprint"
    # What the feature changes (the libcamera crates, vr-source, vr-stream and its
    # programs, which the root builds itself): left out.
    ours='^(lib)?(vr[-_]s(ource|tream)|libcamera|vr[-_]receive|quick[-_]bench)'
    find "$SRC/deps" -maxdepth 1 -type f \( -name '*.rlib' -o -name '*.rmeta' -o -name '*.so' -o -name '*.d' \) -printf '%f\n' |
        grep -Ev "$ours" | while read -r f; do
        [ -e "$DST/deps/$f" ] || ln "$SRC/deps/$f" "$DST/deps/$f"
    done
    for d in "$SRC"/build/* "$SRC"/.fingerprint/*; do
        name="$(basename "$d")"
        kind="$(basename "$(dirname "$d")")"
        echo "$name" | grep -Eq "$ours" && continue
        [ -e "$DST/$kind/$name" ] && continue
        # Copies, not links: cargo rewrites fingerprints and build-script outputs in place.
        cp -a "$d" "$DST/$kind/$name"
    done
fi
LINTED=(env RUSTC_WORKSPACE_WRAPPER="$(command -v clippy-driver)"
    CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__")
BINDS=(--bind "$PWD" --bind "$HOME/.cargo" --bind "$HOME/.rustup")
FEATURE_ENV=()
if [ -n "${V4L2R_VIDEODEV2_H_PATH:-}" ]; then
    BINDS+=(--bind "$(dirname "$V4L2R_VIDEODEV2_H_PATH")")
    FEATURE_ENV+=(V4L2R_VIDEODEV2_H_PATH="$V4L2R_VIDEODEV2_H_PATH")
fi
bash scripts/in-libcamera-root.sh "$ROOT" "${BINDS[@]}" -- \
    env -C "$PWD" HOME="$HOME" PATH="$HOME/.cargo/bin:/usr/bin:/bin" \
    "${FEATURE_ENV[@]}" CARGO_TARGET_DIR=target/libcamera \
    "${LINTED[@]}" cargo test --offline --release --workspace --features vr-stream/v4l2-m2m,vr-stream/libcamera \
    --test libcamera --no-run >&2
for p in vr-stream quick-bench; do
    [ -x "$DST/$p" ] || { echo "build-libcamera: the build did not leave $DST/$p" >&2; exit 1; }
done
echo "$PWD/$DST"
