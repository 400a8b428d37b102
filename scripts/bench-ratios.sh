#!/usr/bin/env bash
# Runs rdebug's criterion benches and prints every cost next to its baseline, as ratios of
# criterion's median point estimates (target/criterion/<group>/<id>/new/estimates.json).
#
# usage: scripts/bench-ratios.sh [ROUNDS] [--callgrind]
#   ROUNDS       how many times to run everything (default 3). The two allocator benches are
#                separate binaries, run back to back and in alternating order each round; every
#                ratio is taken within a round, and min / median / max over the rounds is printed.
#   --callgrind  also count the instructions of 1,000,000 alloc+free steps on one thread under
#                valgrind (exact and immune to machine noise), rdebug::Alloc vs plain jemalloc.
#
# Each round also runs the paired cross-check (alloc_rdebug with ALLOC_PAIRED: both allocators in
# one process, alternating 100,000-step bursts) and the reads bench under
# _RJEM_MALLOC_CONF=narenas:1 and narenas:4, for the cost per jemalloc arena.
#
# Not run by CI: it takes several minutes and wants a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3
callgrind=0
for a in "$@"; do
  case "$a" in
    --callgrind) callgrind=1 ;;
    ''|*[!0-9]*) echo "usage: $0 [ROUNDS] [--callgrind]" >&2; exit 2 ;;
    *) rounds=$a ;;
  esac
done
command -v jq >/dev/null || { echo "needs jq" >&2; exit 2; }

crit=target/criterion
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# median point estimate in ns of <group>/<id> (criterion writes an id "a/b" as "a_b")
median() { jq -r '.median.point_estimate' "$crit/$1/$2/new/estimates.json"; }

# bench NAME [criterion args...]: run one bench binary quietly, failing loudly.
bench() {
  local b=$1; shift
  cargo bench -q --features _bench --bench "$b" -- "$@" >/dev/null 2>"$out/$b.err" || { cat "$out/$b.err" >&2; exit 1; }
}

exe_of() {
  cargo bench -q --features _bench --no-run --bench "$1" --message-format=json 2>/dev/null \
    | jq -r 'select(.reason == "compiler-artifact" and .executable != null) | .executable' | tail -1
}

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1); $(date -u +%Y-%m-%dT%H:%MZ)"
echo "$(rustc --version); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo bench -q --features _bench --no-run --bench alloc_rdebug --bench alloc_jemalloc --bench reads 2>/dev/null
paired_exe=$(exe_of alloc_rdebug)

for r in $(seq 1 "$rounds"); do
  if (( r % 2 )); then order="alloc_jemalloc alloc_rdebug"; else order="alloc_rdebug alloc_jemalloc"; fi
  for b in $order; do bench "$b"; done
  ALLOC_PAIRED=400 "$paired_exe" >"$out/paired"
  bench reads
  arenas=$(sed -n 's/^arenas in use: //p' "$out/reads.err" | tail -1)
  {
    for t in 1thread 2threads; do
      echo "R alloc/$t $(median alloc_jemalloc "$t") $(median alloc_rdebug "$t")"
    done
    awk '{ printf "Q alloc_paired/%sthr %s\n", $2, $9 }' "$out/paired"
    echo "R memstats/$arenas $(median memstats "baseline_$arenas") $(median memstats "rdebug_$arenas")"
    echo "R memstats+rss/$arenas $(median memstats "baseline_rss_$arenas") $(median memstats "rdebug_$arenas")"
    echo "R sched_stats $(median sched_stats by_hand) $(median sched_stats rdebug)"
    echo "R sched_stats+proc $(median sched_stats by_hand_proc) $(median sched_stats rdebug)"
    echo "V alloc_counters/8threads $(median alloc_counters 8threads)"
    echo "V tick/sched_gc/$arenas $(median tick "sched_gc_$arenas")"
    echo "V tick/detail/$arenas $(median tick "detail_$arenas")"
    echo "V tick/idle/$arenas $(median tick "idle_$arenas")"
  } >"$out/round$r"
  for n in 1 4; do
    _RJEM_MALLOC_CONF=narenas:$n bench reads 'memstats|tick'
    {
      echo "R memstats/$n $(median memstats "baseline_$n") $(median memstats "rdebug_$n")"
      echo "R memstats+rss/$n $(median memstats "baseline_rss_$n") $(median memstats "rdebug_$n")"
      echo "V tick/sched_gc/$n $(median tick "sched_gc_$n")"
      echo "V tick/detail/$n $(median tick "detail_$n")"
      echo "V tick/idle/$n $(median tick "idle_$n")"
    } >>"$out/round$r"
  done
  echo "round $r of $rounds done (load $(cut -d' ' -f1 /proc/loadavg))" >&2
done

echo
echo "R: rdebug / baseline, medians in ns; V: rdebug alone, ns; Q: ratio measured directly"
printf '%-24s %12s %12s %8s   %s\n' what baseline rdebug ratio "min / median / max over $rounds rounds"
cat "$out"/round* | awk '
  function sort(a, m,   i, j, t) { for (i = 2; i <= m; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t } }
  {
    k = $2; if (!(k in n)) { order[++count] = k; kind[k] = $1 }
    i = ++n[k]
    if ($1 == "R") { b[k, i] = $3; v[k, i] = $4; x[k, i] = $4 / $3 }
    else if ($1 == "V") { v[k, i] = $3 }
    else { x[k, i] = $3 }
  }
  END {
    for (o = 1; o <= count; o++) {
      k = order[o]; m = n[k]; mid = int((m + 1) / 2)
      split("", bb); split("", vv); split("", xx)
      for (i = 1; i <= m; i++) { bb[i] = b[k, i]; vv[i] = v[k, i]; xx[i] = x[k, i] }
      if (kind[k] == "R") {
        sort(bb, m); sort(vv, m); sort(xx, m)
        printf "%-24s %12.1f %12.1f %8.3f   %.3f / %.3f / %.3f\n", k, bb[mid], vv[mid], xx[mid], xx[1], xx[mid], xx[m]
      } else if (kind[k] == "V") {
        sort(vv, m)
        printf "%-24s %12s %12.1f %8s   %.1f / %.1f / %.1f ns\n", k, "-", vv[mid], "-", vv[1], vv[mid], vv[m]
      } else {
        sort(xx, m)
        printf "%-24s %12s %12s %8.3f   %.3f / %.3f / %.3f\n", k, "-", "-", xx[mid], xx[1], xx[mid], xx[m]
      }
    }
  }'

if (( callgrind )); then
  echo
  bash scripts/callgrind-alloc.sh   # the script cd-ed to the repository root above
fi
