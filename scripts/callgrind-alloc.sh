#!/usr/bin/env bash
# Instructions per alloc+free step of the allocator benches' ring loop (1 thread, 1,000,000 steps)
# under callgrind: rdebug::Alloc against plain jemalloc. Instruction counts do not drift with the
# machine's load, so this ratio can be compared across commits measured at different times.
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
for b in alloc_jemalloc alloc_rdebug; do
  ir[$b]=$(ALLOC_STEPS=1000000 valgrind --tool=callgrind --callgrind-out-file="$out/cg.$b" \
    --toggle-collect='*Ring*run*' "$(exe_of "$b")" 2>&1 | sed -n 's/.*Collected : *//p')
done
awk -v j="${ir[alloc_jemalloc]}" -v r="${ir[alloc_rdebug]}" 'BEGIN {
  printf "instructions per alloc+free step (callgrind, 1 thread): jemalloc %.1f, rdebug %.1f, ratio %.3f\n",
    j / 1e6, r / 1e6, r / j }'
