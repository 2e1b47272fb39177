#!/usr/bin/env bash
# Long soak of the pipeline: RSS, open fds and segments sampled every second must not grow.
# Usage: scripts/soak.sh [SECONDS]   (default 600; CI runs the same test for 60 s)
set -euo pipefail
cd "$(dirname "$0")/.."
VR_SOAK_SECONDS="${1:-600}" cargo test --release --test soak -- --nocapture
