//! The reporter thread (`rdebug`): wakes when a SCHED line or an allocator sample is due, or when
//! the handle changes its settings or stops it.
//!
//! It formats into buffers it reuses, so once warmed up a tick allocates nothing; it writes one
//! line per `write`, and never holds a lock another thread needs while it writes.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::stats::{self, gc};
use crate::sys::stderr::{Sink, block_sigpipe_on_this_thread};

use super::gc_tick::GcTicker;
use super::handle::Shared;
use super::lines::Lines;
use super::sched_tick::SchedTicker;
use super::stall_lines::StallTicker;

/// The thread's own state, by job: output, SCHED, allocator, and its own figures.
pub(super) struct ReporterThread {
    shared: Arc<Shared>,
    config: Config,
    pub(super) out: Lines,
    pub(super) sched: SchedTicker,
    pub(super) gc: GcTicker,
    stall: StallTicker,
    notes: Notes,
}

/// Startup notes already said.
#[derive(Default)]
struct Notes {
    unstable: bool,
    allocator: bool,
}

impl ReporterThread {
    pub(super) fn new(shared: Arc<Shared>, sink: Sink, config: Config) -> Self {
        ReporterThread {
            shared,
            config,
            out: Lines::new(sink),
            sched: SchedTicker {
                started: Instant::now(),
                shown: Vec::new(),
            },
            gc: GcTicker::default(),
            stall: StallTicker::default(),
            notes: Notes::default(),
        }
    }

    #[cfg(feature = "_bench")]
    pub(super) fn config(&self) -> &Config {
        &self.config
    }

    pub(super) fn run(&mut self) {
        block_sigpipe_on_this_thread();
        let started = Instant::now();
        self.sched.started = started;
        let _ = self.shared.started.set(started);
        self.gc.printed = gc::tracker().as_ref().map_or(0, |t| t.totals().num_gc);
        if self.config.gctrace() > 0 {
            gc::want_cpu_figure_aside(); // the gc lines' P%
        }
        let mut generation = self.shared.control().generation;
        self.apply_config();
        let mut next_sched = started;
        let mut next_gc = started;
        let mut next_stall = started;
        loop {
            // Runtimes found since the last wake-up are watched from this round on.
            crate::runtime::discover::adopt();
            let now = Instant::now();
            let mut worked = false;
            // Whether the stall look of this round found every worker parked.
            let mut all_parked = false;
            if let Some(period) = self.config.stall_period()
                && now >= next_stall
            {
                all_parked = self.stall.tick(&mut self.out, &self.config, now, started);
                // While a decided stall lasts, its end is looked for often: its length is known
                // to a few ms.
                let period = if self.stall.ongoing() {
                    period.min(crate::runtime::stall::WHILE_STALLED)
                } else {
                    period
                };
                // Written at once: a stall is news while it lasts.
                self.flush();
                // A period from this look, not on a fixed grid: looks are then at least a period
                // apart, so a poll seen still at one look has held its worker N ms by the second
                // look after, not one look later when timer jitter made that gap a little short.
                next_stall = advance(now, period, now);
            }
            if let Some(period) = self.config.sched_period()
                && now >= next_sched
            {
                self.sched.tick(&mut self.out, &self.config, now);
                // Out before the allocator sample: a SCHED line is written right after its
                // snapshot, not after jemalloc's `epoch`.
                self.flush();
                next_sched = advance(next_sched, period, now);
                worked = true;
            }
            // While every worker is parked the stall looks are the reporter's wake-ups: an
            // allocator sample due before the next look is taken at this one (at most that
            // early), not on a wake-up of its own.
            let idle = all_parked
                .then(|| self.config.stall_idle_period())
                .flatten();
            if let Some(period) = self.config.gc_period()
                && due_or_riding(now, next_gc, idle)
            {
                self.gc.tick(&mut self.out, &self.config);
                next_gc = advance(next_gc, period, now);
                worked = true;
            }
            if worked {
                self.flush();
                self.publish_stats();
            }
            if let Some(idle) = idle {
                // No poll runs on a parked worker: look again after the longer idle period, or
                // with a SCHED line already due within it (one wake-up for both).
                next_stall = idle_deadline(
                    now,
                    idle,
                    self.config.sched_period().map(|_| next_sched).into_iter(),
                );
            }
            let deadline = [
                self.config.sched_period().map(|_| next_sched),
                self.config.gc_period().map(|_| next_gc),
                self.config.stall_period().map(|_| next_stall),
            ]
            .into_iter()
            .flatten()
            .min();
            match self.wait(deadline, &mut generation) {
                Wake::Stop => {
                    self.gc.set_polling(false);
                    return;
                }
                Wake::Reconfigured => {
                    let now = Instant::now();
                    next_sched = now;
                    next_gc = now;
                    next_stall = now;
                }
                Wake::Flush(n) => {
                    self.gc.tick(&mut self.out, &self.config);
                    self.flush();
                    self.publish_stats();
                    self.shared.control().flush_done = n;
                    self.shared.flushed.notify_all();
                }
                Wake::Due => {}
            }
        }
    }

