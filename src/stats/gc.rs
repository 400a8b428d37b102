//! Allocator cycles: when rdebug says a "gc" happened, and what the numbers on its line are.
//!
//! Rust has no collector; the allocator's collection-like work is jemalloc returning freed pages
//! to the OS (purging). The allocator is sampled (every `gcpoll` ms by the reporter, or at each
//! [`memstats`](crate::memstats) call when no reporter samples) and a **cycle closes** when, since
//! the previous sample:
//! 1. jemalloc completed at least one purge sweep (`dirty_npurge + muzzy_npurge` grew), or
//! 2. the live heap reached the goal, `max(4 MiB, live at the end of the previous cycle ×
//!    (1 + gcpercent/100))`: growth, as when Go's pacer would start a GC, or
//! 3. the program called [`free_os_memory`](crate::free_os_memory) (a *forced* cycle).
//!
//! Closed cycles go into a ring of the last [`RING`] cycles, from which the reporter prints.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::alloc::mallctl::{self, HeapSample};
use crate::alloc::{AllocCounters, is_installed};
use crate::sampler as cpu_sampler;
use crate::stats::{alloc_counters, millis};
use crate::sys::task::{ThreadCpu, threads_named};

/// How many closed cycles are kept for the reporter to print.
pub(crate) const RING: usize = 64;
/// The smallest goal, as in Go.
pub(crate) const MIN_GOAL: u64 = 4 << 20;

/// One closed allocator cycle: everything its `gc` line (and `gctrace=2` detail line) prints.
///
/// The JSON `gc` and `gcdetail` lines carry these fields under these names, so each line
/// deserializes into a `GcCycle` (the fields the line does not carry stay at their defaults).
///
/// ```
/// let c = rdebug::GcCycle::default();
/// assert_eq!(c.num, 0);
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct GcCycle {
    /// Cycle number, from 1 (`N` of `gc N`).
    pub num: u64,
    /// When the cycle closed, ms since init (`@S.SSSs`).
    pub at_ms: u64,
    /// Allocator CPU share since init, 0 to 1 (`P%` prints it ×100, truncated).
    pub cpu_fraction: f64,
    /// Footprint (`active + dirty + muzzy`) at the sample just before the cycle, bytes (`B`).
    pub before: u64,
    /// Footprint at the end of the cycle, bytes (`A`).
    pub after: u64,
    /// Live heap at the end of the cycle, bytes (`L`).
    pub live: u64,
    /// Goal in effect for this cycle, bytes (`G`): `max(4 MiB, live at the previous cycle ×
    /// (1 + gcpercent/100))`; 0 with `gcpercent=off`.
    pub goal: u64,
    /// Workers the CPU share is divided by (`W P`).
    pub procs: u64,
    /// Closed by [`free_os_memory`](crate::free_os_memory) (` (forced)`).
    pub forced: bool,
    /// Time since the previous cycle closed (or since init), ms.
    pub span_ms: u64,
    /// Bytes allocated during the cycle, by requested size (rdebug's counters).
    pub allocated_bytes: u64,
    /// Allocation calls during the cycle.
    pub allocs: u64,
    /// Bytes freed during the cycle.
    pub freed_bytes: u64,
    /// Deallocation calls during the cycle.
    pub frees: u64,
    /// `allocated_bytes` per second of the cycle's span.
    pub allocated_bytes_per_sec: u64,
    /// `allocs` per second of the cycle's span.
    pub allocs_per_sec: u64,
    /// `freed_bytes` per second of the cycle's span.
    pub freed_bytes_per_sec: u64,
    /// `frees` per second of the cycle's span.
    pub frees_per_sec: u64,
    /// jemalloc purge sweeps completed during the cycle (`dirty_npurge + muzzy_npurge` grew by).
    pub purge_sweeps: u64,
    /// Bytes purged during the cycle.
    pub purged: u64,
    /// jemalloc `stats.resident` at the end of the cycle, bytes.
    pub resident: u64,
    /// jemalloc `stats.retained` at the end of the cycle, bytes.
    pub retained: u64,
    /// jemalloc `stats.metadata` at the end of the cycle, bytes.
    pub metadata: u64,
    /// Process RSS at the end of the cycle, bytes (0 if unknown).
    pub rss: u64,
}

/// Figures kept across cycles, read by `memstats()`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Totals {
    pub num_gc: u64,
    pub num_forced_gc: u64,
    pub last_gc_unix_ns: u64,
    pub pause_total_ns: u64,
    pub next_gc: u64,
    pub cpu_fraction: f64,
}

