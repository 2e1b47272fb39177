#!/usr/bin/env bash
# Tests the Debian packages that scripts/package.sh builds
# (`scripts/test-package.sh [--prebuilt] [amd64] [arm64]`, default both; --prebuilt is given
# to package.sh; scripts/test.sh tests amd64 while the aarch64 build is still running):
#   arm64 (cross-built here): dpkg-deb -I / -c: architecture, Depends (libx264-164, libc6),
#     the six programs in /usr/bin as AArch64 executables, the three units, the conffile,
#     the docs;
#   amd64: installed on this machine with dpkg -i, then /usr/bin/vr-stream --version, a
#     60-frame stream with the installed configuration
#     (`vr-stream --config /etc/vr-stream/vr-stream.toml --frames 60 --ip 127.0.0.1`),
#     `systemd-analyze verify` of the installed units, nothing enabled, nothing outside the
#     package's own files changed under /etc, /lib/systemd, /usr/lib/systemd, /usr/bin;
#     then dpkg --purge, after which those trees are as before.
# Needs root for dpkg -i (CI runs as root); refuses to touch a vr-stream package that is
# already installed. Exit 0 when every check passed; each failure says what.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "test-package: FAIL: $*" >&2; exit 1; }
ok() { echo "test-package: ok: $*"; }
PREBUILT=()
if [ "${1:-}" = --prebuilt ]; then PREBUILT=(--prebuilt); shift; fi
ARCHES=("$@")
[ ${#ARCHES[@]} -gt 0 ] || ARCHES=(amd64 arm64)
for a in "${ARCHES[@]}"; do
    case "$a" in
        amd64 | arm64) ;;
        *) echo "test-package: unknown argument '$a' (allowed: --prebuilt first, amd64, arm64)" >&2; exit 2 ;;
    esac
done
want() { [[ " ${ARCHES[*]} " == *" $1 "* ]]; }
if want amd64; then
    [ "$(id -u)" = 0 ] || fail "needs root to install the amd64 package with dpkg -i"
    if dpkg-query -W -f '${Status}' vr-stream 2>/dev/null | grep -q installed; then
        fail "a vr-stream package is installed on this machine already: not touching it (dpkg --purge vr-stream first)"
    fi
