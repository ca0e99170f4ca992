#!/usr/bin/env bash
# Hostile HTTP clients (issue 17): the daemon on loopback with its default
# limits, a well-behaved client pinning and listing on both APIs, first alone,
# then while 5,000 idle and 200 trickling connections are held against each
# API. Prints error rates, p50/p99 latency for both phases and the daemon's RSS.
# Usage: benches/hostile-http.sh [SECONDS] [IDLE] [TRICKLE]
# BIN=path/to/pincluster-service uses that binary instead of a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-30}
IDLE=${2:-5000}
TRICKLE=${3:-200}
# Two APIs' worth of connections on each side, plus room.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p pincluster-service
  BIN=${CARGO_TARGET_DIR:-target}/release/pincluster-service
fi

work=$(mktemp -d)
trap 'kill $(cat "$work/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
# shellcheck source=benches/daemon.sh
. benches/daemon.sh
RATE_LIMITS=default start_daemon
echo "daemon $PID: PSA $PSA, REST $REST; fd limit $(ulimit -n)"
timeout $((SECS * 2 + 120)) python3 benches/hostile-http.py "$PSA" "$REST" "$PID" "$SECS" "$IDLE" "$TRICKLE"