pub(crate) struct Tracker {
    origin: Instant,
    gcpercent: Option<u64>,
    /// The previous sample, and when it was taken.
    prev: Option<(HeapSample, Instant)>,
    /// Values at the end of the previous cycle, for the per-cycle deltas.
    cycle_start: (Instant, AllocCounters, HeapSample),
    live_prev: u64,
    /// Allocation CPU already spent before the origin (subtracted from the share).
    cpu_at_origin: u64,
    bg_threads: Vec<ThreadCpu>,
    bg_threads_seen: u64,
    totals: Totals,
    ring: [GcCycle; RING],
    procs: u64,
}

static TRACKER: Mutex<Option<Tracker>> = Mutex::new(None);
/// Reporters sampling the allocator now; `memstats()` samples itself when there are none.
pub(crate) static POLLER_ACTIVE: AtomicUsize = AtomicUsize::new(0);
/// Percent in effect for the goal, `u64::MAX` for off (mirrors the tracker's, readable without it).
static GCPERCENT: AtomicU64 = AtomicU64::new(100);

/// The tracker, created on first use. A poisoned lock is taken over: the state is plain numbers.
pub(crate) fn tracker() -> MutexGuard<'static, Option<Tracker>> {
    let mut g = crate::sync::lock(&TRACKER);
    if g.is_none() {
        *g = Some(Tracker::new(crate::clock::origin()));
    }
    g
}

/// Starts the CPU-time sampler for the allocator CPU figure (gctrace's `P%`, `gc_cpu_fraction`,
/// the dashboard's CPU chart) if `Alloc` is the global allocator; once started it runs until
/// exit. Nothing else starts it: `/metrics`, `/debug/vars`, the dashboard's history while no
/// page asks for it and a heap profile read the figure without starting it. If it cannot start,
/// one note says why (once). Cheap once started: one atomic load.
///
/// Starting it first reads the executable's symbol table to know the allocator's code: 0.6–5 ms
/// for a small release program (measured), 20–130 ms for a debug test binary. Called from a
/// thread in a tokio runtime's context (a handler calling [`memstats`](crate::memstats) on a
/// worker), that is left to a thread of its own, once, and the call returns at once: the first
/// request to read memstats must not hold its worker (a STALL line named rdebug's table
/// there). The figure then counts from when that thread is done, a few ms later. The reporter
/// thread leaves it to that thread too ([`want_cpu_figure_aside`]).
pub(crate) fn want_cpu_figure() {
    want(tokio::runtime::Handle::try_current().is_ok());
}

/// [`want_cpu_figure`], always on a thread of its own: for the reporter, whose allocator samples
/// are due every `gcpoll` ms from its start. Started in place, the table's read held the first
/// sample back (to 143 ms in a CI run of a debug test binary), and a leak that had passed the
/// 4 MiB goal by then closed its first cycle late and so paced every cycle after it differently.
/// The read maps the symbol table rather than copying it onto the heap, so it allocates nothing
/// that could close a cycle of its own; the thread runs on the main thread's arena, so its exit
/// purges nothing jemalloc would not have purged anyway.
pub(crate) fn want_cpu_figure_aside() {
    want(true);
}

fn want(aside: bool) {
    static BACKGROUND: AtomicBool = AtomicBool::new(false);
    if !is_installed() || cpu_sampler::started_for_alloc() {
        return;
    }
    if aside {
        if BACKGROUND.swap(true, Relaxed) {
            return;
        }
        if std::thread::Builder::new()
            .name("rdebug-alloc-text".into())
            .spawn(|| {
                // Not alone on an arena: its exit would purge that arena, a cycle of rdebug's
                // making (seen 25 ms into a test run before this).
                let _ = crate::alloc::mallctl::use_arena_zero();
                start_cpu_figure()
            })
            .is_ok()
        {
            return;
        }
    }
    start_cpu_figure();
}

/// [`want_cpu_figure`]'s start, and its note if the sampler cannot run.
fn start_cpu_figure() {
    static NOTED: AtomicBool = AtomicBool::new(false);
    if let Err(reason) = cpu_sampler::ensure_started()
        && !NOTED.swap(true, Relaxed)
    {
        let message = format!("the allocator CPU share is not measured: {reason}");
        crate::sys::stderr::note("note", &message);
    }
}

/// Sets the pacing percent (`None` = off) for goals computed from now on.
pub(crate) fn set_gcpercent(p: Option<u64>) {
    GCPERCENT.store(p.unwrap_or(u64::MAX), Relaxed);
    // Not `tracker()`: creating the tracker starts the CPU-time sampler, which a `gcpercent`
    // alone does not need (a tracker made later reads `GCPERCENT`).
    if let Some(t) = crate::sync::lock(&TRACKER).as_mut() {
        t.gcpercent = p;
        t.totals.next_gc = goal(t.live_prev, p);
    }
}

