#!/usr/bin/env bash
# Trustless gateway benchmark (issue 16), release daemon on loopback:
#  1. a MIB MiB file (default 256) added through the REST API (pinned), then fetched as
#     ?format=car with curl: MiB/s and the daemon's peak RSS during the transfer (VmRSS polled
#     every 20 ms), against reading the same blocks straight from the block store (every block
#     file of the DAG read and sha2-256 checked, as the node's own reads are) in the same run.
#     Aim: gateway / store >= 0.7.
#  2. wrk on ?format=raw of a small block against wrk on /health, same listener, same
#     connections: req/s of each and their ratio (aim >= 0.5).
# Usage: [BIN=path] [MIB=256] [DURATION=10s] [CONNECTIONS=16] benches/gateway.sh
#   Without BIN it builds the daemon (no LTO, in /work/target-release2). KEEP=1 keeps the work
#   folder (logs).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
  echo "wrk is missing: installing it with apt-get (or install it yourself and rerun)" >&2
  apt-get install -y wrk >/dev/null || { echo "cannot install wrk" >&2; exit 1; }
fi
if [ -z "${BIN:-}" ]; then
  CARGO_PROFILE_RELEASE_LTO=false CARGO_TARGET_DIR=/work/target-release2 \
    cargo build --release -q -p pincluster-service --bin pincluster-service
  BIN=/work/target-release2/release/pincluster-service
fi
MIB=${MIB:-256}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-16}
work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [ -n "${KEEP:-}" ]; then echo "work folder kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

"$BIN" --config-dir "$work" init >/dev/null
cat >"$work/service.json" <<JSON
{
  "cluster": { "peername": "bench", "listen_multiaddress": ["/ip4/127.0.0.1/tcp/0"] },
  "api": {
    "restapi": { "http_listen_multiaddress": "/ip4/127.0.0.1/tcp/0", "max_upload_bytes": 68719476736 },
    "pinsvcapi": null,
    "gateway": { "http_listen_multiaddress": "/ip4/127.0.0.1/tcp/0", "max_concurrent_per_client": 1024,
                 "rate_limit_per_address": { "per_second": 0, "burst": 1 } }
  },
  "ipfs": { "listen_multiaddress": ["/ip4/127.0.0.1/tcp/0"], "bootstrap": [] },
  "pin_tracker": { "gc_interval": "0s" }
}
JSON
"$BIN" --config-dir "$work" daemon >"$work/stdout" 2>"$work/stderr" &
pid=$!
for _ in $(seq 1 600); do grep -q '^ready:' "$work/stdout" 2>/dev/null && break; sleep 0.1; done
grep -q '^ready:' "$work/stdout" || { echo "the daemon did not start:" >&2; tail "$work/stderr" >&2; exit 1; }
rest=$(sed -n 's/^restapi listening on //p' "$work/stdout")
gw=$(sed -n 's/^gateway listening on //p' "$work/stdout")

head -c $((MIB * 1024 * 1024)) /dev/urandom >"$work/big.bin"
echo small block >"$work/small.txt"
add() { curl -sf -X POST "$rest/add" -F "file=@$1" | sed -n 's/.*"cid":"\([^"]*\)".*/\1/p' | head -1; }
big=$(add "$work/big.bin")
small=$(add "$work/small.txt")
rm "$work/big.bin"
echo "gateway benchmark: ${MIB} MiB file $big, small block $small, daemon $BIN"

# 1a. The block store, read directly: every block file (only this DAG and the small file are
# there), each read whole and hashed.
sync
store=$(WORK="$work" python3 - <<'PY'
import hashlib, os, time
root = os.path.join(os.environ["WORK"], "data", "ipfs", "blockstore")
files = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".data")]
start, total = time.monotonic(), 0
for path in files:
    with open(path, "rb") as handle:
        data = handle.read()
    hashlib.sha256(data).digest()
    total += len(data)
elapsed = time.monotonic() - start
print(f"{total / 1048576 / elapsed:.1f} {len(files)}")
PY
)
store_rate=${store% *}

# 1b. The same DAG as a CAR through the gateway, with the daemon's RSS polled meanwhile.
peak_file="$work/peak"
(peak=0; while kill -0 "$pid" 2>/dev/null; do
   rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
   [ "${rss:-0}" -gt "$peak" ] && peak=$rss && echo "$peak" >"$peak_file"
   sleep 0.02
 done) &
poller=$!
rss_before=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
read -r car_bytes car_seconds < <(curl -sf -o /dev/null -w '%{size_download} %{time_total}\n' "$gw/ipfs/$big?format=car")
kill "$poller" 2>/dev/null || true
wait "$poller" 2>/dev/null || true
rss_peak=$(cat "$peak_file" 2>/dev/null || echo "$rss_before")
car_rate=$(python3 -c "print(f'{$car_bytes / 1048576 / $car_seconds:.1f}')")
echo "CAR (format=car, dag-scope=all): $car_bytes bytes in ${car_seconds}s = $car_rate MiB/s"
echo "block store read + sha2-256:     $store_rate MiB/s"
python3 -c "print(f'ratio gateway/store: {$car_rate / $store_rate:.2f} (aim >= 0.7)')"
echo "daemon RSS: $((rss_before / 1024)) MiB before, peak $((rss_peak / 1024)) MiB during the CAR"

# 2. Small raw blocks against /health.
rps() { wrk -t2 -c"$CONNECTIONS" -d"$DURATION" "$@" | awk '/^Requests\/sec/ {print $2}'; }
raw_rps=$(rps -H 'Accept: application/vnd.ipld.raw' "$gw/ipfs/$small")
health_rps=$(rps "$gw/health")
echo "wrk ${CONNECTIONS} connections, $DURATION: format=raw $raw_rps req/s, /health $health_rps req/s"
python3 -c "print(f'ratio raw/health: {$raw_rps / $health_rps:.2f} (aim >= 0.5)')"
