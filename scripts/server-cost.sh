#!/usr/bin/env bash
# What the debug server and heap sampling cost a real server: examples/webapp under `hey`, in
# configurations taken in turn each round.
#
# `profiles` (the default): built without `pprof` (RDEBUG unset), built with `pprof` (heap
# sampling on, RDEBUG unset), with the debug server idle (RDEBUG=http=...), and while a CPU
# profile runs.
# `watched`: built with `http`, the debug server on, nobody looking (`http-idle`), vs a real
# Prometheus scraping /metrics every second while a client follows the dashboard as the page
# does (long-polls of /debug/rdebug/history?since=) (`http-watched`).
# `sampling`: built without `pprof`, built with it (heap sampling on, RDEBUG unset: jemalloc takes
# sampled stacks with libgcc), and the same with rdebug's unwinder taking them
# (RDEBUG=memprofilerate=524289: not the default, so rdebug sets it, which hands stack taking to
# its unwinder; it rounds to the default 2^19).
# `block`: built with `pprof`, the debug server idle (`server-idle`) vs while a block profile
# (/debug/pprof/block?seconds=7, 100 Hz) covers the measured 5 s (`block-profiling`); the two
# take turns going first from round to round.
# Prints each configuration's mean requests/s and the server's own CPU per request (from
# /proc/PID/stat: what rdebug adds inside the server, whatever the other processes on the shared
# cores take), the per-round ratios of both to the mode's first configuration (median and
# quartiles), and every run (`name req/s us/request round`; in `block` mode the profile's own
# thread's CPU in % of the server's, a figure this machine's load does not blur, follows).
#
# usage: scripts/server-cost.sh [ROUNDS] [profiles|watched|sampling|block]   (default 20 rounds; hey and the
#        server share the machine's cores, so one run varies by +-15% on 2 cores: take many
#        rounds). Needs hey and curl; `watched` needs prometheus.
# Only 127.0.0.1 is loaded; every hey run is bounded in time; servers are killed after each run.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-20}
mode=${2:-profiles}
usage="usage: $0 [ROUNDS] [profiles|watched|sampling|block]"
case "$rounds" in ''|*[!0-9]*) echo "$usage" >&2; exit 2 ;; esac
case "$mode" in profiles|watched|sampling|block) ;; *) echo "$usage" >&2; exit 2 ;; esac
command -v hey >/dev/null || { echo "needs hey (apt-get install hey)" >&2; exit 2; }
if [ "$mode" = watched ]; then
  command -v prometheus >/dev/null || { echo "needs prometheus (apt-get install prometheus)" >&2; exit 2; }
fi
out=$(mktemp -d)
watchers=()
trap 'kill "${watchers[@]}" 2>/dev/null || true; rm -rf "$out"' EXIT
if [ "$mode" = profiles ] || [ "$mode" = sampling ]; then
  cargo build -q --release --example webapp && cp target/release/examples/webapp "$out/plain"
  cargo build -q --release --features pprof --example webapp && cp target/release/examples/webapp "$out/pprof"
elif [ "$mode" = block ]; then
  cargo build -q --release --features pprof --example webapp && cp target/release/examples/webapp "$out/pprof"
else
  cargo build -q --release --features http --example webapp && cp target/release/examples/webapp "$out/http"
  printf 'global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: webapp\n    static_configs:\n      - targets: ["127.0.0.1:6090"]\n' >"$out/prometheus.yml"
