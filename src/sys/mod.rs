//! What the operating system gives rdebug: `/proc` files read into stack buffers
//! ([`proc`]), files mapped read-only ([`mapped`]), a stderr that never blocks or kills the program ([`stderr`], and a note written to it without
//! allocating: `note_in_place`), and where each
//! thread's stack lies (`stack`, for the CPU profiler: feature `pprof`).
//!
//! Nothing here uses anything else in the crate.

#[cfg(feature = "pprof")]
pub(crate) mod loaded;
pub(crate) mod mapped;
pub(crate) mod maps;
#[cfg(feature = "pprof")]
pub(crate) mod note_in_place;
pub(crate) mod proc;
#[cfg(feature = "pprof")]
pub(crate) mod stack;
pub(crate) mod stderr;
pub(crate) mod task;
pub(crate) mod thread;