/// `max(4 MiB, live × (1 + percent/100))`; `u64::MAX` when pacing is off.
pub(crate) fn goal(live: u64, percent: Option<u64>) -> u64 {
    match percent {
        None => u64::MAX,
        Some(p) => {
            let grown = (live as u128).saturating_mul(100 + p as u128) / 100;
            MIN_GOAL.max(u64::try_from(grown).unwrap_or(u64::MAX))
        }
    }
}

impl Tracker {
    fn new(origin: Instant) -> Self {
        let percent = match GCPERCENT.load(Relaxed) {
            u64::MAX => None,
            p => Some(p),
        };
        let counters = alloc_counters();
        Tracker {
            origin,
            gcpercent: percent,
            prev: None,
            cycle_start: (origin, counters, HeapSample::default()),
            live_prev: 0,
            cpu_at_origin: counters.alloc_cpu_ns,
            bg_threads: Vec::new(),
            bg_threads_seen: 0,
            totals: Totals {
                next_gc: goal(0, percent),
                ..Totals::default()
            },
            ring: [GcCycle::default(); RING],
            // The reporter sets the watched runtime's workers; until then, the machine's cores.
            procs: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
        }
    }

    pub(crate) fn totals(&self) -> Totals {
        self.totals
    }

    /// Sets the P count cycles divide CPU time by.
    pub(crate) fn set_procs(&mut self, procs: u64) {
        self.procs = procs.max(1);
    }

    /// Takes a sample; closes a cycle if a purge sweep completed or the live heap reached the
    /// goal since the previous one. Returns the new sample.
    pub(crate) fn poll(&mut self, rss: u64) -> Option<HeapSample> {
        let now = mallctl::sample()?;
        self.observe(now, live_bytes(&now, &alloc_counters()), rss, false);
        Some(now)
    }

    /// Feeds one sample (see `poll`) with the live heap `live` ([`live_bytes`]); with `forced`,
    /// closes a cycle regardless. The first sample closes a cycle only if it is forced or the
    /// live heap is already past the goal (a program that grew before anyone looked).
    pub(crate) fn observe(&mut self, now: HeapSample, live: u64, rss: u64, forced: bool) {
        // Stops rdebug's timers if the program installed a SIGPROF handler of its own meanwhile.
        cpu_sampler::check_handler();
        let at = Instant::now();
        let grown = live >= self.totals.next_gc;
        let Some((prev, _)) = self.prev.replace((now, at)) else {
            self.cycle_start.2 = now;
            if forced || grown {
                self.close(now, now, live, at, rss, forced);
            }
            return;
        };
        let swept = now.purge_sweeps > prev.purge_sweeps;
        if forced || swept || grown {
            self.close(prev, now, live, at, rss, forced);
        } else {
            self.update_cpu(at);
        }
    }

    /// Allocator CPU share since the origin: (allocator CPU from on-CPU samples + jemalloc background
    /// threads' CPU) / (wall time × procs).
    fn update_cpu(&mut self, at: Instant) -> f64 {
        let counted = alloc_counters()
            .alloc_cpu_ns
            .saturating_sub(self.cpu_at_origin);
        let cpu = counted.saturating_add(self.background_cpu_ns());
        let wall = at.saturating_duration_since(self.origin).as_nanos() as f64;
        let share = if wall > 0.0 {
            cpu as f64 / (wall * self.procs as f64)
        } else {
            0.0
        };
        self.totals.cpu_fraction = share;
        share
    }

    fn background_cpu_ns(&mut self) -> u64 {
        let seen = self.prev.map_or(0, |(s, _)| s.background_threads);
        if seen != self.bg_threads_seen {
            // Allocates, but only when jemalloc starts or stops background threads.
            self.bg_threads_seen = seen;
            self.bg_threads = threads_named("jemalloc_bg_thd")
                .into_iter()
                .map(ThreadCpu::open)
                .collect();
        }
        self.bg_threads
            .iter()
            .filter_map(ThreadCpu::cpu_ns)
            .fold(0u64, u64::saturating_add)
    }

