# Sourced by the scripts that cross-build for the Raspberry Pi (aarch64) on an x86 machine:
# the rustup target, pkg-config for Debian's multiarch arm64 libraries, bindgen's target,
# the linker, the CPU, and qemu-user as the runner. Sets TARGET. Needs
# scripts/install-cross-deps.sh.
# The code is built for the Raspberry Pi 5's Cortex-A76 (rustc -C target-cpu, what
# `cargo pi5` does on the Pi): such binaries do not run on a Pi 4 (Cortex-A72: no LSE
# atomics). VR_TARGET_CPU=cortex-a72 builds for a Pi 4, VR_TARGET_CPU=generic for any
# ARMv8-A.
TARGET=aarch64-unknown-linux-gnu
rustup target add "$TARGET" >/dev/null
export PKG_CONFIG_ALLOW_CROSS=1
export PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig
export BINDGEN_EXTRA_CLANG_ARGS="--target=aarch64-linux-gnu -I/usr/aarch64-linux-gnu/include"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# Linked by LLVM's lld (package lld) where it is installed, as rustc links for x86-64 since
# 1.90 (its own rust-lld); for aarch64 it runs the cross gcc's GNU ld (GNU ld took 2.1 s to
# link one 109 MB x86-64 test binary, lld 0.36 s). The cross gcc looks for `ld.lld` only in
# its own program path, hence -B with lld's directory.
_lld="$(command -v ld.lld 2>/dev/null || true)"
_link=""
[ -z "$_lld" ] || _link=" -C link-arg=-fuse-ld=lld -C link-arg=-B$(dirname "$(readlink -f "$_lld")")"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-cpu=${VR_TARGET_CPU:-cortex-a76}$_link"
unset _lld _link
# The emulated programs load Debian's multiarch libc6:arm64 (/lib/ld-linux-aarch64.so.1,
# /usr/lib/aarch64-linux-gnu): with the cross toolchain's older copy under
# /usr/aarch64-linux-gnu, pthread_create hangs under qemu-user (seen with qemu 7.2 and
# 10.0), so every test harness would.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64-static -L /"
export QEMU_LD_PREFIX=/

# binfmt_misc: lets an emulated test start aarch64 children (setup's binary).
if [ "$(id -u)" -eq 0 ]; then
    [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
    if [ -e /proc/sys/fs/binfmt_misc/register ] && [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] && [ -f /usr/lib/binfmt.d/qemu-aarch64.conf ]; then
        cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register || true
    fi
fi
