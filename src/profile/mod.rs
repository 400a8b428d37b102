//! CPU and heap profiles in pprof format: Go's `runtime/pprof` for Rust (feature `pprof`).
//!
//! * [`heap`] — jemalloc's sampling heap profiler, read now: [`HeapProfile::pprof_gz`] (what
//!   `/debug/pprof/heap` and `/debug/pprof/allocs` serve) and [`HeapProfile::debug_text`]
//!   (`heap?debug=1`).
//! * [`cpu`] — samples driven by the process's CPU time for a duration:
//!   [`CpuProfile::pprof_gz`] (`/debug/pprof/profile`) and [`CpuProfile::flamegraph_svg`].
//! * [`block`] — where busy tokio workers wait off CPU for a duration, in Go's block profile
//!   format: [`BlockProfile::pprof_gz`] (`/debug/pprof/block`).
//!
//! # No mutex profile
//!
//! `/debug/pprof/mutex` stays 404, with the reason. Go's mutex profile counts the time a lock's
//! *holder* made others wait, recorded by the lock itself; Rust's locks (std's `Mutex`,
//! parking_lot, `tokio::sync`'s blocking paths) record nothing, and a worker waiting on one sits
//! in the same `futex` call as one waiting on a condvar, a channel or a `Once`: a profile built
//! by matching stack frames would be a guess. Lock waits of tokio workers do show, with the rest
//! of their blocking, in the block profile, under the waiting function.
//!
//! CPU samples carry the labels of [`labels`](crate::labels) (Go's `pprof.Do`) and the tokio task
//! id (`task_id`) as pprof sample labels: `go tool pprof -tagfocus=route=/cache`, `-tags`.
//!
//! Both are symbolized in this process from the ELF symbol tables (function names, no file or
//! line), so `go tool pprof -top profile.pb.gz` needs neither the binary nor a `/symbol` route.
//!
//! # Heap sampling is on by default
//!
//! With this feature compiled in, jemalloc is built with `--enable-prof` and rdebug's
//! `_rjem_malloc_conf` symbol starts it with `prof:true,prof_active:true,lg_prof_sample:19,
//! prof_accum:true`: one sample per 512 KiB allocated on average, as Go's default
//! `MemProfileRate`, with cumulative counts kept for `allocs` (jemalloc keeps each sampled
//! stack it has seen). `_RJEM_MALLOC_CONF` in the environment still wins over it.
//! `RDEBUG=memprofilerate=N` and [`set_memprofilerate`] change the rate; jemalloc samples at
//! powers of two, so N is rounded to the nearest one (log2 rounded: 600000 → 2^19, 800000 →
//! 2^20); 0 pauses sampling.
//!
//! # What the debug server's routes call
//!
//! | route | call |
//! |---|---|
//! | `/debug/pprof/profile?seconds=N&hz=H` | [`cpu`]`(N s, H)` (defaults 30 s, 100 Hz; [`ProfileError::Busy`] → 409, [`ProfileError::Invalid`] → 400), then [`CpuProfile::pprof_gz`] |
//! | `…/profile?format=svg` | the same, then [`CpuProfile::flamegraph_svg`] (`image/svg+xml`) |
//! | `/debug/pprof/heap` | [`heap`], then [`HeapProfile::pprof_gz`]`(`[`HeapKind::Heap`]`)` |
//! | `/debug/pprof/allocs` | [`heap`], then [`HeapProfile::pprof_gz`]`(`[`HeapKind::Allocs`]`)` |
//! | `…?debug=1` | [`HeapProfile::debug_text`] (`text/plain`) |
//! | `/debug/pprof/block?seconds=N&hz=H` | [`block`]`(N s, H)` (defaults 30 s, 100 Hz; [`ProfileError::BlockBusy`] → 409, [`ProfileError::Unavailable`] → 503), then [`BlockProfile::pprof_gz`] |
//! | `…?gc=1` | [`free_os_memory`](crate::free_os_memory) first: jemalloc's profile is always current, so this only returns freed pages and makes the footer's figures fresh, as Go's GC-first does for its profile |
//!
//! [`cpu`] blocks its thread for the whole duration: call it from a blocking task
//! (`tokio::task::spawn_blocking`), not on the server's event loop.
//!
//! # Whole-run profiles
//!
//! `RDEBUG=cpuprofile=FILE` profiles the CPU from [`init`](crate::init) to normal exit and
//! `RDEBUG=memprofile=FILE` writes a heap profile at normal exit, as `go test -cpuprofile
//! -memprofile` do: both are written by an `atexit` handler, so they are written when `main`
//! returns or `std::process::exit` is called, not when the process is killed by a signal or
//! aborts.

