//! The tokio runtimes rdebug watches: the list (handed over, or found), each worker's thread,
//! and what the stall detector records.

pub(crate) mod watched;
