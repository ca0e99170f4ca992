#!/usr/bin/env bash
# PSA load benchmark (issue 4): the release daemon holding N pins (default
# 100,000), measured with wrk: authenticated GET /pins (default query, and every
# status with limit 10), durable POST /pins of fresh CIDs, and GET /health as the
# floor, all in the same run. Prints req/s and the ratios to /health.
# Usage: benches/psa-load.sh [PINS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
PINS=${1:-100000}
SECS=${2:-10}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
cargo build --release -q -p pincluster-service
BIN=${CARGO_TARGET_DIR:-target}/release/pincluster-service

work=$(mktemp -d)
trap 'kill $(cat "$work/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
# shellcheck source=benches/daemon.sh
. benches/daemon.sh
start_daemon
URL=$PSA
TOKEN=$(curl -s -u bench:bench-pw -X POST "$URL/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

echo "preloading $PINS pins through POST /pins ..."
python3 benches/preload.py "$URL" "$TOKEN" "$PINS" "$work/fresh.txt"

cat > "$work/post.lua" <<LUA
local bodies = {}
local n = 0
for line in io.lines("$work/fresh.txt") do n = n + 1; bodies[n] = line end
local i = 0
local thread_count = 0
function setup(thread) thread_count = thread_count + 1; thread:set("offset", thread_count * 1000000) end
function init() i = offset % n end
request = function()
  i = i + 1
  return wrk.format("POST", "/pins", {["Authorization"] = "Bearer $TOKEN", ["Content-Type"] = "application/json"}, bodies[(i % n) + 1])
end
LUA

run() { # name path [lua]
  local out
  if [ -n "${3:-}" ]; then
    out=$(wrk -t2 -c32 -d"${SECS}s" -s "$3" "$URL$2")
  else
    out=$(wrk -t2 -c32 -d"${SECS}s" -H "Authorization: Bearer $TOKEN" "$URL$2")
  fi
  local rps
  rps=$(echo "$out" | sed -n 's/^Requests\/sec: *//p')
  local non2xx
  non2xx=$(echo "$out" | sed -n 's/.*Non-2xx or 3xx responses: *//p')
  echo "$1 $rps ${non2xx:-0}"
}
health=$(run health /health)
list_default=$(run list_default /pins)
list_all=$(run list_all '/pins?status=queued,pinning,pinned,failed&limit=10')
post=$(run post /pins "$work/post.lua")
echo
printf '%-14s %12s %10s %10s\n' endpoint req/s non-2xx ratio
h=$(echo "$health" | cut -d' ' -f2)
for line in "$health" "$list_default" "$list_all" "$post"; do
  set -- $line
  printf '%-14s %12s %10s %10.2f\n' "$1" "$2" "$3" "$(python3 -c "print($2/$h)")"
done
echo "targets: list_default >= 0.50, post >= 0.30 (x /health)"
