#!/usr/bin/env bash
# A libFuzzer campaign over the fuzz targets of crates/fuzz (see its lib.rs for the list).
#
#   benches/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      default: 60 s, every target
#   MERGE=1 benches/fuzz.sh 1800                          a long campaign, then minimize the
#                                                         committed corpora with what it found
#                                                         (at most CORPUS_BUDGET bytes of finds
#                                                         per target, default 24 KiB)
#
# Harness: libFuzzer through the `libfuzzer-sys` crate, on the stable toolchain: the code is
# instrumented with LLVM's SanitizerCoverage pass (`-Cpasses=sancov-module`, the flags cargo-fuzz
# uses without a sanitizer), which needs no nightly. There is no AddressSanitizer (that needs
# nightly), so what is found are panics (overflow checks are on), aborts, hangs (-timeout) and
# memory blow-ups (-rss_limit_mb, and the campaign binary aborts on any single allocation over
# 256 MiB).
#
# Installs nothing: libfuzzer-sys builds libFuzzer's C++ sources with the system's g++ into the
# campaign's own target folder (target/fuzz-campaign, or FUZZ_TARGET_DIR). Working corpora grow
# there too (target/fuzz-campaign/corpus/<target>); a crash is written to
# crates/fuzz/regressions/<target>/, where `make test` replays it. Runs one job at a time.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
fuzz_dir=crates/fuzz
target_dir=${FUZZ_TARGET_DIR:-$PWD/target/fuzz-campaign}
triple=$(rustc -vV | sed -n 's/^host: //p')

if [ $# -gt 0 ]; then
  targets=("$@")
else
  # The target names, in the order of TARGETS in crates/fuzz/src/lib.rs.
  mapfile -t targets < <(sed -n 's/.*Target { name: "\([a-z_0-9]*\)".*/\1/p' "$fuzz_dir/src/lib.rs")
fi

echo "building the instrumented campaign binary (first build: several minutes)..." >&2
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing" \
  CARGO_TARGET_DIR="$target_dir" \
  cargo build --release --locked --quiet --manifest-path "$fuzz_dir/campaign/Cargo.toml" --target "$triple"
# --target keeps RUSTFLAGS off build scripts and proc macros.
bin="$target_dir/$triple/release/pincluster-fuzz-campaign"

printf '%-14s %8s %12s %10s %8s %s\n' target seconds execs execs/s corpus result
status=0
for target in "${targets[@]}"; do
  work="$target_dir/corpus/$target"
  regressions="$fuzz_dir/regressions/$target"
  log="$target_dir/logs/$target.log"
  mkdir -p "$work" "$regressions" "$(dirname "$log")"
  start=$(date +%s)
  result=ok
  FUZZ_TARGET="$target" "$bin" "$work" "$fuzz_dir/corpus/$target" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$regressions/" -print_final_stats=1 >"$log" 2>&1 || result="CRASH (see $log)"
  elapsed=$(( $(date +%s) - start ))
  # The final stats when it ran to the end; otherwise the last status line before the crash.
  execs=$(sed -n 's/^stat::number_of_executed_units: //p' "$log" | tail -1)
  if [ -z "$execs" ]; then
    execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
  fi
  execs=${execs:-0}
  rate=$(( execs / (elapsed > 0 ? elapsed : 1) ))
  units=$(find "$work" -type f | wc -l)
  printf '%-14s %8s %12s %10s %8s %s\n' "$target" "$elapsed" "$execs" "$rate" "$units" "$result"
  [ "$result" = ok ] || status=1
  rmdir "$regressions" 2>/dev/null || true

  if [ "${MERGE:-0}" = 1 ]; then
    # Minimize: the seeds, plus the inputs of the committed and working corpora that add coverage.
    fresh="$target_dir/merge/$target"
    rm -rf "$fresh" && mkdir -p "$fresh"
    cp "$fuzz_dir/corpus/$target"/seed-* "$fresh/" 2>/dev/null || true
    FUZZ_TARGET="$target" "$bin" -set_cover_merge=1 -timeout=10 -rss_limit_mb=2048 "$fresh" \
      "$fuzz_dir/corpus/$target" "$work" >"$log.merge" 2>&1
    # Keep the committed corpus small: the seeds, then the smallest finds within the budget.
    budget=${CORPUS_BUDGET:-24576}
    total=$(cat "$fresh"/seed-* 2>/dev/null | wc -c)
    find "$fresh" -type f ! -name 'seed-*' -printf '%s %p\n' | sort -n | while read -r size path; do
      if [ $((total + size)) -le "$budget" ]; then total=$((total + size)); else rm "$path"; fi
    done
    rm -rf "${fuzz_dir:?}/corpus/$target" && cp -r "$fresh" "$fuzz_dir/corpus/$target"
  fi
done
exit $status
