//! The dashboard's history: the last [`MAX_TICKS`] seconds of rdebug's records, kept in memory
//! while the debug server runs, so `/debug/rdebug` opens on the last minutes, not on an empty
//! chart.
//!
//! Once a second a task on the debug server's runtime (started with the server, or by the first
//! dashboard request when the endpoints are mounted in an axum app) takes one *tick*: the JSON
//! lines of `RDEBUG=format=json` — a `sched` record per watched runtime, a `gc` record per
//! allocator cycle closed since the last tick — and one `tick` record of the figures only the
//! dashboard draws:
//!
//! ```text
//! {"type":"tick","ms":12004,"workers":2,"busy_workers":1.37,"local_queue_depth":3,
//!  "heap_alloc":5242880,"footprint":8388608,"next_gc":10485760,"rss":23068672,
//!  "alloc_cpu":4.1,"process_cpu":152.0,"gc_cpu_fraction":0.011,"stalls":0,"stall_ms":null}
//! ```
//!
//! - `busy_workers`: workers busy on average over the last second (the sum over every watched
//!   runtime of `worker_total_busy_duration`'s growth divided by the wall time), 0 to `workers`;
//!   tokio publishes busy time when a worker parks or every 61 scheduler ticks, so a single
//!   second can be off by a fraction of a worker; it is clamped to `workers`;
//! - `local_queue_depth`: the sum of the workers' local queues (`null` without `tokio_unstable`);
//! - `heap_alloc`, `next_gc`, `rss`: `memstats()`'s fields (`next_gc` is `null` with
//!   `gcpercent=off`); `footprint`: jemalloc active + dirty + muzzy, the gc line's `before/after`;
//! - `alloc_cpu`, `process_cpu`: CPU time in the allocator (rdebug's on-CPU sampler) and in the
//!   whole process (`/proc/self/stat`, 10 ms ticks) over the last second, in % of one core; the
//!   tick does not start the sampler itself (it would put a `SIGPROF` timer on every thread of a
//!   process nobody watches): the first page's request for history does, so `alloc_cpu` is 0
//!   before that unless `gctrace` or a `memstats()` call started it;
//! - `gc_cpu_fraction`: `memstats()`'s, the allocator's share since init;
//! - `stalls`: stalls (`RDEBUG=stalltrace`, the STALL lines) recorded since the previous tick,
//!   over every watched runtime (the `sched` records carry each runtime's running total); 0 on
//!   the first tick, which starts the count, as gc records start with the cycles after it. The
//!   dashboard marks every tick with a stall on its workers chart;
//! - `stall_ms`: the longest stall whose poll ended since the previous tick (its STALL-END
//!   line's `lasted`), ms, or `null`: the dashboard's stall-length chart.
//!
//! The history reads `memstats()`, so with no `gctrace` reporter sampling the allocator, the
//! dashboard's ticks close allocator cycles (the rule of [`MemStats::num_gc`](crate::MemStats)).
//! It costs one `memstats()` and one `sched_stats()` per runtime a second (tens of µs) and at
//! most [`MAX_TICK_BYTES`] × [`MAX_TICKS`] of memory.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use tokio::sync::watch;

use super::runtimes;
use crate::stats::{MemStats, SchedStats, encode, gc, mem};
use crate::sync::lock;
use crate::sys::proc::process_files;

/// Ticks kept: five minutes.
pub(crate) const MAX_TICKS: usize = 300;
/// Most bytes one tick keeps (past it, the runtimes that do not fit are left out).
pub(crate) const MAX_TICK_BYTES: usize = 16 << 10;
/// Time between ticks.
pub(crate) const PERIOD: Duration = Duration::from_secs(1);

/// The ticks, oldest first, each with its `ms` (milliseconds since init).
static TICKS: Mutex<VecDeque<(u64, Bytes)>> = Mutex::new(VecDeque::new());
/// Whether a task is taking ticks now.
static FEEDING: AtomicBool = AtomicBool::new(false);

