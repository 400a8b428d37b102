//! Go's `GODEBUG=schedtrace,gctrace` and `runtime.MemStats` for Rust services on tokio and
//! jemalloc.
//!
//! Set one environment variable and a background thread prints, line by line on stderr, what the
//! tokio scheduler and the jemalloc allocator are doing; the same numbers are plain structs in
//! code.
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
//! # `RDEBUG`
//!
//! Items are `key=value`, split on commas and trimmed; the last duplicate wins.
//!
//! | item | meaning | default |
//! |---|---|---|
//! | `schedtrace=N` | a SCHED line every N ms; 0 is off, as in Go | off |
//! | `scheddetail=1` | with schedtrace, one more line per worker and one for the blocking pool | 0 |
//! | `gctrace=1` | a `gc` line per allocator cycle; `gctrace=2` adds a detail line per cycle | 0 |
//! | `gcpercent=N` | pacing percent for the goal (Go's `GOGC`), N ≥ 0, or `off` | 100 |
//! | `gcpoll=N` | how often, in ms (N ≥ 1), the allocator is sampled for cycles | 100 |
//! | `format=text\|json` | text lines, or one JSON object per line with the same fields | text |
//!
//! Go ignores unknown keys and bad values silently; rdebug says so instead, one line per item,
//! `rdebug: warning: <item>: <what is accepted>, ignoring it`, and everything valid still takes
//! effect ([`init`]). [`try_init`] makes any bad item an error that names it.
//!
//! # SCHED lines
//!
//! `SCHED <ms>ms: workers=W idleworkers=I threads=T tasks=K runqueue=G [l0 l1 ...]`, with
//! `blocking=B idleblocking=IB` before `runqueue` when the numbers exist. A runtime watched under a
//! name (or the second and later runtimes watched) carries `runtime=<name>` after the colon.
//!
//! | field | source |
//! |---|---|
//! | ms | since the reporter started ([`init`]) |
//! | workers | `RuntimeMetrics::num_workers` (Go's `gomaxprocs`) |
//! | idleworkers | workers whose `worker_park_unpark_count` is odd: parked now, exact (Go's `idleprocs`) |
//! | threads | OS threads of the whole process, `/proc/self/stat` field 20 |
//! | tasks | `num_alive_tasks`, minus rdebug's own watcher task |
//! | runqueue | `global_queue_depth` |
//! | `[l0 ...]` | `worker_local_queue_depth(w)`, needs `--cfg tokio_unstable` |
//! | blocking, idleblocking | `num_blocking_threads`, `num_idle_blocking_threads`, need `--cfg tokio_unstable` |
//!
//! Without `tokio_unstable` those fields are left out (not printed as 0) and one startup note
//! says how to get them. tokio has no "spinning" count, so there is none here. `scheddetail=1`
//! adds per worker `  W<i>: parked= parks= busy=<ms>ms busy%=<share of the interval>` and, under
//! `tokio_unstable`, `polls= steals= noops= runqsize= meanpoll=`, plus one
//! `  blocking: threads= idle= queue=` line.
//!
//! # Allocator cycles: `gc` lines
//!
//! Rust has no collector; the allocator's collection-like work is jemalloc returning freed pages
//! to the OS (purging). rdebug samples the allocator every `gcpoll` ms and closes a **cycle** when,
//! since the previous sample, (a) jemalloc completed at least one purge sweep, (b) the live heap
//! reached the goal (how a leak shows up), or (c) the program called [`free_os_memory`] (the line
//! ends in ` (forced)`).
//!
//! `gc N @S.SSSs P%: B->A->L MB, G MB goal, W P`
//!
//! | field | meaning |
//! |---|---|
//! | N | cycle number, from 1 |
//! | S | seconds since init, 3 decimals |
//! | P% | allocator CPU share since init, truncated: (CPU time inside allocator calls on all threads + jemalloc background threads' CPU) / (wall time × W) |
//! | B | footprint (`active + dirty + muzzy`) at the sample just before the cycle |
//! | A | footprint at the end of the cycle |
//! | L | live heap at the end of the cycle: `stats.allocated` |
//! | G | goal in effect for this cycle: `max(4 MiB, L_prev × (1 + gcpercent/100))` |
//! | W | workers of the first watched runtime, else `available_parallelism` |
//!
//! MB is MiB truncated, as Go prints it. `gctrace=2` adds an indented line per cycle with bytes and
//! objects allocated and freed during the cycle and their rates, purge sweeps and bytes purged,
//! resident, retained, metadata and process RSS.
//!
//! The CPU time inside allocator calls is **estimated by sampling**: each thread times a random
//! ~1 in 256 of its allocator calls with the monotonic clock (the clock's own cost, measured once,
//! is subtracted) and scales each sample by the number of calls it stands for. jemalloc's
//! background threads (off by default) are read from `/proc/self/task/<tid>/stat`.
//!
//! # Decisions where Go had nothing to copy
//!
//! - [`init`] does nothing at all when `RDEBUG` is unset: no thread, no watcher task, no output.
//! - `tasks` does not count the one task rdebug spawns in each watched runtime to notice its
//!   shutdown.
//! - When no reporter samples the allocator (`gctrace` off), [`memstats`] checks for a closed
//!   cycle at each call, so `num_gc` still moves, at the granularity of the calls.
//! - Counts are of requested bytes (`Layout::size`); a `realloc` is one free plus one allocation.
//! - `procfs` is not used: it allocates on every read, and the reporter must not; rdebug reads
//!   `/proc` itself into stack buffers through files kept open.

#![doc = include_str!("../docs/failure-modes.md")]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

mod alloc;
mod clock;
mod config;
mod env;
mod error;
#[cfg(feature = "pprof")]
pub mod profile;
mod stats;
mod sync;
mod sys;
mod trace;

use tokio::runtime::Handle;

pub use alloc::{Alloc, AllocCounters, alloc_counters};
pub use config::{Config, Format};
pub use error::{ConfigError, Error};
pub use stats::{
    GcCycle, MemStats, SchedStats, WorkerStats, free_os_memory, memstats, sched_stats,
};
#[cfg(feature = "_bench")]
#[doc(hidden)]
pub use trace::TickForBench;
pub use trace::{Builder, Reporter, ReporterStats};

/// Reads `RDEBUG` and starts the reporter if any trace is on: lenient.
///
/// Every unusable item is reported on stderr as `rdebug: warning: <item>: <what is accepted>,
/// ignoring it`, and the rest applies. When called inside a tokio runtime, that runtime is
/// watched. Does nothing when `RDEBUG` is unset. Calling it again starts nothing new (inside
/// another runtime, it watches that one too). Never panics.
///
/// ```
/// rdebug::init();
/// rdebug::init(); // harmless
/// ```
pub fn init() {
    let _ = env::start_from_env(false);
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
    env::start_from_env(true)
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
///
/// ```
/// let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
/// rdebug::watch(rt.handle());
/// assert_eq!(rdebug::sched_stats(rt.handle()).tasks, 0);
/// ```
pub fn watch(handle: &Handle) {
    stats::runtimes::watch(handle, None);
}

/// Watches another runtime under `name`: its SCHED lines carry `runtime=<name>`.
///
/// ```
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// rdebug::watch_named(rt.handle(), "io");
/// ```
pub fn watch_named(handle: &Handle, name: &str) {
    stats::runtimes::watch(handle, Some(name));
}

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
