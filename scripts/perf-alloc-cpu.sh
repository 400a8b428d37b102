#!/usr/bin/env bash
# rdebug's allocator CPU against perf's on-CPU samples of the same process, as DESIGN.md's truth
# rule says: perf's figure is the share of cpu-clock samples whose call chain has a jemalloc frame
# (_rjem_*, je_*, or a function from jemalloc's sources) or a global-allocator frame
# (__rust_alloc, __rust_dealloc, __rust_realloc, __rust_alloc_zeroed, rdebug::alloc), times the
# process's CPU time. Runs examples/alloc_workload quiet and with a spinning thread that forces
# preemption, and prints rdebug / perf for each.
#
# usage: scripts/perf-alloc-cpu.sh [SECONDS]   (needs perf: Debian's linux-perf; run as root)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
command -v perf >/dev/null || { echo "needs perf (apt-get install linux-perf)" >&2; exit 2; }
cargo build -q --release --example alloc_workload
exe=target/release/examples/alloc_workload
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for mode in quiet spin; do
  args=(--secs "$secs"); [ "$mode" = spin ] && args+=(--spin)
  perf record -q -e cpu-clock -F 499 --call-graph dwarf,16384 -o "$out/perf.data" -- "$exe" "${args[@]}" \
    >"$out/stdout" 2>"$out/stderr"
  perf script -i "$out/perf.data" -F comm,tid,ip,sym 2>/dev/null >"$out/script"
  python3 - "$out/script" "$out/stdout" "$mode" <<'PY'
import re, sys
script, stdout, mode = sys.argv[1:4]
# jemalloc's functions are _rjem_* (public), _rjem_je_* (private), or static ones with their
# plain C names; the global allocator's are __rust_*/__rg_*/__rdl_* and rdebug's wrapper.
alloc = re.compile(r'(_rjem_|__rust_(alloc|dealloc|realloc|alloc_zeroed)\b|__rdl_|__rg_|'
                   r'rdebug::alloc::|tikv_jemallocator|'
                   r'^(arena|tcache|extent|emap|pac?|sz|san|hpa|sec|edata|ecache|large|bin|malloc|'
                   r'imalloc|ifree|isdalloct|sdallocx|batcher|prof|psset|eset|base|rtree)_)')
samples = in_alloc = 0
chain = []
def flush():
    global samples, in_alloc, chain
    if chain:
        samples += 1
        if any(alloc.search(f) for f in chain[1:] + chain[:1]):
            in_alloc += 1
    chain = []
for line in open(script, errors='replace'):
    if not line.strip():
        flush(); continue
    if not line.startswith((' ', '\t')):
        flush(); continue
    parts = line.split(None, 1)
    chain.append((parts[1] if len(parts) > 1 else '').strip())
flush()
text = open(stdout).read()
m = re.search(r'alloc_cpu_ns=(\d+) process_cpu_ns=(\d+)', text)
rdebug, process = int(m.group(1)), int(m.group(2))
share = in_alloc / max(samples, 1)
perf_ns = share * process
print(f"{mode:5}: perf {in_alloc}/{samples} samples in the allocator = {share:.3f} x {process/1e9:.2f} s "
      f"= {perf_ns/1e9:.3f} s; rdebug {rdebug/1e9:.3f} s; rdebug/perf {rdebug/max(perf_ns,1):.2f}")
PY
done
