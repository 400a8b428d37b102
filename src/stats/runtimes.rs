//! The runtimes rdebug watches: the list the reporter prints SCHED lines for, and how a runtime's
//! shutdown is noticed (a task of rdebug's in it is dropped).

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::runtime::Handle;

use super::sched::SchedStats;
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
    /// Reused snapshot buffer.
    pub stats: SchedStats,
    /// Busy time per worker at the previous SCHED line, for the busy share.
    pub prev_busy: Vec<u64>,
    /// When the previous SCHED line was taken (`None` before the first: no interval yet).
    pub prev_at: Option<Instant>,
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
    let alive = Arc::new(AtomicBool::new(true));
    let guard = AliveGuard(alive.clone());
    // Dropped with the runtime's other tasks when it shuts down (or at once if it already has).
    let own_task = handle
        .spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        })
        .id();
    let workers = handle.metrics().num_workers();
    list.push(Watched {
        id,
        label,
        handle: handle.clone(),
        alive,
        own_task,
        stats: SchedStats {
            per_worker: Vec::with_capacity(workers),
            ..SchedStats::default()
        },
        prev_busy: vec![0; workers],
        prev_at: None,
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
