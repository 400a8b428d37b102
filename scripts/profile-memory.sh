#!/usr/bin/env bash
# Peak memory one CPU profile request adds to a real server, symbolization included:
# examples/webapp (release, built with `--features pprof` and this repository's release profile,
# which carries DWARF) under `hey` on /sendjson; after 4 s of load its peak RSS (VmHWM) is reset
# (`echo 5 > /proc/PID/clear_refs`), a 5 s CPU profile is fetched from its debug server, and the
# new peak is compared with the RSS before. Prints RssAnon/RssFile before and after, and the
# peak added, for ROUNDS rounds.
#
# usage: scripts/profile-memory.sh [ROUNDS]   (default 3). Needs hey and curl; root or the
#        server's owner (clear_refs). Only 127.0.0.1 is loaded; every hey run is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
case "$rounds" in ''|*[!0-9]*) echo "usage: $0 [ROUNDS]" >&2; exit 2 ;; esac
command -v hey >/dev/null || { echo "needs hey (apt-get install hey)" >&2; exit 2; }
cargo build --release --quiet --features pprof --example webapp
bin=target/release/examples/webapp
out=$(mktemp -d)
status() { grep -E "^$2:" "/proc/$1/status" | awk '{print $2}'; }
for r in $(seq 1 "$rounds"); do
  RDEBUG=http=127.0.0.1:6061 "$bin" --addr 127.0.0.1:4001 >/dev/null 2>"$out/stderr" &
  pid=$!
  sleep 1
  hey -z 14s -c 8 http://127.0.0.1:4001/sendjson >/dev/null &
  hey_pid=$!
  sleep 4
  echo 5 >"/proc/$pid/clear_refs"
  before=$(status "$pid" VmRSS)
  anon0=$(status "$pid" RssAnon); file0=$(status "$pid" RssFile)
  curl -sf -o "$out/cpu.pb.gz" 'http://127.0.0.1:6061/debug/pprof/profile?seconds=5'
  sleep 0.5
  peak=$(status "$pid" VmHWM)
  anon1=$(status "$pid" RssAnon); file1=$(status "$pid" RssFile)
  echo "round $r: RssAnon ${anon0}->${anon1} KiB, RssFile ${file0}->${file1} KiB, peak added $((peak - before)) KiB"
  wait "$hey_pid"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
rm -rf "$out"
