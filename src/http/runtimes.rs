//! The watched runtimes as the pages show them: a label and a fresh [`SchedStats`] each.

use std::sync::atomic::Ordering::Relaxed;

use crate::runtime::watched;
use crate::stats::{SchedStats, sched_stats};

/// Each live watched runtime's label (`main` for the unnamed one) and scheduler snapshot, in
/// the order they were watched.
pub(crate) fn snapshot() -> Vec<(String, SchedStats)> {
    // Handles are cloned out first: `sched_stats` takes the list's lock itself.
    let handles: Vec<_> = watched::watched()
        .iter()
        .filter(|w| w.alive.load(Relaxed))
        .map(|w| (w.label.clone(), w.handle.clone()))
        .collect();
    handles
        .into_iter()
        .map(|(label, h)| (label.unwrap_or_else(|| "main".into()), sched_stats(&h)))
        .collect()
}

/// [`snapshot`], with each runtime's last few stalls (`stalltrace`), oldest first.
pub(crate) fn snapshot_with_stalls() -> Vec<(String, SchedStats, Vec<watched::Stall>)> {
    let handles: Vec<_> = watched::watched()
        .iter()
        .filter(|w| w.alive.load(Relaxed))
        .map(|w| {
            let recent = w.recent_stalls.iter().cloned().collect();
            (w.label.clone(), w.handle.clone(), recent)
        })
        .collect();
    handles
        .into_iter()
        .map(|(label, h, recent)| {
            let label = label.unwrap_or_else(|| "main".into());
            (label, sched_stats(&h), recent)
        })
        .collect()
}

/// What a page says when no runtime is watched.
pub(crate) const NONE_WATCHED: &str = "no tokio runtime is watched: call rdebug::init() inside \
     the runtime, or rdebug::watch(&handle)";
