//! Go's `GODEBUG=schedtrace,gctrace` and `runtime.MemStats` for Rust services on tokio and
//! jemalloc.
//!
//! Set one environment variable and a background thread prints, line by line on stderr, what the
//! tokio scheduler and the jemalloc allocator are doing; the same numbers are plain structs in
//! code ([`memstats`], [`sched_stats`], [`alloc_counters`]).
//!
//! ```text
//! $ RDEBUG=schedtrace=1000,gctrace=1 ./webapp > /dev/null
//! SCHED 0ms: workers=2 idleworkers=2 threads=5 tasks=1 runqueue=0
//! SCHED 1000ms: workers=2 idleworkers=0 threads=6 tasks=9 runqueue=3
//! gc 1 @1.384s 2%: 5->3->2 MB, 4 MB goal, 2 P
//! ```
//!
//! # Use
//!
//! ```
//! #[global_allocator]
//! static ALLOC: rdebug::Alloc = rdebug::Alloc::new(); // jemalloc, plus the counters rdebug needs
//!
//! #[tokio::main]
//! async fn main() {
//!     rdebug::init(); // reads RDEBUG; does nothing when it is unset
//!     let m: rdebug::MemStats = rdebug::memstats();
//!     assert_eq!(m.heap_objects, m.mallocs - m.frees);
//!     let s = rdebug::sched_stats(&tokio::runtime::Handle::current());
//!     assert!(s.workers >= 1);
//! }
//! ```
//!
//! The rest of this page is the repository's `docs/` pages, included as they are: `lines.md`
//! (every line and field, `RDEBUG`, the structs), `blocking.md` (STALL lines and the block
//! profile), `limits.md` (`tokio_unstable`, platforms, what is not available) and
//! `failure-modes.md`. Profiles and the debug server are in `rdebug::profile` and `rdebug::http` and in
//! `docs/profiles.md`; Prometheus and the dashboard in `docs/metrics.md`; the source tree in
//! `docs/architecture.md`. Costs: `BENCHMARKS.md`.

#![doc = include_str!("../docs/lines.md")]
#![doc = include_str!("../docs/blocking.md")]
#![doc = include_str!("../docs/limits.md")]
#![doc = include_str!("../docs/failure-modes.md")]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod alloc;
mod clock;
mod config;
mod env;
mod error;
#[cfg(any(feature = "prometheus", feature = "metrics"))]
pub mod export;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "pprof")]
pub mod profile;
mod runtime;
mod sampler;
mod stats;
#[cfg(feature = "pprof")]
mod symbols;
mod sync;
mod sys;
mod trace;

use tokio::runtime::Handle;

pub use alloc::{Alloc, AllocCounters};
pub use config::{Config, Format};
pub use error::{ConfigError, Error};
pub use sampler::task_labels::labels;
pub use stats::{
    GcCycle, MemStats, SchedStats, WorkerStats, alloc_counters, memstats, sched_stats,
};
#[cfg(feature = "_bench")]
#[doc(hidden)]
pub use trace::TickForBench;
pub use trace::{Builder, Reporter, ReporterStats};

/// Reads `RDEBUG` and starts the reporter if any trace is on: lenient.
///
/// Every unusable item is reported on stderr as `rdebug: warning: <item>: <what is accepted>,
/// ignoring it`, and the rest applies. When called inside a tokio runtime, that runtime is
/// watched. With [`Alloc`] as the global allocator, once it started the reporter or the debug
/// server, every other tokio runtime of the process is found and watched from its tasks' first
/// allocations, including ones a library builds privately, named `runtime=<tokio name>` or
/// `runtime=rt<id>` (what is and is not found: the crate docs' "Runtimes found on their own"). Starts nothing when `RDEBUG` is unset (in a build with `pprof`, where heap sampling
/// runs anyway, it does hand the sampled stacks to rdebug's own unwinder: see
/// [`profile`](crate::profile#how-sampled-stacks-are-taken)). Calling it again starts nothing new
/// (inside another runtime, it watches that one too). Never panics.
///
/// ```
/// rdebug::init();
/// rdebug::init(); // harmless
/// ```
pub fn init() {
    let _ = env::start_from_env(false);
    take_sampled_stacks();
}

