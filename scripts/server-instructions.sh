#!/usr/bin/env bash
# The server's own instructions per request (callgrind), heap sampling on against a build without
# it: examples/webapp (release) under valgrind, POST /sendjson sent by `hey -n N` after a warm-up;
# callgrind's counters are zeroed after the warm-up and dumped after the N requests, so the figure
# covers exactly the measured requests. Unlike the server's CPU time on this shared 2-core machine
# (±10–25% from run to run), an instruction count does not move with what else runs; what still
# varies is where heap samples fall (one per 512 KiB allocated), so each configuration runs
# ROUNDS times.
#   plain            built without `pprof`, RDEBUG unset
#   pprof            built with `pprof` (heap sampling on at 512 KiB), RDEBUG unset: rdebug's
#                    unwinder takes the sampled stacks (from `rdebug::init()` on)
#   pprof-libgcc     the same with RDEBUG_HEAP_UNWIND=libgcc: jemalloc's default, libgcc's
#                    unwinder, takes them
#   pprof-paused     the same build with sampling paused (RDEBUG=memprofilerate=0): what
#                    jemalloc's --enable-prof (and the webapp's route labels, compiled in only with
#                    `pprof`) cost by themselves
#
# usage: scripts/server-instructions.sh [ROUNDS] [REQUESTS]   (default 3 rounds of 3000 requests;
#        about 1 min per run). Needs valgrind, hey and curl. Only 127.0.0.1 is loaded.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
requests=${2:-3000}
case "$rounds$requests" in *[!0-9]*) echo "usage: $0 [ROUNDS] [REQUESTS]" >&2; exit 2 ;; esac
for t in valgrind callgrind_control hey curl; do
  command -v "$t" >/dev/null || { echo "needs $t" >&2; exit 2; }
done
out=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$out"' EXIT
cargo build -q --release --example webapp && cp target/release/examples/webapp "$out/plain"
cargo build -q --release --features pprof --example webapp && cp target/release/examples/webapp "$out/pprof"
body='{"a":1,"b":2}'
port=4093
url="http://127.0.0.1:$port/sendjson"
run() { # name binary [VAR=VALUE...]: RDEBUG unset unless given
  local name=$1 bin=$2 n200 total
  shift 2
  env -u RDEBUG "$@" valgrind --tool=callgrind --callgrind-out-file="$out/cg.%p" "$bin" \
    --addr 127.0.0.1:$port >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 1 120); do
    curl -s -o /dev/null -m 2 -X POST -H 'Content-Type: application/json' -d "$body" "$url" && break
    sleep 0.5
  done
  hey -n 300 -c 4 -m POST -d "$body" -T application/json "$url" >/dev/null 2>&1
  callgrind_control -z "$pid" >/dev/null 2>&1
  n200=$(hey -n "$requests" -c 4 -t 60 -m POST -d "$body" -T application/json "$url" 2>/dev/null \
    | awk '/\[200\]/ {print $2}')
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  # The dump after zeroing: the file whose name ends in a part number.
  total=$(awk '/^(summary|totals):/ {print $2; exit}' "$out"/cg.*.[0-9]* 2>/dev/null || true)
  rm -f "$out"/cg.*
  awk -v name="$name" -v t="${total:-0}" -v n="${n200:-0}" -v r="$r" \
    'BEGIN { if (n > 0 && t > 0) printf "%-15s %8.0f instructions/request  (%d answers, round %d)\n", name, t / n, n, r; else printf "%-15s failed (round %d)\n", name, r }'
}
for r in $(seq 1 "$rounds"); do
  run plain "$out/plain"
  run pprof "$out/pprof"
  run pprof-libgcc "$out/pprof" RDEBUG_HEAP_UNWIND=libgcc
  run pprof-paused "$out/pprof" RDEBUG=memprofilerate=0
done | tee "$out/runs"
awk '$2 ~ /^[0-9]+$/ {s[$1] += $2; n[$1]++; v[$1] = v[$1] " " $2}
  END {
    for (k in s) m[k] = s[k] / n[k]
    for (k in s) printf "%-15s mean %8.0f instructions/request (%s), %.3fx plain\n", k, m[k], substr(v[k], 2), m[k] / m["plain"]
  }' "$out/runs" | sort