/// The `ms` of the newest tick, for requests waiting for the next one.
fn newest() -> &'static watch::Sender<u64> {
    static NEWEST: OnceLock<watch::Sender<u64>> = OnceLock::new();
    NEWEST.get_or_init(|| watch::Sender::new(0))
}

/// Starts the ticking task on the current tokio runtime unless one runs already. Must be called
/// inside a runtime (the server's, or the app's for the axum router).
pub(crate) fn ensure_feeding() {
    if FEEDING
        .compare_exchange(false, true, Relaxed, Relaxed)
        .is_err()
    {
        return;
    }
    tokio::spawn(async {
        // Lets another task take over when this one's runtime shuts down.
        struct Fed;
        impl Drop for Fed {
            fn drop(&mut self) {
                FEEDING.store(false, Relaxed);
            }
        }
        let _fed = Fed;
        let mut every = tokio::time::interval(PERIOD);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut taker = Taker::default();
        loop {
            every.tick().await;
            let (ms, bytes) = taker.tick();
            {
                let mut ticks = lock(&TICKS);
                if ticks.len() == MAX_TICKS {
                    ticks.pop_front();
                }
                ticks.push_back((ms, bytes));
            }
            newest().send_replace(ms);
        }
    });
}

/// Every tick newer than `since` (ms), concatenated; waits up to `wait` for one when there is
/// none yet.
pub(crate) async fn after(since: Option<u64>, wait: Duration) -> Vec<u8> {
    if let Some(since) = since {
        let mut rx = newest().subscribe();
        let _ = tokio::time::timeout(wait, rx.wait_for(|&ms| ms > since)).await;
    }
    let since = since.unwrap_or(0);
    let ticks = lock(&TICKS);
    let mut out = Vec::new();
    for (_, b) in ticks.iter().filter(|(ms, _)| *ms > since) {
        out.extend_from_slice(b);
    }
    out
}

/// What the next tick's rates are taken against.
#[derive(Default)]
struct Taker {
    prev: Option<Prev>,
    /// The last allocator cycle written.
    seen_gc: Option<u64>,
}

struct Prev {
    at: Instant,
    /// Busy ns summed over every worker of every watched runtime.
    busy_ns: u64,
    alloc_cpu_ns: u64,
    process_cpu_ns: Option<u64>,
    /// [`runtimes::stalls_ever`](crate::runtime::watched::stalls_ever).
    stalls: u64,
}

impl Taker {
    fn tick(&mut self) -> (u64, Bytes) {
        let at = Instant::now();
        let ms = crate::stats::millis(crate::clock::origin().elapsed());
        let m = mem::read();
        let sched = runtimes::snapshot();
        let mut out = Vec::with_capacity(1024);
        for (label, s) in &sched {
            let mark = out.len();
            encode::sched_json(&mut out, ms, Some(label), s);
            if out.len() > MAX_TICK_BYTES / 2 {
                out.truncate(mark);
                break;
            }
        }
        self.gc_records(&mut out);
        let now = Prev {
            at,
            busy_ns: sched
                .iter()
                .flat_map(|(_, s)| &s.per_worker)
                .fold(0u64, |a, w| a.saturating_add(w.busy_ns)),
            alloc_cpu_ns: crate::sampler::alloc_cpu_ns(),
            process_cpu_ns: process_files().cpu_ns(),
            stalls: crate::runtime::watched::stalls_ever(),
        };
        tick_json(&mut out, ms, &m, &sched, self.prev.as_ref(), &now);
        self.prev = Some(now);
        (ms, Bytes::from(out))
    }

