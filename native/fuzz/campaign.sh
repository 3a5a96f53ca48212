#!/usr/bin/env bash
# A long libFuzzer campaign over the three harnesses, one after the other, at the lowest
# priority: bash native/fuzz/campaign.sh [SECONDS_CONTAINER SECONDS_DECODE SECONDS_ENCODE]
# (0 seconds skips a harness).
# Corpora and crash artifacts go to build/fuzz-campaign/, logs to build/fuzz-campaign/*.log.
# Fork mode keeps going after a finding; every artifact is a regression to add under
# tests/data/fuzz-regressions/<target>/ once fixed.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=build/fuzz-campaign
PY=${PYTHON:-.venv/bin/python}
secs=("${1:-600}" "${2:-3000}" "${3:-1800}")
make -s -C native/fuzz OUT="$PWD/build/fuzz"
mkdir -p "$OUT"
[ -d "$OUT/seeds" ] || "$PY" native/fuzz/seeds.py "$OUT/seeds"
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1
export LSAN_OPTIONS="suppressions=$PWD/native/fuzz/lsan.supp"
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
i=0
for t in fuzz_container fuzz_decode fuzz_encode; do
  if [ "${secs[$i]}" = 0 ]; then i=$((i + 1)); continue; fi
  mkdir -p "$OUT/$t" "$OUT/artifacts-$t"
  cp -n "$OUT/seeds/$t"/* "$OUT/$t/" 2>/dev/null || true
  cp -n tests/data/fuzz-regressions/"$t"/* "$OUT/$t/" 2>/dev/null || true
  echo "campaign: $t for ${secs[$i]} s" >&2
  nice -n 19 build/fuzz/$t "$OUT/$t" -dict=native/fuzz/bpg.dict -max_len=16384 -timeout=30 \
    -rss_limit_mb=2048 -max_total_time="${secs[$i]}" -fork=1 -ignore_crashes=1 \
    -ignore_timeouts=1 -ignore_ooms=1 -artifact_prefix="$OUT/artifacts-$t/" \
    -print_final_stats=1 > "$OUT/$t.log" 2>&1 || echo "campaign: $t exited $?" >&2
  i=$((i + 1))
done
echo "campaign: done" >&2
