//! The reporter thread (`rdebug`): SCHED lines every `schedtrace` ms, allocator sampling every
//! `gcpoll` ms with a `gc` line per closed cycle, and the handle that stops or reconfigures it.
//!
//! The thread formats into buffers it reuses, so once warmed up a tick allocates nothing; it
//! writes one line per `write`, and never holds a lock another thread needs while it writes.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use crate::config::{Config, Format};
use crate::output::{Sink, Stderr};
use crate::{Error, gc, lines, mem, sched};

/// Starts a reporter from code: what `RDEBUG` says, set field by field.
///
/// ```
/// use std::time::Duration;
///
/// let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
/// let reporter = rdebug::Builder::new()
///     .schedtrace(Duration::from_millis(100))
///     .watch(rt.handle())
///     .writer(std::io::sink())
///     .start()
///     .unwrap();
/// std::thread::sleep(Duration::from_millis(250));
/// assert!(reporter.stats().lines >= 2);
/// reporter.stop();
/// ```
pub struct Builder {
    config: Config,
    watch: Vec<(Handle, Option<String>)>,
    writer: Option<Box<dyn Write + Send>>,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field("watch", &self.watch.len())
            .field("writer", &self.writer.is_some())
            .finish()
    }
}

impl Builder {
    /// A builder with every trace off, writing to stderr.
    ///
    /// ```
    /// let b = rdebug::Builder::new();
    /// assert!(!b.config().any_trace());
    /// ```
    pub fn new() -> Self {
        Builder {
            config: Config::default(),
            watch: Vec::new(),
            writer: None,
        }
    }

