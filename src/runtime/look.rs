//! One look at one worker: what its runtime's metrics and its thread say now. The block profile
//! and the stall decision both look through here, so a worker is read one way.

use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use super::workers::Workers;

/// A worker as one look saw it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Look {
    /// When.
    #[cfg_attr(not(feature = "pprof"), allow(dead_code))] // the block profile
    pub(crate) at: Instant,
    /// `worker_park_unpark_count`: even while the worker is unparked (flushed right before it
    /// parks and right after it unparks, so exact at every read).
    pub(crate) puc: u64,
    /// `worker_total_busy_duration` (flushed when it parks and every 61 polls).
    pub(crate) busy: Duration,
    /// Its thread, checked at this look ([`Workers::current`]); 0 when unknown.
    pub(crate) tid: i64,
}

impl Look {
    /// Whether the worker is unparked: running tasks, or about to.
    pub(crate) fn unparked(&self) -> bool {
        self.puc % 2 == 0
    }
}

/// Looks at worker `k` of `handle`'s runtime now (`None`: no such worker). Its thread is checked
/// when its park/unpark count moved since the last look (one system call then, none on an idle
/// runtime); a parked worker's thread is never read otherwise, nor signalled.
pub(crate) fn look(handle: &Handle, workers: &Workers, k: usize) -> Option<Look> {
    let m = handle.metrics();
    if k >= m.num_workers() {
        return None;
    }
    let puc = m.worker_park_unpark_count(k);
    let busy = m.worker_total_busy_duration(k);
    let tid = workers.current(k, puc);
    Some(Look {
        at: Instant::now(),
        puc,
        busy,
        tid,
    })
}

/// Whether thread `tid` is asleep off CPU now (state `S` or `D`): not running, and not runnable
/// waiting for a CPU.
#[cfg_attr(not(feature = "pprof"), allow(dead_code))] // the block profile (feature `pprof`)
pub(crate) fn asleep(tid: i64) -> bool {
    crate::sys::task::task_state(tid).is_some_and(|state| state == b'S' || state == b'D')
}

/// Time thread `tid` has spent runnable, waiting for a CPU, ns (its `schedstat`).
#[cfg_attr(not(feature = "pprof"), allow(dead_code))] // block profile and stalls (feature `pprof`)
pub(crate) fn run_wait_ns(tid: i64) -> Option<u64> {
    crate::sys::task::schedstat(tid).map(|(_, wait)| wait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::thread::thread_cpu_ns;

    /// Thread `tid`'s time on a CPU (its CPU clock) and waiting for one (its `schedstat`), ns.
    fn schedstat(tid: i64) -> Option<(u64, u64)> {
        Some((thread_cpu_ns(tid)?, run_wait_ns(tid)?))
    }

    #[test]
    fn a_sleeping_thread_reads_as_asleep_and_its_cpu_clock_moves_only_on_cpu() {
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            tx.send(crate::sys::thread::current_tid()).unwrap();
            std::thread::sleep(Duration::from_millis(300));
        });
        let tid = rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let (cpu0, _) = schedstat(tid).expect("schedstat");
        assert!(asleep(tid));
        std::thread::sleep(Duration::from_millis(50));
        let (cpu1, _) = schedstat(tid).expect("schedstat");
        assert!(cpu1 - cpu0 < 1_000_000, "{cpu0} {cpu1}");
        let me = crate::sys::thread::current_tid();
        assert!(!asleep(me));
        assert!(thread_cpu_ns(me).is_some());
        t.join().unwrap();
    }
}
