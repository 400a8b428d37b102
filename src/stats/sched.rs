//! The scheduler side: [`SchedStats`] read from a tokio runtime's metrics.
//!
//! Every figure is an atomic load in tokio (a full stable snapshot of 4 workers costs ~14 ns) plus
//! one `pread` of `/proc/self/stat` for the thread count. Figures that need `--cfg tokio_unstable`
//! are `None` without it, and left out of the lines rather than printed as 0.

use std::time::Duration;

use tokio::runtime::{Handle, RuntimeMetrics};

use crate::runtime::watched::is_watched;
use crate::sys::proc::process_files;

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
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
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
    /// Polls that held a worker `stalltrace` ms or more, seen since the runtime was watched
    /// (0 while `RDEBUG=stalltrace` is off): the STALL lines.
    pub stalls: u64,
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
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
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
    /// Mean task poll time, ns: `worker_mean_poll_time` (needs `tokio_unstable`); `None` until the
    /// worker has polled a task.
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
    s.stalls = crate::runtime::watched::stall_count(handle);
    s
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
    // tokio reports a mean before the first poll; rdebug shows none until there is one.
    ws.mean_poll_ns = (m.worker_poll_count(w) > 0).then(|| nanos(m.worker_mean_poll_time(w)));
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

/// `d` in ns, `u64::MAX` past it.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `d` in ms, `u64::MAX` past it.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether this build has the `tokio_unstable` figures.
pub(crate) const UNSTABLE: bool = cfg!(tokio_unstable);