fi
mapfile -t DEBS < <(bash scripts/package.sh "${PREBUILT[@]}" "${ARCHES[@]}")
[ ${#DEBS[@]} -eq ${#ARCHES[@]} ] || fail "scripts/package.sh made ${#DEBS[@]} .deb for ${#ARCHES[@]} architectures: ${DEBS[*]}"
declare -A DEB
for i in "${!ARCHES[@]}"; do
    [ -f "${DEBS[$i]}" ] || fail "scripts/package.sh made no .deb for ${ARCHES[$i]}: ${DEBS[$i]}"
    DEB[${ARCHES[$i]}]="${DEBS[$i]}"
done
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

PROGRAMS="vr-stream vr-receive quick-bench setup dashboard vr-stream-fetch-yolo"
UNITS="vr-stream.service vr-stream-governor.service vr-stream-wifi.service"
check_contents() { # check_contents DEB ARCH
    local deb="$1" arch="$2"
    dpkg-deb -I "$deb" >"$WORK/info"
    dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' >"$WORK/files"
    [ "$(dpkg-deb -f "$deb" Architecture)" = "$arch" ] || fail "$deb: Architecture is not $arch"
    local dep
    dep="$(dpkg-deb -f "$deb" Depends)"
    for d in libc6 libx264-164; do
        grep -q "\b$d\b" <<<"$dep" || fail "$deb: Depends '$dep' lacks $d"
    done
    for p in $PROGRAMS; do grep -qx "/usr/bin/$p" "$WORK/files" || fail "$deb: no /usr/bin/$p"; done
    for u in $UNITS; do grep -qx "/lib/systemd/system/$u" "$WORK/files" || fail "$deb: no unit $u"; done
    grep -qx /etc/vr-stream/vr-stream.toml "$WORK/files" || fail "$deb: no /etc/vr-stream/vr-stream.toml"
    grep -qx /usr/share/doc/vr-stream/README.md "$WORK/files" || fail "$deb: no docs"
    grep -q conffiles "$WORK/info" || fail "$deb: no conffiles"
    dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles | grep -qx /etc/vr-stream/vr-stream.toml ||
        fail "$deb: /etc/vr-stream/vr-stream.toml is not a conffile"
    if dpkg-deb --ctrl-tarfile "$deb" | tar -tf - | grep -qE 'postinst|preinst|prerm|postrm'; then
        fail "$deb: has maintainer scripts (installing must change nothing else)"
    fi
    ok "$deb: $arch, Depends: $dep; $(grep -c . "$WORK/files") entries"
}
if want arm64; then
    check_contents "${DEB[arm64]}" arm64
    dpkg-deb -x "${DEB[arm64]}" "$WORK/arm64"
    for p in vr-stream vr-receive quick-bench setup dashboard; do
        readelf -h "$WORK/arm64/usr/bin/$p" | grep -q "Machine:.*AArch64" || fail "arm64 /usr/bin/$p is not an AArch64 executable"
    done
    ok "the arm64 programs are AArch64 executables"
fi
want amd64 || exit 0
# From here on this script may have installed the package: removed whatever the outcome.
trap 'rm -rf "$WORK"; dpkg --purge vr-stream >/dev/null 2>&1 || true' EXIT
AMD64="${DEB[amd64]}"
check_contents "$AMD64" amd64

# What the install may touch: only the package's own files.
snapshot() {
    find /etc /lib/systemd /usr/lib/systemd /usr/bin -xdev \( -type f -o -type l \) \
        -not -path '/etc/ld.so.cache' -print0 2>/dev/null | sort -z | xargs -0 sha256sum 2>/dev/null || true
}
snapshot >"$WORK/before"
dpkg -i "$AMD64" >/dev/null || fail "dpkg -i $AMD64"
snapshot >"$WORK/after"
dpkg -L vr-stream | sort >"$WORK/owned"
diff <(awk '{print $2}' "$WORK/before") <(awk '{print $2}' "$WORK/after") | sed -n 's/^> //p' >"$WORK/added" || true
while read -r f; do
    # (With a merged /usr, /lib/systemd is /usr/lib/systemd: the same file twice.)
    grep -qx "$f" "$WORK/owned" || grep -qx "${f#/usr}" "$WORK/owned" || fail "installing added $f, which is not the package's"
done <"$WORK/added"
changed="$(join -j 2 <(sort -k2 "$WORK/before") <(sort -k2 "$WORK/after") | awk '$2 != $3 {print $1}')"
[ -z "$changed" ] || fail "installing changed files it does not own: $changed"
[ -s "$WORK/added" ] || fail "installing added no file"
ok "dpkg -i added only its own $(grep -c . "$WORK/added") files and changed none"
[ ! -e /etc/systemd/system/multi-user.target.wants/vr-stream.service ] || fail "vr-stream.service got enabled"

v="$(/usr/bin/vr-stream --version)" || fail "/usr/bin/vr-stream --version"
ok "/usr/bin/vr-stream --version: $v"
mkdir -p "$WORK/run"
out="$(cd "$WORK/run" && HOME="$WORK/run" /usr/bin/vr-stream --config /etc/vr-stream/vr-stream.toml --frames 60 --ip 127.0.0.1 2>&1)" ||
    fail "vr-stream --config /etc/vr-stream/vr-stream.toml --frames 60 --ip 127.0.0.1: $out"
grep -q "frames captured 60" <<<"$out" || fail "the installed vr-stream did not stream 60 frames: $out"
ok "vr-stream with the installed configuration streamed 60 frames"
for u in $UNITS; do
    systemd-analyze verify "/lib/systemd/system/$u" || fail "systemd-analyze verify $u"
done
ok "systemd-analyze verify: $UNITS"

dpkg --purge vr-stream >/dev/null || fail "dpkg --purge vr-stream"
snapshot >"$WORK/purged"
diff "$WORK/before" "$WORK/purged" >"$WORK/left" || fail "after the purge the system differs: $(cat "$WORK/left")"
[ ! -e /etc/vr-stream ] || fail "/etc/vr-stream is left after the purge"
ok "dpkg --purge left the system as before"
