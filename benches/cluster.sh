#!/usr/bin/env bash
# Cluster benchmark (issue 13), all in one run on this machine, release build:
#  1. durable POST /pins of fresh CIDs (wrk, 32 connections) against a single
#     peer, then against the leader and a follower of a 3-peer cluster: req/s
#     and the ratios to the single peer;
#  2. kill -9 of the leader -> the first successful POST /pins on a survivor;
#  3. a dead holder: 1,000 small DAGs allocated to 2 of 3 peers (metric TTL
#     3 s, repin_delay 5 s); kill -9 of the holder that is not the leader ->
#     all 1,000 re-allocated and pinned again on two live peers;
#  4. a learner joining a peer that holds LEARNER_PINS pins (default 100,000):
#     time until it holds them all, and its peak RSS.
# Usage: benches/cluster.sh [SECONDS] [LEARNER_PINS]
#   (ONLY=throughput, ONLY=repair or ONLY=learner runs that part alone; throughput includes the failover)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
LEARNER_PINS=${2:-100000}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
cargo build --release -q -p pincluster-service
BIN=${CARGO_TARGET_DIR:-target}/release/pincluster-service
SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')

work=$(mktemp -d)
trap 'for p in "$work"/*/pid; do kill -9 "$(cat "$p")" 2>/dev/null || true; done; rm -rf "$work"' EXIT

# start_peer NAME [BOOTSTRAP [learner]]: a release daemon in $work/NAME; sets the
# files $work/NAME/{pid,out} and prints nothing. SNAPSHOT_EVERY, when set, is
# cluster.raft_snapshot_threshold; IMPORT, a `state import` file loaded first.
start_peer() {
  local dir=$work/$1
  mkdir -p "$dir"
  "$BIN" --config-dir "$dir/cfg" init >/dev/null
  python3 - "$dir/cfg/service.json" "$SECRET" "${2:-}" "${3:-}" <<'PY'
import json, os, sys
path, secret, bootstrap, learner = sys.argv[1:5]
c = json.load(open(path))
for api in ("restapi", "pinsvcapi"):
    c["api"][api]["http_listen_multiaddress"] = "/ip4/127.0.0.1/tcp/0"
    c["api"][api]["basic_auth_credentials"] = {"bench": "bench-pw"}
c["ipfs"]["listen_multiaddress"] = ["/ip4/127.0.0.1/tcp/0"]
c["pin_tracker"]["concurrent_pins"] = 1
c["cluster"].update({"secret": secret, "listen_multiaddress": ["/ip4/127.0.0.1/tcp/0"],
                     "monitor_ping_interval": "1s", "metric_ttl": "3s", "repin_delay": "5s"})
if bootstrap:
    c["cluster"]["bootstrap"] = [bootstrap]
c["cluster"]["learner"] = learner == "learner"
if os.environ.get("SNAPSHOT_EVERY"):
    c["cluster"]["raft_snapshot_threshold"] = int(os.environ["SNAPSHOT_EVERY"])
    c["cluster"]["raft_trailing_logs"] = 10
json.dump(c, open(path, "w"))
PY
  [ -n "${IMPORT:-}" ] && "$BIN" --config-dir "$dir/cfg" state import "$IMPORT" >/dev/null
  RUST_LOG=warn,pincluster_consensus=info "$BIN" --config-dir "$dir/cfg" daemon > "$dir/out" 2>> "$dir/err" & echo $! > "$dir/pid"
  for _ in $(seq 300); do grep -q '^ready' "$dir/out" 2>/dev/null && break; sleep 0.1; done
}
psa() { sed -n 's/^pinsvcapi listening on //p' "$work/$1/out"; }
rest() { sed -n 's/^restapi listening on //p' "$work/$1/out"; }
cluster_addr() { sed -n 's/^cluster listening on //p' "$work/$1/out" | head -1; }
peer_id() { sed -n 's/^ready: peer //p' "$work/$1/out"; }
count() { curl -s -u bench:bench-pw "$(rest "$1")/allocations" | wc -l; }
start_three() { # FIRST SECOND THIRD: a 3-peer cluster, the others joining FIRST; waits until all are up
  start_peer "$1"
  start_peer "$2" "$(cluster_addr "$1")"
  start_peer "$3" "$(cluster_addr "$1")"
  for _ in $(seq 300); do
    [ "$(curl -s -u bench:bench-pw "$(rest "$1")/peers" | grep -c '"error":""')" = 3 ] && break; sleep 0.2
  done
}
role() { # role of peer $2 as $1 sees it
  curl -s -u bench:bench-pw "$(rest "$1")/peers" | python3 -c "
import json, sys
for line in sys.stdin:
    p = json.loads(line)
    if p['id'] == '$(peer_id "$2")': print(p.get('role', ''))"
}

