#!/usr/bin/env bash
# Load test: examples/webapp under `hey`, with rdebug off and on, alternating, to measure what the
# traces cost a real server: throughput and p99 latency ratios, the `rdebug` reporter thread's own
# CPU, and RSS.
#
# usage: scripts/loadtest.sh [ROUNDS] [PORT] [REQUESTS]
#   ROUNDS    rounds of three runs each (default 5; on a 2-core machine that hey shares with the
#             server, one run's throughput varies by +-15%, so use 20 or more): RDEBUG unset ("off"),
#             RDEBUG=schedtrace=1000,gctrace=1 ("on") and
#             RDEBUG=schedtrace=1000,scheddetail=1,gctrace=2 ("detail"); the order rotates every
#             round, so no configuration always runs first or last
#   PORT      127.0.0.1 port for the server (default 4100)
#   REQUESTS  requests per measured run (default 50000)
#
# Every run starts a fresh server (`--addr 127.0.0.1:PORT`, stdout to /dev/null, stderr to a
# file), warms it with 5,000 requests, then measures `hey -m POST -c 8 -n REQUESTS` against
# POST /sendjson. Only 127.0.0.1 is loaded; every hey run is bounded by count and by `timeout`;
# servers are killed on exit. Needs `hey` (Debian package hey). Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-5}
port=${2:-4100}
requests=${3:-50000}
for v in "$rounds" "$port" "$requests"; do
  case "$v" in ''|*[!0-9]*) echo "usage: $0 [ROUNDS] [PORT] [REQUESTS]" >&2; exit 2 ;; esac
done
command -v hey >/dev/null || { echo "needs hey (apt-get install hey)" >&2; exit 2; }

url="http://127.0.0.1:$port/sendjson"
out=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
    kill -INT "$server" 2>/dev/null || true
    sleep 0.5
    kill -KILL "$server" 2>/dev/null || true
  fi
  rm -rf "$out"
}
trap cleanup EXIT INT TERM

cargo build -q --release --example webapp
bin=target/release/examples/webapp

declare -A RDEBUG_OF=(
  [off]=""
  [on]="schedtrace=1000,gctrace=1"
  [detail]="schedtrace=1000,scheddetail=1,gctrace=2"
)

# CPU time (ns) of thread $2 of process $1: se.sum_exec_runtime (ns precision) where the kernel
# has /proc/.../sched, else utime+stime (clock ticks).
thread_cpu_ns() {
  local f=/proc/$1/task/$2
  if [ -r "$f/sched" ] && grep -q sum_exec_runtime "$f/sched"; then
    awk '/se.sum_exec_runtime/ { printf "%.0f\n", $3 * 1e6 }' "$f/sched"
  else
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.0f\n", ($12 + $13) * 1e9 / hz }' "$f/stat"
  fi
}