/// Heap sampling runs in a `pprof` build whether or not `RDEBUG` is set: its stacks are taken
/// with rdebug's unwinder from [`init`] or [`try_init`] on, not libgcc's (see
/// [`profile`](crate::profile#how-sampled-stacks-are-taken)). After the reporter and the server
/// have started, so that their first ticks do not wait for the unwinder's tables.
fn take_sampled_stacks() {
    #[cfg(feature = "pprof")]
    profile::install_stack_hook();
}

/// Reads `RDEBUG` and starts the reporter if any trace is on: strict.
///
/// Any unusable item is an error naming it, and nothing starts. Calling it after rdebug was
/// started from `RDEBUG` is [`Error::AlreadyStarted`].
///
/// ```
/// // With RDEBUG unset this succeeds and starts nothing.
/// # if std::env::var_os("RDEBUG").is_none() {
/// rdebug::try_init().unwrap();
/// assert!(rdebug::reporter().is_none());
/// # }
/// ```
pub fn try_init() -> Result<(), Error> {
    let started = env::start_from_env(true);
    take_sampled_stacks();
    started
}

/// Returns all free memory to the OS now, as Go's `debug.FreeOSMemory`: purges every jemalloc
/// arena (dirty and muzzy pages), and records a forced cycle (a `gc` line ending in `(forced)`).
///
/// It blocks the calling thread for the purge (~10–20 ms per 100 MB of freed pages), and that time
/// is added to [`MemStats::pause_total_ns`]. With `gctrace` on (the reporter [`init`] started), the
/// cycle's `gc` line is written before it returns (it waits at most 100 ms for the reporter), so a
/// program that exits right after still shows it. Does nothing when jemalloc is not the allocator.
///
/// ```
/// #[global_allocator]
/// static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
///
/// drop(vec![1u8; 32 << 20]);
/// rdebug::free_os_memory();
/// let m = rdebug::memstats();
/// assert!(m.num_forced_gc >= 1);
/// assert!(m.dirty < 32 << 20);
/// ```
pub fn free_os_memory() {
    stats::free_os_memory();
    env::flush_reporter();
}

/// The reporter [`init`] or [`try_init`] started, to change its settings or read its stats.
/// `None` when `RDEBUG` turned no trace on.
///
/// ```
/// if let Some(r) = rdebug::reporter() {
///     let mut cfg = r.config();
///     cfg.set_schedtrace_ms(5000).unwrap();
///     r.reconfigure(cfg);
/// }
/// ```
pub fn reporter() -> Option<&'static Reporter> {
    env::global()
}

/// Watches another runtime: the reporter prints SCHED lines for it too, carrying
/// `runtime=<its tokio name>` (or `runtime=rt<id>` when it has none and is not the first).
///
/// Watching costs one idle task in that runtime (not counted in `tasks`), which is how rdebug
/// notices the runtime shutting down; its lines then stop. Watching a runtime twice does nothing.
/// With [`Alloc`] as the global allocator runtimes are found without it (see [`init`]); under
/// another global allocator this is how a runtime other than `init()`'s is watched.
///
/// ```
/// let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
/// rdebug::watch(rt.handle());
/// assert_eq!(rdebug::sched_stats(rt.handle()).tasks, 0);
/// ```
pub fn watch(handle: &Handle) {
    runtime::watched::watch(handle, None);
}

/// Watches another runtime under `name`: its SCHED lines carry `runtime=<name>`.
///
/// ```
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// rdebug::watch_named(rt.handle(), "io");
/// ```
pub fn watch_named(handle: &Handle, name: &str) {
    runtime::watched::watch(handle, Some(name));
}

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