python3 - "$work/fresh.txt" <<'PY'
import base64, hashlib, json, sys
with open(sys.argv[1], "w") as f:
    for i in range(3_000_000):
        d = hashlib.sha256(b"cluster-bench-%d" % i).digest()
        cid = "b" + base64.b32encode(bytes([1, 0x55, 0x12, 0x20]) + d).decode().lower().rstrip("=")
        f.write(json.dumps({"cid": cid}) + "\n")
PY

post() { # NAME OFFSET: wrk POST /pins of fresh CIDs from line OFFSET; prints req/s and non-2xx
  local url
  url=$(psa "$1")
  cat > "$work/post.lua" <<LUA
local bodies = {}
local n = 0
for line in io.lines("$work/fresh.txt") do n = n + 1; bodies[n] = line end
local i = 0
local thread_count = 0
function setup(thread) thread_count = thread_count + 1; thread:set("offset", $2 + thread_count * 400000) end
function init() i = offset end
request = function()
  i = i + 1
  return wrk.format("POST", "/pins", {["Authorization"] = "Basic YmVuY2g6YmVuY2gtcHc=", ["Content-Type"] = "application/json"}, bodies[(i % n) + 1])
end
LUA
  local out
  out=$(wrk -t2 -c32 -d"${SECS}s" -s "$work/post.lua" "$url/pins")
  echo "$(echo "$out" | sed -n 's/^Requests\/sec: *//p') $(echo "$out" | sed -n 's/.*Non-2xx or 3xx responses: *//p')"
}

if [ -z "${ONLY:-}" ] || [ "${ONLY:-}" = throughput ]; then
echo "== durable POST /pins, ${SECS}s each, 32 connections"
start_peer single
single=$(post single 0)
single_pins=$(count single)
kill "$(cat "$work/single/pid")"
start_three a b c
leader=""; follower=""
for p in a b c; do
  if [ "$(role a $p)" = leader ]; then leader=$p; elif [ -z "$follower" ]; then follower=$p; fi
