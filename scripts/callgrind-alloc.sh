#!/usr/bin/env bash
# Instructions per alloc+free step of the allocator benches' ring loop (1,000,000 steps on each of
# 1, then 2 threads running at once) under callgrind: rdebug::Alloc against plain jemalloc.
# Instruction counts do not drift with the machine's load, so this ratio can be compared across
# commits measured at different times.
#
# usage: scripts/callgrind-alloc.sh   (in a checkout; needs valgrind and jq)
set -euo pipefail
command -v valgrind >/dev/null || { echo "needs valgrind" >&2; exit 2; }
command -v jq >/dev/null || { echo "needs jq" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
exe_of() {
  cargo bench -q --no-run --bench "$1" --message-format=json 2>/dev/null \
    | jq -r 'select(.reason == "compiler-artifact" and .executable != null) | .executable' | tail -1
}
declare -A ir
for t in 1 2; do
  for b in alloc_jemalloc alloc_rdebug; do
    ir[$b.$t]=$(ALLOC_STEPS=1000000 ALLOC_THREADS=$t valgrind --tool=callgrind --callgrind-out-file="$out/cg.$b.$t" \
      --toggle-collect='*Ring*run*' "$(exe_of "$b")" 2>&1 | sed -n 's/.*Collected : *//p')
  done
  awk -v t="$t" -v j="${ir[alloc_jemalloc.$t]}" -v r="${ir[alloc_rdebug.$t]}" 'BEGIN {
    printf "instructions per alloc+free step (callgrind, %d thread%s): jemalloc %.1f, rdebug %.1f, ratio %.3f\n",
      t, (t > 1 ? "s" : ""), j / (1e6 * t), r / (1e6 * t), r / j }'
done
