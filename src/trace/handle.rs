//! [`Reporter`], the handle of a running reporter thread, and what the handle and the thread
//! share.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::runtime::watched;
use crate::stats::{self, SchedStats};
use crate::sync::{lock, lock_briefly};
use crate::sys::proc::process_files;

use super::line_format;

/// A running reporter thread: stop it, change its settings, or read what it has done.
///
/// ```
/// let r = rdebug::Builder::new().writer(std::io::sink()).start().unwrap();
/// let mut cfg = r.config();
/// cfg.set_gctrace(1).unwrap();
/// r.reconfigure(cfg);
/// assert_eq!(r.config().gctrace(), 1);
/// r.stop();
/// ```
pub struct Reporter {
    pub(super) shared: Arc<Shared>,
    pub(super) thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("config", &self.config())
            .finish()
    }
}

/// What a reporter thread has done so far.
///
/// ```
/// let r = rdebug::Builder::new().writer(std::io::sink()).start().unwrap();
/// let s = r.stats();
/// assert_eq!(s.dropped, 0);
/// r.stop();
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ReporterStats {
    /// Wake-ups that did work (a SCHED line due, or an allocator sample due).
    pub ticks: u64,
    /// Lines written.
    pub lines: u64,
    /// Lines dropped because stderr was full (nobody reading it).
    pub dropped: u64,
    /// Allocations the reporter thread itself made, from rdebug's per-thread counters (0
    /// without `rdebug::Alloc`).
    pub thread_allocs: u64,
    /// Bytes the reporter thread itself allocated.
    pub thread_alloc_bytes: u64,
    /// The reporter thread's own CPU time (user + system), ns, from its CPU-time clock
    /// (`CLOCK_THREAD_CPUTIME_ID`), as of its last tick.
    pub thread_cpu_ns: u64,
}

impl Reporter {
    /// The settings in effect.
    ///
    /// ```
    /// let r = rdebug::Builder::new().writer(std::io::sink()).start().unwrap();
    /// assert_eq!(r.config().schedtrace_ms(), 0);
    /// ```
    pub fn config(&self) -> Config {
        self.shared.control().config.clone()
    }

    /// Changes the settings of the running thread; it applies them at once (trace periods restart
    /// from now).
    ///
    /// ```
    /// let r = rdebug::Builder::new().writer(std::io::sink()).start().unwrap();
    /// r.reconfigure(rdebug::Config::parse_strict("schedtrace=500").unwrap());
    /// assert_eq!(r.config().schedtrace_ms(), 500);
    /// ```
    pub fn reconfigure(&self, config: Config) {
        stats::gc::set_gcpercent(config.gcpercent());
        let mut c = self.shared.control();
        c.config = config;
        c.generation = c.generation.wrapping_add(1);
        drop(c);
        self.shared.wake.notify_all();
    }

    /// What the thread has done so far.
    ///
    /// ```
    /// let r = rdebug::Builder::new().writer(std::io::sink()).start().unwrap();
    /// assert_eq!(r.stats().lines, 0);
    /// ```
    pub fn stats(&self) -> ReporterStats {
        let s = &self.shared;
        ReporterStats {
            ticks: s.ticks.load(Relaxed),
            lines: s.lines.load(Relaxed),
            dropped: s.dropped.load(Relaxed),
            thread_allocs: s.thread_allocs.load(Relaxed),
            thread_alloc_bytes: s.thread_alloc_bytes.load(Relaxed),
            thread_cpu_ns: s.thread_cpu_ns.load(Relaxed),
        }
    }

    /// Stops the thread. Waits for it up to one second (it may be in the middle of a line); a
    /// thread that does not finish by then is left to end on its own.
    ///
    /// ```
    /// let r = rdebug::Builder::new().writer(std::io::sink()).start().unwrap();
    /// r.stop();
    /// ```
    pub fn stop(&self) {
        self.shared.control().stop = true;
        self.shared.wake.notify_all();
        crate::sync::join_within(&self.thread, Duration::from_secs(1));
    }