    /// The `gc` records of cycles closed since the last tick (none on the first: the page
    /// starts with the figures of now).
    fn gc_records(&mut self, out: &mut Vec<u8>) {
        let Some(t) = gc::tracker().as_ref().map(|t| {
            let seen = self.seen_gc.unwrap_or(t.totals().num_gc);
            let mark = out.len();
            let (_, last) = t.cycles_after(seen, |c| {
                if out.len() - mark < MAX_TICK_BYTES / 2 {
                    encode::gc_json(out, c);
                }
            });
            last
        }) else {
            return;
        };
        self.seen_gc = Some(t);
    }
}

/// `part / whole` of the time between two ticks, in % (`None` without a previous tick).
fn percent(part_ns: u64, wall: Duration) -> Option<f64> {
    let wall = wall.as_nanos() as f64;
    (wall > 0.0).then(|| part_ns as f64 * 100.0 / wall)
}

/// Writes `v` with one decimal, or `null`.
fn opt_f64(out: &mut String, key: &str, v: Option<f64>) {
    match v {
        Some(v) if v.is_finite() => {
            let _ = write!(out, ",\"{key}\":{v:.1}");
        }
        _ => {
            let _ = write!(out, ",\"{key}\":null");
        }
    }
}

/// The `tick` record (see the module docs).
fn tick_json(
    out: &mut Vec<u8>,
    ms: u64,
    m: &MemStats,
    sched: &[(String, SchedStats)],
    prev: Option<&Prev>,
    now: &Prev,
) {
    let workers = sched
        .iter()
        .fold(0usize, |a, (_, s)| a.saturating_add(s.workers));
    let mut s = String::with_capacity(320);
    let _ = write!(s, "{{\"type\":\"tick\",\"ms\":{ms},\"workers\":{workers}");
    let wall = prev.map(|p| now.at.saturating_duration_since(p.at));
    let busy = prev.zip(wall).and_then(|(p, wall)| {
        let b = percent(now.busy_ns.saturating_sub(p.busy_ns), wall)? / 100.0;
        Some(b.min(workers as f64))
    });
    match busy {
        Some(b) => {
            let _ = write!(s, ",\"busy_workers\":{b:.2}");
        }
        None => s.push_str(",\"busy_workers\":null"),
    }
    let local: Option<usize> = sched.iter().try_fold(0usize, |a, (_, st)| {
        Some(a.saturating_add(encode::local_queues(st)?.sum::<usize>()))
    });
    match local.filter(|_| !sched.is_empty()) {
        Some(l) => {
            let _ = write!(s, ",\"local_queue_depth\":{l}");
        }
        None => s.push_str(",\"local_queue_depth\":null"),
    }
    let footprint = m.heap_inuse.saturating_add(m.dirty).saturating_add(m.muzzy);
    let _ = write!(
        s,
        ",\"heap_alloc\":{},\"footprint\":{footprint},\"rss\":{}",
        m.heap_alloc, m.rss
    );
    match m.next_gc {
        u64::MAX => s.push_str(",\"next_gc\":null"),
        g => {
            let _ = write!(s, ",\"next_gc\":{g}");
        }
    }
    let alloc = prev
        .zip(wall)
        .and_then(|(p, w)| percent(now.alloc_cpu_ns.saturating_sub(p.alloc_cpu_ns), w));
    opt_f64(&mut s, "alloc_cpu", alloc);
    let process = prev
        .zip(wall)
        .and_then(|(p, w)| percent(now.process_cpu_ns?.saturating_sub(p.process_cpu_ns?), w));
    opt_f64(&mut s, "process_cpu", process);
    let _ = write!(s, ",\"gc_cpu_fraction\":{:.4}", m.gc_cpu_fraction);
    let stalls = prev.map_or(0, |p| now.stalls.saturating_sub(p.stalls));
    let _ = write!(s, ",\"stalls\":{stalls}");
    match crate::runtime::watched::take_longest_ended_ms() {
        Some(ms) => {
            let _ = writeln!(s, ",\"stall_ms\":{ms}}}");
        }
        None => s.push_str(",\"stall_ms\":null}\n"),
    }
    out.extend_from_slice(s.as_bytes());
}
