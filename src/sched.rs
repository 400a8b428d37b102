//! The scheduler side: [`SchedStats`] read from a tokio runtime's metrics, the runtimes the
//! reporter watches, and the SCHED lines.
//!
//! Every figure is an atomic load in tokio (a full stable snapshot of 4 workers costs ~14 ns) plus
//! one `pread` of `/proc/self/stat` for the thread count. Figures that need `--cfg tokio_unstable`
//! are `None` without it, and left out of the lines rather than printed as 0.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, RuntimeMetrics};

use crate::os::ProcessFiles;

/// A snapshot of one tokio runtime's scheduler, like Go's SCHED line as a struct.
///
/// Read with [`sched_stats`].
///
/// ```
/// let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
/// let s = rdebug::sched_stats(rt.handle());
/// assert_eq!(s.workers, 2);
/// assert_eq!(s.per_worker.len(), 2);
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SchedStats {
    /// Worker threads of the runtime (Go's `gomaxprocs`): `RuntimeMetrics::num_workers`.
    pub workers: usize,
    /// Workers parked right now (Go's `idleprocs`): workers whose
    /// `worker_park_unpark_count` is odd. Exact: tokio flushes that counter right before a worker
    /// parks and right after it unparks.
    pub idle_workers: usize,
    /// Tasks alive in the runtime: `num_alive_tasks`, minus the one task rdebug keeps in a
    /// runtime it watches (to notice when the runtime shuts down).
    pub tasks: usize,
    /// Tasks in the global (injection) queue (Go's `runqueue`): `global_queue_depth`.
    pub global_queue_depth: usize,
    /// OS threads of the whole process: field 20 of `/proc/self/stat`. `None` where there is no
    /// `/proc`.
    pub threads: Option<u64>,
    /// Threads in the blocking pool, busy or idle: `num_blocking_threads`
    /// (needs `--cfg tokio_unstable`).
    pub blocking_threads: Option<usize>,
    /// Idle threads in the blocking pool: `num_idle_blocking_threads`
    /// (needs `--cfg tokio_unstable`).
    pub idle_blocking_threads: Option<usize>,
    /// Tasks waiting for a blocking-pool thread: `blocking_queue_depth`
    /// (needs `--cfg tokio_unstable`).
    pub blocking_queue_depth: Option<usize>,
    /// One entry per worker, in worker index order.
    pub per_worker: Vec<WorkerStats>,
}

/// One worker of a runtime, as in Go's `scheddetail` P lines.
///
/// ```
/// let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
/// let w = &rdebug::sched_stats(rt.handle()).per_worker[0];
/// assert!(w.park_count >= w.park_unpark_count / 2);
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct WorkerStats {
    /// Parked right now: `worker_park_unpark_count` is odd.
    pub parked: bool,
    /// Times the worker parked: `worker_park_count`.
    pub park_count: u64,
    /// Parks plus unparks: `worker_park_unpark_count`.
    pub park_unpark_count: u64,
    /// Time spent busy, ns: `worker_total_busy_duration`. tokio flushes it only when the worker
    /// parks or every 61 scheduler ticks, so it lags a worker that has been busy for a while.
    pub busy_ns: u64,
    /// Tasks in the worker's local queue: `worker_local_queue_depth` (needs `tokio_unstable`).
    pub local_queue_depth: Option<usize>,
    /// Task polls: `worker_poll_count` (needs `tokio_unstable`).
    pub polls: Option<u64>,
    /// Tasks stolen from other workers: `worker_steal_count` (needs `tokio_unstable`).
    pub steals: Option<u64>,
    /// Unparks that found no work: `worker_noop_count` (needs `tokio_unstable`).
    pub noops: Option<u64>,
    /// Mean task poll time, ns: `worker_mean_poll_time` (needs `tokio_unstable`).
    pub mean_poll_ns: Option<u64>,
}

/// A snapshot of `handle`'s scheduler, usable with or without any trace on.
///
/// ```
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() {
/// let s = tokio::spawn(async { rdebug::sched_stats(&tokio::runtime::Handle::current()) })
///     .await
///     .unwrap();
/// assert_eq!(s.workers, 2);
/// assert!(s.idle_workers <= 1); // the task reading it runs on one of them
/// # }
/// ```
pub fn sched_stats(handle: &Handle) -> SchedStats {
    let mut s = SchedStats::default();
    let own_tasks = usize::from(is_watched(handle));
    fill(&handle.metrics(), own_tasks, &mut s);
    s.threads = process_files().threads();
    s
}

/// The process's `/proc` files, opened once.
pub(crate) fn process_files() -> &'static ProcessFiles {
    static FILES: OnceLock<ProcessFiles> = OnceLock::new();
    FILES.get_or_init(ProcessFiles::open)
}

/// Fills `s` from `m`, reusing `s.per_worker`'s capacity (no allocation once it has grown).
/// `own_tasks` is how many of the alive tasks are rdebug's own.
pub(crate) fn fill(m: &RuntimeMetrics, own_tasks: usize, s: &mut SchedStats) {
    let n = m.num_workers();
    s.workers = n;
    s.tasks = m.num_alive_tasks().saturating_sub(own_tasks);
    s.global_queue_depth = m.global_queue_depth();
    s.per_worker.clear();
    for w in 0..n {
        s.per_worker.push(worker(m, w));
    }
    s.idle_workers = s.per_worker.iter().filter(|w| w.parked).count();
    unstable_pool(m, s);
}

