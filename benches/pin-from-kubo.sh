#!/usr/bin/env bash
# Issue 5 benchmark: pin a random file (default 256 MiB) from a Kubo origin over loopback with
# pincluster's embedded node, then have a second Kubo peer pin the same file from the same origin.
# Prints both times, the ratio Kubo/us (target >= 1.0) and our peak RSS (VmHWM).
# Usage: benches/pin-from-kubo.sh [MiB]    (WINDOW=n sets the number of outstanding wants)
# Needs scripts/setup-test-deps.sh (the Kubo test peer). Builds in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f .venv/.pincluster-stamp ]; then
  echo "the Kubo test peer is missing: run scripts/setup-test-deps.sh first" >&2
  exit 1
fi
export MIB="${1:-${MIB:-256}}"
cargo build --release -q -p pincluster-ipfs --example pin_from_kubo
exec "${CARGO_TARGET_DIR:-target}/release/examples/pin_from_kubo"
