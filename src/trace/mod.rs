//! Presented on stderr: the reporter thread and its lines.
//!
//! - [`builder`]: [`Builder`], a reporter started from code;
//! - [`handle`]: [`Reporter`], the running thread's handle, and [`ReporterStats`];
//! - [`reporter_thread`]: the thread's loop; [`sched_tick`], [`gc_tick`] and [`stall_lines`] its jobs, [`epoch_skip`]
//!   the policy that lets it skip jemalloc's `epoch`, [`lines`] its output buffer;
//! - [`encode`]: text and JSON lines from the field tables;
//! - [`panic_hook`]: the last SCHED lines of a panicking program.
//!
//! Uses [`stats`](crate::stats) and below.

#[cfg(feature = "_bench")]
mod bench;
mod builder;
mod epoch_skip;
mod gc_tick;
mod handle;
mod line_format;
mod lines;
pub(crate) mod panic_hook;
mod reporter_thread;
mod sched_tick;
mod stall_lines;

#[cfg(feature = "_bench")]
pub use bench::TickForBench;
pub use builder::Builder;
pub use handle::{Reporter, ReporterStats};
pub(crate) use line_format::note;

/// The reporter started from `RDEBUG` by [`init`](crate::init), if any: the one process-wide
/// reporter, which the panic hook, the debug server and `rdebug::reporter()` read.
static GLOBAL: std::sync::OnceLock<Reporter> = std::sync::OnceLock::new();

/// Makes `reporter` the process-wide one (the first call wins; a later one is stopped).
pub(crate) fn set_global(reporter: Reporter) {
    if let Err(extra) = GLOBAL.set(reporter) {
        extra.stop();
    }
}

/// The reporter started from `RDEBUG`, if any.
pub(crate) fn global() -> Option<&'static Reporter> {
    GLOBAL.get()
}
