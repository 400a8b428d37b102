//! The panic hook: with `schedtrace` on, a panic prints one last SCHED line per watched runtime,
//! as Go prints a SCHED line when a panic kills the program.
//!
//! [`init`](crate::init) installs it once, when it starts the reporter, on top of whatever hook
//! the program had installed before: rdebug's lines come first, then that hook runs, unchanged. A
//! hook the program installs later with `take_hook` + `set_hook` (the usual way to add one) runs
//! first and then calls rdebug's; one installed later with `set_hook` alone replaces it, as it
//! replaces std's default message.
//!
//! A hook cannot tell a panic that will kill the program from one that `catch_unwind` or a tokio
//! task will catch: it runs before unwinding starts. So every panic prints its lines, including
//! the ones a tokio task catches (they are a snapshot of the scheduler when that task failed, next
//! to the message std's default hook prints for it anyway).
//!
//! The hook never blocks: it waits at most 50 ms for each of rdebug's locks (a panic may
//! come from a thread holding one, and then prints nothing), and writes with the same
//! non-blocking writes as the reporter.

use std::sync::Once;

use crate::sys::stderr::{Sink, Stderr};

use super::Reporter;

static INSTALL: Once = Once::new();

/// Installs the hook for `reporter`, once per process.
pub(crate) fn install(reporter: &'static Reporter) {
    if std::thread::panicking() {
        return; // take_hook/set_hook would panic
    }
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            last_sched_lines(reporter);
            previous(info);
        }));
    });
}

/// Prints the SCHED lines of `reporter`, if it runs with `schedtrace` on.
fn last_sched_lines(reporter: &Reporter) {
    let mut buf = Vec::new();
    if !reporter.panic_lines(&mut buf) {
        return;
    }
    let mut sink = Sink::Stderr(Stderr::open());
    for line in buf.split_inclusive(|&b| b == b'\n') {
        sink.line(line);
    }
}
