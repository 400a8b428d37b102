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
//! | `format=text\|json` | text lines, or one JSON object per line (keys: the structs' serde names) | text |
//! | `http=ADDR` | the debug server on ADDR (`:6060` is loopback), feature `http`: see `rdebug::http` | off |
//! | `cpuprofile=FILE` | a CPU profile of the whole run, written at normal exit (feature `pprof`) | off |
//! | `memprofile=FILE` | a heap profile, written at normal exit (feature `pprof`) | off |
//! | `memprofilerate=N` | heap sampling: one sample per N bytes allocated on average; 0 is off | 524288 |
//! | `stalltrace=N` | a STALL line as soon as one poll has held a tokio worker N ms (1 to 60000) or more; 0 is off | off |
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
//! # STALL lines
//!
//! `RDEBUG=stalltrace=N` writes, as soon as one poll has held a tokio worker N ms or more:
//!
//! ```text
//! STALL 1523ms: worker=1 polled=212ms
//!   blocks_in_sleep
//!   <webapp::Handler as core::future::future::Future>::poll
//!   ...
//! ```
//!
//! `ms` is since the reporter started, `polled` how long the poll had held the worker when it
//! was seen (at least N, usually under 3N/2), then up to 8 frames of the worker's stack,
//! innermost first (feature `pprof`; without it, the line alone). A runtime other than the main
//! one is named after the colon (`runtime=<name>`), as on SCHED lines; `format=json` writes
//! `{"type":"stall","kind":"stall","ms":..,"worker":..,"polled_ms":..,"stack":[..]}`. Stalls are
//! counted in [`SchedStats::stalls`] (also `rdebug_sched_stalls_total` on `/metrics`, and the
//! last 8 per runtime under `recent_stalls` on `/debug/vars`).
//!
//! How it sees a long poll on stable tokio, and how exact that is: every N/2 ms (1 to 100 ms),
//! or every 4N/5 ms (at most 100) while every watched worker was parked at the last look,
//! taking the allocator samples on those looks (an idle webapp with `stalltrace=50`: 25 wake-ups
//! a second, about 0.13% of a core in the KVM guest rdebug is developed on, where a bare thread
//! waking as often costs the same, the kernel's tens of µs per wake-up; `scripts/idle-cost.sh`,
//! BENCHMARKS.md),
//! the reporter reads each watched worker's `worker_park_unpark_count` (exact: even means
//! unparked) and `worker_total_busy_duration` (flushed only when the worker parks and every 61
//! polls). A worker unparked while neither moved has been inside at most 61 polls since. With
//! `pprof`, from N/2 on, each look also sends that worker's thread a `SIGPROF` whose handler
//! reads the tokio task it is polling and walks its stack; the STALL line is printed only when
//! every look since N/2, and a burst of 4 more 250 µs apart, saw the same task, and the thread did
//! not spend most of that time waiting for a CPU (`/proc/self/task/<tid>/schedstat`: a busy
//! machine is not a stalled poll). A worker going round many short polls of different tasks is
//! therefore not reported; what remains possible is one task polled again and again alone on its
//! worker (yielding each time, 61 polls of N/61 ms or more), which looks the same from outside.
//! `polled` is a lower bound: it counts from the first look that saw the figures still.
//! When the line comes, from the poll's start: within 3N/2 on a busy runtime; within 9N/5 (N +
//! 100 ms above N = 125) when the runtime was idle, the first request after a quiet spell
//! (90 ms at `stalltrace=50`); then, with `pprof`, the burst (about 1 ms). The stack's frames
//! are named on a thread of their own while the poll is being confirmed, and kept, so in a
//! release build the line is out about 2 ms after it is decided (worst case measured at
//! `stalltrace=50`: 91–93 ms after the poll's start); where reading the DWARF takes longer than
//! N/2 (a debug build), the line waits for the names.
//! `tokio_unstable` adds nothing exact here (tokio batches its poll counts the same way).
//! The workers' threads are found without the app's `Builder`: rdebug spawns one short task per
//! worker that notes `tokio::runtime::worker_index()` and its thread id (and holds its worker at
//! most 5 ms so the others land elsewhere); renamed threads and several runtimes work alike. The
//! signals are sent only to a worker already suspected of a stall, never to parked ones; a
//! blocking call interrupted by one is restarted (`SA_RESTART`) or, for calls the kernel never
//! restarts (`nanosleep`, `epoll_wait`), returns `EINTR`, which std's `thread::sleep` retries.
//! With `pprof`, turning stalltrace on installs rdebug's `SIGPROF` handler (no timer: nothing is
//! sampled until a worker is suspected), builds the unwinder, and reads the program's symbol
//! tables on a short-lived thread (`rdebug-symbols`), so that the first stall's line waits for
//! none of them (in a debug build of the tests that took 150–300 ms, longer than the stall);
//! the new frames of a suspected stall are named on such a thread too, one at a time, and the
//! names kept (4,096 addresses at most).
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
//! | P% | allocator CPU share since init, truncated: (CPU time inside allocator calls on all threads, from on-CPU samples + jemalloc background threads' CPU) / (wall time × W) |
//! | B | footprint (`active + dirty + muzzy`) at the sample just before the cycle |
//! | A | footprint at the end of the cycle |
//! | L | live heap at the end of the cycle: rdebug's exact live bytes, the same figure as `MemStats::heap_alloc` |
//! | G | goal in effect for this cycle: `max(4 MiB, L_prev × (1 + gcpercent/100))` |
//! | W | workers of the first watched runtime, else `available_parallelism` |
//!
//! MB is MiB truncated, as Go prints it. `gctrace=2` adds an indented line per cycle with bytes and
//! objects allocated and freed during the cycle and their rates, purge sweeps and bytes purged,
//! resident, retained, metadata and process RSS.
//!
//! The CPU time inside allocator calls is **measured on CPU time, by sampling**: a POSIX timer on
//! the process's CPU clock raises `SIGPROF` every 10 ms of CPU the process uses, and the kernel
//! (Linux 6.4 and later) delivers it to the thread that was running. If that thread is inside an
//! [`Alloc`] call (a thread-local flag the allocator sets around jemalloc's own call), the 10 ms
//! count as allocator CPU. So the figure is the process's CPU time times the share of samples
//! that landed in the allocator, as `perf` would measure it: a thread that is preempted uses no
//! CPU and is never sampled, and the figure can never exceed the process's CPU time. Nothing is
//! timed on the allocation path. The sampler starts with the first figure that needs it (the
//! reporter, or the first [`memstats`] call) and runs until exit, at one signal per 10 ms of CPU;
//! it uses `SIGPROF` with `SA_RESTART`, and never takes the signal from a program that installed
//! its own handler (the figure is then 0, and a note says why). jemalloc's background threads
//! (off by default) are read from `/proc/self/task/<tid>/stat`.
//!
//! # Decisions where Go had nothing to copy
//!
//! - [`init`] does nothing at all when `RDEBUG` is unset: no thread, no watcher task, no output.
//! - `tasks` does not count the one task rdebug spawns in each watched runtime to notice its
//!   shutdown.
//! - **Task dumps** (every task's trace on `/debug/pprof/goroutine?debug=1&dump=1`, tokio's
//!   `Handle::dump`) need feature `taskdump` and `RUSTFLAGS="--cfg tokio_unstable"` (Linux on
//!   aarch64, x86, x86_64, s390x; debuginfo in the binary); without them the page is a summary.
//! - **One rule for `num_gc`**: cycles are found by sampling the allocator. The reporter samples
//!   it every `gcpoll` ms whenever it runs (any trace on): `gctrace` decides only whether the
//!   cycles are printed, so `num_gc` is the same with it on or off. With no reporter (`RDEBUG`
//!   unset), each [`memstats`] call samples; the first one closes a growth cycle if the live heap
//!   is already past the goal.
//! - **The live heap is rdebug's exact count**: `MemStats::alloc`, `heap_alloc` and the `L` of gc
//!   lines are `total_alloc` minus the bytes freed, by requested size, so `alloc <= total_alloc`
//!   at every read, as in Go. jemalloc's `stats.allocated` (size-class rounded, and counting
//!   objects parked in its thread caches) is `MemStats::allocated`. Under another global
//!   allocator, the counter-based figures fall back to jemalloc's (if jemalloc is the heap) or 0,
//!   and the first read says which are missing.
//! - **JSON keys are the serde names** of [`SchedStats`], [`WorkerStats`] and [`GcCycle`] (one
//!   field table drives both the text and the JSON lines), so a line deserializes into its struct;
//!   the text lines keep Go's keys (`idleworkers`, `runqueue`). A line also carries `type`, `ms`,
//!   `runtime`, and for workers `worker` and `busy_pct`.
//! - `scheddetail` prints no `busy%` on a runtime's first line (there is no interval yet) and no
//!   `meanpoll` for a worker that has not polled a task.
//! - [`init`] called outside a runtime with `schedtrace` on prints one warning naming
//!   `init()`-inside-the-runtime and [`watch`]; SCHED lines start once a runtime is watched.
//! - Lines pending at normal exit are written (an `atexit` flush, waiting at most 100 ms), and
//!   [`free_os_memory`] writes its `(forced)` line before it returns.
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
/// watched. Starts nothing when `RDEBUG` is unset (in a build with `pprof`, where heap sampling
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
