#!/usr/bin/env bash
# Soak test (not in CI): examples/soak_server.rs under steady load with
# RDEBUG=schedtrace=1000,gctrace=1 for SOAK_SECS (default 600), then checks:
#   - every stderr line is a well-formed SCHED, gc or rdebug note line, none says lines were
#     dropped or gc lines lost;
#   - SCHED lines come every second with none missing (ms steps of 1000 +- 150), gc cycle numbers
#     run 1, 2, 3, ... with no gap;
#   - heap_objects == mallocs - frees at every read: the server's checker thread reads
#     memstats() every 10 ms and counts any read that breaks it, and this script checks each
#     /memstats read it makes (every SAMPLE_SECS);
#   - RSS is flat after warm-up: the mean of the last minute within 5% of the mean of the minute
#     after WARMUP_SECS (default 60).
#
# Needs hey, curl and python3. Load: hey -z ${SOAK_SECS}s -c ${CONNS} -q ${QPS} (QPS per
# connection; QPS=0 means no limit). Everything lands in target/soak/<timestamp>/.
#
#   scripts/soak.sh                        # 10 minutes, 8 connections x 200 req/s
#   SOAK_SECS=60 QPS=0 scripts/soak.sh     # a quick flat-out minute
set -euo pipefail
cd "$(dirname "$0")/.."

SOAK_SECS=${SOAK_SECS:-600}
CONNS=${CONNS:-8}
QPS=${QPS:-200}
SAMPLE_SECS=${SAMPLE_SECS:-5}
WARMUP_SECS=${WARMUP_SECS:-60}
RDEBUG_SOAK=${RDEBUG_SOAK:-schedtrace=1000,gctrace=1}

for tool in hey curl python3; do
  command -v "$tool" >/dev/null || { echo "soak: $tool is needed" >&2; exit 2; }
done

cargo build --release --example soak_server
out="target/soak/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
echo "soak: ${SOAK_SECS}s, $CONNS connections x ${QPS} req/s, RDEBUG=$RDEBUG_SOAK, output in $out"

RDEBUG="$RDEBUG_SOAK" ./target/release/examples/soak_server --addr 127.0.0.1:0 \
  >"$out/server.out" 2>"$out/server.err" &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; }
trap cleanup EXIT

addr=""
for _ in $(seq 100); do
  addr=$(sed -n 's|^listening on http://||p' "$out/server.out")
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "soak: the server did not start" >&2; cat "$out/server.err" >&2; exit 1; }
started=$(date +%s.%N)

# Samples: seconds since start, RSS from /proc, and the /memstats answer.
(
  while kill -0 "$server" 2>/dev/null; do
    t=$(python3 -c "import time; print(round(time.time() - $started, 3))")
    rss=$(awk '{print $2 * 4096}' "/proc/$server/statm" 2>/dev/null || echo 0)
    body=$(curl -sf "http://$addr/memstats" || echo '{}')
    echo "{\"t\":$t,\"proc_rss\":$rss,\"answer\":$body}" >>"$out/samples.jsonl"
    sleep "$SAMPLE_SECS"
  done
) &
sampler=$!

hey -z "${SOAK_SECS}s" -c "$CONNS" -q "$QPS" -m POST -T application/json -d '{"a":1}' \
  "http://$addr/sendjson" >"$out/hey.txt"
sleep "$SAMPLE_SECS"
curl -sf "http://$addr/memstats" >"$out/final.json"
kill "$sampler" 2>/dev/null || true
kill -TERM "$server"
wait "$server" || true
trap - EXIT

python3 - "$out" "$WARMUP_SECS" <<'EOF'
import json, re, sys

out, warmup = sys.argv[1], float(sys.argv[2])
failures = []

sched_re = re.compile(r"^SCHED (\d+)ms: workers=\d+ idleworkers=\d+ (threads=\d+ )?tasks=\d+ "
                      r"(blocking=\d+ idleblocking=\d+ )?runqueue=\d+( \[[\d ]+\])?$")
gc_re = re.compile(r"^gc (\d+) @\d+\.\d{3}s \d+%: \d+->\d+->\d+ MB, \d+ MB goal, \d+ P( \(forced\))?$")
note_re = re.compile(r"^rdebug: (note|warning): .+$")

