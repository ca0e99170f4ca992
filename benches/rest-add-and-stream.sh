#!/usr/bin/env bash
# REST API benchmarks (issue 6), against the release daemon:
#  1. POST /add of one random file of each size given (default 256 and 1024 MiB),
#     each on a fresh daemon: MiB/s and peak RSS above idle (target: memory
#     independent of the file size).
#  2. GET /pins streaming every pin of a pinset of PINS pins (default 1,000,000,
#     preloaded through POST /pins of the Pinning Service API): time, lines and
#     peak RSS above the idle daemon (target < 64 MiB): right after the preload
#     (cold), again (warm), and after a restart on the same data (restarted),
#     each once RSS has settled.
# Usage: [CACHE_MIB=N] benches/rest-add-and-stream.sh [PINS] [MiB...]
# Peak RSS is VmHWM, reset before each measurement through /proc/PID/clear_refs.
set -euo pipefail
cd "$(dirname "$0")/.."
PINS=${1:-1000000}
shift || true
if [ $# -gt 0 ]; then SIZES=("$@"); else SIZES=(256 1024); fi
cargo build --release -q -p pincluster-service
BIN=${CARGO_TARGET_DIR:-target}/release/pincluster-service

work=$(mktemp -d)
cleanup() { kill "$(cat "$work/pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# shellcheck source=benches/daemon.sh
. benches/daemon.sh
kib() { awk -v key="$1:" '$1 == key { print $2 }' "/proc/$PID/status"; }
reset_peak() { echo 5 > "/proc/$PID/clear_refs"; }
# Waits (up to 60 s) until RSS moved less than 1 MiB over 3 s: the idle daemon.
settle() {
  local before now
  before=$(kib VmRSS)
  for _ in $(seq 20); do
    sleep 3; now=$(kib VmRSS)
    [ $(( now > before ? now - before : before - now )) -lt 1024 ] && return
    before=$now
  done
}

echo "== POST /add =="
printf '%8s %10s %10s %16s\n' MiB seconds MiB/s 'peak-idle MiB'
for mib in "${SIZES[@]}"; do
  start_daemon
  head -c "$((mib * 1024 * 1024))" /dev/urandom > "$work/file"
  sleep 1
  idle=$(kib VmRSS); reset_peak
  t=$(curl -sf -u bench:bench-pw -o "$work/add.json" -w '%{time_total}' \
        -F "file=@$work/file" "$REST/add?stream-channels=false")
  peak=$(kib VmHWM)
  rm -f "$work/file"
  printf '%8s %10.2f %10.1f %16.1f\n' "$mib" "$t" "$(python3 -c "print($mib/$t)")" \
    "$(python3 -c "print(($peak-$idle)/1024)")"
done

echo "== GET /pins over $PINS pins =="
start_daemon
TOKEN=$(curl -s -u bench:bench-pw -X POST "$PSA/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
python3 benches/preload.py "$PSA" "$TOKEN" "$PINS"
for run in cold warm restarted; do
  if [ "$run" = restarted ]; then start_daemon keep; fi
  settle
  idle=$(kib VmRSS); reset_peak
  t=$(curl -sf -u bench:bench-pw -o "$work/pins.ndjson" -w '%{time_total}' "$REST/pins")
  peak=$(kib VmHWM)
  lines=$(wc -l < "$work/pins.ndjson")
  printf '%s: streamed %s lines in %.2f s; RSS before %.1f MiB, peak above it %.1f MiB (target < 64)\n' \
    "$run" "$lines" "$t" "$(python3 -c "print($idle/1024)")" "$(python3 -c "print(($peak-$idle)/1024)")"
done
