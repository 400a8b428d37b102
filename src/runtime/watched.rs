//! The runtimes rdebug watches: the list the reporter prints SCHED lines for, and how a runtime's
//! shutdown is noticed (a task of rdebug's in it is dropped).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::runtime::Handle;

use super::workers::Workers;
use crate::sync::{lock, lock_briefly};

/// A runtime the reporter prints SCHED lines for.
pub(crate) struct Watched {
    pub id: tokio::runtime::Id,
    /// Printed as `runtime=<label>`; `None` for the one unnamed runtime `init()` watches.
    pub label: Option<String>,
    pub handle: Handle,
    /// Cleared when rdebug's task in the runtime is dropped: the runtime shut down.
    pub alive: Arc<AtomicBool>,
    /// The id of that task of rdebug's (left out of task dumps, which read it only in builds
    /// with `--cfg tokio_unstable` and the `taskdump` feature).
    #[allow(dead_code)]
    pub own_task: tokio::task::Id,
    /// Its workers and the thread each runs on.
    pub workers: Arc<Workers>,
    /// Stalls seen (`stalltrace`).
    pub stalls: u64,
    /// The last few stalls, oldest first (at most [`RECENT_STALLS`]).
    pub recent_stalls: VecDeque<Stall>,
    /// How long its stalls lasted.
    pub stall_lengths: StallLengths,
}

/// Most stalls a runtime keeps for `/debug/vars`.
pub(crate) const RECENT_STALLS: usize = 8;

/// One stall, as `/debug/vars` lists it.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "http"), allow(dead_code))] // read by /debug/vars
pub(crate) struct Stall {
    /// Unix time when it was reported, ms.
    pub unix_ms: u64,
    pub worker: usize,
    /// How long the poll had held the worker when it was reported, ms.
    pub polled_ms: u64,
    /// How long the poll held the worker in all, ms, once it ended (`None` while it runs).
    pub lasted_ms: Option<u64>,
    /// Innermost frames first (empty without the `pprof` feature).
    pub stack: Vec<String>,
}

/// Stalls recorded over every runtime ever watched, gone ones included: what the dashboard's
/// ticks count the stalls of each second from (a sum over the runtimes watched now would drop
/// when one shuts down).
static STALLS_EVER: AtomicU64 = AtomicU64::new(0);

/// Records a stall of the watched runtime `id`: counted, and kept among the last few.
pub(crate) fn record_stall(id: tokio::runtime::Id, stall: Stall) {
    if let Some(w) = watched().iter_mut().find(|w| w.id == id) {
        // Only ever added to; wraps after 2^64 stalls, which cannot happen.
        STALLS_EVER.fetch_add(1, Relaxed);
        w.stalls = w.stalls.saturating_add(1);
        if w.recent_stalls.len() >= RECENT_STALLS {
            w.recent_stalls.pop_front();
        }
        w.recent_stalls.push_back(stall);
    }
}

/// Records that the last stall of `worker` in runtime `id` ended after `lasted`: its record
/// gets its length, and the lengths' histogram counts it.
pub(crate) fn record_stall_end(id: tokio::runtime::Id, worker: usize, lasted: std::time::Duration) {
    let ms = crate::stats::millis(lasted);
    if let Some(w) = watched().iter_mut().find(|w| w.id == id)
        && let Some(s) = w
            .recent_stalls
            .iter_mut()
            .rev()
            .find(|s| s.worker == worker && s.lasted_ms.is_none())
    {
        s.lasted_ms = Some(ms);
    }
    if let Some(w) = watched().iter_mut().find(|w| w.id == id) {
        w.stall_lengths.record(lasted);
    }
    LONGEST_ENDED_MS.fetch_max(ms.max(1), Relaxed);
}

/// The longest stall that ended since the last [`take_longest_ended_ms`], ms (0: none).
static LONGEST_ENDED_MS: AtomicU64 = AtomicU64::new(0);

/// The longest stall that ended since the previous call, ms, or `None` (the dashboard's tick).
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) fn take_longest_ended_ms() -> Option<u64> {
    Some(LONGEST_ENDED_MS.swap(0, Relaxed)).filter(|&ms| ms > 0)
}

