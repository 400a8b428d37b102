//! The allocator side, sampled: [`Alloc`] (jemalloc plus per-thread counters), the counters'
//! totals ([`AllocCounters`]), and jemalloc's own statistics and controls through `mallctl`.
//!
//! Uses only [`sys`](crate::sys).

pub(crate) mod alloc_text;
pub(crate) mod counting;
pub(crate) mod cpu_sampler;
pub(crate) mod jemalloc;
pub(crate) mod slots;

pub use counting::Alloc;
pub(crate) use counting::this_thread_counters;
pub(crate) use slots::is_installed;
pub use slots::{AllocCounters, alloc_counters};
