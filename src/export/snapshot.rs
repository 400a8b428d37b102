//! One read of everything the exporters publish: [`MemStats`], the process-wide thread count,
//! each watched runtime's [`SchedStats`], and the process figures.

use std::sync::atomic::Ordering::Relaxed;

use super::process::{self, ProcessStats};
use crate::runtime::watched::{StallLengths, watched};
use crate::stats::{MemStats, SchedStats, fill, mem};
use crate::sys::proc::process_files;

/// Label of the runtime `init()` watched without a name.
pub(crate) const MAIN_LABEL: &str = "main";

/// What one scrape shows.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub mem: MemStats,
    /// Only the process-wide figures (`threads`) are filled.
    pub process_sched: SchedStats,
    /// `(runtime label, its figures)` for every watched runtime still alive, in watch order.
    pub runtimes: Vec<(String, SchedStats)>,
    /// `(runtime label, how long its stalls lasted)`, in the same order.
    #[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
    pub stall_lengths: Vec<(String, StallLengths)>,
    pub process: ProcessStats,
}

/// Reads it. The watched list is locked only to copy the handles out.
pub(crate) fn take() -> Snapshot {
    let mut stall_lengths = Vec::new();
    let handles: Vec<(String, tokio::runtime::Handle, u64)> = watched()
        .iter()
        .filter(|w| w.alive.load(Relaxed))
        .map(|w| {
            let label = w.label.as_deref().unwrap_or(MAIN_LABEL);
            stall_lengths.push((label.to_owned(), w.stall_lengths.clone()));
            (label.to_owned(), w.handle.clone(), w.stalls)
        })
        .collect();
    let runtimes = handles
        .into_iter()
        .map(|(label, h, stalls)| {
            let mut s = SchedStats::default();
            // One of the runtime's tasks is rdebug's own watcher.
            fill(&h.metrics(), 1, &mut s);
            s.stalls = stalls;
            (label, s)
        })
        .collect();
    let process_sched = SchedStats {
        threads: process_files().threads(),
        ..SchedStats::default()
    };
    Snapshot {
        mem: mem::read(),
        process_sched,
        runtimes,
        stall_lengths,
        process: process::read(),
    }
}