done
to_leader=$(post "$leader" 1000000)
to_follower=$(post "$follower" 2000000)
printf '%-22s %10s %8s %6s\n' target req/s non-2xx ratio
for row in "single-peer:$single" "cluster-leader:$to_leader" "cluster-follower:$to_follower"; do
  name=${row%%:*}; vals=${row#*:}; rps=${vals%% *}; bad=${vals#* }
  printf '%-22s %10s %8s %6.2f\n' "$name" "$rps" "${bad:-0}" "$(python3 -c "print(${rps:-0}/${single%% *})")"
done

echo "== disk use (sled folder, raft log purged behind snapshots every 5000 entries)"
for p in single "$leader"; do
  [ "$p" = single ] && pins=$single_pins || pins=$(count "$p")
  bytes=$(du -sb "$work/$p/cfg/data/pinset" | cut -f1)
  echo "$p: $pins pins, $((bytes / 1048576)) MiB, $((bytes / (pins + 1))) bytes per pin"
done

echo "== kill -9 of the leader ($leader) -> first successful write on $follower"
kill -9 "$(cat "$work/$leader/pid")"
start=$(date +%s.%N)
url=$(psa "$follower")
n=0
until curl -sf -o /dev/null -u bench:bench-pw -H 'content-type: application/json' \
    -d "{\"cid\":\"$(sed -n "$((2900000 + n))p" "$work/fresh.txt" | python3 -c 'import json,sys; print(json.load(sys.stdin)["cid"])')\"}" \
    --max-time 30 "$url/pins"; do n=$((n + 1)); sleep 0.02; done
echo "first write after the leader's kill -9: $(python3 -c "print(round($(date +%s.%N) - $start, 2))") s"
for p in a b c; do kill -9 "$(cat "$work/$p/pid")" 2>/dev/null || true; done
fi
[ "${ONLY:-}" = throughput ] && exit 0

if [ -z "${ONLY:-}" ] || [ "${ONLY:-}" = repair ]; then
echo "== a dead holder's pins: 1,000 DAGs on it and one other peer of 3, metric TTL 3 s, repin_delay 5 s"
start_three r0 r1 r2
victim=""
for p in r1 r2; do [ "$(role r0 $p)" != leader ] && victim=$p && break; done
# Every pin on the victim and r0, so that the victim's death moves all 1,000 to the
# third peer, which fetches them from r0. Each add is retried until it is taken
# (allocation needs every peer's first metrics).
query="replication-min=2&replication-max=2&user-allocations=$(peer_id $victim),$(peer_id r0)"
seq 1000 | xargs -P 8 -I{} sh -c "head -c 2048 /dev/urandom > $work/add-{}; \
  until curl -sf -u bench:bench-pw -F file=@$work/add-{} '$(rest r0)/add?$query' >/dev/null; do sleep 0.2; done"
# held SURVIVORS...: how many pins at least two of the given peers hold (pinned), and how many in all.
held() {
  curl -s -u bench:bench-pw "$(rest r0)/pins" | python3 -c "
import json, sys
live = set(sys.argv[1:])
pins = [json.loads(line) for line in sys.stdin if line.strip()]
ok = sum(1 for p in pins if sum(1 for k, v in p['peer_map'].items() if k in live and v['status'] == 'pinned') >= 2)
print(ok, len(pins))" "$@"
}
all="$(peer_id r0) $(peer_id r1) $(peer_id r2)"
# shellcheck disable=SC2086
until [ "$(held $all)" = "1000 1000" ]; do sleep 1; done
held_by_victim=$(curl -s -u bench:bench-pw "$(rest r0)/allocations" | grep -c "$(peer_id $victim)" || true)
survivors=""
for p in r0 r1 r2; do [ "$p" != "$victim" ] && survivors="$survivors $(peer_id $p)"; done
kill -9 "$(cat "$work/$victim/pid")"
start=$(date +%s.%N)
# shellcheck disable=SC2086
until [ "$(held $survivors)" = "1000 1000" ]; do sleep 0.5; done
echo "$held_by_victim pins of the killed holder re-allocated and pinned on two live peers after" \
  "$(python3 -c "print(round($(date +%s.%N) - $start, 1))") s (aim: 3 + 5 + 10 s)"
for p in r0 r1 r2; do kill -9 "$(cat "$work/$p/pid")" 2>/dev/null || true; done
fi

[ -n "${ONLY:-}" ] && [ "${ONLY:-}" != learner ] && exit 0

echo "== a learner catching up $LEARNER_PINS pins"
# The holder's pins are imported offline (`state import`), as an operator
# restores a backup: far faster than posting them, and the same pinset. The
# holder then puts them in its first snapshot, which the learner receives.
# LEARNER_SNAPSHOT_EVERY sets the holder's raft_snapshot_threshold.
python3 - "$work/pins.ndjson" "$LEARNER_PINS" <<'PY'
import base64, hashlib, json, sys
with open(sys.argv[1], "w") as f:
    f.write('{"format":"pincluster-state","version":1}\n')
    for i in range(int(sys.argv[2])):
        d = hashlib.sha256(b"bench-%d" % i).digest()
        cid = "b" + base64.b32encode(bytes([1, 0x55, 0x12, 0x20]) + d).decode().lower().rstrip("=")
        t = 1_700_000_000_000 + i
        f.write(json.dumps({"cid": cid, "mode": "recursive", "replication_factor_min": -1,
            "replication_factor_max": -1, "user_allocations": [], "allocations": [], "expire_at": None,
            "created": t, "holders": [{"user": "bench", "name": f"pin-{i}", "meta": {}, "origins": [],
            "created": t}]}, separators=(",", ":")) + "\n")
PY
IMPORT=$work/pins.ndjson SNAPSHOT_EVERY=${LEARNER_SNAPSHOT_EVERY:-} start_peer big
until grep -q 'pins from before the cluster log are in a snapshot' "$work/big/err"; do sleep 0.5; done
start=$(date +%s.%N)
start_peer learner "$(cluster_addr big)" learner
until [ "$(count learner)" -ge "$LEARNER_PINS" ]; do sleep 1; done
echo "learner holds $LEARNER_PINS pins after $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s;" \
  "peak RSS $(awk '/VmHWM/ {print int($2/1024)}' "/proc/$(cat "$work/learner/pid")/status") MiB"
grep -c 'snapshot installed' "$work/learner/err" >/dev/null && echo "(through a snapshot)" || echo "(through the log)"