    fn close(
        &mut self,
        before: HeapSample,
        now: HeapSample,
        live: u64,
        at: Instant,
        rss: u64,
        forced: bool,
    ) {
        let cpu_fraction = self.update_cpu(at);
        let counters = alloc_counters();
        let (start_at, start_counters, start_heap) = self.cycle_start;
        let t = &mut self.totals;
        t.num_gc = t.num_gc.saturating_add(1);
        if forced {
            t.num_forced_gc = t.num_forced_gc.saturating_add(1);
        }
        t.last_gc_unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let span = at.saturating_duration_since(start_at);
        let counted = counters_delta(&start_counters, &counters);
        let per_sec = |v: u64| per_second(v, span);
        let cycle = GcCycle {
            num: t.num_gc,
            at_ms: millis(at.saturating_duration_since(self.origin)),
            cpu_fraction,
            before: before.footprint(),
            after: now.footprint(),
            live,
            goal: if t.next_gc == u64::MAX { 0 } else { t.next_gc },
            procs: self.procs,
            forced,
            span_ms: millis(span),
            allocated_bytes: counted.allocated_bytes,
            allocs: counted.allocs,
            freed_bytes: counted.freed_bytes,
            frees: counted.frees,
            allocated_bytes_per_sec: per_sec(counted.allocated_bytes),
            allocs_per_sec: per_sec(counted.allocs),
            freed_bytes_per_sec: per_sec(counted.freed_bytes),
            frees_per_sec: per_sec(counted.frees),
            purge_sweeps: now.purge_sweeps.saturating_sub(start_heap.purge_sweeps),
            purged: now.purged.saturating_sub(start_heap.purged),
            resident: now.resident,
            retained: now.retained,
            metadata: now.metadata,
            rss,
        };
        t.next_gc = goal(live, self.gcpercent);
        self.live_prev = live;
        self.ring[(cycle.num % RING as u64) as usize] = cycle;
        self.cycle_start = (at, counters, now);
    }

    /// Adds the time one forced purge took.
    pub(crate) fn add_pause(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.totals.pause_total_ns = self.totals.pause_total_ns.saturating_add(ns);
    }

    /// Calls `f` with every cycle after number `after`, oldest first; returns how many were
    /// lost because the ring had already overwritten them, and the last number seen.
    pub(crate) fn cycles_after(&self, after: u64, mut f: impl FnMut(&GcCycle)) -> (u64, u64) {
        let last = self.totals.num_gc;
        if last <= after {
            return (0, after);
        }
        let first = after
            .saturating_add(1)
            .max(last.saturating_sub(RING as u64 - 1));
        for n in first..=last {
            f(&self.ring[(n % RING as u64) as usize]);
        }
        (first - after - 1, last)
    }
}

/// `v` per second of `span` (0 for a span of zero), saturating.
fn per_second(v: u64, span: Duration) -> u64 {
    let secs = span.as_secs_f64();
    if secs > 0.0 {
        (v as f64 / secs) as u64
    } else {
        0
    }
}

/// The live heap: rdebug's exact live bytes (by requested size) when [`Alloc`](crate::Alloc) is
/// the global allocator, else jemalloc's `stats.allocated`.
pub(crate) fn live_bytes(heap: &HeapSample, counters: &AllocCounters) -> u64 {
    if is_installed() {
        counters.live_bytes
    } else {
        heap.allocated
    }
}