fi
body='{"a":1,"b":2}'
# Follows the dashboard as the page does: the whole history, then each next tick.
follow_dashboard() {
  local since=0 last
  while :; do
    last=$(curl -s -m 5 "http://127.0.0.1:6090/debug/rdebug/history?since=$since" | tail -n 1 \
      | grep -o '"ms":[0-9]*' | head -n 1 | cut -d: -f2) || true
    [ -n "$last" ] && since=$last
    sleep 0.2
  done
}
run() { # name binary rdebug extra(none|profile|block|watched)
  local name=$1 bin=$2 cfg=$3 extra=$4 port=4090 pid rps profiler
  if [ -z "$cfg" ]; then env -u RDEBUG "$bin" --addr 127.0.0.1:$port >/dev/null 2>&1 &
  else RDEBUG=$cfg "$bin" --addr 127.0.0.1:$port >/dev/null 2>&1 & fi
  pid=$!
  watchers=()
  if [ "$extra" = watched ]; then
    rm -rf "$out/tsdb"
    prometheus --config.file="$out/prometheus.yml" --storage.tsdb.path="$out/tsdb" \
      --web.listen-address=127.0.0.1:9099 --log.level=error >/dev/null 2>&1 &
    watchers+=($!)
    follow_dashboard & watchers+=($!)
  fi
  sleep 0.7
  hey -z 2s -c 8 -m POST -d "$body" -T application/json "http://127.0.0.1:$port/sendjson" >/dev/null 2>&1
  if [ "$extra" = profile ]; then curl -s -o /dev/null "http://127.0.0.1:6090/debug/pprof/profile?seconds=7" & fi
  local before=""
  if [ "$extra" = block ]; then
    before=$(ls "/proc/$pid/task")
    curl -s -o "$out/block.pb.gz" -w '%{http_code}' "http://127.0.0.1:6090/debug/pprof/block?seconds=7" \
      >"$out/block.status" &
    profiler=$!
  fi
  local cpu0 cpu1 report
  cpu0=$(cpu_ticks "$pid")
  report=$(hey -z 5s -c 8 -m POST -d "$body" -T application/json "http://127.0.0.1:$port/sendjson" 2>/dev/null)
  cpu1=$(cpu_ticks "$pid")
  # With a block profile: the CPU of the threads that came with it (the blocking-pool thread the
  # profile runs on) over the window, in % of the server's CPU then (on-CPU ns from schedstat).
  local own=""
  if [ "$extra" = block ]; then
    local ns=0 t
    for t in $(ls "/proc/$pid/task"); do
      grep -qx "$t" <<<"$before" && continue
      ns=$((ns + $(cut -d' ' -f1 "/proc/$pid/task/$t/schedstat" 2>/dev/null || echo 0)))
    done
    own=$(awk -v ns=$ns -v c=$((cpu1 - cpu0)) -v hz="$(getconf CLK_TCK)" 'BEGIN {if (c > 0) printf " %.2f", ns / 1e9 / (c / hz) * 100; else print " nan"}')
  fi
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$report")
  # The server's own CPU per request (µs): what rdebug adds in the server, whatever else (hey,
  # prometheus, the dashboard client) takes of the shared cores.
  local us
  us=$(awk -v c=$((cpu1 - cpu0)) -v hz="$(getconf CLK_TCK)" '/\[200\]/ {n=$2} END {if (n) printf "%.2f", c / hz * 1e6 / n; else print "nan"}' <<<"$report")
  if [ ${#watchers[@]} -gt 0 ]; then kill "${watchers[@]}" 2>/dev/null || true; wait "${watchers[@]}" 2>/dev/null || true; fi
  if [ "$extra" = block ]; then
    # The profile must have run over the window: its answer (after 7 s) is a 200.
    wait "$profiler" 2>/dev/null || true
    [ "$(cat "$out/block.status" 2>/dev/null)" = 200 ] || echo "block profile failed: $(cat "$out/block.status" 2>/dev/null)" >&2
  fi
  kill "$pid"; wait "$pid" 2>/dev/null || true; sleep 0.3
  echo "$name $rps $us $r$own"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for r in $(seq 1 "$rounds"); do
  if [ "$mode" = profiles ]; then
    run plain "$out/plain" "" none
    run pprof "$out/pprof" "" none
    run server-idle "$out/pprof" "http=127.0.0.1:6090" none
    run profiling "$out/pprof" "http=127.0.0.1:6090" profile
  elif [ "$mode" = sampling ]; then
    run plain "$out/plain" "" none
    run pprof-libgcc "$out/pprof" "" none
    run pprof-framehop "$out/pprof" "memprofilerate=524289" none
  elif [ "$mode" = block ]; then
    if [ $((r % 2)) = 1 ]; then
      run server-idle "$out/pprof" "http=127.0.0.1:6090" none
      run block-profiling "$out/pprof" "http=127.0.0.1:6090" block
    else
      run block-profiling "$out/pprof" "http=127.0.0.1:6090" block
      run server-idle "$out/pprof" "http=127.0.0.1:6090" none
    fi
  else
    run http-idle "$out/http" "http=127.0.0.1:6090" none
    run http-watched "$out/http" "http=127.0.0.1:6090" watched
  fi
done | tee "$out/runs"
awk '{s[$1]+=$2; u[$1]+=$3; n[$1]++} END {for (k in s) printf "%-12s mean %.0f req/s, server CPU %.2f us/request, over %d runs\n", k, s[k]/n[k], u[k]/n[k], n[k]}' "$out/runs" | sort
# Per-round ratios to the mode's first configuration: median [first quartile, third quartile].
case "$mode" in profiles|sampling) base=plain ;; block) base=server-idle ;; *) base=http-idle ;; esac
quartiles() { sort -g | awk '{v[NR]=$1} END {
  if (!NR) {print "nan"; exit}
  split("0.25 0.5 0.75", p, " ")
  for (i = 1; i <= 3; i++) { x = 1 + (NR - 1) * p[i]; lo = int(x); f = x - lo
    r[i] = (lo < NR) ? v[lo] + f * (v[lo + 1] - v[lo]) : v[lo] }
  printf "%.3f [%.3f, %.3f]", r[2], r[1], r[3] }'; }
for k in $(awk -v b="$base" '$1 != b {print $1}' "$out/runs" | sort -u); do
  pairs=$(awk -v b="$base" -v k="$k" '$1 == b {rb[$4]=$2; ub[$4]=$3} $1 == k {rk[$4]=$2; uk[$4]=$3}
    END {for (r in rk) if ((r in rb) && rb[r] > 0 && ub[r] > 0) print rk[r]/rb[r], uk[r]/ub[r]}' "$out/runs")
  printf '%-16s vs %s, per round: req/s %s, server CPU/request %s, over %d rounds\n' "$k" "$base" \
    "$(cut -d' ' -f1 <<<"$pairs" | quartiles)" "$(cut -d' ' -f2 <<<"$pairs" | quartiles)" "$(grep -c . <<<"$pairs")"
done
if [ "$mode" = block ]; then
  printf "block profile's own thread, %% of the server's CPU: %s\n" \
    "$(awk '$1 == "block-profiling" && NF >= 5 {print $5}' "$out/runs" | quartiles)"
fi
