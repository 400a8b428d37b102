//! The allocator side, sampled: [`Alloc`] (jemalloc plus per-thread counters), the counters'
//! totals ([`AllocCounters`]), and jemalloc's own statistics and controls through `mallctl`.
//!
//! Uses only [`sys`](crate::sys).

pub(crate) mod counting;
pub(crate) mod hooks;
pub(crate) mod mallctl;
pub(crate) mod slots;
mod thread_counters;

pub use counting::Alloc;
pub(crate) use counting::{probe_again, this_thread_counters};
pub use slots::AllocCounters;
pub(crate) use slots::is_installed;
