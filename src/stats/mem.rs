//! [`MemStats`]: Go's `runtime.MemStats` for jemalloc, and [`free_os_memory`](crate::free_os_memory).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Instant;

use super::alloc_counters;
use super::gc;
use crate::alloc::is_installed;
use crate::alloc::mallctl;
use crate::sys::proc::process_files;
use crate::sys::stderr;

/// Memory figures, named as in Go's `runtime.MemStats` where Go has the figure.
///
/// Read with [`memstats`]. Bytes unless said otherwise. Figures from jemalloc are refreshed by an
/// `epoch` advance at every read. Counts of calls and bytes come from [`Alloc`](crate::Alloc)'s
/// own per-thread counters (jemalloc's lag behind its thread caches) and are zero when another
/// global allocator is installed; jemalloc's figures are zero when jemalloc is not the allocator.
///
/// ```
/// #[global_allocator]
/// static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
///
/// let m = rdebug::memstats();
/// assert_eq!(m.heap_objects, m.mallocs - m.frees);
/// assert!(m.heap_sys >= m.heap_inuse);
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct MemStats {
    /// Bytes in live heap objects, by requested size: rdebug's counters, `total_alloc` minus the
    /// bytes freed, read at once with them (so `alloc <= total_alloc` always), just before
    /// jemalloc's figures; never above `heap_inuse` (as Go's: an object freed between the two
    /// reads is not counted). Same as `heap_alloc`. Under another global allocator: jemalloc's
    /// `stats.allocated` if jemalloc is the heap, else 0.
    pub alloc: u64,
    /// Bytes requested over the process's life, by requested size: rdebug's counters.
    pub total_alloc: u64,
    /// Memory obtained from the OS: jemalloc `stats.mapped + stats.dirty + stats.muzzy +
    /// stats.retained + stats.metadata`. `stats.mapped` counts only extents holding live
    /// objects, not the free (dirty, muzzy) extents still mapped, so DESIGN.md's
    /// `mapped + retained + metadata` fell below `heap_sys` when many pages were dirty (seen in
    /// `tests/truth_memstats.rs` under churn: 69.5 MB against 78.2 MB); with the free extents
    /// added, `heap_sys <= sys` holds at every read, as in Go.
    pub sys: u64,
    /// Allocation calls over the process's life: rdebug's counters.
    pub mallocs: u64,
    /// Deallocation calls over the process's life: rdebug's counters.
    pub frees: u64,
    /// Bytes in live heap objects: the same figure as `alloc` (Go keeps both names);
    /// `heap_alloc <= heap_inuse` at every read.
    pub heap_alloc: u64,
    /// Heap memory from the OS: `heap_inuse + heap_idle`.
    pub heap_sys: u64,
    /// Heap memory not in use: `dirty + muzzy + retained`.
    pub heap_idle: u64,
    /// Bytes in pages with live objects: jemalloc `stats.active`.
    pub heap_inuse: u64,
    /// Heap memory given back to the OS: `muzzy + retained`.
    pub heap_released: u64,
    /// Live objects: `mallocs - frees`, from the same read of rdebug's counters.
    pub heap_objects: u64,
    /// Goal of the next allocator cycle: `max(4 MiB, live at the last cycle × (1 + gcpercent/100))`;
    /// `u64::MAX` with `gcpercent=off`.
    pub next_gc: u64,
    /// When the last allocator cycle closed, ns since the Unix epoch (0: none yet).
    pub last_gc: u64,
    /// Allocator cycles closed (purge sweeps, growth past the goal, forced): see the crate docs.
    pub num_gc: u64,
    /// Cycles forced by [`free_os_memory`](crate::free_os_memory).
    pub num_forced_gc: u64,
    /// Time spent in forced purges (`free_os_memory`), ns: the only time rdebug makes the program
    /// wait for the allocator.
    pub pause_total_ns: u64,
    /// Allocator CPU share since init: (CPU time inside allocator calls, from on-CPU samples, + jemalloc
    /// background threads' CPU) / (wall time × workers). The on-CPU samples come from rdebug's
    /// CPU-time sampler (one `SIGPROF` per 10 ms of each allocating thread's CPU), which only what
    /// needs this figure starts: the first [`memstats`] call, a `gctrace` reporter, or a dashboard
    /// page; then it runs until exit. `/metrics`, `/debug/vars` and the debug server's own
    /// history do not start it (the figure there stays 0 until something did).
    pub gc_cpu_fraction: f64,
    /// jemalloc's own live-bytes figure, `stats.allocated`: size-class rounded, and counting
    /// objects parked in its thread caches (freed by the program, not yet returned to an arena),
    /// so it exceeds `heap_alloc` and lags it.
    pub allocated: u64,
    /// Physically resident pages jemalloc maps: `stats.resident`.
    pub resident: u64,
    /// Virtual memory kept mapped but returned to the OS: `stats.retained`.
    pub retained: u64,
    /// Memory in active extents: `stats.mapped`.
    pub mapped: u64,
    /// jemalloc's own metadata: `stats.metadata`.
    pub metadata: u64,
    /// Freed pages not yet returned to the OS: `stats.arenas.<all>.pdirty` × page size.
    pub dirty: u64,
    /// Pages lazily returned (`MADV_FREE`): `stats.arenas.<all>.pmuzzy` × page size.
    pub muzzy: u64,
    /// Bytes purged over the process's life: `(dirty_purged + muzzy_purged)` × page size.
    pub purged: u64,
    /// Resident set size of the whole process: `/proc/self/statm` field 2 × page size.
    pub rss: u64,
}

