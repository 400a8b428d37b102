//! The one worker registry: for each watched runtime, the OS thread each of its workers runs on
//! now, found one way and followed when it changes.
//!
//! **Found** by one short rdebug task per worker ([`Workers::refresh`]): stable tokio has no call
//! for a worker's thread, so each task notes `tokio::runtime::worker_index()` and its kernel
//! thread id, then holds its worker until every worker is known or 5 ms passed, so that the
//! other tasks are taken by the other workers. While some worker is unknown, the probe is sent
//! again after 50 ms, then less often (doubling up to 5 s): a worker busy with other tasks does
//! not take it. Renamed threads and several runtimes do not matter.
//!
//! **Followed**: `tokio::task::block_in_place` hands a worker to another OS thread, and the old
//! one goes on running the blocking closure, then idles in the blocking pool until its
//! keep-alive ends. tokio says nothing of it (without `tokio_unstable`), so:
//! - every look checks the worker's thread when the worker's park/unpark count moved since the
//!   previous check ([`Workers::current`]): the worker ran code on its thread meanwhile, so that
//!   thread's CPU clock moved. A thread whose CPU clock did not move while its worker's count did
//!   is not that worker's thread any more; nor is a thread that is gone. Either way the worker is
//!   unknown again, no look reads or signals the old thread, and the probe goes out at once;
//! - a runtime that did work since the last probe (its workers parked or unparked, rdebug's own
//!   probe aside) is probed again at the first look that finds all its workers parked, at most
//!   every [`VERIFY_EVERY`]: a worker's new thread is learned at the first pause after the
//!   handoff, before a poll there can stall. An idle runtime is never probed, so its parked
//!   workers are never woken; a runtime busy without a pause keeps the threads it had, each
//!   still checked at every look.

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use crate::sync::lock;

/// The first wait before probing again for workers still unknown, and the longest.
const PROBE_FIRST: Duration = Duration::from_millis(50);
const PROBE_MAX: Duration = Duration::from_secs(5);
/// How often at most a runtime that did work is probed again to follow its workers' threads.
pub(crate) const VERIFY_EVERY: Duration = Duration::from_millis(250);
/// How long after a probe its own tasks' parks and unparks are not taken for work.
const SETTLE: Duration = Duration::from_millis(50);

/// When the runtime was probed, and what it did since the last probe.
#[derive(Debug, Default)]
struct Activity {
    /// When the last probe went out.
    probed_at: Option<Instant>,
    /// While a thread is unknown: when it was last probed for, and the wait before the next
    /// probe (doubling from [`PROBE_FIRST`] to [`PROBE_MAX`]).
    backoff: Option<(Instant, Duration)>,
    /// Parks and unparks until then are the probe's own.
    settle_until: Option<Instant>,
    /// Each worker's park/unpark count at the last look.
    seen: Vec<u64>,
    /// Its workers parked or unparked since the last probe (rdebug's probe aside).
    worked: bool,
}

/// One runtime's workers and their threads.
#[derive(Debug)]
pub(crate) struct Workers {
    /// The kernel thread id of each worker, 0 while unknown.
    tids: Arc<[AtomicI64]>,
    /// Per worker, at the last check: its park/unpark count and its thread's CPU clock, ns.
    checked: Mutex<Vec<Option<(u64, u64)>>>,
    /// What the runtime did since the last probe.
    activity: Mutex<Activity>,
}

impl Workers {
    pub(crate) fn new(workers: usize) -> Self {
        Workers {
            tids: (0..workers).map(|_| AtomicI64::new(0)).collect(),
            checked: Mutex::new(vec![None; workers]),
            activity: Mutex::new(Activity::default()),
        }
    }

    /// How many workers.
    #[cfg_attr(not(feature = "pprof"), allow(dead_code))] // the block profile
    pub(crate) fn len(&self) -> usize {
        self.tids.len()
    }

    /// Worker `k`'s thread as last learned (0: unknown), unchecked: for what only reads.
    pub(crate) fn tid(&self, k: usize) -> i64 {
        self.tids.get(k).map_or(0, |t| t.load(Relaxed))
    }

    /// Whether some worker's thread is unknown.
    pub(crate) fn any_unknown(&self) -> bool {
        self.tids.iter().any(|t| t.load(Relaxed) == 0)
    }