fn counters_delta(a: &AllocCounters, b: &AllocCounters) -> AllocCounters {
    let mut d = *b;
    d.allocated_bytes = b.allocated_bytes.saturating_sub(a.allocated_bytes);
    d.freed_bytes = b.freed_bytes.saturating_sub(a.freed_bytes);
    d.allocs = b.allocs.saturating_sub(a.allocs);
    d.frees = b.frees.saturating_sub(a.frees);
    d.alloc_cpu_ns = b.alloc_cpu_ns.saturating_sub(a.alloc_cpu_ns);
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goal_doubles_live_with_a_floor_of_4_mib() {
        assert_eq!(goal(0, Some(100)), 4 << 20);
        assert_eq!(goal(3 << 20, Some(100)), 6 << 20);
        assert_eq!(goal(10 << 20, Some(50)), 15 << 20);
        assert_eq!(goal(10 << 20, Some(0)), 10 << 20);
        assert_eq!(goal(u64::MAX, Some(100)), u64::MAX);
        assert_eq!(goal(1, None), u64::MAX);
        assert_eq!(goal(u64::MAX, Some(u64::MAX)), u64::MAX);
    }

    /// Months of running: counters at the top of their range, counters that go backwards, a
    /// clock that did not advance. Nothing panics, nothing wraps.
    #[test]
    fn counters_at_their_limits_neither_wrap_nor_panic() {
        let mut t = Tracker::new(Instant::now());
        // A clock that did not advance: no share rather than a division by zero.
        assert_eq!(t.update_cpu(t.origin), 0.0);
        t.observe(sample(0, 0), 0, 0, false);
        let mut huge = sample(u64::MAX - 1, u64::MAX - 1);
        huge.purged = u64::MAX;
        huge.dirty = u64::MAX;
        huge.muzzy = u64::MAX;
        t.observe(huge, live_of(&huge), u64::MAX, false);
        assert_eq!(t.totals().num_gc, 1);
        assert_eq!(t.totals().next_gc, u64::MAX, "the goal saturates");
        // Sweeps and purged bytes that went backwards (e.g. a destroyed arena): no cycle...
        let mut back = sample(1, 0);
        back.purged = 0;
        t.observe(back, live_of(&back), 0, false);
        t.observe(back, live_of(&back), 0, false);
        assert_eq!(t.totals().num_gc, 1);
        // ... and no negative delta when one closes.
        t.observe(back, live_of(&back), 0, true);
        let mut last = None;
        t.cycles_after(1, |c| last = Some(*c));
        let c = last.expect("the forced cycle");
        assert_eq!((c.num, c.purge_sweeps, c.purged), (2, 0, 0));
        // The cycle number at its limit: it stays there, and printing after it shows nothing.
        t.totals.num_gc = u64::MAX - 1;
        t.observe(back, live_of(&back), 0, true);
        t.observe(back, live_of(&back), 0, true);
        assert_eq!(t.totals().num_gc, u64::MAX);
        assert_eq!(t.totals().num_forced_gc, 3);
        let mut seen = 0;
        assert_eq!(t.cycles_after(u64::MAX - 1, |_| seen += 1), (0, u64::MAX));
        assert_eq!(t.cycles_after(u64::MAX, |_| seen += 1), (0, u64::MAX));
        assert_eq!(seen, 1);
        t.add_pause(Duration::MAX);
        t.add_pause(Duration::MAX);
        assert_eq!(t.totals().pause_total_ns, u64::MAX);
    }

    #[test]
    fn cycle_deltas_saturate() {
        let a = AllocCounters {
            allocated_bytes: 10,
            allocs: 5,
            ..AllocCounters::default()
        };
        let d = counters_delta(&a, &AllocCounters::default());
        assert_eq!((d.allocated_bytes, d.allocs), (0, 0));
        let top = AllocCounters {
            allocated_bytes: u64::MAX,
            allocs: u64::MAX,
            ..AllocCounters::default()
        };
        let d = counters_delta(&AllocCounters::default(), &top);
        assert_eq!((d.allocated_bytes, d.allocs), (u64::MAX, u64::MAX));
    }

    fn live_of(s: &HeapSample) -> u64 {
        s.allocated
    }

    fn sample(allocated: u64, sweeps: u64) -> HeapSample {
        HeapSample {
            allocated,
            active: allocated,
            purge_sweeps: sweeps,
            ..HeapSample::default()
        }
    }

    #[test]
    fn cycles_close_on_sweeps_growth_and_force_only() {
        let mut t = Tracker::new(Instant::now());
        t.gcpercent = Some(100);
        t.observe(sample(1 << 20, 0), 1 << 20, 0, false); // first sample: baseline only
        t.observe(sample(2 << 20, 0), 2 << 20, 0, false); // below the 4 MiB goal, no sweep
        assert_eq!(t.totals().num_gc, 0);
        t.observe(sample(2 << 20, 3), 2 << 20, 0, false); // sweeps grew
        assert_eq!(t.totals().num_gc, 1);
        assert_eq!(t.totals().next_gc, 4 << 20);
        t.observe(sample(5 << 20, 3), 5 << 20, 0, false); // reached the goal
        assert_eq!(t.totals().num_gc, 2);
        assert_eq!(t.totals().next_gc, 10 << 20);
        t.observe(sample(6 << 20, 3), 6 << 20, 0, true);
        let totals = t.totals();
        assert_eq!((totals.num_gc, totals.num_forced_gc), (3, 1));
        let mut seen = Vec::new();
        let (lost, last) = t.cycles_after(0, |c| seen.push((c.num, c.goal >> 20, c.forced)));
        assert_eq!((lost, last), (0, 3));
        assert_eq!(seen, [(1, 4, false), (2, 4, false), (3, 10, true)]);
    }

    #[test]
    fn the_ring_reports_what_it_lost() {
        let mut t = Tracker::new(Instant::now());
        t.observe(sample(0, 0), 0, 0, false);
        for i in 1..=(RING as u64 + 10) {
            t.observe(sample(0, i), 0, 0, false);
        }
        let mut first = None;
        let (lost, last) = t.cycles_after(0, |c| {
            first.get_or_insert(c.num);
        });
        assert_eq!(last, RING as u64 + 10);
        assert_eq!(first, Some(lost + 1));
        assert_eq!(lost, 10);
    }
}
