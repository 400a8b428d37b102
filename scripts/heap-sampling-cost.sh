#!/usr/bin/env bash
# What heap sampling (feature `pprof`: jemalloc built with --enable-prof, sampling at Go's 512 KiB)
# costs the allocator benches' ring loop, in instructions per alloc+free step under callgrind
# (1,000,000 steps on each of 1, then 2 threads), against plain jemalloc built without profiling
# and rdebug::Alloc without `pprof`:
#   paused        sampling off (prof.active=false): the cost of --enable-prof itself
#   on, libgcc    sampling on, stacks taken by jemalloc's default (libgcc's _Unwind_Backtrace)
#   on, framehop  sampling on, stacks taken by rdebug's unwinder (what rdebug does)
# Then the cost of one sampled stack: every allocation sampled (rate 1, 20,000 steps), the
# instructions inside jemalloc's prof_backtrace per step, and the CPU time per step (user+sys,
# best of 3 runs of 500,000 steps), with either unwinder, and with rdebug's polled inside
# `rdebug::labels` (`labelled`: the stack hook also interns the label set and appends its
# pseudo-frame).
#
# usage: scripts/heap-sampling-cost.sh   (in a checkout; needs valgrind and jq)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "needs valgrind" >&2; exit 2; }
command -v jq >/dev/null || { echo "needs jq" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
exe_of() {
  cargo bench -q --no-run "$@" --message-format=json 2>/dev/null \
    | jq -r 'select(.reason == "compiler-artifact" and .executable != null) | .executable' | tail -1
}
jem=$(exe_of --bench alloc_jemalloc)
rd=$(exe_of --bench alloc_rdebug)
pp=$(exe_of --features pprof --bench alloc_pprof)
# ir EXE THREADS [ENV...]: instructions per step of the ring loop
ir() {
  local exe=$1 t=$2; shift 2
  env "$@" ALLOC_STEPS=1000000 ALLOC_THREADS="$t" valgrind --tool=callgrind \
    --callgrind-out-file="$out/cg" --toggle-collect='*Ring*run*' "$exe" 2>&1 \
    | sed -n 's/.*Collected : *//p' | awk -v t="$t" '{ printf "%.1f", $1 / (1e6 * t) }'
}
printf '%-28s %10s %10s\n' "instructions per step" "1 thread" "2 threads"
declare -A base
for t in 1 2; do base[$t]=$(ir "$jem" "$t"); done
row() {
  local name=$1; shift
  local a b
  a=$(ir "$@" 1 "${ENVS[@]}"); b=$(ir "$@" 2 "${ENVS[@]}")
  printf '%-28s %10s %10s   (%.3fx, %.3fx jemalloc)\n' "$name" "$a" "$b" \
    "$(echo "$a / ${base[1]}" | bc -l)" "$(echo "$b / ${base[2]}" | bc -l)"
}
printf '%-28s %10s %10s\n' "jemalloc (no profiling)" "${base[1]}" "${base[2]}"
ENVS=(X=1); row "rdebug::Alloc" "$rd"
ENVS=(ALLOC_PROF_RATE=0); row "pprof, sampling paused" "$pp"
ENVS=(ALLOC_PROF_RATE=524288 RDEBUG_HEAP_UNWIND=libgcc); row "pprof, on, libgcc stacks" "$pp"
ENVS=(ALLOC_PROF_RATE=524288); row "pprof, on, framehop stacks" "$pp"
echo
echo "every allocation sampled (rate 1):"
for u in libgcc framehop labelled; do
  e=(ALLOC_PROF_RATE=1); [ "$u" = libgcc ] && e+=(RDEBUG_HEAP_UNWIND=libgcc)
  [ "$u" = labelled ] && e+=(ALLOC_LABEL=route=/bench)
  env "${e[@]}" ALLOC_STEPS=20000 valgrind --tool=callgrind --callgrind-out-file="$out/cg.$u" \
    --toggle-collect='*Ring*run*' "$pp" >/dev/null 2>&1
  bt=$(callgrind_annotate --inclusive=yes --threshold=100 "$out/cg.$u" 2>/dev/null \
    | awk '/:_rjem_je_prof_backtrace / && !n++ { gsub(",", "", $1); print $1 }')
  best=""
  for i in 1 2 3; do
    s=$(/usr/bin/time -o "$out/time" -f '%U %S' env "${e[@]}" ALLOC_STEPS=500000 "$pp" >/dev/null 2>&1 \
      && awk '{ print $1 + $2 }' "$out/time")
    if [ -z "$best" ] || [ "$(echo "$s < $best" | bc -l)" = 1 ]; then best=$s; fi
  done
  printf '  %-9s %8.0f instructions per sampled stack (prof_backtrace), %6.2f us CPU per sampled step\n' \
    "$u" "$(echo "$bt / 20000" | bc -l)" "$(echo "$best * 1000000 / 500000" | bc -l)"
done