    /// Worker `k`'s thread now, checked (see the module docs), given its park/unpark count `puc`
    /// read just before: 0 when it is unknown, or was found not to be the worker's any more
    /// (then it is forgotten, and the next [`refresh`](Self::refresh) probes at once). One
    /// system call when `puc` moved since the previous check, none otherwise.
    pub(crate) fn current(&self, k: usize, puc: u64) -> i64 {
        let tid = self.tid(k);
        if tid == 0 {
            return 0;
        }
        let mut checked = lock(&self.checked);
        let Some(slot) = checked.get_mut(k) else {
            return 0;
        };
        if slot.is_some_and(|(p_puc, _)| p_puc == puc) {
            return tid;
        }
        let Some(cpu) = crate::sys::thread::thread_cpu_ns(tid) else {
            drop(checked);
            self.forget(k, tid); // the thread is gone
            return 0;
        };
        if slot.is_some_and(|(_, p_cpu)| p_cpu == cpu) {
            drop(checked);
            self.forget(k, tid);
            return 0;
        }
        *slot = Some((puc, cpu));
        tid
    }

    /// Forgets worker `k`'s thread if it is still `tid`, and makes the next probe due now.
    fn forget(&self, k: usize, tid: i64) {
        if let Some(t) = self.tids.get(k)
            && t.compare_exchange(tid, 0, Relaxed, Relaxed).is_ok()
        {
            if let Some(c) = lock(&self.checked).get_mut(k) {
                *c = None;
            }
            lock(&self.activity).backoff = None;
        }
    }

    /// Probes for the threads of the workers still unknown, if a probe is due (see the module
    /// docs). Returns at once.
    pub(crate) fn refresh(&self, handle: &Handle, now: Instant) {
        if !self.any_unknown() {
            self.verify(handle, now);
            return;
        }
        let mut a = lock(&self.activity);
        if a.backoff
            .is_some_and(|(t, wait)| now.saturating_duration_since(t) < wait)
        {
            return;
        }
        let wait = a
            .backoff
            .map_or(PROBE_FIRST, |(_, wait)| (wait * 2).min(PROBE_MAX));
        a.backoff = Some((now, wait));
        drop(a);
        self.probe(handle, now);
    }

    /// Probes again if the runtime did work since the last probe and all its workers are parked
    /// now (see the module docs).
    fn verify(&self, handle: &Handle, now: Instant) {
        let m = handle.metrics();
        let n = m.num_workers();
        let mut a = lock(&self.activity);
        a.seen.resize(n, 0);
        let mut moved = false;
        let mut all_parked = true;
        for (k, seen) in a.seen.iter_mut().enumerate() {
            let puc = m.worker_park_unpark_count(k);
            moved |= puc != *seen;
            all_parked &= puc % 2 == 1;
            *seen = puc;
        }
        if a.settle_until.is_some_and(|t| now < t) {
            return;
        }
        a.worked |= moved;
        if !a.worked
            || !all_parked
            || a.probed_at
                .is_some_and(|t| now.saturating_duration_since(t) < VERIFY_EVERY)
        {
            return;
        }
        drop(a);
        self.probe(handle, now);
    }

    /// One short task per worker, each noting `worker_index()` and its thread, then holding its
    /// worker until every worker is known or 5 ms passed. Also marks those threads as tokio
    /// threads for the signal handler
    /// ([`mark_tokio_thread`](crate::sampler::task_labels::mark_tokio_thread)).
    fn probe(&self, handle: &Handle, now: Instant) {
        {
            let mut a = lock(&self.activity);
            a.probed_at = Some(now);
            a.settle_until = Some(now + SETTLE);
            a.worked = false;
        }
        for _ in 0..self.tids.len() {
            let tids = self.tids.clone();
            drop(handle.spawn(async move {
                let Some(i) = tokio::runtime::worker_index() else {
                    return;
                };
                crate::sampler::task_labels::mark_tokio_thread();
                if let Some(t) = tids.get(i) {
                    t.store(crate::sys::thread::current_tid(), Relaxed);
                }
                let until = Instant::now() + Duration::from_millis(5);
                while tids.iter().any(|t| t.load(Relaxed) == 0) && Instant::now() < until {
                    std::thread::yield_now();
                }
            }));
        }
    }
}