# Thread id of the thread named $2 in process $1, or nothing.
thread_named() {
  local t
  for t in /proc/"$1"/task/*; do
    if [ "$(cat "$t/comm" 2>/dev/null)" = "$2" ]; then basename "$t"; return; fi
  done
}

process_cpu_ns() {
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.0f\n", ($12 + $13) * 1e9 / hz }' "/proc/$1/stat"
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# run MODE ROUND: one server, one warm-up, one measured hey run; appends a result line.
run() {
  local mode=$1 round=$2 err="$out/stderr.$1.$2" hey_out="$out/hey.$1.$2"
  local rd=${RDEBUG_OF[$mode]}
  if [ -z "$rd" ]; then
    env -u RDEBUG "$bin" --addr "127.0.0.1:$port" >/dev/null 2>"$err" &
  else
    RDEBUG=$rd "$bin" --addr "127.0.0.1:$port" >/dev/null 2>"$err" &
  fi
  server=$!
  local up=0
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=1; break; fi
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
  done
  if [ "$up" != 1 ]; then echo "server ($mode) did not come up on port $port:" >&2; cat "$err" >&2; exit 1; fi
  timeout 60 hey -m POST -c 8 -n 5000 "$url" >/dev/null
  local tid="" r0=0 p0 t0 t1
  if [ "$mode" != off ]; then
    tid=$(thread_named "$server" rdebug)
    [ -n "$tid" ] || { echo "no thread named rdebug in the $mode server" >&2; exit 1; }
    r0=$(thread_cpu_ns "$server" "$tid")
  fi
  p0=$(process_cpu_ns "$server")
  t0=$(date +%s%N)
  timeout 300 hey -m POST -c 8 -n "$requests" "$url" >"$hey_out"
  t1=$(date +%s%N)
  local r1=0 p1 rss
  [ -z "$tid" ] || r1=$(thread_cpu_ns "$server" "$tid")
  p1=$(process_cpu_ns "$server")
  rss=$(rss_kib "$server")
  kill -INT "$server"
  for _ in $(seq 1 50); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  server=""
  local rps p99 non200
  rps=$(awk '/Requests\/sec:/ { print $2 }' "$hey_out")
  p99=$(awk '/ 99% in / { print $3 }' "$hey_out")
  non200=$(awk '/Status code distribution:/ { s = 1; next } s && /\[[0-9]+\]/ { gsub(/[][]/, "", $1); if ($1 != 200) n += $2 } END { print n + 0 }' "$hey_out")
  printf '%s %s %s %s %s %s %s %s %s\n' "$mode" "$round" "$rps" "$p99" $(( (t1 - t0) / 1000000 )) \
    $(( r1 - r0 )) $(( p1 - p0 )) "$rss" "$(wc -l <"$err")" >>"$out/results"
  if [ "$non200" != 0 ]; then echo "warning: $non200 non-200 responses in $mode round $round" >&2; fi
  echo "round $round $mode: $rps req/s, p99 $p99 s" >&2
}

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1); $(date -u +%Y-%m-%dT%H:%MZ)"
echo "load: hey -m POST -c 8 -n $requests $url, after 5000 warm-up requests; $rounds rounds"
modes=(off on detail)
for r in $(seq 1 "$rounds"); do
  for k in 0 1 2; do run "${modes[$(( (r - 1 + k) % 3 ))]}" "$r"; done
done

echo
echo "per run: mode round req/s p99_s wall_ms rdebug_thread_cpu_ns process_cpu_ns rss_kib stderr_lines"
sort -k2,2n -k1,1 "$out/results"
echo
awk '
  function sort(a, m,   i, j, t) { for (i = 2; i <= m; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t } }
  function stats(a, m) { sort(a, m); return sprintf("%.3f / %.3f / %.3f", a[1], a[int((m + 1) / 2)], a[m]) }
  { rps[$1, $2] = $3; p99[$1, $2] = $4; wall[$1, $2] = $5; rcpu[$1, $2] = $6; pcpu[$1, $2] = $7; rss[$1, $2] = $8; lines[$1, $2] = $9; if ($2 > R) R = $2 }
  END {
    split("on detail", ms, " ")
    for (k = 1; k <= 2; k++) {
      m = ms[k]; split("", a); split("", b); split("", c); split("", d); split("", e); split("", f); split("", g); split("", h)
      for (r = 1; r <= R; r++) {
        a[r] = rps[m, r] / rps["off", r]; b[r] = p99[m, r] / p99["off", r]; h[r] = pcpu[m, r] / pcpu["off", r]
        c[r] = 100 * rcpu[m, r] / (wall[m, r] * 1e6); d[r] = (rss[m, r] - rss["off", r]) / 1024
        e[r] = rps[m, r]; f[r] = p99[m, r] * 1000; g[r] = lines[m, r]
      }
      printf "%-7s throughput on/off %s   p99 on/off %s   server CPU per request on/off %s\n", m, stats(a, R), stats(b, R), stats(h, R)
      printf "%-7s req/s %s   p99 ms %s\n", "", stats(e, R), stats(f, R)
      printf "%-7s rdebug thread CPU, %% of one core %s   RSS on-off MiB %s   stderr lines %s\n", "", stats(c, R), stats(d, R), stats(g, R)
    }
    for (r = 1; r <= R; r++) { e[r] = rps["off", r]; f[r] = p99["off", r] * 1000; d[r] = rss["off", r] / 1024 }
    printf "%-7s req/s %s   p99 ms %s   RSS MiB %s\n", "off", stats(e, R), stats(f, R), stats(d, R)
    print "(min / median / max over " R " rounds)"
  }' "$out/results"