    /// Sleeps until `deadline`, a new configuration (applied here) or a stop.
    fn wait(&mut self, deadline: Option<Instant>, generation: &mut u64) -> Wake {
        let mut c = self.shared.control();
        loop {
            if c.stop {
                return Wake::Stop;
            }
            if c.flush_requested != c.flush_done {
                return Wake::Flush(c.flush_requested);
            }
            if c.generation != *generation {
                *generation = c.generation;
                self.config = c.config.clone();
                drop(c);
                self.apply_config();
                return Wake::Reconfigured;
            }
            let now = Instant::now();
            let wait = match deadline {
                Some(d) if d <= now => return Wake::Due,
                Some(d) => d - now,
                None => Duration::from_secs(3600),
            };
            c = match self.shared.wake.wait_timeout(c, wait) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// Startup notes for the settings now in effect, and the sampling flag.
    pub(super) fn apply_config(&mut self) {
        let fmt = self.config.format();
        if self.config.schedtrace_ms() > 0 && !stats::UNSTABLE && !self.notes.unstable {
            self.notes.unstable = true;
            self.out.note(
                fmt,
                "note",
                "built without --cfg tokio_unstable: per-worker run queues ([l0 l1 ...]), \
                 blocking=/idleblocking= and per-worker polls are left out; build with \
                 RUSTFLAGS=\"--cfg tokio_unstable\" to get them",
            );
        }
        if self.config.gctrace() > 0 && !self.notes.allocator {
            self.notes.allocator = true;
            if let Some(missing) = stats::missing_figures_once() {
                self.out.note(fmt, "note", missing);
            }
        }
        self.flush();
        self.gc.apply(&self.config);
    }

    /// Writes the lines of this tick, one `write` each.
    pub(super) fn flush(&mut self) {
        let (written, dropped) = self.out.flush();
        self.shared.lines.fetch_add(written, Relaxed);
        self.shared.dropped.store(dropped, Relaxed);
    }

    pub(super) fn publish_stats(&self) {
        let s = &self.shared;
        s.ticks.fetch_add(1, Relaxed);
        let own = crate::alloc::this_thread_counters();
        s.thread_allocs.store(own.allocs, Relaxed);
        s.thread_alloc_bytes.store(own.allocated_bytes, Relaxed);
        if let Some(ns) = crate::sys::thread::current_thread_cpu_ns() {
            s.thread_cpu_ns.store(ns, Relaxed);
        }
    }
}

/// Why [`ReporterThread::wait`] returned.
enum Wake {
    Due,
    /// A flush was requested; its number.
    Flush(u64),
    Reconfigured,
    Stop,
}

/// The next deadline after `prev`: one period on, or one period from now if far behind. A period
/// too long for the clock means a year.
fn advance(prev: Instant, period: Duration, now: Instant) -> Instant {
    match prev.checked_add(period) {
        Some(next) if next > now => next,
        _ => now
            .checked_add(period)
            .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
            .unwrap_or(now),
    }
}

/// Whether a tick due at `next` is taken now: it is due, or every worker is parked (`idle`: the
/// stall looks' period then) and it falls before the next look would come.
fn due_or_riding(now: Instant, next: Instant, idle: Option<Duration>) -> bool {
    now >= next || idle.is_some_and(|l| now.checked_add(l).is_some_and(|look| next < look))
}

/// The next stall look while every worker is parked: the latest of `others` (the reporter's
/// other deadlines) within `idle` of `now`, so that it shares their wake-up, else `idle` on.
fn idle_deadline(now: Instant, idle: Duration, others: impl Iterator<Item = Instant>) -> Instant {
    let last = advance(now, idle, now);
    others
        .filter(|&d| d > now && d <= last)
        .max()
        .unwrap_or(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Builder;

    #[test]
    fn deadlines_survive_periods_too_long_for_the_clock() {
        let now = Instant::now();
        assert!(advance(now, Duration::MAX, now) > now);
        assert!(advance(now, Duration::from_millis(u64::MAX), now) > now);
        let later = now + Duration::from_secs(5);
        assert_eq!(
            advance(now, Duration::from_secs(1), later),
            later + Duration::from_secs(1)
        );
        assert_eq!(
            advance(now, Duration::from_secs(1), now),
            now + Duration::from_secs(1)
        );
        // A clock that did not advance: the next deadline is still ahead.
        assert!(advance(now, Duration::ZERO, now) >= now);
    }

    #[test]
    fn idle_stall_looks_share_the_other_ticks_wake_ups() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        // Nothing else due within the idle period: the idle period on.
        assert_eq!(
            idle_deadline(now, ms(50), [now + ms(80)].into_iter()),
            now + ms(50)
        );
        assert_eq!(idle_deadline(now, ms(50), std::iter::empty()), now + ms(50));
        // The latest other deadline within it; past ones do not count.
        assert_eq!(
            idle_deadline(now, ms(50), [now + ms(20), now + ms(50), now].into_iter()),
            now + ms(50)
        );
        assert_eq!(
            idle_deadline(now, ms(50), [now + ms(30), now + ms(90)].into_iter()),
            now + ms(30)
        );
    }

    #[test]
    fn idle_stall_looks_carry_the_allocator_samples() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        // Due: taken, idle or not; not yet due: taken only at an idle look, before the next.
        assert!(due_or_riding(now + ms(5), now, None));
        assert!(!due_or_riding(now, now + ms(5), None));
        assert!(due_or_riding(now, now + ms(39), Some(ms(40))));
        assert!(!due_or_riding(now, now + ms(40), Some(ms(40))));
        // gcpoll=100 and stalltrace=50 on an idle runtime, as the thread's loop runs them: a
        // look every 40 ms, each sample on a look (at most 40 ms early), none on a wake-up of
        // its own: 25 wake-ups in a second (40 when looks came every N/2, 30 with looks every
        // 40 ms and samples on wake-ups of their own), and the 10 samples due in that second on
        // the 100 ms grid.
        let (idle, gcpoll) = (ms(40), ms(100));
        let (mut t, mut next_gc) = (now, now);
        let (mut wakes, mut samples) = (0, 0);
        while t < now + ms(1000) {
            wakes += 1;
            if due_or_riding(t, next_gc, Some(idle)) {
                assert!(next_gc.saturating_duration_since(t) < idle);
                next_gc = advance(next_gc, gcpoll, t);
                samples += 1;
            }
            t = idle_deadline(t, idle, std::iter::empty()).min(next_gc);
        }
        assert_eq!((wakes, samples), (25, 10));
    }

    #[test]
    fn a_reporter_with_the_longest_periods_keeps_running() {
        let r = Builder::new()
            .schedtrace(Duration::MAX)
            .gctrace(1)
            .gcpoll(Duration::MAX)
            .writer(std::io::sink())
            .start()
            .expect("start");
        std::thread::sleep(Duration::from_millis(50));
        let mut cfg = r.config();
        // Values beyond what RDEBUG accepts are refused; the longest accepted ones are taken.
        assert!(cfg.set_schedtrace_ms(u64::MAX).is_err());
        assert!(cfg.set_gcpoll_ms(u64::MAX).is_err());
        assert!(cfg.set_gcpercent(Some(u64::MAX)).is_err());
        cfg.set_schedtrace_ms(crate::config::MAX_PERIOD_MS).unwrap();
        cfg.set_gcpoll_ms(crate::config::MAX_PERIOD_MS).unwrap();
        cfg.set_gcpercent(Some(crate::config::MAX_GCPERCENT))
            .unwrap();
        r.reconfigure(cfg);
        std::thread::sleep(Duration::from_millis(50));
        // The thread ticked (the first SCHED line and sample are due at once) and is alive to
        // take a new setting.
        assert!(r.stats().ticks >= 2, "{:?}", r.stats());
        r.reconfigure(crate::Config::parse_strict("schedtrace=10").unwrap());
        std::thread::sleep(Duration::from_millis(60));
        assert!(r.stats().ticks >= 5, "{:?}", r.stats());
        r.stop();
    }
}