mod block;
mod cpu;
mod heap;
mod modules;
mod proto;
mod symbols;
pub(crate) mod whole_run;

use std::fmt;

pub use block::{BlockProfile, MAX_BLOCK_DURATION, MAX_BLOCK_HZ, block};
pub use cpu::{CpuProfile, MAX_DURATION, MAX_HZ, cpu};
pub(crate) use cpu::{ThreadStack, frame_names, thread_stack};
pub use heap::{HeapKind, HeapProfile, heap};

/// Why there is no profile.
///
/// ```
/// let e = rdebug::profile::ProfileError::Busy;
/// assert_eq!(e.to_string(), "a CPU profile is already running");
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileError {
    /// Another CPU profile is running (one at a time per process, as in Go).
    Busy,
    /// Another block profile is running (one at a time per process).
    BlockBusy,
    /// Profiling cannot work here: the reason (jemalloc's profiler off, `SIGPROF` taken by
    /// someone else, a platform without what it needs).
    Unavailable(String),
    /// A bad argument: which one and what is accepted.
    Invalid(String),
    /// Something failed while profiling: what.
    Failed(String),
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProfileError::Busy => f.write_str("a CPU profile is already running"),
            ProfileError::BlockBusy => f.write_str("a block profile is already running"),
            ProfileError::Unavailable(why) => write!(f, "profiling unavailable: {why}"),
            ProfileError::Invalid(what) => f.write_str(what),
            ProfileError::Failed(what) => write!(f, "profiling failed: {what}"),
        }
    }
}

impl std::error::Error for ProfileError {}

/// Sets the heap sampling rate (Go's `runtime.MemProfileRate`): one sample per `bytes`
/// allocated on average, rounded to the nearest power of two; 0 pauses sampling. Changing the
/// rate discards the samples taken so far (jemalloc's `prof.reset`). Each thread's next sample
/// was already scheduled at the old rate, so the new rate applies to a thread from its next
/// sample on (after the old rate's bytes, on average). Returns the rate now in effect.
///
/// ```
/// #[global_allocator]
/// static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
///
/// assert_eq!(rdebug::profile::set_memprofilerate(600_000).unwrap(), 524288);
/// assert_eq!(rdebug::profile::memprofilerate(), 524288);
/// assert_eq!(rdebug::profile::set_memprofilerate(0).unwrap(), 0);
/// ```
pub fn set_memprofilerate(bytes: u64) -> Result<u64, ProfileError> {
    if bytes > crate::config::MAX_MEMPROFILERATE {
        return Err(ProfileError::Invalid(format!(
            "memprofilerate {bytes}: expected 0 to {}",
            crate::config::MAX_MEMPROFILERATE
        )));
    }
    heap::jemalloc::set_rate(bytes).map_err(ProfileError::Unavailable)
}

/// The heap sampling rate in effect, bytes (0: sampling off or jemalloc's profiler missing).
///
/// ```
/// # #[global_allocator]
/// # static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
/// assert_eq!(rdebug::profile::memprofilerate(), 524288); // Go's default
/// ```
pub fn memprofilerate() -> u64 {
    heap::jemalloc::rate()
}