fn worker(m: &RuntimeMetrics, w: usize) -> WorkerStats {
    let park_unpark_count = m.worker_park_unpark_count(w);
    let mut ws = WorkerStats {
        parked: park_unpark_count % 2 == 1,
        park_count: m.worker_park_count(w),
        park_unpark_count,
        busy_ns: nanos(m.worker_total_busy_duration(w)),
        ..WorkerStats::default()
    };
    unstable_worker(m, w, &mut ws);
    ws
}

#[cfg(tokio_unstable)]
fn unstable_worker(m: &RuntimeMetrics, w: usize, ws: &mut WorkerStats) {
    ws.local_queue_depth = Some(m.worker_local_queue_depth(w));
    ws.polls = Some(m.worker_poll_count(w));
    ws.steals = Some(m.worker_steal_count(w));
    ws.noops = Some(m.worker_noop_count(w));
    ws.mean_poll_ns = Some(nanos(m.worker_mean_poll_time(w)));
}

#[cfg(not(tokio_unstable))]
fn unstable_worker(_: &RuntimeMetrics, _: usize, _: &mut WorkerStats) {}

#[cfg(tokio_unstable)]
fn unstable_pool(m: &RuntimeMetrics, s: &mut SchedStats) {
    s.blocking_threads = Some(m.num_blocking_threads());
    s.idle_blocking_threads = Some(m.num_idle_blocking_threads());
    s.blocking_queue_depth = Some(m.blocking_queue_depth());
}

#[cfg(not(tokio_unstable))]
fn unstable_pool(_: &RuntimeMetrics, _: &mut SchedStats) {}

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Whether this build has the `tokio_unstable` figures.
pub(crate) const UNSTABLE: bool = cfg!(tokio_unstable);

/// A runtime the reporter prints SCHED lines for.
pub(crate) struct Watched {
    pub id: tokio::runtime::Id,
    /// Printed as `runtime=<label>`; `None` for the one unnamed runtime `init()` watches.
    pub label: Option<String>,
    pub handle: Handle,
    /// Cleared when rdebug's task in the runtime is dropped: the runtime shut down.
    pub alive: Arc<AtomicBool>,
    /// Reused snapshot buffer.
    pub stats: SchedStats,
    /// Busy time per worker at the previous SCHED line, for the busy share.
    pub prev_busy: Vec<u64>,
    pub prev_at: Instant,
}

static WATCHED: Mutex<Vec<Watched>> = Mutex::new(Vec::new());

pub(crate) fn watched() -> MutexGuard<'static, Vec<Watched>> {
    WATCHED.lock().unwrap_or_else(|e| e.into_inner())
}

/// The list, if it comes free within 50 ms (for the panic hook, which must not block).
pub(crate) fn watched_briefly() -> Option<MutexGuard<'static, Vec<Watched>>> {
    crate::panic_hook::lock_briefly(&WATCHED)
}

/// Clears its flag when dropped, i.e. when the runtime holding it drops its tasks.
struct AliveGuard(Arc<AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Relaxed);
    }
}

fn is_watched(handle: &Handle) -> bool {
    let id = handle.id();
    watched()
        .iter()
        .any(|w| w.id == id && w.alive.load(Relaxed))
}

/// Starts watching `handle` (or renames it if watched already). Returns false if it was watched.
pub(crate) fn watch(handle: &Handle, name: Option<&str>) -> bool {
    let id = handle.id();
    let mut list = watched();
    forget_dead(&mut list);
    if let Some(w) = list
        .iter_mut()
        .find(|w| w.id == id && w.alive.load(Relaxed))
    {
        if let Some(name) = name {
            w.label = Some(name.to_owned());
        }
        return false;
    }
    let label = name
        .or(handle.name())
        .map(str::to_owned)
        .or_else(|| (!list.is_empty()).then(|| format!("rt{id}")));
    let alive = Arc::new(AtomicBool::new(true));
    let guard = AliveGuard(alive.clone());
    // Dropped with the runtime's other tasks when it shuts down (or at once if it already has).
    drop(handle.spawn(async move {
        let _guard = guard;
        std::future::pending::<()>().await;
    }));
    let workers = handle.metrics().num_workers();
    list.push(Watched {
        id,
        label,
        handle: handle.clone(),
        alive,
        stats: SchedStats {
            per_worker: Vec::with_capacity(workers),
            ..SchedStats::default()
        },
        prev_busy: vec![0; workers],
        prev_at: Instant::now(),
    });
    true
}

/// Labels of watched runtimes that shut down and were dropped from the list before a reporter
/// announced it (at most [`MAX_GONE`]): the reporter announces them at its next SCHED tick.
static GONE: Mutex<Vec<Option<String>>> = Mutex::new(Vec::new());
const MAX_GONE: usize = 64;

/// Drops the runtimes that shut down from the list, keeping their order otherwise, so that a
/// program that watches many short-lived runtimes does not keep them all (each `Handle` holds
/// its runtime's driver and queues) when no SCHED reporter prunes the list.
fn forget_dead(list: &mut Vec<Watched>) {
    if list.iter().all(|w| w.alive.load(Relaxed)) {
        return;
    }
    let mut gone = GONE.lock().unwrap_or_else(|e| e.into_inner());
    for w in std::mem::take(list) {
        if w.alive.load(Relaxed) {
            list.push(w);
        } else if gone.len() < MAX_GONE {
            gone.push(w.label);
        }
    }
}

/// Takes the labels [`forget_dead`] kept for the reporter (no allocation when there are none).
pub(crate) fn take_gone() -> Vec<Option<String>> {
    std::mem::take(&mut *GONE.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Workers of the first watched runtime that is still alive (the `P` of gc lines).
pub(crate) fn primary_workers() -> Option<usize> {
    watched()
        .iter()
        .find(|w| w.alive.load(Relaxed))
        .map(|w| w.handle.metrics().num_workers())
}