    /// Has the thread sample the allocator and write every line pending now (the `gc` line of a
    /// cycle just forced, say), and waits until it has, at most `timeout`. Returns whether it
    /// did. Used by [`free_os_memory`](crate::free_os_memory) and at normal process exit.
    pub(crate) fn flush_now(&self, timeout: Duration) -> bool {
        let mut c = self.shared.control();
        if c.stop {
            return false;
        }
        c.flush_requested = c.flush_requested.wrapping_add(1);
        let want = c.flush_requested;
        self.shared.wake.notify_all();
        let deadline = Instant::now() + timeout;
        while c.flush_done != want {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || c.stop {
                return false;
            }
            c = match self.shared.flushed.wait_timeout(c, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        true
    }

    /// The SCHED lines a panic prints ([`super::panic_hook`]): one per watched runtime, now, in
    /// this reporter's format, if it runs with `schedtrace` on. Waits at most a few ms for each
    /// lock it needs; false when there is nothing to print.
    pub(crate) fn panic_lines(&self, out: &mut Vec<u8>) -> bool {
        // A thread not yet scheduled (a panic right after init, a loaded machine) has printed
        // nothing: this line is then its 0 ms line.
        let started = self
            .shared
            .started
            .get()
            .copied()
            .unwrap_or_else(Instant::now);
        let Some(c) = lock_briefly(&self.shared.control) else {
            return false;
        };
        let (fmt, on) = (c.config.format(), c.config.schedtrace_ms() > 0 && !c.stop);
        drop(c);
        if !on {
            return false;
        }
        let ms = crate::stats::millis(started.elapsed());
        let threads = process_files().threads();
        let Some(list) = watched::watched_briefly() else {
            return false;
        };
        let mut snapshot = SchedStats::default();
        for w in list.iter().filter(|w| w.alive.load(Relaxed)) {
            stats::fill(&w.handle.metrics(), 1, &mut snapshot);
            snapshot.threads = threads;
            line_format::sched(out, fmt, ms, w.label.as_deref(), &snapshot);
        }
        !out.is_empty()
    }
}

/// The settings and the stop flag, under one lock.
pub(super) struct Control {
    pub(super) config: Config,
    /// Bumped by every `reconfigure`, so the thread notices.
    pub(super) generation: u64,
    pub(super) stop: bool,
    /// Bumped by [`Reporter::flush_now`]; the thread sets `flush_done` to it once written.
    pub(super) flush_requested: u64,
    pub(super) flush_done: u64,
}

/// What the handle and the thread share.
pub(super) struct Shared {
    pub(super) control: Mutex<Control>,
    /// When the thread started: the origin of the `ms` of SCHED lines (set by the thread).
    pub(super) started: OnceLock<Instant>,
    pub(super) wake: Condvar,
    /// Signalled when the thread has done a requested flush.
    pub(super) flushed: Condvar,
    pub(super) ticks: AtomicU64,
    pub(super) lines: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) thread_allocs: AtomicU64,
    pub(super) thread_alloc_bytes: AtomicU64,
    pub(super) thread_cpu_ns: AtomicU64,
}

impl Shared {
    pub(super) fn new(config: Config) -> Arc<Self> {
        Arc::new(Shared {
            control: Mutex::new(Control {
                config,
                generation: 0,
                stop: false,
                flush_requested: 0,
                flush_done: 0,
            }),
            started: OnceLock::new(),
            wake: Condvar::new(),
            flushed: Condvar::new(),
            ticks: AtomicU64::new(0),
            lines: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            thread_allocs: AtomicU64::new(0),
            thread_alloc_bytes: AtomicU64::new(0),
            thread_cpu_ns: AtomicU64::new(0),
        })
    }

    pub(super) fn control(&self) -> MutexGuard<'_, Control> {
        lock(&self.control)
    }
}
