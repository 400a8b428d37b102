//! Snapshots: what was sampled from tokio and the allocator, turned into the structs programs
//! read ([`SchedStats`], [`MemStats`], [`GcCycle`]) and the one field table every presenter
//! encodes them with ([`fields`]).
//!
//! Uses [`alloc`](crate::alloc) and [`sys`](crate::sys); nothing here calls up into a presenter.

mod counters;
pub(crate) mod encode;
pub(crate) mod fields;
pub(crate) mod gc;
pub(crate) mod mem;
mod sched;

pub use counters::alloc_counters;
pub use gc::GcCycle;
pub(crate) use mem::free_os_memory;
pub use mem::{MemStats, memstats};
pub(crate) use mem::{heap_is_jemalloc, missing_figures_once};
pub use sched::{SchedStats, WorkerStats, sched_stats};
pub(crate) use sched::{UNSTABLE, fill, millis, nanos};