/// A snapshot of the allocator, usable with or without any trace on.
///
/// Costs one jemalloc `epoch` advance (a few µs per arena in use, no stop-the-world), ~15 reads,
/// a sum of the per-thread counters, and one `/proc` read. When no reporter samples the allocator
/// (`RDEBUG` turned no trace on), the read also checks for a closed cycle, so `num_gc` still moves.
///
/// The first call starts the sampler behind `gc_cpu_fraction`, which reads the executable's
/// symbol table once (a few ms in a release build). Called on a thread of a tokio runtime (a
/// request handler), it leaves that to a thread of its own and returns at once, so the first
/// request to read memstats does not hold its worker; the figure counts from a few ms later.
///
/// When the global allocator is not [`Alloc`](crate::Alloc), the figures it alone can give are
/// zero, and the first read in the process (unless the `gctrace` reporter said it already) writes
/// one `rdebug: note:` line on stderr saying which ones are missing and why.
///
/// ```
/// #[global_allocator]
/// static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
///
/// let held = vec![1u8; 8 << 20];
/// let m = rdebug::memstats();
/// assert!(m.heap_alloc >= 8 << 20);
/// drop(held);
/// ```
pub fn memstats() -> MemStats {
    // Its `gc_cpu_fraction` needs the allocator-CPU sampler: the first call starts it.
    gc::want_cpu_figure();
    read()
}

/// [`memstats`] without starting the allocator-CPU sampler: for rdebug's own readers (`/metrics`,
/// `/debug/vars`, the dashboard's history tick, heap profiles), which must not start a `SIGPROF`
/// timer on every thread just by running; their `gc_cpu_fraction` is 0 until something that
/// needs the figure started the sampler.
pub(crate) fn read() -> MemStats {
    if let Some(missing) = missing_figures_once() {
        say_missing(missing);
    }
    // The counters first, then jemalloc's epoch: objects allocated in between are in
    // `heap_inuse` but not in `heap_alloc`, never the other way round (read the other way, a
    // reader preempted between the two reads while threads fill their heaps saw heap_alloc
    // megabytes above heap_inuse). Objects freed in between could still be counted live after
    // jemalloc dropped them, so `heap_alloc` is capped at `heap_inuse`: Go's HeapAlloc ≤
    // HeapInuse holds at every read.
    let counters = alloc_counters();
    let heap = if heap_is_jemalloc() {
        mallctl::sample().unwrap_or_default()
    } else {
        mallctl::HeapSample::default()
    };
    let live = gc::live_bytes(&heap, &counters);
    let live = if heap_is_jemalloc() {
        live.min(heap.active)
    } else {
        live
    };
    let rss = process_files().rss().unwrap_or(0);
    let totals = {
        let mut guard = gc::tracker();
        let t = guard.as_mut().map(|t| {
            if gc::POLLER_ACTIVE.load(Relaxed) == 0 && heap_is_jemalloc() {
                t.observe(heap, live, rss, false);
            }
            t.totals()
        });
        t.unwrap_or_default()
    };
    let heap_idle = heap
        .dirty
        .saturating_add(heap.muzzy)
        .saturating_add(heap.retained);
    MemStats {
        alloc: live,
        total_alloc: counters.allocated_bytes,
        sys: heap
            .mapped
            .saturating_add(heap.dirty)
            .saturating_add(heap.muzzy)
            .saturating_add(heap.retained)
            .saturating_add(heap.metadata),
        mallocs: counters.allocs,
        frees: counters.frees,
        heap_alloc: live,
        heap_sys: heap.active.saturating_add(heap_idle),
        heap_idle,
        heap_inuse: heap.active,
        heap_released: heap.muzzy.saturating_add(heap.retained),
        heap_objects: counters.live_objects,
        next_gc: totals.next_gc,
        last_gc: totals.last_gc_unix_ns,
        num_gc: totals.num_gc,
        num_forced_gc: totals.num_forced_gc,
        pause_total_ns: totals.pause_total_ns,
        gc_cpu_fraction: totals.cpu_fraction,
        allocated: heap.allocated,
        resident: heap.resident,
        retained: heap.retained,
        mapped: heap.mapped,
        metadata: heap.metadata,
        dirty: heap.dirty,
        muzzy: heap.muzzy,
        purged: heap.purged,
        rss,
    }
}