/// Upper bounds of the stall-length histogram's buckets, seconds (`+Inf` after them).
pub(crate) const STALL_BUCKETS: [f64; 10] =
    [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// How long the stalls of one runtime lasted, once their polls ended: a Prometheus histogram
/// (`rdebug_sched_stall_seconds`).
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
pub(crate) struct StallLengths {
    /// Stalls whose length is at most each bound of [`STALL_BUCKETS`], cumulative.
    pub(crate) le: [u64; STALL_BUCKETS.len()],
    pub(crate) count: u64,
    pub(crate) sum_seconds: f64,
}

impl StallLengths {
    fn record(&mut self, lasted: std::time::Duration) {
        let s = lasted.as_secs_f64();
        for (n, bound) in self.le.iter_mut().zip(STALL_BUCKETS) {
            if s <= bound {
                *n = n.saturating_add(1);
            }
        }
        self.count = self.count.saturating_add(1);
        self.sum_seconds += s;
    }
}

/// Stalls recorded so far over every runtime ever watched.
#[cfg_attr(not(feature = "http"), allow(dead_code))] // read by the dashboard's history
pub(crate) fn stalls_ever() -> u64 {
    STALLS_EVER.load(Relaxed)
}

/// Stalls counted for `handle`'s runtime (0 if it is not watched).
pub(crate) fn stall_count(handle: &Handle) -> u64 {
    let id = handle.id();
    watched()
        .iter()
        .find(|w| w.id == id && w.alive.load(Relaxed))
        .map_or(0, |w| w.stalls)
}

/// [`Workers::refresh`] for every watched runtime: probes for worker threads not known yet.
#[cfg_attr(not(feature = "pprof"), allow(dead_code))]
pub(crate) fn refresh_all(now: Instant) {
    for w in watched().iter().filter(|w| w.alive.load(Relaxed)) {
        w.workers.refresh(&w.handle, now);
    }
}

static WATCHED: Mutex<Vec<Watched>> = Mutex::new(Vec::new());

pub(crate) fn watched() -> MutexGuard<'static, Vec<Watched>> {
    lock(&WATCHED)
}

/// The list, if it comes free within 50 ms (for the panic hook, which must not block).
pub(crate) fn watched_briefly() -> Option<MutexGuard<'static, Vec<Watched>>> {
    lock_briefly(&WATCHED)
}

/// Clears its flag when dropped, i.e. when the runtime holding it drops its tasks.
struct AliveGuard(Arc<AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Relaxed);
    }
}

pub(crate) fn is_watched(handle: &Handle) -> bool {
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
    push(&mut list, handle, label);
    true
}

/// Adds `handle`'s runtime to `list` under `label`, with rdebug's task in it that notices the
/// runtime's shutdown: dropped with the runtime's other tasks when it shuts down (or at once if
/// it already has).
fn push(list: &mut Vec<Watched>, handle: &Handle, label: Option<String>) {
    let alive = Arc::new(AtomicBool::new(true));
    let guard = AliveGuard(alive.clone());
    let own_task = handle
        .spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        })
        .id();
    let workers = handle.metrics().num_workers();
    list.push(Watched {
        id: handle.id(),
        label,
        handle: handle.clone(),
        alive,
        own_task,
        workers: Arc::new(Workers::new(workers)),
        stalls: 0,
        recent_stalls: VecDeque::new(),
        stall_lengths: StallLengths::default(),
    });
}

/// Starts watching a runtime found on its own ([`discover`](super::discover)), unless it is
/// watched already (then its label stays). It is labelled as any runtime other than the main
/// one: its tokio name, or `rt<id>`. Returns false if it was watched.
pub(crate) fn watch_found(handle: &Handle) -> bool {
    let id = handle.id();
    let mut list = watched();
    forget_dead(&mut list);
    if list.iter().any(|w| w.id == id && w.alive.load(Relaxed)) {
        return false;
    }
    let label = handle
        .name()
        .map_or_else(|| format!("rt{id}"), str::to_owned);
    push(&mut list, handle, Some(label));
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
    let mut gone = lock(&GONE);
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
    std::mem::take(&mut *lock(&GONE))
}

/// Workers of the first watched runtime that is still alive (the `P` of gc lines).
pub(crate) fn primary_workers() -> Option<usize> {
    watched()
        .iter()
        .find(|w| w.alive.load(Relaxed))
        .map(|w| w.handle.metrics().num_workers())
}
