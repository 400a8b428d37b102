//! What the operating system gives rdebug: `/proc` files read into stack buffers
//! ([`proc`]), and a stderr that never blocks or kills the program ([`stderr`]).
//!
//! Nothing here uses anything else in the crate.

pub(crate) mod proc;
pub(crate) mod stderr;