sched_ms, gc_n, notes, malformed = [], [], [], []
with open(f"{out}/server.err", encoding="utf-8", errors="replace") as f:
    for line in f:
        line = line.rstrip("\n")
        if m := sched_re.match(line):
            sched_ms.append(int(m.group(1)))
        elif m := gc_re.match(line):
            gc_n.append(int(m.group(1)))
        elif note_re.match(line):
            notes.append(line)
        else:
            malformed.append(line)

if malformed:
    failures.append(f"{len(malformed)} malformed lines, first: {malformed[:3]}")
bad_notes = [n for n in notes if "dropped" in n or "lost" in n or "warning" in n]
if bad_notes:
    failures.append(f"notes about lost lines: {bad_notes[:3]}")
steps = [b - a for a, b in zip(sched_ms, sched_ms[1:])]
odd_steps = [s for s in steps if not 850 <= s <= 1150]
if odd_steps:
    failures.append(f"{len(odd_steps)} SCHED steps outside 1000+-150 ms: {odd_steps[:10]}")
if gc_n != list(range(1, len(gc_n) + 1)):
    failures.append(f"gc cycle numbers not continuous: {gc_n[:20]}...")

samples = []
with open(f"{out}/samples.jsonl") as f:
    for line in f:
        s = json.loads(line)
        if "memstats" in s["answer"]:
            samples.append(s)
final = json.load(open(f"{out}/final.json"))
reads = [s["answer"] for s in samples] + [final]
inconsistent = [r for r in reads
                if r["memstats"]["heap_objects"] != r["memstats"]["mallocs"] - r["memstats"]["frees"]]
if inconsistent:
    failures.append(f"{len(inconsistent)} reads with heap_objects != mallocs - frees")
if final["memstats"]["num_gc"] > (gc_n[-1] if gc_n else 0):
    failures.append(f"num_gc {final['memstats']['num_gc']} but the last gc line is {gc_n[-1:]}")
if final["checker_broken"]:
    failures.append(f"checker: {final['checker_broken']} of {final['checker_reads']} reads broken")

def mean(v):
    return sum(v) / len(v) if v else float("nan")

end = samples[-1]["t"] if samples else 0
early = [s["proc_rss"] for s in samples if warmup <= s["t"] < warmup + 60]
late = [s["proc_rss"] for s in samples if s["t"] >= end - 60]
drift = (mean(late) - mean(early)) / mean(early) if early and late else float("nan")
if not abs(drift) < 0.05:
    failures.append(f"RSS drift {drift:+.2%} after warm-up")
live = [s["answer"]["memstats"]["heap_alloc"] for s in samples if s["t"] >= warmup]

hey = open(f"{out}/hey.txt").read()
rps = re.search(r"Requests/sec:\s+([\d.]+)", hey)
codes = re.findall(r"\[(\d+)\]\s+(\d+) responses", hey)
errors = re.search(r"Error distribution:(.*)", hey, re.S)
non200 = sum(int(n) for c, n in codes if c != "200")
if non200 or errors:
    failures.append(f"hey saw {non200} non-200 answers and errors: {errors.group(1)[:300] if errors else ''}")

m = final["memstats"]
print(f"soak: {len(sched_ms)} SCHED lines (steps {min(steps, default=0)}..{max(steps, default=0)} ms), "
      f"{len(gc_n)} gc lines (1..{gc_n[-1] if gc_n else 0}), {len(notes)} notes, {len(malformed)} malformed")
print(f"soak: requests {sum(int(n) for _, n in codes)} ({rps.group(1) if rps else '?'} req/s), "
      f"status codes {dict(codes)}")
print(f"soak: memstats reads: {len(reads)} by the script, {final['checker_reads']} by the checker, "
      f"{len(inconsistent)} + {final['checker_broken']} inconsistent")
print(f"soak: RSS {mean(early)/2**20:.1f} MiB (minute after warm-up) -> {mean(late)/2**20:.1f} MiB "
      f"(last minute), drift {drift:+.2%}; heap_alloc {min(live, default=0)/2**20:.1f}.."
      f"{max(live, default=0)/2**20:.1f} MiB after warm-up")
print(f"soak: final mallocs={m['mallocs']} frees={m['frees']} heap_objects={m['heap_objects']} "
      f"num_gc={m['num_gc']} gc_cpu_fraction={m['gc_cpu_fraction']:.5f}")
if failures:
    print("soak: FAILED")
    for f in failures:
        print(f"  - {f}")
    sys.exit(1)
print("soak: OK")
EOF
