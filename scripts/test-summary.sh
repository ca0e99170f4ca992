#!/usr/bin/env bash
# Runs a `cargo test` command and closes with one line totalling every test
# binary's results ("N passed, N failed"), so a reader of the last line sees
# the whole suite, not the last binary. Exits with cargo's status.
set -uo pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
awk '/^test result:/ {
       for (i = 1; i <= NF; i++) {
         if ($(i+1) ~ /^passed;?$/) p += $i
         if ($(i+1) ~ /^failed;?$/) f += $i
       }
     }
     END { printf "pincluster: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
