#!/usr/bin/env bash
# What the viewer page's browser tests (tests/web.rs) need: Debian's Chromium, Node.js and
# playwright-core (npm, pinned in tests/web/package-lock.json; it drives the system
# Chromium, no browser download).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
pkgs="chromium"
command -v node >/dev/null 2>&1 || pkgs="$pkgs nodejs"
command -v npm >/dev/null 2>&1 || pkgs="$pkgs npm"
if ! command -v chromium >/dev/null 2>&1 || [ "$pkgs" != "chromium" ]; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
fi
(cd tests/web && npm ci --no-audit --no-fund --loglevel=error)
