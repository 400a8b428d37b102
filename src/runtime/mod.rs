//! The tokio runtimes rdebug watches: the list (handed over, or found), each worker's thread,
//! and what the stall detector records.

pub(crate) mod discover;
pub(crate) mod look;
pub(crate) mod stall;
pub(crate) mod watched;
pub(crate) mod workers;