    /// Replaces all settings with `config`.
    ///
    /// ```
    /// let cfg = rdebug::Config::parse_strict("gctrace=1").unwrap();
    /// assert_eq!(rdebug::Builder::new().config_from(cfg).config().gctrace, 1);
    /// ```
    pub fn config_from(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Applies an `RDEBUG`-style string strictly: the first bad item is an error.
    ///
    /// ```
    /// let b = rdebug::Builder::new().parse("schedtrace=1000,gctrace=1").unwrap();
    /// assert_eq!(b.config().schedtrace_ms, 1000);
    /// assert!(rdebug::Builder::new().parse("gctrace=7").is_err());
    /// ```
    pub fn parse(mut self, items: &str) -> Result<Self, Error> {
        let mut cfg = self.config.clone();
        if let Some(p) = cfg.apply(items).into_iter().next() {
            return Err(Error::Config(p));
        }
        self.config = cfg;
        Ok(self)
    }

    /// The settings so far.
    ///
    /// ```
    /// assert_eq!(rdebug::Builder::new().config().gcpoll_ms, 100);
    /// ```
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// `schedtrace`: a SCHED line every `period` (zero turns it off).
    ///
    /// ```
    /// let b = rdebug::Builder::new().schedtrace(std::time::Duration::from_secs(1));
    /// assert_eq!(b.config().schedtrace_ms, 1000);
    /// ```
    pub fn schedtrace(mut self, period: Duration) -> Self {
        self.config.schedtrace_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// `scheddetail`: per-worker and blocking-pool lines under each SCHED line.
    ///
    /// ```
    /// assert!(rdebug::Builder::new().scheddetail(true).config().scheddetail);
    /// ```
    pub fn scheddetail(mut self, on: bool) -> Self {
        self.config.scheddetail = on;
        self
    }

    /// `gctrace`: 0 off, 1 a line per allocator cycle, 2 plus a detail line (values above 2 mean 2).
    ///
    /// ```
    /// assert_eq!(rdebug::Builder::new().gctrace(2).config().gctrace, 2);
    /// ```
    pub fn gctrace(mut self, level: u8) -> Self {
        self.config.gctrace = level.min(2);
        self
    }

    /// `gcpercent`: the pacing percent for the goal (`None` = off, only sweeps and forced cycles).
    ///
    /// ```
    /// assert_eq!(rdebug::Builder::new().gcpercent(Some(50)).config().gcpercent, Some(50));
    /// ```
    pub fn gcpercent(mut self, percent: Option<u64>) -> Self {
        self.config.gcpercent = percent;
        self
    }

    /// `gcpoll`: how often the allocator is sampled for cycles (at least 1 ms).
    ///
    /// ```
    /// let b = rdebug::Builder::new().gcpoll(std::time::Duration::from_millis(20));
    /// assert_eq!(b.config().gcpoll_ms, 20);
    /// ```
    pub fn gcpoll(mut self, period: Duration) -> Self {
        self.config.gcpoll_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX).max(1);
        self
    }

    /// `format`: text or JSON lines.
    ///
    /// ```
    /// let b = rdebug::Builder::new().format(rdebug::Format::Json);
    /// assert_eq!(b.config().format, rdebug::Format::Json);
    /// ```
    pub fn format(mut self, format: Format) -> Self {
        self.config.format = format;
        self
    }

    /// Also watch `handle`'s runtime (see [`watch`](crate::watch)).
    ///
    /// ```
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// let _b = rdebug::Builder::new().watch(rt.handle());
    /// ```
    pub fn watch(mut self, handle: &Handle) -> Self {
        self.watch.push((handle.clone(), None));
        self
    }

    /// Also watch `handle`'s runtime, its SCHED lines carrying `runtime=<name>`.
    ///
    /// ```
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// let _b = rdebug::Builder::new().watch_named(rt.handle(), "io");
    /// ```
    pub fn watch_named(mut self, handle: &Handle, name: &str) -> Self {
        self.watch.push((handle.clone(), Some(name.to_owned())));
        self
    }

    /// Write lines to `writer` instead of stderr (each line in one `write_all` + `flush`).
    ///
    /// ```
    /// let _b = rdebug::Builder::new().writer(std::io::sink());
    /// ```
    pub fn writer(mut self, writer: impl Write + Send + 'static) -> Self {
        self.writer = Some(Box::new(writer));
        self
    }

    /// Starts the reporter thread, named `rdebug`, even if every trace is off (it then sleeps
    /// until [`Reporter::reconfigure`] turns one on). Watches the runtimes given, and the current
    /// one when called inside a runtime.
    ///
    /// ```
    /// let r = rdebug::Builder::new().writer(std::io::sink()).start().unwrap();
    /// r.stop();
    /// ```
    pub fn start(self) -> Result<Reporter, Error> {
        crate::clock::origin();
        if let Ok(h) = Handle::try_current() {
            sched::watch(&h, None);
        }
        for (h, name) in &self.watch {
            sched::watch(h, name.as_deref());
        }
        gc::set_gcpercent(self.config.gcpercent);
        let shared = Shared::new(self.config.clone());
        let sink = match self.writer {
            Some(w) => Sink::Writer(w),
            None => Sink::Stderr(Stderr::open()),
        };
        let mut worker = Worker::new(shared.clone(), sink, self.config);
        let thread = std::thread::Builder::new()
            .name("rdebug".into())
            .spawn(move || worker.run())
            .map_err(Error::Spawn)?;
        Ok(Reporter {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }
}

/// A running reporter thread: stop it, change its settings, or read what it has done.
///
/// ```
/// let r = rdebug::Builder::new().writer(std::io::sink()).start().unwrap();
/// let mut cfg = r.config();
/// cfg.gctrace = 1;
/// r.reconfigure(cfg);
/// assert_eq!(r.config().gctrace, 1);
/// r.stop();
/// ```
pub struct Reporter {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
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
    /// The reporter thread's own CPU time (user + system), ns, from `/proc/thread-self`.
    pub thread_cpu_ns: u64,
}

impl Reporter {
    /// The settings in effect.
    ///
    /// ```
    /// let r = rdebug::Builder::new().writer(std::io::sink()).start().unwrap();
    /// assert_eq!(r.config().schedtrace_ms, 0);
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
    /// assert_eq!(r.config().schedtrace_ms, 500);
    /// ```
    pub fn reconfigure(&self, config: Config) {
        gc::set_gcpercent(config.gcpercent);
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
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let deadline = Instant::now() + Duration::from_secs(1);
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

impl Reporter {
    /// The SCHED lines a panic prints ([`crate::panic_hook`]): one per watched runtime, now, in
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
        let Some(c) = crate::panic_hook::lock_briefly(&self.shared.control) else {
            return false;
        };
        let (fmt, on) = (c.config.format, c.config.schedtrace_ms > 0 && !c.stop);
        drop(c);
        if !on {
            return false;
        }
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let threads = sched::process_files().threads();
        let Some(list) = sched::watched_briefly() else {
            return false;
        };
        let mut stats = sched::SchedStats::default();
        for w in list.iter().filter(|w| w.alive.load(Relaxed)) {
            sched::fill(&w.handle.metrics(), 1, &mut stats);
            stats.threads = threads;
            lines::sched(out, fmt, ms, w.label.as_deref(), &stats);
        }
        !out.is_empty()
    }
}

struct Control {
    config: Config,
    generation: u64,
    stop: bool,
}

struct Shared {
    control: Mutex<Control>,
    /// When the thread started: the origin of the `ms` of SCHED lines (set by the thread).
    started: OnceLock<Instant>,
    wake: Condvar,
    ticks: AtomicU64,
    lines: AtomicU64,
    dropped: AtomicU64,
    thread_allocs: AtomicU64,
    thread_alloc_bytes: AtomicU64,
    thread_cpu_ns: AtomicU64,
}

impl Shared {
    fn new(config: Config) -> Arc<Self> {
        Arc::new(Shared {
            control: Mutex::new(Control {
                config,
                generation: 0,
                stop: false,
            }),
            started: OnceLock::new(),
            wake: Condvar::new(),
            ticks: AtomicU64::new(0),
            lines: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            thread_allocs: AtomicU64::new(0),
            thread_alloc_bytes: AtomicU64::new(0),
            thread_cpu_ns: AtomicU64::new(0),
        })
    }

    fn control(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The thread's own state.
struct Worker {
    shared: Arc<Shared>,
    sink: Sink,
    config: Config,
    started: Instant,
    /// Lines of the current tick, and where each ends.
    buf: Vec<u8>,
    ends: Vec<usize>,
    /// Last gc cycle printed.
    printed_gc: u64,
    polling: bool,
    noted_unstable: bool,
    noted_allocator: bool,
    cpu: crate::os::ThreadCpu,
    /// What the last allocator samples saw, to skip jemalloc's `epoch` while nothing changes.
    quiet: Quiet,
}

/// The last allocator sample and the activity around it (see `Quiet::sample_allocator`).
#[derive(Default)]
struct Quiet {
    /// `[allocs + frees, threads, slots, num_gc]` when the last real sample was taken.
    key: [u64; 4],
    sample: Option<crate::jemalloc::HeapSample>,
    /// The last two real samples saw the same key.
    confirmed: bool,
    /// `rdebug::Alloc` is the global allocator, so its counters see every allocator call.
    counted: bool,
}

impl Worker {
    fn new(shared: Arc<Shared>, sink: Sink, config: Config) -> Self {
        Worker {
            shared,
            sink,
            config,
            started: Instant::now(),
            buf: Vec::with_capacity(8192),
            ends: Vec::with_capacity(256),
            printed_gc: 0,
            polling: false,
            noted_unstable: false,
            noted_allocator: false,
            // Replaced on the thread itself.
            cpu: crate::os::ThreadCpu::open(-1),
            quiet: Quiet::default(),
        }
    }

    fn run(&mut self) {
        crate::output::block_sigpipe_on_this_thread();
        self.cpu = crate::os::ThreadCpu::current();
        self.started = Instant::now();
        let _ = self.shared.started.set(self.started);
        self.printed_gc = gc::tracker().as_ref().map_or(0, |t| t.totals().num_gc);
        let mut generation = self.shared.control().generation;
        self.apply_config();
        let mut next_sched = self.started;
        let mut next_gc = self.started;
        loop {
            let now = Instant::now();
            let mut worked = false;
            if let Some(period) = self.config.sched_period()
                && now >= next_sched
            {
                self.sched_tick(now);
                next_sched = advance(next_sched, period, now);
                worked = true;
            }
            if let Some(period) = self.config.gc_period()
                && now >= next_gc
            {
                self.gc_tick();
                next_gc = advance(next_gc, period, now);
                worked = true;
            }
            if worked {
                self.flush();
                self.publish_stats();
            }
            let deadline = [
                self.config.sched_period().map(|_| next_sched),
                self.config.gc_period().map(|_| next_gc),
            ]
            .into_iter()
            .flatten()
            .min();
            let mut c = self.shared.control();
            loop {
                if c.stop {
                    drop(c);
                    self.set_polling(false);
                    return;
                }
                if c.generation != generation {
                    generation = c.generation;
                    self.config = c.config.clone();
                    drop(c);
                    self.apply_config();
                    let now = Instant::now();
                    next_sched = now;
                    next_gc = now;
                    break;
                }
                let now = Instant::now();
                let wait = match deadline {
                    Some(d) if d <= now => break,
                    Some(d) => d - now,
                    None => Duration::from_secs(3600),
                };
                c = match self.shared.wake.wait_timeout(c, wait) {
                    Ok((g, _)) => g,
                    Err(e) => e.into_inner().0,
                };
            }
        }
    }

    /// Startup notes for the settings now in effect, and the sampling flag.
    fn apply_config(&mut self) {
        let fmt = self.config.format;
        if self.config.schedtrace_ms > 0 && !sched::UNSTABLE && !self.noted_unstable {
            self.noted_unstable = true;
            lines::note(
                &mut self.buf,
                fmt,
                "note",
                "built without --cfg tokio_unstable: per-worker run queues ([l0 l1 ...]), \
                 blocking=/idleblocking= and per-worker polls are left out; build with \
                 RUSTFLAGS=\"--cfg tokio_unstable\" to get them",
            );
            self.end_line();
        }
        if self.config.gctrace > 0 && !self.noted_allocator {
            self.noted_allocator = true;
            if let Some(missing) = mem::missing_figures_once() {
                lines::note(&mut self.buf, fmt, "note", missing);
                self.end_line();
            }
        }
        self.flush();
        self.set_polling(self.config.gctrace > 0 && mem::heap_is_jemalloc());
        if self.polling {
            self.quiet.counted = crate::alloc::is_installed();
        }
    }

    fn set_polling(&mut self, on: bool) {
        if on != self.polling {
            self.polling = on;
            if on {
                gc::POLLER_ACTIVE.fetch_add(1, Relaxed);
            } else {
                gc::POLLER_ACTIVE.fetch_sub(1, Relaxed);
            }
        }
    }

    fn end_line(&mut self) {
        self.ends.push(self.buf.len());
    }

    fn sched_tick(&mut self, now: Instant) {
        let fmt = self.config.format;
        let detail = self.config.scheddetail;
        let ms = u64::try_from(now.saturating_duration_since(self.started).as_millis())
            .unwrap_or(u64::MAX);
        let threads = sched::process_files().threads();
        for label in sched::take_gone() {
            let message = format!(
                "runtime {} shut down; its SCHED lines stop",
                label.as_deref().unwrap_or("main")
            );
            lines::note(&mut self.buf, fmt, "note", &message);
            self.ends.push(self.buf.len());
        }
        let mut list = sched::watched();
        let mut i = 0;
        while i < list.len() {
            if !list[i].alive.load(Relaxed) {
                let gone = list.swap_remove(i);
                let message = format!(
                    "runtime {} shut down; its SCHED lines stop",
                    gone.label.as_deref().unwrap_or("main")
                );
                lines::note(&mut self.buf, fmt, "note", &message);
                self.ends.push(self.buf.len());
                continue;
            }
            let w = &mut list[i];
            i += 1;
            sched::fill(&w.handle.metrics(), 1, &mut w.stats);
            w.stats.threads = threads;
            let label = w.label.as_deref();
            lines::sched(&mut self.buf, fmt, ms, label, &w.stats);
            self.ends.push(self.buf.len());
            if detail {
                let span = sched::nanos(now.saturating_duration_since(w.prev_at)).max(1);
                w.prev_at = now;
                for (k, ws) in w.stats.per_worker.iter().enumerate() {
                    let prev = w.prev_busy.get(k).copied().unwrap_or(0);
                    let share =
                        (ws.busy_ns.saturating_sub(prev).saturating_mul(100) / span).min(100);
                    if let Some(p) = w.prev_busy.get_mut(k) {
                        *p = ws.busy_ns;
                    }
                    lines::worker_detail(&mut self.buf, fmt, label, k, &w.stats, share);
                    self.ends.push(self.buf.len());
                }
                lines::blocking_detail(&mut self.buf, fmt, label, &w.stats);
                if self.ends.last() != Some(&self.buf.len()) {
                    self.ends.push(self.buf.len());
                }
            }
        }
    }

    fn gc_tick(&mut self) {
        if !self.polling {
            return;
        }
        let fmt = self.config.format;
        let detail = self.config.gctrace >= 2;
        let procs = sched::primary_workers()
            .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
            .unwrap_or(1) as u64;
        let rss = sched::process_files().rss().unwrap_or(0);
        let mut guard = gc::tracker();
        let Some(t) = guard.as_mut() else { return };
        t.set_procs(procs);
        self.quiet.sample_allocator(t, rss);
        let buf = &mut self.buf;
        let ends = &mut self.ends;
        let (lost, last) = t.cycles_after(self.printed_gc, |c| {
            lines::gc(buf, fmt, c);
            ends.push(buf.len());
            if detail {
                lines::gc_detail(buf, fmt, c);
                ends.push(buf.len());
            }
        });
        drop(guard);
        self.printed_gc = last;
        if lost > 0 {
            lines::note(
                &mut self.buf,
                fmt,
                "note",
                "gc lines were lost: the reporter fell behind",
            );
            self.end_line();
        }
    }

    /// Writes the lines of this tick, one `write` each.
    fn flush(&mut self) {
        let mut start = 0;
        let mut written = 0u64;
        for &end in &self.ends {
            if end > start && self.sink.line(&self.buf[start..end]) {
                written += 1;
            }
            start = end;
        }
        self.buf.clear();
        self.ends.clear();
        self.shared.lines.fetch_add(written, Relaxed);
        self.shared.dropped.store(self.sink.dropped(), Relaxed);
    }

    fn publish_stats(&self) {
        let s = &self.shared;
        s.ticks.fetch_add(1, Relaxed);
        let (allocs, bytes) = crate::alloc::this_thread_counters();
        s.thread_allocs.store(allocs, Relaxed);
        s.thread_alloc_bytes.store(bytes, Relaxed);
        if let Some(ns) = self.cpu.cpu_ns() {
            s.thread_cpu_ns.store(ns, Relaxed);
        }
    }
}

impl Quiet {
    /// Samples the allocator for cycles: `Tracker::poll`, which advances jemalloc's `epoch` (it
    /// takes every arena's locks and merges their statistics: ~7 µs per arena in use with warm
    /// caches, several times that with the cold caches of a thread that wakes every 100 ms), or,
    /// when the allocator cannot have changed, the last sample again, which is what `epoch` would
    /// have returned. An idle program's reporter thus stops touching jemalloc.
    ///
    /// It cannot have changed when no call went through `rdebug::Alloc` on any thread, no thread
    /// took or handed back a counter slot, no cycle was closed by anyone else (`free_os_memory`),
    /// jemalloc runs no background threads (those purge on their own) and this is the only
    /// poller; and, to let the jemalloc work of a thread that just exited land, only after two
    /// real samples in a row saw it so.
    fn sample_allocator(&mut self, t: &mut gc::Tracker, rss: u64) {
        let c = crate::alloc::alloc_counters();
        let key = [
            c.allocs.wrapping_add(c.frees),
            c.threads,
            c.slots,
            t.totals().num_gc,
        ];
        if let Some(s) = self.sample
            && self.confirmed
            && self.counted
            && self.key == key
            && s.background_threads == 0
            && gc::POLLER_ACTIVE.load(Relaxed) == 1
        {
            t.observe(s, rss, false);
            return;
        }
        let s = t.poll(rss);
        self.confirmed = self.sample.is_some() && s.is_some() && self.key == key;
        self.key = key;
        self.sample = s;
    }
}

/// One reporter tick run on the caller's thread, for benchmarks: not part of the API.
#[doc(hidden)]
pub struct TickForBench(Worker);

impl TickForBench {
    /// A worker with `config`, writing to `writer`, watching the current runtime if any.
    pub fn new(config: Config, writer: impl Write + Send + 'static) -> Self {
        if let Ok(h) = Handle::try_current() {
            sched::watch(&h, None);
        }
        let shared = Shared::new(config.clone());
        let mut w = Worker::new(shared, Sink::Writer(Box::new(writer)), config);
        w.apply_config();
        TickForBench(w)
    }

    /// One SCHED tick and one allocator sample, with their lines written.
    pub fn tick(&mut self) {
        let now = Instant::now();
        if self.0.config.schedtrace_ms > 0 {
            self.0.sched_tick(now);
        }
        if self.0.config.gctrace > 0 {
            self.0.gc_tick();
        }
        self.0.flush();
        self.0.publish_stats();
    }
}

impl Drop for TickForBench {
    fn drop(&mut self) {
        self.0.set_polling(false);
    }
}

/// The next deadline after `prev`: one period on, or one period from now if far behind. A period
/// too long for the clock (`Config` fields are public: `schedtrace_ms = u64::MAX`) means a year.
fn advance(prev: Instant, period: Duration, now: Instant) -> Instant {
    match prev.checked_add(period) {
        Some(next) if next > now => next,
        _ => now
            .checked_add(period)
            .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
            .unwrap_or(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        cfg.schedtrace_ms = u64::MAX;
        cfg.gcpoll_ms = u64::MAX;
        cfg.gcpercent = Some(u64::MAX);
        r.reconfigure(cfg);
        std::thread::sleep(Duration::from_millis(50));
        // The thread ticked (the first SCHED line and sample are due at once) and is alive to
        // take a new setting.
        assert!(r.stats().ticks >= 2, "{:?}", r.stats());
        r.reconfigure(Config::parse_strict("schedtrace=10").unwrap());
        std::thread::sleep(Duration::from_millis(60));
        assert!(r.stats().ticks >= 5, "{:?}", r.stats());
        r.stop();
    }
}
