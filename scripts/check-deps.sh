#!/usr/bin/env bash
# Checks the layering invariants of docs/ARCHITECTURE.md with `cargo tree -i`:
# sled only in state, libp2p only in ipfs, actix-web only in the HTTP crates.
set -euo pipefail
cd "$(dirname "$0")/.."

fail=0
only() { # crate allowed-package...
  local crate=$1; shift
  local users
  users=$(cargo tree --workspace -e normal -i "$crate" --prefix none --depth 1 2>/dev/null \
    | sed -n 's/^\(pincluster-[a-z]*\) .*/\1/p' | sort -u)
  for user in $users; do
    local ok=0
    for allowed in "$@"; do [ "$user" = "$allowed" ] && ok=1; done
    if [ $ok = 0 ]; then echo "check-deps: $user depends on $crate directly; only $* may"; fail=1; fi
  done
}
only sled pincluster-state
only libp2p pincluster-ipfs
only rust-ipfs pincluster-ipfs
only actix-web pincluster-httpcommon pincluster-pinsvc pincluster-restapi pincluster-service
[ $fail = 0 ] && echo "check-deps: layering invariants hold"
exit $fail
