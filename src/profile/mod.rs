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
//! CPU samples carry the labels of [`labels`](crate::sampler::task_labels) (Go's `pprof.Do`) and the tokio task
//! id (`task_id`) as pprof sample labels: `go tool pprof -tagfocus=route=/cache`, `-tags`.
//!
//! Both are symbolized in this process, so `go tool pprof -top profile.pb.gz` needs neither the
//! binary nor a `/symbol` route:
//!
//! * **Names**: `Function.name` is the demangled Rust path without the hash and without generic
//!   parameters, with its `<Type as Trait>` qualifier kept
//!   (`<hyper::server::conn::http1::UpgradeableConnection as core::future::future::Future>::poll`);
//!   `Function.system_name` is the raw symbol. The two differ, so pprof shows the name as it is
//!   (when they are equal pprof strips every `<…>`, and every `impl Future` becomes `::poll`).
//!   The flame graph and `heap?debug=1` use the same names.
//! * **Inlined frames, file and line** come from the binary's DWARF when it has line tables:
//!   each Location carries one Line per inlined frame, innermost first, as Go's profiles do, so
//!   `-lines`, `-list` and the source view work. Add to the service's `Cargo.toml`:
//!
//!   ```toml
//!   [profile.release]
//!   debug = "line-tables-only"
//!   ```
//!
//!   In such a build rustc names an inlined frame by its short name only (`hot_loop`, `poll`,
//!   `{async_fn#0}`, `{closure#0}`), with its file and line; functions that were not inlined
//!   keep their full path from the symbol table. `debug = "limited"` also gives inlined frames
//!   their full paths, for a larger binary. Without any DWARF, names come from the symbol tables
//!   alone: the first profile warns once on stderr, and every profile carries the same sentence
//!   as a comment (`go tool pprof -comments`).
//! * **Mappings**: every executable mapping of the process (the program, libc, the vDSO…) is a
//!   Mapping with its address range, file offset, path and GNU build ID, `has_filenames` and
//!   `has_line_numbers` true to what was found; an address in a library without symbols still
//!   shows under its library. `has_functions` is set on every mapping, because pprof would
//!   otherwise post the unnamed addresses of a remote profile to `/debug/pprof/symbol` (which
//!   rdebug does not serve) and fail; `go tool pprof -symbolize=local,force` (with
//!   `PPROF_BINARY_PATH`) re-symbolizes offline from the files found by path or build ID. A separate debug file under
//!   `/usr/lib/debug/.build-id/` is used where the system has one (its symbol table; compressed
//!   DWARF is not read). The executable is read through `/proc/self/exe`, so a binary deleted or
//!   replaced by a deploy still symbolizes (a comment says so).
//! * **Memory**: DWARF is read lazily, only the compilation units holding the profile's
//!   addresses, one at a time, and all of it is dropped with the profile; an address whose unit
//!   refers into others (ThinLTO's imported functions) is resolved with that unit and the units
//!   it refers to (two levels at most; past 64 units, the whole `.debug_info`, once per
//!   profile). Measured on the webapp: +30–34 MB peak RSS per profile, 7 MB of it anonymous
//!   (BENCHMARKS.md).
//! * **Damaged DWARF** (a corrupt or truncated section, a form rdebug does not read): the
//!   addresses it fails for keep their function name from the symbol table and lose inlined
//!   frames and file:line; the profile says how many in a comment, and stderr once.
//!
//! Heap stacks start at the first frame outside the allocator: jemalloc, the global-allocator
//! shims (`__rust_alloc`, `__rustc::*`), rdebug's [`Alloc`](crate::Alloc), and the `alloc`
//! crate's own functions (`Box::new`, `Vec`'s growth, `clone`, `to_vec`…), told by name or, for
//! short-named inlined frames, by source file. The leaf is the code that asked for memory, as
//! the leaf of Go's heap profile is the function that called `make` or `new`.
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
//! # How sampled stacks are taken
//!
//! jemalloc takes each sampled allocation's stack with libgcc's `_Unwind_Backtrace` unless told
//! otherwise. From the first [`init`](crate::init) or [`try_init`](crate::try_init) (with or
//! without `RDEBUG`: sampling runs either way), [`set_memprofilerate`] with a rate or [`heap`]
//! profile on, whichever comes first, rdebug hands that to its own unwinder (framehop, the CPU
//! profiler's) through `experimental.hooks.prof_backtrace`: 2,100
//! instructions per stack instead of 25,000, a fifth of the CPU of a sampled allocation; in
//! `examples/webapp` the server's instructions per request are 1.046× a build without `pprof`
//! with it and 1.097× with libgcc's (measured in `BENCHMARKS.md`). Building the unwinder takes
//! about 0.3 ms and 1 MiB in a release build; it is built on rdebug's own threads, never inside
//! the allocator, and built anew (shared with CPU profiles) when libraries were loaded or
//! unloaded since: checked by each heap or CPU profile, [`set_memprofilerate`] and each STALL
//! confirmation. Until then, code loaded since (a `dlopen`ed library, a JIT's pages) is
//! walked by frame pointers. Every read the walk makes is bounded to the allocating thread's
//! own stack, so a frame pointer that code uses for something else ends the walk there and
//! cannot fault. The stack ends at the first return into the C library (below `main` or a
//! thread's start routine). Samples taken before that use libgcc.
//! `RDEBUG_HEAP_UNWIND=libgcc` in the environment keeps libgcc's throughout.
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
//! | `…?seconds=N` | [`heap`] now and N s later, then [`HeapProfile::delta_since`]: the allocations of those N s (`alloc_*` subtracted, `inuse_*` the latest), as Go's delta profiles |
//! | `/debug/pprof/goroutine` (`debug=0`) | one sample per runtime and task state, sample type `goroutine/count`, labels `runtime` and `state` |
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
mod flame;
pub(crate) mod goroutine;
mod heap;
pub(crate) mod proto;
pub(crate) mod whole_run;

use std::fmt;

pub(crate) use block::block_unless;
pub use block::{BlockProfile, MAX_BLOCK_DURATION, MAX_BLOCK_HZ, block};
pub(crate) use cpu::cpu_unless;
pub use cpu::{CpuProfile, MAX_DURATION, MAX_HZ, cpu};
pub(crate) use heap::stack_hook::install_stack_hook;
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
    if bytes > 0 && heap::prof_ctl::enabled() {
        // Stacks sampled at the new rate are taken by rdebug's unwinder.
        heap::stack_hook::install_stack_hook();
    }
    heap::prof_ctl::set_rate(bytes).map_err(ProfileError::Unavailable)
}

/// The heap sampling rate in effect, bytes (0: sampling off or jemalloc's profiler missing).
///
/// ```
/// # #[global_allocator]
/// # static ALLOC: rdebug::Alloc = rdebug::Alloc::new();
/// assert_eq!(rdebug::profile::memprofilerate(), 524288); // Go's default
/// ```
pub fn memprofilerate() -> u64 {
    heap::prof_ctl::rate()
}
