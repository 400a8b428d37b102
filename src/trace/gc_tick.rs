//! The allocator tick: sample jemalloc every `gcpoll` ms and print a `gc` line (and a detail line
//! with `gctrace=2`) for every cycle closed since the last tick.

use std::sync::atomic::Ordering::Relaxed;

use crate::alloc;
use crate::config::Config;
use crate::runtime::watched;
use crate::stats::{self, gc};
use crate::sys::proc::process_files;

use super::epoch_skip::EpochSkip;
use super::line_format;
use super::lines::Lines;

/// The allocator side of the reporter thread.
#[derive(Default)]
pub(super) struct GcTicker {
    /// Last cycle printed.
    pub(super) printed: u64,
    /// Counted in [`gc::POLLER_ACTIVE`].
    polling: bool,
    epoch_skip: EpochSkip,
}

impl GcTicker {
    /// Starts or stops sampling for `config`: whenever a trace is on, so that cycles are counted
    /// the same with `gctrace` on or off (sampling needs jemalloc's statistics).
    pub(super) fn apply(&mut self, config: &Config) {
        self.set_polling(config.any_trace() && stats::heap_is_jemalloc());
        if self.polling {
            self.epoch_skip.counted = alloc::is_installed();
        }
    }

    pub(super) fn set_polling(&mut self, on: bool) {
        if on != self.polling {
            self.polling = on;
            if on {
                gc::POLLER_ACTIVE.fetch_add(1, Relaxed);
            } else {
                gc::POLLER_ACTIVE.fetch_sub(1, Relaxed);
            }
        }
    }

    pub(super) fn tick(&mut self, out: &mut Lines, config: &Config) {
        if !self.polling {
            return;
        }
        let fmt = config.format();
        let print = config.gctrace() > 0;
        let detail = config.gctrace() >= 2;
        let procs = watched::primary_workers()
            .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
            .unwrap_or(1) as u64;
        let rss = process_files().rss().unwrap_or(0);
        let mut guard = gc::tracker();
        let Some(t) = guard.as_mut() else { return };
        t.set_procs(procs);
        self.epoch_skip.sample(t, rss);
        let (lost, last) = t.cycles_after(self.printed, |c| {
            if !print {
                return;
            }
            line_format::gc(out.buf(), fmt, c);
            out.end();
            if detail {
                line_format::gc_detail(out.buf(), fmt, c);
                out.end();
            }
        });
        drop(guard);
        self.printed = last;
        if lost > 0 && print {
            out.note(fmt, "note", "gc lines were lost: the reporter fell behind");
        }
    }
}
