//! The SCHED tick: one line per watched runtime and, with `scheddetail`, its workers and blocking
//! pool; notes for runtimes that shut down.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use crate::config::Config;
use crate::stats::{self, nanos, runtimes};
use crate::sys::proc::process_files;

use super::encode;
use super::lines::Lines;

/// The SCHED side of the reporter thread.
pub(super) struct SchedTicker {
    /// The origin of the `ms` of SCHED lines.
    pub(super) started: Instant,
}

impl SchedTicker {
    pub(super) fn tick(&mut self, out: &mut Lines, config: &Config, now: Instant) {
        let fmt = config.format();
        let ms = u64::try_from(now.saturating_duration_since(self.started).as_millis())
            .unwrap_or(u64::MAX);
        let threads = process_files().threads();
        for label in runtimes::take_gone() {
            announce_gone(out, config, label.as_deref());
        }
        let mut list = runtimes::watched();
        let mut i = 0;
        while i < list.len() {
            if !list[i].alive.load(Relaxed) {
                let gone = list.swap_remove(i);
                announce_gone(out, config, gone.label.as_deref());
                continue;
            }
            let w = &mut list[i];
            i += 1;
            stats::fill(&w.handle.metrics(), 1, &mut w.stats);
            w.stats.threads = threads;
            w.stats.stalls = w.stalls;
            let label = w.label.as_deref();
            encode::sched(out.buf(), fmt, ms, label, &w.stats);
            out.end();
            if config.scheddetail() {
                detail(out, config, w, now);
            }
        }
    }
}

/// The `scheddetail` lines of one runtime: each worker with its busy share of the interval since
/// the previous SCHED line, then the blocking pool.
fn detail(out: &mut Lines, config: &Config, w: &mut runtimes::Watched, now: Instant) {
    let fmt = config.format();
    let label = w.label.as_deref();
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
        encode::worker_detail(out.buf(), fmt, label, k, &w.stats, share);
        out.end();
    }
    encode::blocking_detail(out.buf(), fmt, label, &w.stats);
    out.end();
}

fn announce_gone(out: &mut Lines, config: &Config, label: Option<&str>) {
    let message = format!(
        "runtime {} shut down; its SCHED lines stop",
        label.unwrap_or("main")
    );
    out.note(config.format(), "note", &message);
}
