//! The process-wide time origin: the first of `init()`, `try_init()`, a reporter start, or the
//! first memory read. `gc` lines count seconds from it, and the allocator CPU share divides by the
//! wall time since it.

use std::sync::OnceLock;
use std::time::Instant;

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// The origin, fixed on first call.
pub(crate) fn origin() -> Instant {
    *ORIGIN.get_or_init(Instant::now)
}
