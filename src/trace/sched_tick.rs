//! The SCHED tick: one line per watched runtime and, with `scheddetail`, its workers and blocking
//! pool; notes for runtimes that shut down.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use crate::config::Config;
use crate::runtime::{discover, watched};
use crate::stats::{self, SchedStats, nanos};
use crate::sys::proc::process_files;

use super::line_format;
use super::lines::Lines;

/// The SCHED side of the reporter thread.
pub(super) struct SchedTicker {
    /// The origin of the `ms` of SCHED lines.
    pub(super) started: Instant,
    /// What the lines of each watched runtime keep between ticks, by runtime id.
    pub(super) shown: Vec<(tokio::runtime::Id, Shown)>,
}

/// One runtime's state between SCHED lines.
pub(super) struct Shown {
    /// Reused snapshot buffer.
    stats: SchedStats,
    /// Busy time per worker at the previous SCHED line, for the busy share.
    prev_busy: Vec<u64>,
    /// When the previous SCHED line was taken (`None` before the first: no interval yet).
    prev_at: Option<Instant>,
}

impl Shown {
    fn new(workers: usize) -> Self {
        Shown {
            stats: SchedStats {
                per_worker: Vec::with_capacity(workers),
                ..SchedStats::default()
            },
            prev_busy: vec![0; workers],
            prev_at: None,
        }
    }
}

impl SchedTicker {
    pub(super) fn tick(&mut self, out: &mut Lines, config: &Config, now: Instant) {
        let fmt = config.format();
        let ms = u64::try_from(now.saturating_duration_since(self.started).as_millis())
            .unwrap_or(u64::MAX);
        let threads = process_files().threads();
        for label in watched::take_gone() {
            announce_gone(out, config, label.as_deref());
        }
        let mut list = watched::watched();
        if discover::unwatched_warning_due(!list.iter().any(|w| w.alive.load(Relaxed))) {
            out.note(fmt, "warning", discover::UNWATCHED_FINDING);
        }
        self.shown
            .retain(|(id, _)| list.iter().any(|w| w.id == *id && w.alive.load(Relaxed)));
        let mut i = 0;
        while i < list.len() {
            if !list[i].alive.load(Relaxed) {
                let gone = list.swap_remove(i);
                announce_gone(out, config, gone.label.as_deref());
                continue;
            }
            let w = &list[i];
            i += 1;
            let k = match self.shown.iter().position(|(id, _)| *id == w.id) {
                Some(k) => k,
                None => {
                    let workers = w.handle.metrics().num_workers();
                    self.shown.push((w.id, Shown::new(workers)));
                    self.shown.len() - 1
                }
            };
            let shown = &mut self.shown[k].1;
            stats::fill(&w.handle.metrics(), 1, &mut shown.stats);
            shown.stats.threads = threads;
            shown.stats.stalls = w.stalls;
            let label = w.label.as_deref();
            line_format::sched(out.buf(), fmt, ms, label, &shown.stats);
            out.end();
            if config.scheddetail() {
                detail(out, config, label, shown, now);
            }
        }
    }
}

/// The `scheddetail` lines of one runtime: each worker with its busy share of the interval since
/// the previous SCHED line, then the blocking pool.
fn detail(out: &mut Lines, config: &Config, label: Option<&str>, w: &mut Shown, now: Instant) {
    let fmt = config.format();
    // The busy share needs an interval: none on the first line.
    let span = w
        .prev_at
        .replace(now)
        .map(|prev| nanos(now.saturating_duration_since(prev)).max(1));
    for (k, ws) in w.stats.per_worker.iter().enumerate() {
        let prev = w.prev_busy.get(k).copied().unwrap_or(0);
        let share =
            span.map(|span| (ws.busy_ns.saturating_sub(prev).saturating_mul(100) / span).min(100));
        if let Some(p) = w.prev_busy.get_mut(k) {
            *p = ws.busy_ns;
        }
        line_format::worker_detail(out.buf(), fmt, label, k, &w.stats, share);
        out.end();
    }
    line_format::blocking_detail(out.buf(), fmt, label, &w.stats);
    out.end();
}

fn announce_gone(out: &mut Lines, config: &Config, label: Option<&str>) {
    let message = format!(
        "runtime {} shut down; its SCHED lines stop",
        label.unwrap_or("main")
    );
    out.note(config.format(), "note", &message);
}
