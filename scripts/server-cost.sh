#!/usr/bin/env bash
# What the debug server and heap sampling cost a real server: examples/webapp under `hey`, in four
# configurations taken in turn each round: built without `pprof` (RDEBUG unset), built with
# `pprof` (heap sampling on, RDEBUG unset), with the debug server idle (RDEBUG=http=...), and while
# a CPU profile runs. Prints each configuration's mean requests/s and every run.
#
# usage: scripts/server-cost.sh [ROUNDS]   (default 20; hey and the server share the machine's
#        cores, so one run varies by +-15% on 2 cores: take many rounds). Needs hey and curl.
# Only 127.0.0.1 is loaded; every hey run is bounded in time; servers are killed after each run.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-20}
case "$rounds" in ''|*[!0-9]*) echo "usage: $0 [ROUNDS]" >&2; exit 2 ;; esac
command -v hey >/dev/null || { echo "needs hey (apt-get install hey)" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo build -q --release --example webapp && cp target/release/examples/webapp "$out/plain"
cargo build -q --release --features pprof --example webapp && cp target/release/examples/webapp "$out/pprof"
body='{"a":1,"b":2}'
run() { # name binary rdebug profile?
  local name=$1 bin=$2 cfg=$3 prof=$4 port=4090 pid rps
  if [ -z "$cfg" ]; then env -u RDEBUG "$bin" --addr 127.0.0.1:$port >/dev/null 2>&1 &
  else RDEBUG=$cfg "$bin" --addr 127.0.0.1:$port >/dev/null 2>&1 & fi
  pid=$!; sleep 0.7
  hey -z 2s -c 8 -m POST -d "$body" -T application/json "http://127.0.0.1:$port/sendjson" >/dev/null 2>&1
  if [ "$prof" = 1 ]; then curl -s -o /dev/null "http://127.0.0.1:6090/debug/pprof/profile?seconds=7" & fi
  rps=$(hey -z 5s -c 8 -m POST -d "$body" -T application/json "http://127.0.0.1:$port/sendjson" 2>/dev/null \
    | awk '/Requests\/sec/ {print $2}')
  kill "$pid"; wait "$pid" 2>/dev/null || true; sleep 0.3
  echo "$name $rps"
}
for r in $(seq 1 "$rounds"); do
  run plain "$out/plain" "" 0
  run pprof "$out/pprof" "" 0
  run server-idle "$out/pprof" "http=127.0.0.1:6090" 0
  run profiling "$out/pprof" "http=127.0.0.1:6090" 1
done | tee "$out/runs"
awk '{s[$1]+=$2; n[$1]++} END {for (k in s) printf "%-12s mean %.0f req/s over %d runs\n", k, s[k]/n[k], n[k]}' "$out/runs" | sort
