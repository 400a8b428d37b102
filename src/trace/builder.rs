//! [`Builder`]: a reporter started from code, with what `RDEBUG` says set field by field.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use tokio::runtime::Handle;

use crate::config::{Config, Format};
use crate::error::Error;
use crate::runtime::watched;
use crate::stats;
use crate::sys::stderr::{Sink, Stderr};

use super::handle::{Reporter, Shared};
use super::reporter_thread::ReporterThread;

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
    /// assert_eq!(rdebug::Builder::new().config_from(cfg).config().gctrace(), 1);
    /// ```
    pub fn config_from(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Applies an `RDEBUG`-style string strictly: the first bad item is an error.
    ///
    /// ```
    /// let b = rdebug::Builder::new().parse("schedtrace=1000,gctrace=1").unwrap();
    /// assert_eq!(b.config().schedtrace_ms(), 1000);
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
    /// assert_eq!(rdebug::Builder::new().config().gcpoll_ms(), 100);
    /// ```
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// `schedtrace`: a SCHED line every `period` (zero turns it off; longer than a day means a
    /// day).
    ///
    /// ```
    /// let b = rdebug::Builder::new().schedtrace(std::time::Duration::from_secs(1));
    /// assert_eq!(b.config().schedtrace_ms(), 1000);
    /// ```
    pub fn schedtrace(mut self, period: Duration) -> Self {
        let _ = self.config.set_schedtrace_ms(clamp_ms(period, 0));
        self
    }

    /// `scheddetail`: per-worker and blocking-pool lines under each SCHED line.
    ///
    /// ```
    /// assert!(rdebug::Builder::new().scheddetail(true).config().scheddetail());
    /// ```
    pub fn scheddetail(mut self, on: bool) -> Self {
        self.config.set_scheddetail(on);
        self
    }

    /// `gctrace`: 0 off, 1 a line per allocator cycle, 2 plus a detail line (values above 2 mean 2).
    ///
    /// ```
    /// assert_eq!(rdebug::Builder::new().gctrace(2).config().gctrace(), 2);
    /// ```
    pub fn gctrace(mut self, level: u8) -> Self {
        let _ = self.config.set_gctrace(level.min(2));
        self
    }

    /// `gcpercent`: the pacing percent for the goal (`None` = off, only sweeps and forced cycles;
    /// above 1,000,000 means 1,000,000).
    ///
    /// ```
    /// assert_eq!(rdebug::Builder::new().gcpercent(Some(50)).config().gcpercent(), Some(50));
    /// ```
    pub fn gcpercent(mut self, percent: Option<u64>) -> Self {
        let _ = self
            .config
            .set_gcpercent(percent.map(|p| p.min(crate::config::MAX_GCPERCENT)));
        self
    }

    /// `gcpoll`: how often the allocator is sampled for cycles (at least 1 ms, at most a day).
    ///
    /// ```
    /// let b = rdebug::Builder::new().gcpoll(std::time::Duration::from_millis(20));
    /// assert_eq!(b.config().gcpoll_ms(), 20);
    /// ```
    pub fn gcpoll(mut self, period: Duration) -> Self {
        let _ = self.config.set_gcpoll_ms(clamp_ms(period, 1));
        self
    }

    /// `format`: text or JSON lines.
    ///
    /// ```
    /// let b = rdebug::Builder::new().format(rdebug::Format::Json);
    /// assert_eq!(b.config().format(), rdebug::Format::Json);
    /// ```
    pub fn format(mut self, format: Format) -> Self {
        self.config.set_format(format);
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
            watched::watch(&h, None);
        }
        for (h, name) in &self.watch {
            watched::watch(h, name.as_deref());
        }
        stats::gc::set_gcpercent(self.config.gcpercent());
        let shared = Shared::new(self.config.clone());
        let sink = match self.writer {
            Some(w) => Sink::Writer(w),
            None => Sink::Stderr(Stderr::open()),
        };
        let mut state = ReporterThread::new(shared.clone(), sink, self.config);
        let thread = std::thread::Builder::new()
            .name("rdebug".into())
            .spawn(move || state.run())
            .map_err(Error::Spawn)?;
        Ok(Reporter {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }
}

/// `period` in whole ms, at least `min`, at most a day.
fn clamp_ms(period: Duration, min: u64) -> u64 {
    u64::try_from(period.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(min, crate::config::MAX_PERIOD_MS)
}
