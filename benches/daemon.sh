# Sourced by the bench scripts: `start_daemon` (re)starts the release daemon
# ($BIN) with a fresh config folder in $work/cfg: loopback listeners on free
# ports, user bench:bench-pw on both APIs, one pin worker (preloaded CIDs exist
# nowhere, so workers must not compete for the CPU). Sets REST, PSA and PID.
# `start_daemon keep` restarts on the same folder and data instead.
# CACHE_MIB, when set, is the pinset's cache (state.cache_capacity).
# Request rates are not limited unless RATE_LIMITS=default.
start_daemon() {
  kill "$(cat "$work/pid" 2>/dev/null)" 2>/dev/null || true
  if [ "${1:-}" = keep ]; then
    while kill -0 "$PID" 2>/dev/null; do sleep 0.2; done
  else
    sleep 0.5
    rm -rf "$work/cfg"
    "$BIN" --config-dir "$work/cfg" init >/dev/null
    CACHE_MIB=${CACHE_MIB:-} RATE_LIMITS=${RATE_LIMITS:-} python3 - "$work/cfg/service.json" <<'PY'
import json, os, sys
path = sys.argv[1]
c = json.load(open(path))
for api in ("restapi", "pinsvcapi"):
    c["api"][api]["http_listen_multiaddress"] = "/ip4/127.0.0.1/tcp/0"
    c["api"][api]["basic_auth_credentials"] = {"bench": "bench-pw"}
    if os.environ.get("RATE_LIMITS") != "default":
        # Throughput benches measure the daemon, not its per-client limits.
        for key in ("rate_limit_per_user", "rate_limit_per_address"):
            c["api"][api][key] = {"per_second": 0, "burst": 1}
c["ipfs"]["listen_multiaddress"] = ["/ip4/127.0.0.1/tcp/0"]
c["cluster"]["listen_multiaddress"] = ["/ip4/127.0.0.1/tcp/0"]
c["pin_tracker"]["concurrent_pins"] = 1
c["ipfs"]["pin_timeout"] = "1h"
if os.environ.get("CACHE_MIB"):
    c["state"]["cache_capacity"] = int(os.environ["CACHE_MIB"]) * 1024 * 1024
json.dump(c, open(path, "w"))
PY
  fi
  RUST_LOG=warn "$BIN" --config-dir "$work/cfg" daemon > "$work/out" 2>> "$work/err" & echo $! > "$work/pid"
  for _ in $(seq 200); do grep -q '^ready' "$work/out" 2>/dev/null && break; sleep 0.1; done
  REST=$(sed -n 's/^restapi listening on //p' "$work/out")
  PSA=$(sed -n 's/^pinsvcapi listening on //p' "$work/out")
  PID=$(cat "$work/pid")
}