/// Purges every jemalloc arena and records a forced cycle: the work of
/// [`free_os_memory`](crate::free_os_memory), which also has the reporter print the cycle.
pub(crate) fn free_os_memory() {
    if !heap_is_jemalloc() {
        return;
    }
    let mut guard = gc::tracker();
    let Some(t) = guard.as_mut() else { return };
    let started = Instant::now();
    let purged = mallctl::purge_all();
    let pause = started.elapsed();
    if !purged {
        return;
    }
    t.add_pause(pause);
    if let Some(now) = mallctl::sample() {
        let rss = process_files().rss().unwrap_or(0);
        t.observe(now, gc::live_bytes(&now, &alloc_counters()), rss, true);
    }
}

/// Set once the missing figures have been said, by the reporter or by [`memstats`].
static SAID_MISSING: AtomicBool = AtomicBool::new(false);

/// [`missing_figures`], the first time it is asked for in this process; `None` after that.
pub(crate) fn missing_figures_once() -> Option<&'static str> {
    if SAID_MISSING.load(Relaxed) {
        return None;
    }
    let missing = missing_figures()?;
    (!SAID_MISSING.swap(true, Relaxed)).then_some(missing)
}

/// The note, on stderr (never blocking), in the format of the running reporter if any.
fn say_missing(missing: &str) {
    stderr::note("note", missing);
}

/// Which figures this process can have, said once when they are first needed.
pub(crate) fn missing_figures() -> Option<&'static str> {
    if is_installed() {
        return None;
    }
    if heap_is_jemalloc() {
        Some(
            "the global allocator is not rdebug::Alloc: total_alloc, mallocs, frees, heap_objects \
             and the allocator CPU share are not counted (install it with \
             `#[global_allocator] static ALLOC: rdebug::Alloc = rdebug::Alloc::new();`)",
        )
    } else {
        Some(
            "the global allocator is neither rdebug::Alloc nor jemalloc: heap figures, allocation \
             counts and allocator cycles are not available, only rss (install it with \
             `#[global_allocator] static ALLOC: rdebug::Alloc = rdebug::Alloc::new();`)",
        )
    }
}

/// Whether the global allocator allocates from this jemalloc (and jemalloc has statistics).
/// Checked once: `rdebug::Alloc` is; otherwise a 1 MiB allocation must show in `stats.allocated`.
pub(crate) fn heap_is_jemalloc() -> bool {
    static ANSWER: OnceLock<bool> = OnceLock::new();
    *ANSWER
        .get_or_init(|| mallctl::available() && (is_installed() || allocation_shows_in_jemalloc()))
}

fn allocation_shows_in_jemalloc() -> bool {
    let Some(before) = mallctl::sample() else {
        return false;
    };
    let block = std::hint::black_box(vec![1u8; 1 << 20]);
    let during = mallctl::sample().unwrap_or_default();
    drop(block);
    during.allocated >= before.allocated.saturating_add(1 << 19)
}
