#!/usr/bin/env bash
# CPU an idle service spends on rdebug's reporter: examples/webapp (release) started with no load
# under each RDEBUG setting in turn, its CPU time (the sum of its threads' on-CPU ns from
# /proc/PID/task/*/schedstat, ns resolution) over SECONDS of idleness after a 2 s settle, as % of
# one core. Rounds alternate the settings' order.
#
# usage: scripts/idle-cost.sh [ROUNDS] [SECONDS]   (default 3 rounds of 20 s per setting)
#   IDLE_COST_BIN=path: measure that webapp binary instead of building one (e.g. a copy built
#   from an older commit, to compare in the same conditions); IDLE_COST_SETTINGS="a;b": only
#   those RDEBUG settings (';'-separated, an empty item for unset). A setting `floor:MS` runs
#   instead a bare thread waking every MS ms (scripts/wakeup_floor.rs): what any periodic
#   thread costs on this machine, to set the reporter's figures against.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
secs=${2:-20}
case "$rounds$secs" in *[!0-9]*|'') echo "usage: $0 [ROUNDS] [SECONDS]" >&2; exit 2 ;; esac
bin=${IDLE_COST_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --quiet --example webapp
  bin=target/release/examples/webapp
fi
settings=("" "gctrace=1" "stalltrace=50" "gctrace=1,stalltrace=50")
if [ -n "${IDLE_COST_SETTINGS+x}" ]; then
  IFS=';' read -r -a settings <<< "$IDLE_COST_SETTINGS"
fi
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%d", s}'; }
measure() {
  local env=$1 pid t0 t1
  if [[ $env == floor:* ]]; then
    mkdir -p target
    [ target/wakeup-floor -nt scripts/wakeup_floor.rs ] || rustc -O -o target/wakeup-floor scripts/wakeup_floor.rs
    target/wakeup-floor "${env#floor:}" &
  elif [ -n "$env" ]; then
    RDEBUG=$env "$bin" --addr 127.0.0.1:4011 >/dev/null 2>&1 &
  else
    env -u RDEBUG "$bin" --addr 127.0.0.1:4011 >/dev/null 2>&1 &
  fi
  pid=$!
  sleep 2
  t0=$(cpu_ns "$pid")
  sleep "$secs"
  t1=$(cpu_ns "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  # % of a core: ns / (seconds * 1e9) * 100 (threads that exited in the window are not counted)
  awk -v d=$((t1 - t0)) -v s="$secs" 'BEGIN { printf "%.3f", d / (s * 1e9) * 100 }'
}
for r in $(seq 1 "$rounds"); do
  order=("${settings[@]}")
  if [ $((r % 2)) -eq 0 ]; then
    order=(); for ((i=${#settings[@]}-1; i>=0; i--)); do order+=("${settings[$i]}"); done
  fi
  for s in "${order[@]}"; do
    if [[ $s == floor:* ]]; then
      echo "round $r bare thread waking every ${s#floor:} ms: $(measure "$s")% of a core"
    else
      echo "round $r RDEBUG='${s}': $(measure "$s")% of a core"
    fi
  done
done
